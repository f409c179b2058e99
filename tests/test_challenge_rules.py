"""``medsam-lite challenge`` follows the published 3D rules: its masks equal an independent eager-torch
implementation of ``CVPR24_LiteMedSAM_infer.py`` (tests/published_reference.py) on a real CT case."""

from __future__ import annotations

import numpy as np
import pytest

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.interactive.challenge import segment_case
from medsam_lite.interactive.propagation import published_box, propagate_published
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
    u8, boxes, lab = ct_case
    reference = Published(cache=True)
    want = reference.case_3d(u8, boxes)
    case = ChallengeCase("3DBox_CT_0001.npz", True, u8, boxes.astype(np.float64), (3.0, 3.0, 3.0), None)
    got = segment_case(case, torch_model)
    assert got.shape == want.shape and got.dtype == np.uint8
    for label in (1, 2, 3):
        z0, z1 = boxes[label - 1, 2], boxes[label - 1, 5]
        inner = np.zeros(len(u8), bool)
        inner[z0 + 1:z1] = True
        inner[int((z1 - z0) / 2 + z0)] = True
        assert not (got == label)[~inner].any(), f"label {label} outside the published slice range"
        mismatch = int(((got == label) != (want == label)).sum())
        assert mismatch == 0, f"label {label}: {mismatch} voxels differ from the published loop"
    # the path segments something real: the liver box finds the liver
    assert ml.dice(got == 1, lab == 5) > 0.5


def test_each_slice_is_encoded_once_for_all_boxes(ct_case, torch_model):
    u8, boxes, _ = ct_case
    vp = ml.VolumePredictor(u8, model=torch_model, axis=0)
    for label, box in enumerate(boxes, start=1):
        propagate_published(vp, box, label)
    needed = set()
    for x0, y0, z0, x1, y1, z1 in boxes:
        mid = int((z1 - z0) / 2 + z0)
        needed |= {mid, *range(z0 + 1, z1)}
    assert vp.encoder_calls == len(needed) and set(vp.embeddings.keys()) == needed


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
