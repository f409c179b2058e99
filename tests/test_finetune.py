"""finetune(): decoder-only training on stored embeddings — repeatable, resumable, loadable, useful."""

import json

import numpy as np
import pytest
import torch

import medsam_lite as ml
from conftest import MAX_SLICES
from medsam_lite import samples
from medsam_lite.errors import InputError
from medsam_lite.train.config import choose_epoch
from medsam_lite.train.finetune import dice_bce_loss, jitter_boxes
from medsam_lite.train.losses import DiceBCELoss

TINY = dict(max_slices_per_case=2, lr=1e-4, batch_size=4, seed=3, progress=False)


@pytest.fixture(scope="module")
def dataset(small_dataset):
    return small_dataset


def _decoder(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _same(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def two_epochs(dataset, model, tmp_path_factory):
    before = {k: v.clone() for k, v in model.mask_decoder.state_dict().items()}
    result = ml.finetune(dataset, tmp_path_factory.mktemp("ft_a"), model, epochs=2, **TINY)
    after = model.mask_decoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "finetune must not modify the model passed in"
    return result


def test_outputs_and_history(two_epochs):
    r = two_epochs
    assert r.best.is_file() and r.last.is_file() and (r.last.parent / "history.csv").is_file()
    assert list(r.history["epoch"]) == [0, 1, 2]  # epoch 0: the pretrained decoder, validated first
    assert {"train_loss", "val_dice", "samples_per_s", "val_dice_white_matter"} <= set(r.history.columns)
    assert r.val_cases and not set(r.val_cases) & set(r.train_cases)
    assert r.history["val_dice"].between(0, 1).all() and (r.history["train_loss"].iloc[1:] > 0).all()
    assert np.isnan(r.history["train_loss"].iloc[0]) and r.history["train_samples"].iloc[0] == 0
    ckpt = torch.load(r.last, map_location="cpu", weights_only=True)  # only safe types inside
    assert ckpt["model_name"] == "lite_medsam" and ckpt["epoch"] == 2 and "optimizer" in ckpt
    assert all(k.startswith("mask_decoder.") for k in ckpt["model"])
    assert torch.load(r.best, map_location="cpu", weights_only=True)["epoch"] == r.best_epoch
    h = r.history.set_index("epoch")
    labels = [c for c in h.columns if c.startswith("val_dice_")]
    ok = [e for e in h.index if (h.loc[e, labels] >= h.loc[0, labels] - ml.FinetuneConfig().guard_tolerance).all()]
    assert r.best_epoch in ok and h.loc[r.best_epoch, "val_dice"] == h.loc[ok, "val_dice"].max()
    assert set(r.change) == {c[len("val_dice_"):] for c in labels} and "epoch 0" in r.summary


def test_checkpoint_loads_and_predicts(two_epochs, dataset, model):
    tuned = ml.load_model(checkpoint=two_epochs.best)
    trained = _decoder(two_epochs.best)
    state = tuned.state_dict()
    assert all(torch.equal(state[k], v) for k, v in trained.items())
    assert not all(torch.equal(model.state_dict()[k], v) for k, v in trained.items())
    assert torch.equal(state["image_encoder.patch_embed.seq.0.c.weight"],
                       model.state_dict()["image_encoder.patch_embed.seq.0.c.weight"])
    target = dataset.manifest[dataset.manifest["split"] == "test"].iloc[0]
    image = dataset.image(target["image"])
    sx, sy = image.shape[1] / target["width"], image.shape[0] / target["height"]
    box = np.array([target[c] for c in ("x0", "y0", "x1", "y1")]) * [sx, sy, sx, sy]  # stored pixels
    predictor = ml.Predictor(tuned)
    predictor.set_image(image)
    masks, scores = predictor.predict(box)
    assert masks.shape == (1,) + image.shape and masks[0].any()


def test_seeded_run_is_repeatable_and_a_resume_after_the_time_budget_continues_it(two_epochs, dataset, model, tmp_path):
    """A second seeded run, stopped by its time budget after epoch 1 and resumed to epoch 2, ends with
    the uninterrupted run's (``two_epochs``) decoder bit for bit and its per-epoch training losses: its
    first epoch repeats the first run's, and the resume continues it exactly."""
    short = ml.finetune(dataset, tmp_path, model, epochs=3, max_minutes=1e-4, **TINY)
    assert list(short.history["epoch"]) == [0, 1]  # the first epoch always runs, then the budget is spent
    np.testing.assert_allclose(short.history["train_loss"], two_epochs.history["train_loss"][:2], rtol=0, atol=0)
    resumed = ml.finetune(dataset, tmp_path, model, epochs=2, resume=True, **TINY)
    assert list(resumed.history["epoch"]) == [0, 1, 2]
    assert _same(_decoder(resumed.last), _decoder(two_epochs.last))
    np.testing.assert_allclose(resumed.history["train_loss"], two_epochs.history["train_loss"], rtol=0, atol=0)


def test_existing_run_is_protected(two_epochs, dataset, model):
    out = two_epochs.last.parent
    stamp = two_epochs.last.stat().st_mtime_ns
    with pytest.raises(ml.InputError, match="resume=True"):
        ml.finetune(dataset, out, model, epochs=2, **TINY)
    with pytest.raises(ml.InputError, match="settings differ.*lr"):
        ml.finetune(dataset, out, model, epochs=3, resume=True, **{**TINY, "lr": 1e-3})
    with pytest.raises(ml.InputError, match="settings differ.*loss"):  # a new loss term is not mixed into a run
        ml.finetune(dataset, out, model, epochs=3, resume=True, loss=DiceBCELoss(dice=2.0), **TINY)
    assert two_epochs.last.stat().st_mtime_ns == stamp


def test_guard_keeps_the_pretrained_decoder_when_every_epoch_loses_a_label(dataset, model, tmp_path):
    """A deliberately harmful learning rate wrecks the decoder: no trained epoch passes the guard, so
    best.pt is the starting decoder (epoch 0), the run says so, and the per-label change is reported."""
    with pytest.warns(UserWarning, match="best.pt is the starting decoder"):
        r = ml.finetune(dataset, tmp_path, model, epochs=1, **{**TINY, "lr": 0.5})
    assert r.kept_pretrained and r.best_epoch == 0
    h = r.history.set_index("epoch")
    assert h.loc[1, "val_dice"] < h.loc[0, "val_dice"] - 0.05  # the harm is real
    best = _decoder(r.best)
    start = {f"mask_decoder.{k}": v for k, v in model.mask_decoder.state_dict().items()}
    assert _same(best, start) and not _same(_decoder(r.last), start)
    assert all(c["change"] == 0 for c in r.change.values()) and r.best_row["val_dice"] == h.loc[0, "val_dice"]
    assert choose_epoch(r.history.to_dict("records"), None) == 1  # guard off: the old rule (best trained epoch)


def test_no_validation_case_trains_and_says_so(dataset, model, tmp_path):
    """One training case (a folder of two scans: one train, one test): no validation case. The run
    trains, says so, and best.pt is the last epoch (issue 34: `val_dice.idxmax()` raised on all-NaN)."""
    r = ml.finetune(dataset, tmp_path, model, epochs=1, cases=["sub-01"], **TINY)
    assert r.train_cases == ["sub-01"] and r.val_cases == [] and r.history["val_dice"].isna().all()
    assert r.best_epoch == 1 and torch.load(r.best, map_location="cpu", weights_only=True)["epoch"] == 1
    assert "no validation case" in r.summary and not r.kept_pretrained
    assert r.best_row["train_samples"] > 0


def test_config_dataclass_and_keywords_are_one_call(dataset, model, tmp_path):
    cfg = ml.FinetuneConfig(epochs=1, **TINY)
    assert cfg.guard_tolerance == 0.01 and ml.FinetuneConfig().lr == 1e-5  # the one place of defaults
    with pytest.raises(ml.InputError, match="unknown setting.*epoch_count"):
        ml.finetune(dataset, tmp_path, model, config=cfg, epoch_count=3)
    with pytest.raises(ml.InputError, match="unknown loss 'dice'.*dice_bce"):
        ml.finetune(dataset, tmp_path, model, config=cfg, loss="dice")
    with pytest.raises(ml.InputError, match="loss must be a loss object"):
        ml.finetune(dataset, tmp_path, model, config=cfg, loss=42)


def test_bad_settings_are_explained(dataset, model, tmp_path):
    with pytest.raises(ml.InputError, match="epochs"):
        ml.finetune(dataset, tmp_path, model, epochs=0, progress=False)
    with pytest.raises(ml.InputError, match="val_cases"):
        ml.finetune(dataset, tmp_path, model, val_cases=["sub-07"], progress=False)  # a test case
    with pytest.raises(ml.InputError, match="no training targets"):
        ml.finetune(dataset, tmp_path, model, labels=[9], progress=False, max_slices_per_case=1)


def test_box_jitter_only_enlarges_within_the_image():
    rng = np.random.default_rng(0)
    boxes = np.array([[10, 20, 60, 80], [0, 0, 202, 255]] * 500, np.float32)  # 2nd: at the edges
    content = np.array([[256, 205]] * 1000)  # (h, w) of the image inside the 256×256 input
    out = jitter_boxes(boxes, content, 5, rng)
    grow = (out - boxes) * np.array([-1, -1, 1, 1])
    assert (grow >= 0).all() and (grow <= 5).all()
    assert grow[0::2].max() == 5 and grow[0::2].min() == 0  # the whole 0–5 px range is used
    assert (out[:, 2] <= 204).all() and (out[:, 3] <= 255).all() and (out[:, :2] >= 0).all()
    assert np.array_equal(jitter_boxes(boxes, content, 0, rng), boxes)


def test_loss_is_low_for_the_right_mask():
    target = torch.zeros(2, 1, 32, 32)
    target[:, :, 8:20, 8:20] = 1
    good, bad = (target * 2 - 1) * 20, (1 - target * 2) * 20
    assert dice_bce_loss(good, target) < 0.01 < 1.9 < dice_bce_loss(bad, target)


VENTRICLES = 3  # the sample label the pretrained decoder misses most (FACTS: Dice 0.15–0.26 per slice)


@pytest.mark.slow
def test_fine_tuning_helps_on_an_unseen_subject(dataset, model, tmp_path):
    """Train on the lateral ventricles of sub-01/sub-02, test on sub-07 (held out): Dice rises by ≥ 0.3.

    The pretrained decoder gets 0.016 on sub-07's ventricles (the slices every test embeds). Measured
    with 1 thread, these settings (6 targets, 4 epochs of 3 Adam steps, lr 5e-4): gains 0.493, 0.595,
    0.495, 0.547, 0.560 with seeds 0–4 (lr 1e-3: 0.468, 0.527, 0.537 with seeds 0–2; 3 epochs at
    5e-4: 0.424, 0.540). The earlier form of this test (every label, 8 epochs at lr 1e-4, mean gain
    ≥ 0.15) trained 6× more samples and passed its bar by 0.001.
    """
    kw = dict(max_slices_per_case=MAX_SLICES, labels=[VENTRICLES], progress=False)
    _, before = ml.evaluate(model, dataset, **kw)
    result = ml.finetune(dataset, tmp_path / "ft", model, epochs=4, lr=5e-4, batch_size=2, val_fraction=0,
                         seed=0, **kw)
    assert set(result.train_cases) == {"sub-01", "sub-02"} and "sub-07" not in result.train_cases
    tuned = ml.load_model(checkpoint=result.best)
    _, after = ml.evaluate(tuned, dataset, **kw)
    print(json.dumps({"before": before["dsc"].round(3).to_dict(), "after": after["dsc"].round(3).to_dict()}))
    assert after.loc["mean", "dsc"] >= before.loc["mean", "dsc"] + 0.3


# ---- shared by the tests below (from test_faults2.py)
def brain(case: str):
    d = samples.brain_mri_dir()
    return d / f"{case}.nii.gz", d / f"{case}_label.nii.gz"


def test_a_resume_on_another_dataset_with_the_same_case_names_is_refused_before_any_work(tmp_path, model,
                                                                                         monkeypatch):
    a, b, run = tmp_path / "a", tmp_path / "b", tmp_path / "run"
    ml.preprocess({"c1": brain("sub-01"), "c2": brain("sub-02")}, a, labels=[1], test_cases=["c2"], progress=False)
    ml.preprocess({"c1": brain("sub-03"), "c2": brain("sub-04")}, b, labels=[1], test_cases=["c2"], progress=False)
    kw = dict(max_slices_per_case=1, val_fraction=0.0, progress=False)
    ml.finetune(a, run, model, epochs=1, **kw)
    import medsam_lite.train.finetune as ft

    monkeypatch.setattr(ft, "embed", lambda *a, **k: pytest.fail("embeddings computed before the refusal"))
    with pytest.raises(InputError, match="the dataset differs"):
        ml.finetune(b, run, model, epochs=2, resume=True, **kw)
    assert not (b / "embeddings").exists()
    monkeypatch.undo()
    with pytest.raises(InputError, match=r"settings differ \(lr\)"):  # training settings are compared too
        ml.finetune(a, run, model, epochs=2, resume=True, lr=1e-3, **kw)
    result = ml.finetune(a, run, model, epochs=2, resume=True, **kw)  # the same dataset resumes
    assert list(result.history["epoch"]) == [0, 1, 2]  # epoch 0: the starting decoder


@pytest.mark.parametrize("name, resume", [("best.pt", False), ("last.pt", True), ("last.pt", False)])
def test_a_checkpoint_path_that_is_a_folder_is_refused_before_the_first_step(tmp_path, model, monkeypatch, name,
                                                                              resume):
    root, run = tmp_path / "ds", tmp_path / "run"
    ml.preprocess({"c1": brain("sub-01"), "c2": brain("sub-02")}, root, labels=[1], test_cases=["c2"], progress=False)
    (run / name).mkdir(parents=True)
    import medsam_lite.train.finetune as ft

    monkeypatch.setattr(ft, "embed", lambda *a, **k: pytest.fail("work done before the refusal"))
    with pytest.raises(InputError, match=f"{name} is a folder"):
        ml.finetune(root, run, model, epochs=1, max_slices_per_case=1, val_fraction=0.0, resume=resume,
                    overwrite=not resume, progress=False)
