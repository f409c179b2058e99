"""Checks and reports of :func:`medsam_lite.preprocess` that need no file to be written.

* :func:`check_slices`: slices that would vanish at model size are refused (and the bytes the case's
  slice images may take are returned, for the free-space check).
* :func:`modality_notes`: intensities that do not look like the chosen modality (CT in HU passed as
  MR; a CT window that clips most voxels, as when RescaleIntercept was not applied).
* :func:`per_label` / :func:`report`: targets kept and dropped per label, so an organ that never
  reaches the minimum size is visible (printed, stored in ``dataset.json``, warned about).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np

from ..errors import InputError
from ..model.intensity import parse_window
from ..model.geometry import Geometry
from ..model.intensity import CT_WINDOWS

_AXES = {"z": 0, "y": 1, "x": 2}  # slicing axis names, in array order

#: A CT window that leaves more than this share of voxels above its top is likely applied to values
#: that are not HU (in HU only bone, contrast and metal lie above 1000).
_CT_ABOVE_TOP = 0.2
#: ... or that clips more than this share of all voxels.
_CT_CLIPPED = 0.9
#: With a non-CT modality, this share of voxels at ≤ -500 looks like air in HU (a CT).
_MR_AIR = 0.02


def check_slices(arr: np.ndarray, axis: int, where, settings: dict) -> int:
    """Refuse slices (cut along ``axis`` of the ``(z, y, x)`` array) whose short side becomes 0 px at
    ``settings["image_size"]`` (``where`` names the image in the message); return the bytes the
    case's slice images may take (uint8, model size, an upper bound of their PNGs)."""
    hw = tuple(n for a, n in enumerate(arr.shape) if a != axis)
    try:
        small = Geometry.stored_size(hw, settings["image_size"], f"the slices of {where} (cut along axis {axis})")
    except InputError as exc:
        raise InputError(f"{exc} Or cut along another axis=.") from None
    return arr.shape[axis] * small[0] * small[1]


def modality_notes(arr: np.ndarray, settings: dict) -> list[str]:
    """Warnings (text, without the case) when the intensities do not look like the chosen modality."""
    window = settings["window"]
    if settings["modality"] == "CT" or window is not None:
        low, high = CT_WINDOWS[window] if isinstance(window, str) else (window or CT_WINDOWS["medsam"])
        above = float(np.count_nonzero(arr > high)) / arr.size
        clipped = above + float(np.count_nonzero(arr < low)) / arr.size
        if above > _CT_ABOVE_TOP or clipped > _CT_CLIPPED:
            return [f"the CT window [{low}, {high}] clips {clipped:.0%} of the voxels ({above:.0%} above its top; "
                    "in HU only bone, contrast and metal are). Are the values in HU? Apply RescaleSlope/"
                    "RescaleIntercept (often HU = value - 1024); for an MR pass modality='MR', or choose "
                    "window=(low, high) covering the tissue of interest"]
        return []
    air = float(np.count_nonzero(arr <= -500)) / arr.size
    if air > _MR_AIR:
        return [f"{air:.0%} of the voxels are ≤ -500 (down to {arr.min()}), like air in a CT in HU, but "
                f"modality={settings['modality']!r} normalizes by percentiles of the voxels > 0 and would lose "
                "everything below 0: this looks like CT in HU, pass modality='CT'"]
    return []


def minimum_text(settings: dict) -> str:
    rule = f"min_pixels={settings['min_pixels']}"
    return rule + (f", min_mm2={settings['min_mm2']:g}" if settings.get("min_mm2") is not None else "")


def per_label(meta: dict, used: dict[int, str]) -> dict[str, dict]:
    """``{label name: {"kept", "dropped", "largest_dropped_pixels"}}`` summed over the done cases."""
    total = {}
    for value, name in used.items():
        t = total.setdefault(name, {"kept": 0, "dropped": 0, "largest_dropped_pixels": 0})
        for c in meta["cases"].values():
            n = c.get("targets_per_label", {}).get(str(value))
            if n:
                t["kept"] += n["kept"]
                t["dropped"] += n["dropped"]
                t["largest_dropped_pixels"] = max(t["largest_dropped_pixels"], n["largest_dropped_pixels"])
    return total


