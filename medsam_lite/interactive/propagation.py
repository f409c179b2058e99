"""Slice-by-slice propagation of a target through a volume (the walk behind
:meth:`medsam_lite.VolumePredictor.predict`; the rules are in :mod:`medsam_lite.interactive.volume`).

From the middle user slice, walk up, then down: each slice's box is the previous slice's mask box
grown by a margin (:func:`grow_box`), a user box replaces it on its slice, and the walk in one
direction stops (or jumps to the next user slice) where the target vanishes: too few pixels, a low
predicted IoU, or a mean intensity that moved too far from the user's slice. On a slice with
user clicks the target is decoded from its box plus the clicks (:func:`~.volprompts.decode_with_clicks`)
and the walk goes on from that corrected mask; a clicked slice counts as a user slice.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from ..model.geometry import box_from_mask
from .volprompts import decode_with_clicks


def propagate(vp, keys: dict, z_range: tuple[int, int], clip, *, margin: float, margin_ratio: float,
              min_pixels: int, min_score: float, change: float, largest_component: bool,
              progress: bool, clicks: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Segment one target through ``vp`` (a :class:`~medsam_lite.VolumePredictor`).

    Args:
        keys: user boxes, ``{slice index: XYXY}`` (original slice pixels).
        z_range: the inclusive slice range ``(lo, hi)`` the walk stays in.
        clip: an XYXY box the grown boxes stay inside (a 3D box's x, y extent), or ``None``.
        change: the largest change of mean intensity (0–255) inside the mask (``inf``: off).
        clicks: checked user clicks, ``{slice index: (points K×2 float32 XY original slice pixels,
            labels K float32)}`` (:func:`~.volprompts.check_slice_clicks`), or ``None``.
        margin, margin_ratio, min_pixels, min_score, largest_component, progress: as in
            :meth:`~medsam_lite.VolumePredictor.predict`.

    Returns:
        ``(masks, scores)``: ``bool`` masks of the volume's shape, and the predicted IoU per slice
        (``n_slices`` float32, 0 where nothing was decoded).
    """
    lo, hi = z_range
    h, w = vp.slice_hw
    masks = np.zeros((vp.n_slices, h, w), bool)
    scores = np.zeros(vp.n_slices, np.float32)
    clicks = clicks or {}
    users = set(keys) | set(clicks)  # slices whose mask the user prompted: always kept
    start = sorted(keys)[len(keys) // 2]
    bar = tqdm(total=hi - lo + 1, desc="slices", unit="slice", disable=not progress, leave=False)
    for step in (1, -1):
        z = start if step == 1 else start - 1
        prev = ref = None  # previous slice's mask; mean intensity in the last user slice's mask
        if step == -1 and masks[start].sum() >= min_pixels:
            prev, ref = masks[start], _mean(vp, start, masks[start])
        while lo <= z <= hi:
            if z in keys:
                box_z = keys[z]
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
                (mask,), (score,) = vp.predict_slice(z, box_z)
            bar.update(1)
            scores[z] = score
            if z in users:
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
