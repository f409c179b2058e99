"""Checks and reports of :func:`medsam_lite.preprocess` that need no file to be written.

* :func:`check_slices`: slices that would vanish at model size are refused (and the bytes the case's
  slice images may take are returned, for the free-space check).
* :func:`modality_notes`: intensities that do not look like the chosen modality (CT in HU passed as
  MR; a CT window that clips most voxels, as when RescaleIntercept was not applied).
* :func:`per_label` / :func:`report`: targets kept and dropped per label, so an organ that never
  reaches the minimum size is visible (printed, stored in ``dataset.json``, warned about).
"""

from __future__ import annotations

import warnings

import numpy as np

from .errors import InputError
from .transforms import CT_WINDOWS, Geometry

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
    small = Geometry(hw, settings["image_size"], "pad").resized_hw
    if min(small) < 1:
        raise InputError(
            f"the slices of {where} are {hw[0]}×{hw[1]} pixels (cut along axis {axis}): at image_size "
            f"{settings['image_size']} the short side becomes {min(small)} px, so nothing can be stored. Crop "
            "or pad the image to a less elongated shape, or cut along another axis= .")
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
