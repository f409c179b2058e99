"""medsam_lite.interactive.prompts on the sample scans: key slices, 3D boxes, RECIST lines, stored-pixel boxes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.interactive import prompts
from medsam_lite.data.dataset import open_dataset


@pytest.fixture(scope="module")
def label():
    return io.read_volume(samples.brain_mri_dir() / "sub-01_label.nii.gz").array


def test_key_slice_is_the_slice_with_most_target_pixels(label):
    ventricles = label == 3
    counts = ventricles.sum(axis=(1, 2))
    z = prompts.key_slice(ventricles)
    assert counts[z] == counts.max() > 0
    assert list(prompts.slices_with(ventricles)) == list(np.flatnonzero(counts))
    assert z == int(np.flatnonzero(counts == counts.max())[0])   # ties → the lowest index


@pytest.mark.parametrize("bad", [np.zeros((4, 5, 6), bool), np.ones((5, 6), bool), np.full((3, 4, 4), 2)])
def test_key_slice_refuses_empty_2d_or_non_binary(bad):
    with pytest.raises(ml.InputError):
        prompts.key_slice(bad)


def test_box3d_is_tight_and_inclusive(label):
    wm = label == 1
    x0, y0, z0, x1, y1, z1 = prompts.box3d_from_mask(wm).astype(int)
    inside = np.zeros_like(wm)
    inside[z0:z1 + 1, y0:y1 + 1, x0:x1 + 1] = True
    assert not (wm & ~inside).any()                      # nothing outside the box
    for face in (wm[z0], wm[z1], wm[:, y0], wm[:, y1], wm[:, :, x0], wm[:, :, x1]):
        assert face.any()                                # every face touches the target


def test_recist_axes_of_a_real_mask(label):
    ventricles = (label == 3)[prompts.key_slice(label == 3)]
    (p1, p2), (q1, q2) = prompts.recist_from_mask(ventricles)
    ys, xs = np.nonzero(ventricles)
    longest = pdist(np.stack([xs, ys], 1).astype(float)).max()
    assert np.hypot(p2[0] - p1[0], p2[1] - p1[1]) == pytest.approx(longest)
    for p in (p1, p2):
        assert ventricles[int(round(p[1])), int(round(p[0]))]   # end points are target pixels
    u, v = np.subtract(p2, p1), np.subtract(q2, q1)
    assert abs(np.dot(u, v)) / (np.linalg.norm(u) * np.linalg.norm(v)) < 1e-6   # perpendicular
    box = ml.box_from_recist(p1, p2, short_axis=(q1, q2), image_shape=ventricles.shape)
    x0, y0, x1, y1 = box
    inside = (xs >= x0 - 1) & (xs <= x1 + 1) & (ys >= y0 - 1) & (ys <= y1 + 1)
    assert inside.mean() > 0.95


def test_recist_refuses_a_single_pixel():
    m = np.zeros((8, 8), bool)
    m[3, 3] = True
    with pytest.raises(ml.InputError, match="fewer than 2 pixels"):
        prompts.recist_from_mask(m)


def test_boxes_to_stored_lands_on_the_stored_masks(tmp_path):
    """The manifest box mapped to stored pixels matches the box of the stored (resized) mask."""
    src = samples.brain_mri_dir()
    ml.preprocess([(src / "sub-02.nii.gz", src / "sub-02_label.nii.gz")], tmp_path / "ds", progress=False)
    ds = open_dataset(tmp_path / "ds")
    m = ds.manifest
    boxes = np.concatenate([prompts.boxes_to_stored(r[["x0", "y0", "x1", "y1"]].to_numpy(float),
                                                    (int(r["height"]), int(r["width"])), ds.image_size)
                            for _, r in m.iterrows()])
    stored = np.stack([ml.box_from_mask(ds.mask(p)) for p in m["mask"]])
    scale = ds.image_size / np.maximum(m["height"], m["width"]).to_numpy(float)
    # a pixel's extent is `scale` wide: the stored extreme pixel lies within one scaled pixel
    assert np.all(np.abs(boxes - stored) <= scale[:, None] + 1.0)
    assert np.median(np.abs(boxes - stored)) < 1.0
    with pytest.raises(ml.InputError):
        prompts.boxes_to_stored([1, 2, 3], (10, 10), 256)
