"""Notebooks 02–08 on two DICOM scans with RTSTRUCTs, from a settings file alone (issue 34, quick mode).

Issue 34: most researchers start with two or three scans, and DICOM labels are RTSTRUCTs. One folder
covers both (one more notebook run in CI, quick mode): two labelled scans, each a DICOM series (LPS, as
scanners write) with an RTSTRUCT beside it, labels chosen BY NAME, boxes read off the figures
(displayed pixels; for an LPS series the same as array pixels). Built from the real CT sample, as
test_notebook_own_data.py builds its folder; what both share is tests/own_data.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from own_data import CT_DIR, OVERRIDES, PYTESTMARK, ROOT, THREADS, UID, run_notebooks

pytestmark = PYTESTMARK

RT_CASES = ("case-01", "case-03")
RT_LABELS = ["spleen", "liver"]
RT_BOXES = {"spleen": [5, 78, 48, 111, 79], "liver": [5, 15, 17, 80, 74]}


def _sample_maker():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_dicom_sample", ROOT / "data_samples" / "make_dicom_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_rtstruct_folder(tmp: Path) -> Path:
    """``tmp/dicom_scans/<case>/`` series + ``<case>_label.dcm`` RTSTRUCT for two cases; the settings file."""
    import SimpleITK as sitk

    from medsam_lite.io.formats import write_rtstruct

    maker = _sample_maker()
    data = tmp / "dicom_scans"
    names = {int(k): v for k, v in json.loads((CT_DIR / "labels.json").read_text()).items()}
    organs = {v: n for v, n in names.items() if n in RT_LABELS + ["aorta"]}   # one ROI more than chosen
    for i, case in enumerate(RT_CASES):
        image = sitk.DICOMOrient(sitk.ReadImage(str(CT_DIR / f"{case}.nii.gz")), "LPS")
        label = sitk.GetArrayFromImage(sitk.DICOMOrient(sitk.ReadImage(str(CT_DIR / f"{case}_label.nii.gz")), "LPS"))
        series = maker.write_series(sitk.Cast(image, sitk.sitkInt16), data / case, uid=f"{UID}.7{i}")
        write_rtstruct(np.where(np.isin(label, list(organs)), label, 0), data / f"{case}_label.dcm", series, names=organs)
    boxes = "\n".join(f"{n} = {b}" for n, b in RT_BOXES.items())
    settings = tmp / "rt_settings.toml"
    settings.write_text(
        f'data = "dicom_scans"\nmodality = "CT"\nlabels = {json.dumps(RT_LABELS)}\ntest_cases = ["case-03"]\n'
        f'min_mm2 = 64\nwork = "rt_work"\nepochs = 10\nclicks = 1\nthreads = {THREADS}\ndevice = "cpu"\n'
        f'scan = "dicom_scans/case-03"\nreference = "dicom_scans/case-03_label.dcm"\n\n[boxes]\n{boxes}\n',
        encoding="utf-8")
    return settings


def test_the_rtstruct_folder_is_two_dicom_cases_with_labels_by_name(tmp_path, monkeypatch):
    import medsam_lite as ml
    from medsam_lite import io
    from medsam_lite.app import tutorial
    from medsam_lite.io.cases import find_cases

    settings = build_rtstruct_folder(tmp_path)
    cases = find_cases(tmp_path / "dicom_scans")
    assert [(c.name, c.image.name, c.label.name) for c in cases] == [
        ("case-01", "case-01", "case-01_label.dcm"), ("case-03", "case-03", "case-03_label.dcm")]
    for key in (*OVERRIDES, "MEDSAM_LITE_QUICK"):   # the whole case is read and compared (CI sets quick mode)
        monkeypatch.delenv(key, raising=False)
    s = tutorial.settings(file=settings, verbose=False, threads=1)
    assert s.labels == {1: "spleen", 2: "liver"}                   # names → the RTSTRUCTs' numbering
    scan, label = tutorial.read_case(s, "case-03")
    truth = io.read_volume(CT_DIR / "case-03_label.nii.gz").array[:, ::-1, ::-1]   # the NIfTI is RAS-stored
    for value, original in ((1, 1), (2, 5)):
        t, p = truth == original, label.array == value
        assert 2 * (t & p).sum() / (t.sum() + p.sum()) > 0.99
    boxes = tutorial.boxes_on(s.boxes, scan)                        # displayed pixels = array pixels (LPS)
    assert np.abs(boxes["liver"][1] - ml.box_from_mask(label.array[5] == 2)).max() <= 3


def test_notebooks_02_to_08_run_on_two_dicom_scans_with_rtstructs(tmp_path, monkeypatch):
    """Two labelled scans (one train, one test: no validation case, issue 34 item 4) as DICOM series +
    RTSTRUCT, labels by name: every notebook runs; 02 lists the RTSTRUCTs, 08 writes a SEG and reads it back."""
    settings = build_rtstruct_folder(tmp_path)
    printed = run_notebooks(settings, tmp_path, monkeypatch)
    assert "case-01: case-01 + case-01_label.dcm" in printed["02_prepare_custom_dataset"]
    assert "1 spleen" in printed["02_prepare_custom_dataset"]       # values printed with their names

    from medsam_lite import io
    from medsam_lite.data.dataset import open_dataset

    work = tmp_path / "rt_work"
    ds = open_dataset(work / "dicom_scans_dataset")
    assert {int(k): v for k, v in ds.meta["labels"].items()} == {1: "spleen", 2: "liver"}
    assert ds.meta["split"] == {"case-01": "train", "case-03": "test"}
    assert (work / "dicom_scans_finetune_quick" / "best.pt").exists()
    out = printed["08_annotate_without_labels"]
    dice = {line.split()[0]: float(line.split()[-1]) for line in out.splitlines() if "3D Dice against" in line}
    assert set(dice) == set(RT_BOXES) and min(dice.values()) > 0.5, dice
    seg = io.read_label(work / "outputs" / "08" / "case-03_seg.dcm", reference=tmp_path / "dicom_scans" / "case-03",
                        names={1: "spleen", 2: "liver"})
    saved = io.read_volume(work / "outputs" / "08" / "case-03_label.nii.gz")
    np.testing.assert_array_equal(seg.array, saved.array)
