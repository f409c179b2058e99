"""The headless AnnotationSession on the real CT sample (case-01 of data_samples/ct_abdomen, 3 mm
TotalSegmentator example; labels 1 spleen, 5 liver): boxes → masks, undo, moves, the label map
with the scan's geometry, and a saved case that ``preprocess`` reads (issue 18 item 5, issue 20
item 6). Slices 8 and 9 are encoded once per module; every session takes their embeddings."""

from __future__ import annotations

import io as _io
import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import medsam_lite as ml
from medsam_lite.model.clickrule import DecoderRule
from medsam_lite import io, samples
from medsam_lite.interactive.session import AnnotationSession
from medsam_lite.io.cases import find_cases

LABELS = {1: "spleen", 5: "liver"}
Z = 8  # case-01 slice 8: spleen 234 px, liver 675 px
# Tight spleen box on slice 8 with the pretrained LiteMedSAM (CT window, published recipe): Dice 0.953
# (0.92 on slice 9). A box around the wrong place (the liver's) gives < 0.1 against the spleen.
SPLEEN_DICE_MIN = 0.85


@pytest.fixture(scope="module")
def ct(model):
    """``(volume, label array, EmbeddingCache with slices 8 and 9)``."""
    d = samples.ct_abdomen_dir()
    volume = io.read_volume(d / "case-01.nii.gz")
    label = io.read_volume(d / "case-01_label.nii.gz").array
    first = AnnotationSession(volume, model, LABELS, modality="CT")
    for z in (Z, Z + 1):
        first.set_slice(z)
    assert first.encoder_calls == 2
    return volume, label, first.embeddings


def _session(ct, model, labels=LABELS) -> AnnotationSession:
    volume, _, embeddings = ct
    s = AnnotationSession(volume, model, labels, modality="CT")
    s.embeddings.update(embeddings)  # the same scan, normalization and encoder: the same embeddings
    return s


def _box(label, z, value):
    return ml.box_from_mask(label[z] == value)


def _robot_click(mask, truth):
    """The next click of the standard robot user: the interior point (farthest from its border) of
    the largest error region; positive on a miss, negative on a false positive."""
    fn, fp = truth & ~mask, mask & ~truth
    err, positive = (fn, True) if fn.sum() >= fp.sum() else (fp, False)
    regions, _ = ndimage.label(err)
    largest = regions == 1 + int(np.argmax(np.bincount(regions.ravel())[1:]))
    y, x = np.unravel_index(np.argmax(ndimage.distance_transform_edt(np.pad(largest, 1))[1:-1, 1:-1]), mask.shape)
    return float(x), float(y), positive


def _nearest_change(before, after, x, y) -> float:
    ys, xs = np.nonzero(before ^ after)
    return float(np.hypot(xs - x, ys - y).min()) if len(xs) else np.inf


def test_boxes_give_masks_without_reencoding(ct, model):
    volume, label, embeddings = ct
    s = _session(ct, model)
    spleen = s.add_box(_box(label, Z, 1), "spleen", slice=Z)
    assert ml.dice(spleen.mask, label[Z] == 1) >= SPLEEN_DICE_MIN
    liver = s.add_box(_box(label, Z, 5), "liver", slice=Z)
    assert s.encoder_calls == 0 and s.decoder_calls == 2        # cached slice; one decode per box
    assert liver.slice == Z and liver.points.shape == (0, 2) and liver.mask.any()
    np.testing.assert_array_equal(s.get(spleen.id).mask, spleen.mask)

    # VolumePredictor (another path over the same seam) normalizes the volume the same way and,
    # on the same embedding, decodes the same mask.
    vp = ml.VolumePredictor(volume, model, axis=0, modality="CT")
    np.testing.assert_array_equal(vp.slice_image(Z), s.image[Z])
    vp.embeddings.update(embeddings)
    masks, _ = vp.predict_slice(Z, _box(label, Z, 1))
    np.testing.assert_array_equal(masks[0], spleen.mask)

    # label map: the scan's shape, class values as given, the smaller mask wins where they overlap
    lm = s.to_label_map()
    assert lm.shape == volume.array.shape and lm.dtype == np.uint8
    assert set(np.unique(lm)) <= {0, 1, 5} and not np.delete(lm, Z, axis=0).any()
    np.testing.assert_array_equal(lm[Z] == 1, spleen.mask)
    np.testing.assert_array_equal(lm[Z] == 5, liver.mask & ~spleen.mask)
    np.testing.assert_array_equal(s.masks["liver"][Z], liver.mask)
    assert [(p.slice, p.label) for p in s.prompts] == [(Z, "spleen"), (Z, "liver")]


