"""DSC and NSD: agreement with DeepMind's surface-distance, spacing handling, per-case evaluation."""

import numpy as np
import pytest
from scipy import ndimage
from surface_distance import compute_surface_dice_at_tolerance, compute_surface_distances

import medsam_lite as ml
from conftest import MAX_SLICES
from medsam_lite import io, samples
from medsam_lite.errors import InputError
from medsam_lite.metrics import dice

pytestmark = pytest.mark.usefixtures("reuse_encodings")  # a slice encoded again here is answered from memory


def reference_nsd(pred, truth, spacing, tolerance):
    return compute_surface_dice_at_tolerance(compute_surface_distances(truth, pred, spacing), tolerance)


@pytest.fixture(scope="module")
def labels():
    return io.read_volume(samples.brain_mri_dir() / "sub-02_label.nii.gz").array


@pytest.fixture(scope="module")
def dataset(small_dataset):
    return small_dataset


@pytest.fixture(scope="module")
def result(dataset, model):
    return ml.evaluate(model, dataset, max_slices_per_case=MAX_SLICES, progress=False)


def test_nsd_agrees_with_surface_distance_on_real_masks(labels):
    truth = labels == 3  # lateral ventricles: small, so many variants stay fast
    candidates = [np.roll(truth, 2, axis=2), ndimage.binary_dilation(truth), ndimage.binary_erosion(truth),
                  ndimage.binary_opening(truth, iterations=2)]
    for pred in candidates:
        for spacing in [(4.0, 1.0, 1.0), (1.0, 0.7, 1.3)]:
            for tol in (0.5, 1.0, 2.0):
                ours = ml.nsd(pred, truth, spacing, tol)
                assert abs(ours - reference_nsd(pred, truth, spacing, tol)) < 1e-6
                assert 0.0 < ours < 1.0 or tol == 2.0
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    assert abs(ml.nsd(candidates[0][z], truth[z], (1.0, 1.0), 1.0)
               - reference_nsd(candidates[0][z], truth[z], (1.0, 1.0), 1.0)) < 1e-6


@pytest.mark.parametrize("label", [1, 2])
def test_nsd_agrees_with_surface_distance_on_large_structures(labels, label):
    truth = labels == label
    pred = np.roll(ndimage.binary_erosion(truth), 1, axis=1)
    ours = ml.nsd(pred, truth, (4.0, 1.0, 1.0), 1.0)
    assert 0.3 < ours < 1.0
    assert abs(ours - reference_nsd(pred, truth, (4.0, 1.0, 1.0), 1.0)) < 1e-6


def test_nsd_properties(labels):
    truth = labels == 3
    shifted = np.roll(truth, 3, axis=1)
    assert ml.nsd(truth, truth, (4, 1, 1)) == 1.0
    assert ml.nsd(shifted, truth, (4, 1, 1), 1.0) == pytest.approx(ml.nsd(truth, shifted, (4, 1, 1), 1.0), abs=1e-12)
    assert ml.nsd(np.zeros_like(truth), truth, (4, 1, 1)) == 0.0
    assert ml.nsd(np.zeros_like(truth), np.zeros_like(truth), (4, 1, 1)) == 1.0
    losses = [ml.nsd(shifted, truth, (4, 1, 1), t) for t in (0.5, 1.0, 2.0, 3.0)]
    assert losses == sorted(losses) and losses[-1] == 1.0  # a 3-voxel shift is within 3 mm


def test_nsd_uses_spacing_in_array_order():
    truth = np.zeros((40, 40), bool)
    truth[10:30, 10:30] = True
    moved = np.roll(truth, 1, axis=1)  # one column to the right
    assert ml.nsd(moved, truth, spacing=(1.0, 0.5), tolerance_mm=1.0) == 1.0  # 0.5 mm off
    assert ml.nsd(moved, truth, spacing=(0.5, 2.0), tolerance_mm=1.0) < 0.9  # 2 mm off
    assert ml.nsd(moved, truth, spacing=(0.5, 2.0), tolerance_mm=2.0) == 1.0


def test_dice_properties(labels):
    a, b = labels == 1, ndimage.binary_erosion(labels == 1)
    assert dice(a, b) == dice(b, a)
    assert dice(a, b) == pytest.approx(2 * b.sum() / (a.sum() + b.sum()))
    assert dice(a, a) == 1.0 and dice(a, np.zeros_like(a)) == 0.0


def test_metric_inputs_are_checked():
    m = np.ones((4, 4), bool)
    with pytest.raises(ml.InputError, match="shape"):
        ml.nsd(m, np.ones((4, 5), bool))
    with pytest.raises(ml.InputError, match="spacing"):
        ml.nsd(m, m, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ml.InputError, match="binary"):
        ml.nsd(m * 2, m)
    with pytest.raises(ml.InputError, match="tolerance"):
        ml.nsd(m, m, tolerance_mm=-1)


