"""How an axial slice is shown, in every figure and the widget: radiological orientation from a
scan's direction, and a display window per modality (not the model's input window).

Pure numpy (no plotting library): :mod:`medsam_lite.plotting` and the widget's view
(:mod:`medsam_lite.interactive.canvas`) both use it.
"""

from __future__ import annotations

import numpy as np


#: Display windows (low, high) per modality for every figure: CT soft tissue W400 / L40 (HU). Not
#: the model's input window (CT [-500, 1000], :mod:`medsam_lite.model.intensity`), which is wide
#: and shows soft tissue flat grey. Other modalities: the 0.5–99.5 percentiles of the voxels > 0.
DISPLAY_WINDOWS = {"CT": (-160.0, 240.0)}


def display_window(image, modality: str = "CT", reference=None) -> np.ndarray:
    """``image`` (original intensities, any shape) windowed for display, ``uint8``.

    Args:
        modality: ``"CT"`` (Hounsfield units, :data:`DISPLAY_WINDOWS`) or any other (percentiles).
        reference: the array the percentiles come from (e.g. the whole volume, so every slice of it
            gets the same window); default ``image``.
    """
    img = np.asarray(image, dtype=np.float32)
    mod = str(modality).strip().upper()
    if mod in DISPLAY_WINDOWS:
        lo, hi = DISPLAY_WINDOWS[mod]
    else:
        ref = np.asarray(image if reference is None else reference, dtype=np.float32)
        fg = ref[ref > 0] if (ref > 0).any() else ref.ravel()
        lo, hi = (float(v) for v in np.percentile(fg, [0.5, 99.5])) if fg.size else (0.0, 1.0)
    return (np.clip((img - lo) / max(hi - lo, 1e-8), 0, 1) * 255).astype(np.uint8)


def radiological_flips(direction) -> tuple[bool, bool]:
    """``(flip_rows, flip_cols)`` that show an axial slice of a ``(z, y, x)`` array in radiological
    orientation: anterior at the top, the patient's right on the viewer's left.

    ``direction`` is the volume's SimpleITK direction (9 numbers, LPS world, ``(x, y, z)`` order, as
    in :class:`medsam_lite.io.Volume`). Array columns run along ``x``: radiological display wants
    them to run toward the patient's left (+L), rows toward posterior (+P). A NIfTI stored in RAS
    order (direction ``diag(-1, -1, 1)``) needs both flips; a DICOM series (identity) needs none.
    """
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    # column j of the direction matrix is array axis j (x, y, z) in LPS world coordinates
    return bool(d[1, 1] < 0 if abs(d[1, 1]) >= abs(d[0, 1]) else d[0, 1] < 0), \
        bool(d[0, 0] < 0 if abs(d[0, 0]) >= abs(d[1, 0]) else d[1, 0] < 0)


def display_flips(volume) -> tuple[bool, bool]:
    """``(flip_rows, flip_cols)`` that show the slices ``volume.array[z]`` (array axis 0) of a
    :class:`medsam_lite.io.Volume` in radiological orientation (:func:`radiological_flips`): the one
    display convention of every axial figure and of the widget.

    ``(False, False)`` for a bare array (no geometry), a 2D image, or a volume whose first array
    axis is not the scanner's z (a sagittal / coronal stack is shown in array order).
    """
    direction = getattr(volume, "direction", None)
    array = getattr(volume, "array", None)
    if direction is None or array is None or np.ndim(array) != 3 or len(direction) != 9:
        return False, False
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    if abs(d[2, 2]) < max(abs(d[0, 2]), abs(d[1, 2])):   # array axis 0 (SimpleITK's z) is not head–foot
        return False, False
    return radiological_flips(direction)


def stored_for_display(image: np.ndarray, preset) -> np.ndarray:
    """A stored (model input, ``uint8``) slice in the display window of its modality: a CT slice
    stored with a HU window (e.g. [-500, 1000]) is mapped back to HU and shown in
    :data:`DISPLAY_WINDOWS` (soft tissue); other modalities are shown as stored."""
    window = getattr(preset, "window", None)
    if window is None or str(getattr(preset, "modality", "")).upper() not in DISPLAY_WINDOWS:
        return image
    lo, hi = window
    hu = lo + np.asarray(image, np.float32) / 255.0 * (hi - lo)
    return display_window(hu, preset.modality)
