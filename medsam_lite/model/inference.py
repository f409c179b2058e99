"""The one seam for every model call: an :class:`Embedding` value and two stateless functions.

::

    image (any dtype) ──preset.apply──▶ uint8 ──recipe (published resize)──▶ model input
                                                │ encode(model, image, preset)
                                                ▼
                        Embedding(tensor, geometry: original ↔ image ↔ model)
                                                │ decode(model, embedding, boxes_xyxy_original)
                                                ▼
                                masks (original pixels), scores

:class:`~medsam_lite.Predictor`, :class:`~medsam_lite.VolumePredictor`, the widget,
:func:`~medsam_lite.evaluate` and :func:`~medsam_lite.embed` call :func:`encode` /
:func:`encode_images` / :func:`decode`; :func:`~medsam_lite.finetune` calls :func:`decode_logits`.
Nothing else touches the image encoder or the mask decoder (they run inside
:meth:`SamModel.encode` / :meth:`SamModel.decode`, through a compiled CPU runtime when one was
chosen by :func:`~medsam_lite.load_model`). Validation happens here, once, at the public edge.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from .intensity import IntensityPreset, to_rgb_uint8
from .geometry import Geometry, check_boxes
from .clickrule import combine, rule_of
from .fullsize import back_to_size
from .sessions import from_numpy as _from_numpy, is_tensor as _is_tensor, no_grad as _no_grad

if TYPE_CHECKING:
    from .models import SamModel


def _torch_free(model) -> bool:
    """Whether ``model`` is an :class:`~medsam_lite.model.exported.ExportedModel` (numpy in and out)."""
    return getattr(type(model), "torch_free", False)


@dataclass(frozen=True, eq=False)
class Embedding:
    """One image's embedding and the geometry of its pixel spaces.

    Attributes:
        tensor: ``1×C×h×w`` float32 (``1×256×64×64``), on the model's device: a torch tensor, or a
            numpy array for a model loaded without torch (:class:`~medsam_lite.model.exported.ExportedModel`).
        geometry: maps **original** pixels (boxes, masks) ↔ **image** pixels (what was encoded: the
            original or a stored slice) ↔ **model** pixels.
        preset: the intensity preset the image was normalized with (``None`` when it came as uint8).
        image: ``None`` or the encoded image, ``h×w×3`` (or ``h×w``) uint8 in **image** pixels: the
            click rule (:mod:`~medsam_lite.model.clickrule`) reads the clicked tissue from it.
            :class:`~medsam_lite.Predictor` and the annotation session keep it; stored embeddings
            and :class:`~medsam_lite.VolumePredictor` slices have none (their clicks use the rule
            without the image).
    """

    tensor: "torch.Tensor | np.ndarray"  # noqa: F821
    geometry: Geometry
    preset: IntensityPreset | None = None
    image: np.ndarray | None = None

    @property
    def original_hw(self) -> tuple[int, int]:
        """``(H, W)`` of the original slice: the size of every mask :func:`decode` returns."""
        return self.geometry.original_hw


def prepare_image(image, preset: IntensityPreset | None = None, modality: str = "MR", window=None) -> np.ndarray:
    """Validate a 2D image and normalize it to the ``H×W×3`` uint8 the models see (image pixels).

    Args:
        image: ``H×W`` of any real dtype (normalized with ``preset``, or with the preset ``modality``
            and ``window`` resolve to) or ``H×W×3`` uint8 (used as is).

    Raises:
        InputError: not a 2D image of real numbers; NaN/Inf; empty; constant once normalized (a blank
            image has nothing to segment, yet the model would still return a mask for a box).
    """
    if _is_tensor(image):
        image = image.detach().cpu().numpy()
    rgb = to_rgb_uint8(image, modality=modality, window=window, preset=preset)
    if rgb.min() == rgb.max():
        raise InputError(
            f"the image is constant (every pixel is {int(rgb.flat[0])} once normalized to uint8): there is "
            "nothing to segment, and the model would still return a mask for any box. Pass the scan itself "
            "(not a mask or an empty slice); for CT check that window= covers its HU range.")
    return rgb


def encode_images(model: SamModel, images, original_hws=None, preset: IntensityPreset | None = None) -> list[Embedding]:
    """Encode prepared images in one encoder call (the only one in the package).

    Args:
        model: the :class:`SamModel`.
        images: ``h×w×3`` uint8 arrays (image pixels, from :func:`prepare_image` or a dataset's stored slices).
        original_hws: the ``(H, W)`` original slice of each image when it is a resized stored slice
            (default: each image is its own original).
        preset: recorded in each :class:`Embedding` (how the images were normalized).

    Returns:
        One :class:`Embedding` per image.
    """
    geometries = [model.geometry(hw, rgb.shape[:2]) if hw is not None and tuple(hw) != rgb.shape[:2]
                  else model.geometry(rgb.shape[:2])
                  for rgb, hw in zip(images, original_hws or [None] * len(images))]
    inputs = np.concatenate([g.image_to_model_array(rgb) for g, rgb in zip(geometries, images)])
    out = model.encode(inputs if _torch_free(model) else _from_numpy(inputs))
    return [Embedding(out[i:i + 1], g, preset) for i, g in enumerate(geometries)]


def encode(model: SamModel, image, preset: IntensityPreset | None = None, original_hw=None) -> Embedding:
    """Encode one 2D image: normalize with ``preset``, map with the model's published recipe, run the encoder.

    Args:
        model: a :class:`SamModel` from :func:`~medsam_lite.load_model`.
        image: ``H×W`` any real dtype or ``H×W×3`` uint8 (image pixels).
        preset: how to normalize a non-uint8 image (default: the model's own preset, from a
            fine-tuned checkpoint, else MR percentiles).
        original_hw: ``(H, W)`` of the original slice when ``image`` is a resized stored slice.

    Returns:
        The :class:`Embedding` (``1×256×64×64`` plus its geometry).
    """
    preset = preset or model.preset or IntensityPreset.resolve("MR")
    rgb = prepare_image(image, preset)
    return encode_images(model, [rgb], [original_hw], preset if np.asarray(image).dtype != np.uint8 else None)[0]


def as_embedding(model: SamModel, tensor, original_hw, stored_hw=None) -> Embedding:
    """Wrap a stored embedding (``C×h×w`` or ``1×C×h×w``) of an ``(H, W)`` original slice.

    Raises:
        InputError: an embedding of another shape than this model's (e.g. another model's), with
            NaN/Inf, or ``original_hw`` that is not two positive integers.
    """
    free = _torch_free(model)
    try:
        if free:
            emb = np.asarray(tensor.detach().float().cpu().numpy() if _is_tensor(tensor) else tensor, dtype=np.float32)
        else:
            import torch

            emb = tensor if torch.is_tensor(tensor) else torch.as_tensor(np.asarray(tensor))
            emb = emb.detach().float()
    except (TypeError, ValueError, RuntimeError, AttributeError):
        raise InputError(f"embedding must be a numeric array or tensor, got {type(tensor).__name__}.") from None
    if emb.ndim == 3:
        emb = emb[None]
    expected = model.embedding_shape
    if emb.ndim != 4 or emb.shape[0] != 1 or tuple(emb.shape[1:]) != expected:
        shape = "×".join(map(str, expected))
        raise InputError(f"embedding must be {shape} or 1×{shape} for {model.name}, got shape "
                         f"{tuple(emb.shape)}; was it computed by another model?")
    if not bool(np.isfinite(emb).all() if free else emb.isfinite().all()):
        raise InputError("embedding holds NaN or Inf; recompute it (embed(..., recompute=True)).")
    try:
        geometry = model.geometry(original_hw, stored_hw)
    except InputError:
        raise InputError(f"original_hw must be the (H, W) of the image the embedding was made from, two "
                         f"positive integers; got {original_hw!r}.") from None
    h, w = geometry.original_hw
    if h * w > MAX_PIXELS:
        raise InputError(f"original_hw {original_hw!r} is {h * w / 1e6:.0f} megapixels; masks that large do not fit "
                         f"in memory. Pass the (H, W) of the image the embedding was made from.")
    return Embedding(np.ascontiguousarray(emb) if free else emb.to(model.device), geometry)


#: The largest original slice (pixels) a mask is made for: 25,000² — beyond any scanner's slice.
MAX_PIXELS = 25_000 * 25_000


def decode_logits(model: SamModel, embeddings, boxes, points=None, point_labels=None, mask_input=None):
    """Low-resolution logits for prompts in **model** pixels (the one path to the decoder; training uses it).

    Args:
        embeddings: ``1×C×h×w`` (shared by every target) or ``N×C×h×w`` (one per target).
        boxes: ``N×4`` float32 XYXY model-input pixels, or ``None`` (points only).
        points: ``N×K×2`` float32 XY model-input pixels, or ``None``.
        point_labels: ``N×K`` float32, 1 foreground / 0 background (with ``points``).
        mask_input: ``N×1×256×256`` float32 low-resolution logits of a previous call, or ``None``.

    Returns:
        ``(low_res_logits N×1×256×256, iou N×1)`` (torch tensors; numpy arrays for a model loaded
        without torch, which takes numpy prompts). A box-only prompt runs the published decoder;
        points or a mask input run the model's click decoder (see :class:`SamModel`).
    """
    return model.decode(embeddings, boxes, points, point_labels, mask_input)


#: The low-resolution logit given to the decoder outside the image content (padding) of a mask input.
MASK_PAD_LOGIT = -20.0


def check_points(points, point_labels, n_boxes: int | None, image_hw: tuple[int, int], space: str = "original"):
    """Validate click prompts in **original** pixels (or the ``space`` the messages name).

    Args:
        points: ``K×2`` (one target) or ``N×K×2`` XY points (column, row), original pixels.
        point_labels: ``K`` or ``N×K``: 1 foreground, 0 background.
        n_boxes: how many boxes come with the points (``None``: no box).
        image_hw: ``(H, W)`` of the original image (every point lies inside it).
        space: the pixel space the messages name (:func:`decode`'s ``space``).

    Returns:
        ``(points N×K×2 float32, labels N×K float32)``.

    Raises:
        InputError: points without labels (or labels without points), shapes that do not pair
            with each other or with the boxes, labels other than 0/1, a point outside the image.
    """
    if point_labels is None:
        raise InputError("points need point_labels: 1 for a foreground click, 0 for a background click "
                         "(one label per point, e.g. point_labels=[1]).")
    try:
        pts = np.asarray(points, dtype=np.float64)
        lab = np.asarray(point_labels, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"points must be numbers (X, Y in original pixels) and point_labels 0/1, got "
                         f"{str(points)[:60]!r} and {str(point_labels)[:60]!r}.") from None
    if pts.ndim == 2:
        pts = pts[None]
    if lab.ndim == 1:
        lab = lab[None]
    if pts.ndim != 3 or pts.shape[-1] != 2 or pts.shape[1] == 0:
        raise InputError(f"points must be K×2 (one target) or N×K×2 (N targets), XY in {space} pixels, "
                         f"K >= 1; got shape {np.shape(points)}.")
    if lab.shape != pts.shape[:2]:
        raise InputError(f"point_labels must hold one label per point: shape {pts.shape[:2]} (or "
                         f"{pts.shape[1]} for one target) for points of shape {np.shape(points)}; got "
                         f"{np.shape(point_labels)}.")
    if n_boxes is not None and pts.shape[0] != n_boxes:
        raise InputError(f"{n_boxes} boxes and points for {pts.shape[0]} target(s): give points as "
                         f"N×K×2 with N = {n_boxes} (one row of clicks per box).")
    if not np.isfinite(pts).all():
        bad = pts[~np.isfinite(pts).all(axis=-1)][0].tolist()
        raise InputError(f"point {bad} is not a finite position: points are XY (column, row) in {space} image "
                         "pixels, two finite numbers each (a NaN or Inf click cannot be placed).")
    if not np.isin(lab, (0, 1)).all():
        raise InputError("point_labels must be 1 (foreground) or 0 (background); got labels "
                         f"{sorted(set(np.unique(lab).tolist()))[:6]}.")
    h, w = image_hw
    outside = (pts[..., 0] < 0) | (pts[..., 0] >= w) | (pts[..., 1] < 0) | (pts[..., 1] >= h)
    if outside.any():
        bad = pts[outside][0].tolist()
        raise InputError(f"point {bad} lies outside the {w}×{h} (W×H) image; points are XY (column, row) in "
                         f"{space} image pixels, 0 <= x < W and 0 <= y < H.")
    return pts.astype(np.float32), lab.astype(np.float32)


def check_mask_input(mask_input, n: int, space_hw) -> np.ndarray:
    """Validate the logits a previous :func:`decode` returned: ``N×H×W`` float32 (``H×W`` for one
    target) in the ``space_hw`` pixels of the masks → an ``N×H×W`` float32 numpy array.

    Raises:
        InputError: not numbers, NaN/Inf, or a shape other than ``(N, *space_hw)``.
    """
    if _is_tensor(mask_input):
        mask_input = mask_input.detach().float().cpu().numpy()
    try:
        arr = np.asarray(mask_input, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError(f"mask_input must be the float logits a previous predict(..., return_logits=True) "
                         f"returned, got {type(mask_input).__name__}.") from None
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] != n or tuple(arr.shape[1:]) != tuple(space_hw):
        raise InputError(f"mask_input must be the logits a previous call returned for the same {n} target(s): "
                         f"shape ({n}, {space_hw[0]}, {space_hw[1]}) (or {tuple(space_hw)} for one target); got "
                         f"{tuple(np.shape(mask_input))}. Pass the third output of predict(..., return_logits=True).")
    if not np.isfinite(arr).all():
        raise InputError("mask_input holds NaN or Inf; pass the logits a previous call returned.")
    return arr


def mask_input_to_model(geometry: Geometry, mask_input, n: int, low: int, space_hw, in_numpy: bool = False):
    """Logits a previous :func:`decode` returned (``N×H×W`` in ``space_hw``, or ``H×W`` for one
    target) → the decoder's ``N×1×low×low`` mask input on the model grid (padding: :data:`MASK_PAD_LOGIT`):
    a torch tensor, or with ``in_numpy`` a float32 numpy array computed without torch
    (:func:`~medsam_lite.model.fullsize.resize_antialias_exact`: the same bits where the torch-free
    model's manifest recorded that it held on this machine).

    Raises:
        InputError: as :func:`check_mask_input`.
    """
    arr = check_mask_input(mask_input, n, space_hw)
    rh, rw = geometry.resized_hw
    ch = max(1, int(round(rh * low / geometry.input_size)))
    cw = max(1, int(round(rw * low / geometry.input_size)))
    if in_numpy:
        from .fullsize import resize_antialias_exact

        out = np.full((n, 1, low, low), MASK_PAD_LOGIT, np.float32)
        out[:, 0, :ch, :cw] = resize_antialias_exact(arr, (ch, cw))
        return out
    import torch

    out = torch.full((n, 1, low, low), MASK_PAD_LOGIT)
    out[:, :, :ch, :cw] = torch.nn.functional.interpolate(torch.from_numpy(arr)[:, None], size=(ch, cw),
                                                          mode="bilinear", align_corners=False, antialias=True)
    return out


@dataclass(frozen=True, eq=False)
class PreparedMaskInput:
    """The logits a previous :func:`decode` returned, with the decoder's mask input already made from
    them (:func:`mask_input_maker`) — e.g. in the background, while the user aims the next click.
    :func:`decode` takes it as ``mask_input`` in place of the logits: the same masks, bit for bit,
    without resizing the mask input on the click's path.

    Attributes:
        logits: ``N×H×W`` float32, checked (:func:`check_mask_input`), in the masks' pixels ``space_hw``.
        model_input: ``N×1×low×low`` float32 numpy, the decoder's mask input on the model grid
            (:func:`mask_input_to_model` with ``in_numpy``).
        geometry: the :class:`Geometry` it was made for; :func:`decode` makes the mask input again from
            ``logits`` when its embedding's geometry, the masks' size or the decoder's grid differ.
        space_hw: ``(H, W)`` of ``logits``.
    """

    logits: np.ndarray
    model_input: np.ndarray
    geometry: Geometry
    space_hw: tuple[int, int]


def mask_input_maker(model: SamModel, embedding: Embedding, space: str = "original"):
    """A function ``logits → PreparedMaskInput`` for clicks on images of ``embedding``'s geometry, that
    runs without torch (numpy only: safe in a background thread), or ``None`` where this model resizes
    its mask input with torch (:func:`_mask_input_in_numpy`): that resize runs at the click.

    ``logits``: ``N×H×W`` (or ``H×W``) float32 as a previous :func:`decode` returned them, in ``space``'s
    pixels (``"original"``: the original slice; ``"model"``: the encoded image). Raises
    :class:`~medsam_lite.InputError` (in the thread that calls it) as :func:`check_mask_input`.
    Decide here, in the thread that decodes: whether a compiled graph runs the prompts depends on
    torch's thread-local gradient mode.
    """
    if space not in SPACES:
        raise InputError(f"space must be one of {SPACES} (the pixel space of every prompt), got {space!r}.")
    free = _torch_free(model)
    with _no_grad():
        if not _mask_input_in_numpy(model, free, embedding.tensor.shape[0]):
            return None
        low = _mask_input_side(model, free)
    geometry = embedding.geometry
    space_hw = tuple(geometry.image_hw if space == "model" else geometry.original_hw)

    def make(logits) -> PreparedMaskInput:
        n = np.shape(logits)[0] if np.ndim(logits) == 3 else 1
        model_input = mask_input_to_model(geometry, logits, n, low, space_hw, True)  # checks the logits
        return PreparedMaskInput(np.asarray(logits, np.float32).reshape(n, *space_hw), model_input, geometry, space_hw)

    return make


#: The pixel spaces :func:`decode` takes its prompts in (see its ``space``).
SPACES = ("original", "model")


def decode(model: SamModel, embedding: Embedding, boxes=None, *, points=None, point_labels=None, mask_input=None,
           space: str = "original", logits: bool = True, click_rule=None, checked=None, box_space=None, image=None):
    """Segment one mask per target on an encoded image, from a box, clicks, or both.

    Args:
        model: the :class:`SamModel` (its decoder may differ from the one that encoded: a fine-tuned
            decoder shares the pretrained encoder).
        embedding: an :class:`Embedding`.
        boxes: one XYXY box or ``N×4`` in ``space``. ``None``: points only.
        points: ``K×2`` (one target) or ``N×K×2`` (paired with ``N`` boxes) XY clicks in ``space``.
        point_labels: ``K`` or ``N×K``: 1 foreground, 0 background.
        mask_input: the logits a previous call returned for the same targets (``N×h×w`` at the
            masks' size, or ``h×w`` for one): the decoder refines that mask. Or a
            :class:`PreparedMaskInput` made from them ahead of the click (:func:`mask_input_maker`).
        space: the pixel space of every prompt (one :class:`~medsam_lite.model.geometry.Geometry`
            converts between them):

            * ``"original"`` (default): boxes (checked, clipped to the image) and points in the
              original slice's pixels, mapped to the model by the :class:`Geometry` (boxes as the
              published recipe does, :meth:`~medsam_lite.model.geometry.Geometry.box_prompt`); mask
              input and masks at the original ``H×W``.
            * ``"model"``: boxes and points are already the decoder's prompts, XYXY / XY **model**
              pixels (``0 … S``), used as they are (the published challenge script computes its box
              prompts itself: ``int(coord × S / max(H, W))``, or from the previous slice's mask;
              ``Geometry.box_prompt`` / ``Geometry.points_to_model`` make them from original pixels).
              The model's square, padded grid holds no mask of its own: mask input and masks are in
              the pixels of the image that was encoded (``embedding.geometry.image_hw``: the
              original, or a dataset's stored slice).
        logits: also make the full-size logits. ``False`` maps the decoder's logits back only where
            a mask can be (:func:`~medsam_lite.model.fullsize.masks_at`): the same masks, bit for
            bit, without a full-size float resize; the third value is then ``None``.
        click_rule: how the click decoder's answer is combined with the previous mask (the
            ``mask_input``'s, or with a box and no ``mask_input`` the box's own mask): a rule of
            :mod:`medsam_lite.model.clickrule`; default ``model.click_rule`` if set, else
            :data:`~medsam_lite.model.clickrule.DEFAULT_RULE` (keep only the change in the connected
            region under each click). Not used without points, nor for points without a box or mask input.
        image: the image the click rule reads the clicked tissue from, ``h×w×3`` or ``h×w`` uint8 in
            image pixels (``embedding.geometry.image_hw``) or in the masks' pixels; default
            ``embedding.image`` (``None``: the rule works from the masks alone).
        checked, box_space: deprecated. Boxes are always checked (checking is idempotent); for box
            prompts in model pixels pass ``space="model"``. ``space="image"`` (original-pixel prompts,
            masks at a stored slice's size) is deprecated too: pass the prompts in model pixels
            (``Geometry.box_prompt`` / ``Geometry.points_to_model``) with ``space="model"``.

    Returns:
        ``(masks, scores, logits)``: ``N×h×w`` bool masks, ``N`` float32 predicted IoU scores and
        ``N×h×w`` float32 logits (the size ``space`` gives; logits ``None`` with ``logits=False``). A
        box-only prompt gives exactly the published decoder's masks; points or a mask input run the
        model's click decoder, and with points the click rule keeps the previous mask (and its
        logits) outside the region each click corrects.

    Raises:
        InputError: no box and no points; a bad box; points outside the image, labels other than 0/1,
            points without labels; a mask input of the wrong shape; an unknown ``space``.
    """
    space, boxes, points = _deprecated_spaces(embedding.geometry, space, boxes, points, point_labels, checked,
                                              box_space)
    with _no_grad():
        return _decode(model, embedding, boxes, points, point_labels, mask_input, space, logits, click_rule,
                       embedding.image if image is None else image)


def _deprecated_spaces(geometry, space, boxes, points, point_labels, checked, box_space):
    """``decode``'s deprecated ``checked=``, ``box_space=`` and ``space="image"`` → ``(space, boxes, points)``."""
    import warnings

    if checked is not None:
        warnings.warn("decode(checked=) is deprecated and ignored: boxes are always checked; drop it.",
                      DeprecationWarning, stacklevel=3)
    if box_space is not None:
        warnings.warn("decode(box_space=) is deprecated: pass space='model' (the pixel space of every prompt).",
                      DeprecationWarning, stacklevel=3)
        if box_space not in ("original", "model"):
            raise InputError(f"box_space must be 'original' or 'model', got {box_space!r}; use space= instead.")
        space = "model" if box_space == "model" else space
    if space == "image":
        warnings.warn("decode(space='image') is deprecated: pass the prompts in model pixels "
                      "(Geometry.box_prompt(boxes), Geometry.points_to_model(points)) with space='model'; the "
                      "masks come back at the encoded (stored) image's size.", DeprecationWarning, stacklevel=3)
        if boxes is not None:
            boxes = geometry.box_prompt(check_boxes(boxes, geometry.original_hw))
        if points is not None:
            n = None if boxes is None else len(boxes)
            points = geometry.points_to_model(check_points(points, point_labels, n, geometry.original_hw)[0])
        space = "model"
    return space, boxes, points


def _decode(model, embedding, boxes, points, point_labels, mask_input, space, logits, click_rule=None, image=None):
    free = _torch_free(model)
    as_input = (lambda a: a) if free else _from_numpy
    geometry = embedding.geometry
    if space not in SPACES:
        raise InputError(f"space must be one of {SPACES} (the pixel space of every prompt), got {space!r}.")
    if points is None and point_labels is not None:
        raise InputError("point_labels were given without points; pass points=[[x, y], …] too.")
    if boxes is None and points is None:
        raise InputError(f"give a box (XYXY, {space} pixels), points with point_labels, or both.")
    model_space = space == "model"
    out_hw = geometry.image_hw if model_space else geometry.original_hw
    if boxes is None:
        prompts = given = None
    elif model_space:
        given = _model_boxes(boxes, geometry.input_size)
        prompts = as_input(given)
    else:
        given = check_boxes(boxes, geometry.original_hw)
        prompts = as_input(geometry.box_prompt(given))
    if points is None and mask_input is None:
        low_res, iou = decode_logits(model, embedding.tensor, prompts)
    else:
        pts = labels = None
        n = None if prompts is None else len(prompts)
        if points is not None:
            bounds = geometry.resized_hw if model_space else geometry.original_hw
            pts, labels = check_points(points, point_labels, n, bounds, space)
            # the clicks where the masks are, for the click rule
            xy = geometry.points_from_model(pts, out_hw) if model_space else pts
            n = len(pts)
            pts = as_input(pts if model_space else geometry.points_to_model(pts))
            xy_labels, labels = labels, as_input(labels)
        rule = rule_of(model, click_rule) if pts is not None and (mask_input is not None or prompts is not None) else None
        rule_image = None if rule is None else _rule_image(image, out_hw)  # checked before the decoder runs
        low = _mask_input_side(model, free)
        in_numpy = mask_input is not None and _mask_input_in_numpy(model, free, embedding.tensor.shape[0])
        masks_in = None
        if isinstance(mask_input, PreparedMaskInput):  # made ahead (mask_input_maker): used where it fits
            ready = mask_input
            mask_input = ready.logits
            if (in_numpy and ready.geometry == geometry and ready.space_hw == tuple(out_hw)
                    and ready.model_input.shape == (n, 1, low, low)):
                masks_in = ready.model_input
        if masks_in is None and mask_input is not None:
            masks_in = mask_input_to_model(geometry, mask_input, n, low, out_hw, in_numpy)
        if masks_in is not None and free and _is_tensor(masks_in):  # numpy in for the torch-free model,
            masks_in = masks_in.numpy()
        elif masks_in is not None and not free and not _is_tensor(masks_in):  # a torch tensor for the others
            masks_in = _from_numpy(masks_in)
        low_res, iou = decode_logits(model, embedding.tensor, prompts, pts, labels, masks_in)
        if rule is not None:
            if mask_input is not None:  # the mask the click corrects: the previous call's
                prev_logits = np.asarray(mask_input, np.float32).reshape(n, *out_hw)
            else:  # clicks with a box but no previous logits: they correct the box's own mask
                prev_logits = back_to_size(geometry, *decode_logits(model, embedding.tensor, prompts), out_hw, True)[2]
            _, scores, new_logits = back_to_size(geometry, low_res, iou, out_hw, True)
            full = combine(rule, prev_logits, new_logits, xy, np.asarray(xy_labels), rule_image,
                           _rule_boxes(geometry, given, model_space, out_hw))
            return full > 0, scores, (full if logits else None)
    return back_to_size(geometry, low_res, iou, out_hw, logits)  # numpy for the torch-free model, the same bits


def _mask_input_side(model, free: bool) -> int:
    """The side of the decoder's square mask input (``low``: 256 for LiteMedSAM and SAM)."""
    return int(model.mask_input_size[0] if free else model.prompt_parts(clicks=True)[0].mask_input_size[0])


def _mask_input_in_numpy(model, free: bool, batch: int) -> bool:
    """Whether the mask input is resized in numpy (:func:`~medsam_lite.model.fullsize.resize_antialias_exact`,
    the same bits as torch's where that was checked): for the torch-free model where its manifest says so; for
    a torch model whose prompts run in a compiled graph (:meth:`SamModel.compiled_prompts`) where
    :func:`~medsam_lite.model.fullsize.antialias_exact_here` holds. So no torch operation runs right before
    the graph: torch's OpenMP workers, still spinning after one, took about 3 ms of each click's graph from
    ONNX Runtime's threads (``bench/RESULTS.md``, round 4)."""
    if free:
        return bool(getattr(model, "mask_input_exact", False))
    compiled = getattr(model, "compiled_prompts", None)
    if compiled is None or compiled(batch) is None:
        return False
    from .fullsize import antialias_exact_here

    return antialias_exact_here()


def _rule_image(image, hw):
    """The click rule's image (``h×w×3`` / ``h×w`` uint8) in the masks' ``hw`` pixels, or ``None``."""
    if image is None:
        return None
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.dtype != np.uint8 or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        raise InputError(f"the click rule's image must be h×w or h×w×3 uint8 (normalized), got {image.dtype} "
                         f"{image.shape}; pass the prepared image (Predictor keeps it) or none.")
    if image.shape[:2] != tuple(hw):
        import cv2

        image = cv2.resize(image, (int(hw[1]), int(hw[0])), interpolation=cv2.INTER_LINEAR)
    return image


def _rule_boxes(geometry, boxes, model_space: bool, hw) -> np.ndarray | None:
    """The click rule's boxes: ``N×4`` XYXY in the masks' ``hw`` pixels, or ``None`` (clicks without a box).
    Original-pixel boxes are the masks' own; model-pixel prompts are mapped back to the encoded image's pixels,
    grown by one model pixel on each side (the published recipe truncates the scaled coordinates)."""
    if boxes is None:
        return None
    if not model_space:
        return np.asarray(boxes, np.float32)
    grown = np.asarray(boxes, np.float32) + np.float32([-1, -1, 1, 1])
    return geometry.box_to_image(geometry.box_to_original(grown))


def _model_boxes(boxes, size: int) -> np.ndarray:
    """``N×4`` XYXY box prompts in model pixels (normally ``0 … size``; used as given, as the published
    script passes its prompts), checked to be finite and not inverted → float32."""
    try:
        arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if boxes is not None else np.zeros((0, 4))
    except (TypeError, ValueError):
        arr = np.full((1, 4), np.nan)
    if len(arr) == 0 or not np.isfinite(arr).all() or (arr[:, 2] < arr[:, 0]).any() or (arr[:, 3] < arr[:, 1]).any():
        raise InputError(f"model-pixel boxes must be N×4 finite XYXY (0 … {size}), x1 ≥ x0 and y1 ≥ y0; got "
                         f"{str(boxes)[:80]}.")
    return arr.astype(np.float32)


class EmbeddingCache:
    """Embeddings kept in memory by key (a slice index …), least recently used dropped first.

    The in-memory counterpart of the on-disk store (:class:`~medsam_lite.data.store.EmbeddingStore`):
    both answer ``get(key) -> Embedding | None``.

    Args:
        max_items: how many embeddings to keep (each 4 MiB in float32); ``None`` keeps all.
    """

    def __init__(self, max_items: int | None = None):
        self.max_items = max_items
        self._items: OrderedDict = OrderedDict()

    def get(self, key) -> Embedding | None:
        """The embedding stored under ``key`` (now the most recently used), or ``None``."""
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key, embedding: Embedding) -> Embedding:
        """Keep ``embedding`` under ``key``; returns it."""
        self._items[key] = embedding
        self._items.move_to_end(key)
        while self.max_items is not None and len(self._items) > self.max_items:
            self._items.popitem(last=False)
        return embedding

    def __contains__(self, key) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(list(self._items))

    def keys(self):
        """The keys held, as a set-like view."""
        return self._items.keys()

    def update(self, other: "EmbeddingCache") -> None:
        """Take over every embedding of ``other`` (e.g. the same volume with a fine-tuned decoder)."""
        for key in list(other.keys()):
            self.put(key, other._items[key])
