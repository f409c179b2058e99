"""The main job on the bundled sample data: ``python -m medsam_lite.app.demo``.

1. Zero-shot: segments five abdominal organs on one axial slice of the real CT sample
   (TotalSegmentator's example scan, ``data_samples/ct_abdomen``) from one box each with the bundled
   LiteMedSAM; prints Dice against the label map and writes ``overlay.png`` (CT window, radiological
   orientation, organ legend, boxes dashed).
2. The whole MedSAM pipeline on the same CT: ``preprocess`` (three slabs of one patient, ``case-03``
   held out) → ``embed`` → ``finetune`` (mask decoder) → ``evaluate`` (3D DSC, NSD) of the pretrained
   and the fine-tuned model on the held-out slab, per organ.

The three slabs come from ONE patient: the fine-tuning step shows the mechanics, not what a
multi-patient dataset gives — a held-out slab of the same patient is easier than a new patient
(see tutorial 04/05 for where fine-tuning helps and where it does not).
Everything goes to ``--out`` (default ``runs/demo``); re-running resumes finished steps.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

#: Organs of the demo (TotalSegmentator "total" values in the CT sample's label map).
ORGANS = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver", 6: "stomach"}


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
    predictor.set_image(scan.array[z], modality="CT")  # HU; CT window [-500, 1000]
    t1 = time.perf_counter()
    masks, scores = predictor.predict(boxes)
    t2 = time.perf_counter()
    print(f"slice z={z} of case-03 ({scan.array.shape[2]}×{scan.array.shape[1]} px at {scan.spacing[0]:g} mm): "
          f"encoder {1000 * (t1 - t0):.0f} ms, {len(boxes)} boxes {1000 * (t2 - t1):.0f} ms")
    for name, mask, t, score in zip(organs.values(), masks, truth, scores):
        print(f"  {name:14s} Dice vs label {ml.dice(mask, t):.3f}   predicted IoU {score:.2f}")
        io.write_volume(mask.astype(np.uint8) * 255, out / f"{name}_mask.png")
    window = np.clip(scan.array[z].astype(np.float32), -160, 240)  # abdomen soft-tissue window for display
    ax = plotting.show_masks(window, masks, boxes, direction=scan.direction, legend=list(organs.values()),
                             title=f"LiteMedSAM from one box per organ (CT, axial z={z})")
    ax.figure.savefig(out / "overlay.png", dpi=120, bbox_inches="tight")


def pipeline(model, out: Path, epochs: int, slices: int | None) -> None:
    """Step 2: preprocess → embed → finetune → evaluate on the CT sample (case-03 held out)."""
    import medsam_lite as ml
    from medsam_lite import plotting, samples

    dataset = out / "ct_dataset"
    ml.preprocess(samples.ct_abdomen_dir(), dataset, modality="CT", labels=list(ORGANS), min_mm2=64,
                  test_cases=["case-03"])
    ml.embed(dataset, model, max_slices_per_case=slices)
    result = ml.finetune(dataset, out / "finetune", model, epochs=epochs, lr=1e-4, max_slices_per_case=slices,
                         resume=True)
    plotting.plot_history(result.history).savefig(out / "history.png", dpi=120, bbox_inches="tight")
    tuned = ml.load_model(checkpoint=result.best)
    _, before = ml.evaluate(model, dataset, max_slices_per_case=slices)
    table, after = ml.evaluate(tuned, dataset, max_slices_per_case=slices)
    table.to_csv(out / "evaluation.csv", index=False)
    print(f"\nheld-out slab case-03 ({'all' if slices is None else slices} slices), 3D DSC and NSD:")
    print(f"{'organ':16s} {'DSC pretrained':>15s} {'DSC fine-tuned':>15s} {'NSD fine-tuned':>15s}")
    for name in after.index:
        print(f"{name:16s} {before.loc[name, 'dsc']:15.3f} {after.loc[name, 'dsc']:15.3f} {after.loc[name, 'nsd']:15.3f}")
    print("(three slabs of one patient: the held-out slab is the same patient — expect less on a new one)")


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
    print("== 1. organs from boxes on a real abdominal CT slice (zero-shot)")
    zero_shot(model, out)
    print("\n== 2. fine-tune the mask decoder on the CT sample, evaluate on the held-out slab")
    pipeline(model, out, epochs=8 if args.full else args.epochs, slices=None if args.full else args.slices)
    print(f"\nwrote overlay.png, history.png, evaluation.csv and the checkpoints to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
