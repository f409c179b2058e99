"""Prompts derived from masks: key slices, 3D boxes, RECIST lines, and boxes between pixel spaces.

Pixel spaces (see :mod:`medsam_lite.transforms`):

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

from .errors import InputError
from .transforms import Geometry, _check_binary, box_from_mask

__all__ = ["key_slice", "slices_with", "box3d_from_mask", "recist_from_mask", "boxes_to_stored"]


def _mask3d(mask) -> np.ndarray:
    mask = _check_binary(mask)
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

    mask = _check_binary(mask)
    if mask.ndim != 2:
        raise InputError(f"mask must be 2D H×W, got shape {mask.shape}.")
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


def boxes_to_stored(boxes, original_hw, image_size: int) -> np.ndarray:
    """Map XYXY boxes from original slice pixels to a prepared dataset's stored-slice pixels.

    Uses :class:`~medsam_lite.transforms.Geometry` with the ``pad`` recipe: the stored slice is
    the original resized by ``image_size / max(H, W)``, which is exactly that geometry's content.

    Args:
        boxes: one box or ``N×4`` XYXY, original pixels (a manifest's ``x0, y0, x1, y1``).
        original_hw: ``(H, W)`` of the original slice (a manifest's ``height``, ``width``).
        image_size: the dataset's stored longest side (``dataset.image_size``, 256 for LiteMedSAM).

    Returns:
        ``N×4`` float32 XYXY in stored pixels.
    """
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InputError(f"boxes must be XYXY [x0, y0, x1, y1] or N×4, got shape {arr.shape}.")
    return Geometry(tuple(original_hw), int(image_size), "pad").box_to_model(arr)
