"""Slice-by-slice propagation of a target through a volume: one walk, two rule objects.

From the middle user slice, :func:`propagate` walks up, then down; each slice's box comes from the
previous slice's mask. What a rule decides — the next box, which mask is kept, when a direction
ends, the pixel space of its box prompts — belongs to a rule object handed to the walk:

* :class:`PackageRules` (behind :meth:`medsam_lite.VolumePredictor.predict`; its defaults are
  :data:`medsam_lite.interactive.volume.DEFAULTS`): the previous mask's box grown by a margin
  (:func:`grow_box`, original pixels), a user box replaces it on its slice, and the walk in one
  direction stops (or jumps to the next user slice) where the target vanishes: too few pixels, a low
  predicted IoU, or a mean intensity that moved too far from the user's slice. On a slice with
  user clicks the target is decoded from its box plus the clicks
  (:func:`~.volprompts.decode_with_clicks`) and the walk goes on from that corrected mask; a
  clicked slice counts as a user slice.
* :class:`PublishedRules` (behind ``medsam-lite challenge``; :func:`propagate_published`): the
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

A rule object answers four questions (:class:`PropagationRules`): :meth:`~PropagationRules.resume`
(the trail the walk down starts from, given the start slice's mask), :meth:`~PropagationRules.next_box`
(the box of a slice without a user box, or ``None`` where the target vanished),
:meth:`~PropagationRules.keep` (whether a decoded mask is kept, updating the trail) and
:meth:`~PropagationRules.finish` (the whole result), plus :attr:`~PropagationRules.space`, the pixel
space of its box prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from ..errors import InputError
from ..model.geometry import box_from_mask, resize_slice
from .volprompts import decode_with_clicks

#: ``get_bbox256``'s widening of a propagated box in the published rules, model pixels.
BBOX_SHIFT = 3


@dataclass
class Trail:
    """What one direction of the walk carries from slice to slice.

    Attributes:
        prev: the previous slice's ``H×W`` bool mask the next box is made from (``None``: the target
            vanished, or nothing was segmented yet).
        ref: the mean normalized intensity (0–255) inside the last user slice's mask (``None``: none yet).
    """

    prev: np.ndarray | None = None
    ref: float | None = None


class PropagationRules:
    """The decisions of one propagation rule set; :func:`propagate` walks, a rule object decides.

    Attributes:
        space: the pixel space of the box prompts :meth:`next_box` makes and the user boxes
            (``keys``) the walk is given: ``"original"`` (slice pixels) or ``"model"`` (the decoder's own
            prompt, used as given); passed to :meth:`~medsam_lite.VolumePredictor.predict_slice`.
    """

    space = "original"

    def resume(self, vp, start: int, mask: np.ndarray) -> Trail:
        """The trail the walk down starts with, given the start slice's ``mask``."""
        raise NotImplementedError

    def next_box(self, vp, trail: Trail, start_box: np.ndarray):
        """The box of a slice without a user box (XYXY in :attr:`space`), or ``None``: the target vanished."""
        raise NotImplementedError

    def click_box(self):
        """The box of a clicked slice the walk reaches without one (``None``: the clicks alone)."""
        return None

    def keep(self, vp, z: int, mask: np.ndarray, score: float, trail: Trail, user: bool) -> bool:
        """Whether slice ``z``'s decoded ``mask`` (predicted IoU ``score``) is kept; updates ``trail``.
        ``user``: the user prompted that slice (a box or clicks)."""
        raise NotImplementedError

    def finish(self, masks: np.ndarray) -> np.ndarray:
        """The walk's ``n_slices×H×W`` bool masks → the result (default: as they are)."""
        return masks