def test_undo_takes_back_boxes_and_moves(ct, model):
    _, label, _ = ct
    s = _session(ct, model)
    spleen = s.add_box(_box(label, Z, 1), "spleen", slice=Z)
    liver = s.add_box(_box(label, Z + 1, 5), "liver", slice=Z + 1)
    before = (liver.box.copy(), liver.mask.copy(), liver.logits.copy(), liver.score)
    s.move_box(liver, liver.box + [12, 0, 12, 0])                  # shifted right: a new mask
    assert s.decoder_calls == 3 and not np.array_equal(liver.mask, before[1])
    assert s.undo() is liver                                        # the move is taken back exactly
    np.testing.assert_array_equal(liver.box, before[0])
    np.testing.assert_array_equal(liver.mask, before[1])
    np.testing.assert_array_equal(liver.logits, before[2])
    assert liver.score == before[3] and s.decoder_calls == 3
    s.relabel(spleen, "liver")                                      # not a prompt: not undone
    assert s.undo() is liver and [o.id for o in s.objects] == [spleen.id]
    assert s.undo() is spleen and s.objects == [] and s.undo() is None
    assert s.to_label_map().max() == 0

    a, b = s.add_boxes([_box(label, Z, 1), _box(label, Z, 5)], ["spleen", "liver"], slice=Z)
    s.remove(b)
    assert s.undo() is a and s.undo() is None                       # the removed object is skipped
    with pytest.raises(ml.InputError, match="not in this session"):
        s.move_box(b, b.box)


# The liver's tight box on slice 8 also holds stomach and bowel: box-only Dice 0.50. The robot's
# first click (background, in the largest false-positive region) changes the mask at 0 px from the
# click with the shipped click decoder (Dice 0.50 → 0.84), at 7.8 px with the pretrained decoder
# alone (its point embeddings untrained; 0.50 → 0.53); the second click at 1.0 / 5.0 px.
NEAR_PX = 12
CLICK_DECODER_GAIN = 0.2  # first-click Dice gain on this liver with the click decoder alone (measured +0.34)
LOCAL_RULE_GAIN = 0.05    # the same click through the default click rule (issue 31's bar for a click's gain). The
# default is the rule chosen leave one patient out (clickrule.BY_PATIENT): +0.084 here, on a TRAINING patient's
# liver; LocalRule()'s defaults gain +0.128 here but less on the held-out patients (bench/RESULTS.md, "Clicks by patient")


def test_clicks_correct_near_the_click_with_the_previous_logits_and_undo(ct, model):
    _, label, embeddings = ct
    truth = label[Z] == 5
    s = _session(ct, model)
    liver = s.add_box(_box(label, Z, 5), "liver", slice=Z)
    states = [(liver.mask.copy(), liver.logits.copy())]
    predictor = ml.Predictor(model)                   # the same prompts, straight through the Predictor
    predictor.set_embedding(embeddings.get(Z))
    clicks = []
    for _ in range(2):
        x, y, positive = _robot_click(liver.mask, truth)
        clicks.append((x, y, positive))
        s.add_click(liver, x, y, positive)
        masks, _, logits = predictor.predict(liver.box, points=[c[:2] for c in clicks],
                                             point_labels=[int(c[2]) for c in clicks],
                                             mask_input=states[-1][1], return_logits=True)
        np.testing.assert_array_equal(liver.mask, masks[0])  # every click so far + the previous logits
        np.testing.assert_allclose(liver.logits, logits[0], atol=1e-5)
        assert _nearest_change(states[-1][0], liver.mask, x, y) <= NEAR_PX
        if model.click_decoder is not None and len(clicks) == 1:
            assert ml.dice(liver.mask, truth) >= ml.dice(states[0][0], truth) + LOCAL_RULE_GAIN
            alone = predictor.predict(liver.box, points=[c[:2] for c in clicks], point_labels=[int(c[2]) for c in clicks],
                                      mask_input=states[-1][1], click_rule=DecoderRule())[0][0]
            assert ml.dice(alone, truth) >= ml.dice(states[0][0], truth) + CLICK_DECODER_GAIN
        states.append((liver.mask.copy(), liver.logits.copy()))
    assert s.decoder_calls == 3 and liver.points.tolist() == [list(c[:2]) for c in clicks]
    assert s.summary()["prompts"][0]["clicks"] == [[c[0], c[1], int(c[2])] for c in clicks]
    for mask, logits in states[-2::-1]:               # undo, click by click, back to the box
        assert s.undo() is liver
        np.testing.assert_array_equal(liver.mask, mask)
        np.testing.assert_array_equal(liver.logits, logits)
    assert liver.points.shape == (0, 2) and s.undo() is liver and s.objects == []


