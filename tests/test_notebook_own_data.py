"""Notebooks 02–08 on a user's own folder, from a settings file alone (issue 23, quick mode).

The folder is built here from the real CT sample (``data_samples/ct_abdomen``, or ``$MEDSAM_LITE_TEST_CT``
with three cases) in the shape a user brings: one case as a DICOM series (a folder of slice files, its
label map beside it as NRRD), one as NIfTI, one as NRRD; label maps with 40 classes (the CT's organs plus
synthetic small patches) of which the settings choose three; a ``labels.json`` naming every class. Beside
it, a scan with no label map (a DICOM series of its own) for notebook 08, with boxes in the settings.

Only ``MEDSAM_LITE_SETTINGS`` points the notebooks at that file (plus ``MEDSAM_LITE_QUICK`` and the
threads): no data, label or work override. Notebook 07 once failed on such label maps with
``KeyError: '8'`` (it iterated over every class of the scan, not the chosen ones). The folder of
two DICOM scans with RTSTRUCTs is test_notebook_own_rtstruct.py (its own file: the two notebook
runs go to the two test processes); what both share is tests/own_data.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from own_data import CT_DIR, PYTESTMARK, ROOT, THREADS, UID, run_notebooks

#: The labels the settings choose (TotalSegmentator ids of the sample), and how many classes the maps hold.
CHOSEN = {1: "spleen", 5: "liver", 52: "aorta"}
CLASSES = 40
#: The unlabelled scan: slices 3–7 of the sample's case-03 (few slices: 08 propagates through all),
#: and notebook 08's boxes on it (case-03's slice 5 = its slice 2): XYXY pixels of the slice as
#: displayed (radiological; the series keeps the NIfTI's RAS direction, so array x = 121 − x, y = 100 − y).
BARE_SLICES = (3, 8)
BOXES = {"spleen": [2, 78, 48, 111, 79], "liver": [2, 15, 17, 80, 74], "aorta": [2, 61, 50, 72, 60]}

pytestmark = PYTESTMARK


def write_series(image, folder: Path, uid: str) -> Path:
    """A CT series as a scanner writes it: one file per slice, stored values + RescaleIntercept, the
    UIDs, position and orientation a reader sorts by (SimpleITK's writer, not the package's code)."""
    import SimpleITK as sitk

    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")
    writer.KeepOriginalImageUIDOn()
    d = image.GetDirection()
    for z in range(image.GetDepth()):
        sl = image[:, :, z]          # GDCM's writer stores HU − intercept, as a scanner does
        for tag, value in [("0008|0060", "CT"), ("0008|0016", "1.2.840.10008.5.1.4.1.1.2"), ("0020|000e", uid),
                           ("0020|000d", uid + ".0"), ("0008|0018", f"{uid}.{z + 1}"), ("0020|0052", uid + ".9"),
                           ("0010|0010", "Own^Data"), ("0010|0020", "own-01"), ("0008|103e", "CT abdomen"),
                           ("0018|0050", str(image.GetSpacing()[2])), ("0020|0011", "2"),
                           ("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, z))))),
                           ("0020|0037", "\\".join(map(str, (d[0], d[3], d[6], d[1], d[4], d[7])))),
                           ("0020|0013", str(z + 1)), ("0028|1052", "-1024"), ("0028|1053", "1")]:
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"IM{z:04d}"))           # no suffix, as PACS exports often are
        writer.Execute(sl)
    return folder


def many_classes(label: np.ndarray, names: dict[int, str]) -> tuple[np.ndarray, dict[int, str]]:
    """The label map with extra small classes (3×3-pixel patches in the background along the image's
    top rows, on every slice) so that it holds :data:`CLASSES` classes; with their names."""
    out = label.copy()
    present = [int(v) for v in np.unique(label) if v]
    extra = [v for v in range(8, 200) if v not in names and v not in present][:CLASSES - len(present)]
    width = out.shape[2]
    for i, v in enumerate(extra):
        row, col = 1 + 4 * (i // (width // 4)), 1 + 4 * (i % (width // 4))
        patch = out[:, row:row + 3, col:col + 3]
        patch[patch == 0] = v
        names = {**names, v: f"structure_{v}"}
    assert len(np.unique(out)) - 1 == CLASSES
    return out, names


def build_folder(tmp: Path) -> Path:
    """Write the user's folders and settings file under ``tmp``; return the settings file."""
    import SimpleITK as sitk

    data, bare = tmp / "my_scans", tmp / "no_labels"
    data.mkdir()
    known = {int(k): v for k, v in json.loads((CT_DIR / "labels.json").read_text()).items()}
    names = dict(known)
    for case, form in (("case-01", "dicom"), ("case-02", "nifti"), ("case-03", "nrrd")):
        image = sitk.ReadImage(str(CT_DIR / f"{case}.nii.gz"))
        label = sitk.ReadImage(str(CT_DIR / f"{case}_label.nii.gz"))
        array, names = many_classes(sitk.GetArrayFromImage(label), names)
        label_out = sitk.GetImageFromArray(array.astype(np.uint8))
        label_out.CopyInformation(label)
        if form == "dicom":
            write_series(image, data / case, UID + ".1")
            sitk.WriteImage(label_out, str(data / f"{case}_label.nrrd"))
        else:
            suffix = ".nii.gz" if form == "nifti" else ".nrrd"
            sitk.WriteImage(image, str(data / f"{case}{suffix}"))
            sitk.WriteImage(label_out, str(data / f"{case}_label{suffix}"))
    (data / "labels.json").write_text(json.dumps({str(k): v for k, v in sorted(names.items())}), encoding="utf-8")
    lo, hi = BARE_SLICES
    write_series(sitk.ReadImage(str(CT_DIR / "case-03.nii.gz"))[:, :, lo:hi], bare / "scan-04", UID + ".2")
    (tmp / "reference").mkdir()             # its label map, kept apart: 08 scores against it when named
    sitk.WriteImage(sitk.ReadImage(str(CT_DIR / "case-03_label.nii.gz"))[:, :, lo:hi],
                    str(tmp / "reference" / "scan-04_label.nii.gz"))
    labels = ", ".join(f'{v} = "{n}"' for v, n in CHOSEN.items())
    boxes = "\n".join(f"{n} = {b}" for n, b in BOXES.items())
    settings = tmp / "my_settings.toml"
    settings.write_text(
        f'data = "my_scans"\nmodality = "CT"\nlabels = {{ {labels} }}\ntest_cases = ["case-03"]\n'
        f'min_mm2 = 64\nwork = "my_work"\nepochs = 10\nlr = 1e-4\nbatch_size = 8\nclicks = 1\n'
        f'threads = {THREADS}\ndevice = "cpu"\nscan = "no_labels/scan-04"\n'
        f'reference = "reference/scan-04_label.nii.gz"\n\n[boxes]\n{boxes}\n', encoding="utf-8")
    return settings


