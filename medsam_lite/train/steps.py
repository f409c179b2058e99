"""What one training step computes: targets in model space, box jitter, the loss, and simulated clicks.

:func:`click_rounds_loss` is the iterative prompting of SAM's and micro-sam's training: start from
the box, then up to ``K`` rounds, each adding one click sampled from the current error (the
largest error region: half of the clicks at its interior point as the evaluation robot clicks,
half uniformly inside it) with the previous round's low-resolution logits as the mask input; the
loss is summed over the rounds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..clicks import next_click
from ..errors import InputError
from ..metrics import dice
from ..data.embed import model_boxes
from ..model.inference import MASK_PAD_LOGIT, decode_logits
from ..model.models import SamModel
from .losses import LossBatch, dice_bce_loss


def jitter_boxes(boxes: np.ndarray, content_hw: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Enlarge each side of ``N×4`` XYXY model-pixel boxes by a random integer in ``[0, max_shift]``.

    The result is clipped to the image content (``content_hw`` = ``N×2`` resized ``(h, w)`` inside
    the padded model input), as in MedSAM's training script.
    """
    shift = rng.integers(0, int(max_shift) + 1, size=boxes.shape).astype(np.float32)
    out = boxes + shift * np.array([-1, -1, 1, 1], np.float32)
    out[:, [0, 1]] = np.maximum(out[:, [0, 1]], 0)
    out[:, 2] = np.minimum(out[:, 2], content_hw[:, 1] - 1)
    out[:, 3] = np.minimum(out[:, 3], content_hw[:, 0] - 1)
    return out


def weak_groups(dataset, targets: pd.DataFrame) -> list[list[int]]:
    """Row positions of ``targets`` (reset index) that form one training target each.

    A mask row is a target of its own. Weak rows (boxes / RECIST) of the same case, slice and label
    form **one** target when the dataset was prepared with ``split_components=False`` (the default:
    one mask target per label and slice, so the test prompts are one box per label and slice): its
    prompt is the bounding box of all its boxes, and each box constrains the mask on its own (two
    boxes around two ventricles say that the tissue between them is background). With
    ``split_components=True`` every annotation is its own target, as every component is.
    """
    kinds = (targets["weak"].fillna("").astype(str).to_numpy() if "weak" in targets
             else np.full(len(targets), "", object))
    if bool(dataset.meta.get("split_components", False)) or not (kinds != "").any():
        return [[i] for i in range(len(targets))]
    groups: list[list[int]] = []
    where: dict = {}
    for i, (case, z, label) in enumerate(zip(targets["case"], targets["slice"], targets["label"])):
        if kinds[i] == "":
            groups.append([i])
            continue
        key = (case, int(z), int(label))
        if key not in where:
            where[key] = len(groups)
            groups.append([])
        groups[where[key]].append(i)
    return groups


