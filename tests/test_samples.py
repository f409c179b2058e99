"""``medsam_lite.samples``: the seeded lesion of the click benchmark and notebook 06, and the targets made of labels
(an organ split by a cut, its edge, two touching organs as one) of the click benchmark and the click decoder's training."""

from __future__ import annotations

import numpy as np
import pytest

from medsam_lite import samples
from medsam_lite.errors import InputError


@pytest.fixture(scope="module")
def white_matter_slice(brain_volume):
    image, label = brain_volume
    z = int(np.argmax((label.array == 1).sum(axis=(1, 2))))
    return image.array[z].astype(np.float32), label.array[z] == 1


@pytest.mark.parametrize("seed", [0, 2026])
def test_lesion_inside_the_region_with_its_own_contrast_and_partial_volume_edge(white_matter_slice, seed):
    image, region = white_matter_slice
    out, lesion = samples.synthetic_lesion(image, region, np.random.default_rng(seed), "MR", (5, 11))
    assert out.shape == image.shape and lesion.shape == image.shape and lesion.dtype == bool
    area = lesion.sum()
    assert np.pi * 5 ** 2 * 0.5 < area < np.pi * 11 ** 2 * 1.6      # a blob of the asked radius
    assert (lesion <= region).all()                                  # inside the region
    assert np.array_equal(out[~region], image[~region])              # nothing changed outside it
    # its own contrast: ≥ 20 % of the slice's 1–99 % range from the region's median (texture: 25 % of δ)
    lo, hi = np.percentile(image, [1, 99])
    assert abs(np.median(out[lesion]) - np.median(image[region])) > 0.12 * (hi - lo)
    # partial volume: a rim outside the mask takes part of the lesion, nothing beyond 2 px of it changes
    changed = out != image
    assert (changed & ~lesion).any() and not (changed & ~_dilate(lesion, 2)).any()


def _dilate(mask, r):
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=r)


def test_same_seed_same_lesion_other_seed_other_lesion(white_matter_slice):
    image, region = white_matter_slice
    a = samples.synthetic_lesion(image, region, np.random.default_rng(7), "MR", (5, 11))
    b = samples.synthetic_lesion(image, region, np.random.default_rng(7), "MR", (5, 11))
    c = samples.synthetic_lesion(image, region, np.random.default_rng(8), "MR", (5, 11))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_ct_contrast_is_in_hounsfield_units_and_a_small_region_holds_none():
    image = np.full((64, 64), 50.0, np.float32)
    region = np.zeros((64, 64), bool)
    region[10:50, 10:50] = True
    out, lesion = samples.synthetic_lesion(image, region, np.random.default_rng(1), "CT", (3, 7))
    assert 25 * 0.5 < abs(np.median(out[lesion]) - 50.0) < 60 * 1.5
    tiny = np.zeros((64, 64), bool)
    tiny[30:33, 30:33] = True
    assert samples.synthetic_lesion(image, tiny, np.random.default_rng(1), "CT", (3, 7)) is None


def test_bad_input_is_refused_before_any_work():
    with pytest.raises(InputError, match="differ in shape"):
        samples.synthetic_lesion(np.zeros((8, 8)), np.zeros((8, 9), bool), np.random.default_rng(0))
    with pytest.raises(InputError, match="H×W"):
        samples.synthetic_lesion(np.zeros((2, 8, 8)), np.zeros((2, 8, 8), bool), np.random.default_rng(0))
    with pytest.raises(InputError, match="radius_px"):
        samples.synthetic_lesion(np.zeros((8, 8)), np.ones((8, 8), bool), np.random.default_rng(0), radius_px=(0, 3))


