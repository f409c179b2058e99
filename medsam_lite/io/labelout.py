"""Where a predicted mask or label map goes: a volume file (NIfTI, NRRD, MHA) or a DICOM-SEG.

:func:`label_writer` checks everything that can be checked **before** the model runs (the format,
that a DICOM-SEG has a DICOM series to reference, that the folder can be written) and returns the
function that writes the result. :func:`~medsam_lite.predict_volume`,
:func:`~medsam_lite.predict_volume_labels` and ``medsam-lite predict --out seg.dcm`` use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fileutil import check_writable
from .dicomseg import check_names, series_datasets, series_files, source_fixes, write_seg
from .scans import Volume, read_volume, write_volume

#: ``format=`` values; ``None`` follows the suffix (``.dcm`` → DICOM-SEG, else a volume file).
FORMATS = ("dicom-seg", "rtstruct", "volume")


def dicom_series_of(source) -> Path | None:
    """The DICOM series folder a scan was read from (a :class:`Volume` from a folder, or the folder), else None."""
    where = getattr(source, "path", source) if not isinstance(source, np.ndarray) else None
    if where is None or not isinstance(where, (str, os.PathLike)) or not Path(where).is_dir():
        return None
    try:
        series_files(where)
    except InputError:
        return None
    return Path(where)


def label_writer(out, format: str | None = None, source=None, names: dict | None = None, values=None
                 ) -> Callable[[np.ndarray], Path]:
    """Check an output for a mask / label map and return ``write(array) -> path``.

    Args:
        out: the output file.
        format: ``"dicom-seg"``, ``"rtstruct"`` (:func:`write_rtstruct`) or ``"volume"``; default None:
            ``.dcm`` → DICOM-SEG, else a volume file in the format of its suffix (:func:`~medsam_lite.io.write_volume`).
        source: the scan the array was predicted on: a :class:`Volume` (from
            :func:`~medsam_lite.io.read_volume`) or its path. A DICOM-SEG needs a scan read from a
            DICOM series folder (it references the series' instances).
        names: ``{label value: name}`` (or ``{name: value}``) for the SEG's segments / RTSTRUCT's ROIs
            (a bool mask is label 1); checked here (:func:`~medsam_lite.io.dicomseg.check_names`).
        values: the label values the result can hold (``{1}`` for one mask, a label map's values),
            when the caller knows them: ``names`` naming another value is refused here.

    Raises:
        InputError: an unknown format, a DICOM-SEG asked for a scan that is not a DICOM series (or
            given no scan), a ``.dcm`` name for a volume format, an output folder that does not exist
            or cannot be written, names DICOM cannot hold, a series a DICOM label cannot reference
            (:func:`~medsam_lite.io.dicomseg.source_fixes`). Raised before any work.
    """
    if out is None:
        raise InputError(f"format={format!r} needs out=<file> to write to.")
    out = Path(out)
    if format is not None and format not in FORMATS:
        raise InputError(f"format must be one of {FORMATS} (or None: from the suffix), got {format!r}.")
    fmt = format or ("dicom-seg" if out.suffix.lower() == ".dcm" else "volume")
    if out.is_dir() or not out.parent.is_dir():
        raise InputError(f"out {out} must be a file path in an existing folder.")
    check_writable(out.parent, "out")
    if fmt in ("dicom-seg", "rtstruct"):
        folder = dicom_series_of(source)
        if folder is None:
            what = getattr(source, "path", None) or ("an array" if source is not None else "no scan")
            raise InputError(f"a DICOM-SEG references the DICOM series it segments, but the scan is {what}, not a "
                             "DICOM series folder; read the scan from its series folder, or write "
                             f"{out.with_suffix('').name}.nii.gz instead.")
        if out.suffix.lower() != ".dcm":
            raise InputError(f"a DICOM-SEG or RTSTRUCT is written as a .dcm file, got {out.name!r}.")
        names = check_names(names, values)
        source_fixes(series_datasets(folder), warn=False)  # refuses a series no SEG can reference; warns when writing
        writer = write_seg if fmt == "dicom-seg" else write_rtstruct
        return lambda array: writer(np.asarray(array), out, folder, names)
    if out.suffix.lower() == ".dcm":
        raise InputError(f"{out.name}: .dcm is written as a DICOM-SEG (format='dicom-seg'); a volume format "
                         "needs .nii.gz, .nrrd or .mha.")

    def write(array) -> Path:
        like = source if isinstance(source, Volume) else read_volume(source) if isinstance(
            source, (str, os.PathLike)) else None  # a scan given by its path: its geometry, read again
        array = np.asarray(array)
        return write_volume(array.astype(np.uint8) if array.dtype == bool else array, out, like=like)
    return write


def write_rtstruct(label_map: np.ndarray, path, series_folder, names: dict | None = None) -> Path:
    """Write a label map of a DICOM series' grid as an RTSTRUCT (one ROI per label, named), atomically.

    The contours are made by rt-utils' writer (checked in the tests against our own rasteriser:
    Dice ≥ 0.95 per label); its slice order is matched to ours through the SOP Instance UIDs.

    Raises:
        InputError: the array's shape is not the series', or it holds no label.
    """
    import contextlib
    import io as text_io

    from rt_utils import RTStructBuilder

    from ..fileutil import atomic_write

    arr = np.asarray(label_map)
    ours = series_files(series_folder)
    values = [int(v) for v in np.unique(arr) if v > 0]
    if not values or arr.ndim != 3 or arr.shape[0] != len(ours):
        raise InputError(f"an RTSTRUCT is written from a non-empty (z, y, x) label map of the series' {len(ours)} "
                         f"slices, got shape {arr.shape} with labels {values[:5]}.")
    import pydicom

    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in ours]
    with contextlib.redirect_stdout(text_io.StringIO()):
        rt = RTStructBuilder.create_new(dicom_series_path=str(series_folder))
    theirs = [ds.SOPInstanceUID for ds in rt.series_data]
    if sorted(theirs) != sorted(uids):
        raise InputError(f"rt-utils reads another set of images from {series_folder} than the series; keep one "
                         "series per folder.")
    order = [uids.index(u) for u in theirs]  # rt-utils' slice k is our slice order[k]
    names = check_names(names)
    for v in values:
        rt.add_roi(mask=np.moveaxis(arr[order] == v, 0, -1), name=names.get(v, f"label_{v}"))
    _complete_rtstruct(rt.ds, source_fixes(rt.series_data), rt.series_data[0])
    rt.ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: ROI names in any script
    path = Path(path)
    atomic_write(path, lambda f: rt.ds.save_as(f))
    return path


def _complete_rtstruct(ds, fixes: dict, first) -> None:
    """Make rt-utils' RTSTRUCT valid (dciodvfy): contour coordinates as DS of ≤ 16 characters (rt-utils
    writes up to 19), the Type 2 attributes it leaves out (empty), the Frame of Reference UID; and fill
    what an anonymised series left empty (:func:`~.dicomseg.source_fixes`): the referenced SOP class of
    each image (from the file meta) and the Study UID."""
    from pydicom.valuerep import DSfloat

    for roi in getattr(ds, "ROIContourSequence", []):
        for contour in getattr(roi, "ContourSequence", []):
            contour.ContourData = [DSfloat(float(v), auto_format=True) for v in contour.ContourData]
    for keyword in ("ReferringPhysicianName", "AccessionNumber", "OperatorsName", "PositionReferenceIndicator"):
        if keyword not in ds:
            setattr(ds, keyword, "")
    if not str(getattr(ds, "FrameOfReferenceUID", "") or "").strip():
        ds.FrameOfReferenceUID = first.FrameOfReferenceUID
    classes = set(fixes["sop_class"].values())
    for elem in list(ds.iterall()):
        if elem.keyword == "ReferencedSOPClassUID" and not str(elem.value or "").strip() and len(classes) == 1:
            elem.value = next(iter(classes))
    if fixes["study"]:
        if not str(getattr(ds, "StudyInstanceUID", "") or "").strip():
            ds.StudyInstanceUID = fixes["study"]
        for fr in getattr(ds, "ReferencedFrameOfReferenceSequence", []):
            for study in getattr(fr, "RTReferencedStudySequence", []):
                if not str(getattr(study, "ReferencedSOPInstanceUID", "") or "").strip():
                    study.ReferencedSOPInstanceUID = fixes["study"]
