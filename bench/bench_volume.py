"""Propagation from one box vs per-slice ground-truth boxes (same model), 3D Dice per target.

The issue-6 criterion: on an unseen MRI volume, propagating from one box on the middle slice must
reach ≥ 85 % of the 3D Dice that a tight ground-truth box on every slice gives, for the lateral
ventricles. Both arms share one VolumePredictor, so each slice is encoded once.

    OMP_NUM_THREADS=1 python bench/bench_volume.py --subjects sub-08 [--checkpoint ft.pth]
        [--targets ventricles white_matter brain] [--cache /tmp/emb] [--margin 3] ...

``--cache DIR`` keeps each subject's embeddings (float32, keyed by the image encoder's weights, so a
fine-tuned decoder reuses them) between runs.
Prints one row per subject and target, and writes them as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.data.store import encoder_sha256
from medsam_lite.interactive.volume import DEFAULTS, VolumePredictor

TARGETS = {"ventricles": lambda lab: lab == 3, "white_matter": lambda lab: lab == 1,
           "grey_matter": lambda lab: lab == 2, "brain": lambda lab: lab > 0}


def per_slice_gt(vp: VolumePredictor, truth: np.ndarray, min_pixels: int) -> np.ndarray:
    """A tight ground-truth box on every slice where the target has ≥ ``min_pixels`` pixels."""
    out = np.zeros_like(truth)
    for z in np.nonzero(truth.sum(axis=(1, 2)) >= min_pixels)[0]:
        out[z] = vp.predict_slice(int(z), ml.box_from_mask(truth[z]))[0][0]
    return out


def run(subject: str, targets, model, options: dict, cache: Path | None) -> list[dict]:
    d = samples.brain_mri_dir()
    scan, label = io.read_volume(d / f"{subject}.nii.gz"), io.read_volume(d / f"{subject}_label.nii.gz")
    vp = VolumePredictor(scan, model)
    cache_file = cache / f"{subject}-{encoder_sha256(model)[:12]}.pt" if cache else None
    if cache_file and cache_file.exists():
        vp.embeddings.update(torch.load(cache_file, weights_only=True))
    rows = []
    for name in targets:
        truth = TARGETS[name](label.array)
        zs = np.nonzero(truth.sum(axis=(1, 2)))[0]
        key = int(zs.min() + (zs.max() - zs.min()) // 2)
        calls0, t0 = vp.encoder_calls, time.perf_counter()
        gt_boxes = per_slice_gt(vp, truth, options["min_pixels"])
        prop = vp.predict(ml.box_from_mask(truth[key]), slice_index=key, progress=False, **options)
        d_gt, d_prop = ml.dice(gt_boxes, truth), ml.dice(prop, truth)
        visited = np.nonzero(prop.any(axis=(1, 2)))[0]
        rows.append(dict(subject=subject, target=name, key_slice=key, truth_slices=f"{zs.min()}-{zs.max()}",
                         pred_slices=f"{visited.min()}-{visited.max()}" if visited.size else "-",
                         dice_per_slice_gt=round(d_gt, 4), dice_propagation=round(d_prop, 4),
                         ratio=round(d_prop / d_gt, 3) if d_gt > 0 else float("nan"),
                         new_encoder_calls=vp.encoder_calls - calls0,
                         seconds=round(time.perf_counter() - t0, 1)))
        print(json.dumps(rows[-1]), flush=True)
    if cache_file:
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(vp.embeddings, cache_file)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", nargs="+", default=["sub-08"])
    ap.add_argument("--targets", nargs="+", default=["ventricles", "white_matter", "brain"], choices=sorted(TARGETS))
    ap.add_argument("--checkpoint", default=None, help="fine-tuned checkpoint for load_model(checkpoint=...)")
    ap.add_argument("--cache", type=Path, default=None, help="folder to keep embeddings between runs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    for k in ("margin", "min_pixels", "min_score"):
        ap.add_argument(f"--{k.replace('_', '-')}", type=type(DEFAULTS[k]), default=DEFAULTS[k])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = ml.load_model(checkpoint=args.checkpoint)
    options = dict(margin=args.margin, min_pixels=args.min_pixels, min_score=args.min_score)
    rows = [r for s in args.subjects for r in run(s, args.targets, model, options, args.cache)]
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