def report(meta: dict, used: dict[int, str], settings: dict, progress: bool) -> None:
    """Print the per-label summary; warn about labels that got no training target at all."""
    per_label = meta.get("targets_per_label", {})
    if progress:
        print(f"targets per label ({minimum_text(settings)}):")
        for name, n in per_label.items():
            print(f"  {name:<24} kept {n['kept']:>6}   dropped {n['dropped']:>6}")
    empty = [f"{name} ({n['dropped']} dropped, the largest {n['largest_dropped_pixels']} px)"
             for name, n in per_label.items() if n["kept"] == 0 and n["dropped"] > 0]
    if empty:
        warnings.warn(f"no target kept for label(s) {', '.join(empty)}: every one is smaller than "
                      f"{minimum_text(settings)}, so they will never be trained on. At coarse pixel spacing "
                      "pass min_mm2= (e.g. 64, the paper's 100 px at 0.8 mm) or a lower min_pixels=.", stacklevel=4)


# ---------------------------------------------------------------- settings and split
def recorded_settings(modality, window, image_size, axis, min_pixels, split_components, test_fraction,
              test_cases, seed, labels, min_mm2=None) -> dict:
    if not isinstance(modality, str) or not modality:
        raise InputError(f"modality must be a string such as 'CT' or 'MR', got {modality!r}.")
    window = parse_window(window)  # the one CT-window check (model.intensity)
    if isinstance(window, tuple):
        window = list(window)
    if not isinstance(image_size, (int, np.integer)) or isinstance(image_size, bool) or image_size < 16:
        raise InputError(f"image_size must be an integer ≥ 16 (256 for LiteMedSAM, 1024 for MedSAM), got {image_size!r}.")
    if isinstance(axis, str):
        if axis.lower() not in _AXES:
            raise InputError(f"axis must be 0/1/2 or 'z'/'y'/'x' (array order), got {axis!r}.")
        axis = _AXES[axis.lower()]
    elif axis is not None and axis not in (0, 1, 2):
        raise InputError(f"axis must be None (thickest), 0/1/2 or 'z'/'y'/'x' (array order), got {axis!r}.")
    if min_mm2 is not None:
        if isinstance(min_mm2, bool) or not isinstance(min_mm2, (int, float, np.integer, np.floating)) \
                or not math.isfinite(min_mm2) or min_mm2 < 0:
            raise InputError(f"min_mm2 must be a number ≥ 0 (a target's area in mm²) or None, got {min_mm2!r}.")
        min_mm2 = float(min_mm2)
    if min_pixels is None:
        min_pixels = 100 if min_mm2 is None else 1  # the paper's 100 px, unless the minimum is in mm²
    if not isinstance(min_pixels, (int, np.integer)) or isinstance(min_pixels, bool) or min_pixels < 0:
        raise InputError(f"min_pixels must be an integer ≥ 0, got {min_pixels!r}.")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise InputError(f"seed must be an integer, got {seed!r}.")
    if not isinstance(test_fraction, (int, float)) or not 0 <= test_fraction < 1:
        raise InputError(f"test_fraction must be in [0, 1), got {test_fraction!r}.")
    if test_cases is not None:
        if isinstance(test_cases, str):
            test_cases = [test_cases]
        test_cases = sorted(str(c) for c in test_cases)
    if isinstance(labels, Mapping):
        try:
            labels = {str(int(k)): str(v) for k, v in labels.items()}
        except (TypeError, ValueError):
            raise InputError(f"labels must map integer label values to names, got {labels!r}.") from None
    elif labels is not None:
        try:
            labels = sorted(int(k) for k in labels)
        except (TypeError, ValueError):
            raise InputError(f"labels must be a dict {{value: name}} or a list of values, got {labels!r}.") from None
    if labels is not None and (not labels or "0" in labels or 0 in labels):
        raise InputError("labels must list at least one label value other than 0 (the background).")
    return dict(image_size=int(image_size), modality=modality.upper(), window=window,
                min_pixels=int(min_pixels), min_mm2=min_mm2, split_components=bool(split_components), axis=axis,
                seed=int(seed), test_fraction=float(test_fraction), test_cases=test_cases, labels=labels)


def assign_split(names: list[str], settings: dict) -> dict[str, str]:
    """Case → "train"/"test": ``test_cases`` if given, else a seeded shuffle, round-half-up
    ``test_fraction × n`` test cases (at least one when n ≥ 2 and test_fraction > 0)."""
    if settings["test_cases"] is not None:
        unknown = sorted(set(settings["test_cases"]) - set(names))
        if unknown:
            raise InputError(f"test_cases {unknown} are not cases of this source; cases are {names[:10]}"
                             f"{' …' if len(names) > 10 else ''}.")
        test = set(settings["test_cases"])
    else:
        n = len(names)
        k = int(math.floor(settings["test_fraction"] * n + 0.5))
        if settings["test_fraction"] > 0 and n >= 2:
            k = min(max(k, 1), n - 1)
        order = np.random.default_rng(settings["seed"]).permutation(sorted(names))
        test = set(order[:k].tolist())
    return {n: ("test" if n in test else "train") for n in sorted(names)}