def test_the_built_folder_is_what_a_user_brings(tmp_path):
    """The DICOM series reads back as the sample's CT (values in HU, geometry), independently of the notebooks."""
    import SimpleITK as sitk

    from medsam_lite import io
    from medsam_lite.io.cases import find_cases

    build_folder(tmp_path)
    cases = find_cases(tmp_path / "my_scans")
    assert [(c.name, c.image.name, c.label.name) for c in cases] == [
        ("case-01", "case-01", "case-01_label.nrrd"), ("case-02", "case-02.nii.gz", "case-02_label.nii.gz"),
        ("case-03", "case-03.nrrd", "case-03_label.nrrd")]
    series = io.read_volume(tmp_path / "my_scans" / "case-01")
    original = sitk.ReadImage(str(CT_DIR / "case-01.nii.gz"))
    np.testing.assert_array_equal(series.array, sitk.GetArrayFromImage(original))
    assert series.same_geometry(io.read_volume(CT_DIR / "case-01.nii.gz"))
    assert len(np.unique(io.read_label(cases[0].label).array)) - 1 == CLASSES


def test_notebooks_02_to_08_run_on_ones_own_folder_from_the_settings_file_alone(tmp_path, monkeypatch):
    settings = build_folder(tmp_path)
    printed = run_notebooks(settings, tmp_path, monkeypatch)
    for name, text in printed.items():
        summary = next(line for line in text.splitlines() if line.startswith("settings "))
        assert summary.startswith("settings my_settings.toml") and "overridden" not in summary, (name, summary)
    work = tmp_path / "my_work"
    listed = printed["02_prepare_custom_dataset"]
    assert "modality CT" in listed and "case-01: case-01 + case-01_label.nrrd" in listed
    assert "case-03: case-03.nrrd + case-03_label.nrrd" in listed

    from medsam_lite.data.dataset import open_dataset

    ds = open_dataset(work / "my_scans_dataset")
    assert ds.meta["modality"] == "CT" and ds.meta["split"]["case-03"] == "test"
    assert sorted(ds.meta["split"]) == ["case-01", "case-02", "case-03"]      # the DICOM case is in
    assert {int(k): v for k, v in ds.meta["labels"].items()} == CHOSEN        # 3 of the 40 classes
    assert (work / "my_scans_finetune_quick" / "best.pt").exists()
    for label_name in CHOSEN.values():   # 05's table names the chosen labels
        assert label_name in printed["05_evaluate"]
    assert "structure_" not in printed["05_evaluate"]
    assert not (ROOT / "tutorials" / "work" / "my_scans_dataset").exists()
    label_map_line = next(line for line in printed["07_3d_volume_segmentation"].splitlines()
                          if line.startswith("3D Dice per label:"))
    chosen = json.loads(label_map_line.split(":", 1)[1].replace("'", '"'))
    assert chosen and set(chosen) <= set(CHOSEN.values())   # the chosen labels only, not every class of the map

    # 08: the unlabelled DICOM series → label map (NIfTI + DICOM-SEG) and a dataset of it
    out = printed["08_annotate_without_labels"]
    dice = {line.split()[0]: float(line.split()[-1]) for line in out.splitlines() if "3D Dice against" in line}
    assert set(dice) == set(BOXES) and min(dice.values()) > 0.5, dice
    from medsam_lite import io

    saved = io.read_volume(work / "outputs" / "08" / "scan-04_label.nii.gz")
    assert saved.same_geometry(io.read_volume(tmp_path / "no_labels" / "scan-04"))
    assert sorted(int(v) for v in np.unique(saved.array) if v) == sorted(CHOSEN)
    seg = io.read_label(work / "outputs" / "08" / "scan-04_seg.dcm", reference=tmp_path / "no_labels" / "scan-04",
                        names=CHOSEN)   # the DICOM-SEG (segments 1, 2, 3) read back by name: the same label map
    np.testing.assert_array_equal(seg.array, saved.array)
    assert "segments: {1: 'spleen', 5: 'liver', 52: 'aorta'} | same voxels: True" in out
    assert open_dataset(work / "annotated_dataset").manifest["label"].isin(list(CHOSEN)).all()
