"""Real scans and files as they come from real sites (issues 12.2, 12.3, 15): the abdominal CT/MR
samples, labels stored in another orientation, DICOM series (rescale, gaps, several series), and
files SimpleITK reads wrongly or would block on (FIFO, NaN in NIfTI, JPEG and palette labels)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.errors import InputError
from medsam_lite.io.cases import find_cases
from dicom_series import write_image_series

CT_LIVER, CT_SPLEEN = 5, 1
SERIES_UID = "1.2.826.0.1.3680043.2.1125.7"


def _flip_rows(path, out):
    """The same voxels stored with rows flipped (dcm2niix style): direction y negated, origin at
    the other end of y — what ``sitk.Flip`` writes."""
    img = sitk.ReadImage(str(path))
    flipped = sitk.Flip(img, [False, True, False])
    sitk.WriteImage(flipped, str(out), useCompression=True)
    return flipped


# ---------------------------------------------------------------- the real samples
def test_abdomen_samples_are_real_labelled_scans():
    ct, mr = samples.ct_abdomen_dir(), samples.mr_abdomen_dir()
    names = samples.sample_labels("ct_abdomen")
    assert names[CT_LIVER] == "liver" and names[52] == "aorta" and names[63] == "inferior_vena_cava"
    assert samples.sample_labels("mr_abdomen")[23] == "aorta"
    assert samples.sample_labels() == samples.label_names()  # the brain sample keeps working
    cases = find_cases(ct)
    assert [c.name for c in cases] == ["case-01", "case-02", "case-03"]
    vol, lab = io.read_volume(cases[1].image), io.read_label(cases[1].label)
    assert vol.same_geometry(lab) and vol.array.shape == (10, 101, 122) and vol.spacing == (3.0, 3.0, 3.0)
    assert vol.array.min() <= -1000 and vol.array.max() > 1000  # HU: air and bone
    assert set(np.unique(lab.array)) - {0} <= set(names)
    assert -80 < np.median(vol.array[lab.array == CT_LIVER]) < 200  # liver is soft tissue in HU
    # consecutive blocks of one scan: case-02 starts one slice (3 mm) after case-01 ends
    z01 = io.read_volume(cases[0].image).origin[2]
    assert vol.origin[2] == pytest.approx(z01 + 10 * 3.0, abs=1e-3)
    assert len(find_cases(mr)) == 2
    assert sum(f.stat().st_size for f in samples.data_samples_dir().rglob("*") if f.is_file()) < 15e6


def test_ct_sample_prepares_with_a_held_out_case(tmp_path):
    m = ml.preprocess(samples.ct_abdomen_dir(), tmp_path / "ds", modality="CT", test_cases=["case-03"],
                      progress=False)
    assert set(m.loc[m.split == "test", "case"]) == {"case-03"}
    assert {"liver", "spleen", "stomach"} <= set(m.label_name)
    assert (m.spacing_row == 3.0).all() and (m.slice_spacing == 3.0).all()


# ---------------------------------------------------------------- labels in another orientation
def test_flipped_label_of_a_real_scan_prepares_on_the_image_grid(tmp_path):
    """MR sample (direction = identity); its label stored with rows flipped, direction
    diag(1, -1, 1), origin at the other end of y: the same voxels. Refused before issue 12."""
    src_dir = samples.mr_abdomen_dir()
    plain, flipped = tmp_path / "plain", tmp_path / "flipped"
    for d in (plain, flipped):
        d.mkdir()
        shutil.copy(src_dir / "case-01.nii.gz", d / "case-01.nii.gz")
    shutil.copy(src_dir / "case-01_label.nii.gz", plain / "case-01_label.nii.gz")
    f = _flip_rows(src_dir / "case-01_label.nii.gz", flipped / "case-01_label.nii.gz")
    assert f.GetDirection() == (1, 0, 0, 0, -1, 0, 0, 0, 1)
    assert f.GetOrigin()[1] == pytest.approx(sitk.ReadImage(str(src_dir / "case-01.nii.gz")).GetOrigin()[1] + 90 * 3)

    image = io.read_volume(flipped / "case-01.nii.gz")
    aligned, note = io.align_label(io.read_label(flipped / "case-01_label.nii.gz"), image)
    assert "axis y flipped" in note and aligned.same_geometry(image)
    np.testing.assert_array_equal(aligned.array, io.read_label(plain / "case-01_label.nii.gz").array)

    kw = dict(test_fraction=0, progress=False, min_pixels=20)
    want = ml.preprocess(plain, tmp_path / "ds_plain", **kw)
    with pytest.warns(UserWarning, match="case case-01: label case-01_label.nii.gz put on the image grid"):
        got = ml.preprocess(flipped, tmp_path / "ds_flipped", **kw)
    cols = ["slice", "label", "pixels", "x0", "y0", "x1", "y1", "mask"]
    assert len(got) > 20
    assert got[cols].equals(want[cols])
    for rel in got["mask"][:5]:
        assert (tmp_path / "ds_flipped" / rel).read_bytes() == (tmp_path / "ds_plain" / rel).read_bytes()
    meta = json.loads((tmp_path / "ds_flipped" / "dataset.json").read_text())
    assert "axis y flipped" in meta["cases"]["case-01"]["label_notes"][0]


def test_label_on_another_grid_is_still_refused():
    ct = samples.ct_abdomen_dir()
    image, label = io.read_volume(ct / "case-01.nii.gz"), io.read_label(ct / "case-01_label.nii.gz")
    for shift in ([3.0, 0, 0], [0, 0, 1.6]):  # one voxel in x; more than half a voxel in z
        moved = io.Volume(label.array, label.spacing, tuple(np.add(label.origin, shift)), label.direction, "x")
        with pytest.raises(ml.InputError, match="differ in geometry.*more than half a voxel.*Resample"):
            io.align_label(moved, image)
    other = io.read_label(ct / "case-02_label.nii.gz")
    other = io.Volume(other.array[:, :, :-1], other.spacing, image.origin, image.direction, "y")
    with pytest.raises(ml.InputError, match="differ in geometry: shape"):
        io.align_label(other, image)


def test_a_cropped_volume_keeps_its_place_in_space():
    """``Volume.crop`` (the one crop; the notebooks' quick mode uses it): the array's slices lo … hi - 1
    along the axis, with the origin moved so each voxel stays at its physical point; bad ranges refused."""
    vol = io.read_volume(samples.ct_abdomen_dir() / "case-01.nii.gz")
    full = vol.to_sitk()
    for axis, (lo, hi) in ((0, (3, 7)), (2, (10, 50))):
        sub = vol.crop(lo, hi, axis)
        np.testing.assert_array_equal(sub.array, np.take(vol.array, range(lo, hi), axis))
        index = [1, 2, 1]
        shifted = list(index)
        shifted[2 - axis] += lo  # SimpleITK's (x, y, z) order
        assert sub.to_sitk().TransformIndexToPhysicalPoint(index) == pytest.approx(
            full.TransformIndexToPhysicalPoint(shifted))
        assert (sub.spacing, sub.direction, sub.path) == (vol.spacing, vol.direction, vol.path)
    for lo, hi in ((5, 5), (-1, 3), (0, 11), (2.0, 4)):
        with pytest.raises(ml.InputError, match="0 <= lo < hi <= 10"):
            vol.crop(lo, hi, 0)


# ---------------------------------------------------------------- DICOM
@pytest.fixture(scope="module")
def ct_series(tmp_path_factory):
    image = sitk.ReadImage(str(samples.ct_abdomen_dir() / "case-01.nii.gz"))
    return image, write_image_series(image, tmp_path_factory.mktemp("dicom") / "series", SERIES_UID)


def test_dicom_series_reads_in_hu_with_its_geometry(ct_series):
    pydicom = pytest.importorskip("pydicom")
    image, folder = ct_series
    raw = pydicom.dcmread(folder / "slice000.dcm")
    assert float(raw.RescaleIntercept) == -1024
    hu = sitk.GetArrayFromImage(image)
    assert not np.array_equal(raw.pixel_array, hu[0])  # the file holds raw values …
    vol = io.read_volume(folder)
    np.testing.assert_array_equal(vol.array, hu)  # … read back in HU, slices in order
    assert vol.spacing == pytest.approx(image.GetSpacing()) and vol.origin == pytest.approx(image.GetOrigin())
    assert vol.direction == pytest.approx(image.GetDirection())


def test_dicom_series_with_flipped_nifti_label_prepares(tmp_path, ct_series):
    """The issue-12 case: a DICOM series and a label map from another tool, rows flipped."""
    image, series = ct_series
    src = tmp_path / "src"
    shutil.copytree(series, src / "case-01")
    _flip_rows(samples.ct_abdomen_dir() / "case-01_label.nii.gz", src / "case-01_label.nii.gz")
    with pytest.warns(UserWarning, match="axis y flipped"):
        got = ml.preprocess(src, tmp_path / "ds", modality="CT", test_fraction=0, progress=False)
    want = ml.preprocess([(samples.ct_abdomen_dir() / "case-01.nii.gz",
                           samples.ct_abdomen_dir() / "case-01_label.nii.gz")], tmp_path / "ds2",
                         modality="CT", test_fraction=0, progress=False)
    cols = ["slice", "label", "pixels", "x0", "y0", "x1", "y1"]
    assert len(got) > 10 and got[cols].equals(want[cols])


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_dicom_series_with_a_missing_slice_is_refused(tmp_path, ct_series, damage):
    """Issue 15.2: SimpleITK read such a series as fewer slices with a stretched spacing."""
    folder = shutil.copytree(ct_series[1], tmp_path / "series")
    if damage == "missing":
        (folder / "slice004.dcm").unlink()
    else:
        with open(folder / "slice004.dcm", "r+b") as f:
            f.truncate(3000)
    pattern = "missing slices.*between slice003.dcm.*and slice005.dcm.*6.00 mm, about 1 slice"
    if damage == "corrupt":
        pattern += r".*not part of the series.*slice004.dcm"
    with pytest.raises(ml.InputError, match=pattern):
        io.read_volume(folder)


def test_folder_with_two_series_lists_them(tmp_path, ct_series):
    image, series = ct_series
    folder = shutil.copytree(series, tmp_path / "two")
    write_image_series(image[:, :, :4], tmp_path / "other", uid="1.2.826.0.1.3680043.2.1125.8",
                       description="scout")
    for f in (tmp_path / "other").iterdir():
        shutil.move(f, folder / f"b_{f.name}")
    with pytest.raises(ml.InputError, match=r"2 DICOM series: .*1125\.7 \('CT abdomen', 10 files\).*"
                                            r"1125\.8 \('scout', 4 files\).*series='"):
        io.read_volume(folder)
    vol = io.read_volume(folder, series="1.2.826.0.1.3680043.2.1125.8")
    assert vol.array.shape == (4, 101, 122)
    with pytest.raises(ml.InputError, match="DICOM series"):
        ml.preprocess([(folder, samples.ct_abdomen_dir() / "case-01_label.nii.gz")], tmp_path / "ds",
                      modality="CT", progress=False)
    assert not (tmp_path / "ds").exists()


# ---------------------------------------------------------------- files that are not files
def _refusal(path) -> str:
    """``io.read_volume(path)`` in a child process: the InputError's message, or why not. A child,
    so that a regression (a read blocking on a pipe, holding the GIL) fails the test instead of
    hanging the run; the time limit is a guard, not a speed assertion."""
    code = ("import sys, medsam_lite.io.scans as io, medsam_lite as ml\n"
            "try:\n    io.read_volume(sys.argv[1]); print('READ')\n"
            "except ml.InputError as e:\n    print(e)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    try:
        done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, encoding="utf-8",
                              timeout=120, env=env)
    except subprocess.TimeoutExpired:
        return "hung"
    return done.stdout + done.stderr[-300:]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_device_and_fifo_in_a_dicom_folder_are_refused(tmp_path, ct_series):
    """Issue 15.13: read_volume on a FIFO never returned."""
    fifo = tmp_path / "scan.nii.gz"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        assert "is not a regular file" in _refusal(path)
    folder = shutil.copytree(ct_series[1], tmp_path / "series")
    os.mkfifo(folder / "pipe")
    assert "holds 'pipe', which is not a regular file" in _refusal(folder)


# ---------------------------------------------------------------- values SimpleITK reads wrongly
def test_nan_voxels_in_nifti_are_seen(tmp_path):
    """SimpleITK reads NaN in a NIfTI as 0 (an .nrrd keeps them): the NaN refusal never fired."""
    mr = samples.mr_abdomen_dir()
    img = sitk.Cast(sitk.ReadImage(str(mr / "case-01.nii.gz")), sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(img)
    arr[3, :5, :7] = np.nan  # e.g. outside the field of view
    bad = sitk.GetImageFromArray(arr)
    bad.CopyInformation(img)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("case-01.nii.gz", "case-01.nii"):
        sitk.WriteImage(bad, str(tmp_path / name))
        vol = io.read_volume(tmp_path / name)
        np.testing.assert_array_equal(np.isnan(vol.array), np.isnan(arr))
        np.testing.assert_array_equal(vol.array[~np.isnan(arr)], arr[~np.isnan(arr)])
    shutil.copy(tmp_path / "case-01.nii.gz", src / "case-01.nii.gz")
    shutil.copy(mr / "case-01_label.nii.gz", src / "case-01_label.nii.gz")
    with pytest.raises(ml.InputError, match="NaN"):
        ml.preprocess(src, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def _ct_slice_mask():
    """Slice 5 of the CT sample's case-02 label map (liver and spleen present)."""
    return io.read_label(samples.ct_abdomen_dir() / "case-02_label.nii.gz").array[5]


def test_jpeg_label_is_refused_unless_opted_in(tmp_path):
    """Issue 15.1: a 0/255 liver mask saved as JPEG became ~25 labels without a word."""
    mask = _ct_slice_mask() == CT_LIVER
    img = io.read_volume(samples.ct_abdomen_dir() / "case-02.nii.gz").array[5]
    io.write_volume(np.clip((img + 200) / 2, 0, 255).astype(np.uint8), tmp_path / "a.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "a_mask.jpg", quality=75)
    raw = io.read_volume(tmp_path / "a_mask.jpg").array
    assert len(np.unique(raw)) > 3  # what SimpleITK reads: many grey levels
    with pytest.raises(ml.InputError, match="JPEG.*Save masks as PNG"):
        ml.preprocess(tmp_path, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()
    lab = io.read_label(tmp_path / "a_mask.jpg", allow_lossy=True)
    assert set(np.unique(lab.array)) == {0, 1} and "allow_lossy" in lab.notes[0]
    assert (lab.array.astype(bool) ^ mask).mean() < 0.01


def test_palette_png_label_reads_its_indices(tmp_path):
    """A palette PNG (what mask editors save) was read as its colours or grey levels (60/120)."""
    lab = np.zeros_like(_ct_slice_mask(), dtype=np.uint8)
    lab[_ct_slice_mask() == CT_LIVER], lab[_ct_slice_mask() == CT_SPLEEN] = 1, 2
    for palette in ([0, 0, 0, 60, 60, 60, 120, 120, 120], [0, 0, 0, 255, 0, 0, 0, 255, 0]):
        im = Image.fromarray(lab, "P")
        im.putpalette(palette + [0] * (768 - len(palette)))
        im.save(tmp_path / "p.png")
        got = io.read_label(tmp_path / "p.png")
        np.testing.assert_array_equal(got.array, lab)
        assert "palette" in got.notes[0]


def test_0_255_png_mask_is_label_1_and_said(tmp_path):
    mask = _ct_slice_mask() == CT_LIVER
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "m.png")
    got = io.read_label(tmp_path / "m.png")
    np.testing.assert_array_equal(got.array, mask.astype(np.uint8))
    assert "0/255" in got.notes[0]


# ---- shared by the tests below (from test_faults2.py)
def brain(case: str):
    d = samples.brain_mri_dir()
    return d / f"{case}.nii.gz", d / f"{case}_label.nii.gz"


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
