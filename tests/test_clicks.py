"""Clicks: point and mask-input prompts through the one seam, on every backend; validation; the click decoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.clicks import next_click
from medsam_lite.model.clickrule import DecoderRule
from medsam_lite.model.inference import decode_logits


def _dice(a, b):
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * (a & b).sum() / total


@pytest.fixture(scope="module")
def ct_slice():
    """A real CT slice (HU) with its liver and spleen masks (case-02 of the bundled CT sample)."""
    image = io.read_volume(samples.ct_abdomen_dir() / "case-02.nii.gz").array
    label = io.read_volume(samples.ct_abdomen_dir() / "case-02_label.nii.gz").array
    z = int(np.argmax((label == 5).sum(axis=(1, 2))))
    return image[z], label[z] == 5, label[z] == 1


@pytest.fixture(scope="module")
def torch_model():
    return ml.load_model(backend="torch")


@pytest.fixture(scope="module")
def predictor(torch_model, ct_slice):
    p = ml.Predictor(torch_model)
    p.set_image(ct_slice[0], modality="CT")
    return p


def _a_miss(mask, truth):
    """An XY point inside the truth the mask missed (else inside the truth)."""
    ys, xs = np.nonzero(truth & ~mask) if (truth & ~mask).any() else np.nonzero(truth)
    return [float(xs[len(xs) // 2]), float(ys[len(ys) // 2])]


def test_box_only_is_the_published_decoder_bit_for_bit(torch_model, predictor, ct_slice):
    _, liver, spleen = ct_slice
    boxes = np.stack([ml.box_from_mask(liver), ml.box_from_mask(spleen)])
    masks, scores, logits = predictor.predict(boxes, return_logits=True)
    emb, geom = predictor.embedding.tensor, predictor.geometry
    prompt = torch.from_numpy(geom.box_prompt(boxes))
    with torch.no_grad():  # the published decoder itself, called as before any click support existed
        sparse, dense = torch_model.prompt_encoder(points=None, boxes=prompt[:, None, :], masks=None)
        low, iou = torch_model.mask_decoder(image_embeddings=emb, image_pe=torch_model.prompt_encoder.get_dense_pe(),
                                            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                            multimask_output=False)
    expected = geom.logits_to(low, geom.original_hw).numpy()
    np.testing.assert_array_equal(logits, expected)
    np.testing.assert_array_equal(scores, iou[:, 0].numpy())
    assert _dice(masks[0], liver) > 0.8


def test_points_and_mask_input_reach_the_decoder(torch_model, predictor, ct_slice):
    _, liver, _ = ct_slice
    box = ml.box_from_mask(liver)
    masks, _, logits = predictor.predict(box, return_logits=True)
    point = _a_miss(masks[0], liver)
    raw = DecoderRule()  # the decoder's own answer (no click rule)
    with_click = predictor.predict(box, points=[point], point_labels=[1], return_logits=True, click_rule=raw)[2]
    with_mask = predictor.predict(box, mask_input=logits, return_logits=True)[2]
    both = predictor.predict(box, points=[point], point_labels=[1], mask_input=logits, return_logits=True)[2]
    for other in (with_click, with_mask, both):
        assert other.shape == logits.shape and not np.array_equal(other, logits)
    # the same prompt in model pixels straight into the decoder: the seam maps XY by the geometry's scale
    geom = predictor.geometry
    sx, sy = geom.scale_xy
    pts = torch.tensor([[[point[0] * sx, point[1] * sy]]], dtype=torch.float32)
    with torch.no_grad():
        low, _ = decode_logits(torch_model, predictor.embedding.tensor, torch.from_numpy(geom.box_prompt(box[None])),
                               pts, torch.ones(1, 1))
    np.testing.assert_allclose(with_click, geom.logits_to(low, geom.original_hw).numpy(), atol=1e-3)
    # points only (SAM's padding point): N targets from N×K×2
    two = predictor.predict(points=[[point], [_a_miss(np.zeros_like(liver), ct_slice[2])]], point_labels=[[1], [1]])[0]
    assert two.shape == (2, *liver.shape)


@pytest.fixture(scope="module")
def new_export_cache(tmp_path_factory):
    """An empty export cache for the module: the exports are made by this code, not found from an earlier
    version; the second backend takes the first's ONNX files (the cache's "same ONNX, another backend")."""
    return tmp_path_factory.mktemp("export_cache")


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_backends_agree_with_torch_on_points_and_mask_input(backend, predictor, ct_slice, new_export_cache,
                                                            monkeypatch):
    monkeypatch.setenv("MEDSAM_LITE_CACHE", str(new_export_cache))
    _, liver, spleen = ct_slice
    compiled = ml.Predictor(ml.load_model(backend=backend))
    compiled.set_embedding(predictor.embedding)
    boxes = np.stack([ml.box_from_mask(liver), ml.box_from_mask(spleen)])
    _, _, logits = predictor.predict(boxes, return_logits=True)
    points = [[_a_miss(np.zeros_like(liver), liver), [5.0, 5.0]], [_a_miss(np.zeros_like(spleen), spleen), [6.0, 9.0]]]
    labels = [[1, 0], [1, 0]]
    prompts = [dict(boxes=boxes, points=points, point_labels=labels),
               dict(boxes=boxes, mask_input=logits),
               dict(boxes=boxes, points=points, point_labels=labels, mask_input=logits),
               dict(points=points, point_labels=labels)]
    for prompt in prompts:
        ref, ref_scores = predictor.predict(**prompt)
        got, scores = compiled.predict(**prompt)
        for a, b in zip(ref, got):
            assert _dice(a, b) >= 0.999, (backend, sorted(prompt))
        np.testing.assert_allclose(scores, ref_scores, atol=1e-3)
    assert compiled.model.runtime.name == backend
    # the mask input is resized in numpy, not by torch right before the graph (torch's OpenMP workers
    # spinning after it slowed the graph), with torch's bits: the same logits as the torch resize gives
    import torch.nn.functional as F

    from medsam_lite.model import inference

    prompt = dict(boxes=boxes, points=points, point_labels=labels, mask_input=logits, return_logits=True)
    with monkeypatch.context() as m:
        m.setattr(inference, "_mask_input_in_numpy", lambda *a: False)
        via_torch = compiled.predict(**prompt)[2]
    interpolate = F.interpolate

    def no_antialias(*args, **kwargs):
        assert not kwargs.get("antialias"), "the mask input was resized by torch"
        return interpolate(*args, **kwargs)

    monkeypatch.setattr(F, "interpolate", no_antialias)
    np.testing.assert_array_equal(compiled.predict(**prompt)[2], via_torch)


@pytest.mark.parametrize("prompt, words", [
    (dict(points=[[-3, 10]], point_labels=[1]), "outside"),
    (dict(points=[[10, 10_000]], point_labels=[1]), "outside"),
    (dict(points=[[10, 10]], point_labels=[2]), "1 (foreground) or 0"),
    (dict(points=[[10, 10]]), "need point_labels"),
    (dict(point_labels=[1]), "without points"),
    (dict(points=[[10, 10], [20, 20]], point_labels=[1]), "one label per point"),
    (dict(mask_input=np.zeros((3, 3))), "give a box"),
    (dict(box=True, mask_input=np.zeros((64, 64), np.float32)), "mask_input must be the logits"),
    (dict(box=True, mask_input=np.zeros((2, 1, 1), np.float32)), "mask_input must be the logits"),
    (dict(box=2, points=[[10, 10]], point_labels=[1]), "N×K×2 with N = 2"),
])
def test_bad_click_prompts_are_refused(predictor, ct_slice, prompt, words):
    prompt = dict(prompt)
    box = prompt.pop("box", None)
    if box:
        prompt["boxes"] = np.repeat(ml.box_from_mask(ct_slice[1])[None], int(box), axis=0)
    with pytest.raises(ml.InputError, match=words.replace("(", r"\(").replace(")", r"\)")):
        predictor.predict(**prompt)


def test_a_model_without_click_decoder_runs_points_on_its_own_decoder(predictor, ct_slice):
    _, liver, _ = ct_slice
    plain = ml.load_model(backend="torch", click_decoder=False)
    assert plain.click_decoder is None
    assert plain.prompt_parts(clicks=True) == (plain.prompt_encoder, plain.mask_decoder)
    other = ml.Predictor(plain)
    other.set_embedding(predictor.embedding)
    box = ml.box_from_mask(liver)
    np.testing.assert_array_equal(other.predict(box)[0], predictor.predict(box)[0])  # box-only: the same


# ------------------------------------------------------------------ the robot user and the click metric
def test_the_robot_clicks_the_interior_of_the_largest_error():
    truth = np.zeros((60, 80), bool)
    truth[10:31, 20:41] = True  # 21×21 square, centre (x=30, y=20)
    assert next_click(np.zeros_like(truth), truth) == (30, 20, 1)  # a miss: foreground click
    pred = truth.copy()
    pred[40:55, 50:75] = True  # a false positive larger than any miss
    pred[10:13, 20:41] = False  # a small miss
    x, y, label = next_click(pred, truth)
    assert label == 0 and y == 47 and 57 <= x <= 67  # 8 px from the 15×25 blob's border: its middle row
    assert next_click(truth, truth) is None
    rng = np.random.default_rng(0)
    for _ in range(20):  # training's random clicks stay inside the largest error region
        x, y, label = next_click(pred, truth, rng)
        assert label == 0 and pred[y, x] and not truth[y, x] and 40 <= y < 55


def test_clicks_to_reach_counts_clicks_after_the_box():
    assert ml.metrics.clicks_to_reach([0.9, 0.95], 0.85) == 0
    assert ml.metrics.clicks_to_reach([0.5, 0.8, 0.91, 0.7], 0.9) == 2
    assert ml.metrics.clicks_to_reach([0.5, 0.6, 0.7], 0.9) == 2  # never reached: capped at the clicks made


def test_simulate_clicks_on_a_real_ct_slice(predictor, ct_slice):
    hu, liver, _ = ct_slice
    box = ml.box_from_mask(liver)
    dices = ml.simulate_clicks(predictor.model, predictor.embedding, liver, box, n_clicks=2)
    assert dices.shape == (3,) and ((dices >= 0) & (dices <= 1)).all()
    assert dices[0] == ml.dice(predictor.predict(box)[0][0], liver)  # the box alone: the published decoder
    with pytest.raises(ml.InputError, match="truth"):
        ml.simulate_clicks(predictor.model, predictor.embedding, liver[:-1], box)
    with pytest.raises(ml.InputError, match="n_clicks"):
        ml.simulate_clicks(predictor.model, predictor.embedding, liver, box, n_clicks=-1)
    # the second robot: each click a random pixel of the largest error region (seeded: repeatable)
    random = [ml.simulate_clicks(predictor.model, predictor.embedding, liver, box, n_clicks=2,
                                 rng=np.random.default_rng(4)) for _ in range(2)]
    np.testing.assert_array_equal(random[0], random[1])
    assert random[0][0] == dices[0]  # the same box
    with pytest.raises(ml.InputError, match="rng"):
        ml.simulate_clicks(predictor.model, predictor.embedding, liver, box, rng=4)


@pytest.fixture(scope="module")
def liver_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("clicks")
    # case-03 is a slab of the scan case-01/02 are cut from: not held out, and preprocess says so
    with pytest.warns(UserWarning, match=r"test case\(s\) \['case-03'\] share a source scan with training case\(s\) "
                      r"\(case-03 with case-01, case-02\).*slabs of one scan.*Split by patient"):
        ml.preprocess(samples.ct_abdomen_dir(), root / "ds", modality="CT", labels=[1, 5], test_cases=["case-03"],
                      progress=False)
    assert "case-03" in json.loads((root / "ds" / "dataset.json").read_text())["shared_sources"]
    return root / "ds"


def test_finetune_with_clicks_trains_and_saves_the_prompt_encoder(liver_dataset, torch_model, tmp_path):
    run = ml.finetune(liver_dataset, tmp_path / "clicks", torch_model, epochs=1, lr=1e-4, cases=["case-01", "case-02"],
                      max_slices_per_case=2, clicks=2, val_fraction=0, progress=False)
    ckpt = torch.load(run.best, map_location="cpu", weights_only=True)
    assert ckpt["clicks"] == "2" and json_clicks(ckpt) == 2
    base = torch_model.state_dict()
    changed = [k for k, v in ckpt["model"].items() if k.startswith("prompt_encoder.") and not torch.equal(v, base[k])]
    assert any(k.startswith(("prompt_encoder.point_embeddings.0.", "prompt_encoder.point_embeddings.1.")) for k in changed)
    assert any("mask_downscaling" in k for k in changed)  # the mask input is trained too
    tuned = ml.load_model(checkpoint=run.best, backend="torch")
    assert tuned.click_decoder is None  # its own decoder answers clicks
    assert tuned.prompt_parts(clicks=True) == (tuned.prompt_encoder, tuned.mask_decoder)
    for k in changed:
        assert torch.equal(tuned.state_dict()[k], ckpt["model"][k])
    plain = ml.finetune(liver_dataset, tmp_path / "boxes", torch_model, epochs=1, lr=1e-4, cases=["case-01", "case-02"],
                        max_slices_per_case=2, val_fraction=0, progress=False)
    saved = torch.load(plain.best, map_location="cpu", weights_only=True)
    assert "clicks" not in saved and all(k.startswith("mask_decoder.") for k in saved["model"])


def json_clicks(ckpt):
    import json

    return json.loads(ckpt["config"])["clicks"]


def test_evaluate_with_clicks_adds_dice_at_k_and_noc(liver_dataset, torch_model):
    with pytest.warns(UserWarning, match=r"share a source scan.*NoC report"):  # the test split is not held out
        per_case, per_label = ml.evaluate(torch_model, liver_dataset, cases=["case-03"], max_slices_per_case=3,
                                          clicks=2, progress=False)
    plain, _ = ml.evaluate(torch_model, liver_dataset, cases=["case-03"], max_slices_per_case=3, progress=False)
    np.testing.assert_array_equal(per_case["dsc"].to_numpy(), plain["dsc"].to_numpy())  # box-only unchanged
    for col in ("dsc@1", "dsc@2", "noc85", "noc90"):
        assert col in per_case and col in per_label
    steps = per_case[["dsc", "dsc@1", "dsc@2"]].to_numpy()
    for row, noc in zip(steps, per_case["noc90"]):
        assert noc == ml.metrics.clicks_to_reach(row, 0.9)
    assert per_case["noc85"].between(0, 2).all()


def test_the_shipped_click_decoder_answers_clicks_and_only_clicks(predictor, ct_slice):
    from medsam_lite.model.checkpoints import CLICK_DECODER

    assert CLICK_DECODER.is_file()  # shipped in the package (pyproject package-data)
    shipped = ml.load_model(backend="torch")
    assert shipped.click_decoder is not None
    assert shipped.prompt_parts(clicks=False) == (shipped.prompt_encoder, shipped.mask_decoder)
    with_decoder = ml.Predictor(shipped)
    with_decoder.set_embedding(predictor.embedding)  # predictor: click_decoder too; compare with a plain model
    plain = ml.Predictor(ml.load_model(backend="torch", click_decoder=False))
    plain.set_embedding(predictor.embedding)
    _, liver, _ = ct_slice
    box = ml.box_from_mask(liver)
    a, b = with_decoder.predict(box, return_logits=True), plain.predict(box, return_logits=True)
    np.testing.assert_array_equal(a[2], b[2])  # box only: the published decoder, bit for bit
    click = dict(points=[_a_miss(a[0][0], liver)], point_labels=[1], mask_input=a[2],
                 click_rule=DecoderRule())
    assert not np.array_equal(with_decoder.predict(box, **click)[0], plain.predict(box, **click)[0])
