"""How a click's answer is combined with the mask it corrects: the click-combination rule.

A click is a **local statement**: "the target is here" (foreground, label 1) or "the target is not
here" (background, label 0). The decoder, asked again with the click, answers with a whole new mask,
and on scans it never trained on that answer also changes the mask far from the click (FACTS.md,
2026-12-06: a liver fixed by clicks on another patient's CT lost 0.06 Dice). A rule decides which
of the decoder's changes are kept; everything else stays as the previous mask had it.

The rule runs in one place, :func:`medsam_lite.model.inference.decode` (the seam every 2D prediction,
volume slice, annotation session and widget click goes through), whenever clicks come with a previous
mask (a ``mask_input``, or, with a box and no ``mask_input``, the box's own mask). A box-only prompt
never reaches it: its masks are the published decoder's, bit for bit.

Rules (strategy objects with one method, :meth:`accept`):

* :class:`LocalRule` (the default): for each click, the decoder's changes **in the click's direction**
  (added pixels for a foreground click, removed ones for a background click) are split into connected
  regions; only the region under the click (or the nearest within ``reach`` pixels) is kept, cut to a
  disc around the click as large as the previous mask (``radius``; optionally also no larger than
  ``edge`` × the click's distance to the previous mask's edge). A change elsewhere, or against a
  click's direction, is dropped; where the decoder changed neither the clicked pixel nor a neighbour,
  nothing changes.
* :class:`DecoderRule`: the decoder's answer everywhere (the behaviour before the rule existed).

Choose per model (``model.click_rule = DecoderRule()``) or per call (``decode(..., click_rule=…)``).
Pixels: every array is in the pixel space of the masks (original pixels, or a stored slice's);
points are XY (column, row) in that space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LocalRule", "DecoderRule", "DEFAULT_RULE", "rule_of", "combine"]


@dataclass(frozen=True)
class DecoderRule:
    """Keep the decoder's whole answer (no locality): what clicks did before the rule."""

    name = "decoder"

    def accept(self, previous: np.ndarray, proposed: np.ndarray, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``N×H×W`` bool: where the decoder's answer replaces the previous mask (here: everywhere)."""
        return np.ones(np.shape(proposed), bool)


@dataclass(frozen=True)
class LocalRule:
    """Keep only the decoder's change in the region under each click.

    For each click, the decoder's changes in the click's direction (additions for a foreground click,
    removals for a background one) are grouped into regions: changes closer than ``2 × gap`` pixels
    to each other are one region (8-connected after a dilation by ``gap``; a thin sliver along the
    border the decoder fills in pieces stays one region). The region of the changed pixel under the
    click, or of the nearest changed pixel within ``reach`` pixels, is kept (its changed pixels only); with ``radius`` it is also cut to a disc
    around the click. Every other change is dropped: the previous mask stays there.

    The defaults (``gap=0, reach=1.5, radius=1.0``: the 8-connected change touching the click, within
    the previous mask's equivalent radius of it) were chosen leave-one-domain-out on domains the click
    decoder never trained on (``bench/bench_clicks.py``; ``bench/RESULTS.md``, "Clicks by domain").
    ``edge=2`` bounds the harm on brain tissue and on the lesion domains' worst targets but keeps only a
    disc along a thin error strip (a click beside the mask extends it by ~2× its distance): not the
    default until measured on real organs (``bench/RESULTS.md``, "Brain tissue: why clicks do not gain").

    Args:
        gap: pixels (≥ 0): how far apart changes may lie and still be one region (0: 8-connected).
        reach: pixels: how far from the click the nearest changed pixel may lie.
        radius: ``None`` (no cut) or a factor ``f``: keep only changes within ``f × sqrt(area / π)`` of
            the click, ``area`` the previous mask's pixels (its equivalent radius; at least ``reach``).
        edge: ``None`` (no cut) or a factor ``k``: also keep only changes within ``k × d`` of the click,
            ``d`` the click's distance to the previous mask's edge on its side (a background click:
            to the nearest pixel outside the mask or the image edge; a foreground click: to the
            nearest mask pixel or the image edge) — a click ``d`` pixels deep in an error speaks for
            an error of about that size (at least ``reach``).
    """

    gap: int = 0
    reach: float = 1.5
    radius: float | None = 1.0
    edge: float | None = None
    name = "local"

    def accept(self, previous: np.ndarray, proposed: np.ndarray, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Where the decoder's answer replaces the previous mask.

        Args:
            previous, proposed: ``N×H×W`` bool masks (before the click; the decoder's answer).
            points: ``N×K×2`` XY clicks (column, row) in the masks' pixels.
            labels: ``N×K``: 1 foreground, 0 background.

        Returns:
            ``N×H×W`` bool; ``False`` keeps the previous mask's pixel.
        """
        previous, proposed = np.asarray(previous, bool), np.asarray(proposed, bool)
        out = np.zeros(proposed.shape, bool)
        h, w = proposed.shape[1:]
        for n in range(proposed.shape[0]):
            regions = {}
            for (x, y), label in zip(np.asarray(points[n], np.float64), np.asarray(labels[n])):
                label = int(label)
                if label not in regions:
                    change = (proposed[n] & ~previous[n]) if label == 1 else (previous[n] & ~proposed[n])
                    regions[label] = _regions(change, self.gap)
                if regions[label] is None:
                    continue
                (r0, c0), change, lab = regions[label]  # the changes' bounding window, its region ids
                col, row = min(max(int(round(x)), 0), w - 1), min(max(int(round(y)), 0), h - 1)
                k = self._region_at(np.where(change, lab, 0), row - r0, col - c0)
                if k == 0:
                    continue
                region = (lab == k) & change
                if self.radius is not None or self.edge is not None:
                    rad = np.inf if self.radius is None else max(self.radius * np.sqrt(previous[n].sum() / np.pi),
                                                                 self.reach)
                    if self.edge is not None:
                        rad = min(rad, max(self.edge * _edge_distance(previous[n], row, col, label), self.reach))
                    yy, xx = np.ogrid[r0:r0 + region.shape[0], c0:c0 + region.shape[1]]
                    region &= (yy - row) ** 2 + (xx - col) ** 2 <= rad * rad
                out[n, r0:r0 + region.shape[0], c0:c0 + region.shape[1]] |= region
        return out

    def _region_at(self, lab: np.ndarray, row: int, col: int) -> int:
        """The region id of the changed pixel at ``(row, col)`` (window coordinates, may lie outside
        the window), else of the nearest changed pixel within :attr:`reach` (0: none)."""
        if 0 <= row < lab.shape[0] and 0 <= col < lab.shape[1] and lab[row, col]:
            return int(lab[row, col])
        r = int(np.ceil(self.reach))
        if r <= 0:
            return 0
        r0, c0 = max(row - r, 0), max(col - r, 0)
        window = lab[r0:max(row + r + 1, 0), c0:max(col + r + 1, 0)]
        ys, xs = np.nonzero(window)
        if ys.size == 0:
            return 0
        d2 = (ys + r0 - row) ** 2 + (xs + c0 - col) ** 2
        i = int(np.argmin(d2))
        return int(window[ys[i], xs[i]]) if d2[i] <= self.reach ** 2 else 0


def _edge_distance(mask: np.ndarray, row: int, col: int, label: int) -> float:
    """Pixels from ``(row, col)`` to the nearest pixel of the other side of ``mask``'s edge (a
    background click: outside the mask; a foreground click: inside it), the image edge (one pixel
    beyond the last row / column) counting as an edge; 0 where the click lies on that other side."""
    side = mask if label == 0 else ~mask
    if not side[row, col]:
        return 0.0
    h, w = mask.shape
    best = float(min(row + 1, col + 1, h - row, w - col))  # the image edge
    r = int(np.ceil(best))  # nothing farther than the image edge can be nearer
    r0, c0 = max(row - r, 0), max(col - r, 0)
    window = np.ascontiguousarray(side[r0:row + r + 1, c0:col + r + 1]).view(np.uint8)
    if window.all():
        return best
    import cv2  # the window's distance to its nearest 0 (the other side); beyond it nothing is nearer

    return min(best, float(cv2.distanceTransform(window, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[row - r0, col - c0]))


def _regions(change: np.ndarray, gap: int):
    """The changes' bounding window: ``((row0, col0), change window, region ids)`` — changes closer
    than ``2 × gap`` pixels share an id (8-connected after a dilation by ``gap``) — or ``None``."""
    import cv2

    rows, cols = np.flatnonzero(change.any(axis=1)), np.flatnonzero(change.any(axis=0))
    if rows.size == 0:
        return None
    h, w = change.shape
    r0, r1 = max(rows[0] - gap, 0), min(rows[-1] + gap + 1, h)
    c0, c1 = max(cols[0] - gap, 0), min(cols[-1] + gap + 1, w)
    window = change[r0:r1, c0:c1]
    grown = np.ascontiguousarray(window).view(np.uint8)
    if gap:
        grown = cv2.dilate(grown, np.ones((2 * gap + 1, 2 * gap + 1), np.uint8))
    lab = cv2.connectedComponents(grown, connectivity=8, ltype=cv2.CV_32S)[1]
    return (int(r0), int(c0)), window, lab


#: The rule :func:`~medsam_lite.model.inference.decode` uses when neither the call nor the model names one.
DEFAULT_RULE = LocalRule()


def rule_of(model, rule=None):
    """The rule to use: ``rule`` if given, else ``model.click_rule`` if set, else :data:`DEFAULT_RULE`.

    Raises:
        InputError: something without an ``accept`` method.
    """
    rule = rule if rule is not None else (getattr(model, "click_rule", None) or DEFAULT_RULE)
    if not callable(getattr(rule, "accept", None)):
        from ..errors import InputError

        raise InputError(f"click_rule must be a rule of medsam_lite.model.clickrule (LocalRule(), DecoderRule()), "
                         f"got {type(rule).__name__}.")
    return rule


def combine(rule, previous: np.ndarray, proposed: np.ndarray, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``N×H×W`` float32 logits: the decoder's ``proposed`` logits where ``rule`` accepts them, the
    ``previous`` ones elsewhere (so the next click's mask input is the mask shown). Points ``N×K×2``
    XY and labels ``N×K`` in the logits' pixels."""
    accept = rule.accept(previous > 0, proposed > 0, points, labels)
    return np.where(accept, proposed, previous).astype(np.float32, copy=False)
