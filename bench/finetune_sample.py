"""The full sample experiment: pretrained vs fine-tuned LiteMedSAM on held-out brain-MRI subjects.

Prepares the sample dataset (8 subjects, ``sub-07``/``sub-08`` held out, 256 px), embeds every
slice, evaluates the pretrained model on the test subjects, fine-tunes the mask decoder on the
training subjects, evaluates the fine-tuned model, and records the numbers and wall times::

    python bench/finetune_sample.py [--dataset bench/work/sample_dataset] [--epochs 6] [--lr 1e-4]

Writes its section of ``bench/RESULTS.md`` and ``bench/work/finetune_sample.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

from bench_core import ROOT, machine, prepare, write_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=ROOT / "bench" / "work" / "sample_dataset")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "work" / "finetune_sample")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget of finetune()")
    parser.add_argument("--tag", default="", help="suffix of the RESULTS.md section (several runs side by side)")
    parser.add_argument("--note", default="", help="a sentence added to the RESULTS.md section")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import medsam_lite as ml

    started = datetime.datetime.now()
    load_before = os.getloadavg()
    prepare(args.dataset)
    model = ml.load_model()
    times = {}
    t0 = time.perf_counter()
    store = ml.embed(args.dataset, model)
    times["embed"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    case0, label0 = ml.evaluate(model, args.dataset, split="test")
    times["evaluate_pretrained"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = ml.finetune(args.dataset, args.out, model, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         seed=args.seed, max_minutes=args.max_minutes, overwrite=True)
    times["finetune"] = time.perf_counter() - t0
    tuned = ml.load_model(checkpoint=result.best)
    t0 = time.perf_counter()
    case1, label1 = ml.evaluate(tuned, args.dataset, split="test")
    times["evaluate_finetuned"] = time.perf_counter() - t0
    load_after = os.getloadavg()

    table = label0[["dsc", "nsd"]].add_suffix("_pretrained").join(label1[["dsc", "nsd"]].add_suffix("_finetuned"))
    res = {"date": started.isoformat(timespec="minutes"), "machine": machine(), "threads": args.threads,
           "load_before": load_before, "load_after": load_after, "times_s": times,
           "embedded_slices": int(store.done.sum()), "epochs": args.epochs, "lr": args.lr,
           "train_cases": result.train_cases, "val_cases": result.val_cases,
           "best_epoch": int(torch.load(result.best, weights_only=True)["epoch"]),
           "per_label": table.round(4).to_dict(), "history": result.history.round(4).to_dict("records"),
           "per_case_pretrained": case0.round(4).to_dict("records"), "per_case_finetuned": case1.round(4).to_dict("records")}
    (ROOT / "bench" / "work").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "work" / "finetune_sample.json").write_text(json.dumps(res, indent=1))

    rows = "\n".join(f"| {name} | {r.dsc_pretrained:.3f} | {r.dsc_finetuned:.3f} | {r.dsc_finetuned - r.dsc_pretrained:+.3f} "
                     f"| {r.nsd_pretrained:.3f} | {r.nsd_finetuned:.3f} |" for name, r in table.iterrows())
    hist = "\n".join(f"| {int(h['epoch'])} | {h['train_loss']:.3f} | {h['val_dice']:.3f} | {h['train_seconds']:.0f} "
                     f"| {h['samples_per_s']:.2f} |" for h in res["history"])
    n_train = int(result.history["train_samples"].iloc[-1])  # row 0: epoch 0
    budget = f", budget {args.max_minutes:g} min" if args.max_minutes else ""
    write_section("finetune_sample" + args.tag, f"""
## Fine-tuning on the sample dataset (`bench/finetune_sample.py --epochs {args.epochs}{' --max-minutes ' + format(args.max_minutes, 'g') if args.max_minutes else ''}`)

{res['date']} · {res['machine']} · torch threads {args.threads} · load average before/after
{load_before[0]:.1f}/{load_after[0]:.1f} (shared machine: wall times include other jobs' load).

Train on {', '.join(result.train_cases)} ({n_train} targets), validate on {', '.join(result.val_cases)},
test on the held-out sub-07 and sub-08. Decoder only, Adam lr {args.lr:g} (the paper's 1e-5 needs many
more epochs than a CPU budget allows), batch {args.batch_size}, box jitter 0–20 px at 1024 scale, seed {args.seed},
{int(result.history["epoch"].max())} of {args.epochs} epochs{budget}, best epoch by validation Dice: {res['best_epoch']}. 3D DSC / NSD (1 mm) per case and
label on the stored 256-px slices, averaged over the two test subjects.

| label | DSC pretrained | DSC fine-tuned | gain | NSD pretrained | NSD fine-tuned |
|---|---|---|---|---|---|
{rows}

Wall times: `embed` of {res['embedded_slices']} slices {times['embed'] / 60:.1f} min (0 if already stored) ·
`finetune` {times['finetune'] / 60:.1f} min · `evaluate` {times['evaluate_pretrained']:.0f} s (pretrained),
{times['evaluate_finetuned']:.0f} s (fine-tuned). {args.note}

| epoch | train loss | val Dice | train s | samples/s |
|---|---|---|---|---|
{hist}
""")
    print(table.round(3).to_string())
    print(json.dumps(times))


if __name__ == "__main__":
    main()
