"""Training losses of :func:`medsam_lite.finetune`: small objects with a name and a configuration.

A loss is called as ``loss(logits, batch)`` on ``B×1×S×S`` fp32 logits in **model-input** pixels
(``S`` = the model's input size, the image padded at the bottom/right) and returns a scalar tensor.
``batch`` is a :class:`LossBatch`. Its :meth:`config` (a JSON-able dict with ``"name"``) is stored in
the run's checkpoints and is one of the resume keys: a run resumed with another loss (or the same
loss with other weights) is refused instead of silently mixing two losses.

* :class:`DiceBCELoss` (default): soft Dice + binary cross-entropy on full masks (MedSAM's recipe).
* :class:`BoxSupervisedLoss`: trains from boxes and RECIST lines (weak targets, see
  :func:`medsam_lite.preprocess`'s ``weak=``) — the *projection loss* of BoxInst (Tian et al.,
  CVPR 2021): the mask's column maxima must fill the box's x-range and its row maxima its y-range,
  and both must be empty outside; a *pairwise* term asking neighbouring pixels of similar intensity
  inside the box to take the same label; RECIST lines count as foreground pixels (BCE). Full-mask
  targets in the same batch use its ``mask_loss`` (Dice + BCE): mixed datasets use masks where they exist.
* :class:`BoxAsMaskLoss`: the naive alternative (the filled box taken as the mask), kept to measure
  the box loss against (``bench/bench_weak.py``).

A custom loss is any object with ``name`` (str), ``config()`` (JSON-able dict), ``__call__(logits,
batch)`` and optional ``needs_image`` (True: ``batch.image`` is filled) and ``weak_ok`` (True: it
accepts box/RECIST targets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

__all__ = ["LossBatch", "DiceBCELoss", "BoxSupervisedLoss", "BoxAsMaskLoss", "LOSSES", "dice_bce_loss", "loss_config",
           "resolve_loss", "intensity_pseudo_mask"]


@dataclass
class LossBatch:
    """What a loss sees of one batch (all tensors on the logits' device, model-input pixels).

    Attributes:
        target: ``B×1×S×S`` float: the mask (mask targets) or the filled box (weak targets).
        weak: ``B`` bool: the target is a box / RECIST annotation, not a mask.
        lines: ``B×1×S×S`` float, 1 on RECIST line pixels (foreground evidence), else 0; or None.
        image: ``B×1×S×S`` float in [0, 1] (−1 on the padding), the stored slice on the model grid (for pairwise
            terms; filled when the loss has ``needs_image = True``), else None.
        parts: per sample a ``k×4`` float XYXY array of the boxes (model-input pixels) a weak target is made
            of (several boxes of one label on one slice, e.g. one per ventricle; ``target`` is their union),
            or None (one box: the filled ``target``).
        pseudo: ``B×1×S×S`` float in [0, 1]: the model's own foreground probability at the start of the
            epoch (self-training, filled by ``finetune`` when the loss has ``self_train > 0``), else None.
    """

    target: torch.Tensor
    weak: torch.Tensor | None = None
    lines: torch.Tensor | None = None
    image: torch.Tensor | None = None
    parts: list | None = None
    pseudo: torch.Tensor | None = None


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Soft Dice loss (per sample, averaged) + binary cross-entropy, on ``B×1×S×S`` logits/targets."""
    prob = torch.sigmoid(logits)
    dims = tuple(range(1, logits.ndim))
    inter = (prob * target).sum(dims)
    soft_dice = 1 - (2 * inter + eps) / (prob.sum(dims) + target.sum(dims) + eps)
    return soft_dice.mean() + F.binary_cross_entropy_with_logits(logits, target)


def _as_batch(batch) -> LossBatch:
    return batch if isinstance(batch, LossBatch) else LossBatch(target=batch)


class DiceBCELoss:
    """``dice × soft Dice + bce × binary cross-entropy`` on full masks (default 1 and 1: MedSAM's).

    Box / RECIST targets are refused by :func:`~medsam_lite.finetune` with this loss (their filled
    box is not a mask); use :class:`BoxSupervisedLoss`.
    """

    name = "dice_bce"
    needs_image = False
    weak_ok = False

    def __init__(self, dice: float = 1.0, bce: float = 1.0):
        self.dice, self.bce = float(dice), float(bce)

    def config(self) -> dict:
        return {"name": self.name, "dice": self.dice, "bce": self.bce}

    def __call__(self, logits: torch.Tensor, batch) -> torch.Tensor:
        target = _as_batch(batch).target
        if self.dice == 1.0 and self.bce == 1.0:
            return dice_bce_loss(logits, target)
        prob = torch.sigmoid(logits)
        dims = tuple(range(1, logits.ndim))
        soft = 1 - (2 * (prob * target).sum(dims) + 1e-6) / (prob.sum(dims) + target.sum(dims) + 1e-6)
        return self.dice * soft.mean() + self.bce * F.binary_cross_entropy_with_logits(logits, target)

    def __repr__(self) -> str:
        return f"DiceBCELoss(dice={self.dice}, bce={self.bce})"


class BoxAsMaskLoss(DiceBCELoss):
    """Dice + BCE with each weak target's filled box taken as its mask (the naive baseline)."""

    name = "box_as_mask"
    weak_ok = True

    def __repr__(self) -> str:
        return f"BoxAsMaskLoss(dice={self.dice}, bce={self.bce})"


def _dice_1d(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-sample ``1 − Dice`` of ``B×L`` profiles (BoxInst uses squared sums; so do we)."""
    inter = (a * b).sum(-1)
    return 1 - (2 * inter + eps) / ((a * a).sum(-1) + (b * b).sum(-1) + eps)


#: Neighbour offsets (dy, dx) of the pairwise term: 8-neighbourhood at dilation 2, as in BoxInst.
_OFFSETS = ((0, 2), (2, 0), (2, 2), (2, -2))


class BoxSupervisedLoss:
    """Box (and RECIST) supervision for the decoder; full masks in the same batch use ``mask_loss``.

    For a weak target with filled box ``b`` and foreground probability ``p = σ(logits)``:

    * projection: ``(1 − Dice(maxᵧ p, maxᵧ b)) + (1 − Dice(maxₓ p, maxₓ b))`` — the mask reaches
      every column and row of the box and nothing outside it;
    * pairwise (weight ``pairwise``): for neighbouring pixels ``i, j`` (8 directions, 2 px apart)
      both inside the box whose stored intensities differ by little (``exp(−|Iᵢ − Iⱼ| / sigma) ≥
      threshold``, intensities in [0, 1]), ``−log(pᵢpⱼ + (1 − pᵢ)(1 − pⱼ))``: same label on both;
    * lines (weight ``lines``): mean ``−log pᵢ`` over RECIST line pixels (they lie on the lesion);
    * several boxes per target (``batch.parts``, e.g. one box per ventricle under one prompt): the
      projection above on their union, plus each box's own fill term (``1 − Dice`` of the column and
      row maxima of ``p`` inside that box against all ones), averaged over the boxes;
    * outside (weight ``outside``): mean ``−log(1 − pᵢ)`` over the image pixels outside every box of
      the target (a tight box, or one box per component, says that nothing outside it is the object);
    * self-training (weight ``self_train``, BoxInst / DiscoBox style): from epoch ``self_train_from``
      on, ``finetune`` predicts every weak target with the current decoder at the start of the epoch;
      inside the boxes, pixels it called foreground (probability ≥ 0.7) or background (≤ 0.3) are
      targets of a BCE term (mean over those pixels).

    Args:
        pairwise: weight of the pairwise term (0 turns it off; BoxInst's is 1).
        lines: weight of the RECIST line term.
        sigma: intensity scale of the similarity (stored uint8 slice / 255).
        threshold: least similarity for a pair to count.
        outside: weight of the outside term (0 turns it off; default 1: on the held-out brain subjects of
            ``bench/bench_weak.py`` it took box-only training from 34–47 % to 61–69 % of the mask gain with one
            box per connected component, see bench/RESULTS.md).
        self_train: weight of the self-training term (0 turns it off); ``self_train_from``: the first
            epoch whose targets are refreshed and used (1 = the pretrained decoder's own masks).
        mask_loss: the loss of full-mask targets (default :class:`DiceBCELoss`).
    """

    name = "box_supervised"
    weak_ok = True

    def __init__(self, pairwise: float = 1.0, lines: float = 1.0, sigma: float = 0.05, threshold: float = 0.5,
                 pseudo: float = 0.0, ring: int = 10, outside: float = 1.0, self_train: float = 0.0,
                 self_train_from: int = 2, mask_loss: DiceBCELoss | None = None):
        self.pairwise, self.lines, self.pseudo, self.ring = float(pairwise), float(lines), float(pseudo), int(ring)
        self.outside, self.self_train, self.self_train_from = float(outside), float(self_train), int(self_train_from)
        self.sigma, self.threshold = float(sigma), float(threshold)
        self.mask_loss = mask_loss if mask_loss is not None else DiceBCELoss()

    @property
    def needs_image(self) -> bool:
        return self.pairwise > 0 or self.pseudo > 0

    def config(self) -> dict:
        return {"name": self.name, "pairwise": self.pairwise, "lines": self.lines, "sigma": self.sigma,
                "threshold": self.threshold, **({"pseudo": self.pseudo, "ring": self.ring} if self.pseudo else {}),
                **({"outside": self.outside} if self.outside else {}),
                **({"self_train": self.self_train, "self_train_from": self.self_train_from} if self.self_train else {}),
                "mask_loss": loss_config(self.mask_loss)}

    def __repr__(self) -> str:
        return (f"BoxSupervisedLoss(pairwise={self.pairwise}, lines={self.lines}, sigma={self.sigma}, "
                f"threshold={self.threshold}, pseudo={self.pseudo}, outside={self.outside})")

    def weak_terms(self, logits: torch.Tensor, batch: LossBatch) -> torch.Tensor:
        """Per-sample loss ``B`` of weak targets (all of ``logits`` taken as weak)."""
        box = batch.target
        prob = torch.sigmoid(logits)
        loss = (_dice_1d(prob.amax(-2).flatten(1), box.amax(-2).flatten(1))
                + _dice_1d(prob.amax(-1).flatten(1), box.amax(-1).flatten(1)))
        if self.pairwise > 0 and batch.image is not None:
            log_fg, log_bg = F.logsigmoid(logits), F.logsigmoid(-logits)
            num = torch.zeros_like(loss)
            den = torch.zeros_like(loss)
            for dy, dx in _OFFSETS:
                a = (slice(None), slice(None), slice(0, box.shape[-2] - dy), slice(max(0, -dx), box.shape[-1] - max(0, dx)))
                b = (slice(None), slice(None), slice(dy, None), slice(max(0, dx), box.shape[-1] + min(0, dx) or None))
                sim = torch.exp(-(batch.image[a] - batch.image[b]).abs() / self.sigma)
                w = ((sim >= self.threshold) & (box[a] > 0.5) & (box[b] > 0.5)).float()
                same = torch.logaddexp(log_fg[a] + log_fg[b], log_bg[a] + log_bg[b])
                num = num - (w * same).flatten(1).sum(-1)
                den = den + w.flatten(1).sum(-1)
            loss = loss + self.pairwise * num / den.clamp_min(1.0)
        if self.pseudo > 0 and batch.image is not None:
            target, weight = intensity_pseudo_mask(batch.image, box, self.ring)
            bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="none")
            loss = loss + self.pseudo * bce.flatten(1).sum(-1) / weight.flatten(1).sum(-1).clamp_min(1.0)
        if batch.parts is not None:
            fill = [_parts_fill(prob[i, 0], parts) for i, parts in enumerate(batch.parts)]
            loss = loss + torch.stack([f if f is not None else torch.zeros((), device=logits.device) for f in fill])
        if self.outside > 0:
            out = box < 0.5
            if batch.image is not None:
                out = out & (batch.image >= 0)  # not the padding
            out = out.float()
            neg = -(F.logsigmoid(-logits) * out).flatten(1).sum(-1)
            loss = loss + self.outside * neg / out.flatten(1).sum(-1).clamp_min(1.0)
        if self.self_train > 0 and batch.pseudo is not None:
            sure = (((batch.pseudo >= 0.7) | (batch.pseudo <= 0.3)) & (box > 0.5)).float()
            bce = F.binary_cross_entropy_with_logits(logits, (batch.pseudo >= 0.5).float(), weight=sure, reduction="none")
            loss = loss + self.self_train * bce.flatten(1).sum(-1) / sure.flatten(1).sum(-1).clamp_min(1.0)
        if self.lines > 0 and batch.lines is not None:
            n = batch.lines.flatten(1).sum(-1)
            on = -(batch.lines * F.logsigmoid(logits)).flatten(1).sum(-1)
            loss = loss + self.lines * torch.where(n > 0, on / n.clamp_min(1.0), torch.zeros_like(on))
        return loss

    def __call__(self, logits: torch.Tensor, batch) -> torch.Tensor:
        batch = _as_batch(batch)
        weak = batch.weak if batch.weak is not None else torch.ones(len(logits), dtype=torch.bool)
        weak = weak.to(logits.device)
        total = torch.zeros((), device=logits.device)
        if (~weak).any():
            total = total + self.mask_loss(logits[~weak], LossBatch(batch.target[~weak])) * (~weak).sum() / len(weak)
        if weak.any():
            keep = weak.nonzero().flatten().tolist()
            sub = LossBatch(batch.target[weak], None, None if batch.lines is None else batch.lines[weak],
                            None if batch.image is None else batch.image[weak],
                            None if batch.parts is None else [batch.parts[i] for i in keep],
                            None if batch.pseudo is None else batch.pseudo[weak])
            total = total + self.weak_terms(logits[weak], sub).sum() / len(weak)
        return total


def _parts_fill(prob: torch.Tensor, parts) -> torch.Tensor | None:
    """Mean over the boxes ``parts`` (``k×4`` XYXY model pixels, k ≥ 2) of ``1 − Dice`` of the column and
    row maxima of ``prob`` (``S×S``) inside each box against ones (each box is reached in every column
    and row); None for fewer than two boxes (the union's projection already says it)."""
    if parts is None or len(parts) < 2:
        return None
    s = prob.shape[-1]
    terms = []
    for x0, y0, x1, y1 in np.asarray(parts, np.float64):
        c0, r0 = max(0, int(math.ceil(x0))), max(0, int(math.ceil(y0)))  # the pixels surely inside the box
        c1, r1 = min(s - 1, int(math.floor(x1))), min(s - 1, int(math.floor(y1)))
        if c1 < c0 or r1 < r0:
            continue
        inner = prob[r0:r1 + 1, c0:c1 + 1]
        for prof in (inner.amax(0), inner.amax(1)):
            terms.append(_dice_1d(prof[None], torch.ones_like(prof)[None])[0])
    return torch.stack(terms).sum() / (len(terms) / 2) if terms else None


@torch.no_grad()
def intensity_pseudo_mask(image: torch.Tensor, box: torch.Tensor, ring: int = 10, bins: int = 32,
                          low: float = 0.35, high: float = 0.65):
    """Pseudo-mask from intensities: inside the box, pixels whose intensity is frequent inside the box
    and rare in a ``ring``-pixel band just outside it (which holds no object: the box is tight) are
    foreground, those as frequent outside as inside are background; the rest are not used.

    Args:
        image: ``B×1×S×S`` in [0, 1], padding < 0 (not counted). box: ``B×1×S×S`` filled boxes.

    Returns:
        ``(target, weight)`` ``B×1×S×S`` float: 1/0 labels and 1 where a label is given.
    """
    target, weight = torch.zeros_like(box), torch.zeros_like(box)
    for i in range(len(box)):
        inside = box[i, 0] > 0.5
        rows, cols = inside.any(1).nonzero(), inside.any(0).nonzero()
        if not len(rows):
            continue
        y0, y1, x0, x1 = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
        band = torch.zeros_like(inside)
        band[max(0, y0 - ring):y1 + ring + 1, max(0, x0 - ring):x1 + ring + 1] = True
        img = image[i, 0]
        band &= ~inside & (img >= 0)
        if band.sum() < 20:
            continue
        k = (img.clamp(0, 1) * (bins - 1)).round().long()
        h_in = torch.bincount(k[inside], minlength=bins).float() / inside.sum()
        h_out = torch.bincount(k[band], minlength=bins).float() / band.sum()
        score = (h_in / (h_in + h_out).clamp_min(1e-6))[k]
        fg, bg = inside & (score >= high), inside & (score <= low)
        target[i, 0][fg] = 1.0
        weight[i, 0][fg | bg] = 1.0
    return target, weight


#: Loss names a settings file or the CLI may give (``loss = "box_supervised"``).
LOSSES = {"dice_bce": DiceBCELoss, "box_supervised": BoxSupervisedLoss, "box_as_mask": BoxAsMaskLoss}


def resolve_loss(loss, weak: bool, clicks: int = 0):
    """The loss object of a run: ``loss`` (an object or a name of :data:`LOSSES`) checked, or the
    default for the targets (``weak``: some are box / RECIST annotations)."""
    if loss is None:
        return BoxSupervisedLoss() if weak else DiceBCELoss()
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise InputError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)} or pass a loss object.")
        loss = LOSSES[loss]()
    if not callable(loss) or not isinstance(getattr(loss, "name", None), str):
        raise InputError(f"loss must be a loss object with a name and config() (e.g. medsam_lite.train.losses."
                         f"DiceBCELoss() or BoxSupervisedLoss()), got {loss!r}.")
    if weak and not getattr(loss, "weak_ok", False):
        raise InputError(f"the selected targets include box / RECIST annotations (weak labels), which {loss!r} "
                         "cannot train on (it needs masks); use medsam_lite.train.losses.BoxSupervisedLoss() "
                         "(the default for such a dataset), or labels=/cases= without weak targets.")
    if clicks and (weak or not isinstance(loss, DiceBCELoss)):
        raise InputError("clicks=K trains on masks with Dice + BCE (the click rounds need the true mask); "
                         "use the default loss and a dataset of masks with clicks, or clicks=0.")
    return loss


def loss_config(loss) -> dict:
    """The JSON-able configuration of a loss object (``{"name": ..., ...}``), as stored in a run."""
    config = loss.config() if callable(getattr(loss, "config", None)) else {}
    if not isinstance(config, dict):
        config = {}
    return {"name": str(getattr(loss, "name", type(loss).__name__)), **config}
