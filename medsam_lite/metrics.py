"""Segmentation metrics: Dice (DSC), Normalized Surface Distance (NSD) and NoC (clicks to reach a Dice).

A leaf: it imports nothing of the package but its error type, so evaluation, training and the
click robot all use the same functions (no private copies).

Masks are boolean arrays of the same shape, 2D ``(y, x)`` or 3D ``(z, y, x)``; spacings are in mm
in the same axis order. NSD is DeepMind's surface Dice (``surface-distance`` package,
Nikolov et al. 2021), the metric of the MedSAM paper; medsam_lite only handles empty masks (which
that package cannot) and checks the input.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = ["dice", "nsd", "clicks_to_reach"]


def _pair(pred, truth) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise InputError(f"prediction {pred.shape} and ground truth {truth.shape} differ in shape; "
                         "resample one onto the other's grid first.")
    for name, arr in (("prediction", pred), ("ground truth", truth)):
        if arr.dtype.kind not in "biuf":
            raise InputError(f"{name} has dtype {arr.dtype}; masks must be binary (bool or 0/1), e.g. (label_map == k).")
        if arr.size == 0:
            raise InputError(f"{name} is empty (shape {arr.shape}); pass masks with at least one pixel.")
        if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
            raise InputError(f"{name} is not binary (values {np.unique(arr)[:5]}…); pass (label_map == k).")
    return pred.astype(bool), truth.astype(bool)


def dice(pred, truth) -> float:
    """Dice similarity coefficient of two binary masks, in [0, 1]; 1.0 when both are empty."""
    pred, truth = _pair(pred, truth)
    total = pred.sum() + truth.sum()
    if total == 0:
        return 1.0
    return float(2.0 * np.logical_and(pred, truth).sum() / total)


def nsd(pred, truth, spacing=None, tolerance_mm: float = 1.0) -> float:
    """Normalized Surface Distance (surface Dice at a tolerance) of two binary masks, in [0, 1].

    The share of both surfaces (contour lengths in 2D, surface areas in 3D) that lies within
    ``tolerance_mm`` of the other surface, computed by ``surface_distance``
    (``compute_surface_distances`` + ``compute_surface_dice_at_tolerance``).

    Args:
        pred, truth: boolean (or 0/1) masks of the same shape, ``(y, x)`` or ``(z, y, x)``.
        spacing: pixel/voxel size in mm in the **array's axis order** (``(row, col)`` or
            ``(z, row, col)``); default 1 mm along every axis.
        tolerance_mm: the distance up to which a surface element counts as matched.

    Returns:
        NSD in [0, 1]: 1.0 when both masks are empty, 0.0 when exactly one is.
    """
    from surface_distance import compute_surface_dice_at_tolerance, compute_surface_distances

    pred, truth = _pair(pred, truth)
    if pred.ndim not in (2, 3):
        raise InputError(f"NSD needs 2D (y, x) or 3D (z, y, x) masks, got shape {pred.shape}.")
    order = f"({'z, ' if pred.ndim == 3 else ''}row, col)"
    try:
        values = (1.0,) * pred.ndim if spacing is None else tuple(float(s) for s in np.ravel(spacing))
    except (TypeError, ValueError):
        values = ()
    if isinstance(spacing, (str, bytes)) or len(values) != pred.ndim or not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(f"spacing must be {pred.ndim} positive numbers in mm in array order {order}, got {spacing!r}.")
    spacing = values
    if isinstance(tolerance_mm, bool) or not isinstance(tolerance_mm, (int, float, np.number)) \
            or not (np.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise InputError(f"tolerance_mm must be a finite number ≥ 0 (mm), got {tolerance_mm!r}.")
    has_pred, has_truth = bool(pred.any()), bool(truth.any())
    if not has_pred and not has_truth:
        return 1.0
    if has_pred != has_truth:
        return 0.0
    distances = compute_surface_distances(truth, pred, spacing)
    return float(compute_surface_dice_at_tolerance(distances, float(tolerance_mm)))


def clicks_to_reach(dices, threshold: float) -> int:
    """NoC@threshold: the fewest clicks after which Dice ≥ ``threshold`` (0 = the box alone),
    capped at the clicks made (``len(dices) - 1``) when it is never reached."""
    dices = np.asarray(dices, float)
    hit = np.flatnonzero(dices >= threshold)
    return int(hit[0]) if hit.size else len(dices) - 1
