"""DICOM-SEG in and out (over highdicom), on the grid of the DICOM series it segments.

* :func:`read_seg`: every segment of a SEG mapped onto the series' voxels through the source
  images its frames reference (``get_pixels_by_source_instance``: frame ↔ SOP Instance UID), after
  checking that the SEG belongs to the series (Frame of Reference, referenced series, rows and
  columns, pixel spacing, orientation). Segment ``k`` (SegmentNumber, in file order) becomes label
  ``k`` named by its SegmentLabel; where two segments overlap the later one wins (said in a note).
* :func:`write_seg`: a label map of a series' grid → one BINARY SEG referencing the series (Study,
  Series and SOP Instance UIDs of every slice, Frame of Reference), one segment per label value,
  named; written atomically (:func:`medsam_lite.fileutil.atomic_write`).

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
    try:
        stack = seg.get_pixels_by_source_instance(uids, segment_numbers=numbers, assert_missing_frames_are_empty=True,
                                                  skip_overlap_checks=True, dtype=np.uint8)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise InputError(f"SEG {path.name} could not be mapped onto the series' slices ({exc}).") from None
    out = np.zeros(stack.shape[:3], np.uint16)
    names, empty, overlap = {}, [], 0
    for i, number in enumerate(numbers):
        mask = stack[..., i] > 0
        names[int(number)] = str(seg.get_segment_description(number).SegmentLabel)
        if not mask.any():
            empty.append(names[int(number)])
        overlap += int(np.count_nonzero(mask & (out > 0)))
        out[mask] = number
    notes = [f"{path.name}: DICOM-SEG, {len(numbers) - len(empty)} of {len(numbers)} segments read"
             + (f"; empty: {empty}" if empty else "")]
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
        names: ``{label value: segment name}``; a value without a name is ``label_<value>``.
        series: SeriesInstanceUID when the folder holds several series.
        description: the SEG's SeriesDescription.

    Returns:
        ``path``. Segment ``k`` (1, 2, …) holds the ``k``-th label value (present or named), in value
        order, labelled with its name: label values 1 … N are kept as segment numbers.

    Raises:
        InputError: the array's shape is not the series', it holds no label, or labels are not
            whole numbers ≥ 0.
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
    names = {int(k): str(v) for k, v in (names or {}).items()}
    present = [int(v) for v in np.unique(arr) if v > 0]
    if not present:
        raise InputError("the label map is empty (only 0): a DICOM-SEG needs at least one segment.")
    values = sorted(set(present) | set(names))  # a named label keeps its segment even when nothing was found
    try:
        from importlib.metadata import version

        software = version("medsam-lite")
    except Exception:  # a source tree that was never installed
        software = "0+unknown"
    algorithm = hd.AlgorithmIdentificationSequence(name="medsam_lite", version=software,
                                                   family=codes.cid7162.ArtificialIntelligence)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=k, segment_label=names.get(v, f"label_{v}")[:64],
        segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm)
        for k, v in enumerate(values, start=1)]
    relabelled = np.zeros(arr.shape, np.uint8 if len(values) < 256 else np.uint16)
    for k, v in enumerate(values, start=1):
        relabelled[arr == v] = k
    import pydicom

    sources = [pydicom.dcmread(f) for f in series_files(series_folder, series)]
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
    path = Path(path)
    atomic_write(path, lambda f: seg.save_as(f))
    return path
