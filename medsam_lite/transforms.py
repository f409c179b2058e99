"""Pure functions: intensity normalization and mapping between original and model pixels.

Conventions (one source of truth for the whole package):

* Images are ``H×W`` (any numeric dtype) or ``H×W×3`` ``uint8``; arrays index ``[row, col]``.
* Boxes are ``XYXY`` floats in **original image pixels**: ``x0, y0`` is the top-left corner and
  ``x1, y1`` the bottom-right, inclusive of the target's extreme pixels (a box made by
  :func:`box_from_mask`). The widget's XYWH boxes are converted only at its edge.
* A model sees a square ``S×S`` input (``S`` = 256 for LiteMedSAM, 1024 for MedSAM / SAM), made by
  one of three recipes, described by :class:`Geometry`:

  - ``"pad"`` (LiteMedSAM): resize the longest side to ``S`` keeping the aspect ratio, min-max to
    [0, 1], pad bottom/right with zeros;
  - ``"stretch"`` (MedSAM): resize straight to ``S×S``, min-max to [0, 1];
  - ``"sam"`` (SAM): resize the longest side to ``S``, ImageNet mean/std on 0–255, pad.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError

#: CT windows as (low, high) in Hounsfield units. ``"medsam"`` is the paper's default.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "medsam": (-500.0, 1000.0),
    "soft_tissue": (-160.0, 240.0),
    "abdomen": (-150.0, 250.0),
    "lung": (-1350.0, 150.0),
    "bone": (-450.0, 1050.0),
    "brain": (0.0, 80.0),
    "liver": (-25.0, 230.0),
}

#: Percentiles that clip non-CT modalities (MR, PET, US, …), computed over voxels > 0.
PERCENTILES = (0.5, 99.5)

RECIPES = ("pad", "stretch", "sam")
_SAM_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
_SAM_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def _check_numeric(image: np.ndarray, what: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == bool or image.dtype.kind not in "uif":
        raise InputError(
            f"{what} has dtype {image.dtype}; expected a real numeric array (uint8, int16, float32, …). "
            "Convert it with np.asarray(image, dtype=np.float32)."
        )
    if image.size == 0:
        raise InputError(f"{what} is empty (shape {image.shape}); pass a non-empty image.")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise InputError(
            f"{what} holds NaN or Inf values; replace them first, e.g. np.nan_to_num(image)."
        )
    return image


def normalize_intensity(
    image: np.ndarray,
    modality: str = "MR",
    window: str | tuple[float, float] | None = None,
) -> np.ndarray:
    """Normalize a scan to ``uint8`` [0, 255] with the MedSAM recipe.

    Args:
        image: a 2D slice or a whole 3D volume, any real dtype (e.g. CT in HU, MR in scanner
            units). For non-CT data pass the **whole volume**: the percentiles are computed over it.
        modality: ``"CT"`` clips to a window in HU; anything else (``"MR"`` by default, ``"PET"``,
            ``"US"``, …) clips to the 0.5–99.5 percentiles of the voxels > 0 of ``image``.
        window: for CT, a name in :data:`CT_WINDOWS` (default ``"medsam"`` = [-500, 1000] HU) or a
            ``(low, high)`` pair in HU. For other modalities a ``(low, high)`` pair clips at fixed
            values instead of percentiles.

    Returns:
        ``uint8`` array of the same shape, ``0`` at or below the low bound, ``255`` at the high one.

    Raises:
        InputError: non-numeric, empty or non-finite input, an unknown window, or a constant image
            (nothing to normalize).
    """
    image = _check_numeric(image)
    if not isinstance(modality, str) or not modality:
        raise InputError(f"modality must be a string such as 'CT' or 'MR', got {modality!r}.")
    data = image.astype(np.float32, copy=False)
    if modality.upper() == "CT" or (isinstance(window, str)):
        name = window if window is not None else "medsam"
        if isinstance(name, str):
            if name not in CT_WINDOWS:
                raise InputError(f"unknown CT window {name!r}; choose one of {sorted(CT_WINDOWS)} or pass (low, high) in HU.")
            low, high = CT_WINDOWS[name]
        else:
            low, high = _check_window(name)
    elif window is not None:
        low, high = _check_window(window)
    else:
        foreground = data[data > 0]
        if foreground.size == 0:
            raise InputError(
                "the image has no voxels > 0, so its percentiles are undefined; for CT pass "
                "modality='CT', otherwise pass window=(low, high)."
            )
        low, high = (float(v) for v in np.percentile(foreground, PERCENTILES))
    if high <= low:
        raise InputError(
            f"the image is constant after clipping (low={low}, high={high}); there is nothing to "
            "segment. Check that you passed the scan, not a mask, or give window=(low, high)."
        )
    out = (np.clip(data, low, high) - low) / (high - low) * 255.0
    if modality.upper() != "CT" and window is None:
        out[data <= 0] = 0.0  # background stays background, as in MedSAM's pre_MR.py
    return np.rint(out).astype(np.uint8)


def _check_window(window) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in window)
    except (TypeError, ValueError):
        raise InputError(f"window must be a name or a (low, high) pair of numbers, got {window!r}.") from None
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise InputError(f"window (low, high) must be finite with high > low, got {window!r}.")
    return low, high


def to_rgb_uint8(image: np.ndarray, modality: str = "MR", window=None) -> np.ndarray:
    """Turn any 2D slice into the ``H×W×3`` ``uint8`` image the models see.

    ``H×W×3 uint8`` passes through; ``H×W×1`` is squeezed; ``H×W`` ``uint8`` is replicated to three
    channels; any other ``H×W`` dtype is first normalized by :func:`normalize_intensity`.
    """
    image = _check_numeric(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        if image.dtype != np.uint8:
            raise InputError(
                f"a colour image must be uint8 H×W×3, got dtype {image.dtype}; convert with "
                "np.clip(image, 0, 255).astype(np.uint8) or pass a single-channel H×W slice."
            )
        return np.ascontiguousarray(image[..., :3])
    if image.ndim != 2:
        raise InputError(
            f"expected a 2D slice H×W or an H×W×3 uint8 image, got shape {image.shape}; "
            "for a 3D volume pick a slice (volume[z]) or use predict_volume()."
        )
    if min(image.shape) < 2:
        raise InputError(f"image of shape {image.shape} is too small; each side needs ≥ 2 pixels.")
    if image.dtype != np.uint8:
        image = normalize_intensity(image, modality=modality, window=window)
    return np.repeat(image[..., None], 3, axis=2)


@dataclass(frozen=True)
class Geometry:
    """How an ``H×W`` original image maps onto a model's ``S×S`` input.

    Attributes:
        original_hw: ``(H, W)`` of the original image.
        input_size: ``S``, the model's square input side.
        recipe: ``"pad"``, ``"stretch"`` or ``"sam"`` (see the module docstring).
    """

    original_hw: tuple[int, int]
    input_size: int
    recipe: str = "pad"

    def __post_init__(self):
        try:
            h, w = (int(v) for v in self.original_hw)
            ok = all(float(v) == int(v) for v in self.original_hw) and h >= 1 and w >= 1
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise InputError(f"original_hw must be two positive integers (H, W), got {self.original_hw!r}.")
        size = self.input_size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise InputError(f"input_size must be a positive integer (256 or 1024), got {self.input_size!r}.")
        if self.recipe not in RECIPES:
            raise InputError(f"recipe must be one of {RECIPES}, got {self.recipe!r}.")
        object.__setattr__(self, "original_hw", (h, w))
        object.__setattr__(self, "input_size", int(self.input_size))

    @property
    def resized_hw(self) -> tuple[int, int]:
        """``(h, w)`` of the image content inside the model input (before padding)."""
        h, w = self.original_hw
        if self.recipe == "stretch":
            return (self.input_size, self.input_size)
        scale = self.input_size / max(h, w)
        return (int(h * scale + 0.5), int(w * scale + 0.5))

    @property
    def scale_xy(self) -> tuple[float, float]:
        """``(sx, sy)``: model pixels per original pixel along x and y."""
        h, w = self.original_hw
        rh, rw = self.resized_hw
        if self.recipe == "stretch":
            return (rw / w, rh / h)
        s = self.input_size / max(h, w)
        return (s, s)

    def box_to_model(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``N×4`` XYXY boxes from original to model-input pixels (float32)."""
        sx, sy = self.scale_xy
        return (np.asarray(boxes, dtype=np.float32) * np.array([sx, sy, sx, sy], np.float32)).astype(np.float32)

    def box_to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`box_to_model`: ``N×4`` XYXY model pixels to original pixels."""
        sx, sy = self.scale_xy
        return np.asarray(boxes, dtype=np.float32) / np.array([sx, sy, sx, sy], np.float32)

    def image_to_model(self, image_rgb: np.ndarray) -> torch.Tensor:
        """``H×W×3 uint8`` → ``1×3×S×S`` float32 tensor, the model's input."""
        x = torch.from_numpy(np.ascontiguousarray(image_rgb)).permute(2, 0, 1)[None].float()
        rh, rw = self.resized_hw
        x = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False, antialias=True)
        if self.recipe == "sam":
            mean = torch.from_numpy(_SAM_MEAN)[None, :, None, None]
            std = torch.from_numpy(_SAM_STD)[None, :, None, None]
            x = (x - mean) / std
        else:
            lo, hi = x.min(), x.max()
            x = (x - lo) / torch.clamp(hi - lo, min=1e-8)
        s = self.input_size
        return F.pad(x, (0, s - rw, 0, s - rh))

    def logits_to_original(self, low_res_logits: torch.Tensor) -> torch.Tensor:
        """``N×1×s×s`` decoder logits → ``N×H×W`` logits at the original size.

        Upsamples to ``S×S``, crops the padding, then resizes bilinearly to ``(H, W)``.
        """
        s = self.input_size
        x = F.interpolate(low_res_logits.float(), size=(s, s), mode="bilinear", align_corners=False)
        rh, rw = self.resized_hw
        x = x[..., :rh, :rw]
        x = F.interpolate(x, size=self.original_hw, mode="bilinear", align_corners=False)
        return x[:, 0]

    def mask_to_model(self, mask: np.ndarray) -> np.ndarray:
        """``H×W`` boolean mask → ``S×S`` boolean mask in model pixels (nearest, zero padding)."""
        m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.uint8))[None, None].float()
        rh, rw = self.resized_hw
        m = F.interpolate(m, size=(rh, rw), mode="nearest")
        s = self.input_size
        return F.pad(m, (0, s - rw, 0, s - rh))[0, 0].numpy() > 0.5


