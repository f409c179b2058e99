"""DICOM-SEG out and in (io/dicomseg.py, io/formats.py), round 3 of the fault probe: anonymised series,
names in any script, names given as {name: value}, names DICOM cannot hold, FRACTIONAL SEGs. Checked with
highdicom and pydicom, not only with our own reader."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import medsam_lite as ml
from dicom_series import CT_CLASS, UID, anonymise, write_series
from medsam_lite import io, samples
from medsam_lite.io.dicomseg import write_seg
from medsam_lite.io.formats import label_writer


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """``(folder, label map (z, y, x))``: 4 slices of the real CT as a DICOM series, with their organs."""
    folder = write_series(tmp_path_factory.mktemp("seg") / "case")
    label = io.read_label(samples.ct_abdomen_dir() / "case-01_label.nii.gz").array[3:7]
    assert io.read_volume(folder).array.shape == label.shape
    return folder, label


@pytest.fixture(scope="module")
def anonymised(tmp_path_factory):
    return anonymise(write_series(tmp_path_factory.mktemp("anon") / "case"))


def _liver(label):
    return (label == 5).astype(np.uint8)


def test_a_seg_of_an_anonymised_series_is_valid_and_references_it(tmp_path, anonymised, series):
    import highdicom as hd
    import pydicom

    mask = _liver(series[1])
    with pytest.warns(UserWarning, match="no StudyInstanceUID .*generated from the series UID") as said:
        write_seg(mask, tmp_path / "seg.dcm", anonymised, names={1: "liver"})
    seg = hd.seg.segread(tmp_path / "seg.dcm")  # highdicom opens it
    files = sorted(anonymised.glob("*.dcm"))
    uids = [pydicom.dcmread(f).SOPInstanceUID for f in files]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == UID
    refs = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    assert {r.ReferencedSOPInstanceUID for r in refs} == set(uids)
    assert {r.ReferencedSOPClassUID for r in refs} == {CT_CLASS}  # taken from the file meta
    assert seg.StudyInstanceUID and seg.StudyInstanceUID in str(said[0].message)
    np.testing.assert_array_equal(seg.get_pixels_by_source_instance(uids, segment_numbers=[1])[..., 0], mask)
    back = io.read_label(tmp_path / "seg.dcm", reference=anonymised)
    np.testing.assert_array_equal(back.array, mask)
    with pytest.warns(UserWarning):  # the same series gets the same generated study every time
        write_seg(mask, tmp_path / "seg2.dcm", anonymised, names={1: "liver"})
    assert hd.seg.segread(tmp_path / "seg2.dcm").StudyInstanceUID == seg.StudyInstanceUID
    assert all(pydicom.dcmread(f).StudyInstanceUID == "" for f in files)  # the series files are untouched


def test_a_series_without_any_sop_class_is_refused_before_any_work(tmp_path, series):
    folder = anonymise(write_series(tmp_path / "case"), file_meta_class=False)
    with pytest.raises(ml.InputError, match="no SOP Class UID .*NIfTI"):
        ml.predict_volume(folder, [40, 30, 0, 90, 80, 3], model="not a model", out=tmp_path / "seg.dcm")
    assert not (tmp_path / "seg.dcm").exists()


def test_non_ascii_segment_names_round_trip_exactly(tmp_path, series):
    import highdicom as hd

    folder, label = series
    names = {1: "Milz ß", 5: "Leber ä 肝", 6: "Żołądek"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom's "could not encode" warning was the only sign
        write_seg(np.where(np.isin(label, [1, 5, 6]), label, 0), tmp_path / "seg.dcm", folder, names=names)
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    assert seg.SpecificCharacterSet == "ISO_IR 192"
    assert [seg.get_segment_description(k).SegmentLabel for k in (1, 2, 3)] == list(names.values())
    assert io.read_label(tmp_path / "seg.dcm", reference=folder).names == {1: "Milz ß", 2: "Leber ä 肝",
                                                                           3: "Żołądek"}


def test_names_as_name_to_value_are_accepted_and_bad_names_refused_before_any_work(tmp_path, series):
    import highdicom as hd

    folder, label = series
    label_writer(tmp_path / "seg.dcm", source=folder, names={"liver": 1}, values=[1])(_liver(label))
    assert hd.seg.segread(tmp_path / "seg.dcm").get_segment_description(1).SegmentLabel == "liver"
    for names, match in [({2: "liver"}, r"name label value\(s\) \[2\] the result cannot hold"),
                         ({1: ""}, "empty name"), ({1: "   "}, "empty name"), ({1: "a\\b"}, "backslash"),
                         ({1: "x" * 65}, "at most 64 characters"), ({1: "liver", 2: "Liver"}, "distinct"),
                         ({1.5: "liver"}, "whole numbers"), ({"liver": "1"}, "whole numbers")]:
        with pytest.raises(ml.InputError, match=match):  # the model is never loaded: refused before work
            ml.predict_volume(folder, [40, 30, 0, 90, 80, 3], model="not a model", out=tmp_path / "x.dcm",
                              names=names)
    assert not (tmp_path / "x.dcm").exists()


def test_seg_names_that_miss_the_labels_present_are_warned_about(tmp_path, series):
    import highdicom as hd

    folder, label = series
    with pytest.warns(UserWarning, match=r"\['2: liver'\] hold no voxel.*\[1\] have no name.*label_1"):
        write_seg(_liver(label), tmp_path / "seg.dcm", folder, names={2: "liver"})
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    assert all(seg.get_segment_description(k).SegmentLabel for k in seg.segment_numbers)  # never empty
    with pytest.raises(ml.InputError, match="empty name"):
        write_seg(_liver(label), tmp_path / "bad.dcm", folder, names={1: ""})
    assert not (tmp_path / "bad.dcm").exists()


def test_a_fractional_seg_is_read_at_half_its_maximum_value(tmp_path, series):
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    folder, label = series
    sources = [pydicom.dcmread(f) for f in sorted(folder.glob("*.dcm"))]  # file order = slice order here
    rng = np.random.default_rng(0)
    prob = np.clip((label == 5) * 0.8 + rng.uniform(-0.45, 0.45, label.shape), 0, 1).astype(np.float32)
    algo = hd.AlgorithmIdentificationSequence(name="test", version="1", family=codes.cid7162.ArtificialIntelligence)
    desc = [hd.seg.SegmentDescription(1, "liver probability", codes.SCT.Organ, codes.SCT.Organ, "AUTOMATIC", algo)]
    seg = hd.seg.Segmentation(sources, prob, "FRACTIONAL", desc, hd.UID(), 3, hd.UID(), 1, "test", "test", "1", "1",
                              max_fractional_value=200)
    seg.save_as(tmp_path / "frac.dcm")
    read = io.read_label(tmp_path / "frac.dcm", reference=folder)
    stored = np.round(prob * 200) / 200  # what the file holds, in steps of 1/200
    np.testing.assert_array_equal(read.array, (stored >= 0.5).astype(np.uint16))
    assert read.names == {1: "liver probability"} and "FRACTIONAL" in read.notes[0] and "0.5" in read.notes[0]


def test_predict_volume_writes_a_seg_of_an_anonymised_series(tmp_path, anonymised, series, model):
    """The probe's case end to end: the series reads and propagates, and the SEG is written after it."""
    import highdicom as hd

    liver = series[1] == 5
    liver[:1] = liver[3:] = False  # two slices keep the test short
    x0, y0, x1, y1 = ml.box_from_mask(liver[1])
    with pytest.warns(UserWarning, match="no StudyInstanceUID"):
        mask = ml.predict_volume(anonymised, [x0, y0, 1, x1, y1, 2], model=model, modality="CT", out=tmp_path / "pred.dcm",
                                 names={"liver": 1}, progress=False)
    assert ml.dice(mask, liver) > 0.5 and not mask[[0, 3]].any()  # the liver is found, inside the 3D box
    seg = hd.seg.segread(tmp_path / "pred.dcm")
    assert seg.get_segment_description(1).SegmentLabel == "liver"
    np.testing.assert_array_equal(io.read_label(tmp_path / "pred.dcm", reference=anonymised).array, mask)
