"""Fine-tune the mask decoder on stored image embeddings (MedSAM's recipe, CPU-sized).

The image encoder stays frozen and never runs during training: every step reads the slices'
embeddings from the store written by :func:`medsam_lite.embed` (computed on the fly for any slice
still missing). Only the mask decoder is trained (optionally the prompt encoder too; with
``clicks=K`` also on simulated corrective clicks, see :mod:`medsam_lite.train.steps`), on box
prompts taken from the ground truth and enlarged by a random 0–20 px per side at 1024 scale (0–5 px
for a 256 model), with an injectable loss object (default soft Dice + binary cross-entropy; box /
RECIST targets: :class:`~medsam_lite.train.losses.BoxSupervisedLoss`), Adam. All settings and their
defaults are one :class:`FinetuneConfig`.

**The pretrained model is epoch 0**: the starting decoder is validated before any training, and
``best.pt`` is the best epoch *among those that lose no label's validation Dice by more than*
``guard_tolerance`` (default 0.01) *against epoch 0* — the starting decoder itself when no trained
epoch qualifies (the run says so). A label can therefore not get silently worse on validation.

Output folder::

    best.pt       the guarded best epoch (epoch 0 = the starting decoder)  } written atomically, each
    last.pt       the latest epoch (for resume=True)                         } with the optimizer state
    history.csv   one row per epoch, epoch 0 first                           } and the history

A checkpoint holds ``{"model": {mask_decoder.* [, prompt_encoder.*]}, "model_name", ...,
"optimizer", "epoch", "history"}`` — only tensors, numbers, strings, lists and dicts, so it loads
with ``torch.load(..., weights_only=True)``, and ``load_model(checkpoint=path)`` applies it on top
of the base model's weights.

Under ``torchrun`` (several processes, GPUs or machines) the same call trains with PyTorch
``DistributedDataParallel`` on the same global batch and writes the same files from rank 0 only;
see :mod:`medsam_lite.distributed`.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import math
import os
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..checks import check_float, check_int, check_labels
from ..data.dataset import check_dataset
from ..model.models import check_model
from ..distributed import all_sum, barrier, data_parallel, from_main, init_distributed, rank_share
from ..data.embed import embed, select_slices
from ..errors import CheckpointError, InputError
from ..fileutil import TMP_PREFIX, atomic_write, atomic_write_text, check_writable
from ..data.store import dataset_fingerprint, encoder_sha256
from ..model.models import SamModel
from .config import GUARD_TOLERANCE, FinetuneConfig, FinetuneResult, choose_epoch, guard_summary
from .losses import BoxAsMaskLoss, BoxSupervisedLoss, DiceBCELoss, dice_bce_loss, loss_config, resolve_loss
from .steps import (click_forward, target_forward, validate, jitter_boxes, load_targets, loss_batch, own_predictions,
                    targets_per_label, train_autocast)

__all__ = ["finetune", "FinetuneConfig", "FinetuneResult", "GUARD_TOLERANCE", "dice_bce_loss", "jitter_boxes",
           "load_targets", "DiceBCELoss", "BoxSupervisedLoss", "BoxAsMaskLoss"]

CHECKPOINT_FORMAT = "medsam_lite.finetune/1"
#: Settings that must match when a run is resumed.
_RESUME_KEYS = ("dataset_fingerprint", "model_name", "encoder_sha256", "lr", "batch_size", "seed", "box_jitter",
                "train_prompt_encoder", "train_cases", "val_cases", "max_slices_per_case", "labels", "clicks",
                "loss", "guard_tolerance")
#: A resumed run written before a key existed had that key's value then (its loss was Dice + BCE, no guard).
_RESUME_DEFAULTS = {"loss": {"name": "dice_bce", "dice": 1.0, "bce": 1.0}, "guard_tolerance": None}

def _read_last(path: Path) -> dict:
    """``last.pt`` of a run to resume; CheckpointError if it is cut short or not from finetune."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, unpickling error, …
        raise CheckpointError(f"{path} cannot be read ({str(exc).splitlines()[0][:120]}): it is cut short or "
                              "damaged. Restore it, or pass overwrite=True to start the run again.") from None
    needed = {"model", "optimizer", "epoch", "history", "config"}
    if not isinstance(ckpt, dict) or not needed <= set(ckpt):
        raise CheckpointError(f"{path} is not a checkpoint written by medsam_lite.finetune (it lacks "
                              f"{sorted(needed - set(ckpt) if isinstance(ckpt, dict) else needed)}); pass "
                              "overwrite=True to start the run again, or another out_dir.")
    return ckpt


