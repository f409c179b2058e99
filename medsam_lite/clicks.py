"""Corrective clicks: the robot user of the interactive-segmentation literature, and the click metric.

The robot looks at the error between the current mask and the truth, takes its **largest connected
error region** and clicks at the pixel of that region **farthest from its border** (scipy's
Euclidean distance transform; the image edge counts as border): a foreground click (label 1) on a
missed area, a background click (label 0) on a false positive. Each click is added to the previous
ones and the previous logits are passed back as the mask input, as a user's session would.

* :func:`next_click` — the robot's next click for one mask (also what training samples from).
* :func:`simulate_clicks` — Dice after the box and after each click on one 2D image.
* NoC@t (clicks needed to reach a Dice): :func:`medsam_lite.metrics.clicks_to_reach`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .errors import InputError
from .model.geometry import check_binary, check_boxes
from .metrics import dice
from .model.inference import Embedding, decode

__all__ = ["next_click", "simulate_clicks", "robot_session"]


def next_click(pred, truth, rng: np.random.Generator | None = None):
    """The next corrective click for a predicted mask.

    Args:
        pred, truth: ``H×W`` bool masks (same pixel space).
        rng: ``None`` (the robot: the interior point of the largest error region farthest from its
            border, deterministic) or a generator (training: a uniformly random pixel of that region).

    Returns:
        ``(x, y, label)`` — column, row (pixel indices of ``pred``'s grid) and 1 (foreground: a miss)
        or 0 (background: a false positive) — or ``None`` when the mask has no error.
    """
    error = np.asarray(pred, bool) ^ np.asarray(truth, bool)
    if not error.any():
        return None
    regions, n = ndimage.label(error)
    sizes = np.bincount(regions.ravel(), minlength=n + 1)[1:]
    region = regions == (int(np.argmax(sizes)) + 1)
    if rng is None:
        dist = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    else:
        ys, xs = np.nonzero(region)
        i = int(rng.integers(len(ys)))
        y, x = ys[i], xs[i]
    return int(x), int(y), int(bool(np.asarray(truth)[y, x]))


def robot_session(model, embedding: Embedding, truth: np.ndarray, box, n_clicks: int, space: str = "original",
                  click_rule=None, rng: np.random.Generator | None = None):
    """Box, then ``n_clicks`` robot clicks on one target; the masks after each step.

    Args:
        model: a :class:`~medsam_lite.SamModel`.
        embedding: the image's :class:`~medsam_lite.Embedding` (with its ``image``, the click rule reads
            the clicked tissue).
        truth: ``h×w`` bool truth in ``space`` (``"original"`` pixels, or ``"image"``: a stored slice).
        box: XYXY box in **original** pixels.
        n_clicks: how many clicks after the box.
        click_rule: how each click's answer joins the previous mask (see :mod:`medsam_lite.model.clickrule`;
            default: the model's rule).
        rng: ``None`` (the robot) or a generator: each click a uniformly random pixel of the largest error
            region (:func:`next_click`), a user who clicks anywhere in the error, its rim included.

    Returns:
        ``(masks, points, labels)``: ``n_clicks + 1`` bool masks in ``space`` (after the box, after each
        click; once the mask is exact the robot stops and the last mask repeats), the clicks in
        original pixels (``k×2``) and their labels (``k``).
    """
    if space not in ("original", "image"):
        raise InputError(f"space must be 'original' or 'image' (the pixels of truth and masks), got {space!r}.")
    geometry = embedding.geometry
    hw = geometry.image_hw if space == "image" else geometry.original_hw
    scale = np.array([geometry.original_hw[1] / hw[1], geometry.original_hw[0] / hw[0]])
    to_prompt, prompt_space = np.asarray, "original"
    if space == "image":  # masks on a stored slice: the prompts go in as the decoder's own (model pixels)
        box = geometry.box_prompt(check_boxes(box, geometry.original_hw))
        to_prompt, prompt_space = geometry.points_to_model, "model"
    masks, _, logits = decode(model, embedding, box, space=prompt_space)
    out, points, labels = [masks[0]], [], []
    for _ in range(n_clicks):
        click = next_click(out[-1], truth, rng)
        if click is None:
            out.append(out[-1])
            continue
        x, y, label = click
        centre = (np.array([x, y]) + 0.5) * scale - 0.5  # the clicked pixel's centre in original pixels
        points.append(np.clip(centre, 0, np.array(geometry.original_hw[::-1]) - 1))
        labels.append(label)
        masks, _, logits = decode(model, embedding, box, space=prompt_space, points=to_prompt(np.array(points)),
                                  point_labels=np.array(labels), mask_input=logits, click_rule=click_rule)
        out.append(masks[0])
    return out, np.array(points, np.float32).reshape(-1, 2), np.array(labels, np.int64)


def simulate_clicks(model, image, truth, box, n_clicks: int = 3, modality: str | None = None, window=None,
                    click_rule=None, rng: np.random.Generator | None = None) -> np.ndarray:
    """Dice after the box and after each robot click on one 2D image (see the module docstring).

    Args:
        model: a :class:`~medsam_lite.SamModel` (``load_model()``: clicks run its click decoder).
        image: ``H×W`` (any real dtype, normalized with ``modality`` / ``window``) or ``H×W×3`` uint8,
            or an :class:`~medsam_lite.Embedding` of it (its ``image``, which a
            :class:`~medsam_lite.Predictor`'s embedding carries, is what the click rule reads; an
            embedding without one gets the masks-only rule).
        truth: ``H×W`` bool (or 0/1) truth mask, original pixels.
        box: one XYXY box ``[x0, y0, x1, y1]``, original pixels (e.g. ``box_from_mask(truth)``): one truth
            mask is one target, so one box (for several targets call once per target).
        n_clicks: clicks after the box (default 3).
        modality, window: intensity normalization, see :meth:`~medsam_lite.Predictor.set_image`.
        click_rule: how each click's answer joins the previous mask (:mod:`medsam_lite.model.clickrule`;
            default: the model's rule, else :data:`~medsam_lite.model.clickrule.DEFAULT_RULE`).
        rng: ``None`` (the robot: each click at the interior point of the largest error region farthest
            from its border) or a generator (each click a uniformly random pixel of that region; see
            :func:`robot_session`).

    Returns:
        ``n_clicks + 1`` float Dice values: ``[after the box, after click 1, …]``.

    Raises:
        InputError: a truth mask that is not binary, empty, or not the image's size; a bad box, or more
            than one box (all checked before the image is encoded).
    """
    from .interactive.predict import Predictor

    if isinstance(n_clicks, bool) or not isinstance(n_clicks, (int, np.integer)) or n_clicks < 0:
        raise InputError(f"n_clicks must be an integer >= 0, got {n_clicks!r}.")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be None (the robot) or a numpy Generator (np.random.default_rng(seed)), got "
                         f"{type(rng).__name__}.")
    truth = check_binary(truth, "truth")
    if truth.ndim != 2:
        raise InputError(f"truth must be one H×W mask (one target), got shape {truth.shape}.")
    boxes = check_boxes(box, truth.shape)  # before the encoder runs
    if len(boxes) != 1:
        raise InputError(f"simulate_clicks scores one target: one truth mask takes one box [x0, y0, x1, y1], got "
                         f"{len(boxes)} boxes. Call it once per target, each with its own truth mask "
                         "(e.g. box=box_from_mask(truth)).")
    if isinstance(image, Embedding):
        embedding = image
    else:
        predictor = Predictor(model)
        if truth.shape != np.shape(image)[:2]:
            raise InputError(f"truth {truth.shape} and image {np.shape(image)[:2]} differ in size.")
        predictor.set_image(image, modality=modality, window=window)
        embedding, model = predictor.embedding, predictor.model
    if truth.shape != embedding.original_hw or not truth.any():
        raise InputError(f"truth must be a non-empty {embedding.original_hw} mask of the image, got "
                         f"{truth.shape} with {int(truth.sum())} pixels.")
    masks = robot_session(model, embedding, truth, boxes[0], int(n_clicks), click_rule=click_rule, rng=rng)[0]
    return np.array([dice(m, truth) for m in masks])
