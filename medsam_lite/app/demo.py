"""The main job on the bundled sample data: ``python -m medsam_lite.app.demo``.

1. Zero-shot: segments the organs of :data:`ORGANS` present on one axial slice of the real CT
   sample (TotalSegmentator's example scan, ``data_samples/ct_abdomen``; four of the five on the
   slice it picks) from one box each with the bundled LiteMedSAM; prints Dice against the label map
   (TotalSegmentator's model output, not manual contours) and writes ``overlay.png`` (radiological
   orientation, CT soft-tissue display window, the package's label colours, boxes dashed).
2. The whole MedSAM pipeline on the same CT: ``preprocess`` (three slabs of one patient, ``case-03``
   held out) → ``embed`` → ``finetune`` (mask decoder) → ``evaluate`` (3D DSC, NSD with its tolerance)
   of the pretrained model and of the checkpoint the guard chose (``best.pt``) on the held-out slab,
   every organ side by side with its validation change, and a sentence computed from the numbers
   (:meth:`~medsam_lite.train.config.FinetuneResult.held_out`) naming any organ below the pretrained
   model by more than the guard's tolerance and why (validation and test disagree).

The three slabs come from ONE patient: the fine-tuning step shows the mechanics, not what a
multi-patient dataset gives — a held-out slab of the same patient is easier than a new patient
(see tutorial 04/05 for where fine-tuning helps and where it does not).
Everything goes to ``--out`` (default ``runs/demo``), the printout too (``printout.txt``);
re-running resumes finished steps.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

#: Organs of the demo (TotalSegmentator "total" values in the CT sample's label map).
ORGANS = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver", 6: "stomach"}

_LINES: list[str] = []


def say(text: str = "") -> None:
    """Print one line and keep it for ``printout.txt``."""
    print(text, flush=True)
    _LINES.append(text)


def zero_shot(model, out: Path) -> None:
    """Step 1: one box per organ on the slice of ``case-03`` that shows most of them."""
    import medsam_lite as ml
    from medsam_lite import io, plotting, samples

    scan = io.read_volume(samples.ct_abdomen_dir() / "case-03.nii.gz")
    label = io.read_volume(samples.ct_abdomen_dir() / "case-03_label.nii.gz").array
    present = np.stack([(label == v).sum(axis=(1, 2)) for v in ORGANS])  # organs × slices
    z = int(np.argmax((present > 50).sum(axis=0) * 1e6 + present.sum(axis=0)))
    organs = {v: n for v, n in ORGANS.items() if (label[z] == v).sum() > 0}
    truth = np.stack([label[z] == v for v in organs])
    boxes = np.stack([ml.box_from_mask(t) for t in truth])  # XYXY, slice pixels (what a user would draw)
    predictor = ml.Predictor(model)
    t0 = time.perf_counter()
    predictor.set_image(scan.array[z], modality="CT")  # HU; the model's input window [-500, 1000]
    t1 = time.perf_counter()
    masks, scores = predictor.predict(boxes)
    t2 = time.perf_counter()
    predictor.predict(boxes)  # again: the decoder alone, warm
    t3 = time.perf_counter()
    say(f"slice z={z} of case-03 ({scan.array.shape[2]}×{scan.array.shape[1]} px at {scan.spacing[0]:g} mm), "
        f"{len(organs)} of the {len(ORGANS)} organs on it: encoder {1000 * (t1 - t0):.0f} ms; {len(boxes)} boxes "
        f"{1000 * (t2 - t1):.0f} ms the first time (the decoder runtime warms up), {1000 * (t3 - t2):.0f} ms again")
    for name, mask, t, score in zip(organs.values(), masks, truth, scores):
        say(f"  {name:14s} Dice vs label {ml.dice(mask, t):.3f}   predicted IoU {score:.2f}")
        io.write_volume(mask.astype(np.uint8) * 255, out / f"{name}_mask.png")
    ax = plotting.show_masks(scan.array[z], masks, boxes, direction=scan.direction, modality="CT",
                             legend=list(organs.values()),
                             title=f"LiteMedSAM from one box per organ (CT, axial z={z})")
    ax.figure.savefig(out / "overlay.png", dpi=100, bbox_inches="tight")


def _nsd_tolerance(dataset) -> tuple[float, float]:
    """``(tolerance mm, stored in-plane pixel mm)``: 2 mm, never below one pixel of the stored slices."""
    from medsam_lite.data.dataset import open_dataset

    ds = open_dataset(dataset)
    m = ds.split("test")
    pixel = float((m[["spacing_row", "spacing_col"]].max(axis=1) * m[["height", "width"]].max(axis=1)
                   / ds.image_size).max()) if len(m) else 0.0
    return max(2.0, round(pixel, 2)), pixel


def pipeline(model, out: Path, epochs: int, slices: int | None) -> None:
    """Step 2: preprocess → embed → finetune → evaluate on the CT sample (case-03 held out)."""
    import medsam_lite as ml
    from medsam_lite import plotting, samples
    from medsam_lite.train.config import GUARD_TOLERANCE

    dataset = out / "ct_dataset"
    t0 = time.perf_counter()
    manifest = ml.preprocess(samples.ct_abdomen_dir(), dataset, modality="CT", labels=list(ORGANS), min_mm2=64,
                             test_cases=["case-03"], progress=False)
    say(f"preprocess: {manifest['case'].nunique()} cases, {len(manifest)} targets in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    store = ml.embed(dataset, model, max_slices_per_case=slices, progress=False)
    say(f"embed: {int(store.done.sum())} slices stored, {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    result = ml.finetune(dataset, out / "finetune", model, epochs=epochs, lr=1e-4, max_slices_per_case=slices,
                         resume=True, progress=False)
    say(f"finetune: {epochs} epochs in {time.perf_counter() - t0:.0f} s (this call; a finished run is read back)")
    say(result.summary)  # history row 0 = the pretrained decoder; which epoch best.pt holds and why
    plotting.plot_history(result.history, label_names=ORGANS, best_epoch=result.best_epoch).savefig(
        out / "history.png", dpi=100, bbox_inches="tight")
    tuned = ml.load_model(checkpoint=result.best)
    tol, pixel = _nsd_tolerance(dataset)
    with warnings.catch_warnings():  # preprocess warned once that the slabs share one scan; the printout says it too
        warnings.filterwarnings("ignore", message=r".*share a source scan")
        _, before = ml.evaluate(model, dataset, tolerance_mm=tol, max_slices_per_case=slices, progress=False)
        table, after = ml.evaluate(tuned, dataset, tolerance_mm=tol, max_slices_per_case=slices, progress=False)
    table.to_csv(out / "evaluation.csv", index=False)
    say(f"\nheld-out slab case-03 ({'all' if slices is None else slices} slices), 3D DSC and NSD at {tol:g} mm "
        f"(the stored slices' pixel: {pixel:.2f} mm); reference: TotalSegmentator's labels")
    say(f"{'organ':16s} {'DSC pretrained':>15s} {'DSC chosen':>15s} {'NSD pretrained':>15s} {'NSD chosen':>15s}"
        f" {'val. Δ DSC':>11s}")
    held, text = result.held_out(before, after)  # per label: test pretrained vs chosen, and the validation change
    for name in ORGANS.values():
        if name not in after.index:
            say(f"{name:16s} no target in the held-out slab (kept by min_mm2 = 64): not evaluated")
            continue
        d0, d1 = before.loc[name, "dsc"], after.loc[name, "dsc"]
        band = result.tolerance if result.tolerance is not None else GUARD_TOLERANCE  # the run's guard band
        verdict = "helped" if d1 - d0 > band else "worse" if d1 - d0 < -band else "no real change"
        val = held.loc[name, "val_change"] if name in held.index else float("nan")
        say(f"{name:16s} {d0:15.3f} {d1:15.3f} {before.loc[name, 'nsd']:15.3f} {after.loc[name, 'nsd']:15.3f} "
            f"{val:+11.3f}   {verdict}")
    if "mean" in after.index:
        say(f"{'mean':16s} {before.loc['mean', 'dsc']:15.3f} {after.loc['mean', 'dsc']:15.3f} "
            f"{before.loc['mean', 'nsd']:15.3f} {after.loc['mean', 'nsd']:15.3f}")
    say(text)  # computed from the numbers above: which label fell by more than the tolerance, and why
    say("(three slabs of one patient: the held-out slab is the same patient — expect less on a new one)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default="runs/demo", help="output folder")
    parser.add_argument("--full", action="store_true", help="every slice and 8 epochs")
    parser.add_argument("--slices", type=int, default=None,
                        help="slices per case without --full (default: all 10 of each slab)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs without --full")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import medsam_lite as ml

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = ml.load_model()
    _LINES.clear()
    say("== 1. organs from boxes on a real abdominal CT slice (zero-shot)")
    zero_shot(model, out)
    say("\n== 2. fine-tune the mask decoder on the CT sample, evaluate on the held-out slab")
    pipeline(model, out, epochs=8 if args.full else args.epochs, slices=None if args.full else args.slices)
    say(f"\nwrote overlay.png, history.png, evaluation.csv, printout.txt and the checkpoints to {out}")
    (out / "printout.txt").write_text("\n".join(_LINES) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
