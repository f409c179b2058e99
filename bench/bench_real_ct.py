"""Real CT: zero-shot tight-box Dice per organ, and what decoder fine-tuning does for the worst organ.

On the bundled real abdominal CT (``data_samples/ct_abdomen``: TotalSegmentator's example scan,
3 mm, cut into three 10-slice cases):

1. zero-shot: every organ slice segmented by pretrained LiteMedSAM from its tight box (the
   MedSAM paper's protocol), 2D Dice per slice, mean per organ — beside the paper's MedSAM figure;
2. fine-tuning: ``preprocess(min_mm2=64)`` (the paper's 100 px at ~0.8 mm; 100 px at 3 mm would
   drop the aorta and the IVC entirely), decoder-only ``finetune`` on case-01/02, ``evaluate``
   (3D DSC/NSD) on the held-out case-03, pretrained vs fine-tuned.

Run: ``python bench/bench_real_ct.py [--epochs 20] [--threads 2]``; prints markdown for RESULTS.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import medsam_lite as ml
from medsam_lite import io, samples

ORGANS = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder", 5: "liver", 6: "stomach",
          7: "pancreas", 52: "aorta", 63: "inferior_vena_cava"}
PAPER = {"liver": "91.4 (MedSAM, CT liver, Table in Ma et al. 2024)"}


def zero_shot(model) -> dict[str, list[float]]:
    predictor = ml.Predictor(model)
    scores: dict[str, list[float]] = {name: [] for name in ORGANS.values()}
    for path in sorted(samples.ct_abdomen_dir().glob("case-0?.nii.gz")):
        image = io.read_volume(path).array
        label = io.read_volume(str(path).replace(".nii.gz", "_label.nii.gz")).array
        for z in range(image.shape[0]):
            # the paper's minimum target size, in mm² as preprocess(min_mm2=64) applies it (≥ 8 px at 3 mm)
            present = [k for k in ORGANS if (label[z] == k).sum() * 9.0 >= 64]
            if not present:
                continue
            predictor.set_image(image[z], modality="CT")
            for k in present:
                truth = label[z] == k
                box = ml.box_from_mask(truth)
                if box[2] <= box[0] or box[3] <= box[1]:
                    continue  # one pixel wide: no box to draw
                mask = predictor.predict(box)[0][0]
                scores[ORGANS[k]].append(ml.dice(mask, truth))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = ml.load_model(backend=args.backend)
    t0 = time.perf_counter()
    zs = zero_shot(model)
    print(f"## Real CT (`bench/bench_real_ct.py`, backend {args.backend}, {args.threads} threads)\n")
    print(f"Zero-shot, tight box per organ slice, pretrained LiteMedSAM ({time.perf_counter() - t0:.0f} s):\n")
    print("| organ | slices | mean 2D Dice | paper |\n|---|---|---|---|")
    for name, values in zs.items():
        if values:
            print(f"| {name} | {len(values)} | {np.mean(values):.3f} | {PAPER.get(name, '')} |")
    with tempfile.TemporaryDirectory() as tmp:
        ds = Path(tmp) / "ds"
        ml.preprocess(samples.ct_abdomen_dir(), ds, modality="CT", min_mm2=64, test_cases=["case-03"], progress=False)
        before, before_mean = ml.evaluate(model, ds, progress=False)
        t1 = time.perf_counter()
        run = ml.finetune(ds, Path(tmp) / "ft", model, epochs=args.epochs, lr=args.lr, val_cases=["case-02"],
                          progress=False)
        minutes = (time.perf_counter() - t1) / 60
        tuned = ml.load_model(checkpoint=run.best, backend=args.backend)
        after, after_mean = ml.evaluate(tuned, ds, progress=False)
    print(f"\nDecoder fine-tuning on case-01 (train) / case-02 (validation), {int(run.history['epoch'].max())} epochs, "
          f"lr {args.lr:g}, {minutes:.1f} min; 3D DSC / NSD (1 mm) on the held-out case-03:\n")
    print("| organ | pretrained DSC | fine-tuned DSC | pretrained NSD | fine-tuned NSD |\n|---|---|---|---|---|")
    for name in before_mean.index:
        b, a = before_mean.loc[name], after_mean.loc[name]
        print(f"| {name} | {b['dsc']:.3f} | {a['dsc']:.3f} | {b['nsd']:.3f} | {a['nsd']:.3f} |")
    worst = before_mean.drop("mean")["dsc"].idxmin()
    print(f"\nWorst organ zero-shot: {worst} {before_mean.loc[worst, 'dsc']:.3f} → "
          f"{after_mean.loc[worst, 'dsc']:.3f} fine-tuned.")


if __name__ == "__main__":
    main()
