"""The main job on the bundled sample data: ``python -m medsam_lite.demo``.

1. Segments the lateral ventricles and the whole brain in the sample slice from their boxes with
   the bundled LiteMedSAM (overlay PNG and masks).
2. Runs the whole MedSAM pipeline on the sample MRI dataset: ``preprocess`` (8 subjects, sub-07 and
   sub-08 held out) → ``embed`` → ``finetune`` (mask decoder) → ``evaluate`` (DSC, NSD) of the
   pretrained and the fine-tuned model on the held-out subjects.

By default the pipeline uses a few central slices per subject and 3 epochs (a few minutes on a
laptop CPU); ``--full`` uses every slice and 5 epochs (see bench/RESULTS.md for what that gives).
Everything goes to ``--out`` (default ``runs/demo``); re-running resumes finished steps.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default="runs/demo", help="output folder")
    parser.add_argument("--full", action="store_true", help="every slice and 5 epochs (30+ min on a CPU)")
    parser.add_argument("--slices", type=int, default=6, help="central slices per subject without --full")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import medsam_lite as ml
    from medsam_lite import io, plotting, samples

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = ml.load_model()

    print("== 1. a mask from a box on the sample slice")
    image = io.read_volume(samples.sample_path("brain_slice.png")).array
    label = io.read_volume(samples.sample_path("brain_slice_label.png")).array
    boxes = np.stack([ml.box_from_mask(label == 3), ml.box_from_mask(label > 0)])
    predictor = ml.Predictor(model)
    predictor.set_image(image)
    masks, scores = predictor.predict(boxes)
    for name, mask, truth, score in zip(["ventricles", "brain"], masks, [label == 3, label > 0], scores):
        io.write_volume(mask.astype(np.uint8) * 255, out / f"{name}_mask.png")
        print(f"{name:10s} Dice vs label {ml.dice(mask, truth):.3f}  predicted IoU {score:.2f}")
    ax = plotting.show_masks(image, masks, boxes, labels=["ventricles", "brain"])
    ax.figure.savefig(out / "overlay.png", dpi=120, bbox_inches="tight")

    print("== 2. fine-tune the mask decoder on the sample dataset")
    per_case = None if args.full else args.slices
    epochs = 5 if args.full else 3
    dataset = out / "sample_dataset"
    ml.preprocess(samples.brain_mri_dir(), dataset, test_cases=["sub-07", "sub-08"])
    ml.embed(dataset, model, max_slices_per_case=per_case)
    result = ml.finetune(dataset, out / "finetune", model, epochs=epochs, lr=1e-4, max_slices_per_case=per_case,
                         resume=True)
    plotting.plot_history(result.history).savefig(out / "history.png", dpi=120, bbox_inches="tight")
    tuned = ml.load_model(checkpoint=result.best)
    _, before = ml.evaluate(model, dataset, max_slices_per_case=per_case)
    table, after = ml.evaluate(tuned, dataset, max_slices_per_case=per_case)
    table.to_csv(out / "evaluation.csv", index=False)
    print(f"\nheld-out subjects sub-07, sub-08 ({'all' if per_case is None else per_case} slices each):")
    print(f"{'label':22s} {'DSC pretrained':>15s} {'DSC fine-tuned':>15s} {'NSD fine-tuned':>15s}")
    for name in after.index:
        print(f"{name:22s} {before.loc[name, 'dsc']:15.3f} {after.loc[name, 'dsc']:15.3f} {after.loc[name, 'nsd']:15.3f}")
    print(f"\nwrote overlay.png, history.png, evaluation.csv and the checkpoints to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