def test_saved_case_keeps_the_geometry_and_preprocess_reads_it(ct, model, tmp_path):
    volume, label, _ = ct
    s = _session(ct, model)
    s.add_boxes([_box(label, Z, 1), _box(label, Z, 5)], ["spleen", "liver"], slice=Z)
    s.add_box(_box(label, Z + 1, 1), "spleen", slice=Z + 1)
    lm = s.to_label_map()

    back = io.read_volume(s.save(tmp_path / "labels.nrrd"))
    assert back.same_geometry(volume)
    np.testing.assert_array_equal(back.array, lm)

    source = tmp_path / "source"
    image_path, label_path = s.save_case(source)
    assert (image_path.name, label_path.name) == ("case-01.nii.gz", "case-01_label.nii.gz")
    scan, saved = io.read_volume(image_path), io.read_volume(label_path)
    assert scan.same_geometry(volume) and saved.same_geometry(volume)
    np.testing.assert_array_equal(scan.array, volume.array)         # original HU, not the normalized slices
    np.testing.assert_array_equal(saved.array, lm)
    assert json.loads((source / "labels.json").read_text()) == {"1": "spleen", "5": "liver"}
    assert s.save_case(source) == (image_path, label_path)          # again: same scan, label map rewritten

    manifest = ml.preprocess(source, tmp_path / "dataset", modality="CT", min_pixels=1, progress=False)
    rows = {(int(r.slice), r.label_name): r for r in manifest.itertuples()}
    assert set(rows) == {(Z, "spleen"), (Z, "liver"), (Z + 1, "spleen")}
    for (z, name), r in rows.items():
        target = lm[z] == {"spleen": 1, "liver": 5}[name]
        assert r.case == "case-01" and r.pixels == target.sum()
        np.testing.assert_array_equal([r.x0, r.y0, r.x1, r.y1], ml.box_from_mask(target))


def test_save_case_refuses_conflicts_and_writes_nothing(ct, model, tmp_path):
    volume, label, _ = ct
    s = _session(ct, model)
    s.add_box(_box(label, Z, 1), "spleen", slice=Z)
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "labels.json").write_text(json.dumps({"1": "liver"}))
    with pytest.raises(ml.InputError, match="labels.json"):
        s.save_case(clash)
    assert sorted(p.name for p in clash.iterdir()) == ["labels.json"]

    other = tmp_path / "other"
    io.write_volume(volume.array[::-1].copy(), other / "case-01.nii.gz", like=volume)  # another scan, same name
    with pytest.raises(ml.InputError, match="another scan"):
        s.save_case(other)
    assert sorted(p.name for p in other.iterdir()) == ["case-01.nii.gz"]
    for bad in ("x_label", "a/b", ""):
        with pytest.raises(ml.InputError, match="case name"):
            s.save_case(tmp_path / "bad", case=bad)
    assert not (tmp_path / "bad").exists()


def test_a_2d_png_case(model, brain_slice, tmp_path):
    image, truth = brain_slice
    s = AnnotationSession(io.read_volume(samples.sample_path("brain_slice.png")), model, ["brain"])
    s.add_box(ml.box_from_mask(truth > 0))
    assert not s.is_volume and s.prompts[0].slice is None
    image_path, label_path = s.save_case(tmp_path, case="slice01")
    [case] = find_cases(tmp_path)
    assert (case.name, case.image, case.label) == ("slice01", image_path, label_path)
    np.testing.assert_array_equal(io.read_volume(image_path).array, image)
    np.testing.assert_array_equal(io.read_volume(label_path).array, s.to_label_map())


