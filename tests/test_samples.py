"""``medsam_lite.samples.synthetic_lesion``: the seeded lesion of the click benchmark and notebook 06."""

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