def test_notebook_06_lesion_slice_is_the_recipe():
    """``tutorial.unseen_lesion_slice()``: ``brain_mri/sub-05`` slice 16, seed 2026, MR, radius (5, 11)."""
    from medsam_lite import io
    from medsam_lite.app import tutorial

    image, lesion, volume = tutorial.unseen_lesion_slice()
    label = io.read_volume(samples.brain_mri_dir() / "sub-05_label.nii.gz").array[16]
    again = samples.synthetic_lesion(volume.array[16].astype(np.float32), label == 1, np.random.default_rng(2026), "MR", (5, 11))
    assert np.array_equal(image, again[0]) and np.array_equal(lesion, again[1])
    assert lesion.any() and (lesion <= (label == 1)).all() and volume.array.shape[1:] == image.shape
    with pytest.raises(InputError, match="outside"):
        tutorial.unseen_lesion_slice(z=10_000)


def test_split_parts_cover_the_organ_once_and_the_cut_is_straight(ct_label_slice):
    from scipy.optimize import linprog

    for name, organ in ct_label_slice:
        a, b = samples.split_target(organ, f"case:0:{name}")
        assert not (a & b).any() and np.array_equal(a | b, organ)          # a partition of the organ
        assert a.any() and b.any()                                          # a cut near the centroid: two sides
        # straight: a line separates the two sides (a feasible linear program w·p + c >= 1 on one, <= -1 on the other)
        pa, pb = np.argwhere(a).astype(float), np.argwhere(b).astype(float)
        rows = np.r_[-np.c_[pa, np.ones(len(pa))], np.c_[pb, np.ones(len(pb))]]
        assert linprog(np.zeros(3), A_ub=rows, b_ub=-np.ones(len(rows)), bounds=[(None, None)] * 3).status == 0
        again = samples.split_target(organ, f"case:0:{name}")
        assert np.array_equal(again[0], a)                                  # seeded by the tag
    assert any(not np.array_equal(samples.split_target(o, "x")[0], samples.split_target(o, "y")[0])
               for _, o in ct_label_slice)


def test_a_cap_is_a_small_edge_of_the_organ(ct_label_slice):
    from scipy import ndimage

    for name, organ in ct_label_slice:
        cap = samples.cap_target(organ, f"case:0:{name}")
        assert (cap <= organ).all() and 0 < cap.sum() < 0.5 * organ.sum()
        depth = ndimage.distance_transform_edt(organ)                      # an edge: the organ's deepest pixel is not in it
        assert not cap[np.unravel_index(np.argmax(depth), depth.shape)]


def test_merged_targets_are_the_touching_pairs_only():
    a = np.zeros((40, 40), bool)
    a[5:15, 5:15] = True
    b = np.zeros_like(a)
    b[16:25, 5:15] = True          # one pixel row between a and b: they touch (within 2 px)
    c = np.zeros_like(a)
    c[30:38, 30:38] = True         # far from both
    merged = samples.merged_targets([("a", a), ("b", b), ("c", c)])
    assert [name for name, _ in merged] == ["a + b"] and np.array_equal(merged[0][1], a | b)


def test_apart_targets_are_the_close_pairs_that_do_not_touch():
    a = np.zeros((60, 60), bool)
    a[5:15, 5:15] = True           # equivalent radius 5.6 px
    b = np.zeros_like(a)
    b[5:15, 19:29] = True          # 4 px of other tissue between a and b: apart, and close
    c = np.zeros_like(a)
    c[16:25, 5:15] = True          # one pixel row below a: touching (merged_targets' pair); 5.4 px from b: too far
    d = np.zeros_like(a)
    d[45:55, 45:55] = True         # far from all
    apart = samples.apart_targets([("a", a), ("b", b), ("c", c), ("d", d)])
    assert [name for name, _ in apart] == ["a and b"] and np.array_equal(apart[0][1], a | b)


@pytest.fixture(scope="module")
def ct_label_slice():
    """The bundled CT's organs on its middle slice with at least 100 pixels: ``[(name, H×W bool)]``."""
    from medsam_lite import io

    label = io.read_volume(samples.ct_abdomen_dir() / "case-01_label.nii.gz").array
    names = samples.sample_labels("ct_abdomen")
    z = label.shape[0] // 2
    organs = [(names[k], label[z] == k) for k in names if (label[z] == k).sum() >= 100]
    assert len(organs) >= 3
    return organs
