"""RTSTRUCT in and out (io/rtstruct.py, io/formats.py), round 3 of the fault probe: two ROIs with one
name, structure sets with no readable ROI, non-ASCII ROI names and anonymised series on the way out.
The structure sets are made with rt-utils' writer, not with the code under test."""

from __future__ import annotations

import numpy as np
import pytest

import medsam_lite as ml
from dicom_series import CT_CLASS, anonymise, write_series
from medsam_lite import io, samples
from medsam_lite.io.dicomlabels import names_in_file


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    folder = write_series(tmp_path_factory.mktemp("rt") / "case")
    label = io.read_label(samples.ct_abdomen_dir() / "case-01_label.nii.gz").array[3:7]
    return folder, label


def _rtstruct(folder, rois, path):
    from rt_utils import RTStructBuilder

    rt = RTStructBuilder.create_new(dicom_series_path=str(folder))
    for name, mask in rois:
        rt.add_roi(mask=np.moveaxis(mask, 0, -1), name=name)  # rt-utils: (rows, cols, slices)
    rt.save(str(path))
    return path


def _dice(a, b):
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def test_two_rois_with_one_name_stay_two_labels_with_a_note(tmp_path, series):
    folder, label = series
    path = _rtstruct(folder, [("liver", label == 5), ("spleen", label == 1), ("Liver", label == 6)],
                     tmp_path / "rs.dcm")
    read = io.read_label(path, reference=folder)
    assert read.names == {1: "liver", 2: "spleen", 3: "Liver (ROI 3)"}
    assert names_in_file(path) == list(read.names.values())  # what labels= selects by is the same
    assert any("ROI 3 ('Liver') has the name of ROI 1 ('liver'): kept as two labels" in n for n in read.notes)
    assert _dice(read.array == 1, label == 5) > 0.95 and _dice(read.array == 3, label == 6) > 0.95
    src = tmp_path / "src"
    import shutil

    shutil.copytree(folder, src / "case-01")
    shutil.copy(path, src / "case-01_label.dcm")
    m = ml.preprocess(src, tmp_path / "ds", modality="CT", test_fraction=0, progress=False, min_pixels=1)
    assert set(m.label_name) == {"liver", "spleen", "Liver (ROI 3)"}  # not merged into one label


@pytest.mark.parametrize("fault", ["open", "off the slices"])
def test_a_structure_set_with_no_readable_roi_says_which_and_why(tmp_path, series, fault):
    import pydicom

    folder, label = series
    path = _rtstruct(folder, [("liver", label == 5), ("spleen", label == 1), ("stomach", label == 6)],
                     tmp_path / "rs.dcm")
    ds = pydicom.dcmread(path)
    for roi in ds.ROIContourSequence:
        for c in roi.ContourSequence:
            if fault == "open":
                c.ContourGeometricType = "OPEN_PLANAR"
            else:  # 100 mm above the series' 4 slices
                xyz = np.asarray(c.ContourData, float).reshape(-1, 3)
                xyz[:, 2] += 100.0
                c.ContourData = [f"{v:.4f}" for v in xyz.ravel()]
    ds.save_as(path)
    why = "open or point contours only" if fault == "open" else "all contours off the series' slices"
    with pytest.raises(ml.InputError, match=rf"none of its 3 ROIs could be read.*\({why}\): \['liver', 'spleen', "
                                             r"'stomach'\]"):
        io.read_label(path, reference=folder)
    src = tmp_path / "src"
    import shutil

    shutil.copytree(folder, src / "case-01")
    shutil.copy(path, src / "case-01_label.dcm")
    with pytest.raises(ml.InputError, match=why):  # not "none of the labels [1, 2, 3] occur"
        ml.preprocess(src, tmp_path / "ds", modality="CT", test_fraction=0, progress=False)


def test_rtstruct_out_of_an_anonymised_series_with_non_ascii_names(tmp_path, series):
    import pydicom

    folder = anonymise(write_series(tmp_path / "case"))
    label = series[1]
    from medsam_lite.io.formats import label_writer

    with pytest.warns(UserWarning, match="no StudyInstanceUID"):
        label_writer(tmp_path / "rs.dcm", "rtstruct", io.read_volume(folder), {1: "Milz ß", 5: "Leber 肝"})(
            np.where(np.isin(label, [1, 5]), label, 0))
    ds = pydicom.dcmread(tmp_path / "rs.dcm")
    assert ds.SpecificCharacterSet == "ISO_IR 192" and ds.StudyInstanceUID
    classes = {e.value for e in ds.iterall() if e.keyword == "ReferencedSOPClassUID"}
    assert CT_CLASS in classes and "" not in classes
    back = io.read_label(tmp_path / "rs.dcm", reference=folder)
    assert back.names == {1: "Milz ß", 2: "Leber 肝"}
    assert _dice(back.array == 2, label == 5) > 0.95
