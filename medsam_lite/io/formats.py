"""The one output-format registry: where a mask, a label map or a scan is written, and how.

Each format is one :class:`OutputFormat` in :data:`FORMATS`, with its suffixes, what it can hold,
its **pre-work check** (run by :func:`check_output` / :func:`label_writer` before a scan is read or
a model runs) and its **geometry rule**:

=============  ===================  ==========================================================
format         suffixes (any case)  holds · geometry
=============  ===================  ==========================================================
``nifti``      .nii.gz, .nii        volume or image · the source scan's spacing/origin/direction
``nrrd``       .nrrd                volume or image · the source's geometry
``mha``        .mha                 volume or image · the source's geometry
``tiff``       .tif, .tiff          volume or image · the source's geometry; masks as 0/255
``png``        .png                 one 2D image (uint8, uint16) · pixels only; masks as 0/255
``jpeg``       .jpg, .jpeg          one 2D uint8 image · pixels only; masks as 0/255; lossy: never a label map
``bmp``        .bmp                 one 2D uint8 image · pixels only; masks as 0/255; labels ≤ 255
``dicom-seg``  .dcm (default)       a label map of a DICOM series · references the series' instances
``rtstruct``   .dcm                 a label map of a DICOM series · contours on the series' instances
=============  ===================  ==========================================================

Masks are 0/1 in volume formats and 0/255 (visible; read back as label 1) in image formats; label
maps keep their values (``uint8``, ``uint16`` above 255). :func:`label_writer` is what
:func:`~medsam_lite.predict_volume`, :func:`~medsam_lite.predict_volume_labels`,
``AnnotationSession.save`` and ``medsam-lite predict --out FILE [--format NAME]`` use;
:func:`write_volume` writes any array (a scan too) to a SimpleITK format.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..fileutil import atomic_path, check_writable
from .dicomseg import check_names, series_datasets, series_files, source_fixes, write_seg
from .scans import Volume, direction_2d, file_suffix, read_volume


@dataclass(frozen=True)
class OutputFormat:
    """One output format of :data:`FORMATS`.

    Attributes:
        name: what ``format=`` / ``--format`` call it.
        suffixes: the file endings it is written under (lower case; any case is accepted).
        flat: holds one 2D image only (a volume is refused before any work).
        image: an image format: a binary mask is written 0/255 (visible).
        lossy: changes pixel values: a label map is refused before any work.
        max_label: the largest label value it holds.
        dicom: references a DICOM series: the source must be read from a series folder.
        compress: written compressed (``.nii`` stays uncompressed).
        geometry: ``"source"`` (the source scan's spacing, origin and direction), ``"pixels"``
            (none: a 2D image file) or ``"series"`` (the DICOM series' instances).
    """

    name: str
    suffixes: tuple[str, ...]
    flat: bool = False
    image: bool = False
    lossy: bool = False
    max_label: int = 65535
    dicom: bool = False
    compress: bool = False
    geometry: str = "source"


#: Every output format, each once; a ``.dcm`` name defaults to the first DICOM one (DICOM-SEG).
FORMATS: tuple[OutputFormat, ...] = (
    OutputFormat("nifti", (".nii.gz", ".nii"), compress=True),
    OutputFormat("nrrd", (".nrrd",), compress=True),
    OutputFormat("mha", (".mha",), compress=True),
    OutputFormat("tiff", (".tif", ".tiff"), image=True),
    OutputFormat("png", (".png",), flat=True, image=True, geometry="pixels"),
    OutputFormat("jpeg", (".jpg", ".jpeg"), flat=True, image=True, lossy=True, max_label=255, geometry="pixels"),
    OutputFormat("bmp", (".bmp",), flat=True, image=True, max_label=255, geometry="pixels"),
    OutputFormat("dicom-seg", (".dcm",), dicom=True, geometry="series"),
    OutputFormat("rtstruct", (".dcm",), dicom=True, geometry="series"),
)
BY_NAME = {f.name: f for f in FORMATS}
#: File endings :func:`write_volume` writes (SimpleITK's single-file formats), from :data:`FORMATS`.
WRITE_SUFFIXES = tuple(s for f in FORMATS if not f.dicom for s in f.suffixes)


def output_format(path, format: str | None = None) -> OutputFormat:
    """The format ``path`` is written in: ``format`` by name, else the one its suffix names
    (``.dcm`` → DICOM-SEG). ``"volume"`` (kept for old calls) means "by the suffix".

    Raises:
        InputError: an unknown format name or suffix, or a suffix the named format does not write.
    """
    path = Path(path)
    suffix = file_suffix(path)
    if format in (None, "volume"):
        for fmt in FORMATS:
            if suffix in fmt.suffixes and not (format == "volume" and fmt.dicom):
                return fmt
        known = ", ".join(s for f in FORMATS if not f.dicom for s in f.suffixes)
        raise InputError(f"cannot write {path.name!r}: the suffix must be one of {known} (any letter case), or "
                         ".dcm (DICOM-SEG, or RTSTRUCT with format='rtstruct').")
    fmt = BY_NAME.get(format)
    if fmt is None:
        raise InputError(f"format must be one of {sorted(BY_NAME)} (or None: from the suffix), got {format!r}.")
    if suffix not in fmt.suffixes:
        raise InputError(f"a {fmt.name} file is written as {' or '.join(fmt.suffixes)}, got {path.name!r}.")
    return fmt


def check_label_output(path: str | os.PathLike, *, label_map: bool | None, ndim: int | None = None,
                       format: str | None = None) -> OutputFormat:
    """The format's own rules for a mask (``label_map=False``) or a label map, checked before any
    work; returns the format.

    Args:
        path: the output file.
        label_map: True for a label map (values 0…N), False for a binary mask, None: not known yet
            (then the label-map rules wait for the array).
        ndim: 2 or 3 when known (a 3D result cannot go to a 2D-image format); None skips that check.
        format: a :data:`FORMATS` name, or None (from the suffix).

    Raises:
        InputError: an unknown suffix or format, a label map to JPEG, a volume to a 2D-image format.
    """
    path = Path(path)
    fmt = output_format(path, format)
    suffix = file_suffix(path)
    stem = path.name[:-len(suffix)] if suffix else path.name
    if label_map and fmt.lossy:
        raise InputError(f"cannot write a label map as {path.name!r}: JPEG is lossy and changes label values "
                         f"(a few % of pixels would carry another label). Use {stem}.png (lossless) or .nii.gz.")
    if ndim == 3 and fmt.flat:
        raise InputError(f"the result is a volume, but {fmt.name.upper()} ({suffix}) holds one 2D image; write it "
                         f"as {stem}.nii.gz (or .nrrd, .mha).")
    return fmt


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


def label_writer(out, format: str | None = None, source=None, names: dict | None = None, values=None, *,
                 label_map: bool | None = None, ndim: int | None = None) -> Callable[[np.ndarray], Path]:
    """Check an output for a mask / label map **before any work** and return ``write(array) -> path``.

    Args:
        out: the output file.
        format: a :data:`FORMATS` name (``"nifti"``, ``"png"``, ``"dicom-seg"``, ``"rtstruct"`` …);
            default None: from the suffix (``.dcm`` → DICOM-SEG).
        source: the scan the array was predicted on: a :class:`Volume` (from
            :func:`~medsam_lite.io.read_volume`) or its path; its geometry is kept (rule
            ``"source"``). A DICOM format needs a scan read from a DICOM series folder (it
            references the series' instances).
        names: ``{label value: name}`` (or ``{name: value}``) for DICOM segments / ROIs (a bool mask
            is label 1); checked here (:func:`~medsam_lite.io.dicomseg.check_names`).
        values: the label values the result can hold (``{1}`` for one mask, a label map's values),
            when the caller knows them: ``names`` naming another value is refused here.
        label_map: True / False when known before the work (a label map is never written lossy);
            None: decided by the array (``bool`` = a mask).
        ndim: 2 or 3 when known (a volume is refused by a 2D-image format before the work).

    Raises:
        InputError: an unknown format or suffix, a DICOM format for a scan that is not a DICOM
            series (or no scan), a label map to JPEG, a volume to PNG, an output folder that does
            not exist or cannot be written, names DICOM cannot hold, a series a DICOM label cannot
            reference (:func:`~medsam_lite.io.dicomseg.source_fixes`). Raised before any work.
    """
    if out is None:
        raise InputError(f"format={format!r} needs out=<file> to write to.")
    out = Path(out)
    fmt = check_label_output(out, label_map=label_map, ndim=ndim, format=format)
    if out.is_dir() or not out.parent.is_dir():
        raise InputError(f"out {out} must be a file path in an existing folder.")
    check_writable(out.parent, "out")
    if fmt.dicom:
        folder = dicom_series_of(source)
        if folder is None:
            what = getattr(source, "path", None) or ("an array" if source is not None else "no scan")
            raise InputError(f"a {'DICOM-SEG' if fmt.name == 'dicom-seg' else 'RTSTRUCT'} references the DICOM "
                             f"series it segments, but the scan is {what}, not a DICOM series folder; read the scan "
                             f"from its series folder, or write {out.with_suffix('').name}.nii.gz instead.")
        names = check_names(names, values)
        source_fixes(series_datasets(folder), warn=False)  # refuses a series no SEG can reference; warns when writing
        writer = write_seg if fmt.name == "dicom-seg" else write_rtstruct
        return lambda array: writer(np.asarray(array).astype(np.uint8) if np.asarray(array).dtype == bool
                                    else np.asarray(array), out, folder, names)

    def write(array) -> Path:
        like = source if isinstance(source, Volume) else read_volume(source) if isinstance(
            source, (str, os.PathLike)) else None  # a scan given by its path: its geometry, read again
        array = np.asarray(array)
        is_map = label_map if label_map is not None else array.dtype != bool
        return (write_label_map if is_map else write_mask)(array, out, like=like, format=fmt.name)
    return write


def write_mask(mask, path: str | os.PathLike, like: Volume | None = None, format: str | None = None) -> Path:
    """Write a binary mask: 0/255 ``uint8`` in image formats, 0/1 ``uint8`` in volume formats.

    Args:
        mask: ``(y, x)`` or ``(z, y, x)`` bool (or 0/1) array.
        path: output file (format from its suffix, any case, or ``format``; see :data:`FORMATS`).
        like: the source scan whose geometry the format keeps (rule ``"source"``; ignored by 2D-image formats).
    """
    mask = np.asarray(mask)
    fmt = check_label_output(path, label_map=False, ndim=mask.ndim, format=format)
    values = mask.astype(bool).astype(np.uint8)
    return write_volume(values * 255 if fmt.image else values, path, like=like)


def write_label_map(labels, path: str | os.PathLike, like: Volume | None = None, format: str | None = None) -> Path:
    """Write a label map (integers, 0 = background) losslessly; JPEG is refused.

    Args:
        labels: ``(y, x)`` or ``(z, y, x)`` integer array with values 0…65535.
        path: output file (format from its suffix, any case, or ``format``; see :data:`FORMATS`).
        like: the source scan whose geometry the format keeps (rule ``"source"``).
    """
    labels = np.asarray(labels)
    fmt = check_label_output(path, label_map=True, ndim=labels.ndim, format=format)
    if labels.dtype.kind not in "biu" or (labels.size and (labels.min() < 0 or labels.max() > 65535)):
        raise InputError(f"a label map holds whole numbers 0…65535, got {labels.dtype} with values "
                         f"{np.unique(labels)[:5]}….")
    top = int(labels.max()) if labels.size else 0
    if top > fmt.max_label:
        raise InputError(f"label {top} does not fit in {file_suffix(Path(path))} (8 bits); write .png or .nii.gz.")
    return write_volume(labels.astype(np.uint8 if top <= 255 else np.uint16), path, like=like)


def write_volume(array: np.ndarray, path: str | os.PathLike, like: Volume | None = None) -> Path:
    """Write ``array`` with the geometry of ``like`` (spacing, origin, direction), atomically.

    The file is written under a temporary name in the same folder and renamed, so an interrupted
    write never leaves a half file under ``path``. The format is the suffix's (:data:`FORMATS`,
    not DICOM); a 2D-image format (rule ``"pixels"``) keeps no geometry.

    Args:
        array: ``(z, y, x)`` or ``(y, x)``; bool is stored as ``uint8``.
        path: output file; the format follows the suffix (``.nii.gz``, ``.nrrd``, ``.mha``, ``.png``).
        like: the source scan whose geometry to copy (its array shape must match).

    Raises:
        InputError: an empty, non-numeric, 1-D or 4-D array, a suffix SimpleITK cannot write here, a
            2D-image format (``.png``, ``.jpg``, ``.bmp``) for a volume or for non-``uint8`` data, or
            an array whose shape differs from ``like``'s. Nothing is written then.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    suffix = file_suffix(path)
    fmt = output_format(path, "volume")
    if array.dtype.kind not in "uif":
        raise InputError(f"cannot write an array of dtype {array.dtype}; write real numbers, e.g. "
                         "mask.astype(np.uint8) or image.astype(np.float32).")
    if array.size == 0 or array.ndim not in (2, 3):
        raise InputError(f"cannot write an array of shape {array.shape}: a volume is (z, y, x) and an image "
                         "(y, x), with no empty axis.")
    if fmt.flat and (array.ndim != 2 or array.dtype != np.uint8):
        if not (fmt.name == "png" and array.ndim == 2 and array.dtype == np.uint16):
            raise InputError(f"{suffix} holds one 2D uint8 image, got {array.dtype} {array.shape}; write a volume "
                             "as .nii.gz, and a mask as (mask > 0).astype(np.uint8) * 255.")
    if like is not None and not isinstance(like, Volume):
        raise InputError(f"like must be a medsam_lite.io.Volume (from read_volume), got {type(like).__name__}.")
    if like is not None:  # a 2D-image format (rule "pixels") stores no geometry, but the shapes must agree
        if array.shape[: like.array.ndim] != like.array.shape[: array.ndim] or array.ndim != len(like.spacing):
            if not (array.ndim == 2 and like.array.ndim == 3 and like.array.shape[:2] == array.shape):
                why = (f"array of shape {array.shape} does not match the reference scan {like.array.shape}"
                       if array.shape[: like.array.ndim] != like.array.shape[: array.ndim] else
                       f"the {array.ndim}-D array has the reference's shape {like.array.shape}, but the reference "
                       f"has a {len(like.spacing)}-D geometry (spacing {like.spacing}; an RGB image?)")
                raise InputError(f"{why}; a mask must have the scan's shape to share its geometry.")
    if like is not None and fmt.geometry == "source":
        vol = Volume(array, like.spacing[: array.ndim], like.origin[: array.ndim],
                     like.direction if array.ndim == len(like.spacing) else direction_2d(like.direction))
    else:
        n = array.ndim
        vol = Volume(array, (1.0,) * n, (0.0,) * n, tuple(np.eye(n).ravel()))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=suffix) as tmp:  # SimpleITK picks the format by the suffix
        sitk.WriteImage(vol.to_sitk(), str(tmp), useCompression=fmt.compress and suffix != ".nii")
    return path


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
