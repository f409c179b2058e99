"""The fine-tuning configuration (one dataclass, the one place of defaults), what a run returns, and
the guard against the pretrained model: which epoch ``best.pt`` holds, and the sentence that says why.

The guard: the starting decoder is validated before training (epoch 0); ``best.pt`` is the epoch with
the best mean validation Dice among the epochs whose validation Dice of every label is at most
``guard_tolerance`` below epoch 0's (epoch 0 always qualifies; ties → the earlier epoch).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import InputError

__all__ = ["FinetuneConfig", "FinetuneResult", "GUARD_TOLERANCE", "choose_epoch", "guard_summary", "qualifies",
           "held_out_report"]

#: The default of :attr:`FinetuneConfig.guard_tolerance`: a checkpoint may lose at most this much
#: validation Dice on any label against the pretrained decoder (epoch 0) to be chosen as ``best.pt``.
GUARD_TOLERANCE = 0.01


@dataclass
class FinetuneConfig:
    """Every setting of :func:`finetune`, with its default (the one place the defaults live).

    ``finetune(ds, out, model, epochs=4, lr=1e-4)`` and ``finetune(ds, out, model,
    config=FinetuneConfig(epochs=4, lr=1e-4))`` are the same call; keywords given beside ``config``
    replace its fields. See :func:`finetune` for what each field does.
    """

    epochs: int = 10
    lr: float = 1e-5
    batch_size: int = 8
    seed: int = 0
    box_jitter: int = 20
    train_prompt_encoder: bool = False
    val_cases: object = None
    val_fraction: float = 0.2
    cases: object = None
    max_slices_per_case: int | None = None
    labels: object = None
    max_minutes: float | None = None
    clicks: int = 0
    precision: str = "fp32"
    loss: object = None
    guard_tolerance: float | None = GUARD_TOLERANCE
    resume: bool = False
    overwrite: bool = False
    progress: bool = True

    def replace(self, **changes) -> "FinetuneConfig":
        """A copy with ``changes``; an unknown name is an InputError listing the known ones."""
        known = set(self.__dataclass_fields__)
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InputError(f"finetune() got unknown setting(s) {unknown}; the settings are {sorted(known)} "
                             "(see help(medsam_lite.FinetuneConfig)).")
        return dataclasses.replace(self, **changes)


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns.

    Attributes:
        best: path of the chosen checkpoint (``best.pt``; see :func:`finetune`'s guard).
        last: path of the latest epoch's checkpoint (``last.pt``).
        history: one row per epoch, **epoch 0 = the starting (pretrained) decoder, validated before
            any training** (its ``train_loss`` is NaN, ``train_samples`` 0): ``epoch``,
            ``train_loss``, ``val_loss``, ``val_dice`` (mean over validation targets),
            ``val_dice_<label name>`` (mean per label), ``train_samples``, ``train_seconds``,
            ``samples_per_s`` (training loop only), ``val_seconds``. Without validation cases the
            ``val_*`` columns are NaN.
        train_cases, val_cases: the case ids used for training and for validation (``val_cases``
            empty: no validation, ``best.pt`` = the last epoch).
        targets_per_label: label name → ``{"train": n, "val": n, "dropped_by_preprocess": n}``: how
            many targets each label had (a label with 0 training targets was never trained on —
            e.g. a small organ below ``preprocess``'s minimum size at coarse spacing).
        best_epoch: the epoch ``best.pt`` holds (0: the starting decoder was kept).
        kept_pretrained: True when no trained epoch passed the guard and ``best.pt`` is the
            starting decoder.
        change: label name → ``{"epoch0", "best", "change"}``: validation Dice of the starting
            decoder, of ``best.pt``, and the difference (empty without validation).
        summary: the sentences the run printed about its choice (also for ``progress=False``).
        tolerance: the run's ``guard_tolerance`` (validation Dice; None: the guard was off).
    """

    best: Path
    last: Path
    history: pd.DataFrame
    train_cases: list
    val_cases: list
    targets_per_label: dict = field(default_factory=dict)
    best_epoch: int = 0
    kept_pretrained: bool = False
    change: dict = field(default_factory=dict)
    summary: str = ""
    tolerance: float | None = GUARD_TOLERANCE

    def held_out(self, before: pd.DataFrame, after: pd.DataFrame, metric: str = "dsc") -> tuple[pd.DataFrame, str]:
        """Per-label held-out scores of the pretrained model (``before``) and of ``best.pt`` (``after``),
        side by side with the validation change that chose ``best.pt``, and a sentence computed from them.

        Args:
            before, after: :func:`medsam_lite.evaluate` summaries (index: label names and ``"mean"``;
                a ``metric`` column) of the pretrained model and of the chosen checkpoint on the
                same held-out cases.

        Returns:
            ``(table, text)``: ``table`` indexed by label with ``pretrained``, ``chosen``, ``change``
            (held-out, chosen − pretrained), ``val_change`` (validation Dice change at ``best.pt``'s
            epoch against epoch 0; NaN without validation targets of the label) and ``below`` (held-out
            change < −tolerance); ``text`` names every label below the pretrained model by more than the
            tolerance and why the guard kept ``best.pt`` anyway (validation and test disagree, no
            validation target of the label, no validation at all, or the guard was off).
        """
        return held_out_report(self, before, after, metric)

    @property
    def best_row(self) -> pd.Series:
        """The ``history`` row of ``best.pt``'s epoch (use it rather than ``val_dice.idxmax()``, which
        fails without validation and ignores the guard)."""
        return self.history.set_index("epoch").loc[self.best_epoch]


