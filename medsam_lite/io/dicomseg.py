"""DICOM-SEG in and out (over highdicom), on the grid of the DICOM series it segments.

* :func:`read_seg`: every segment of a SEG mapped onto the series' voxels through the source
  images its frames reference (``get_pixels_by_source_instance``: frame ↔ SOP Instance UID), after
  checking that the SEG belongs to the series (Frame of Reference, referenced series, rows and
  columns, pixel spacing, orientation). Segment ``k`` (SegmentNumber, in file order) becomes label
  ``k`` named by its SegmentLabel; where two segments overlap the later one wins (said in a note).
* :func:`write_seg`: a label map of a series' grid → one BINARY SEG referencing the series (Study,
  Series and SOP Instance UIDs of every slice, Frame of Reference), one segment per label value,
  named; written atomically (:func:`medsam_lite.fileutil.atomic_write`). Segment names are checked
  before any work (:func:`check_names`: non-empty, distinct, ≤ 64 characters, ``{value: name}`` or
  ``{name: value}``) and written in UTF-8 (Specific Character Set ``ISO_IR 192``), so any script
  round-trips exactly. An anonymised series (empty ``SOPClassUID`` in the datasets, the class only in
  the file meta; empty ``StudyInstanceUID``) is completed in memory (:func:`source_fixes`): the class
  from the file meta, a Study UID generated from the Series UID (the same every time, with a warning).
* A FRACTIONAL SEG is read as a mask where a segment's value is at least half its
  MaximumFractionalValue (probability or occupancy ≥ 0.5), said in a note.

Arrays are ``(z, y, x)`` in the order :func:`medsam_lite.io.read_volume` gives a series (slices
sorted along the normal by GDCM): slice ``z`` is the ``z``-th file of :func:`series_files`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fileutil import atomic_write


def series_files(folder: str | os.PathLike, series: str | None = None) -> list[str]:
    """The image files of one series of ``folder``, in the slice order of :func:`~medsam_lite.io.read_volume`."""
    import SimpleITK as sitk

    from .dicom import pick_series, quiet_pydicom

    with quiet_pydicom():
        uid = pick_series(Path(folder), series)
        return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))


def series_datasets(folder, series: str | None = None):
    """``pydicom`` datasets (without pixel data) of a series, in array slice order."""
    import pydicom

    return [pydicom.dcmread(f, stop_before_pixels=True) for f in series_files(folder, series)]


def _vector(ds, name) -> np.ndarray | None:
    value = getattr(ds, name, None)
    return None if value is None else np.array([float(v) for v in value], float)


def check_same_series(what: str, ref_series: str | None, ref_frame: str | None, datasets) -> None:
    """Refuse a label object that references another series or frame of reference than ``datasets``."""
    first = datasets[0]
    frame = getattr(first, "FrameOfReferenceUID", None)
    if ref_frame and frame and ref_frame != frame:
        raise InputError(f"{what} is in the frame of reference {ref_frame}, the series in {frame}: it belongs to "
                         "another scan (or another registration of it). Put it beside its own series.")
    if ref_series and ref_series != first.SeriesInstanceUID:
        raise InputError(f"{what} references series {ref_series}, not this series {first.SeriesInstanceUID}; put "
                         "it beside the series it was drawn on.")


#: DICOM's limit for a SegmentLabel / ROIName (VR LO: 64 characters, no backslash, no control characters).
NAME_LIMIT = 64


def check_names(names, values=None) -> dict[int, str]:
    """``{label value: segment name}`` from ``names`` as the callers give them, checked before any work.

    Args:
        names: ``None``, ``{value: name}`` or ``{name: value}`` (as :func:`~medsam_lite.preprocess`'s
            ``labels=`` accepts them).
        values: the label values the array to be written can hold (e.g. ``{1}`` for one mask), or None.

    Raises:
        InputError: values that are not whole numbers 1 … 65535, names that are empty, longer than
            64 characters, hold a backslash or control character, repeat, or name a value
            ``values`` does not hold.
    """
    if names is None:
        return {}
    if not isinstance(names, dict):
        raise InputError(f"names must be a dict {{label value: name}} (or {{name: value}}), got {names!r}.")
    items = list(names.items())
    if items and all(isinstance(k, str) for k, _ in items) and not all(isinstance(v, str) for _, v in items):
        items = [(v, k) for k, v in items]  # {name: value}, as preprocess's labels= accepts
    out: dict[int, str] = {}
    for value, name in items:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not 0 < value < 65536:
            raise InputError(f"names maps label values (whole numbers 1…65535) to names, e.g. {{1: 'liver'}} or "
                             f"{{'liver': 1}}; got {value!r}: {name!r}.")
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"label {int(value)} has the empty name {name!r}: DICOM requires a segment / ROI name; "
                             "give it one (e.g. 'liver') or leave the value out of names.")
        bad = sorted({c for c in name if c == "\\" or ord(c) < 32 or ord(c) == 127})
        if bad or len(name.strip()) > NAME_LIMIT:
            raise InputError(f"label {int(value)}'s name {name!r} is not a valid DICOM segment name: at most "
                             f"{NAME_LIMIT} characters, without backslash or control characters"
                             + (f" (it holds {bad!r})." if bad else f" (it has {len(name.strip())})."))
        out[int(value)] = name.strip()
    seen: dict[str, int] = {}
    for value, name in out.items():
        if name.lower() in seen:
            raise InputError(f"labels {seen[name.lower()]} and {value} are both named {name!r}; segment names "
                             "must be distinct (reading the file back would merge them).")
        seen[name.lower()] = value
    if values is not None:
        held = sorted({int(v) for v in values if isinstance(v, (int, np.integer))})
        extra = sorted(set(out) - set(held))
        if extra:
            raise InputError(f"names {{{', '.join(f'{v}: {out[v]!r}' for v in extra)}}} name label value(s) "
                             f"{extra} the result cannot hold (its labels: {held}; one "
                             "mask is label 1): name the result's labels, e.g. names={1: 'liver'}.")
    return out


def distinct_names(names: list[str], numbers: list, what: str) -> tuple[list[str], list[str]]:
    """Names of a file's ROIs / segments, made distinct: two different ROIs both named ``liver`` stay
    two labels, the later one named ``liver (ROI 7)`` (its number in the file), with a note.
    Names that differ only in case or spacing count as the same (as ``labels=`` matches them).

    Returns:
        ``(names in the same order, notes)``.
    """
    out, notes, seen = [], [], {}
    for name, number in zip(names, numbers):
        key = " ".join(str(name).split()).lower()  # as labels= matches names (dicomlabels)
        if key in seen:
            new = f"{name} ({what} {number})"
            notes.append(f"{what} {number} ({name!r}) has the name of {what} {seen[key][1]} ({seen[key][0]!r}): "
                         f"kept as two labels, {what} {number} as {new!r}")
            name = new
        else:
            seen[key] = (name, number)
        out.append(name)
    return out, notes


def source_fixes(datasets, warn: bool = True) -> dict:
    """What an (anonymised) series needs before a SEG / RTSTRUCT can reference it, decided from headers.

    Returns:
        ``{"sop_class": {index: class UID from the file meta}, "study": UID or None}``: datasets with an
        empty ``SOPClassUID`` take ``MediaStorageSOPClassUID``; an empty ``StudyInstanceUID`` takes the
        one other slices carry, else one generated from the SeriesInstanceUID (the same UID for every
        SEG of that series), with a warning when ``warn``.

    Raises:
        InputError: a slice without any SOP class, SOPInstanceUID, SeriesInstanceUID, or a series without
            a FrameOfReferenceUID — a SEG could not reference it (refused before any work).
    """
    import pydicom

    classes = {}
    for i, ds in enumerate(datasets):
        if not str(getattr(ds, "SOPClassUID", "") or "").strip():
            meta = getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or ""
            if not str(meta).strip():
                raise InputError(f"slice {i} of the series has no SOP Class UID (neither SOPClassUID nor the file "
                                 "meta's MediaStorageSOPClassUID): a DICOM-SEG cannot reference it. Write a NIfTI "
                                 "(.nii.gz) instead.")
            classes[i] = str(meta).strip()
        for attr in ("SOPInstanceUID", "SeriesInstanceUID"):
            if not str(getattr(ds, attr, "") or "").strip():
                raise InputError(f"slice {i} of the series has no {attr}: a DICOM-SEG cannot reference it. Write a "
                                 "NIfTI (.nii.gz) instead.")
    if not str(getattr(datasets[0], "FrameOfReferenceUID", "") or "").strip():
        raise InputError("the series has no FrameOfReferenceUID: a DICOM-SEG must share its frame of reference. "
                         "Write a NIfTI (.nii.gz) instead.")
    studies = {str(getattr(ds, "StudyInstanceUID", "") or "").strip() for ds in datasets} - {""}
    study = None
    if len(studies) > 1:
        raise InputError(f"the slices of the series name {len(studies)} different studies; it is not one series.")
    if any(not str(getattr(ds, "StudyInstanceUID", "") or "").strip() for ds in datasets):
        series = str(datasets[0].SeriesInstanceUID)
        study = next(iter(studies)) if studies else pydicom.uid.generate_uid(entropy_srcs=["study of", series])
        if warn and not studies:
            import warnings

            warnings.warn(f"the series {series} has no StudyInstanceUID (anonymised?): the DICOM-SEG gets the Study "
                          f"UID {study}, generated from the series UID (the same for every SEG of this series); "
                          "the series files are not changed.", stacklevel=3)
    return {"sop_class": classes, "study": study}


def _apply_fixes(sources, fixes: dict) -> None:
    """Complete the (in-memory) datasets as :func:`source_fixes` decided; files are not touched."""
    for i, cls in fixes["sop_class"].items():
        sources[i].SOPClassUID = cls
    if fixes["study"]:
        for ds in sources:
            if not str(getattr(ds, "StudyInstanceUID", "") or "").strip():
                ds.StudyInstanceUID = fixes["study"]


def read_seg(path: str | os.PathLike, datasets) -> tuple[np.ndarray, dict[int, str], list[str]]:
    """Read a DICOM-SEG onto a series' grid.

    Args:
        path: the SEG file.
        datasets: the series' datasets in array slice order (:func:`series_datasets`).

    Returns:
        ``(label map (z, y, x) uint16, {segment number: SegmentLabel}, notes)``; notes say how many
        segments were read, which were empty, and overlaps.

    Raises:
        InputError: not a SEG, another series or frame of reference, other rows/columns, pixel
            spacing or orientation than the series, frames that reference no slice of the series.
    """
    import highdicom as hd

    path = Path(path)
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # highdicom raises ValueError/AttributeError for non-SEG files
        raise InputError(f"{path} could not be read as a DICOM-SEG ({exc}).") from None
    refs = [s.SeriesInstanceUID for s in getattr(seg, "ReferencedSeriesSequence", [])]
    if refs and datasets[0].SeriesInstanceUID not in refs:
        check_same_series(f"SEG {path.name}", refs[0], getattr(seg, "FrameOfReferenceUID", None), datasets)
    check_same_series(f"SEG {path.name}", None, getattr(seg, "FrameOfReferenceUID", None), datasets)
    first = datasets[0]
    if (seg.Rows, seg.Columns) != (first.Rows, first.Columns):
        raise InputError(f"SEG {path.name} has {seg.Rows}×{seg.Columns} pixels per frame, the series "
                         f"{first.Rows}×{first.Columns}; it was not made on this series' grid.")
    shared = getattr(seg, "SharedFunctionalGroupsSequence", [None])[0]
    measures = getattr(shared, "PixelMeasuresSequence", [None])[0] if shared is not None else None
    spacing = _vector(measures, "PixelSpacing") if measures is not None else None
    if spacing is not None and not np.allclose(spacing, _vector(first, "PixelSpacing"), atol=1e-3):
        raise InputError(f"SEG {path.name} has pixel spacing {spacing.tolist()}, the series "
                         f"{_vector(first, 'PixelSpacing').tolist()}; it was not made on this series' grid.")
    plane = getattr(shared, "PlaneOrientationSequence", [None])[0] if shared is not None else None
    orient = _vector(plane, "ImageOrientationPatient") if plane is not None else None
    if orient is not None and not np.allclose(orient, _vector(first, "ImageOrientationPatient"), atol=1e-3):
        raise InputError(f"SEG {path.name} is oriented {orient.tolist()}, the series "
                         f"{_vector(first, 'ImageOrientationPatient').tolist()}; resample it onto the series first.")
    numbers = list(seg.segment_numbers)
    uids = [ds.SOPInstanceUID for ds in datasets]
    referenced = {u[2] for u in seg.get_source_image_uids()}
    if not referenced & set(uids):
        raise InputError(f"SEG {path.name} references none of the {len(uids)} slices of series "
                         f"{first.SeriesInstanceUID}; it belongs to another series.")
    fractional = str(getattr(seg, "SegmentationType", "BINARY")).upper() == "FRACTIONAL"
    try:  # FRACTIONAL: highdicom rescales to 0 … 1 (value / MaximumFractionalValue)
        stack = seg.get_pixels_by_source_instance(uids, segment_numbers=numbers, assert_missing_frames_are_empty=True,
                                                  skip_overlap_checks=True,
                                                  dtype=np.float32 if fractional else np.uint8)
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise InputError(f"SEG {path.name} could not be mapped onto the series' slices ({exc}).") from None
    out = np.zeros(stack.shape[:3], np.uint16)
    names, empty, overlap = {}, [], 0
    labels, same_name = distinct_names([str(seg.get_segment_description(n).SegmentLabel) for n in numbers], numbers,
                                       "segment")
    for i, number in enumerate(numbers):
        mask = stack[..., i] >= 0.5 if fractional else stack[..., i] > 0
        names[int(number)] = labels[i]
        if not mask.any():
            empty.append(names[int(number)])
        overlap += int(np.count_nonzero(mask & (out > 0)))
        out[mask] = number
    kind = (f"FRACTIONAL ({getattr(seg, 'SegmentationFractionalType', '?')}) DICOM-SEG, each segment "
            f"thresholded at 0.5 of its maximum fractional value {getattr(seg, 'MaximumFractionalValue', '?')}"
            if fractional else "DICOM-SEG")
    notes = [f"{path.name}: {kind}, {len(numbers) - len(empty)} of {len(numbers)} segments read"
             + (f"; empty: {empty}" if empty else "")]
    notes += [f"{path.name}: {n}" for n in same_name]
    if overlap:
        notes.append(f"{path.name}: {overlap} voxels belong to several segments; the later segment was kept")
    return out, names, notes


def write_seg(label_map: np.ndarray, path: str | os.PathLike, series_folder, names: dict | None = None,
              series: str | None = None, description: str = "medsam_lite segmentation") -> Path:
    """Write a label map of a DICOM series' grid as a DICOM-SEG referencing that series.

    Args:
        label_map: ``(z, y, x)`` integer (or bool) array on the series' grid, as
            :func:`~medsam_lite.io.read_volume` gives the series; 0 = background.
        path: the output file (``.dcm``); written under a temporary name, then renamed.
        series_folder: the folder of the source series.
        names: ``{label value: segment name}`` (or ``{name: value}``; :func:`check_names`); a value
            without a name is ``label_<value>``. A named value absent from the map is an empty segment;
            both mismatches are warned about.
        series: SeriesInstanceUID when the folder holds several series.
        description: the SEG's SeriesDescription.

    Returns:
        ``path``. Segment ``k`` (1, 2, …) holds the ``k``-th label value (present or named), in value
        order, labelled with its name: label values 1 … N are kept as segment numbers.

    Raises:
        InputError: the array's shape is not the series', it holds no label, labels are not whole
            numbers ≥ 0, a name DICOM cannot hold (:func:`check_names`), a series a SEG cannot
            reference (:func:`source_fixes`).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    arr = np.asarray(label_map)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind not in "iu" or (arr.size and arr.min() < 0):
        raise InputError(f"a DICOM-SEG is written from an integer label map (0 = background), got {arr.dtype}.")
    datasets = series_datasets(series_folder, series)
    shape = (len(datasets), int(datasets[0].Rows), int(datasets[0].Columns))
    if arr.shape != shape:
        raise InputError(f"label map {arr.shape} does not match the series in {series_folder} {shape} (z, y, x); "
                         "a SEG is written on the grid of the series it segments.")
    names = check_names(names)
    present = [int(v) for v in np.unique(arr) if v > 0]
    if not present:
        raise InputError("the label map is empty (only 0): a DICOM-SEG needs at least one segment.")
    absent, unnamed = sorted(set(names) - set(present)), sorted(set(present) - set(names))
    if names and (absent or unnamed):
        import warnings

        warnings.warn(f"DICOM-SEG {Path(path).name}: "
                      + "; ".join(([f"named label(s) {[f'{v}: {names[v]}' for v in absent]} hold no voxel and are "
                                    "written as empty segments"] if absent else [])
                                  + ([f"label value(s) {unnamed} have no name in names= and are written as "
                                      f"{['label_%d' % v for v in unnamed]}"] if unnamed else []))
                      + f" (names={names}, label values present: {present}).", stacklevel=2)
    values = sorted(set(present) | set(names))  # a named label keeps its segment even when nothing was found
    try:
        from importlib.metadata import version

        software = version("medsam-lite")
    except Exception:  # a source tree that was never installed
        software = "0+unknown"
    algorithm = hd.AlgorithmIdentificationSequence(name="medsam_lite", version=software,
                                                   family=codes.cid7162.ArtificialIntelligence)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=k, segment_label=names.get(v, f"label_{v}"),
        segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm)
        for k, v in enumerate(values, start=1)]
    relabelled = np.zeros(arr.shape, np.uint8 if len(values) < 256 else np.uint16)
    for k, v in enumerate(values, start=1):
        relabelled[arr == v] = k
    import pydicom

    sources = [pydicom.dcmread(f) for f in series_files(series_folder, series)]
    _apply_fixes(sources, source_fixes(sources))  # an anonymised series: class from the file meta, a Study UID
    first = sources[0]
    thickness = getattr(first, "SliceThickness", None)
    if not thickness:  # optional in the series, required by highdicom: the step between slice positions
        normal = np.cross(*np.reshape(_vector(first, "ImageOrientationPatient"), (2, 3)))
        steps = np.diff([float(_vector(ds, "ImagePositionPatient") @ normal) for ds in sources])
        thickness = float(np.median(np.abs(steps))) if steps.size else 1.0
        for ds in sources:  # in memory only: highdicom reads it from every source image
            ds.SliceThickness = f"{thickness:.6g}"
    measures = hd.PixelMeasuresSequence(pixel_spacing=[float(v) for v in first.PixelSpacing],
                                        slice_thickness=float(thickness))
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=relabelled, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=int(
            getattr(sources[0], "SeriesNumber", None) or 0) + 1000, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="medsam_lite", manufacturer_model_name="LiteMedSAM", software_versions=software,
        device_serial_number="none", series_description=description[:64], omit_empty_frames=False,
        pixel_measures=measures)
    seg.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: names (and the copied patient data) in any script
    path = Path(path)
    atomic_write(path, lambda f: seg.save_as(f))
    return path
