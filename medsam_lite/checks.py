"""Checks shared by the public functions: each argument validated once, at the public edge.

Every check returns the value in its canonical form or raises :class:`~medsam_lite.InputError`
naming the argument, what it got and what it takes.
"""

from __future__ import annotations

import sys

import numpy as np

from .errors import InputError


def check_int(value, name: str, minimum: int) -> int:
    """``value`` as an int ≥ ``minimum`` (bool, float and text are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be a whole number ≥ {minimum}, got {value!r}.")
    return int(value)


def check_labels(labels) -> list[int] | None:
    """``None`` or a sorted list of label values (ints); names and other types are refused."""
    if labels is None:
        return None
    items = [labels] if not isinstance(labels, (list, tuple, set, np.ndarray)) else list(labels)
    if not items or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
        raise InputError(f"labels must be label values (whole numbers such as [1, 3], as in the manifest's "
                         f"'label' column), got {labels!r}.")
    return sorted(int(v) for v in items)


def check_cases(cases) -> list[str] | None:
    if cases is None:
        return None
    if isinstance(cases, str):
        return [cases]
    pd = sys.modules.get("pandas")  # a Series or Index exists only where pandas is imported (not imported here)
    kinds = (list, tuple, set, np.ndarray) + ((pd.Series, pd.Index) if pd is not None else ())
    if not isinstance(cases, kinds) or not all(
            isinstance(c, str) for c in cases):
        raise InputError(f"cases must be a list of case ids (strings such as 'sub-01'), got {cases!r}.")
    return list(cases)


def check_float(value, name: str, low: float, high: float) -> float:
    """A real number in the open interval ``(low, high)`` (bool and text are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not (low < float(value) < high):
        raise InputError(f"{name} must be a number in ({max(low, 0):g}, {high:g}), got {value!r}.")
    return float(value)
