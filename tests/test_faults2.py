"""Issue 19, files and faults round 2: each test fails on the tree before its fix.

Real data: the bundled 2D brain slice and its label map (which holds one-pixel specks), the
MNI-derived brain subjects, a real abdominal CT and pydicom's real CT slice. Refusals are checked
to come before the work (the encoder, the model load, the scan read, the embedding store).
"""

from __future__ import annotations

import errno
import gc
import json
import os
import shutil
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import medsam_lite as ml
from medsam_lite import cli, io, samples
from medsam_lite.errors import CheckpointError, InputError
from medsam_lite.model import backends

torch.set_num_threads(1)
SLICE, SLICE_LABEL = samples.sample_path("brain_slice.png"), samples.sample_path("brain_slice_label.png")


def brain(case: str):
    d = samples.brain_mri_dir()
    return d / f"{case}.nii.gz", d / f"{case}_label.nii.gz"


@pytest.fixture(scope="module")
def slice_and_label():
    return io.read_volume(SLICE).array, io.read_volume(SLICE_LABEL).array


# ------------------------------------------------------------------ 1: a resume of another dataset
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


# ------------------------------------------------------------------ 2, 3: label and mask writers
@pytest.mark.parametrize("name", ["labels.jpg", "labels.JPEG"])
def test_cli_refuses_a_label_map_to_jpeg_before_reading_the_scan(tmp_path, monkeypatch, capsys, name):
    monkeypatch.setattr(io.scans, "read_volume", lambda *a, **k: pytest.fail("scan read before the refusal"))
    out = tmp_path / name
    assert cli.main(["predict", str(SLICE), "--labels-from", str(SLICE_LABEL), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "JPEG" in err and ".png" in err and not out.exists()


@pytest.mark.parametrize("name", ["mask.jpeg", "mask.TIF", "mask.Png"])
def test_cli_masks_in_image_formats_are_0_255_whatever_the_suffix_case(tmp_path, capsys, slice_and_label, model,
                                                                       name):
    image, label = slice_and_label
    box = ml.box_from_mask(label > 0)
    expected = ml.predict(image, box, model=model)[0]
    out = tmp_path / name
    assert cli.main(["predict", str(SLICE), "--box", *map(str, box), "--out", str(out)]) == 0
    raw = io.read_volume(out).array
    if name.endswith("jpeg"):  # lossy: grey values near the edges, but bright inside
        assert raw.max() > 200
    else:
        assert set(np.unique(raw).tolist()) == {0, 255}
    back = io.read_label(out, allow_lossy=True).array  # the package reads its own file back as label 1
    assert set(np.unique(back).tolist()) == {0, 1} and ml.dice(back == 1, expected) > 0.98


# ------------------------------------------------------------------ 4: a 2D dataset
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


# ------------------------------------------------------------------ 5: components too small to prompt
def test_a_label_map_with_one_pixel_specks_segments_the_rest_and_counts_them(model, slice_and_label):
    from scipy import ndimage

    image, label = slice_and_label
    thin = 0  # counted independently: 8-connected components whose extent is one pixel in x or y
    for k in (1, 2, 3):
        for sl in ndimage.find_objects(ndimage.label(label == k, np.ones((3, 3)))[0]):
            thin += (sl[0].stop - sl[0].start == 1) or (sl[1].stop - sl[1].start == 1)
    assert thin > 0
    with pytest.warns(UserWarning, match=rf"skipped {thin} component") as seen:
        out = ml.predict_label_map(image, label, model=model)
    assert len([w for w in seen if "skipped" in str(w.message)]) == 1
    assert set(np.unique(out).tolist()) - {0} == {1, 2, 3}
    assert ml.dice(out == 2, label == 2) > 0.3


def test_a_structure_one_voxel_wide_is_skipped_in_a_volume(model):
    scan, lab = (io.read_volume(p) for p in brain("sub-01"))
    z = scan.array.shape[0] // 2
    crop = io.Volume(scan.array[z - 1:z + 2], scan.spacing, scan.origin, scan.direction)
    labels = np.zeros(crop.array.shape, np.uint8)
    labels[:, 40:80, 60:110] = 1  # a block: promptable
    labels[:, 100:130, 150] = 2  # a line one voxel wide in every slice: not
    with pytest.warns(UserWarning, match=r"label 2"):
        out = ml.predict_volume_labels(crop, labels, model=model, axis=0)
    assert (out == 1).any() and not (out == 2).any()


def test_cli_labels_from_with_specks_exits_0(tmp_path, capsys):
    out = tmp_path / "labels.png"
    assert cli.main(["predict", str(SLICE), "--labels-from", str(SLICE_LABEL), "--out", str(out)]) == 0
    assert "skipped" in capsys.readouterr().err and set(np.unique(io.read_volume(out).array)) >= {1, 3}


# ------------------------------------------------------------------ 6: a checkpoint path that is a folder
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


def test_an_atomic_write_onto_a_folder_is_an_input_error(tmp_path):
    from medsam_lite.fileutil import atomic_write_text

    (tmp_path / "x.csv").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        atomic_write_text(tmp_path / "x.csv", "a,b\n")


# ------------------------------------------------------------------ 7 + lock: the export cache
def _cache_file(tmp_path, monkeypatch) -> Path:
    blocker = tmp_path / "cache_is_a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MEDSAM_LITE_CACHE", str(blocker))
    return blocker


def _raise(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


@pytest.mark.parametrize("fault", ["a file", "read-only", "full disk"])
def test_an_unusable_export_cache_falls_back_to_torch_with_one_warning(tmp_path, monkeypatch, slice_and_label,
                                                                       fault):
    if fault == "a file":
        _cache_file(tmp_path, monkeypatch)
    else:  # tests may run as root, where chmod does not stop writes: the OS calls fail instead
        monkeypatch.setenv("MEDSAM_LITE_CACHE", str(tmp_path / "cache"))
        if fault == "read-only":
            from medsam_lite import fileutil  # every file or folder the cache writes starts as a temporary

            monkeypatch.setattr(fileutil, "_new_temp", _raise(errno.EROFS))
        else:
            monkeypatch.setattr(backends, "_export", _raise(errno.ENOSPC))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model = ml.load_model(backend="onnxruntime")
    cache_warnings = [w for w in seen if "MEDSAM_LITE_CACHE" in str(w.message)]
    assert len(cache_warnings) == 1 and "torch" in str(cache_warnings[0].message)
    assert model.runtime is not None and model.runtime.name == "torch"
    image, label = slice_and_label
    mask = ml.predict(image, ml.box_from_mask(label > 0), model=model)[0]
    assert ml.dice(mask, label > 0) > 0.3


def test_cli_says_an_unusable_cache_in_one_line(tmp_path, monkeypatch, capsys, slice_and_label):
    _cache_file(tmp_path, monkeypatch)
    box = ml.box_from_mask(slice_and_label[1] == 3)
    out = tmp_path / "mask.png"
    assert cli.main(["predict", str(SLICE), "--box", *map(str, box), "--out", str(out), "--backend",
                     "onnxruntime"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "MEDSAM_LITE_CACHE" in line]
    assert len(lines) == 1 and lines[0].startswith("medsam-lite predict: warning:") and out.exists()


def test_two_exports_into_an_empty_cache_take_turns(tmp_path, monkeypatch):
    calls = []

    def slow_export(part, module, path, input_size):
        calls.append(part)
        threading.Event().wait(0.3)  # long enough for the other thread to arrive meanwhile
        Path(path).write_bytes(b"onnx")

    monkeypatch.setattr(backends, "_export", slow_export)
    paths, errors = [], []

    def run():
        try:
            paths.append(backends._export_cached("decoder", lambda: None, "ab" * 32, "onnxruntime", tmp_path,
                                                 256, progress=False))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and calls == ["decoder"] and len(set(paths)) == 1 and paths[0].is_file()


# ------------------------------------------------------------------ 8 + weak: label names from source files
def _png_source(folder: Path) -> Path:
    folder.mkdir()
    shutil.copy(SLICE, folder / "s1.png")
    shutil.copy(SLICE_LABEL, folder / "s1_label.png")
    return folder


def test_a_dataset_json_holding_a_list_is_warned_about_not_raised(tmp_path):
    src = _png_source(tmp_path / "src")
    (src / "dataset.json").write_text("[1, 2]")
    with pytest.warns(UserWarning, match=r"dataset\.json.*list"):
        ml.preprocess(src, tmp_path / "out", labels=[3], test_cases=["s1"], progress=False)


@pytest.mark.parametrize("fname, text, expect", [
    ("labels.json", "{1: 'wm'", "not valid JSON"),
    ("dataset.json", '{"labels": "1=wm"}', "str"),
    ("labels.json", '{"csf": [3]}', "pair no whole-number"),
])
def test_unusable_label_names_files_are_warned_about(tmp_path, fname, text, expect):
    from medsam_lite.io.cases import labels_from_files

    (tmp_path / fname).write_text(text)
    with pytest.warns(UserWarning, match=expect) as seen:
        assert labels_from_files([tmp_path]) == {}
    assert fname in str(seen[0].message)


def test_label_names_given_as_digit_strings_are_read(tmp_path):
    from medsam_lite.io.cases import labels_from_files

    (tmp_path / "labels.json").write_text(json.dumps({"ventricles": "3", "wm": "1"}))
    assert labels_from_files([tmp_path]) == {3: "ventricles", 1: "wm"}


# ------------------------------------------------------------------ 9 + weak: environment variables
@pytest.mark.parametrize("value", ["abc", "0", "-2"])
def test_medsam_lite_threads_that_is_not_a_positive_number_is_named(monkeypatch, value):
    from medsam_lite import tutorial

    monkeypatch.setenv("MEDSAM_LITE_THREADS", value)
    with pytest.raises(InputError, match="MEDSAM_LITE_THREADS"):
        tutorial.settings(samples.brain_mri_dir(), verbose=False)


@pytest.mark.parametrize("value, quick", [("1", True), ("true", True), ("YES", True), ("0", False), ("false", False)])
def test_medsam_lite_quick_reads_the_usual_spellings(monkeypatch, value, quick):
    from medsam_lite import tutorial

    monkeypatch.setenv("MEDSAM_LITE_QUICK", value)
    monkeypatch.setenv("MEDSAM_LITE_THREADS", "1")
    assert tutorial.settings(samples.brain_mri_dir(), verbose=False).quick is quick


def test_medsam_lite_quick_that_is_neither_on_nor_off_is_named(monkeypatch):
    from medsam_lite import tutorial

    monkeypatch.setenv("MEDSAM_LITE_QUICK", "maybe")
    monkeypatch.setenv("MEDSAM_LITE_THREADS", "1")
    with pytest.raises(InputError, match="MEDSAM_LITE_QUICK"):
        tutorial.settings(samples.brain_mri_dir(), verbose=False)


def test_medsam_lite_backend_that_is_unknown_is_named(monkeypatch):
    monkeypatch.setenv("MEDSAM_LITE_BACKEND", "onnx")
    with pytest.raises(InputError, match="MEDSAM_LITE_BACKEND"):
        ml.load_model()


# ------------------------------------------------------------------ weak: files as they come
def test_a_16_bit_planar_tiff_is_refused_not_read_as_8_bit(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    scan = io.read_volume(brain("sub-01")[0]).array
    z = scan.shape[0] // 2
    stack = (scan[z - 1:z + 2].astype(np.float32) * 40).astype(np.uint16)  # values above 255
    tifffile.imwrite(tmp_path / "stack.tif", stack)  # tifffile's defaults: planar 16-bit RGB
    with pytest.raises(InputError, match="8-bit RGBA"):
        io.read_volume(tmp_path / "stack.tif")
    tifffile.imwrite(tmp_path / "fixed.tif", stack, photometric="minisblack")  # the fix the message gives
    assert np.array_equal(io.read_volume(tmp_path / "fixed.tif").array, stack)


@pytest.mark.parametrize("ndim", [2, 3])
def test_cli_names_two_components_per_pixel(tmp_path, monkeypatch, capsys, ndim):
    scan = io.read_volume(brain("sub-01")[0]).array
    part = scan[scan.shape[0] // 2] if ndim == 2 else scan[10:14]
    image = sitk.Compose(sitk.GetImageFromArray(part), sitk.GetImageFromArray(part))
    path = tmp_path / "two.nrrd"
    sitk.WriteImage(image, str(path))
    monkeypatch.setattr(cli, "_load", lambda args: pytest.fail("model loaded"))
    argv = ["predict", str(path), "--box", "40", "50", "120", "150", "--out", str(tmp_path / "m.nii.gz")]
    assert cli.main(argv + (["--slice", "1"] if ndim == 3 else [])) == 2
    err = capsys.readouterr().err
    assert "2 components per pixel" in err and "save one channel" in err


def test_a_single_file_dicom_beside_its_label_is_a_case(tmp_path):
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    from medsam_lite.io.cases import find_cases

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "ct.dcm")
    image = io.read_volume(src / "ct.dcm")
    label = (image.array > np.percentile(image.array, 70)).astype(np.uint8)
    io.write_volume(label, src / "ct_label.nii.gz", like=image)
    cases = find_cases(src)
    assert [(c.name, c.image.name, c.label.name) for c in cases] == [("ct", "ct.dcm", "ct_label.nii.gz")]


def test_a_one_slice_volume_with_thin_z_is_sliced_along_z(model):
    scan, lab = (io.read_volume(p) for p in brain("sub-01"))
    z = scan.array.shape[0] // 2
    one = io.Volume(scan.array[z:z + 1], (1.0, 1.0, 0.5), scan.origin, scan.direction)  # z thinner than x, y
    truth = lab.array[z] == 1
    mask = ml.predict_volume(one, ml.box_from_mask(truth), slice_index=0, model=model)
    assert mask.shape == one.array.shape and ml.dice(mask[0], truth) > 0.3


# ------------------------------------------------------------------ weak: refusals before the work
def test_a_label_map_of_another_shape_is_refused_before_the_encoder(model, monkeypatch, slice_and_label):
    image, label = slice_and_label
    monkeypatch.setattr(type(model), "encode", lambda *a, **k: pytest.fail("encoder ran before the refusal"))
    with pytest.raises(InputError, match="differ in size"):
        ml.predict_label_map(image, label[:-5], model=model)


@pytest.mark.parametrize("out", ["mask.nii.gzz", "mask.png"])
def test_cli_checks_the_output_format_before_the_work(tmp_path, monkeypatch, capsys, out):
    reads = []
    real = io.scans.read_volume
    if out.endswith("gzz"):  # an unknown suffix: refused before the scan is read
        monkeypatch.setattr(io.scans, "read_volume", lambda *a, **k: pytest.fail("scan read"))
    else:  # a 2D format for a volume: refused once the scan's header says 3D, before the model
        monkeypatch.setattr(io.scans, "read_volume", lambda *a, **k: reads.append(1) or real(*a, **k))
    monkeypatch.setattr(cli, "_load", lambda args: pytest.fail("model loaded before the refusal"))
    argv = ["predict", str(brain("sub-01")[0]), "--box3d", "60", "60", "20", "120", "140", "24",
            "--out", str(tmp_path / out)]
    assert cli.main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err and not (tmp_path / out).exists()


def test_predict_label_map_refuses_labels_that_are_not_whole_numbers(model, slice_and_label):
    image, label = slice_and_label
    predictor = ml.Predictor(model)
    predictor.set_image(image)
    with pytest.raises(InputError, match="whole numbers"):
        ml.predict_label_map(None, label, labels=[1.7], predictor=predictor)


# ------------------------------------------------------------------ weak: prefetch lifetimes
def _ct():
    return io.read_volume(samples.ct_abdomen_dir() / "case-01.nii.gz")


def test_deleting_a_volume_predictor_stops_its_prefetch(model):
    vp = ml.VolumePredictor(_ct(), model, modality="CT", prefetch=2)
    vp.prefetch_around(vp.n_slices // 2)  # 4 slices queued
    worker = vp._prefetcher
    del vp
    gc.collect()
    worker._thread.join(120)
    assert not worker._thread.is_alive() and worker.background_calls <= 1  # only the slice already started


def test_closing_a_volume_predictor_stops_its_prefetch(model):
    vp = ml.VolumePredictor(_ct(), model, modality="CT", prefetch=2)
    vp.prefetch_around(vp.n_slices // 2)
    vp.close()
    assert vp._prefetcher.background_calls <= 1 and vp._prefetcher.pending() == []


def test_closing_a_box_prompter_stops_its_prefetch(model):
    from medsam_lite.interactive.widgets import BoxPrompter

    prompter = BoxPrompter(_ct().array, model, modality="CT", slice_index=4, prefetch=2)
    worker = prompter._prefetcher
    prompter.close()
    if worker._thread is not None:
        worker._thread.join(120)
    assert worker.background_calls <= 1 and worker.pending() == []


# ------------------------------------------------------------------ weak: checkpoint advice
def test_a_finetune_run_folder_as_checkpoint_points_at_its_best_pt(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"x")
    (tmp_path / "last.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"best\.pt"):
        ml.load_model(checkpoint=tmp_path)
