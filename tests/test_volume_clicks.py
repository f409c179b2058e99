"""Clicks in 3D: per-slice points in VolumePredictor (predict_slice, propagation) and 3D label maps, on the real CT."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.clicks import next_click
from medsam_lite.interactive.propagation import grow_box
from medsam_lite.interactive.volprompts import decode_with_clicks

STOMACH, SPLEEN = 6, 1


@pytest.fixture(scope="module")
def ct():
    """Case-03 of the bundled real CT (10 slices of 101×122 at 3 mm) and its label map."""
    d = samples.ct_abdomen_dir()
    return io.read_volume(d / "case-03.nii.gz"), io.read_volume(d / "case-03_label.nii.gz").array


@pytest.fixture(scope="module")
def vp(ct):
    return ml.VolumePredictor(ct[0], ml.load_model(backend="torch"), modality="CT")


def _interior(region):
    """XY of the pixel of ``region`` farthest from its border."""
    dist = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x), float(y)


def test_a_click_on_a_slice_grows_the_mask_where_clicked(vp, ct, monkeypatch):
    """A box over the left half of the stomach misses the right half; a foreground click there pulls it in."""
    from medsam_lite.model.clickrule import DecoderRule

    # the decoder's whole answer: it grows the mask but not at the clicked pixel (outside the half box),
    # where the default click rule keeps the previous mask
    monkeypatch.setattr(vp.model, "click_rule", DecoderRule(), raising=False)
    truth = ct[1][4] == STOMACH
    box = ml.box_from_mask(truth)
    half = box.copy()
    half[2] = (box[0] + box[2]) / 2
    masks, scores, logits = vp.predict_slice(4, half, return_logits=True)
    assert masks.shape == (1, *vp.slice_hw) and logits.shape == (1, *vp.slice_hw) and scores.shape == (1,)
    missed = truth & ~masks[0]
    click = _interior(missed)
    after, _ = vp.predict_slice(4, half, [click], [1], mask_input=logits)
    assert (after[0] & missed).sum() > (masks[0] & missed).sum()  # gained pixels of the missed part
    assert ml.dice(after[0], truth) > ml.dice(masks[0], truth)
    # the same prompt through Predictor: one seam, the same mask bit for bit
    predictor = ml.Predictor(vp.model)
    predictor.set_embedding(vp.embed(4))
    same = predictor.predict(half, points=[click], point_labels=[1], mask_input=logits)[0]
    np.testing.assert_array_equal(same, after)


def test_per_slice_points_with_boxes_pair_target_by_target(vp, ct, monkeypatch):
    from medsam_lite.model.clickrule import DecoderRule

    # the decoder's whole answer: the click rule would keep a spleen the decoder did not change at the click
    monkeypatch.setattr(vp.model, "click_rule", DecoderRule(), raising=False)
    label = ct[1][4]
    boxes = np.stack([ml.box_from_mask(label == k) for k in (SPLEEN, STOMACH)])
    masks, _, logits = vp.predict_slice(4, boxes, return_logits=True)
    points = np.array([[_interior(label == SPLEEN)], [_interior(label == STOMACH)]], np.float32)  # N×K×2
    both, _ = vp.predict_slice(4, boxes, points, [[0], [1]], mask_input=logits)
    one, _ = vp.predict_slice(4, boxes[1], points[1], [1], mask_input=logits[1])  # K×2 for one target
    np.testing.assert_array_equal(both[1], one[0])
    assert not np.array_equal(both[0], masks[0])  # a background click in the spleen changed the spleen


def test_a_click_corrects_a_propagated_result_and_the_walk_goes_on_from_it(vp, ct, monkeypatch):
    from medsam_lite.model.clickrule import DecoderRule

    monkeypatch.setattr(vp.model, "click_rule", DecoderRule(), raising=False)  # as above: the decoder's answer
    label = ct[1]
    box = ml.box_from_mask(label[4] == STOMACH)
    plain = vp.predict(box, slice_index=4, progress=False)
    x, y, lab = next_click(plain[6], label[6] == STOMACH)
    fixed = vp.predict(box, slice_index=4, progress=False, clicks={6: ([[x, y]], [lab])})
    np.testing.assert_array_equal(fixed[:6], plain[:6])  # the walk down and up to the clicked slice: as before
    grown = grow_box(ml.box_from_mask(fixed[5]), 1.0, 0.05, None, vp.slice_hw)
    corrected, _ = decode_with_clicks(vp, 6, grown, np.float32([[x, y]]), np.float32([lab]))
    np.testing.assert_array_equal(fixed[6], corrected)  # box + click, the box-only logits as mask input
    assert not np.array_equal(fixed[6], plain[6])
    assert fixed[7].any()
    nxt, _ = vp.predict_slice(7, grow_box(ml.box_from_mask(fixed[6]), 1.0, 0.05, None, vp.slice_hw))
    np.testing.assert_array_equal(fixed[7], nxt[0])  # slice 7 propagated from the corrected slice 6


def test_a_clicked_slice_the_walk_does_not_reach_starts_its_own(vp, ct, monkeypatch):
    label = ct[1]
    zs = np.nonzero((label == SPLEEN).any(axis=(1, 2)))[0]
    ys, xs = np.nonzero((label == SPLEEN).any(axis=0))
    box3d = [xs.min(), ys.min(), zs.min(), xs.max(), ys.max(), zs.max()]
    calls = []
    real = type(vp).predict_slice

    def spy(self, index, boxes=None, points=None, *args, **kwargs):
        calls.append((index, None if boxes is None else np.asarray(boxes).ravel().tolist(), points is not None))
        return real(self, index, boxes, points, *args, **kwargs)

    monkeypatch.setattr(type(vp), "predict_slice", spy)
    click = _interior(label[8] == SPLEEN)
    out = vp.predict(box3d, slice_index=2, min_score=1.01, progress=False, clicks={8: ([click], [1])})
    # min_score > 1 drops every propagated slice: only the user's slice 2 and the clicked slice 8 remain
    assert out[2].any() and out[8].any()
    assert not out[[0, 1, 3, 4, 5, 6, 7, 9]].any()
    on8 = [c for c in calls if c[0] == 8]
    assert on8 == [(8, [float(v) for v in (xs.min(), ys.min(), xs.max(), ys.max())], False),
                   (8, [float(v) for v in (xs.min(), ys.min(), xs.max(), ys.max())], True)]  # 3D box's x, y + click


def test_label_map_with_per_slice_clicks(vp, ct, monkeypatch):
    from medsam_lite.model.clickrule import DecoderRule

    monkeypatch.setattr(vp.model, "click_rule", DecoderRule(), raising=False)  # the clicks reach the decoder
    label = np.where(np.isin(ct[1], (SPLEEN, STOMACH)), ct[1], 0)
    plain = ml.predict_volume_labels(vp, label, progress=False)
    truth = label[6] == STOMACH
    x, y, lab = next_click(plain[6] == STOMACH, truth)
    fixed = ml.predict_volume_labels(vp, label, progress=False, clicks={STOMACH: {6: ([[x, y]], [lab])}})
    np.testing.assert_array_equal(fixed[:6], plain[:6])  # the stomach's walk from its middle slice 4 reaches 6 last
    assert not np.array_equal(fixed[6] == STOMACH, plain[6] == STOMACH)


@pytest.mark.parametrize("clicks, words", [
    ({4: ([[500.0, 10.0]], [1])}, "outside"),
    ({4: ([[10.0, 10.0]], [2])}, "point_labels must be 1"),
    ({4: ([[10.0, 10.0]], None)}, "need point_labels"),
    ({4: [[10.0, 10.0]]}, "pair (points, point_labels)"),
    ({40: ([[10.0, 10.0]], [1])}, "outside the volume"),
    ({4: ([[[10.0, 10.0]], [[20.0, 20.0]]], [[1], [1]])}, "one target"),
    ([[10.0, 10.0]], "must be a dict"),
])
def test_bad_clicks_are_refused_before_any_slice_is_encoded(ct, clicks, words):
    fresh = ml.VolumePredictor(ct[0], ml.load_model(backend="torch"), modality="CT")
    box = ml.box_from_mask(ct[1][4] == STOMACH)
    with pytest.raises(ml.InputError) as err:
        fresh.predict(box, slice_index=4, progress=False, clicks=clicks)
    assert words in str(err.value)
    assert fresh.encoder_calls == 0


def test_bad_slice_prompts_and_label_clicks_are_refused_before_any_work(ct):
    fresh = ml.VolumePredictor(ct[0], ml.load_model(backend="torch"), modality="CT")
    box = ml.box_from_mask(ct[1][4] == STOMACH)
    hw = fresh.slice_hw
    cases = [
        (lambda: fresh.predict_slice(4), "give a box"),
        (lambda: fresh.predict_slice(4, box, point_labels=[1]), "without points"),
        (lambda: fresh.predict_slice(4, box, [[10, 10]], [1], mask_input=np.zeros((hw[0] + 1, hw[1]))), "mask_input"),
        (lambda: fresh.predict_slice(4, box, [[10, 10], [20, 20]], [1]), "one label per point"),
        (lambda: fresh.predict_slice(4, np.stack([box, box]), [[10, 10]], [1]), "2 boxes"),
        (lambda: fresh.predict([*box[:2], 3, *box[2:], 5], progress=False, clicks={7: ([[10, 10]], [1])}),
         "z-range"),
        (lambda: ml.predict_volume_labels(fresh, np.where(ct[1] == STOMACH, STOMACH, 0), progress=False,
                                          clicks={SPLEEN: {4: ([[10, 10]], [1])}}), "no prompt"),
    ]
    for call, words in cases:
        with pytest.raises(ml.InputError) as err:
            call()
        assert words in str(err.value), str(err.value)
    assert fresh.encoder_calls == 0


def test_a_3d_walks_slice_box_does_not_bound_the_clicks(vp, ct, monkeypatch):
    """The boxes a 3D walk decodes clicks with are grown from a neighbouring slice's mask, not drawn by the user:
    a rule with ``box_bound`` gets them without it (``without_box``); the user's own 2D box still bounds."""
    from dataclasses import replace

    from medsam_lite.model.clickrule import DEFAULT_RULE, DecoderRule, without_box

    bound = replace(DEFAULT_RULE, box_bound=True)
    assert without_box(bound) == replace(bound, box_bound=False) and without_box(bound) != bound
    plain = DecoderRule()
    assert without_box(plain) is plain
    monkeypatch.setattr(vp.model, "click_rule", bound, raising=False)
    truth = ct[1][4] == STOMACH
    box = ml.box_from_mask(truth)
    half = box.copy()
    half[2] = (box[0] + box[2]) / 2
    masks, _, logits = vp.predict_slice(4, half, return_logits=True)
    click = _interior(truth & ~masks[0])
    rules = []
    predict_slice = vp.predict_slice

    def spy(*args, **kwargs):
        rules.append(kwargs.get("click_rule"))
        return predict_slice(*args, **kwargs)

    monkeypatch.setattr(vp, "predict_slice", spy)
    mask, _ = decode_with_clicks(vp, 4, half, np.float32([click]), np.float32([1]))
    assert rules[-1] == without_box(bound)
    expected = predict_slice(4, half, [click], [1], mask_input=logits, click_rule=without_box(bound))[0][0]
    np.testing.assert_array_equal(mask, expected)