def load_targets(dataset, model: SamModel, targets: pd.DataFrame, store, images: bool = False) -> dict:
    """Training/validation targets in model space.

    Weak rows of one case, slice and label are one target (see :func:`weak_groups`).

    Args:
        images: also return the stored slices on the model grid (for losses with a pairwise term).

    Returns:
        dict with ``rows`` (store row per target, int64 ``N``), ``boxes`` (``N×4`` float32 XYXY
        model pixels; a weak target's prompt: the bounding box of its boxes), ``masks`` (``N×S×S`` bool,
        the stored mask mapped to the model grid, zero-padded; for a weak target the union of its filled
        boxes), ``weak`` (``N`` bool: a box / RECIST target), ``parts`` (``N`` list: per weak target the
        ``k×4`` float32 XYXY model-pixel boxes it is made of, ``k ≥ 1``; ``0×4`` for a mask target),
        ``lines`` (``N×S×S`` bool RECIST line pixels, or None when no target has lines),
        ``images`` (``N×S×S`` float32 in [0, 1], −1 on the padding; or None), ``content_hw`` (``N×2``, the image area
        inside the model input) and ``label_names`` (``N`` str).
    """
    targets = targets.reset_index(drop=True)
    s = model.input_size
    groups = weak_groups(dataset, targets)
    n = len(groups)
    masks = np.zeros((n, s, s), bool)
    content = np.zeros((n, 2), np.int64)
    kinds = (targets["weak"].fillna("").astype(str).to_numpy() if "weak" in targets
             else np.full(len(targets), "", object))
    row_boxes = model_boxes(model, targets)
    first = np.array([g[0] for g in groups], np.int64)
    weak = kinds[first] != "" if n else np.zeros(0, bool)
    lines = np.zeros((n, s, s), bool) if (kinds == "recist").any() else None
    pixels = np.full((n, s, s), -1.0, np.float32) if images else None  # padding: -1
    boxes = np.zeros((n, 4), np.float32)
    parts = []
    for t, group in enumerate(groups):
        for i in group:
            h, w, rel = targets["height"].iloc[i], targets["width"].iloc[i], targets["mask"].iloc[i]
            raw = dataset.weak_mask(rel) if weak[t] else dataset.mask(rel)  # stored-slice pixels
            geom = model.geometry((int(h), int(w)), raw.shape)  # of an (h, w) original slice
            masks[t] |= geom.mask_to_model(raw > 0)  # a weak target: 128 inside the box, 255 on RECIST lines
            if weak[t] and lines is not None:
                lines[t] |= geom.mask_to_model(raw == 255)
        content[t] = geom.resized_hw
        own = row_boxes[group]
        boxes[t] = [*own[:, :2].min(0), *own[:, 2:].max(0)]
        parts.append(own if weak[t] else np.zeros((0, 4), np.float32))
        if images:
            img = torch.from_numpy(dataset.image(targets["image"].iloc[group[0]]).astype(np.float32) / 255)[None, None]
            rh, rw = geom.resized_hw
            if img.shape[-2:] != (rh, rw):
                img = F.interpolate(img, size=(rh, rw), mode="bilinear", align_corners=False)
            pixels[t, :rh, :rw] = img[0, 0].numpy()
    sel = targets.iloc[first] if n else targets
    rows = np.array([store.index(c, z) for c, z in zip(sel["case"], sel["slice"])], np.int64)
    return {"rows": rows, "boxes": boxes, "masks": masks, "weak": weak, "parts": parts, "lines": lines,
            "images": pixels, "content_hw": content, "label_names": sel["label_name"].astype(str).to_numpy()}


def loss_batch(data: dict, idx: np.ndarray, device) -> LossBatch:
    """The :class:`~medsam_lite.train.losses.LossBatch` of targets ``idx`` of :func:`load_targets`'s dict."""
    def t(a):
        return None if a is None else torch.from_numpy(np.ascontiguousarray(a[idx]))[:, None].float().to(device)
    parts = data.get("parts")
    return LossBatch(t(data["masks"]), torch.from_numpy(data["weak"][idx]).to(device), t(data["lines"]), t(data["images"]),
                     None if parts is None else [parts[i] for i in idx], t(data.get("pseudo")))


@torch.no_grad()
def own_predictions(trainee: SamModel, store, data: dict, batch_size: int) -> np.ndarray:
    """The current decoder's foreground probability of every target at its prompt box (no jitter):
    ``N×S×S`` float32 in [0, 1], model grid (the self-training targets of a loss with ``self_train``)."""
    n, s = len(data["rows"]), trainee.input_size
    out = np.zeros((n, s, s), np.float32)
    was = trainee.mask_decoder.training
    trainee.mask_decoder.eval()
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        out[idx] = torch.sigmoid(target_forward(trainee, store, data, idx, data["boxes"][idx]))[:, 0].cpu().numpy()
    trainee.mask_decoder.train(was)
    return out


