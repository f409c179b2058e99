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

Rules (strategy objects with :meth:`accept`; :class:`LocalRule` also :meth:`~LocalRule.decide`, which
can flip pixels itself):

* :class:`LocalRule` (the default's class): for each click, the decoder's changes **in the click's direction**
  (added pixels for a foreground click, removed ones for a background click) are split into connected
  regions; only the region under the click (or the nearest within ``reach`` pixels) is kept, cut to a
  disc around the click as large as the previous mask (``radius``; optionally also no larger than
  ``edge`` × the click's distance to the previous mask's edge). A change elsewhere, or against a
  click's direction, is dropped. **With the image** (``decode``'s ``image``, or the
  :class:`~medsam_lite.model.inference.Embedding`'s: :class:`~medsam_lite.Predictor` and the annotation
  session / widget keep it) each click the previous mask contradicts also has a **click region**
  (:func:`click_refs` / :func:`region_like`, shared with the 3D clicks of
  :mod:`medsam_lite.interactive.refine3d`): the connected pixels on the click's side of the previous
  mask whose intensity is closer to the clicked tissue's than to the other side's. The decoder's
  change is kept only inside it, and the rule applies the click itself there: the region cut to a
  disc of ``fill_edge ×`` the click's depth (issue 31: on unseen scans the decoder mostly does not flip
  the clicked pixel, so a rule that can only keep or drop its changes wasted the click). Without the
  image, or where the image cannot tell the two sides apart (:data:`MIN_CONTRAST`), the click acts
  as before: where the decoder changed neither the clicked pixel nor a neighbour, nothing changes.
  The default, :data:`DEFAULT_RULE` (:data:`TIGHT_FILL` = :data:`SMOOTHED` = :data:`BY_PATIENT` + ``box_bound`` +
  ``smooth=3``, its fill within ``2 ×`` the click's depth; + ``outer_ref``), caps each
  click's fill at a fifth of the mask, keeps the region within twice the click's depth of the mask's edge,
  uses a stricter tissue test and cuts the decoder's change to twice the click's depth where it ignored the
  click; a click whose error neither the mask nor the image can size (it touches the mask: a 1-px rim error;
  or the image cannot tell the sides apart) changes at most 5 % of the mask, its own pixel first and always
  (``unsure_cap``; chosen leave one patient out: ``bench/RESULTS.md``, "Clicks by patient" and "Clicks
  whose error cannot be sized"); and **with the user's box** (``decode`` hands the rule the prompt's boxes)
  each click keeps to its side of the box's edge — the box says the target lies inside it, so a foreground
  click inside the box adds nothing outside it and a background click outside it removes nothing inside it
  (issue 31, round 9: "Clicks that keep to the user's box"); and the click region reads the image through a 3×3
  median (``smooth``, :data:`SMOOTHED`; round 10, "Clicks on noisy scans": on a noisy scan single pixels no longer
  decide the tissue test); and a foreground click on a rim the mask missed all around (a lesion's dark rim, the box
  mask its core: the ring around the mask is the clicked tissue itself) reads the other side just beyond its band
  (``outer_ref``; round 11, "Clicks on a rim the mask missed all around"). A 3D walk's slice boxes, grown from a
  neighbouring slice's mask, do not bound its clicks (:func:`without_box`).
* :class:`DecoderRule`: the decoder's answer everywhere (the behaviour before the rule existed).

Choose per model (``model.click_rule = DecoderRule()``) or per call (``decode(..., click_rule=…)``).
Pixels: every array is in the pixel space of the masks (original pixels, or a stored slice's);
points are XY (column, row) in that space.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = ["LocalRule", "DecoderRule", "DEFAULT_RULE", "BY_PATIENT", "BOX_BOUND", "SMOOTHED", "TIGHT_FILL",
           "MIN_CONTRAST", "clicked_pixel", "click_refs", "region_like", "tissue_like", "rule_of", "without_box", "combine"]


MIN_CONTRAST = 8.0  # normalized intensity (0–255): below it the clicked tissue and the other side look alike


@dataclass(frozen=True)
class DecoderRule:
    """Keep the decoder's whole answer (no locality): what clicks did before the rule."""

    name = "decoder"

    def accept(self, previous: np.ndarray, proposed: np.ndarray, points: np.ndarray, labels: np.ndarray,
               image: np.ndarray | None = None, boxes: np.ndarray | None = None) -> np.ndarray:
        """``N×H×W`` bool: where the decoder's answer replaces the previous mask (here: everywhere; ``image``
        and ``boxes`` are not used)."""
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
    default (``bench/RESULTS.md``, "Brain tissue: why clicks do not gain").

    With an image (:meth:`decide`): the click region and the rule's own correction; ``fill="region",
    fill_edge=3, always=True`` (the region within 3× the click's depth, applied on every click the
    previous mask contradicts) was chosen leave-one-domain-out on the four synthetic unseen domains
    (``bench/RESULTS.md``, "Clicks that read the image"). :data:`BY_PATIENT` (``image_edge=2,
    edge_on="ignored", fill_cap=0.2, margin=0.25, min_contrast=4, unsure_cap=0.05, band=2``) is the rule
    chosen leave one *patient* out (``bench/RESULTS.md``, "Clicks by patient" and "Clicks whose error
    cannot be sized": better on both held-out patients) and is the base of :data:`DEFAULT_RULE` (with
    ``box_bound``, ``smooth=3``, ``fill_edge=2`` and ``outer_ref``), the rule ``decode`` uses when none is named (the class's own defaults stay
    the synthetic-domain choice). ``use_image=False`` gives the masks-only rule above whatever the image.

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
        use_image: read the image when one is given (``False``: the masks-only rule).
        fill: what the rule flips itself for a click the previous mask contradicts: ``"region"`` (the
            click region within ``fill_edge × d`` of the click), ``"disk"`` (the largest disc around
            the click inside the region, at least ``least`` px) or ``None`` (nothing: only the
            decoder's change, inside the region).
        fill_edge: ``"region"``'s radius factor (× the click's depth ``d``).
        region_edge: ``None`` or a factor: the click region also within ``region_edge × d`` (it is
            always within ``radius``'s disc).
        least: ``"disk"``'s smallest radius, pixels.
        always: fill on every such click (``False``: only where the decoder left the clicked pixel
            on the wrong side).
        image_edge: with the image: ``edge``'s factor for the decoder's change (``edge`` is the
            masks-only rule's; ``None``: no cut).
        edge_on: where ``image_edge`` cuts the decoder's change: ``"all"`` (every click), ``"ignored"``
            (only clicks whose pixel the decoder left on the wrong side, or where the image cannot
            tell the sides apart: where the decoder flipped the clicked pixel, its change inside the
            click region is kept whole, e.g. a thin missed strip) or ``"background"`` (``"ignored"``'s
            clicks and every background click: a removal the decoder made around a background click is
            kept only as far from it as the rule's own fill may reach — along the mask's edge the click
            region can run far, over tissue that truly looks like the clicked one, such as a tumour's
            thin tail beside the brain it is as dark as; a foreground click's added strip is kept whole).
        fill_cap: ``None`` or a factor ``c``: each click's fill keeps at most ``c ×`` the previous
            mask's pixels (at least one), the ones nearest the click.
        min_contrast: :func:`click_refs`' threshold (normalized intensity, 0–255): below it the image
            cannot tell the clicked tissue from the other side (:data:`MIN_CONTRAST`).
        trust_flip: where the decoder flipped the clicked pixel, keep its change (the masks-only
            rule's) without confining it to the click region.
        cap_change: with ``fill_cap``, the cap also bounds the decoder's change the click keeps (its
            kept change and its fill together, nearest the click first).
        margin: the click region's tissue test (:func:`region_like`): a pixel joins it only when it is
            closer to the clicked tissue than to the other side by ``margin ×`` their difference.
        unsure_cap: ``None`` or a factor ``u`` (with the image only): a click whose error neither the
            mask nor the image can size — it touches the previous mask (depth < 2 px: a 1-px rim error,
            where one wrong pixel of a 20-px vessel costs 0.05 Dice), or the image cannot tell the
            clicked tissue from the other side (a background click 12 px deep in a liver mask says
            nothing of how large the hole is) — changes at most ``max(1, u ×`` the previous mask's
            pixels``)``, the clicked pixel first, then the kept change and the fill nearest it; and the
            clicked pixel itself always takes the click's side. An earlier click the previous mask
            already agrees with changes nothing.
        band: ``None`` or a factor ``b``: the click region only ``b × d`` px (+ 0.5) deep into the click's
            side, measured from the previous mask's edge (the robot clicks the middle of an error, so a
            click ``d`` deep speaks for an error about ``2 d`` thick along the edge, not for tissue deeper
            than that).
        confusion: ``None`` or a share ``t`` (with the image): the image can tell the clicked tissue from
            the other side only when the tissue test (:func:`tissue_like`) takes at most ``t`` of the other
            side's own pixels (the ones :func:`click_refs` read) for the clicked tissue; above it the click
            has no region, as when the two differ by less than ``min_contrast`` (the test is measured on the
            pixels whose side is known: two sides whose medians differ but whose intensities overlap — a
            textured tumour and the fringe beside it, bone beside bone — give a region that leaks). Not the
            default: tried leave one patient out in round 6, it halved the gain for little change in the worst
            target (``bench/RESULTS.md``, "Clicks on real patients found this round").
        box_bound: with the target's box (``decide``'s ``boxes``: the user's box, the statement "the target lies
            inside it" that MedSAM's prompt makes), a click keeps to its own side of the box's edge where the box
            and the click agree: a foreground click inside the box adds nothing outside it, a background click
            outside the box removes nothing inside it. A foreground click outside the box (the user says the
            target goes beyond the box) and a background click inside it act as without the box. Without a box
            (clicks alone) it does nothing.
        box_margin: pixels (≥ 0): the box grown by this much on every side for ``box_bound`` (a pixel is inside
            when its centre lies within ``[x0 − m, x1 + m] × [y0 − m, y1 + m]``).
        smooth: ``0`` or an odd median size ``k`` (3, 5): the click region reads the image through a ``k × k`` median
            filter (the clicked tissue, the other side and every pixel's tissue test). On a noisy scan (low-dose CT,
            a fast MR sequence) single pixels decide the tissue test: the clicked tissue's noisy pixels fail it (the
            region is full of holes, a click removes a sieve) and the other side's pass it (the region leaks through
            them); the median keeps edges and removes that noise, and rounds pixel-sharp corners.
        outer_ref: with ``band``, a foreground click whose clicked tissue the 3-px ring around the previous mask cannot
            be told from (:func:`click_refs`: they differ by less than ``min_contrast``) reads the other side from the
            pixels just beyond its band instead (``b × d + 0.5`` to ``b × d + 3.5`` px from the mask): where the mask
            missed a rim all around the target (a lesion's dark or enhancing rim, the box mask its core only), the
            ring around the mask is that rim — the clicked tissue itself — and the tissue beyond the target lies
            past the error the click speaks for. Without it such a click has no region and changes only its pixel.
    """

    gap: int = 0
    reach: float = 1.5
    radius: float | None = 1.0
    edge: float | None = None
    use_image: bool = True
    fill: str | None = "region"
    fill_edge: float = 3.0
    region_edge: float | None = None
    least: float = 1.0
    always: bool = True
    image_edge: float | None = None
    edge_on: str = "all"
    fill_cap: float | None = None
    margin: float = 0.0
    cap_change: bool = False
    trust_flip: bool = False
    min_contrast: float = MIN_CONTRAST
    unsure_cap: float | None = None
    band: float | None = None
    confusion: float | None = None
    box_bound: bool = False
    box_margin: float = 0.0
    smooth: int = 0
    outer_ref: bool = False
    name = "local"

    def __post_init__(self):
        """Check the settings when the rule is made, not at the first click.

        Raises:
            InputError: a negative or non-finite number, a non-integer ``gap``, an unknown ``fill`` or ``edge_on``.
        """
        from ..errors import InputError

        bad = []
        if isinstance(self.gap, bool) or not isinstance(self.gap, (int, np.integer)) or self.gap < 0:
            bad.append(f"gap={self.gap!r} (an integer >= 0)")
        for name in ("reach", "fill_edge", "least", "margin", "min_contrast", "box_margin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value) or value < 0:
                bad.append(f"{name}={value!r} (a finite number >= 0)")
        for name in ("radius", "edge", "region_edge", "image_edge", "fill_cap", "unsure_cap", "band", "confusion"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                                      or not np.isfinite(value) or value < 0):
                bad.append(f"{name}={value!r} (None or a finite number >= 0)")
        if self.fill not in ("region", "disk", None):
            bad.append(f"fill={self.fill!r} ('region', 'disk' or None)")
        if isinstance(self.smooth, bool) or self.smooth not in (0, 3, 5):
            bad.append(f"smooth={self.smooth!r} (0, 3 or 5)")
        if not isinstance(self.outer_ref, (bool, np.bool_)):
            bad.append(f"outer_ref={self.outer_ref!r} (True or False)")
        if self.edge_on not in ("all", "ignored", "background"):
            bad.append(f"edge_on={self.edge_on!r} ('all', 'ignored' or 'background')")
        if bad:
            raise InputError(f"LocalRule: {'; '.join(bad)}. See medsam_lite.model.clickrule.LocalRule for what each "
                             f"setting means (DEFAULT_RULE is the shipped one).")

    def accept(self, previous: np.ndarray, proposed: np.ndarray, points: np.ndarray, labels: np.ndarray,
               image: np.ndarray | None = None, boxes: np.ndarray | None = None) -> np.ndarray:
        """Where the decoder's answer replaces the previous mask (the first half of :meth:`decide`).

        Args:
            previous, proposed: ``N×H×W`` bool masks (before the click; the decoder's answer).
            points: ``N×K×2`` XY clicks (column, row) in the masks' pixels.
            labels: ``N×K``: 1 foreground, 0 background.
            image: ``None`` or the image in the masks' pixels (``H×W`` or ``H×W×3``, uint8 normalized).
            boxes: ``None`` or the targets' ``N×4`` XYXY boxes in the masks' pixels (for ``box_bound``).

        Returns:
            ``N×H×W`` bool; ``False`` keeps the previous mask's pixel.
        """
        return self.decide(previous, proposed, points, labels, image, boxes)[0]

    def decide(self, previous: np.ndarray, proposed: np.ndarray, points: np.ndarray, labels: np.ndarray,
               image: np.ndarray | None = None, boxes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Where the decoder's answer is kept, and where the rule itself flips the previous mask.

        Without ``image`` (or with ``use_image=False``) the second mask is empty and the first is the
        rule described in the class docstring. With it, each click that the previous mask contradicts
        (a foreground click outside it, a background click inside it) also gets its **click region**
        (:func:`click_refs`, :func:`region_like`: the connected pixels on the click's side of the
        previous mask whose intensity is closer to the clicked tissue's than to the other side's): the
        decoder's change is kept only inside it, and the rule flips ``fill`` of it (``"region"``: the
        region cut to ``fill_edge ×`` the click's depth; ``"disk"``: the largest disc around the click
        inside the region, at least ``least`` px; with ``fill_cap``, at most that share of the
        previous mask, nearest the click) — on every such click with ``always``, else only where the
        decoder did not flip the clicked pixel. A background click never flips more than half of the
        previous mask. When the image cannot tell the two sides apart there is no region and the click
        acts as without an image, except that with ``unsure_cap`` a click whose error cannot be sized
        (it touches the mask, or there is no region) changes at most that share of the mask, its own
        pixel first and always, and a click the previous mask already agrees with changes nothing.
        Without the image ``unsure_cap`` does nothing (the masks-only rule, which the 3D clicks of
        :mod:`medsam_lite.interactive.refine3d` build on, is as it was).

        Args: as :meth:`accept`.

        Returns:
            ``(accept, flip)``: ``N×H×W`` bool each; ``flip`` pixels take the click's side (they lie
            outside the previous mask for a foreground click, inside it for a background one).
        """
        previous, proposed = np.asarray(previous, bool), np.asarray(proposed, bool)
        out = np.zeros(proposed.shape, bool)
        flip = np.zeros(proposed.shape, bool)
        h, w = proposed.shape[1:]
        use = image is not None and self.use_image
        for n in range(proposed.shape[0]):
            prev, regions, area = previous[n], {}, int(np.count_nonzero(previous[n]))  # area: prev's pixels
            for (x, y), label in zip(np.asarray(points[n], np.float64), np.asarray(labels[n])):
                label = int(label)
                row, col = clicked_pixel(x, y, (h, w))
                depth = _edge_distance(prev, row, col, label) if use else None  # once per click (the masks-only
                where = self._image_region(prev, image, row, col, label, area, depth) if use else None  # rule: lazily)
                unsure = self._unsure(where, depth, use, area)
                if unsure == 0:  # the mask already agrees with the click: it asks for nothing more
                    continue
                kept = self._kept_change(prev, proposed[n], regions, row, col, label, where, area, use, depth)
                fill = None
                if where is not None and self.fill and (self.always or proposed[n][row, col] != bool(label)):
                    fill = self._fill(*where, row, col)
                side = self._box_side(boxes, n, row, col, label, (h, w)) if self.box_bound else None
                if side is not None:  # the click keeps to its side of the box's edge
                    if kept is not None:
                        (r0, c0), part = kept
                        kept = (r0, c0), part & side[r0:r0 + part.shape[0], c0:c0 + part.shape[1]]
                    if fill is not None:
                        fill = fill & side
                cap = None if self.fill_cap is None else max(int(self.fill_cap * area), 1)
                if unsure is not None:
                    cap = unsure if cap is None else min(cap, unsure)
                    if prev[row, col] != bool(label):  # the clicked pixel takes the click's side
                        fill = np.zeros(prev.shape, bool) if fill is None else fill.copy()
                        fill[row, col] = True
                if unsure is not None or (self.cap_change and self.fill_cap is not None):
                    whole = np.zeros(prev.shape, bool)  # the kept change and the fill together: at most
                    if kept is not None:                # the cap, nearest the click first
                        (r0, c0), part = kept
                        whole[r0:r0 + part.shape[0], c0:c0 + part.shape[1]] = part
                    both = _nearest(whole if fill is None else whole | fill, row, col, cap)
                    out[n] |= whole & both
                    fill = None if fill is None else fill & both
                elif kept is not None:
                    (r0, c0), part = kept
                    out[n, r0:r0 + part.shape[0], c0:c0 + part.shape[1]] |= part
                if fill is not None:
                    if cap is not None:
                        fill = _nearest(fill, row, col, cap)
                    if label == 0 and (flip[n] & prev | fill).sum() * 2 > area:
                        continue  # a background click never takes most of the target away
                    flip[n] |= fill
        return out, flip

    def _unsure(self, where, depth: float | None, use: bool, area: int):
        """With ``unsure_cap`` and the image (``use``): ``0`` where the previous mask already agrees with the
        click (``depth`` 0: it asks for nothing more), the click's cap in pixels where its error cannot be
        sized (it touches the mask, or the image cannot tell the sides apart: ``where`` is ``None``), else
        ``None`` (no cap). Without the image: ``None`` (the masks-only rule is as it was)."""
        if self.unsure_cap is None or not use:
            return None
        if depth <= 0:
            return 0
        return max(int(self.unsure_cap * area), 1) if depth < 2 or where is None else None

    def _box_side(self, boxes, n: int, row: int, col: int, label: int, hw: tuple):
        """``H×W`` bool: the pixels a click may change under ``box_bound`` — inside target ``n``'s box (grown
        by ``box_margin``) for a foreground click inside it, outside it for a background click outside it —
        or ``None`` (no box, or a click the box does not bound: foreground outside, background inside)."""
        if boxes is None:
            return None
        x0, y0, x1, y1 = np.asarray(boxes, np.float64).reshape(-1, 4)[n]
        m = self.box_margin
        h, w = hw
        cols, rows = np.arange(w), np.arange(h)
        in_cols, in_rows = (cols >= x0 - m) & (cols <= x1 + m), (rows >= y0 - m) & (rows <= y1 + m)
        inside = in_rows[:, None] & in_cols[None, :]
        if label == 1 and inside[row, col]:
            return inside
        if label == 0 and not inside[row, col]:
            return ~inside
        return None

    def _kept_change(self, mask: np.ndarray, proposed: np.ndarray, regions: dict, row: int, col: int,
                     label: int, where, area: int, use: bool, depth: float | None = None):
        """The decoder's change the click keeps, before any cap: ``((row0, col0), window bool)`` or ``None``.

        The change in the click's direction (``regions`` caches its region ids per label) whose region
        holds the click or the nearest changed pixel within :attr:`reach`; cut to the disc of
        :attr:`radius` × the mask's equivalent radius and, with an edge factor, of that factor × the
        click's depth (``depth``, :func:`_edge_distance`: computed here when ``None``); with the image, only
        inside the click region ``where``.
        """
        if label not in regions:
            change = (proposed & ~mask) if label == 1 else (mask & ~proposed)
            regions[label] = _regions(change, self.gap)
        if regions[label] is None:
            return None
        (r0, c0), change, lab = regions[label]  # the changes' bounding window, its region ids
        k = self._region_at(np.where(change, lab, 0), row - r0, col - c0)
        if not k:
            return None
        region = (lab == k) & change
        edge = self.image_edge if use else self.edge  # the decoder change's cut (× the click's depth)
        if self.radius is not None or edge is not None:
            rad = np.inf if self.radius is None else max(self.radius * np.sqrt(area / np.pi), self.reach)
            if edge is not None and (not use or self.edge_on == "all" or where is None
                                     or (self.edge_on == "background" and label == 0)
                                     or proposed[row, col] != bool(label)):
                depth = _edge_distance(mask, row, col, label) if depth is None else depth
                rad = min(rad, max(edge * depth, self.reach))
            yy, xx = np.ogrid[r0:r0 + region.shape[0], c0:c0 + region.shape[1]]
            region &= (yy - row) ** 2 + (xx - col) ** 2 <= rad * rad
        if where is not None and not (self.trust_flip and proposed[row, col] == bool(label)):
            region &= where[0][r0:r0 + region.shape[0], c0:c0 + region.shape[1]]  # only in the click region
        return (r0, c0), region

    def _image_region(self, mask: np.ndarray, image: np.ndarray, row: int, col: int, label: int,
                      area: int | None = None, d: float | None = None):
        """``(region H×W bool, depth d)`` of a click the previous ``mask`` contradicts, or ``None``
        (the mask agrees with the click, or the image cannot tell the two sides apart).

        The region is :func:`region_like` in a window around the click, cut to the previous mask's
        equivalent radius (``radius``) and, with ``region_edge``, to ``region_edge × d`` (``d``: the
        click's distance to the mask's edge, :func:`_edge_distance`; computed when not given). The other
        side's intensity: a foreground click — a 3-px ring around the mask; a background click — the mask;
        both in a window of ``max(2 f, f + 8)`` px around the click, ``f = fill_edge × d``, and at least
        ``f`` away from it (the error the click sits in is not the other side).
        """
        import cv2

        d = _edge_distance(mask, row, col, label) if d is None else d  # the click's depth
        if d <= 0:
            return None
        h, w = mask.shape
        area = int(np.count_nonzero(mask)) if area is None else area  # the mask's pixels
        bound = np.inf if self.radius is None else max(self.radius * np.sqrt(area / np.pi), self.reach)
        if self.region_edge is not None:
            bound = min(bound, max(self.region_edge * d, self.reach))
        near = max(self.fill_edge * d, self.reach)
        half = int(np.ceil(min(max(bound, max(2 * near, near + 8)), max(h, w)))) + 4
        r0, r1, c0, c1 = max(row - half, 0), min(row + half + 1, h), max(col - half, 0), min(col + half + 1, w)
        window = mask[r0:r1, c0:c1]
        rr, cc = row - r0, col - c0
        ints = np.int32 if max(r1 - r0, c1 - c0) < 30000 else np.int64  # squared distances < 2³¹: exact in int32
        yy, xx = np.arange(r1 - r0, dtype=ints)[:, None], np.arange(c1 - c0, dtype=ints)
        dist2 = (yy - rr) ** 2 + (xx - cc) ** 2
        far = dist2 > near * near
        if label == 1:
            ring = cv2.dilate(np.ascontiguousarray(window).view(np.uint8), np.ones((7, 7), np.uint8)).view(bool) & ~window
            other = ring & far if (ring & far).any() else ring
        else:
            other = window & far
        if not other.any():
            return None
        gray = image[r0:r1, c0:c1]
        if gray.ndim == 3:  # luminance (a grey scan's three equal channels: itself)
            gray = cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_RGB2GRAY) if gray.shape[2] == 3 else gray[..., 0]
        if self.smooth:
            kind = np.uint8 if gray.dtype == np.uint8 else np.float32  # the two types medianBlur takes at 3 and 5
            gray = cv2.medianBlur(np.ascontiguousarray(gray, kind), self.smooth)
        side = ~window if label == 1 else window
        deep = None if self.band is None else self.band * d + 0.5  # how deep into its side the click speaks for
        others = gray[other]
        refs = click_refs(gray, rr, cc, others, self.min_contrast)  # uint8: the float32 answers, faster
        if refs is None and label == 1 and self.outer_ref and deep is not None:
            # the ring around the mask is the clicked tissue: the other side lies beyond the click's band, 3 px of it
            out = cv2.distanceTransform(np.ascontiguousarray(side).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            others = gray[(out > deep) & (out <= deep + 3)]
            refs = click_refs(gray, rr, cc, others, self.min_contrast)
        if refs is None:
            return None
        if self.confusion is not None and np.count_nonzero(tissue_like(others, refs, self.margin)) > self.confusion * others.size:
            return None  # the test takes too much of the other side for the clicked tissue: it cannot tell them apart
        like = region_like(gray, side, (rr, cc), refs, self.margin) & (dist2 <= bound * bound)
        if deep is not None:  # only as deep into the click's side as the click speaks for
            like &= _within(side, like, deep)
        region = np.zeros(mask.shape, bool)
        region[r0:r1, c0:c1] = like
        return region, d

    def _fill(self, region: np.ndarray, d: float, row: int, col: int) -> np.ndarray:
        """The pixels the rule flips itself for a click the decoder ignored (``fill``)."""
        if self.fill == "region":
            rad = max(self.fill_edge * d, self.reach)
        else:  # "disk": the largest disc around the click inside its region
            import cv2

            r = int(np.ceil(d)) + 2
            r0, c0 = max(row - r, 0), max(col - r, 0)
            window = np.pad(region[r0:row + r + 1, c0:col + r + 1], 1).view(np.uint8)
            depth = float(cv2.distanceTransform(window, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[row - r0 + 1, col - c0 + 1])
            rad = max(depth, self.least)
        h, w = region.shape
        r = int(np.floor(rad))  # the disc lies within r rows / columns of the click
        r0, r1, c0, c1 = max(row - r, 0), min(row + r + 1, h), max(col - r, 0), min(col + r + 1, w)
        yy, xx = np.ogrid[r0:r1, c0:c1]
        out = np.zeros_like(region)
        out[r0:r1, c0:c1] = region[r0:r1, c0:c1] & ((yy - row) ** 2 + (xx - col) ** 2 <= rad * rad)
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


def clicked_pixel(x: float, y: float, hw: tuple) -> tuple[int, int]:
    """``(row, col)`` of the pixel a click at XY ``(x, y)`` (column, row; in the masks' pixels) falls on:
    rounded to the nearest pixel and kept inside an ``hw = (H, W)`` image."""
    h, w = hw
    return min(max(int(round(y)), 0), h - 1), min(max(int(round(x)), 0), w - 1)


def click_refs(image: np.ndarray, row: int, col: int, other: np.ndarray, min_contrast: float = MIN_CONTRAST):
    """``(clicked tissue's intensity, the other side's)`` or ``None`` when they differ by less than
    :data:`MIN_CONTRAST` (the image cannot tell them apart), or there is no other side.

    Args:
        image: ``H×W`` float32 or uint8, normalized intensity (0–255), the click's slice.
        row, col: the clicked pixel; its tissue is the 5×5 median around it.
        other: the other side's intensities (any shape): their median.
        min_contrast: the smallest difference that tells the two apart.
    """
    if other.size == 0:
        return None
    click_ref = float(np.median(image[max(0, row - 2):row + 3, max(0, col - 2):col + 3]))
    other_ref = float(np.median(other))
    if abs(click_ref - other_ref) < min_contrast:
        return None
    return click_ref, other_ref


def region_like(image: np.ndarray, side: np.ndarray, at: tuple, refs: tuple, margin: float = 0.0) -> np.ndarray:
    """The click's region, n-D (a 2D slice or a 3D stack): the pixels of ``side`` (the click's side of
    the previous mask) whose intensity is closer to ``refs[0]`` (the clicked tissue) than to ``refs[1]``
    (the other side), connected to the click ``at`` (an index; fully connected: 8 in 2D, 26 in 3D).

    Args:
        image: float32 normalized intensity (or uint8: the same test, made once per grey value), any number
            of dimensions.
        side: bool, ``image``'s shape.
        at: the clicked pixel's index.
        refs: :func:`click_refs`' answer.
        margin: a stricter test (≥ 0): closer to the clicked tissue by ``margin × |refs[0] − refs[1]|``.

    Returns:
        bool, ``image``'s shape (the clicked pixel always in it).
    """
    like = side & tissue_like(np.asarray(image), refs, margin)
    like[tuple(at)] = True
    if like.ndim == 2:  # the same component as scipy's, in a quarter of the time (a click's region: every click)
        import cv2

        labels = cv2.connectedComponents(like.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)[1]
    else:
        from scipy import ndimage

        labels = ndimage.label(like, structure=np.ones((3,) * image.ndim, bool))[0]
    return labels == labels[tuple(at)]


def tissue_like(values: np.ndarray, refs: tuple, margin: float = 0.0) -> np.ndarray:
    """The click region's tissue test, per value: closer to ``refs[0]`` (the clicked tissue) than to
    ``refs[1]`` (the other side) by ``margin × |refs[0] − refs[1]|`` (bool, ``values``' shape).

    Args:
        values: float32 normalized intensities (0–255), or uint8 (the test made once per grey value in
            float32, then looked up: the same answers).
        refs: :func:`click_refs`' answer.
        margin: ≥ 0.
    """
    click_ref, other_ref = refs
    if values.dtype == np.uint8:
        lut = np.arange(256, dtype=np.float32)
        return (np.abs(lut - click_ref) + margin * abs(click_ref - other_ref) <= np.abs(lut - other_ref))[values]
    return np.abs(values - click_ref) + margin * abs(click_ref - other_ref) <= np.abs(values - other_ref)


def _within(side: np.ndarray, where: np.ndarray, t: float) -> np.ndarray:
    """``side``'s pixels at most ``t`` px (Euclidean) from its nearest pixel outside ``side`` (bool, same
    shape), computed only over ``where``'s bounding box (grown by ``t``): the pixels a nearest outside pixel
    ``t`` or less away can be found from; elsewhere ``False``. The array's border is not an outside."""
    import cv2

    out = np.zeros(side.shape, bool)
    rows, cols = np.flatnonzero(where.any(axis=1)), np.flatnonzero(where.any(axis=0))
    if rows.size == 0:
        return out
    g = int(np.ceil(t)) + 1
    r0, r1 = max(rows[0] - g, 0), min(rows[-1] + g + 1, side.shape[0])
    c0, c1 = max(cols[0] - g, 0), min(cols[-1] + g + 1, side.shape[1])
    crop = np.ascontiguousarray(side[r0:r1, c0:c1]).view(np.uint8)
    if crop.all():  # no outside pixel near: nothing is within t
        return out
    out[r0:r1, c0:c1] = cv2.distanceTransform(crop, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= t
    return out


def _nearest(mask: np.ndarray, row: int, col: int, k: int) -> np.ndarray:
    """The ``k`` pixels of ``mask`` nearest ``(row, col)`` (ties: row-major order), all if it has fewer."""
    if np.count_nonzero(mask) <= k:
        return mask
    r = int(np.ceil(2 * np.sqrt(k / np.pi))) + 2  # first in a window around the click: the same k pixels when
    r0, c0 = max(row - r, 0), max(col - r, 0)      # the k-th nearest lies within the window's inscribed disc
    ys, xs = np.nonzero(mask[r0:row + r + 1, c0:col + r + 1])
    ys, xs = ys + r0, xs + c0
    d2 = (ys - row) ** 2 + (xs - col) ** 2
    if ys.size >= k and np.partition(d2, k - 1)[k - 1] <= r * r:
        keep = np.argsort(d2, kind="stable")[:k]
        out = np.zeros_like(mask)
        out[ys[keep], xs[keep]] = True
        return out
    ys, xs = np.nonzero(mask)
    keep = np.argsort((ys - row) ** 2 + (xs - col) ** 2, kind="stable")[:k]
    out = np.zeros_like(mask)
    out[ys[keep], xs[keep]] = True
    return out


def _edge_distance(mask: np.ndarray, row: int, col: int, label: int) -> float:
    """Pixels from ``(row, col)`` to the nearest pixel of the other side of ``mask``'s edge (a
    background click: outside the mask; a foreground click: inside it), the image edge (one pixel
    beyond the last row / column) counting as an edge; 0 where the click lies on that other side."""
    side = mask if label == 0 else ~mask
    if not side[row, col]:
        return 0.0
    h, w = mask.shape
    best = float(min(row + 1, col + 1, h - row, w - col))  # the image edge
    import cv2

    full = int(np.ceil(best))  # nothing farther than the image edge can be nearer
    for r in (16, 64, full):  # a small window first: a nearest 0 within r of the click is the nearest anywhere
        r = min(r, full)
        r0, c0 = max(row - r, 0), max(col - r, 0)
        window = np.ascontiguousarray(side[r0:row + r + 1, c0:col + r + 1]).view(np.uint8)
        if window.all():
            if r == full:
                return best
            continue
        # the window's distance to its nearest 0 (the other side)
        d = float(cv2.distanceTransform(window, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[row - r0, col - c0])
        if d <= r or r == full:
            return min(best, d)
    return best


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


#: The rule chosen leave one patient out (issue 31, rounds 2–3; ``bench/RESULTS.md``, "Clicks by patient",
#: "Clicks whose error cannot be sized"): the image region (like :class:`LocalRule`'s defaults) within twice
#: the click's depth of the mask's edge, each click's fill capped at a fifth of the previous mask, a stricter
#: tissue test (``margin=0.25``, ``min_contrast=4``), the decoder's change cut to twice the click's depth
#: where the decoder ignored the click, and an unsure click (touching the mask, or tissue the image cannot
#: tell apart) changing at most 5 % of the mask, its own pixel first. On another patient's organs (rule
#: chosen on the other patient's organs + the synthetic unseen domains) +0.076 … +0.084 over targets with
#: box Dice < 0.9 (round 2's rule: +0.057 … +0.061; ``LocalRule()``'s defaults +0.039 … +0.049; the
#: masks-only rule +0.014 … +0.024).
BY_PATIENT = LocalRule(image_edge=2.0, edge_on="ignored", fill_cap=0.2, margin=0.25, min_contrast=4.0, unsure_cap=0.05,
                       band=2.0)

#: :data:`BY_PATIENT` with each click kept to its side of the user's box (issue 31, round 9: ``box_bound``; chosen leave
#: one patient out against :data:`BY_PATIENT`, the quarter cap and the quarter cap with the box, on both patients' organ
#: families with both decoders + the synthetic domains; ``bench/RESULTS.md``, "Clicks that keep to the user's box").
BOX_BOUND = replace(BY_PATIENT, box_bound=True)

#: :data:`BOX_BOUND` reading the image through a 3×3 median (issue 31, round 10: ``smooth=3``; chosen leave one patient
#: out against :data:`BOX_BOUND` on both patients' organ families — with round 10's organs in pieces, the vertebra's
#: bone in pieces and the same scans with noise as a low-dose CT's — with both decoders + the synthetic domains;
#: ``bench/RESULTS.md``, "Clicks on noisy scans").
SMOOTHED = replace(BOX_BOUND, smooth=3)

#: :data:`SMOOTHED` with the rule's own fill within twice the click's depth instead of three times (``fill_edge=2``;
#: round 10, chosen leave one patient out against :data:`BOX_BOUND` and :data:`SMOOTHED` the same way: ``bench/RESULTS.md``,
#: "A tighter fill"; the default in round 10).
TIGHT_FILL = replace(SMOOTHED, fill_edge=2.0)

#: The rule :func:`~medsam_lite.model.inference.decode` uses when neither the call nor the model names one:
#: :data:`TIGHT_FILL` with a foreground click on a rim the mask missed all around reading the other side beyond its band
#: (``outer_ref``; round 11, chosen leave one patient out against :data:`TIGHT_FILL` and :data:`TIGHT_FILL` with a
#: background click's kept decoder change cut to its fill's reach (``edge_on="background"``), the same way:
#: ``bench/RESULTS.md``, "Clicks on a rim the mask missed all around"). Without a box — clicks alone — the box bound
#: does nothing.
DEFAULT_RULE = replace(TIGHT_FILL, outer_ref=True)


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


def without_box(rule):
    """``rule`` with its box bound off (``box_bound=False``; any other rule as it is): for clicks decoded with a box
    the user did not draw — a 3D walk's slice box, made from a neighbouring slice's mask — which says nothing of
    where the target ends."""
    return replace(rule, box_bound=False) if getattr(rule, "box_bound", False) else rule


def combine(rule, previous: np.ndarray, proposed: np.ndarray, points: np.ndarray, labels: np.ndarray,
            image: np.ndarray | None = None, boxes: np.ndarray | None = None) -> np.ndarray:
    """``N×H×W`` float32 logits: the decoder's ``proposed`` logits where ``rule`` accepts them, the
    ``previous`` ones elsewhere (so the next click's mask input is the mask shown); pixels a rule with
    ``decide`` flips itself take the click's side (the previous logit negated, at least 1 in size, or
    the decoder's where it already agrees). Points ``N×K×2`` XY and labels ``N×K`` in the logits'
    pixels; ``image`` (``None``, or ``H×W`` / ``H×W×3`` uint8 in the same pixels) and ``boxes`` (``None``, or the
    targets' ``N×4`` XYXY boxes in the same pixels) for rules that use them (``decide``)."""
    if callable(getattr(rule, "decide", None)):
        accept, flip = rule.decide(previous > 0, proposed > 0, points, labels, image, boxes)
    else:
        accept, flip = rule.accept(previous > 0, proposed > 0, points, labels), None
    out = np.where(accept, proposed, previous).astype(np.float32, copy=False)
    if flip is not None and flip.any():
        p, q = proposed[flip], previous[flip]  # only the flipped pixels: outside the previous mask → foreground
        out[flip] = np.where(q <= 0, np.maximum(np.maximum(p, -q), 1.0), np.minimum(np.minimum(p, -q), -1.0))
    return out
