"""RTSTRUCT in: contours rasterised onto the grid of the DICOM series they were drawn on (pydicom).

A structure set holds, per ROI (``StructureSetROISequence``: number, name, frame of reference), a
list of planar contours (``ROIContourSequence``: ``ContourData`` = x, y, z triples in patient mm).
Each ``CLOSED_PLANAR`` contour is mapped into the series' voxel indices through its geometry
(origin, direction, spacing — those of :func:`medsam_lite.io.read_volume`), must lie within a
tenth of the slice spacing of one slice, and is filled there by :func:`fill_polygon`: a pixel
belongs to the contour when its **centre** lies inside the polygon or on its outline. Contours of one
ROI on one slice nest: one inside an odd number of others is a hole, cut out without its outline
(contours made from masks run through the centres of the mask's edge pixels, inner ones included).

We rasterise ourselves because rt-utils' reader returned the same mask on every slice of a real
series (FACTS.md); the result is checked against the label map an RTSTRUCT was made from
(tests/test_formats.py, Dice ≥ 0.95 per label) and against an independent point-in-polygon test.

ROIs are skipped (and said so) when they are empty, hold only open or point contours, or lie in
another frame of reference or off the series' slices; when no ROI is left the file is refused with
those reasons. Two different ROIs with the same name stay two labels (the later one is named
``<name> (ROI <number>)``, said in a note).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError

#: A contour farther than this share of the slice spacing from every slice is off the series.
SLICE_TOLERANCE = 0.1
_EPS = 1e-3  # pixels: a centre this close to an edge lies on the outline


def _edges(poly: np.ndarray):
    """``(x0, y0, x1, y1)`` arrays of a closed polygon's edges (``poly`` is ``N×2`` x, y)."""
    nxt = np.roll(poly, -1, axis=0)
    return poly[:, 0], poly[:, 1], nxt[:, 0], nxt[:, 1]