def targets_per_label(dataset, train: dict, val: dict | None, labels) -> dict:
    """Label name → train / val target counts and the targets ``preprocess`` dropped as too small."""
    names = {int(k): v for k, v in dataset.meta.get("labels", {}).items()}
    dropped = dataset.meta.get("targets_per_label", {})
    out = {}
    for value, name in sorted(names.items()):
        if labels is not None and value not in labels:
            continue
        out[name] = {"train": int((train["label_names"] == name).sum()),
                     "val": int((val["label_names"] == name).sum()) if val else 0,
                     "dropped_by_preprocess": int(dropped.get(str(value), dropped.get(name, {})).get("dropped", 0))}
    return out


def _upsampled(logits: torch.Tensor, size: int) -> torch.Tensor:
    if logits.shape[-1] != size:
        logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
    return logits.float()  # the loss in fp32 under bf16 autocast too


def click_rounds_loss(trainee: SamModel, embeddings: torch.Tensor, boxes: torch.Tensor, target: torch.Tensor,
                      content_hw: np.ndarray, clicks: int, rng: np.random.Generator, first: SamModel | None = None,
                      every_round: bool = True, robot_share: float = 0.5,
                      rounds_out: list | None = None):
    """Loss of one batch over the box round and ``clicks`` corrective-click rounds (summed).

    Args:
        trainee: the model being trained (its own decoder answers every prompt: no click decoder).
        embeddings: ``B×C×h×w`` (embedding ``i`` with target ``i``).
        boxes: ``B×4`` float32 XYXY model-input pixels (jittered).
        target: ``B×1×S×S`` float truth on the model grid.
        content_hw: ``B×2`` image area inside the padded model input.
        clicks: the number of click rounds after the box (``K >= 1``).
        rng: draws the clicks.
        first: a frozen model whose box-only answer starts the session (as at inference, where the
            published decoder answers the box): its round is not trained. ``None``: ``trainee``
            answers the box too, and that round's loss counts.
        every_round: sum the loss over every round (default); ``False``: only the last round is
            trained, the earlier ones run without gradients (about half the work per round).
        robot_share: the share of clicks at the robot's point (the interior of the largest error
            region, as the evaluation clicks); the others fall uniformly inside that region.
            ``rng=None``: every click is the robot's.
        rounds_out: a list that receives each round's ``B×1×S×S`` logits (box round first).

    Returns:
        ``(loss, logits_after_last_round B×1×S×S)``.
    """
    s = target.shape[-1]
    if first is None:
        low, _ = decode_logits(trainee, embeddings, boxes)
        loss = dice_bce_loss(_upsampled(low, s), target)
    else:
        with torch.no_grad():
            low, _ = decode_logits(first, embeddings, boxes)
        loss = torch.zeros((), device=target.device)
    if rounds_out is not None:
        rounds_out.append(_upsampled(low, s))
    b = len(boxes)
    points, labels = np.zeros((b, 0, 2), np.float32), np.zeros((b, 0), np.float32)
    truth = target[:, 0].detach().cpu().numpy() > 0.5
    lowsize = low.shape[-1]
    for r in range(int(clicks)):
        train_this = every_round or r == int(clicks) - 1
        pred = _upsampled(low.detach(), s)[:, 0].cpu().numpy() > 0
        new = np.zeros((b, 1, 2), np.float32)
        new_label = -np.ones((b, 1), np.float32)  # SAM's "not a point" when the mask is already right
        for i in range(b):
            h, w = content_hw[i]
            click = next_click(pred[i, :h, :w], truth[i, :h, :w], None if rng is None or rng.random() < robot_share else rng)
            if click is not None:
                new[i, 0], new_label[i, 0] = click[:2], click[2]
        points, labels = np.concatenate([points, new], 1), np.concatenate([labels, new_label], 1)
        mask_input = low.detach().clone()
        for i in range(b):  # outside the image content the mask input is the padding logit, as at inference
            ch, cw = (int(round(v * lowsize / s)) for v in content_hw[i])
            mask_input[i, :, ch:, :] = MASK_PAD_LOGIT
            mask_input[i, :, :, cw:] = MASK_PAD_LOGIT
        with torch.set_grad_enabled(train_this and torch.is_grad_enabled()):
            low, _ = decode_logits(trainee, embeddings, boxes, torch.from_numpy(points).to(boxes.device),
                                   torch.from_numpy(labels).to(boxes.device), mask_input)
        if train_this:
            loss = loss + dice_bce_loss(_upsampled(low, s), target)
        if rounds_out is not None:
            rounds_out.append(_upsampled(low, s))
    return loss, _upsampled(low, s)


