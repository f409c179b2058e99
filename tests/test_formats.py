"""Labels as hospitals and challenges store them (issue 21): RTSTRUCT and DICOM-SEG in (built here
with rt-utils' writer and highdicom, not with the code under test), DICOM-SEG out, and the CVPR24
"MedSAM on Laptop" npz format both ways, on the real CT/MR samples."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.io.cases import find_cases
from medsam_lite.io.challenge import read_case, write_case
from medsam_lite.io.rtstruct import fill_polygon
from dicom_series import write_image_series
from published_reference import Published

ORGANS = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver", 6: "stomach"}
UID = "1.2.826.0.1.3680043.2.1125.21"
pytestmark = pytest.mark.usefixtures("reuse_encodings")  # a slice encoded again here is answered from memory


def _dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    """``(series folder, label map (z, y, x) of case-01)``: the real CT sample as a DICOM series."""
    image = sitk.ReadImage(str(samples.ct_abdomen_dir() / "case-01.nii.gz"))
    folder = write_image_series(image, tmp_path_factory.mktemp("dicom") / "case-01", UID)
    label = io.read_label(samples.ct_abdomen_dir() / "case-01_label.nii.gz")
    assert io.read_volume(folder).same_geometry(label)  # the series is the NIfTI's grid
    return folder, label.array


def _rtstruct(series, label, path):
    from rt_utils import RTStructBuilder

    rt = RTStructBuilder.create_new(dicom_series_path=str(series))
    for value, name in ORGANS.items():
        rt.add_roi(mask=np.moveaxis(label == value, 0, -1), name=name)  # rt-utils: (rows, cols, slices)
    rt.save(str(path))
    return path


def _highdicom_seg(series, label, path):
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    files = sorted(series.glob("*.dcm"), key=lambda f: int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber))
    sources = [pydicom.dcmread(f) for f in files]  # InstanceNumber order = slice order here
    algo = hd.AlgorithmIdentificationSequence(name="test", version="1", family=codes.cid7162.ArtificialIntelligence)
    values = list(ORGANS)
    descriptions = [hd.seg.SegmentDescription(k, ORGANS[v], codes.SCT.Organ, codes.SCT.Organ, "AUTOMATIC", algo)
                    for k, v in enumerate(values, start=1)]
    stack = np.stack([label == v for v in values], axis=-1).astype(np.uint8)
    seg = hd.seg.Segmentation(sources, stack, "BINARY", descriptions, hd.UID(), 3, hd.UID(), 1, "test", "test", "1",
                              "1")
    seg.save_as(path)
    return path


# ---------------------------------------------------------------- labels in
def test_rtstruct_inside_the_series_prepares_with_roi_names(tmp_path, ct):
    series, label = ct
    src = tmp_path / "src"
    shutil.copytree(series, src / "case-01")
    _rtstruct(series, label, src / "case-01" / "RS.case-01.dcm")  # as a planning system exports it
    assert [c.label.name for c in find_cases(src)] == ["RS.case-01.dcm"]
    read = io.read_label(src / "case-01" / "RS.case-01.dcm")
    assert sorted(read.names.values()) == sorted(ORGANS.values())
    by_name = {n: k for k, n in read.names.items()}
    for value, name in ORGANS.items():  # our rasteriser vs the label map the contours were made from
        assert _dice(read.array == by_name[name], label == value) >= 0.95, name
    assert "5 ROIs read" in read.notes[0]

    m = ml.preprocess(src, tmp_path / "ds", modality="CT", test_fraction=0, progress=False, min_pixels=20)
    assert set(m.label_name) == set(ORGANS.values())
    want = ml.preprocess([(samples.ct_abdomen_dir() / "case-01.nii.gz", samples.ct_abdomen_dir() / "case-01_label.nii.gz")],
                         tmp_path / "ds_nifti", modality="CT", test_fraction=0, progress=False, min_pixels=20,
                         labels=ORGANS)
    cols = ["slice", "label_name", "x0", "y0", "x1", "y1"]
    key = lambda df: df[cols].sort_values(cols).reset_index(drop=True)  # noqa: E731
    assert len(m) == len(want)
    assert np.abs(m.sort_values(["slice", "label_name"]).pixels.to_numpy()
                  - want.sort_values(["slice", "label_name"]).pixels.to_numpy()).max() <= 0.05 * want.pixels.max()
    assert key(m).shape == key(want).shape
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert "RTSTRUCT, 5 ROIs read" in meta["cases"]["case-01"]["label_notes"][0]


def test_seg_beside_the_series_prepares_exactly_and_labels_select_by_name(tmp_path, ct):
    series, label = ct
    src = tmp_path / "src"
    shutil.copytree(series, src / "case-01")
    _highdicom_seg(series, label, src / "case-01_label.dcm")
    read = io.read_label(src / "case-01_label.dcm")
    by_name = {n: k for k, n in read.names.items()}
    for value, name in ORGANS.items():
        np.testing.assert_array_equal(read.array == by_name[name], label == value)
    m = ml.preprocess(src, tmp_path / "ds", modality="CT", test_fraction=0, progress=False, min_pixels=1,
                      labels=["liver", "spleen"])
    assert dict(zip(m.label, m.label_name)) == {1: "liver", 2: "spleen"}
    for row in m.itertuples():  # pixels and boxes are the label map's, exactly
        mask = label[row.slice] == {"liver": 5, "spleen": 1}[row.label_name]
        assert row.pixels == mask.sum() and [row.x0, row.y0, row.x1, row.y1] == ml.box_from_mask(mask).tolist()
    with pytest.raises(ml.InputError, match="name no ROI.*'spleen'"):
        ml.preprocess(src, tmp_path / "ds2", modality="CT", labels=["pancreas"], progress=False)


def test_rtstruct_skipped_rois_are_reported(tmp_path, ct):
    import pydicom

    series, label = ct
    path = _rtstruct(series, label, tmp_path / "rs.dcm")
    ds = pydicom.dcmread(path)
    ds.ROIContourSequence[1].ContourSequence[0].ContourGeometricType = "OPEN_PLANAR"
    for c in ds.ROIContourSequence[1].ContourSequence:
        c.ContourGeometricType = "OPEN_PLANAR"
    del ds.ROIContourSequence[2].ContourSequence
    ds.StructureSetROISequence[3].ReferencedFrameOfReferenceUID = "1.2.3.4"
    ds.save_as(path)
    read = io.read_label(path, reference=series)
    assert sorted(read.names.values()) == ["spleen", "stomach"]
    note = read.notes[0]
    assert "2 ROIs read" in note and "(open or point contours only): ['kidney_right']" in note
    assert "(empty): ['kidney_left']" in note and "(other series): ['liver']" in note


def test_rasteriser_agrees_with_an_independent_point_in_polygon_test():
    """Arbitrary (not pixel-centred) contours: an annulus with an island in its hole."""
    from matplotlib.path import Path as MplPath

    t = np.linspace(0, 2 * np.pi, 97, endpoint=False)
    ring = lambda r, cx=40.3, cy=33.7: np.stack([cx + r * np.cos(t), cy + 0.8 * r * np.sin(t)], 1)  # noqa: E731
    outer, hole, island = ring(30.17), ring(14.41), ring(5.13)
    yy, xx = np.mgrid[:70, :90]
    centres = np.stack([xx.ravel(), yy.ravel()], 1)
    inside = lambda p: MplPath(p).contains_points(centres).reshape(70, 90)  # noqa: E731
    want = inside(outer) & ~inside(hole) | inside(island)
    got = fill_polygon([outer, hole, island], (70, 90))
    assert want.sum() > 1000 and (got != want).sum() == 0


# ---------------------------------------------------------------- labels out
def test_cli_predict_writes_a_seg_that_references_the_series(tmp_path, ct):
    import highdicom as hd
    import pydicom

    from medsam_lite.app import cli

    series, label = ct
    ys, xs = np.nonzero((label[4:6] == 5).any(axis=0))
    box3d = [xs.min(), ys.min(), 4, xs.max(), ys.max(), 5]  # two slices of the liver: a short test
    common = ["predict", str(series), "--box3d", *map(str, box3d), "--modality", "CT", "--backend", "torch"]
    assert cli.main(common + ["--out", str(tmp_path / "seg.dcm")]) == 0
    assert cli.main(common + ["--out", str(tmp_path / "mask.nii.gz")]) == 0
    nifti = io.read_label(tmp_path / "mask.nii.gz").array
    assert not nifti[:4].any() and not nifti[6:].any() and _dice(nifti[4:6], label[4:6] == 5) > 0.5  # 0.60

    seg = hd.seg.segread(tmp_path / "seg.dcm")
    first = pydicom.dcmread(series / "slice000.dcm")
    uids = [pydicom.dcmread(series / f"slice{z:03d}.dcm").SOPInstanceUID for z in range(label.shape[0])]
    assert seg.StudyInstanceUID == first.StudyInstanceUID and seg.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    assert {u for _, _, u in seg.get_source_image_uids()} == set(uids)
    assert seg.get_segment_description(1).SegmentLabel == "segmentation"
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=[1])[..., 0]
    np.testing.assert_array_equal(pixels > 0, nifti > 0)


def test_cli_predict_format_rtstruct_writes_an_rtstruct_of_the_series(tmp_path, ct):
    """``--out x.dcm --format rtstruct`` reaches the RTSTRUCT writer through the one format registry
    (a ``.dcm`` alone stays a DICOM-SEG); a format that cannot take the name is refused before any work."""
    import pydicom

    from medsam_lite.app import cli

    series, label = ct
    ys, xs = np.nonzero((label[4:6] == 5).any(axis=0))
    box3d = [xs.min(), ys.min(), 4, xs.max(), ys.max(), 5]
    common = ["predict", str(series), "--box3d", *map(str, box3d), "--modality", "CT", "--backend", "torch"]
    assert cli.main(common + ["--out", str(tmp_path / "rs.nii.gz"), "--format", "rtstruct"]) == 2  # before any work
    assert cli.main(common + ["--out", str(tmp_path / "rs.dcm"), "--format", "rtstruct"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rs.dcm"]
    ds = pydicom.dcmread(tmp_path / "rs.dcm")
    assert ds.Modality == "RTSTRUCT" and [r.ROIName for r in ds.StructureSetROISequence] == ["segmentation"]
    back = io.read_label(tmp_path / "rs.dcm", reference=series)
    assert back.names == {1: "segmentation"}
    assert not back.array[:4].any() and not back.array[6:].any() and _dice(back.array[4:6] == 1, label[4:6] == 5) > 0.5


def test_predict_volume_labels_round_trips_names_through_seg(tmp_path, ct, model):
    import highdicom as hd

    series, label = ct
    small = np.where(np.isin(label, [1, 5]), label, 0)
    small[:3] = small[6:] = 0  # three slices keep the test short
    seg_in = tmp_path / "in.dcm"
    from medsam_lite.io.dicomseg import write_seg

    write_seg(small, seg_in, series, names={1: "spleen", 5: "liver"})
    given = io.read_label(seg_in, reference=series)
    assert given.names == {1: "spleen", 2: "liver"}
    got = ml.predict_volume_labels(series, given, model=model, modality="CT", out=tmp_path / "out.dcm", progress=False)
    seg = hd.seg.segread(tmp_path / "out.dcm")
    assert [seg.get_segment_description(k).SegmentLabel for k in (1, 2)] == ["spleen", "liver"]
    back = io.read_label(tmp_path / "out.dcm", reference=series)
    np.testing.assert_array_equal(back.array, got)


def test_dicom_output_for_a_non_dicom_source_is_refused_before_any_work(tmp_path):
    nifti = samples.ct_abdomen_dir() / "case-01.nii.gz"
    with pytest.raises(ml.InputError, match="DICOM-SEG references the DICOM series.*not a DICOM series folder"):
        ml.predict_volume(nifti, [40, 30, 4, 90, 80, 6], model="not a model", out=tmp_path / "x.dcm")
    with pytest.raises(ml.InputError, match="DICOM-SEG references"):
        ml.predict_volume(np.zeros((3, 8, 8)), [1, 1, 0, 5, 5, 2], model="not a model", format="dicom-seg",
                          out=tmp_path / "x.dcm")
    from medsam_lite.app import cli

    assert cli.main(["predict", str(nifti), "--box3d", "40", "30", "4", "90", "80", "6", "--out",
                     str(tmp_path / "x.dcm"), "--checkpoint", str(tmp_path / "missing.pth")]) == 2
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the challenge's npz
def _challenge_3d(image_path, label_path, values, slices=slice(None)):
    img, lab = io.read_volume(image_path), io.read_label(label_path).array[slices]
    u8 = ml.normalize_intensity(img.array, "CT", (-160, 240))[slices]
    gts, boxes = np.zeros(lab.shape, np.uint8), []
    for i, v in enumerate(values, start=1):
        z, y, x = np.nonzero(lab == v)
        boxes.append([x.min(), y.min(), z.min(), x.max(), y.max(), z.max()])
        gts[lab == v] = i
    return u8, np.array(boxes), gts, img.spacing


def test_challenge_format_round_trips_and_prepares_as_a_dataset(tmp_path):
    ct, mr = samples.ct_abdomen_dir(), samples.mr_abdomen_dir()
    folder = tmp_path / "train"
    folder.mkdir()
    u8, boxes, gts, spacing = _challenge_3d(ct / "case-02.nii.gz", ct / "case-02_label.nii.gz", [5, 1])
    write_case(folder / "3DBox_CT_case02.npz", u8, boxes, gts, spacing)
    mr_img, mr_lab = io.read_volume(mr / "case-01.nii.gz").array, io.read_label(mr / "case-01_label.nii.gz").array
    z = int(np.argmax((mr_lab > 0).sum(axis=(1, 2))))
    rgb = np.repeat(ml.normalize_intensity(mr_img, "MR")[z][..., None], 3, axis=2)
    write_case(folder / "2DBox_MR_case01.npz", rgb, np.array([ml.box_from_mask(mr_lab[z] > 0)]),
               (mr_lab[z] > 0).astype(np.uint8))
    back = read_case(folder / "3DBox_CT_case02.npz")
    assert back.is_3d and back.spacing == spacing and np.array_equal(back.imgs, u8) and np.array_equal(back.gts, gts)
    assert np.array_equal(back.boxes, boxes)
    assert not read_case(folder / "2DBox_MR_case01.npz").is_3d

    m = ml.preprocess(folder, tmp_path / "ds", test_fraction=0, progress=False, min_pixels=1)
    assert set(m.case) == {"3DBox_CT_case02", "2DBox_MR_case01"}
    ct_rows = m[m.case == "3DBox_CT_case02"]
    assert set(ct_rows.label) == {1, 2} and (ct_rows.spacing_row == spacing[0]).all()
    for row in ct_rows.itertuples():
        mask = gts[row.slice] == row.label
        assert row.pixels == mask.sum() and [row.x0, row.y0, row.x1, row.y1] == ml.box_from_mask(mask).tolist()
    from PIL import Image

    stored = np.asarray(Image.open(tmp_path / "ds" / ct_rows.image.iloc[0]))
    from medsam_lite.model.geometry import resize_slice

    # already windowed uint8: stored as it is (no intensity preset), only resized
    np.testing.assert_array_equal(stored, resize_slice(u8[ct_rows.slice.iloc[0]], stored.shape))


def test_bad_challenge_files_are_refused_before_any_output(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_case(folder / "2DBox_ok.npz", np.zeros((20, 20, 3), np.uint8) + 9, np.array([[2, 2, 10, 10]]))
    write_case(folder / "3DBox_flat.npz", np.zeros((4, 20, 20), np.uint8), np.array([[2, 2, 1, 10, 10, 1]]))
    with pytest.raises(ml.InputError, match="3DBox_flat.npz.*z_min ≥ z_max"):
        ml.run_challenge(folder, tmp_path / "out", model="not a model")
    assert not (tmp_path / "out").exists()
    (folder / "3DBox_flat.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ml.InputError, match="not a readable npz"):
        ml.run_challenge(folder, tmp_path / "out")


def test_cli_challenge_agrees_with_the_published_path_on_real_ct(tmp_path):
    from medsam_lite.app import cli

    ct = samples.ct_abdomen_dir()
    u8, boxes, gts, spacing = _challenge_3d(ct / "case-03.nii.gz", ct / "case-03_label.nii.gz", [5, 1, 6],
                                            slice(2, 8))  # 6 slices: the published path segments the 4 inner ones
    folder = tmp_path / "in"
    folder.mkdir()
    write_case(folder / "3DBox_CT_case03.npz", u8, boxes, gts, spacing)
    z = int(np.argmax((gts == 1).sum(axis=(1, 2))))
    rgb = np.repeat(u8[z][..., None], 3, axis=2)
    boxes2d = np.array([ml.box_from_mask(gts[z] == v) for v in (1, 2)])
    write_case(folder / "2DBox_CT_case03.npz", rgb, boxes2d, np.where(np.isin(gts[z], [1, 2]), gts[z], 0))
    assert cli.main(["challenge", str(folder), str(tmp_path / "out"), "--backend", "torch"]) == 0

    eff = pd.read_csv(tmp_path / "out" / "efficiency.csv")
    assert list(eff.columns) == ["case", "time"] and sorted(eff.case) == ["2DBox_CT_case03.npz", "3DBox_CT_case03.npz"]
    assert (eff.time > 0).all()
    with np.load(tmp_path / "out" / "3DBox_CT_case03.npz") as f:
        segs = f["segs"]
    assert segs.shape == u8.shape and segs.dtype == np.uint8 and set(np.unique(segs)) == {0, 1, 2, 3}
    published = Published(cache=True)  # CVPR24_LiteMedSAM_infer.py on arrays (tests/published_reference.py)
    np.testing.assert_array_equal(segs, published.case_3d(u8, boxes))  # the CLI writes the published segs exactly
    with np.load(tmp_path / "out" / "2DBox_CT_case03.npz") as f:
        segs2d = f["segs"]
    assert segs2d.shape == rgb.shape[:2] and set(np.unique(segs2d)) == {0, 1, 2}
    np.testing.assert_array_equal(segs2d, published.case_2d(rgb, boxes2d))


def test_run_challenge_reports_dsc_and_nsd_with_gts(tmp_path, model):
    from medsam_lite.metrics import dice, nsd

    ct = samples.ct_abdomen_dir()
    u8, _, gts, _ = _challenge_3d(ct / "case-01.nii.gz", ct / "case-01_label.nii.gz", [5, 6])
    z = int(np.argmax((gts == 1).sum(axis=(1, 2))))
    folder = tmp_path / "in"
    folder.mkdir()
    boxes = np.array([ml.box_from_mask(gts[z] == v) for v in (1, 2)])
    write_case(folder / "liver_stomach.npz", np.repeat(u8[z][..., None], 3, axis=2), boxes, gts[z])
    table = ml.run_challenge(folder, tmp_path / "out", model=model, progress=False)
    with np.load(tmp_path / "out" / "liver_stomach.npz") as f:
        segs = f["segs"]
    want_dsc = np.mean([dice(segs == v, gts[z] == v) for v in (1, 2)])
    want_nsd = np.mean([nsd(segs == v, gts[z] == v, None, 2.0) for v in (1, 2)])
    assert table.loc[0, "dsc"] == pytest.approx(want_dsc) and table.loc[0, "nsd"] == pytest.approx(want_nsd)
    assert table.loc[0, "dsc"] > 0.5  # the liver and stomach are found


def test_rtstruct_out_reads_back_through_our_rasteriser(tmp_path, ct):
    from medsam_lite.io.formats import label_writer

    series, label = ct
    small = np.where(np.isin(label, [1, 5]), label, 0)
    label_writer(tmp_path / "rs.dcm", "rtstruct", io.read_volume(series), {1: "spleen", 5: "liver"})(small)
    back = io.read_label(tmp_path / "rs.dcm", reference=series)
    assert back.names == {1: "spleen", 2: "liver"}
    assert _dice(back.array == 1, label == 1) >= 0.95 and _dice(back.array == 2, label == 5) >= 0.95


def test_cli_preprocess_selects_dicom_labels_by_name(tmp_path, ct):
    from medsam_lite.app import cli

    series, label = ct
    src = tmp_path / "src"
    shutil.copytree(series, src / "case-01")
    _rtstruct(series, label, src / "case-01_label.dcm")
    assert cli.main(["preprocess", str(src), str(tmp_path / "ds"), "--modality", "CT", "--test-fraction", "0",
                     "--labels", "stomach", "Liver", "--min-pixels", "1"]) == 0
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["labels"] == {"1": "stomach", "2": "liver"}


def test_a_seg_of_another_series_is_refused(tmp_path, ct):
    series, label = ct
    other = write_image_series(sitk.ReadImage(str(samples.ct_abdomen_dir() / "case-02.nii.gz")), tmp_path / "case-02",
                               uid=UID + "1")
    _highdicom_seg(series, label, tmp_path / "case-02_label.dcm")  # drawn on case-01, put beside case-02
    with pytest.raises(ml.InputError, match="frame of reference .* belongs to another scan"):
        io.read_label(tmp_path / "case-02_label.dcm")
    assert other.is_dir()


def test_label_writer_makes_a_missing_output_folder_and_refuses_one_under_a_file(tmp_path):
    from medsam_lite.io.formats import label_writer

    scan = io.read_volume(samples.sample_path("brain_slice.png"))
    mask = np.zeros(scan.array.shape, bool)
    mask[10:20, 10:30] = True
    out = tmp_path / "new" / "deeper" / "mask.png"
    written = label_writer(out, None, scan, None)(mask)
    assert np.array_equal(io.read_volume(written).array > 0, mask)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ml.InputError, match="cannot be created"):
        label_writer(tmp_path / "a_file" / "sub" / "mask.png", None, scan, None)
    assert (tmp_path / "a_file").read_text() == "x"