@pytest.mark.parametrize("call, match", [
    (lambda s: s.add_click(1, 500, 10), "outside"),
    (lambda s: s.add_click(1, 10, 10, positive="yes"), "positive"),
    (lambda s: s.add_click(99, 10, 10), "not in this session"),
    (lambda s: s.add_box([10, 10, 40, 40], "kidney"), "not one of"),
    (lambda s: s.add_box([10, 10, 40, 40], slice=10), "slice"),
    (lambda s: s.add_boxes([[10, 10, 40, 40], [5, 5, 20, 20]], ["spleen"]), "one label per box"),
    (lambda s: s.save(s.path / "labels.png"), "PNG"),
])
def test_bad_prompts_raise_input_error_and_change_nothing(ct, model, tmp_path, call, match):
    _, label, _ = ct
    s = _session(ct, model)
    s.set_slice(Z)
    obj = s.add_box(_box(label, Z, 1), "spleen")
    s.path = tmp_path
    state = (s.decoder_calls, obj.mask.copy(), len(s.objects))
    with pytest.raises(ml.InputError, match=match):
        call(s)
    assert (s.decoder_calls, len(s.objects)) == (state[0], state[2])
    np.testing.assert_array_equal(obj.mask, state[1])


@pytest.mark.parametrize("labels, match", [({0: "bg"}, "1…65535"), ({1: "a", 2: "a"}, "distinct"), (3, "labels")])
def test_bad_labels(model, labels, match):
    with pytest.raises(ml.InputError, match=match):
        AnnotationSession(np.zeros((4, 8, 8), np.int16), model, labels)


def test_box_prompter_is_a_view_and_takes_clicks_as_the_front_end_sends_them(model, brain_slice):
    """Messages as JupyterLab delivers them: a drawn box (0×0 on mouse-down, selected, then the real
    box), a click inside it (the widget's module reports it), a Shift-click on empty canvas (the
    widget first adds a 0×0 box there and selects it), the undo button."""
    from medsam_lite.interactive.canvas import CLICKS_IN_BROWSER, Canvas
    from medsam_lite.interactive.widgets import BoxPrompter

    assert CLICKS_IN_BROWSER and "__medsamLiteRender" in Canvas._esm and Canvas._esm.count("export default") == 1
    image, label = brain_slice
    truth = label > 0
    h, w = image.shape
    box = np.clip(ml.box_from_mask(truth) + [-4, -4, 4, 4], 0, [w - 1, h - 1, w - 1, h - 1])
    prompter = BoxPrompter(image, model, labels=["brain", "ventricles"])
    canvas = prompter.canvas
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    canvas.bboxes = [{"x": x0, "y": y0, "width": 0, "height": 0, "label": "brain"}]
    canvas.selected_index = 0
    canvas.bboxes = [{"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0, "label": "brain"}]
    brain = prompter.selected
    assert brain is prompter.session.objects[0] and brain.label == "brain" and prompter.decoder_calls == 1
    before = brain.mask.copy()

    x, y, positive = _robot_click(brain.mask, truth)  # a miss inside the box: positive
    assert positive
    canvas._handle_custom_msg({"type": "medsam-lite-click", "x": x, "y": y, "shift": False}, [])
    assert brain.points.tolist() == [[x, y]] and brain.point_labels.tolist() == [1] and prompter.decoder_calls == 2
    assert _nearest_change(before, brain.mask, x, y) <= NEAR_PX
    shown = np.asarray(Image.open(_io.BytesIO(canvas.image_bytes)).convert("RGB"))
    assert shown[int(y), int(x)].tolist() == [0, 220, 0]                      # the click's marker
    assert "1 click" in prompter.status.value and len(canvas.bboxes) == 1

    canvas.bboxes = canvas.bboxes + [{"x": 1, "y": 1, "width": 0, "height": 0, "label": "brain"}]
    canvas.selected_index = 1
    canvas._handle_custom_msg({"type": "medsam-lite-click", "x": 1.0, "y": 1.0, "shift": True}, [])
    assert brain.point_labels.tolist() == [1, 0] and len(prompter.session.objects) == 1
    assert [b["width"] for b in canvas.bboxes] == [x1 - x0] and canvas.selected_index == 0  # the 0×0 box went
    prompter.click_mode.value = "background"
    prompter.click(2.0, 2.0)
    assert brain.point_labels.tolist() == [1, 0, 0] and "3 clicks" in prompter.status.value

    for n in (2, 1, 0):
        prompter.undo_button.click()
        assert len(brain.points) == n
    np.testing.assert_array_equal(brain.mask, before)
    prompter.undo_button.click()                                               # the box itself
    assert prompter.prompts == [] and canvas.bboxes == [] and prompter.label_map.max() == 0

    canvas._handle_custom_msg({"type": "medsam-lite-click", "x": 5.0, "y": 5.0, "shift": False}, [])
    assert "draw a box" in prompter.status.value and prompter.decoder_calls == 4  # reported, not raised
