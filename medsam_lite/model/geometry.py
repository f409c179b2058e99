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

  Each resize is the published one (:meth:`Geometry.image_to_model`).
* Intensity presets (CT windows, MR percentiles) live in :mod:`medsam_lite.model.intensity`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError


RECIPES = ("pad", "stretch", "sam")
_SAM_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
_SAM_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


@dataclass(frozen=True)
class Geometry:
    """How an image maps onto a model's ``S×S`` input, across the three pixel spaces.

    * **original** pixels — the scan's slice (``original_hw``): boxes, masks and results live here;
    * **image** pixels — the array actually given to the encoder (``image_hw``): the original
      itself, or a dataset's **stored slice** (resized by :func:`medsam_lite.preprocess`);
    * **model** pixels — the ``S×S`` model input; ``resized_hw`` is the image content inside it.

    Attributes:
        original_hw: ``(H, W)`` of the original slice.
        input_size: ``S``, the model's square input side.
        recipe: ``"pad"``, ``"stretch"`` or ``"sam"`` (see the module docstring).
        stored_hw: ``(h, w)`` of the stored slice when the encoder is given one (else ``None``:
            the encoder sees the original).
    """

    original_hw: tuple[int, int]
    input_size: int
    recipe: str = "pad"
    stored_hw: tuple[int, int] | None = None

    def __post_init__(self):
        object.__setattr__(self, "original_hw", _check_hw(self.original_hw, "original_hw"))
        if self.stored_hw is not None:
            object.__setattr__(self, "stored_hw", _check_hw(self.stored_hw, "stored_hw"))
        size = self.input_size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise InputError(f"input_size must be a positive integer (256 or 1024), got {self.input_size!r}.")
        if self.recipe not in RECIPES:
            raise InputError(f"recipe must be one of {RECIPES}, got {self.recipe!r}.")
        object.__setattr__(self, "input_size", int(self.input_size))

    @staticmethod
    def stored_size(original_hw, image_size: int, what: str = "the image") -> tuple[int, int]:
        """The stored-size rule of :func:`medsam_lite.preprocess`: ``(h, w)`` of an ``(H, W)`` slice
        stored with its longest side resized to ``image_size`` (the other side rounded half up, as
        LiteMedSAM's published resize does) — the content of a ``"pad"`` model input of that size.

        Raises:
            InputError: a side becomes 0 px (a thin image); the message names ``what`` and its size.
        """
        hw = _check_hw(original_hw, "original_hw")
        out = _longest_side(hw, int(image_size))
        if min(out) < 1:
            raise InputError(_too_thin(what, hw, int(image_size), out))
        return out

    @classmethod
    def stored(cls, original_hw, image_size: int, input_size: int | None = None, recipe: str = "pad") -> Geometry:
        """The geometry of a slice a dataset stores at longest side ``image_size`` (:meth:`stored_size`),
        onto a model input of ``input_size`` (default ``image_size``) made with ``recipe``."""
        hw = cls.stored_size(original_hw, image_size)
        return cls(original_hw, int(input_size or image_size), recipe, hw)

    def check_size(self, what: str = "the image") -> Geometry:
        """``self``, or an :class:`InputError` naming the size when the image content would be 0 px
        on a side in model pixels (a thin image, e.g. 3×2000 at a 256 input). Every pixel mapping
        (:meth:`image_to_model`, :meth:`logits_to`, :meth:`mask_to_model`) checks it first."""
        resized = self.resized_hw
        if min(resized) < 1:
            raise InputError(_too_thin(what, self.original_hw, self.input_size, resized))
        return self

    def image_spacing(self, spacing_row_col) -> tuple[float, float]:
        """``(row, col)`` pixel size of the image pixels (a stored slice) given the original's, in mm."""
        (h, w), (ih, iw) = self.original_hw, self.image_hw
        return (float(spacing_row_col[0]) / (ih / h), float(spacing_row_col[1]) / (iw / w))

    @property
    def image_hw(self) -> tuple[int, int]:
        """``(h, w)`` of the array the encoder is given: the stored slice, else the original."""
        return self.stored_hw or self.original_hw

    @property
    def resized_hw(self) -> tuple[int, int]:
        """``(h, w)`` of the image content inside the model input (before padding).

        The published rule: the longest side becomes ``S``, the other ``int(side × S / longest + 0.5)``
        (``"stretch"``: ``S×S``).
        """
        if self.recipe == "stretch":
            return (self.input_size, self.input_size)
        return _longest_side(self.original_hw, self.input_size)

    @property
    def scale_xy(self) -> tuple[float, float]:
        """``(sx, sy)``: model pixels per original pixel along x and y."""
        h, w = self.original_hw
        if self.recipe == "stretch":
            return (self.input_size / w, self.input_size / h)
        if self.recipe == "sam":  # ResizeLongestSide scales each axis by its rounded new length
            rh, rw = self.resized_hw
            return (rw / w, rh / h)
        s = self.input_size / max(h, w)
        return (s, s)

    def box_to_model(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``N×4`` XYXY boxes from original to model-input pixels (float32, exact scaling)."""
        sx, sy = self.scale_xy
        return (np.asarray(boxes, dtype=np.float32) * np.array([sx, sy, sx, sy], np.float32)).astype(np.float32)

    def box_prompt(self, boxes: np.ndarray) -> np.ndarray:
        """``N×4`` XYXY original boxes → the model-pixel box prompt, as each published recipe makes it.

        LiteMedSAM's published inference truncates each scaled coordinate (``int(coord × S / max(H, W))``);
        MedSAM and SAM keep the exact float scaling (:meth:`box_to_model`).
        """
        out = self.box_to_model(boxes)
        return np.floor(out).astype(np.float32) if self.recipe == "pad" else out

    def box_to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`box_to_model`: ``N×4`` XYXY model pixels to original pixels."""
        sx, sy = self.scale_xy
        return np.asarray(boxes, dtype=np.float32) / np.array([sx, sy, sx, sy], np.float32)

    def points_to_model(self, points) -> np.ndarray:
        """``…×2`` XY points from original to model-input pixels (float32, the plain scaling SAM's
        ``apply_coords`` does): the click prompts :func:`~medsam_lite.model.inference.decode` makes."""
        return np.asarray(points, np.float32) * np.asarray(self.scale_xy, np.float32)

    def points_from_model(self, points, hw=None) -> np.ndarray:
        """Inverse of :meth:`points_to_model`, then to a grid of size ``hw`` (default: the original;
        e.g. :attr:`image_hw`, pixel centres kept): ``…×2`` XY float32."""
        out = np.asarray(points, np.float32) / np.asarray(self.scale_xy, np.float32)
        if hw is None or tuple(hw) == self.original_hw:
            return out
        return (out + 0.5) * np.float32(tuple(hw)[::-1]) / np.float32(self.original_hw[::-1]) - 0.5

    def box_to_image(self, boxes: np.ndarray) -> np.ndarray:
        """``N×4`` XYXY boxes from original to image (stored-slice) pixels, float32."""
        (h, w), (ih, iw) = self.original_hw, self.image_hw
        scale = np.array([iw / w, ih / h, iw / w, ih / h], np.float32)
        return (np.asarray(boxes, dtype=np.float32) * scale).astype(np.float32)

    def image_to_model(self, image_rgb: np.ndarray):
        """``h×w×3 uint8`` (image pixels) → ``1×3×S×S`` float32 torch tensor, the model's input
        (:meth:`image_to_model_array` as a tensor)."""
        import torch

        return torch.from_numpy(self.image_to_model_array(image_rgb))

    def image_to_model_array(self, image_rgb: np.ndarray) -> np.ndarray:
        """``h×w×3 uint8`` (image pixels) → ``1×3×S×S`` float32 numpy array, the model's input (no torch).

        Each recipe as published: ``"pad"`` ``cv2.resize(INTER_AREA)`` of the longest side, min-max
        to [0, 1], zero padding bottom/right (LiteMedSAM); ``"stretch"``
        ``skimage.transform.resize(order=3, anti_aliasing=True)`` to ``S×S``, to uint8, min-max
        (MedSAM ViT-B; no ImageNet normalization); ``"sam"`` SAM's ``ResizeLongestSide``, ImageNet
        mean/std, zero padding.
        """
        self.check_size()
        rgb = np.ascontiguousarray(image_rgb)
        if tuple(rgb.shape[:2]) != self.image_hw:
            raise InputError(f"image of shape {rgb.shape[:2]} does not match this geometry's image size "
                             f"{self.image_hw}.")
        rh, rw = self.resized_hw
        s = self.input_size
        if self.recipe == "stretch":
            from skimage.transform import resize

            if rgb.shape[:2] != (s, s):
                rgb = resize(rgb, (s, s), order=3, preserve_range=True, mode="constant",
                             anti_aliasing=True).astype(np.uint8)
            x = rgb.astype(np.float32)
        else:
            x = rgb if rgb.shape[:2] == (rh, rw) else _resize_rgb(rgb, (rh, rw), self.recipe, s)
            x = x.astype(np.float32)
        if self.recipe == "sam":
            x = (x - _SAM_MEAN) / _SAM_STD
        else:
            x = (x - x.min()) / max(float(x.max() - x.min()), 1e-8)
        out = np.zeros((1, 3, s, s), dtype=np.float32)
        out[0, :, :rh, :rw] = np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)
        return out

    def logits_to(self, low_res_logits, hw: tuple[int, int]):
        """``N×1×s×s`` decoder logits → ``N×h×w`` logits at size ``hw`` (original or image pixels).

        ``"pad"``/``"sam"``: upsample to ``S×S``, crop the padding, resize bilinearly to ``hw``;
        ``"stretch"`` (MedSAM's published path): resize bilinearly straight to ``hw``.
        """
        import torch.nn.functional as F

        self.check_size()
        x = low_res_logits.float()
        if self.recipe != "stretch":
            s = self.input_size
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
            rh, rw = self.resized_hw
            x = x[..., :rh, :rw]
        return F.interpolate(x, size=tuple(hw), mode="bilinear", align_corners=False)[:, 0]

    def logits_to_original(self, low_res_logits):
        """``N×1×s×s`` decoder logits → ``N×H×W`` logits in original pixels."""
        return self.logits_to(low_res_logits, self.original_hw)

    def mask_to_model(self, mask: np.ndarray) -> np.ndarray:
        """``h×w`` boolean mask (image pixels) → ``S×S`` boolean mask in model pixels (nearest, zero padding)."""
        import torch
        import torch.nn.functional as F

        self.check_size()
        m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.uint8))[None, None].float()
        rh, rw = self.resized_hw
        m = F.interpolate(m, size=(rh, rw), mode="nearest")
        s = self.input_size
        return F.pad(m, (0, s - rw, 0, s - rh))[0, 0].numpy() > 0.5