def test_evaluate_table(result, dataset):
    per_case, per_label = result
    assert set(per_case["case"]) == {"sub-07"}  # the test split only
    assert set(per_case["label_name"]) == {"white_matter", "grey_matter", "lateral_ventricles"}
    assert per_case[["dsc", "nsd"]].apply(lambda c: c.between(0, 1)).all().all()
    assert (per_case["slices"] >= 1).all() and (per_case["slices"] <= MAX_SLICES).all()
    assert list(per_label.index)[-1] == "mean"
    assert per_label.loc["mean", "dsc"] == pytest.approx(per_label["dsc"].iloc[:-1].mean())
    assert (per_case["truth_voxels"] > 0).all() and (per_case["pred_voxels"] > 0).all()


def test_evaluate_matches_direct_metrics_on_its_volumes(result, dataset, model):
    per_case, _ = result
    seg = ml.predict_case(model, dataset, "sub-07", max_slices_per_case=MAX_SLICES)
    ratio = dataset.manifest.query("case == 'sub-07'").iloc[0]
    assert seg.spacing == pytest.approx((4.0, ratio["height"] / seg.image.shape[1], ratio["width"] / seg.image.shape[2]))
    for _, row in per_case.iterrows():
        pred, truth = seg.pred[row["label"]], seg.truth[row["label"]]
        assert truth.sum() == row["truth_voxels"] and pred.sum() == row["pred_voxels"]
        assert abs(row["nsd"] - reference_nsd(pred, truth, seg.spacing, 1.0)) < 1e-6
        assert abs(row["dsc"] - 2 * (pred & truth).sum() / (pred.sum() + truth.sum())) < 1e-12
    # the stacked prediction is what the Predictor gives on the stored slice with the same box
    t = seg.targets.iloc[0]
    predictor = ml.Predictor(model)
    z = seg.z(t["slice"])
    predictor.set_image(seg.image[z])
    mask = predictor.predict([t["sx0"], t["sy0"], t["sx1"], t["sy1"]])[0][0]
    assert dice(mask, seg.pred[t["label"]][z]) > 0.98


def test_clicks_beyond_the_bound_are_refused_before_any_work(small_dataset, model, monkeypatch):
    """A million clicks allocated a volume per click per label (MemoryError) before any work."""
    import importlib

    ev = importlib.import_module("medsam_lite.evaluate")  # the module (ml.evaluate is the function)
    monkeypatch.setattr(ev, "embed", lambda *a, **k: pytest.fail("embedded before refusing clicks"))
    for clicks in (ev.MAX_CLICKS + 1, 10**6):
        with pytest.raises(ml.InputError, match=rf"clicks={clicks} is more than {ev.MAX_CLICKS} .*one volume per label"):
            ml.evaluate(model, small_dataset, clicks=clicks, progress=False)
        case = small_dataset.manifest["case"].iloc[0]
        with pytest.raises(ml.InputError, match="more than"):
            ml.predict_case(model, small_dataset, case, clicks=clicks)


# ---- shared by the tests below (from test_faults2.py)
SLICE, SLICE_LABEL = samples.sample_path("brain_slice.png"), samples.sample_path("brain_slice_label.png")


@pytest.fixture(scope="module")
def slice_and_label():
    return io.read_volume(SLICE).array, io.read_volume(SLICE_LABEL).array


def test_a_2d_dataset_gets_2d_dsc_and_nsd(tmp_path, model, slice_and_label):
    root = tmp_path / "ds2d"
    ml.preprocess({"slice": (SLICE, SLICE_LABEL)}, root, labels=[1, 3], test_cases=["slice"], progress=False)
    per_case, per_label = ml.evaluate(model, root, progress=False)
    assert set(per_case["label"]) == {1, 3} and per_case["nsd"].between(0, 1).all()
    from medsam_lite.evaluate import predict_case

    seg = predict_case(model, root, "slice")
    for _, row in per_case.iterrows():
        p, t = seg.pred[row["label"]][0], seg.truth[row["label"]][0]
        assert row["nsd"] == pytest.approx(ml.nsd(p, t, seg.spacing[1:]))  # 2D NSD at the stored pixel size
        assert row["dsc"] == pytest.approx(ml.dice(p, t)) and row["dsc"] > 0 and t.any()


def test_evaluate_refuses_a_bad_spacing_before_the_store_is_made(tmp_path, model):
    root = tmp_path / "ds2d"
    ml.preprocess({"slice": (SLICE, SLICE_LABEL)}, root, labels=[3], test_cases=["slice"], progress=False)
    manifest = root / "manifest.csv"
    import pandas as pd

    table = pd.read_csv(manifest)
    table["spacing_row"] = 0.0
    table.to_csv(manifest, index=False)
    with pytest.raises(InputError, match="spacing"):
        ml.evaluate(model, root, progress=False)
    assert not (root / "embeddings").exists()
