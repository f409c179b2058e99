"""Small DICOM series for the DICOM label tests, written from the bundled real CT as a scanner (or an
anonymiser) writes them. Not a test module: imported by tests/test_dicomseg.py, test_rtstruct.py, test_formats.py and test_io_real.py."""

from __future__ import annotations

import SimpleITK as sitk

from medsam_lite import samples

UID = "1.2.826.0.1.3680043.2.1125.29"
CT_CLASS = "1.2.840.10008.5.1.4.1.1.2"


def write_series(folder, slices=slice(3, 7), uid=UID):
    """The real CT sample ``ct_abdomen/case-01`` (``slices`` of it) as one file per slice, with the UIDs,
    Frame of Reference, patient and SOP class a PACS needs. Returns the folder."""
    return write_image_series(sitk.ReadImage(str(samples.ct_abdomen_dir() / "case-01.nii.gz"))[:, :, slices],
                              folder, uid)


def write_image_series(image: sitk.Image, folder, uid=UID, description="CT abdomen", intercept=-1024):
    """A CT ``image`` (HU) as a scanner writes its series: one file per slice, raw values + RescaleIntercept
    (GDCM stores HU − ``intercept``), the UIDs, Frame of Reference, patient, SOP class and series
    ``description`` a PACS needs. Returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = image.GetDirection()
    for z in range(image.GetDepth()):
        sl = image[:, :, z]
        for tag, value in [("0008|0060", "CT"), ("0008|0016", CT_CLASS), ("0020|000e", uid),
                           ("0020|000d", uid + ".0"), ("0008|0018", f"{uid}.{z + 1}"), ("0020|0052", uid + ".9"),
                           ("0010|0010", "Sample^CT"), ("0010|0020", "ct-01"), ("0008|103e", description),
                           ("0018|0050", "3"), ("0020|0011", "2"),
                           ("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, z))))),
                           ("0020|0037", "\\".join(map(str, (d[0], d[3], d[6], d[1], d[4], d[7])))),
                           ("0020|0013", str(z + 1)), ("0028|1052", str(intercept)), ("0028|1053", "1")]:
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{z:03d}.dcm"))
        writer.Execute(sl)
    return folder


def anonymise(folder, file_meta_class: bool = True):
    """Rewrite a series as some anonymisers do: empty SOPClassUID in every dataset (the class only in
    the file meta, or nowhere with ``file_meta_class=False``) and an empty StudyInstanceUID."""
    import pydicom

    for f in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.SOPClassUID = ""
        ds.StudyInstanceUID = ""
        if not file_meta_class:
            ds.file_meta.MediaStorageSOPClassUID = ""
        ds.save_as(f)
    return folder
