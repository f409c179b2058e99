"""Decoder fine-tuning in bf16 autocast vs fp32 (issue 22, item 3): samples/s and validation Dice.

On the bundled real CT (``data_samples/ct_abdomen``; ``preprocess(min_mm2=64)``, case-03 held out
as test, case-01 trains, case-02 validates), ``finetune(..., precision=P)`` for P in fp32 and bf16
with the same seed, lr and batch. The runs alternate epoch by epoch (``resume=True``), so both
see the same machine load (the speed-up is taken per epoch, bf16 against the fp32 epoch
right before it); an fp32 run with another seed gives the seed-to-seed spread of the
validation Dice ("noise"). Prints per-epoch rows and one JSON summary::

    OMP_NUM_THREADS=1 python bench/bench_train_precision.py [--epochs 6] [--lr 1e-4] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None, help="dataset folder to reuse (default: a temporary one)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    import medsam_lite as ml
    from medsam_lite import samples

    tmp = tempfile.mkdtemp(prefix="train_precision_")
    ds = args.work or Path(tmp) / "ds"
    if not (ds / "manifest.csv").exists():
        ml.preprocess(samples.ct_abdomen_dir(), ds, modality="CT", min_mm2=64, test_cases=["case-03"], progress=False)
    model = ml.load_model()
    ml.embed(ds, model, split="train", progress=False)
    runs = {"fp32": ("fp32", 0), "bf16": ("bf16", 0), "fp32_seed1": ("fp32", 1)}
    hist = {}
    load = [os.getloadavg()[0]]
    for epoch in range(1, args.epochs + 1):
        for name, (precision, seed) in runs.items():
            res = ml.finetune(ds, Path(tmp) / name, model, epochs=epoch, lr=args.lr, batch_size=args.batch_size,
                              seed=seed, val_cases=["case-02"], precision=precision, resume=epoch > 1,
                              overwrite=epoch == 1, progress=False)
            row = res.history.iloc[-1]
            hist.setdefault(name, []).append(row)
            print(f"epoch {epoch} {name:10s} samples/s {row['samples_per_s']:.2f} train_loss {row['train_loss']:.4f} "
                  f"val_dice {row['val_dice']:.4f}", flush=True)
        load.append(os.getloadavg()[0])
    sps = {k: round(sorted(float(r["samples_per_s"]) for r in v)[len(v) // 2], 3) for k, v in hist.items()}
    curve = {k: [round(float(r["val_dice"]), 4) for r in v] for k, v in hist.items()}
    out = {"threads": args.threads, "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
           "train_samples": int(hist["fp32"][0]["train_samples"]), "median_samples_per_s": sps,
           "bf16_speedup_per_epoch": [round(float(b["samples_per_s"] / f["samples_per_s"]), 2)
                                      for b, f in zip(hist["bf16"], hist["fp32"])],
           "val_dice": curve,
           "max_abs_diff_bf16_vs_fp32": round(max(abs(a - b) for a, b in zip(curve["bf16"], curve["fp32"])), 4),
           "max_abs_diff_seed1_vs_seed0": round(max(abs(a - b) for a, b in zip(curve["fp32_seed1"], curve["fp32"])), 4),
           "load_min_max": [min(load), max(load)], "avx512_bf16": torch.cpu._is_avx512_bf16_supported(),
           "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