#: Training precisions of :func:`medsam_lite.finetune`.
TRAIN_PRECISIONS = ("fp32", "bf16")


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matmuls natively (CPU: AVX-512 BF16 or AMX; CUDA: compute ≥ 8.0)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or amx())
    return False


def train_autocast(precision: str, device: torch.device):
    """The context the training forward pass and loss run in: ``torch.autocast`` in bf16, or nothing.

    Weights, gradients, Adam state and checkpoints stay fp32 either way (autocast only lowers the
    matmuls and convolutions of the forward pass; the loss is computed on fp32 logits).

    Raises:
        InputError: an unknown precision, or ``"bf16"`` on a device without native bf16.
    """
    if precision not in TRAIN_PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {list(TRAIN_PRECISIONS)}.")
    if precision == "fp32":
        return lambda: torch.autocast(device.type, enabled=False)
    if not bf16_supported(device):
        raise InputError(f"precision='bf16' needs a device with native bf16 (a CPU with AVX-512 BF16 or AMX, or a "
                         f"CUDA GPU of compute capability ≥ 8.0); {device} has none — use precision='fp32'.")
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def target_forward(trainee: SamModel, store, data: dict, idx: np.ndarray, boxes: np.ndarray) -> torch.Tensor:
    emb = store.get_batch(data["rows"][idx])
    boxes = torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32))
    logits, _ = decode_logits(trainee, emb, boxes)  # embedding i with box i
    return _upsampled(logits, trainee.input_size)


def click_forward(trainee: SamModel, store, data: dict, idx: np.ndarray, boxes: np.ndarray, clicks: int, rng):
    """The summed loss of the box round and ``clicks`` simulated click rounds (see :mod:`.steps`)."""
    emb = store.get_batch(data["rows"][idx])
    target = torch.from_numpy(data["masks"][idx])[:, None].float().to(trainee.device)
    boxes = torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32))
    return click_rounds_loss(trainee, emb, boxes, target, data["content_hw"][idx], clicks, rng)[0]


def _box_fill(mask: np.ndarray) -> np.ndarray:
    """The filled bounding box of a boolean mask (empty → empty)."""
    out = np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    if len(ys):
        out[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
    return out


@torch.no_grad()
def validate(trainee: SamModel, store, data: dict, batch_size: int, loss=None) -> dict:
    """Mean loss, mean per-target Dice and its mean per label (model grid, padding cropped, tight boxes).

    A weak (box / RECIST) target has no mask: its score is the Dice of the prediction's filled
    bounding box against the annotated box (does the mask span the box, and stay inside it)."""
    loss = loss if loss is not None else (lambda logits, batch: dice_bce_loss(logits, batch.target))
    losses, dices = [], []
    for start in range(0, len(data["rows"]), batch_size):
        idx = np.arange(start, min(start + batch_size, len(data["rows"])))
        logits = target_forward(trainee, store, data, idx, data["boxes"][idx])
        batch = loss_batch(data, idx, logits.device)
        losses.append(float(loss(logits, batch)) * len(idx))
        target = batch.target.cpu()
        for j, i in enumerate(idx):
            h, w = data["content_hw"][i]
            pred, truth = (logits[j, 0, :h, :w] > 0).cpu().numpy(), (target[j, 0, :h, :w] > 0.5).numpy()
            dices.append(dice(_box_fill(pred), _box_fill(truth)) if data["weak"][i] else dice(pred, truth))
    out = {"val_loss": sum(losses) / len(data["rows"]), "val_dice": float(np.mean(dices))}
    dices = np.asarray(dices)
    for name in sorted(set(data["label_names"])):
        out[f"val_dice_{name}"] = float(dices[data["label_names"] == name].mean())
    return out