def _check_hw(hw, name: str) -> tuple[int, int]:
    try:
        h, w = hw
        ok = not isinstance(h, (bool, np.bool_)) and not isinstance(w, (bool, np.bool_)) \
            and float(h) == int(h) and float(w) == int(w) and int(h) >= 1 and int(w) >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise InputError(f"{name} must be two positive integers (H, W), got {hw!r}.")
    return int(h), int(w)


def _too_thin(what: str, hw: tuple[int, int], size: int, resized: tuple[int, int]) -> str:
    long = max(hw)
    need = max(1, math.ceil(long / (2 * size)))
    if int(need * size / long + 0.5) < 1:
        need += 1
    return (f"{what}: {hw[0]}×{hw[1]} pixels (H×W); with the long side resized to {size} px the short side "
            f"becomes {min(resized)} px, so nothing can be segmented. Crop or pad it to a short side of at least "
            f"{need} px (for a long side of {long} px).")


def _longest_side(hw: tuple[int, int], size: int) -> tuple[int, int]:
    """``(h, w)`` with the longest side resized to ``size``, as LiteMedSAM and SAM round it."""
    h, w = hw
    scale = size / max(h, w)
    return (int(h * scale + 0.5), int(w * scale + 0.5))


def resize_slice(image: np.ndarray, hw: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """``H×W`` (or ``H×W×C``) uint8 → ``h×w``: LiteMedSAM's published ``cv2.INTER_AREA`` resize
    (what :func:`medsam_lite.preprocess` stores and ``"pad"`` feeds the encoder), or nearest for masks."""
    import cv2

    image = np.ascontiguousarray(image)
    if image.shape[:2] == tuple(hw):
        return image.copy()
    return cv2.resize(image, (int(hw[1]), int(hw[0])), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def _resize_rgb(rgb: np.ndarray, hw: tuple[int, int], recipe: str, size: int) -> np.ndarray:
    if recipe == "sam":
        from segment_anything.utils.transforms import ResizeLongestSide

        out = ResizeLongestSide(size).apply_image(rgb)
        return out if out.shape[:2] == tuple(hw) else resize_slice(out, hw)
    return resize_slice(rgb, hw)


def check_boxes(boxes, image_hw: tuple[int, int]) -> np.ndarray:
    """Validate XYXY boxes in original pixels and return them as an ``N×4`` float32 array.

    Accepts one box (length-4 sequence) or ``N×4``. Boxes must be finite, have ``x1 > x0`` and
    ``y1 > y0`` and overlap the image; parts outside the image are clipped to it, and a box left
    with zero area by the clipping (one lying on the image border) is refused.
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
    given = arr.copy()
    arr[:, [0, 2]] = np.clip(arr[:, [0, 2]], 0, w - 1)
    arr[:, [1, 3]] = np.clip(arr[:, [1, 3]], 0, h - 1)
    for i, (x0, y0, x1, y1) in enumerate(arr):
        if x1 <= x0 or y1 <= y0:
            raise InputError(
                f"box {i} = {[float(v) for v in given[i]]} lies on the image border: clipped to the "
                f"{w}×{h} (W×H) image it is {[float(x0), float(y0), float(x1), float(y1)]}, with zero area. "
                "Draw the box over the target inside the image (boxes are in original image pixels).")
    return arr.astype(np.float32)


def box_from_mask(mask: np.ndarray) -> np.ndarray:
    """Tight XYXY box (float32, inclusive extreme pixels) around a non-empty 2D mask.

    Raises:
        InputError: a mask that is not 2D, not binary (bool, or only 0 and 1), or empty.
    """
    mask = check_binary(mask, two_d=True)
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise InputError("mask is empty: there is no target to put a box around.")
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)


def check_binary(mask, what: str = "mask", two_d: bool = False) -> np.ndarray:
    """``mask`` as an array if it is bool or real numbers that are all 0 or 1 (and, with ``two_d``,
    ``H×W``), else InputError."""
    mask = np.asarray(mask)
    if mask.dtype != bool:
        if mask.dtype.kind not in "uif" or not np.isin(mask, (0, 1)).all():
            shown = np.unique(mask)[:5] if mask.dtype.kind in "uifb" else mask.dtype
            raise InputError(f"{what} is not binary (values or dtype: {shown}); pass a bool mask, e.g. "
                             "(label_map == k) or (label_map > 0).")
    if two_d and mask.ndim != 2:
        raise InputError(f"{what} must be 2D H×W, got shape {mask.shape}.")
    return mask


def check_numbers(value, n: int, what: str) -> np.ndarray:
    """``value`` as ``n`` finite float64 numbers, else InputError ``"{what}, got {value!r}."``."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.empty(0)
    if arr.shape != (n,) or not np.isfinite(arr).all():
        raise InputError(f"{what}, got {value!r}.")
    return arr


def _four_numbers(box, fmt: str) -> tuple[float, float, float, float]:
    return tuple(float(v) for v in check_numbers(box, 4, f"a box must be 4 finite numbers {fmt}"))


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


def boxes_to_stored(boxes, original_hw, image_size: int) -> np.ndarray:
    """Map XYXY boxes from original slice pixels to a prepared dataset's stored-slice pixels.

    Uses :meth:`Geometry.stored <medsam_lite.model.geometry.Geometry.stored>`, preprocess's
    stored-size rule: the stored slice is the original resized by ``image_size / max(H, W)``.

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
    return Geometry.stored(tuple(original_hw), int(image_size)).box_to_image(arr)