class PackageRules(PropagationRules):
    """The package's rules (module docstring), with :meth:`~medsam_lite.VolumePredictor.predict`'s options.

    Args:
        margin, margin_ratio: the growth of the previous mask's box, original pixels + a share of its side.
        min_pixels, min_score: a propagated mask with fewer pixels, or a lower predicted IoU, ends the direction.
        max_intensity_change: the largest change (0–255) of the mean intensity inside the mask from
            the last user slice's (``None``: off).
        largest_component: keep only the largest 3D connected component.
        clip: an XYXY box (original pixels) the grown boxes stay inside (a 3D box's ``x, y``), or ``None``.

    Raises:
        InputError: an option that is not a number ≥ 0.
    """

    space = "original"

    def __init__(self, margin: float = 1.0, margin_ratio: float = 0.05, min_pixels: int = 10,
                 min_score: float = 0.0, max_intensity_change: float | None = None,
                 largest_component: bool = False, clip=None):
        for name, value in (("margin", margin), ("margin_ratio", margin_ratio), ("min_pixels", min_pixels),
                            ("max_intensity_change", 0 if max_intensity_change is None else max_intensity_change)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value >= 0:
                raise InputError(f"{name} must be a number ≥ 0, got {value!r}.")
        self.margin, self.margin_ratio, self.min_pixels, self.min_score = margin, margin_ratio, min_pixels, min_score
        self.change = np.inf if max_intensity_change is None else float(max_intensity_change)
        self.largest_component, self.clip = largest_component, clip

    def resume(self, vp, start, mask):
        return Trail(mask, _mean(vp, start, mask)) if mask.sum() >= self.min_pixels else Trail()

    def next_box(self, vp, trail, start_box):
        if trail.prev is None:
            return None
        return grow_box(box_from_mask(trail.prev), self.margin, self.margin_ratio, self.clip, vp.slice_hw)

    def click_box(self):  # a 3D box's x, y extent with the clicks, else the clicks alone
        return None if self.clip is None else np.asarray(self.clip, np.float32)

    def keep(self, vp, z, mask, score, trail, user):
        if user:  # the user's slice: always kept; the walk goes on from it if it holds the target
            trail.prev = mask if mask.sum() >= self.min_pixels else None
            trail.ref = _mean(vp, z, mask) if trail.prev is not None else trail.ref
            return True
        if (mask.sum() < self.min_pixels or score < self.min_score
                or (trail.ref is not None and abs(_mean(vp, z, mask) - trail.ref) > self.change)):
            trail.prev = None  # the target vanished
            return False
        trail.prev = mask
        return True

    def finish(self, masks):
        return _largest_component(masks) if self.largest_component else masks


class PublishedRules(PropagationRules):
    """The published script's rules (module docstring): model-pixel boxes from :func:`published_box`,
    every mask kept, never stopping early.

    Args:
        label: the target's label value: its previous mask is resized holding it (:func:`published_box`).
    """

    space = "model"

    def __init__(self, label: int = 1):
        self.label = label

    def resume(self, vp, start, mask):
        return Trail(mask)

    def next_box(self, vp, trail, start_box):
        return published_box(trail.prev, start_box, self.label, vp.model.geometry(vp.slice_hw))

    def keep(self, vp, z, mask, score, trail, user):
        trail.prev = mask  # the next box comes from it even when empty
        return True


def propagate(vp, keys: dict, z_range: tuple[int, int], rules: PropagationRules | None = None, *,
              clicks: dict | None = None, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Segment one target through ``vp`` (a :class:`~medsam_lite.VolumePredictor`) by ``rules``.

    Args:
        keys: user boxes, ``{slice index: XYXY}`` in ``rules.space`` (original slice pixels;
            :class:`PublishedRules`: one key, the middle slice, its box in **model** pixels).
        z_range: the inclusive slice range ``(lo, hi)`` the walk stays in.
        rules: a :class:`PackageRules` (default, with its defaults) or :class:`PublishedRules`.
        clicks: checked user clicks, ``{slice index: (points K×2 float32 XY original slice pixels,
            labels K float32)}`` (:func:`~.volprompts.check_slice_clicks`), or ``None``.
        progress: show a progress bar over the slices.

    Returns:
        ``(masks, scores)``: ``bool`` masks of the volume's shape, and the predicted IoU per slice
        (``n_slices`` float32, 0 where nothing was decoded).
    """
    rules = PackageRules() if rules is None else rules
    if not isinstance(rules, PropagationRules):
        raise InputError(f"rules must be a PackageRules or PublishedRules object, got {rules!r}.")
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
        trail = Trail() if step == 1 else rules.resume(vp, start, masks[start])
        while lo <= z <= hi:
            box_z = keys[z] if z in keys else rules.next_box(vp, trail, keys[start])
            if box_z is None and z in clicks:  # not reached by the walk
                box_z = rules.click_box()
            elif box_z is None:  # the target vanished: jump to the next user-given slice, if any
                ahead = [k for k in users if (k - z) * step > 0]
                if not ahead:
                    break
                z = min(ahead, key=lambda k: abs(k - z))
                continue
            if z in clicks:
                mask, score = decode_with_clicks(vp, z, box_z, *clicks[z])
            else:
                (mask,), (score,) = vp.predict_slice(z, box_z, space=rules.space)
            bar.update(1)
            scores[z] = score
            if rules.keep(vp, z, mask, score, trail, z in users):
                masks[z] = mask
            z += step
    bar.total = bar.n  # it stopped before the end of the range: show a full bar
    bar.close()
    return np.moveaxis(rules.finish(masks), 0, vp.axis), scores


def propagate_published(vp, box3d, label: int = 1, progress: bool = False) -> np.ndarray:
    """One target by the published 3D rules (:class:`PublishedRules`) → ``bool`` mask of ``vp``'s shape.

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
    return propagate(vp, {mid: key}, (lo, hi), PublishedRules(label), progress=progress)[0]


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