def held_out_report(result: FinetuneResult, before: pd.DataFrame, after: pd.DataFrame,
                    metric: str = "dsc") -> tuple[pd.DataFrame, str]:
    """See :meth:`FinetuneResult.held_out`."""
    tol = result.tolerance
    limit = GUARD_TOLERANCE if tol is None else tol
    names = [n for n in before.index if n != "mean" and n in after.index]
    rows = []
    for n in names:
        d0, d1 = float(before.loc[n, metric]), float(after.loc[n, metric])
        val = result.change.get(n, {}).get("change", math.nan)
        rows.append({"label": n, "pretrained": d0, "chosen": d1, "change": d1 - d0, "val_change": float(val),
                     "below": d1 - d0 < -limit})
    table = pd.DataFrame(rows, columns=["label", "pretrained", "chosen", "change", "val_change", "below"]).set_index("label")
    what = f"epoch {result.best_epoch}" + (" (the pretrained decoder)" if result.best_epoch == 0 else "")
    below = table[table["below"]]
    if below.empty:
        worst = table["change"].idxmin() if len(table) else None
        tail = f" (smallest change: {worst} {table.loc[worst, 'change']:+.3f})" if worst is not None else ""
        return table, (f"best.pt = {what}: no label's held-out {metric.upper()} is below the pretrained model's by more "
                       f"than the tolerance {limit:g}{tail}.")
    parts = []
    for n, r in below.iterrows():
        head = f"{n} {r['pretrained']:.3f} → {r['chosen']:.3f} ({r['change']:+.3f})"
        if tol is None:
            why = "the guard was off (guard_tolerance=None)"
        elif not result.val_cases:
            why = "there was no validation case, so nothing guarded best.pt"
        elif math.isnan(r["val_change"]):
            why = f"the validation cases hold no {n} target, so the guard could not see it"
        else:
            why = (f"on the validation case(s) {', '.join(map(str, result.val_cases))} its Dice changed by "
                   f"{r['val_change']:+.3f} at {what} (the guard refuses only a validation drop of more than "
                   f"{tol:g}), so the guard kept it: validation and held-out test disagree")
        parts.append(f"{head}: {why}")
    return table, (f"best.pt = {what}; held-out {metric.upper()} below the pretrained model's by more than the "
                   f"tolerance {limit:g}: " + "; ".join(parts) + ".")


def label_columns(history: list[dict]) -> list[str]:
    return sorted({k for h in history for k in h if k.startswith("val_dice_")})


def qualifies(row: dict, base: dict | None, tolerance: float | None) -> bool:
    """Whether ``row`` loses no label's validation Dice by more than ``tolerance`` against ``base``."""
    if base is None or tolerance is None:
        return True
    for col in label_columns([base]):
        b, r = base.get(col, math.nan), row.get(col, math.nan)
        if not math.isnan(b) and (math.isnan(r) or r < b - tolerance):
            return False
    return True


def choose_epoch(history: list[dict], tolerance: float | None) -> int:
    """The epoch ``best.pt`` must hold: best mean validation Dice among the epochs that pass the guard
    against epoch 0 (epoch 0 itself always passes; ties → the earlier). Without validation: the last.
    ``tolerance=None``: no guard, the best trained epoch (epoch 0 is no candidate, as before the guard)."""
    scored = [h for h in history if not math.isnan(h.get("val_dice", math.nan))]
    if not scored:
        return int(history[-1]["epoch"])
    base = next((h for h in scored if int(h["epoch"]) == 0), None)
    pool = [h for h in scored if (tolerance is not None or int(h["epoch"]) > 0) and qualifies(h, base, tolerance)]
    if not pool:  # tolerance=None and only epoch 0 so far
        return int(history[-1]["epoch"])
    return int(max(pool, key=lambda h: (h["val_dice"], -int(h["epoch"])))["epoch"])


def guard_summary(history: list[dict], best_epoch: int, tolerance: float | None, val_cases: list) -> tuple[str, dict, bool]:
    """``(text, per-label change, kept_pretrained)`` of a run's choice of ``best.pt``."""
    rows = {int(h["epoch"]): h for h in history}
    last = int(history[-1]["epoch"])
    if not val_cases:
        return (f"no validation case (a dataset with a single training case, val_fraction=0 or val_cases=[]): "
                f"best.pt is the last epoch ({last}); nothing guards it against the pretrained decoder — check "
                "it on held-out cases (medsam_lite.evaluate).", {}, False)
    base, best = rows.get(0), rows[best_epoch]
    change = {}
    if base is not None:
        for col in label_columns([base]):
            name = col[len("val_dice_"):]
            change[name] = {"epoch0": float(base[col]), "best": float(best.get(col, math.nan)),
                            "change": float(best.get(col, math.nan) - base[col])}
    per_label = ", ".join(f"{n} {c['epoch0']:.3f} → {c['best']:.3f} ({c['change']:+.3f})" for n, c in change.items())
    kept = best_epoch == 0 and last > 0
    if tolerance is None:
        head = f"best.pt = epoch {best_epoch} (best mean validation Dice; guard off)"
    elif kept:
        losers = sorted({col[len('val_dice_'):] for h in history if int(h["epoch"]) > 0
                         for col in label_columns([base]) if h.get(col, math.nan) < base[col] - tolerance})
        head = (f"no trained epoch kept every label within {tolerance} validation Dice of the pretrained decoder "
                f"(lost: {', '.join(losers)}): best.pt is the starting decoder (epoch 0)") if losers else (
                "no trained epoch scored a higher mean validation Dice than the pretrained decoder: best.pt is the "
                "starting decoder (epoch 0)")
    else:
        head = (f"best.pt = epoch {best_epoch}: the best mean validation Dice among the epochs that lose no label "
                f"by more than {tolerance} against the pretrained decoder (epoch 0)")
    return f"{head}. Validation Dice per label, epoch 0 → best: {per_label}.", change, kept
