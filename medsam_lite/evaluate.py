"""Segmentation metrics: Dice (DSC) and Normalized Surface Distance (NSD).

Masks are boolean arrays of the same shape, 2D ``(y, x)`` or 3D ``(z, y, x)``.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError


def _pair(pred, truth) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise InputError(f"prediction {pred.shape} and ground truth {truth.shape} differ in shape; "
                         "resample one onto the other's grid first.")
    for name, arr in (("prediction", pred), ("ground truth", truth)):
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