def _interior(poly: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre is inside ``poly`` by the even-odd rule (scanline over rows)."""
    h, w = hw
    out = np.zeros(hw, bool)
    x0, y0, x1, y1 = _edges(poly)
    rows = np.arange(max(0, int(np.ceil(poly[:, 1].min()))), min(h - 1, int(np.floor(poly[:, 1].max()))) + 1)
    for r in rows:
        crossing = (np.minimum(y0, y1) <= r) & (r < np.maximum(y0, y1))  # half-open: a vertex counts once
        if not crossing.any():
            continue
        xs = np.sort(x0[crossing] + (r - y0[crossing]) * (x1[crossing] - x0[crossing]) / (y1[crossing] - y0[crossing]))
        for a, b in zip(xs[0::2], xs[1::2]):
            c0, c1 = max(int(np.ceil(a)), 0), min(int(np.floor(b)), w - 1)
            if c1 >= c0:
                out[r, c0:c1 + 1] = True
    return out


def _outline(poly: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre lies on an edge of ``poly`` (within 0.001 px)."""
    h, w = hw
    out = np.zeros(hw, bool)
    for x0, y0, x1, y1 in zip(*_edges(poly)):
        n = int(np.ceil(max(abs(x1 - x0), abs(y1 - y0)))) * 2 + 2
        t = np.linspace(0.0, 1.0, n)
        cand = np.unique(np.rint(np.stack([x0 + t * (x1 - x0), y0 + t * (y1 - y0)], 1)).astype(np.int64), axis=0)
        d = np.array([x1 - x0, y1 - y0])
        rel = cand - np.array([x0, y0])
        length2 = float(d @ d)
        s = np.clip(rel @ d / length2, 0, 1) if length2 > 0 else np.zeros(len(cand))
        dist = np.linalg.norm(rel - s[:, None] * d, axis=1)
        keep = cand[(dist < _EPS) & (cand[:, 0] >= 0) & (cand[:, 0] < w) & (cand[:, 1] >= 0) & (cand[:, 1] < h)]
        out[keep[:, 1], keep[:, 0]] = True
    return out


def fill_polygon(polygons: list[np.ndarray], hw: tuple[int, int]) -> np.ndarray:
    """Rasterise the contours of one ROI on one slice (``N×2`` arrays of x = column, y = row, in
    pixel units, pixel centres at integers) → ``H×W`` bool.

    A pixel is inside a contour when its centre is inside or on the outline. Contours inside an odd
    number of others are holes: their strict interior (outline excluded) is removed."""
    filled = [(p, _interior(p, hw), _outline(p, hw)) for p in polygons if len(p) >= 3]
    depth = []
    for i, (p, _, _) in enumerate(filled):
        x, y = np.rint(p[0]).astype(int)
        inside = 0
        for j, (_, inner, edge) in enumerate(filled):
            if j != i and 0 <= y < hw[0] and 0 <= x < hw[1] and (inner[y, x] or edge[y, x]) and not _same(p, filled[j][0]):
                inside += 1
        depth.append(inside)
    out = np.zeros(hw, bool)
    for d, (_, inner, edge) in sorted(zip(depth, filled), key=lambda t: t[0]):
        if d % 2 == 0:
            out |= inner | edge
        else:
            out &= ~(inner & ~edge)
    return out


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.allclose(a, b)


def read_rtstruct(path: str | os.PathLike, datasets, geometry) -> tuple[np.ndarray, dict[int, str], list[str]]:
    """Rasterise every ROI of an RTSTRUCT onto a series' grid.

    Args:
        path: the RTSTRUCT file.
        datasets: the series' datasets in array slice order (``dicomseg.series_datasets``).
        geometry: the series as a :class:`~medsam_lite.io.Volume` (its shape, origin, direction, spacing).

    Returns:
        ``(label map (z, y, x) uint16, {k: ROIName}, notes)``: ROI ``k`` (1, 2, … in the file's
        ``StructureSetROISequence`` order, skipped ones left out of the numbering) is label ``k``;
        where ROIs overlap the later one wins. The notes say which ROIs were read and which skipped.

    Raises:
        InputError: the file is not an RTSTRUCT, references another series / frame of reference, or
            none of its ROIs can be read (the message says which were skipped and why).
    """
    import pydicom

    from .dicomseg import check_same_series

    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise InputError(f"{path} could not be read as DICOM ({exc}).") from None
    if getattr(ds, "Modality", None) != "RTSTRUCT":
        raise InputError(f"{path} is a {getattr(ds, 'Modality', 'non-DICOM')} file, not an RTSTRUCT.")
    frame = getattr(datasets[0], "FrameOfReferenceUID", None)
    refs = []
    for fr in getattr(ds, "ReferencedFrameOfReferenceSequence", []):
        for study in getattr(fr, "RTReferencedStudySequence", []):
            refs += [s.SeriesInstanceUID for s in getattr(study, "RTReferencedSeriesSequence", [])]
    if refs and datasets[0].SeriesInstanceUID not in refs:
        check_same_series(f"RTSTRUCT {path.name}", refs[0], None, datasets)

    shape = geometry.array.shape
    spacing = np.asarray(geometry.spacing, float)
    matrix = np.asarray(geometry.direction, float).reshape(3, 3) * spacing  # index (x, y, z) → mm offset
    inverse = np.linalg.inv(matrix)
    origin = np.asarray(geometry.origin, float)
    contours = {int(c.ReferencedROINumber): c for c in getattr(ds, "ROIContourSequence", [])}
    out = np.zeros(shape, np.uint16)
    names: dict[int, str] = {}
    skipped: dict[str, list[str]] = {}
    partial: list[str] = []
    from .dicomseg import distinct_names

    rois = list(getattr(ds, "StructureSetROISequence", []))
    distinct, same_name = distinct_names([str(getattr(r, "ROIName", "") or f"ROI {r.ROINumber}") for r in rois],
                                         [r.ROINumber for r in rois], "ROI")
    for roi, name in zip(rois, distinct):
        roi_frame = getattr(roi, "ReferencedFrameOfReferenceUID", None)
        if frame and roi_frame and roi_frame != frame:
            skipped.setdefault("other series", []).append(name)
            continue
        items = list(getattr(contours.get(int(roi.ROINumber)), "ContourSequence", []) or [])
        closed = [c for c in items if getattr(c, "ContourGeometricType", "CLOSED_PLANAR") == "CLOSED_PLANAR"
                  and len(getattr(c, "ContourData", [])) >= 9]
        if not items:
            skipped.setdefault("empty", []).append(name)
            continue
        if not closed:
            skipped.setdefault("open or point contours only", []).append(name)
            continue
        per_slice: dict[int, list[np.ndarray]] = {}
        off = 0
        for c in closed:
            points = np.asarray(c.ContourData, float).reshape(-1, 3)
            index = (points - origin) @ inverse.T  # (x, y, z) continuous voxel indices
            z = np.rint(index[:, 2])
            if np.abs(index[:, 2] - z).max() > SLICE_TOLERANCE or np.ptp(z) != 0 or not 0 <= z[0] < shape[0]:
                off += 1
                continue
            per_slice.setdefault(int(z[0]), []).append(index[:, :2])
        mask = np.zeros(shape, bool)
        for z, polys in per_slice.items():
            mask[z] = fill_polygon(polys, shape[1:])
        if not mask.any():
            skipped.setdefault("all contours off the series' slices" if off else "empty", []).append(name)
            continue
        label = len(names) + 1
        names[label] = name
        out[mask] = label
        if off:
            partial.append(f"{name} ({off} of {len(closed)} contours off the series' slices, left out)")
    why = "".join(f"; skipped ({why}): {who}" for why, who in skipped.items())
    if not names:
        raise InputError(f"RTSTRUCT {path.name}: none of its {len(rois)} ROIs could be read onto the series"
                         + (why or " (it holds no ROI)") + ". Only CLOSED_PLANAR contours on the series' slices "
                         "become labels; export the structures again from the planning system, on this series.")
    notes = [f"{path.name}: RTSTRUCT, {len(names)} ROIs read {list(names.values())}" + why
             + (f"; partly read: {partial}" if partial else "")] + [f"{path.name}: {n}" for n in same_name]
    return out, names, notes