def check_boxes(boxes, image_hw: tuple[int, int]) -> np.ndarray:
    """Validate XYXY boxes in original pixels and return them as an ``N×4`` float32 array.

    Accepts one box (length-4 sequence) or ``N×4``. Boxes must be finite, have ``x1 > x0`` and
    ``y1 > y0`` and overlap the image; parts outside the image are clipped to it.
    """
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"boxes must be numbers in XYXY format, got {boxes!r}.") from None
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4 or arr.shape[0] == 0:
        raise InputError(
            f"boxes must be one [x0, y0, x1, y1] box or an N×4 array (XYXY, original pixels), "
            f"got shape {np.shape(boxes)}. A widget's XYWH box converts with xywh_to_xyxy()."
        )
    if not np.isfinite(arr).all():
        raise InputError("boxes hold NaN or Inf; give finite pixel coordinates.")
    h, w = image_hw
    for i, (x0, y0, x1, y1) in enumerate(arr):
        if x1 <= x0 or y1 <= y0:
            raise InputError(
                f"box {i} = {[x0, y0, x1, y1]} is inverted or has zero area; XYXY needs x1 > x0 and "
                "y1 > y0 (top-left corner first). Was it XYWH? Convert with xywh_to_xyxy(). (A target one "
                "pixel wide gives x0 == x1: widen its box by a pixel.)"
            )
        if x1 < 0 or y1 < 0 or x0 > w - 1 or y0 > h - 1:
            raise InputError(
                f"box {i} = {[x0, y0, x1, y1]} lies outside the {w}×{h} (W×H) image; boxes are in "
                "original image pixels."
            )
    arr[:, [0, 2]] = np.clip(arr[:, [0, 2]], 0, w - 1)
    arr[:, [1, 3]] = np.clip(arr[:, [1, 3]], 0, h - 1)
    return arr.astype(np.float32)