def _differs(keys: list) -> str:
    what = ["the dataset differs (its content, not only its case names)"] if "dataset_fingerprint" in keys else []
    rest = [k for k in keys if k != "dataset_fingerprint"]
    return " and ".join(what + ([f"settings differ ({', '.join(rest)})"] if rest else []))


def _split_cases(train_slices: pd.DataFrame, val_cases, val_fraction: float, seed: int):
    cases = sorted(set(train_slices["case"]))
    if val_cases is not None:
        val_cases = sorted(str(c) for c in ([val_cases] if isinstance(val_cases, str) else val_cases))
        unknown = sorted(set(val_cases) - set(cases))
        if unknown:
            raise InputError(f"val_cases {unknown} are not training cases of the dataset ({cases}).")
    elif val_fraction <= 0 or len(cases) < 2:
        val_cases = []
    else:
        n_val = min(len(cases) - 1, max(1, round(val_fraction * len(cases))))
        val_cases = sorted(np.random.default_rng(seed).permutation(cases)[:n_val].tolist())
    train_cases = [c for c in cases if c not in val_cases]
    if not train_cases:
        raise InputError("no case is left for training; give fewer val_cases.")
    return train_cases, val_cases


def _trainee(model: SamModel, train_prompt_encoder: bool) -> SamModel:
    """A copy of ``model`` with its own prompt encoder and mask decoder (the encoder is shared)."""
    parts = SimpleNamespace(image_encoder=model.image_encoder,
                            prompt_encoder=copy.deepcopy(model.prompt_encoder),
                            mask_decoder=copy.deepcopy(model.mask_decoder))
    trainee = SamModel(parts, model.spec, model.weights_sha256, model.checkpoint).eval()
    for p in trainee.parameters():
        p.requires_grad_(False)
    for p in trainee.mask_decoder.parameters():
        p.requires_grad_(True)
    if train_prompt_encoder:
        for p in trainee.prompt_encoder.parameters():
            p.requires_grad_(True)
    return trainee


def _trained_state(trainee: SamModel, train_prompt_encoder: bool) -> dict:
    prefixes = ("mask_decoder.", "prompt_encoder.") if train_prompt_encoder else ("mask_decoder.",)
    return {k: v.detach().cpu().clone() for k, v in trainee.state_dict().items() if k.startswith(prefixes)}


def _base_checkpoint(model: SamModel) -> str:
    """The full-weights file under ``model`` (follows a fine-tuned checkpoint back to its base)."""
    try:
        obj = torch.load(model.checkpoint, map_location="cpu", weights_only=True, mmap=True)
        if isinstance(obj, dict) and isinstance(obj.get("base_checkpoint"), str):
            return obj["base_checkpoint"]
    except Exception:  # noqa: BLE001 - an unreadable file is reported by load_model, not here
        pass
    return str(model.checkpoint)


def _save_atomic(obj, path: Path) -> None:
    """``torch.save`` (or ``to_csv`` for a DataFrame) through a temporary name, then rename."""
    hint = "free some space (or pick another out_dir), then resume with resume=True."
    if isinstance(obj, pd.DataFrame):
        atomic_write_text(path, obj.to_csv(index=False), hint=hint)
    else:
        atomic_write(path, lambda f: torch.save(obj, f), hint=hint)


