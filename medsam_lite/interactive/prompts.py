"""Prompts derived from masks: key slices, 3D boxes, RECIST lines, and boxes between pixel spaces.

Pixel spaces (see :mod:`medsam_lite.model.geometry`):

* **original** — the slice as read from the scan, ``H×W`` (a manifest's ``height``/``width``);
* **stored** — a prepared dataset's slice PNG: the original resized so its longest side is the
  dataset's ``image_size`` (aspect kept, no padding), ``h×w``;
* **model input** — ``S×S``; for LiteMedSAM's ``pad`` recipe the stored slice is its top-left
  part, so stored and model-input pixels coincide when ``image_size == S``.

Boxes are XYXY ``[x0, y0, x1, y1]`` (column, row of the top-left and bottom-right pixels,
inclusive), float32. Volumes and 3D masks are ``(z, y, x)`` arrays; a 3D box is the LiteMedSAM
challenge's ``[x0, y0, z0, x1, y1, z1]`` (inclusive, array indices).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..model.geometry import box_from_mask, boxes_to_stored, check_binary, check_boxes, check_numbers

__all__ = ["key_slice", "slices_with", "box3d_from_mask", "recist_from_mask", "box_from_recist", "boxes_to_stored"]


def _mask3d(mask) -> np.ndarray:
    mask = check_binary(mask)
    if mask.ndim != 3:
        raise InputError(f"mask must be a 3D (z, y, x) volume, got shape {mask.shape}; "
                         "for a label map pass `label == k`.")
    if not mask.any():
        raise InputError("mask is empty: no slice holds the target (check the label value).")
    return mask


def slices_with(mask) -> np.ndarray:
    """Indices (int64, ascending) of the slices along axis 0 of a ``(z, y, x)`` mask that hold the target."""
    return np.flatnonzero(_mask3d(mask).any(axis=(1, 2)))


def key_slice(mask) -> int:
    """The slice (index along axis 0 of a ``(z, y, x)`` bool mask) with the most target pixels.

    This is where a user would draw the one box of :func:`medsam_lite.predict_volume`; ties go to
    the lowest index. For a label map pass ``label == k``.

    Raises:
        InputError: a mask that is not 3D and binary, or empty.
    """
    return int(_mask3d(mask).sum(axis=(1, 2)).argmax())


def box3d_from_mask(mask) -> np.ndarray:
    """Tight 3D box ``[x0, y0, z0, x1, y1, z1]`` (float32, inclusive array indices) of a ``(z, y, x)`` mask.

    x/y are the columns/rows of the slices (original pixels), z the slice index; the format
    :meth:`medsam_lite.VolumePredictor.predict` takes as a 3D box.
    """
    mask = _mask3d(mask)
    zs = slices_with(mask)
    x0, y0, x1, y1 = box_from_mask(mask.any(axis=0))
    return np.array([x0, y0, zs[0], x1, y1, zs[-1]], np.float32)


def recist_from_mask(mask):
    """RECIST-style long and short axes of a 2D mask, in original pixels.

    The long axis joins the two target pixels farthest apart (over the convex hull of the pixel
    centres). The short axis is the longest chord perpendicular to it: the pixels are binned by
    their position along the long axis (1 px bins) and the bin with the widest extent across it
    gives the end points.

    Args:
        mask: ``H×W`` bool (or 0/1) mask, non-empty.

    Returns:
        ``((p1, p2), (q1, q2))``: the long-axis and short-axis end points, each ``(x, y)`` float
        (column, row), ready for :func:`medsam_lite.box_from_recist`.

    Raises:
        InputError: a mask that is not 2D and binary, empty, or a single pixel.
    """
    from scipy.spatial import ConvexHull, QhullError

    mask = check_binary(mask, two_d=True)
    ys, xs = np.nonzero(mask)
    if xs.size < 2:
        raise InputError("the mask has fewer than 2 pixels: a RECIST line needs a target with an extent.")
    pts = np.stack([xs, ys], axis=1).astype(np.float64)
    try:
        hull = pts[ConvexHull(pts).vertices]
    except QhullError:  # all pixels on one line
        hull = pts
    d = np.linalg.norm(hull[:, None] - hull[None], axis=2)
    i, j = np.unravel_index(int(d.argmax()), d.shape)
    p1, p2 = hull[i], hull[j]
    u = (p2 - p1) / np.linalg.norm(p2 - p1)
    n = np.array([-u[1], u[0]])
    along, across = (pts - p1) @ u, (pts - p1) @ n
    bins = np.round(along).astype(int)
    best, span = None, -1.0
    for b in np.unique(bins):
        sel = bins == b
        lo, hi = across[sel].min(), across[sel].max()
        if hi - lo > span:
            best, span = (b, lo, hi), hi - lo
    b, lo, hi = best
    q1, q2 = p1 + u * b + n * lo, p1 + u * b + n * hi
    as_xy = lambda p: (float(p[0]), float(p[1]))  # noqa: E731
    return (as_xy(p1), as_xy(p2)), (as_xy(q1), as_xy(q2))


def box_from_recist(p1, p2, short_axis=None, ratio: float = 0.8, image_shape=None) -> np.ndarray:
    """An XYXY box from a RECIST measurement: the long axis, and optionally the short axis.

    RECIST gives a lesion's longest diameter on one slice as a line between two points. Every
    pixel of the lesion projects onto that segment, so the box spans the segment; across it the
    lesion's width is set by the short axis if given, else assumed to be ``ratio`` × the long axis,
    centred on the line. The box is the axis-aligned bound of that oriented rectangle. ``ratio``
    0.8 errs on the large side of typical short/long ratios (≈ 0.6–0.8), since a box a bit too
    large costs the model less than one that cuts the lesion; use 1.0 for round targets.

    Args:
        p1, p2: the long axis's end points ``(x, y)`` in original pixels (column, row).
        short_axis: optional ``((x, y), (x, y))`` end points of the short axis (perpendicular
            diameter); it sets the width and its offset from the long axis.
        ratio: width across the long axis as a fraction of its length when ``short_axis`` is None.
        image_shape: ``(H, W, …)`` to clip the box to the image.

    Returns:
        ``[x0, y0, x1, y1]`` float32, original pixels (use it on the RECIST slice as ``slice_index``).

    Raises:
        InputError: points that are not two numbers, coincide, or a ratio ≤ 0; an ``image_shape``
            that is not (H, W, …); a box that lies outside the image.
    """
    a, b = _point(p1, "p1"), _point(p2, "p2")
    length = float(np.hypot(*(b - a)))
    if length == 0:
        raise InputError("p1 and p2 are the same point; a RECIST long axis needs two distinct end points.")
    u = (b - a) / length
    n = np.array([-u[1], u[0]])
    if short_axis is not None:
        try:
            q1, q2 = short_axis
        except (TypeError, ValueError):
            raise InputError(f"short_axis must be two points ((x, y), (x, y)), got {short_axis!r}.") from None
        offsets = [float(np.dot(_point(q, "short_axis point") - a, n)) for q in (q1, q2)]
        low, high = min(offsets + [0.0]), max(offsets + [0.0])
    else:
        from ..checks import check_float

        ratio = check_float(ratio, "ratio (width across the long axis / its length)", 0, np.inf)
        low, high = -ratio * length / 2, ratio * length / 2
    if high - low <= 0:
        raise InputError("the short axis has no extent across the long axis; give its two end points on "
                         "either side of the lesion, or leave short_axis=None and set ratio.")
    corners = np.array([p + n * o for p in (a, b) for o in (low, high)])
    box = np.concatenate([corners.min(axis=0), corners.max(axis=0)])
    if image_shape is not None:
        try:
            hw = tuple(int(v) for v in tuple(image_shape)[:2])
        except (TypeError, ValueError):
            hw = ()
        if len(hw) != 2 or min(hw) < 1:
            raise InputError(f"image_shape must be (H, W, …) with two positive ints, got {image_shape!r}; "
                             "pass image.shape.")
        box = check_boxes(box, hw)[0]  # clipped to the image; refused if it lies outside
    return box.astype(np.float32)


def _point(p, name: str) -> np.ndarray:
    return check_numbers(p, 2, f"{name} must be one point (x, y) of two finite numbers")
