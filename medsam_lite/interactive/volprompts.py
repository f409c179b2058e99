"""Clicks on the slices of a volume: per-slice points for :class:`~medsam_lite.VolumePredictor` and 3D label maps.

Per-slice clicks are a dict ``{z: (points, point_labels)}``: ``z`` a slice index along the
predictor's axis, ``points`` ``K×2`` XY (column, row) in that slice's **original** pixels (as the
slice's boxes), ``point_labels`` ``K`` (1 foreground: the target is here, 0 background: it is not).
For several targets (a ``{label: prompt}`` dict, a label map) the clicks are
``{label: {z: (points, point_labels)}}``.

On a slice with clicks the propagation decodes the target as a user's first click round in the
widget does: the slice's box alone first (the published decoder), then the box + every click with
those logits as the mask input (the click decoder). The box is the user's on that slice, else the
propagated one; on a slice the walk does not reach it is a 3D box's ``x, y`` extent, and without a
3D box the clicks alone prompt (weak: the click decoders learned clicks after a box). The walk then
goes on from the corrected mask, and a clicked slice the walk does not reach starts a walk of its
own, as a user box does.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import InputError
from ..model.clickrule import rule_of, without_box
from ..model.geometry import check_boxes
from ..model.inference import check_points


def parse_box_prompt(vp, box, slice_index):
    """→ (user boxes {slice: XYXY}, inclusive slice range (lo, hi), XYXY clip box or None)."""
    try:
        arr = np.asarray(box, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"box must be numbers: [x0, y0, x1, y1] with slice_index, or a 3D box "
                         f"[x0, y0, z0, x1, y1, z1]; got {box!r}.") from None
    hw = vp.slice_hw
    if arr.shape == (6,):
        if not np.isfinite(arr).all():
            raise InputError("the 3D box holds NaN or Inf; give finite coordinates.")
        x0, y0, z0, x1, y1, z1 = arr
        z0, z1 = int(round(z0)), int(round(z1))
        if z1 < z0 or z1 < 0 or z0 > vp.n_slices - 1:
            raise InputError(f"3D box z-range [{z0}, {z1}] is inverted or outside the {vp.n_slices} "
                             f"slices along axis {vp.axis}; the format is [x0, y0, z0, x1, y1, z1].")
        lo, hi = max(z0, 0), min(z1, vp.n_slices - 1)
        key = lo + (hi - lo) // 2 if slice_index is None else vp.check_index(slice_index)
        if not lo <= key <= hi:
            raise InputError(f"slice_index {key} lies outside the 3D box's z-range [{lo}, {hi}].")
        xy = check_boxes([x0, y0, x1, y1], hw)[0]
        return {key: xy}, (lo, hi), xy
    if arr.shape == (4,):
        if slice_index is None or np.ndim(slice_index) != 0:
            raise InputError("a 2D box [x0, y0, x1, y1] needs the slice it is drawn on: "
                             "slice_index=<int>; or pass a 3D box [x0, y0, z0, x1, y1, z1].")
        return {vp.check_index(slice_index): check_boxes(arr, hw)[0]}, (0, vp.n_slices - 1), None
    if arr.ndim == 2 and arr.shape[1] == 4 and arr.shape[0] > 0:
        indices = [] if slice_index is None else list(np.atleast_1d(slice_index))
        if len(indices) != arr.shape[0]:
            raise InputError(f"{arr.shape[0]} boxes need a list of {arr.shape[0]} slice indices "
                             f"(slice_index=[…]), one per box; got {slice_index!r}.")
        indices = [vp.check_index(i) for i in indices]
        if len(set(indices)) != len(indices):
            raise InputError(f"slice indices {indices} repeat a slice; give one box per slice "
                             "(for several targets pass {label: prompt}).")
        boxes = check_boxes(arr, hw)
        return dict(zip(indices, boxes)), (0, vp.n_slices - 1), None
    raise InputError(f"box of shape {arr.shape} is not understood: give [x0, y0, x1, y1] with "
                     "slice_index, N×4 boxes with N slice indices, a 3D box [x0, y0, z0, x1, y1, z1], "
                     "or {label: prompt} for several targets.")


def check_slice_clicks(vp, clicks, z_range: tuple[int, int] | None = None
                       ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Validate one target's per-slice clicks on ``vp`` (a :class:`~medsam_lite.VolumePredictor`), before any work.

    Args:
        clicks: ``{z: (points K×2 XY original pixels, point_labels K of 1/0)}`` or ``None``.
        z_range: the inclusive slice range the target's prompt allows (a 3D box's), or ``None``.

    Returns:
        ``{z: (points K×2 float32, labels K float32)}`` (empty for ``None``).

    Raises:
        InputError: not a dict of slice → (points, labels); a slice outside the volume, outside the 3D
            box's z-range or blank; points outside the slice, labels other than 0/1, points without
            labels, points for several targets (``N×K×2``).
    """
    if clicks is None:
        return {}
    if not isinstance(clicks, Mapping):
        raise InputError(f"clicks must be a dict {{slice_index: (points, point_labels)}}, points K×2 XY in that "
                         f"slice's original pixels; got {type(clicks).__name__}.")
    out = {}
    for z, prompt in clicks.items():
        z = vp.check_index(z)
        points, labels = check_target_clicks(prompt, vp.slice_hw, f"clicks on slice {z}",
                                             "; for several targets pass {label: prompt} with "
                                             "clicks={label: {slice: (points, labels)}}")
        if z_range is not None and not z_range[0] <= z <= z_range[1]:
            raise InputError(f"clicks on slice {z} lie outside the 3D box's z-range [{z_range[0]}, {z_range[1]}]; "
                             "click on a slice inside it, or widen the box.")
        if vp.is_blank(z):
            raise InputError(f"slice {z} (axis {vp.axis}) is blank, with nothing to segment; click on a slice "
                             "that shows the target.")
        out[z] = (points[0], labels[0])
    return out