def box_from_mask(mask: np.ndarray) -> np.ndarray:
    """Tight XYXY box (float32, inclusive extreme pixels) around a non-empty 2D mask.

    Raises:
        InputError: a mask that is not 2D, not binary (bool, or only 0 and 1), or empty.
    """
    mask = _check_binary(mask)
    if mask.ndim != 2:
        raise InputError(f"mask must be 2D H×W, got shape {mask.shape}.")
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise InputError("mask is empty: there is no target to put a box around.")
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)


def _check_binary(mask, what: str = "mask") -> np.ndarray:
    """``mask`` as an array if it is bool or real numbers that are all 0 or 1, else InputError."""
    mask = np.asarray(mask)
    if mask.dtype != bool:
        if mask.dtype.kind not in "uif" or not np.isin(mask, (0, 1)).all():
            shown = np.unique(mask)[:5] if mask.dtype.kind in "uifb" else mask.dtype
            raise InputError(f"{what} is not binary (values or dtype: {shown}); pass a bool mask, e.g. "
                             "(label_map == k) or (label_map > 0).")
    return mask


def _four_numbers(box, fmt: str) -> tuple[float, float, float, float]:
    try:
        arr = np.asarray(box, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.empty(0)
    if arr.shape != (4,) or not np.isfinite(arr).all():
        raise InputError(f"a box must be 4 finite numbers {fmt}, got {box!r}.")
    return tuple(float(v) for v in arr)


def xywh_to_xyxy(box) -> np.ndarray:
    """``[x, y, width, height]`` (top-left corner) → ``[x0, y0, x1, y1]``.

    Raises:
        InputError: not 4 finite numbers, or a negative width or height.
    """
    x, y, w, h = _four_numbers(box, "[x, y, width, height]")
    if w < 0 or h < 0:
        raise InputError(f"box {list(box)!r} has a negative width or height; XYWH is [x, y, width, height] "
                         "with the top-left corner first. Was it XYXY already?")
    return np.array([x, y, x + w, y + h], dtype=np.float32)


def xyxy_to_xywh(box) -> np.ndarray:
    """``[x0, y0, x1, y1]`` → ``[x, y, width, height]`` (top-left corner).

    Raises:
        InputError: not 4 finite numbers, or an inverted box (``x1 < x0`` or ``y1 < y0``).
    """
    x0, y0, x1, y1 = _four_numbers(box, "[x0, y0, x1, y1]")
    if x1 < x0 or y1 < y0:
        raise InputError(f"box {list(box)!r} is inverted; XYXY needs x1 ≥ x0 and y1 ≥ y0. Was it XYWH? "
                         "Convert with xywh_to_xyxy().")
    return np.array([x0, y0, x1 - x0, y1 - y0], dtype=np.float32)