def finetune(dataset, out_dir, model: SamModel | None = None, config: FinetuneConfig | None = None,
             **settings) -> FinetuneResult:
    """Fine-tune the mask decoder on the training split's stored embeddings.

    Args:
        dataset: a prepared dataset folder (see :func:`medsam_lite.preprocess`) or a ``Dataset``.
        out_dir: folder for ``best.pt``, ``last.pt`` and ``history.csv`` (created).
        model: the starting model (default ``load_model()``); it is **not** modified — training
            works on a copy of its decoder.
        epochs: total number of epochs (with ``resume=True``: including the ones already done).
        lr: Adam learning rate (default 1e-5, the MedSAM paper's; on a CPU budget 1e-4 converges
            in far fewer epochs — say so when you use it).
        batch_size: targets per step (default 8).
        seed: makes a run repeatable on the same machine (case split, shuffling, box jitter).
        box_jitter: largest random enlargement of each box side, in pixels **at 1024 scale**
            (default 20, MedSAM's); scaled to the model's input size (5 px for 256).
        train_prompt_encoder: also train the prompt encoder (default: mask decoder only).
        val_cases: training-split cases held out for validation. Default: ``val_fraction`` of the
            training cases (at least one), picked with ``seed``. The test split is never used.
        val_fraction: share of training cases for validation when ``val_cases`` is None; 0 turns
            validation off (then ``best.pt`` is the last epoch). A dataset with a single training
            case (e.g. a folder of two scans: one train, one test) has no validation case: the run
            trains, says so, and ``best.pt`` is the last epoch.
        cases: train only on these case ids (default: every training case).
        max_slices_per_case: at most this many consecutive central slices per case (quick runs).
        labels: train only on these label values (default: all).
        max_minutes: a wall-clock budget for this call: no new epoch starts when the previous
            epoch's duration says it would end past the budget (the first epoch always runs).
            ``result.history["epoch"].max()`` tells how many epochs ran (row 0 is epoch 0, the
            starting decoder); ``resume=True`` continues later.
        clicks: ``K > 0`` trains the decoder to take corrective clicks as well (SAM's iterative
            prompting): each step starts from the box, then ``K`` rounds each add one click sampled
            from the current error (foreground on a miss, background on a false positive) with the
            previous logits as mask input; the loss is summed over the box and every round. The
            prompt encoder (its point embeddings and mask input) is trained with the mask decoder and
            saved in the checkpoint, which then answers clicks itself (``load_model`` attaches no
            shipped click decoder to it). ~``K + 1`` times the work per step. ``0`` (default): boxes only.
        precision: ``"fp32"`` (default) or ``"bf16"``: the training forward pass under
            ``torch.autocast(dtype=torch.bfloat16)`` (weights, optimizer state, validation and
            checkpoints stay fp32), for CPUs with AVX-512 BF16/AMX and GPUs with bf16; see
            bench/RESULTS.md for its speed and validation curve against fp32. Refused elsewhere.
        loss: the training loss object, or its name (``"dice_bce"``, ``"box_supervised"``,
            ``"box_as_mask"``; default :class:`~medsam_lite.train.losses.DiceBCELoss`,
            soft Dice + BCE; a dataset with box / RECIST targets defaults to
            :class:`~medsam_lite.train.losses.BoxSupervisedLoss`). Its ``config()`` is stored in the
            checkpoints and is a resume key: resuming with another loss is refused.
        guard_tolerance: the guard against the pretrained model (default
            :data:`GUARD_TOLERANCE` = 0.01 Dice). The starting decoder is validated first (epoch 0,
            in ``history``); ``best.pt`` is the epoch with the best mean validation Dice **among the
            epochs whose validation Dice of every label is at most this much below epoch 0's**.
            If no trained epoch qualifies, the run says so and ``best.pt`` is the starting decoder.
            ``None``: no guard (best mean validation Dice over the trained epochs).
        resume: continue the run in ``out_dir`` from ``last.pt`` (same settings required).
        overwrite: start again even if ``out_dir`` holds a run (its files are replaced).
        progress: show progress bars.

        config: a :class:`FinetuneConfig` holding all of the above (keywords given beside it win).

    Returns:
        :class:`FinetuneResult` with the checkpoint paths, the per-epoch history (epoch 0 = the
        starting decoder), ``best_epoch`` and the per-label change against epoch 0 (``change``,
        ``summary``; printed with ``progress=True``).

    Raises:
        InputError: bad settings, an existing run without ``resume``/``overwrite``, or a resume
            with other settings. StoreMismatchError: stored embeddings of another model/dataset.
    """
    cfg = (config if config is not None else FinetuneConfig())
    if not isinstance(cfg, FinetuneConfig):
        raise InputError(f"config must be a medsam_lite.FinetuneConfig, got {type(cfg).__name__}.")
    cfg = cfg.replace(**settings)
    return _finetune(dataset, out_dir, model, cfg)