def check_target_clicks(prompt, image_hw, where: str, several: str = "") -> tuple[np.ndarray, np.ndarray]:
    """One target's clicks ``(points K×2 XY original pixels, point_labels K of 1/0)``, checked.

    Args:
        where: what the message names (``"clicks on slice 4"``, ``"clicks for label 6"``).
        several: advice appended when the points are ``N×K×2`` (several targets).

    Returns:
        ``(points 1×K×2 float32, labels 1×K float32)``.
    """
    if not isinstance(prompt, (tuple, list)) or len(prompt) != 2:
        raise InputError(f"{where} must be a pair (points, point_labels): points K×2 XY in original pixels, "
                         f"point_labels K of 1 (foreground) / 0 (background); got {str(prompt)[:60]!r}.")
    points, labels = check_points(prompt[0], prompt[1], None, image_hw)
    if len(points) != 1:
        raise InputError(f"{where} are for one target: points K×2, not {points.shape[0]}×K×2{several}.")
    return points, labels


def check_label_clicks(vp, clicks, labels, z_ranges: dict) -> dict[int, dict]:
    """Validate ``{label: {z: (points, point_labels)}}`` for the targets ``labels`` (before any work).

    Args:
        z_ranges: label → the inclusive slice range its prompt allows (or ``None``).

    Returns:
        ``{label: {z: (points K×2 float32, labels K float32)}}``.
    """
    if clicks is None:
        return {}
    if not isinstance(clicks, Mapping):
        raise InputError("with several targets clicks must be {label: {slice_index: (points, point_labels)}}; got "
                         f"{type(clicks).__name__}.")
    unknown = [k for k in clicks if k not in set(labels)]
    if unknown:
        raise InputError(f"clicks for label(s) {unknown[:5]} that have no prompt; the targets are {sorted(labels)[:20]}.")
    return {k: check_slice_clicks(vp, v, z_ranges.get(k)) for k, v in clicks.items()}


def decode_with_clicks(vp, z: int, box, points: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """One target on slice ``z`` from its box (or ``None``) and its clicks → ``(H×W bool mask, predicted IoU)``.

    With a box: the box alone, then box + clicks with those logits as the mask input; without: the
    clicks alone. The box is the 3D walk's — on most slices grown from a neighbouring slice's mask, not drawn
    by the user — so it does not bound the clicks (:func:`~medsam_lite.model.clickrule.without_box`).
    """
    if box is None:
        (mask,), (score,) = vp.predict_slice(z, None, points[None], labels[None])
        return mask, float(score)
    _, _, logits = vp.predict_slice(z, box, return_logits=True)
    rule = without_box(rule_of(vp.model))
    (mask,), (score,) = vp.predict_slice(z, box, points[None], labels[None], mask_input=logits, click_rule=rule)
    return mask, float(score)
