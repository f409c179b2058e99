"""``medsam-lite challenge`` follows the published 3D rules: its masks equal an independent eager-torch
implementation of ``CVPR24_LiteMedSAM_infer.py`` (tests/published_reference.py) on a real CT case."""

from __future__ import annotations

import numpy as np
import pytest

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.app.challenge import segment_3d, segment_case
from medsam_lite.interactive.propagation import published_box
from medsam_lite.io.challenge import ChallengeCase
from published_reference import Published, get_bbox256, pad_image, resize_longest_side


@pytest.fixture(scope="module")
def torch_model():
    return ml.load_model(backend="torch")


@pytest.fixture(scope="module")
def ct_case():
    """Real CT case-01 slices 2–7 (6 slices, 101×122), W400/L40 uint8; 3D boxes of liver, spleen and
    the left kidney from the label (labels 1, 2, 3: the published box rule depends on the label value)."""
    folder = samples.ct_abdomen_dir()
    img = io.read_volume(folder / "case-01.nii.gz").array[2:8]
    lab = io.read_label(folder / "case-01_label.nii.gz").array[2:8]
    u8 = ml.normalize_intensity(img, "CT", (-160, 240))
    boxes = []
    for v in (5, 1, 3):
        z, y, x = np.nonzero(lab == v)
        boxes.append([x.min(), y.min(), z.min(), x.max(), y.max(), z.max()])
    return u8, np.array(boxes, np.int64), lab


def test_published_box_rule_depends_on_the_label_value_as_the_script_does():
    """A mask whose lowest pixel is alone in its 2×2 cell: INTER_AREA keeps it only for a value ≥ 2."""
    geometry = ml.load_model(backend="torch").geometry((512, 512))
    prev = np.zeros((512, 512), bool)
    prev[100:200, 150:300] = True
    prev[200, 200] = True  # a quarter of the cell rows 200–201: (v + 2) >> 2 is 0 for v = 1
    fallback = np.array([0, 0, 10, 10], np.float64)
    for label in (1, 2, 7):
        script = get_bbox256(pad_image(resize_longest_side(prev.astype(np.uint8) * label)))
        assert np.array_equal(published_box(prev, fallback, label, geometry), script), label
    assert not np.array_equal(published_box(prev, fallback, 1, geometry), published_box(prev, fallback, 2, geometry))
    assert np.array_equal(published_box(np.zeros_like(prev), fallback, 1, geometry), fallback)


def test_challenge_3d_path_equals_the_published_loop_on_real_ct(ct_case, torch_model):
    """segment_case's 3D path (segment_3d per box on one VolumePredictor) gives the script's masks
    exactly, and encodes each slice the boxes need once for all of them."""
    u8, boxes, lab = ct_case
    want = Published(cache=True).case_3d(u8, boxes)
    vp = ml.VolumePredictor(u8, model=torch_model, axis=0)
    got = np.zeros(u8.shape, np.uint8)
    for label, box in enumerate(boxes.astype(np.float64), start=1):
        got[segment_3d(vp, box, label)] = label
    needed = set()
    for label, (x0, y0, z0, x1, y1, z1) in enumerate(boxes, start=1):
        inner = {int((z1 - z0) / 2 + z0), *range(z0 + 1, z1)}
        needed |= inner
        outside = np.ones(len(u8), bool)
        outside[sorted(inner)] = False
        assert not (got == label)[outside].any(), f"label {label} outside the published slice range"
        mismatch = int(((got == label) != (want == label)).sum())
        assert mismatch == 0, f"label {label}: {mismatch} voxels differ from the published loop"
    assert vp.encoder_calls == len(needed) and set(vp.embeddings.keys()) == needed
    assert ml.dice(got == 1, lab == 5) > 0.5  # the liver box finds the liver


def test_challenge_2d_boxes_are_the_published_prompts(ct_case, torch_model):
    u8, _, lab = ct_case
    z = int(np.argmax((lab == 5).sum(axis=(1, 2))))
    rgb = np.repeat(u8[z][..., None], 3, axis=2)
    boxes = np.array([ml.box_from_mask(lab[z] == v) for v in (5, 1)], np.int64)
    want = Published(cache=True).case_2d(rgb, boxes)
    got = segment_case(ChallengeCase("2DBox_CT_0001.npz", False, rgb, boxes.astype(np.float64), None, None),
                       torch_model)
    assert np.array_equal(got, want)
    assert set(np.unique(got)) == {0, 1, 2}
