"""Build ``data_samples/ct_dicom/``: the bundled CT's held-out slab as a DICOM series + RTSTRUCT.

From ``ct_abdomen/case-03.nii.gz`` (TotalSegmentator's example CT, RAS-stored NIfTI) and its label
map, this script writes, deterministically (fixed UIDs, no dates):

* ``ct_dicom/case-03/IM0001.dcm`` … one CT Image Storage file per axial slice, as a scanner writes
  them: reoriented to LPS (``ImageOrientationPatient`` 1\\0\\0\\0\\1\\0, so the array is already in
  radiological order), stored values = HU + 1024 with ``RescaleIntercept`` −1024, position,
  orientation, UIDs (SimpleITK's GDCM writer: the package has no series writer);
* ``ct_dicom/case-03_label.dcm``: an RTSTRUCT with one ROI per organ of the tutorials (spleen, liver,
  aorta, inferior_vena_cava), written by the package's own RTSTRUCT writer
  (:func:`medsam_lite.io.formats.write_rtstruct`), so the folder is also a one-case dataset in the
  ``<case>/`` + ``<case>_label.dcm`` layout ``preprocess`` reads (ROI names become label names).

The script then reads both back with the package (``io.read_volume``, ``io.read_label``) and checks
the series is the NIfTI's voxels in HU on the same physical grid, and the RTSTRUCT's masks against
the label map (Dice per organ ≥ 0.9: contours are polygons of the voxel masks).

Run ``python data_samples/make_dicom_sample.py`` (about 5 s; ``--out DIR`` to write elsewhere).
The notebooks use it through ``tutorials/settings.toml`` (``scan`` / ``reference`` of notebook 08,
shown in notebook 02); the files are committed (≈ 0.3 MB).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: The organs written as ROIs (label values of the CT sample → names).
ORGANS = {1: "spleen", 5: "liver", 52: "aorta", 63: "inferior_vena_cava"}
#: A fixed UID root (the pydicom example root + a project suffix): reruns give the same UIDs.
UID = "1.2.826.0.1.3680043.8.498.34"
CASE = "case-03"


def write_series(image, folder: Path, uid: str = UID) -> Path:
    """One CT file per slice of a SimpleITK ``image`` (HU), with the tags a reader sorts and scales by."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")
    writer.KeepOriginalImageUIDOn()
    d = image.GetDirection()
    for z in range(image.GetDepth()):
        sl = image[:, :, z]
        for tag, value in [("0008|0060", "CT"), ("0008|0016", "1.2.840.10008.5.1.4.1.1.2"),
                           ("0008|0018", f"{uid}.1.{z + 1}"), ("0020|000d", f"{uid}.0"), ("0020|000e", f"{uid}.1"),
                           ("0020|0052", f"{uid}.9"), ("0010|0010", "Sample^CT"), ("0010|0020", "ct-sample-03"),
                           ("0008|103e", "CT abdomen (TotalSegmentator example, slab 3)"), ("0020|0011", "1"),
                           ("0008|0020", "20200101"), ("0008|0030", "000000"), ("0008|0050", "1"),
                           ("0018|0050", f"{image.GetSpacing()[2]:g}"),
                           ("0020|0032", "\\".join(f"{v:g}" for v in image.TransformIndexToPhysicalPoint((0, 0, z)))),
                           ("0020|0037", "\\".join(f"{v:g}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))),
                           ("0020|0013", str(z + 1)), ("0028|1052", "-1024"), ("0028|1053", "1")]:
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"IM{z + 1:04d}.dcm"))
        writer.Execute(sl)
    return folder


def make(out: Path = HERE / "ct_dicom", source: Path = HERE / "ct_abdomen") -> Path:
    """Write ``out/case-03/`` (series) and ``out/case-03_label.dcm`` (RTSTRUCT); return ``out``."""
    import SimpleITK as sitk

    from medsam_lite import io
    from medsam_lite.io.formats import write_rtstruct

    image = sitk.DICOMOrient(sitk.ReadImage(str(source / f"{CASE}.nii.gz")), "LPS")
    label = sitk.DICOMOrient(sitk.ReadImage(str(source / f"{CASE}_label.nii.gz")), "LPS")
    if out.exists():
        shutil.rmtree(out)
    series = write_series(sitk.Cast(image, sitk.sitkInt16), out / CASE)
    lab = sitk.GetArrayFromImage(label)
    lab = np.where(np.isin(lab, list(ORGANS)), lab, 0).astype(np.uint8)
    write_rtstruct(lab, out / f"{CASE}_label.dcm", series, names=ORGANS)

    # check: the series is the NIfTI in HU on the same grid; the RTSTRUCT holds the organs
    back = io.read_volume(series)
    nifti = io.read_volume(source / f"{CASE}.nii.gz")
    assert np.array_equal(back.array, sitk.GetArrayFromImage(image)), "series voxels differ from the NIfTI"
    assert np.allclose(back.origin, image.GetOrigin()) and np.allclose(back.direction, image.GetDirection())
    assert back.array.shape == nifti.array.shape
    rt = io.read_label(out / f"{CASE}_label.dcm", reference=series, names=ORGANS)
    for v, name in ORGANS.items():
        t, p = lab == v, rt.array == v
        dice = 2 * (t & p).sum() / max(t.sum() + p.sum(), 1)
        print(f"{name:20s} {int(t.sum()):6d} voxels, RTSTRUCT Dice {dice:.3f}")
        assert dice >= 0.9, f"{name}: RTSTRUCT Dice {dice:.3f} against the label map"
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({len(list(series.iterdir()))} slices + RTSTRUCT, {size / 1e6:.2f} MB)")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "ct_dicom")
    args = parser.parse_args(argv)
    make(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
