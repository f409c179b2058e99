"""Fine-tuning from boxes alone vs from masks (issue 33): DSC per label on held-out brain subjects.

Data: the bundled synthetic brain MR (``data_samples/brain_mri``, 8 subjects). Held out **by
subject**: ``--test`` subjects are scored, the others train. Two prepared datasets with the same
slices: *masks* (the label maps) and *boxes* (every training target's tight 2D box, written as a
weak-label CSV with :func:`medsam_lite.io.weaklabels.write_weak_labels`, the training subjects given
to ``preprocess`` **without** label maps; the test subjects keep theirs, only to score).

Arms, all with the same seed, epochs, lr, batch and training slices (``--slices`` central slices
per subject), no validation split (best.pt = last epoch; the guard is not what is measured here):

* ``pretrained``: ``load_model()`` as shipped;
* ``mask``: ``finetune`` on the masks (Dice + BCE);
* ``box``: ``finetune`` on the boxes with ``BoxSupervisedLoss`` (projection + pairwise);
* ``box_pseudo``: ``box`` + intensity pseudo-masks (inside the box, intensities frequent there and
  rare in a band just outside it are foreground; ``BoxSupervisedLoss(pseudo=1)``);
* ``box_nopair``: projection (+ lines) only, no pairwise term (ablation);
* ``box_as_mask``: the filled box taken as the mask (``BoxAsMaskLoss``: the naive alternative);
* ``cc*``: the same losses on boxes drawn as an annotator would draw them: **one box per connected
  component** of a label on a slice (two boxes for two ventricles), derived from the training label
  maps (``preprocess(split_components=True)``: components of ≥ 100 px); ``preprocess`` (default
  ``split_components=False``) keeps one target per label and slice whose prompt is the boxes' bounding
  box (as the test prompts) and ``BoxSupervisedLoss`` constrains each box: ``cc`` = projection + pairwise
  (+ each box's fill), ``cc_out`` = + the outside term (``outside=1``: nothing outside the boxes is the
  object), ``cc_pseudo_out`` = + intensity pseudo-masks, ``cc_self_out`` = ``cc_out`` + self-training
  (the model's own confident pixels inside the boxes, refreshed each epoch from epoch 2), ``cc_as_mask`` =
  the union of filled boxes as the mask;
* ``box_out``: ``box`` + the outside term (one box per label and slice: is it the boxes or the term?).

Results of earlier invocations with the same ``--work`` folder are kept in ``<work>/results.json`` and
merged (run a few arms per invocation; ``--write`` summarises all of them).

Score: ``evaluate`` (3D DSC per label, truth boxes) on the test subjects' central ``--test-slices``
slices. "Recovered" = (box − pretrained) / (mask − pretrained) of the mean DSC over labels.
Writes a section at the end of bench/RESULTS.md with ``--write``::

    MEDSAM_LITE_THREADS=1 OMP_NUM_THREADS=1 python bench/bench_weak.py [--epochs 4] [--write]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

ARMS = ("mask", "box", "box_pseudo", "box_nopair", "box_as_mask", "cc", "cc_out", "cc_pseudo_out", "cc_self_out", "cc_as_mask",
        "box_out")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--slices", type=int, default=2, help="central slices per training subject")
    parser.add_argument("--test-slices", type=int, default=3, help="central slices per test subject")
    parser.add_argument("--train", default="sub-01,sub-02,sub-03,sub-04,sub-05")
    parser.add_argument("--test", default="sub-06,sub-07,sub-08")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="append the section to bench/RESULTS.md")
    parser.add_argument("--pseudo", type=float, default=1.0, help="pseudo-mask weight of the box_pseudo arm")
    parser.add_argument("--work", type=Path, default=None, help="folder to keep (and reuse) the prepared datasets")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    import medsam_lite as ml
    from medsam_lite import samples
    from medsam_lite.data.dataset import open_dataset
    from medsam_lite.io.weaklabels import WeakAnnotation, write_weak_labels
    from medsam_lite.train.losses import BoxAsMaskLoss, BoxSupervisedLoss, DiceBCELoss

    started = time.perf_counter()
    train, test = args.train.split(","), args.test.split(",")
    d = samples.brain_mri_dir()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_weak_"))
    both = {c: (d / f"{c}.nii.gz", d / f"{c}_label.nii.gz") for c in train + test}
    reuse = (work / "masks" / "manifest.csv").exists() and (work / "boxes_cc" / "manifest.csv").exists()
    masks = open_dataset(work / "masks").manifest if reuse else ml.preprocess(both, work / "masks", test_cases=test,
                                                                                  progress=False)
    rows = masks[masks["split"] == "train"]
    weak_source = {c: (d / f"{c}.nii.gz", None) for c in train} | {c: both[c] for c in test}
    if not reuse:
        boxes = [WeakAnnotation(r.case, int(r.label), "box", int(r.slice), (r.x0, r.y0, r.x1, r.y1))
                 for r in rows.itertuples()]
        write_weak_labels(work / "boxes.csv", boxes)
        ml.preprocess(weak_source, work / "boxes", test_cases=test, weak=work / "boxes.csv", progress=False)
        # one box per connected component (as an annotator draws two ventricles), on the same slices and labels
        comps = ml.preprocess({c: both[c] for c in train}, work / "components", test_fraction=0,
                              split_components=True, progress=False)
        keep = set(zip(rows["case"], rows["slice"], rows["label"]))
        cc = [WeakAnnotation(r.case, int(r.label), "box", int(r.slice), (r.x0, r.y0, r.x1, r.y1))
              for r in comps.itertuples() if (r.case, r.slice, r.label) in keep]
        write_weak_labels(work / "boxes_cc.csv", cc)
        ml.preprocess(weak_source, work / "boxes_cc", test_cases=test, weak=work / "boxes_cc.csv", progress=False)
    model = ml.load_model()
    kw = dict(max_slices_per_case=args.test_slices, progress=False)
    _, pre = ml.evaluate(model, work / "masks", **kw)
    store = work / "results.json"
    old = json.loads(store.read_text()) if store.exists() else {}
    results = old.get("results", {})
    results.setdefault("pretrained", {}).update({s: pre["dsc"].to_dict() for s in args.seeds.split(",")})
    losses = {"mask": ("masks", DiceBCELoss()), "box": ("boxes", BoxSupervisedLoss(outside=0.0)),
              "box_pseudo": ("boxes", BoxSupervisedLoss(pseudo=args.pseudo, outside=0.0)),
              "box_nopair": ("boxes", BoxSupervisedLoss(pairwise=0.0, outside=0.0)),
              "box_as_mask": ("boxes", BoxAsMaskLoss()),
              "cc": ("boxes_cc", BoxSupervisedLoss(outside=0.0)), "cc_out": ("boxes_cc", BoxSupervisedLoss(outside=1.0)),
              "cc_pseudo_out": ("boxes_cc", BoxSupervisedLoss(outside=1.0, pseudo=args.pseudo)),
              "cc_self_out": ("boxes_cc", BoxSupervisedLoss(outside=1.0, self_train=1.0)),
              "cc_as_mask": ("boxes_cc", BoxAsMaskLoss()), "box_out": ("boxes", BoxSupervisedLoss(outside=1.0))}
    seconds, targets = old.get("seconds", {}), old.get("targets", {})
    for arm in [a for a in args.arms.split(",") if a and a != "none"]:  # --arms none: only summarise
        folder, loss = losses[arm]
        for seed in args.seeds.split(","):
            t0 = time.perf_counter()
            r = ml.finetune(work / folder, work / f"ft_{arm}_{seed}", model, epochs=args.epochs, lr=args.lr,
                            batch_size=args.batch_size, seed=int(seed), val_fraction=0, loss=loss,
                            max_slices_per_case=args.slices, progress=False, overwrite=True)
            seconds[f"{arm}/{seed}"] = round(time.perf_counter() - t0, 1)
            targets[arm] = int(r.history["train_samples"].iloc[-1])
            _, after = ml.evaluate(ml.load_model(checkpoint=r.best), work / "masks", **kw)
            results.setdefault(arm, {})[seed] = after["dsc"].to_dict()
            print(arm, seed, json.dumps({k: round(v, 3) for k, v in after["dsc"].to_dict().items()}), flush=True)
            store.write_text(json.dumps({"results": results, "seconds": seconds, "targets": targets}, indent=1))
    labels = [k for k in pre.index if k != "mean"]
    results = {arm: per for arm, per in results.items() if arm in ("pretrained",) + ARMS}
    mean = {arm: {lab: sum(v[lab] for v in per.values()) / len(per) for lab in labels + ["mean"]}
            for arm, per in results.items()}
    by_seed = {arm: {sd: (v["mean"] - results["pretrained"][sd]["mean"]) / (results["mask"][sd]["mean"]
                                                                             - results["pretrained"][sd]["mean"])
                     for sd, v in per.items() if sd in results.get("mask", {}) and sd in results["pretrained"]}
               for arm, per in results.items() if arm not in ("pretrained", "mask")}
    gain = {arm: mean[arm]["mean"] - mean["pretrained"]["mean"] for arm in mean}
    recovered = {}
    for arm in mean:
        if arm in ("pretrained", "mask") or "mask" not in results:
            continue
        common = [sd for sd in results[arm] if sd in results["mask"] and sd in results["pretrained"]]
        g = [results[x][sd]["mean"] - results["pretrained"][sd]["mean"] for x in (arm, "mask") for sd in common]
        half = len(common)
        recovered[arm] = (sum(g[:half]) / sum(g[half:])) if half and sum(g[half:]) > 0 else float("nan")
    summary = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "slices": args.slices,
               "seeds": args.seeds, "train": train, "test": test, "train_targets": targets,
               "mean_dsc": {a: {k: round(v, 4) for k, v in m.items()} for a, m in mean.items()},
               "recovered": {a: round(v, 3) for a, v in recovered.items()},
               "recovered_by_seed": {a: {sd: round(v, 3) for sd, v in per.items()} for a, per in by_seed.items()},
               "seeds_by_arm": {a: sorted(per) for a, per in results.items()}, "finetune_seconds": seconds,
               "total_seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(summary, indent=1))
    if args.write:
        _write(summary, labels, args)


def _write(s: dict, labels: list, args) -> None:
    import torch

    arms = list(s["mean_dsc"])
    seeds = sorted({sd for a in arms for sd in s["seeds_by_arm"].get(a, [])})
    lines = [f"\n## Fine-tuning from boxes alone vs masks: one box per component (`bench/bench_weak.py --epochs "
             f"{s['epochs']}`, seeds {', '.join(seeds)})\n",
             f"{time.strftime('%Y-%m-%dT%H:%M')} · {platform.processor() or platform.machine()}, torch "
             f"{torch.__version__}, {args.threads} thread(s) · arms run a few per invocation, results merged from "
             f"`--work`'s results.json.\n",
             f"Synthetic brain MR, held out by subject: trained on {', '.join(s['train'])} ({args.slices} central "
             f"slices each; {s['train_targets'].get('mask', '?')} mask targets), scored on {', '.join(s['test'])} "
             f"({args.test_slices} central slices each) with `evaluate` (3D DSC from truth boxes: one box per label "
             f"and slice). Same data, {s['epochs']} epochs, Adam lr {s['lr']}, batch {s['batch_size']}, no validation "
             "split, the same seeds for every arm. The box arms never see a mask: the training subjects go to "
             "`preprocess` without label maps, with a weak-label CSV.\n",
             "| arm | seeds | " + " | ".join(labels) + " | mean | gain recovered vs mask (mean) | per seed |",
             "|---|---|" + "---|" * (len(labels) + 3)]
    for a in arms:
        rec = s["recovered"].get(a)
        per = s["recovered_by_seed"].get(a, {})
        lines.append(f"| {a} | {', '.join(s['seeds_by_arm'].get(a, []))} | "
                     + " | ".join(f"{s['mean_dsc'][a][k]:.3f}" for k in labels)
                     + f" | {s['mean_dsc'][a]['mean']:.3f} | {'' if rec is None else f'{rec:.0%}'} | "
                     + ", ".join(f"{sd}: {v:.0%}" for sd, v in sorted(per.items())) + " |")
    lines.append("\nArms: `mask` = Dice + BCE on the label maps; `box*` = one tight box per label and slice "
                 "(`box` = `BoxSupervisedLoss`, projection + pairwise; `box_pseudo` + intensity pseudo-masks; "
                 "`box_as_mask` = the filled box as the mask); `cc*` = one box per 8-connected component of ≥ 100 px "
                 "(what an annotator draws around two ventricles; several boxes under one prompt, their bounding "
                 "box): `cc` = projection + pairwise + each box's fill, `cc_out` = + the outside term (`outside=1`: "
                 "nothing outside the boxes is the object), `cc_pseudo_out` = + intensity pseudo-masks, "
                 "`cc_self_out` = `cc_out` + self-training (the model's own confident pixels inside the boxes, "
                 "refreshed each epoch from epoch 2), `box_out` = `box` + the outside term, "
                 f"`cc_as_mask` = the union of the filled boxes as the mask. Fine-tune seconds: "
                 f"{json.dumps(s['finetune_seconds'])}.\n")
    path = Path(__file__).with_name("RESULTS.md")
    path.write_text(path.read_text(encoding="utf-8") + "\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