def _published_signature() -> inspect.Signature:
    """``finetune``'s signature as tools see it (``help``, the CLI's options): every
    :class:`FinetuneConfig` field as a keyword with its default (``config=`` is accepted too)."""
    P = inspect.Parameter
    params = [P("dataset", P.POSITIONAL_OR_KEYWORD), P("out_dir", P.POSITIONAL_OR_KEYWORD),
              P("model", P.POSITIONAL_OR_KEYWORD, default=None, annotation="SamModel | None")]
    params += [P(f.name, P.KEYWORD_ONLY, default=f.default, annotation=f.type) for f in dataclasses.fields(FinetuneConfig)]
    return inspect.Signature(params, return_annotation="FinetuneResult")


finetune.__signature__ = _published_signature()


def _finetune(dataset, out_dir, model, cfg: FinetuneConfig) -> FinetuneResult:
    epochs, lr, batch_size, seed, box_jitter = cfg.epochs, cfg.lr, cfg.batch_size, cfg.seed, cfg.box_jitter
    train_prompt_encoder, val_cases, val_fraction, cases = cfg.train_prompt_encoder, cfg.val_cases, cfg.val_fraction, cfg.cases
    max_slices_per_case, labels, max_minutes, clicks = cfg.max_slices_per_case, cfg.labels, cfg.max_minutes, cfg.clicks
    precision, resume, overwrite, progress = cfg.precision, cfg.resume, cfg.overwrite, cfg.progress
    tolerance = cfg.guard_tolerance
    call_started = time.perf_counter()
    dataset = check_dataset(dataset)
    model = check_model(model)
    epochs, batch_size = check_int(epochs, "epochs", 1), check_int(batch_size, "batch_size", 1)
    seed, box_jitter = check_int(seed, "seed", 0), check_int(box_jitter, "box_jitter (pixels at 1024 scale)", 0)
    lr = check_float(lr, "lr", 0.0, math.inf)
    clicks = check_int(clicks, "clicks", 0)
    autocast = train_autocast(precision, model.device)
    val_fraction = check_float(val_fraction, "val_fraction", -1e-12, 1.0)
    labels = check_labels(labels)
    if max_minutes is not None:
        max_minutes = check_float(max_minutes, "max_minutes", 0.0, math.inf)
    if tolerance is not None:
        tolerance = check_float(tolerance, "guard_tolerance (validation Dice)", 0.0, 1.0)
    if not isinstance(out_dir, (str, os.PathLike)) or (Path(out_dir).exists() and not Path(out_dir).is_dir()):
        raise InputError(f"out_dir must be a folder path (it is created if missing), got {out_dir!r}.")
    out_dir = Path(out_dir)
    check_writable(out_dir, "out_dir")  # before the embeddings and the training, not after them
    ctx = init_distributed(model.device)  # under torchrun: DDP over the ranks (gloo on CPU, NCCL on GPU)
    progress = progress and ctx.is_main
    torch.manual_seed(seed)
    chosen = select_slices(dataset, "train", cases, max_slices_per_case)
    train_cases, val_cases = _split_cases(chosen, val_cases, val_fraction, seed)
    targets = dataset.manifest.merge(chosen[["case", "slice"]], on=["case", "slice"])
    targets = targets[targets["split"] == "train"]
    if labels is not None:
        targets = targets[targets["label"].isin(labels)]
    targets = targets.sort_values(["case", "slice", "label", "component"]).reset_index(drop=True)
    if targets.empty:
        raise InputError("no training targets selected; check cases=, labels= and max_slices_per_case=.")
    loss = resolve_loss(cfg.loss, "weak" in targets and bool((targets["weak"].fillna("") != "").any()), clicks)
    config = {
        "model_name": model.name, "encoder_sha256": encoder_sha256(model), "dataset": str(dataset.root),
        "dataset_fingerprint": dataset_fingerprint(dataset),
        "lr": float(lr), "batch_size": int(batch_size), "seed": int(seed), "box_jitter": int(box_jitter),
        "train_prompt_encoder": bool(train_prompt_encoder), "train_cases": train_cases, "val_cases": val_cases,
        "max_slices_per_case": max_slices_per_case, "labels": labels, "epochs": int(epochs),
        **({"clicks": int(clicks)} if clicks else {}), **({"precision": precision} if precision != "fp32" else {}),
        "loss": loss_config(loss), "guard_tolerance": tolerance,
    }

    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    for p in (last_path, best_path, out_dir / "history.csv"):  # checked before the first step, not after an epoch
        if p.exists() and not p.is_file():
            raise InputError(f"{p} is a {'folder' if p.is_dir() else 'special file'}, not a checkpoint file; "
                             "move it away (finetune writes its checkpoints there), or choose another out_dir.")
    if not resume and not overwrite and last_path.exists():  # refused before anything is computed or written
        raise InputError(f"{out_dir} already holds a fine-tuning run (last.pt); pass resume=True to "
                         "continue it, overwrite=True to start again, or choose another out_dir.")
    ckpt = _read_last(last_path) if resume and last_path.is_file() else None
    if ckpt is not None:  # before the embeddings are computed
        old = json.loads(ckpt["config"])
        diff = [k for k in _RESUME_KEYS if old.get(k, _RESUME_DEFAULTS.get(k)) != config.get(k)]
        if diff:
            raise InputError(f"cannot resume {last_path}: {_differs(diff)}; use the same dataset and "
                             "settings, or overwrite=True / another out_dir to start a new run.")
    store = embed(dataset, model, cases=train_cases + val_cases, max_slices_per_case=max_slices_per_case,
                  split="train", progress=progress)
    images = bool(getattr(loss, "needs_image", False))
    train = load_targets(dataset, model, targets[targets["case"].isin(train_cases)], store, images=images)
    val = (load_targets(dataset, model, targets[targets["case"].isin(val_cases)], store, images=images)
           if val_cases else None)
    if len(train["rows"]) == 0:
        raise InputError("the training cases have no targets with the chosen labels.")
    counts = targets_per_label(dataset, train, val, labels)
    if progress:
        print("targets per label (train / val / dropped by preprocess's minimum size): " + ", ".join(
            f"{name} {c['train']}/{c['val']}/{c['dropped_by_preprocess']}" for name, c in counts.items()))
    never = [name for name, c in counts.items() if c["train"] == 0]
    if never:
        warnings.warn(f"labels {never} have no training target: the fine-tuned decoder never sees them (too "
                      "small for preprocess's minimum size, or absent from the training cases); lower "
                      "min_pixels / use min_mm2= in preprocess, or add cases.", stacklevel=2)

    train_prompt_encoder = bool(train_prompt_encoder or clicks)  # clicks train the point embeddings too
    trainee = _trainee(model, train_prompt_encoder)
    params = [p for p in trainee.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    history: list[dict] = []
    start_epoch = 0  # epoch 0: the starting decoder, validated before any training
    out_dir.mkdir(parents=True, exist_ok=True)
    if ctx.is_main:  # a kill during _save_atomic leaves a whole temporary copy of a run file behind
        for stale in out_dir.glob(f"{TMP_PREFIX}*"):  # only our own temporary names, never a user's file
            stale.unlink(missing_ok=True)
    if ckpt is not None:
        trainee.load_state_dict(ckpt["model"], strict=False)
        optimizer.load_state_dict(ckpt["optimizer"])
        history = list(ckpt["history"])
        start_epoch = int(ckpt["epoch"]) + 1

    base_checkpoint = _base_checkpoint(model)  # read once, not every epoch
    forward = data_parallel(trainee, click_forward if clicks else target_forward)  # under torchrun through DDP
    best_epoch = choose_epoch(history, tolerance) if history else -1
    shift = int(round(box_jitter * model.input_size / 1024))
    n = len(train["rows"])
    steps = math.ceil(n / batch_size)
    epoch_bar = tqdm(range(start_epoch, int(epochs) + 1), desc="finetune", unit="epoch", disable=not progress)
    last_epoch_seconds = 0.0
    for epoch in epoch_bar:
        elapsed = time.perf_counter() - call_started
        if max_minutes is not None and epoch > max(start_epoch, 1) and from_main(
                elapsed + last_epoch_seconds > 60 * max_minutes):  # rank 0's clock decides for all ranks
            break
        rng = np.random.default_rng([seed, epoch])  # per-epoch stream: resume repeats it exactly
        order = rng.permutation(n)
        if epoch and getattr(loss, "self_train", 0) > 0 and epoch >= getattr(loss, "self_train_from", 1):
            train["pseudo"] = own_predictions(trainee, store, train, batch_size)  # self-training targets
        trainee.mask_decoder.train()
        total, t0 = 0.0, time.perf_counter()
        for step in tqdm(range(steps if epoch else 0), desc=f"epoch {epoch}", unit="step", leave=False,
                         disable=not progress or epoch == 0):
            idx = order[step * batch_size:(step + 1) * batch_size]
            boxes = jitter_boxes(train["boxes"][idx], train["content_hw"][idx], shift, rng)  # whole global batch
            idx, boxes, count, weight = rank_share(idx, boxes)  # this rank's part (all of it in one process)
            with autocast():  # bf16: the forward pass only; the loss is on fp32 logits
                if clicks:
                    step_loss = forward(store, train, idx, boxes, clicks, rng)
                else:
                    logits = forward(store, train, idx, boxes)
                    step_loss = loss(logits, loss_batch(train, idx, logits.device))
            optimizer.zero_grad(set_to_none=True)
            (step_loss * weight).backward()  # DDP's mean over ranks of weight × loss = the global batch's mean loss
            optimizer.step()
            total += step_loss.item() * count
        train_seconds = time.perf_counter() - t0
        trainee.weights_changed()  # the optimizer changed them in place
        total = all_sum(total)  # every rank's share of the epoch's loss
        trainee.mask_decoder.eval()
        t0 = time.perf_counter()
        scores = (validate(trainee, store, val, batch_size, loss) if val and ctx.is_main
                  else {"val_loss": math.nan, "val_dice": math.nan})
        trained = n if epoch else 0
        row = {"epoch": epoch, "train_loss": total / n if epoch else math.nan, **scores, "train_samples": trained,
               "train_seconds": train_seconds, "samples_per_s": trained / train_seconds if epoch else math.nan,
               "val_seconds": time.perf_counter() - t0}
        row = from_main(row)  # rank 0 validates; every rank keeps the same history
        val_dice = row["val_dice"]
        history.append(row)
        chosen_epoch = choose_epoch(history, tolerance)
        improved = chosen_epoch == epoch and chosen_epoch != best_epoch
        best_epoch = chosen_epoch
        if ctx.is_main:  # one writer: the files are those of a single-process run
            ckpt = {
                "format": CHECKPOINT_FORMAT, "model": _trained_state(trainee, train_prompt_encoder),
                "model_name": model.name, "base_checkpoint": base_checkpoint,
                "encoder_sha256": config["encoder_sha256"], "config": json.dumps(config),
                "preset": json.dumps(dataset.preset.to_dict()), **({"clicks": str(clicks)} if clicks else {}),
                "optimizer": optimizer.state_dict(), "epoch": epoch, "history": history,
            }
            if improved:  # best before last: a kill between the two leaves last.pt at the previous
                _save_atomic(ckpt, best_path)  # epoch, so the resume redoes this one (same RNG stream)
            _save_atomic(ckpt, last_path)
            _save_atomic(pd.DataFrame(history), out_dir / "history.csv")
        epoch_bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_dice=f"{val_dice:.3f}")
        last_epoch_seconds = time.perf_counter() - call_started - elapsed
    if ctx.is_main and not best_path.exists():  # resumed a finished run
        _save_atomic(torch.load(last_path, map_location="cpu", weights_only=True), best_path)
    barrier()  # under torchrun every rank returns once rank 0 has written the files
    best_epoch = choose_epoch(history, tolerance)
    text, change, kept = guard_summary(history, best_epoch, tolerance, val_cases)
    if kept:
        warnings.warn(text, stacklevel=3)
    elif progress:
        print(text)
    return FinetuneResult(best_path, last_path, pd.DataFrame(history), train_cases, val_cases, counts,
                          best_epoch=best_epoch, kept_pretrained=kept, change=change, summary=text, tolerance=tolerance)
