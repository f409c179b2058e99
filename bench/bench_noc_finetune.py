"""NoC@90 before and after ``finetune(clicks=3)`` on the user's own data (issue 20's "Done means").

The real CT sample (``data_samples/ct_abdomen``) plays the user's data: it is prepared with
``case-03`` held out as the test case (``--scan MR``: ``data_samples/mr_abdomen``, ``case-02``
held out). On the test case, in one run:

1. ``ml.evaluate(load_model(), ..., clicks=K)`` — the model as shipped (box-only prompts: the
   published decoder; clicks: the shipped click decoder);
2. ``ml.finetune(..., clicks=3)`` on the other cases (a few epochs, ``--max-slices`` central
   slices per case, a wall-clock budget) — the user's own click training;
3. ``ml.evaluate(load_model(checkpoint=best.pt), ..., clicks=K)`` — the fine-tuned checkpoint, whose
   own decoder answers boxes and clicks (``load_model`` attaches no shipped click decoder to it).

Reports per organ the 3D Dice after the box and after 1 … K robot clicks (``dsc@k``) and NoC@85 /
NoC@90 (clicks until the 3D Dice of the case reaches 0.85 / 0.90, capped at K: a target never
reached counts K), before and after. Writes ``bench/work/bench_noc_finetune_<scan>.json`` and, with
``--write``, its section of ``bench/RESULTS.md``::

    PYTHONPATH=. OMP_NUM_THREADS=1 python bench/bench_noc_finetune.py --threads 1 [--scan CT] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time

from bench_core import ROOT, machine, write_section

SCANS = {"CT": ("ct_abdomen_dir", "case-03", [1, 2, 3, 5, 6, 52, 63]),
         "MR": ("mr_abdomen_dir", "case-02", [1, 2, 3, 5, 6, 23, 24])}


def run(args) -> dict:
    import torch

    import medsam_lite as ml
    from medsam_lite import samples

    torch.set_num_threads(args.threads)
    folder, test_case, labels = SCANS[args.scan]
    work = ROOT / "bench" / "work" / f"noc_{args.scan.lower()}"
    dataset = work / "dataset"
    from medsam_lite.data.sources import shared_sources

    source = getattr(samples, folder)()
    cases = sorted(p.name[:-len(".nii.gz")] for p in source.glob("*.nii.gz") if not p.name.endswith("_label.nii.gz"))
    shared = shared_sources({c: source / f"{c}.nii.gz" for c in cases if c != test_case},
                            {test_case: source / f"{test_case}.nii.gz"})
    for note in shared:  # the bundled samples are slabs of one scan: say so wherever the numbers appear
        print(f"WARNING: {note}")
    load_before = os.getloadavg()
    times = {}
    t0 = time.perf_counter()
    ml.preprocess(getattr(samples, folder)(), dataset, modality=args.scan, test_cases=[test_case], labels=labels,
                  min_mm2=64, progress=False)
    times["preprocess"] = time.perf_counter() - t0
    shipped = ml.load_model(backend=args.backend)
    t0 = time.perf_counter()
    case0, label0 = ml.evaluate(shipped, dataset, split="test", clicks=args.clicks, progress=False)
    times["evaluate_shipped"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = ml.finetune(dataset, work / "run", shipped, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         seed=args.seed, clicks=3, val_fraction=0, max_slices_per_case=args.max_slices,
                         max_minutes=args.max_minutes, overwrite=True, progress=False)
    times["finetune"] = time.perf_counter() - t0
    tuned = ml.load_model(checkpoint=result.best, backend=args.backend)
    assert tuned.click_decoder is None, "a finetune(clicks=3) checkpoint must answer clicks with its own decoder"
    assert tuned.prompt_parts(clicks=True) == (tuned.prompt_encoder, tuned.mask_decoder)
    t0 = time.perf_counter()
    case1, label1 = ml.evaluate(tuned, dataset, split="test", clicks=args.clicks, progress=False)
    times["evaluate_finetuned"] = time.perf_counter() - t0
    history = result.history
    return {"scan": args.scan, "test_case": test_case, "date": datetime.datetime.now().isoformat(timespec="minutes"),
            "machine": machine(), "threads": args.threads, "backend": shipped.runtime.name if shipped.runtime else "torch",
            "load_before": load_before, "load_after": os.getloadavg(), "times_s": times,
            "train_cases": result.train_cases, "epochs_run": int(history["epoch"].max()), "epochs": args.epochs, "lr": args.lr,
            "max_slices": args.max_slices, "max_minutes": args.max_minutes,
            "train_targets": int(history["train_samples"].iloc[-1]), "clicks": args.clicks,
            "shipped_click_decoder": shipped.click_decoder is not None,
            "per_label_shipped": label0.round(4).to_dict(), "per_label_finetuned": label1.round(4).to_dict(),
            "per_case_shipped": case0.round(4).to_dict("records"),
            "per_case_finetuned": case1.round(4).to_dict("records"),
            "history": history.round(4).to_dict("records"), "shared_sources": shared}


def table(res: dict) -> str:
    k = res["clicks"]
    a, b = res["per_label_shipped"], res["per_label_finetuned"]
    cols = ["dsc"] + [f"dsc@{c}" for c in range(1, k + 1)]
    head = ("| organ | " + " | ".join(f"{c} before → after" for c in ["box"] + [f"+{c}" for c in range(1, k + 1)])
            + " | NoC@85 before → after | NoC@90 before → after |")
    lines = [head, "|---" * (len(cols) + 3) + "|"]
    for organ in a["dsc"]:
        cells = [f"{a[c][organ]:.3f} → {b[c][organ]:.3f}" for c in cols]
        cells += [f"{a[n][organ]:.2f} → {b[n][organ]:.2f}" for n in ("noc85", "noc90")]
        name = "**mean over organs**" if organ == "mean" else organ
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def section(results: list[dict], note: str = "") -> str:
    threads = sorted({res["threads"] for res in results})
    parts = [f"## NoC before/after finetune(clicks=3) (`bench/bench_noc_finetune.py --threads "
             f"{'/'.join(map(str, threads))}`)", ""]
    for res in results:
        t = res["times_s"]
        parts += [
            f"**{res['scan']}**, {res['date']} · {res['machine']} · torch threads {res['threads']} · backend "
            f"{res['backend']} · load average before/after {res['load_before'][0]:.1f}/{res['load_after'][0]:.1f}"
            + (" (shared machine, other jobs running: wall times are inflated)."
               if max(res['load_before'][0], res['load_after'][0]) > 2.5 else " (idle machine)."),
            "",
            f"The real {res['scan']} sample is the user's data: test case {res['test_case']} held out; "
            f"`finetune(clicks=3)` on {', '.join(res['train_cases'])} ({res['train_targets']} targets: at most "
            f"{res['max_slices']} central slices per case, organs ≥ 64 mm²), Adam lr {res['lr']:g}, "
            f"{res['epochs_run']} of {res['epochs']} epochs (budget {res['max_minutes']:g} min), no validation split. "
            f"Before = `load_model()` as shipped (click decoder attached: {'yes' if res['shipped_click_decoder'] else 'no'}); "
            "after = `load_model(checkpoint=best.pt)` (its own fine-tuned decoder answers boxes and clicks). "
            f"`evaluate(..., clicks={res['clicks']})` on the test case: 3D Dice after the box and after each robot "
            f"click, NoC = clicks to reach the Dice, capped at {res['clicks']} (never reached counts {res['clicks']}).",
            "",
            table(res),
            ""]
        parts += [f"**Not held out:** {n}" for n in res.get("shared_sources", [])] + ([""] if res.get("shared_sources") else [])
        parts += [
            f"Wall times: evaluate (shipped) {t['evaluate_shipped']:.0f} s, finetune {t['finetune'] / 60:.1f} min, "
            f"evaluate (fine-tuned) {t['evaluate_finetuned']:.0f} s.",
            ""]
    return "\n".join(parts + ([note] if note else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", choices=sorted(SCANS), nargs="+", default=["CT"])
    parser.add_argument("--clicks", type=int, default=3, help="robot clicks in evaluate (NoC cap)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-slices", type=int, default=8, help="central slices per training case")
    parser.add_argument("--max-minutes", type=float, default=15.0, help="wall-clock budget of finetune()")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backend", default=None, help="load_model backend (default: auto)")
    parser.add_argument("--write", action="store_true", help="write the section of bench/RESULTS.md")
    parser.add_argument("--no-run", action="store_true", help="only write the section from the saved JSON files")
    parser.add_argument("--note", default="", help="a paragraph added at the end of the RESULTS.md section")
    args = parser.parse_args()
    results = []
    for scan in args.scan:
        out = ROOT / "bench" / "work" / f"bench_noc_finetune_{scan.lower()}.json"
        if args.no_run:
            results.append(json.loads(out.read_text()))
            continue
        args.scan = scan
        res = run(args)
        out.write_text(json.dumps(res, indent=1))
        print(table(res), flush=True)
        print(json.dumps(res["times_s"]), flush=True)
        results.append(res)
    if args.write:
        write_section("bench_noc_finetune", section(results, args.note))


if __name__ == "__main__":
    main()
