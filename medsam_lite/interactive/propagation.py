"""Slice-by-slice propagation of a target through a volume: one walk, two sets of rules.

From the middle user slice, walk up, then down, each slice's box made from the previous slice's mask.

* ``rules="package"`` (behind :meth:`medsam_lite.VolumePredictor.predict`; the options are in
  :mod:`medsam_lite.interactive.volume`): the previous mask's box grown by a margin
  (:func:`grow_box`, original pixels), a user box replaces it on its slice, and the walk in one
  direction stops (or jumps to the next user slice) where the target vanishes: too few pixels, a low
  predicted IoU, or a mean intensity that moved too far from the user's slice. On a slice with
  user clicks the target is decoded from its box plus the clicks
  (:func:`~.volprompts.decode_with_clicks`) and the walk goes on from that corrected mask; a
  clicked slice counts as a user slice.
* ``rules="published"`` (behind ``medsam-lite challenge``; :func:`propagate_published`): the
  LiteMedSAM branch's ``CVPR24_LiteMedSAM_infer.py`` ``MedSAM_infer_npz_3D``. From a 3D box
  ``[x0, y0, z0, x1, y1, z1]``: the middle slice ``int((z1 - z0) / 2 + z0)`` from the box's
  ``x, y`` (model pixels ``int(coord × S / max(H, W))``), then slices ``mid + 1 … z1 - 1`` and
  ``mid - 1 … z0 + 1`` (``z0`` and ``z1`` themselves are never segmented), each from the previous
  slice's mask: the mask holding the target's label value is resized as the image is
  (``cv2.INTER_AREA``, longest side to ``S``; so the label value decides which partly covered
  pixels survive), its box taken in model pixels and widened by :data:`BBOX_SHIFT` (clamped to
  ``0 … S``); an empty previous mask falls back to the middle slice's box. Every mask is kept; the
  walk never stops early. (One difference, on purpose: a blank slice, constant once normalized,
  gets an empty mask instead of the model's answer for an all-zero input.)
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from ..errors import InputError
from ..model.geometry import box_from_mask, resize_slice
from .volprompts import decode_with_clicks

#: ``get_bbox256``'s widening of a propagated box in the published rules, model pixels.
BBOX_SHIFT = 3
RULES = ("package", "published")


def propagate(vp, keys: dict, z_range: tuple[int, int], clip=None, *, rules: str = "package", label: int = 1,
              margin: float = 1.0, margin_ratio: float = 0.05, min_pixels: int = 10, min_score: float = 0.0,
              change: float = np.inf, largest_component: bool = False,
              progress: bool = False, clicks: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Segment one target through ``vp`` (a :class:`~medsam_lite.VolumePredictor`).

    Args:
        keys: user boxes, ``{slice index: XYXY}`` (original slice pixels; ``rules="published"``: one
            key, the middle slice, its box in **model** pixels).
        z_range: the inclusive slice range ``(lo, hi)`` the walk stays in.
        clip: an XYXY box the grown boxes stay inside (a 3D box's x, y extent), or ``None``.
        rules: ``"package"`` or ``"published"`` (see the module docstring; the published rules use
            only ``label`` and ``progress`` of the options).
        label: the target's label value (``rules="published"``: its mask is resized holding it).
        change: the largest change of mean intensity (0–255) inside the mask (``inf``: off).
        clicks: checked user clicks, ``{slice index: (points K×2 float32 XY original slice pixels,
            labels K float32)}`` (:func:`~.volprompts.check_slice_clicks`), or ``None``.
        margin, margin_ratio, min_pixels, min_score, largest_component, progress: as in
            :meth:`~medsam_lite.VolumePredictor.predict` (the defaults here are its defaults, bar
            ``change`` and ``progress``).

    Returns:
        ``(masks, scores)``: ``bool`` masks of the volume's shape, and the predicted IoU per slice
        (``n_slices`` float32, 0 where nothing was decoded).
    """
    if rules not in RULES:
        raise InputError(f"rules must be one of {RULES}, got {rules!r}.")
    published = rules == "published"
    lo, hi = z_range
    h, w = vp.slice_hw
    masks = np.zeros((vp.n_slices, h, w), bool)
    scores = np.zeros(vp.n_slices, np.float32)
    clicks = clicks or {}
    users = set(keys) | set(clicks)  # slices whose mask the user prompted: always kept
    start = sorted(keys)[len(keys) // 2]
    geometry = vp.model.geometry((h, w)) if published else None
    bar = tqdm(total=hi - lo + 1, desc="slices", unit="slice", disable=not progress, leave=False)
    for step in (1, -1):
        z = start if step == 1 else start - 1
        prev = ref = None  # previous slice's mask; mean intensity in the last user slice's mask
        if step == -1 and (published or masks[start].sum() >= min_pixels):
            prev, ref = masks[start], None if published else _mean(vp, start, masks[start])
        while lo <= z <= hi:
            if z in keys:
                box_z = keys[z]
            elif published:
                box_z = published_box(prev, keys[start], label, geometry)
            elif prev is not None:
                box_z = grow_box(box_from_mask(prev), margin, margin_ratio, clip, (h, w))
            elif z in clicks:  # not reached by the walk: a 3D box's x, y extent with the clicks, else the clicks alone
                box_z = None if clip is None else np.asarray(clip, np.float32)
            else:  # the target vanished: jump to the next user-given slice, if any
                ahead = [k for k in users if (k - z) * step > 0]
                if not ahead:
                    break
                z = min(ahead, key=lambda k: abs(k - z))
                continue
            if z in clicks:
                mask, score = decode_with_clicks(vp, z, box_z, *clicks[z])
            else:
                (mask,), (score,) = vp.predict_slice(z, box_z, box_space="model" if published else "original")
            bar.update(1)
            scores[z] = score
            if published:  # every mask is kept, and the next box comes from it even when empty
                masks[z] = prev = mask
            elif z in users:
                masks[z] = mask
                prev = mask if mask.sum() >= min_pixels else None
                ref = _mean(vp, z, mask) if prev is not None else ref
            elif (mask.sum() < min_pixels or score < min_score
                  or (ref is not None and abs(_mean(vp, z, mask) - ref) > change)):
                prev = None
            else:
                masks[z] = prev = mask
            z += step
    bar.total = bar.n  # it stopped before the end of the range: show a full bar
    bar.close()
    if largest_component:
        masks = _largest_component(masks)
    return np.moveaxis(masks, 0, vp.axis), scores


def propagate_published(vp, box3d, label: int = 1, progress: bool = False) -> np.ndarray:
    """One target by the published 3D rules (module docstring) → ``bool`` mask of ``vp``'s shape.

    Args:
        vp: a :class:`~medsam_lite.VolumePredictor` with ``axis=0`` (its cached slices are reused).
        box3d: ``[x0, y0, z0, x1, y1, z1]``: original pixels and slice indices, ``z0 < z1`` (the
            published script asserts it), inside the volume.
        label: the target's label value (box ``i`` of a case → ``i``, counting from 1).
    """
    x0, y0, z0, x1, y1, z1 = (float(v) for v in box3d)
    z0, z1 = int(z0), int(z1)
    mid = int((z1 - z0) / 2 + z0)
    ratio = vp.model.input_size / max(vp.slice_hw)
    key = np.array([int(c * ratio) for c in (x0, y0, x1, y1)], np.float64)  # resize_box_to_256
    lo, hi = max(0, min(mid, z0 + 1)), min(vp.n_slices - 1, z1 - 1)
    return propagate(vp, {mid: key}, (lo, hi), rules="published", label=label, progress=progress)[0]


def published_box(prev: np.ndarray, fallback: np.ndarray, label: int, geometry) -> np.ndarray:
    """The published next-slice box prompt (model pixels) from the previous slice's ``H×W`` mask.

    ``prev`` holding ``label`` (uint8, as the script's ``segs_3d_temp``) is resized to the model
    grid with ``cv2.INTER_AREA`` (``resize_longest_side``); its box there, widened by
    :data:`BBOX_SHIFT` and clamped to ``0 … S`` (``get_bbox256`` on the padded mask); ``fallback``
    (the middle slice's box) when nothing is left of it.
    """
    if prev is None or not prev.any():
        return fallback
    small = resize_slice(prev.astype(np.uint8) * np.uint8(min(int(label), 255)), geometry.resized_hw)
    rows, cols = np.nonzero(small.any(1))[0], np.nonzero(small.any(0))[0]
    if len(rows) == 0:
        return fallback
    size = geometry.input_size
    return np.array([max(0, cols[0] - BBOX_SHIFT), max(0, rows[0] - BBOX_SHIFT),
                     min(size, cols[-1] + BBOX_SHIFT), min(size, rows[-1] + BBOX_SHIFT)], np.float64)


def _mean(vp, index: int, mask: np.ndarray) -> float:
    """Mean normalized intensity (0–255) of slice ``index`` inside ``mask``."""
    return float(vp.slice_image(index)[mask].mean())


def grow_box(box: np.ndarray, margin: float, ratio: float, clip, hw) -> np.ndarray:
    """Box + ``margin + ratio × side`` on every side, kept inside ``clip`` (a 3D box's x, y) and the slice."""
    h, w = hw
    mx, my = margin + ratio * (box[2] - box[0] + 1), margin + ratio * (box[3] - box[1] + 1)
    out = box + np.array([-mx, -my, mx, my], np.float32)
    lo = np.array([0, 0, 0, 0], np.float32) if clip is None else np.array([clip[0], clip[1]] * 2, np.float32)
    hi = np.array([w - 1, h - 1] * 2, np.float32) if clip is None else np.array([clip[2], clip[3]] * 2, np.float32)
    out = np.clip(out, lo, hi)
    if out[2] <= out[0] or out[3] <= out[1]:  # a one-pixel-wide mask: keep a non-empty box
        out[2:] = np.maximum(out[2:], out[:2] + 1)
    return out


def _largest_component(masks: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, n = ndimage.label(masks)
    if n <= 1:
        return masks
    sizes = np.bincount(labels.ravel())[1:]
    return labels == 1 + int(np.argmax(sizes))
