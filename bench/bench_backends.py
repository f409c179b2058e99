"""CPU inference backends (issue 13): speed, memory and agreement with torch fp32, in one run.

Per configuration (torch fp32, torch bf16 autocast, ONNX Runtime fp32, OpenVINO fp32, OpenVINO bf16),
each in its own fresh process (so peak RSS is that backend's own), on real sample data — the bundled
2D slice and central axial slices of ``data_samples/brain_mri/sub-01`` with their label boxes:

* export + compile time on an empty cache (the one-off cost a user pays on first use);
* encoder ms/slice: median of ``--repeats`` (>= 5) after one warm-up;
* embed-equivalent slices/s: model-input mapping + encoder over ``--slices`` slices;
* decoder ms/box (median of 10 single-box calls) and ms for 4 boxes in one call;
* peak RSS (VmHWM of the worker process);
* embedding relative error (max |e - e_torch| / max |e_torch|, worst slice) and mask Dice vs torch
  fp32 (min and mean over every slice × box; masks at the original size).

Run from the repository root (about 3-6 minutes on 2 idle cores)::

    OMP_NUM_THREADS=2 python bench/bench_backends.py --threads 2

It prints a markdown table (ratios vs torch fp32) to stdout; paste it into ``bench/RESULTS.md``.
Run it on a quiet machine: a second busy process on the same cores makes every figure meaningless.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {  # name: (backend, precision, torch autocast)
    "torch fp32": ("torch", "fp32", False),
    "torch bf16 autocast": ("torch", "fp32", True),
    "onnxruntime fp32": ("onnxruntime", "fp32", False),
    "openvino fp32": ("openvino", "fp32", False),
    "openvino bf16": ("openvino", "bf16", False),
}


def sample_slices(n: int):
    """``n`` real slices: ``[(rgb H×W×3 uint8, boxes K×4 XYXY original pixels)]``, K >= 1."""
    from medsam_lite import io, samples
    from medsam_lite.model.geometry import box_from_mask
    from medsam_lite.model.intensity import to_rgb_uint8

    def boxes_of(label):
        return np.stack([box_from_mask(label == v) for v in np.unique(label) if v > 0 and (label == v).sum() > 20])

    out = [(to_rgb_uint8(io.read_volume(samples.sample_path("brain_slice.png")).array),
            boxes_of(io.read_volume(samples.sample_path("brain_slice_label.png")).array))]
    image = io.read_volume(samples.brain_mri_dir() / "sub-01.nii.gz").array
    label = io.read_volume(samples.brain_mri_dir() / "sub-01_label.nii.gz").array
    zs = [z for z in range(label.shape[0]) if len(np.unique(label[z])) >= 4]
    lo, hi = np.percentile(image[image > 0], (0.5, 99.5))  # per volume, as preprocess does
    for z in np.linspace(zs[len(zs) // 4], zs[3 * len(zs) // 4], max(n - 1, 1)).round().astype(int):
        sl = np.clip((image[z].astype(np.float32) - lo) / (hi - lo), 0, 1) * 255
        out.append((to_rgb_uint8(sl.astype(np.uint8)), boxes_of(label[z])))
    return out[:n]


class _Autocast:
    """torch eager under ``autocast("cpu", bfloat16)``, with the runtime interface."""

    def __init__(self, runtime):
        self.inner, self.name, self.precision = runtime, "torch", "bf16 autocast"

    def encode(self, x):
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.inner.encode(x).float()

    def decode(self, emb, boxes):
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, iou = self.inner.decode(emb, boxes)
        return logits.float(), iou.float()


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def worker(config: str, args, out: Path) -> None:
    import torch

    torch.set_num_threads(args.threads)
    import medsam_lite as ml
    from medsam_lite.model.backends import build_runtime

    backend, precision, autocast = CONFIGS[config]
    model = ml.load_model(device="cpu")
    slices = sample_slices(args.slices)
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        rt = build_runtime(model.image_encoder, model.prompt_encoder, model.mask_decoder, backend=backend,
                           precision=precision, threads=args.threads, cache_dir=cache, progress=False)
        build_s = time.perf_counter() - t0
    rt = _Autocast(rt) if autocast else rt
    geoms = [model.geometry(rgb.shape[:2]) for rgb, _ in slices]
    x0 = geoms[0].image_to_model(slices[0][0])
    rt.encode(x0)  # warm-up
    enc_ms = _median_ms(lambda: rt.encode(x0), args.repeats)
    t0 = time.perf_counter()
    embs = [rt.encode(g.image_to_model(rgb)) for g, (rgb, _) in zip(geoms, slices)]
    slices_per_s = len(slices) / (time.perf_counter() - t0)
    boxes = torch.from_numpy(geoms[0].box_to_model(slices[0][1]))
    four = torch.cat([boxes, boxes])[:4]
    rt.decode(embs[0], boxes[:1])  # warm-up
    dec_ms = _median_ms(lambda: rt.decode(embs[0], boxes[:1]), 10)
    dec4_ms = _median_ms(lambda: rt.decode(embs[0], four), 5)
    masks = []
    for g, emb, (_, b) in zip(geoms, embs, slices):
        logits, _ = rt.decode(emb, torch.from_numpy(g.box_to_model(b)))
        masks.append((g.logits_to_original(logits) > 0).numpy())
    hwm = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmHWM:")) / 1024 if Path("/proc/self/status").exists() else float("nan")
    np.savez(out, *[e.numpy() for e in embs], *masks)
    out.with_suffix(".json").write_text(json.dumps(
        {"build_s": build_s, "enc_ms": enc_ms, "slices_per_s": slices_per_s, "dec_ms": dec_ms,
         "dec4_ms": dec4_ms, "peak_rss_mb": hwm, "n": len(slices)}))


def _dice(a, b) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--slices", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7, help="timed encoder runs (median)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--worker", choices=list(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats must be >= 5")
    if args.worker:
        return worker(args.worker, args, args.out)
    configs = ["torch fp32"] + [c for c in args.configs if c != "torch fp32"]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            out = Path(tmp) / f"{config.replace(' ', '_')}.npz"
            cmd = [sys.executable, __file__, "--worker", config, "--out", str(out), "--threads", str(args.threads),
                   "--slices", str(args.slices), "--repeats", str(args.repeats)]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(f"{config}: skipped ({proc.stderr.strip().splitlines()[-1][:160]})", file=sys.stderr)
                continue
            stats = json.loads(out.with_suffix(".json").read_text())
            arrays = np.load(out)
            n = stats["n"]
            stats["embs"] = [arrays[f"arr_{i}"] for i in range(n)]
            stats["masks"] = [arrays[f"arr_{n + i}"] for i in range(n)]
            rows[config] = stats
            print(f"{config}: done", file=sys.stderr)
    ref = rows["torch fp32"]
    lines = [f"Threads: {args.threads}; {ref['n']} real slices (brain_slice.png + sub-01 axial); "
             f"{platform.processor() or platform.machine()}, Python {platform.python_version()}.", "",
             "| backend | first export+compile s | encoder ms/slice | × | embed slices/s | × | decoder ms/box "
             "| × | 4 boxes ms | × | peak RSS MB | embedding rel. error | mask Dice vs torch fp32 min / mean |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for config, s in rows.items():
        err = max(float(np.abs(e - r).max() / np.abs(r).max()) for e, r in zip(s["embs"], ref["embs"]))
        dices = [_dice(a, b) for m, r in zip(s["masks"], ref["masks"]) for a, b in zip(m, r)]
        lines.append(
            f"| {config} | {s['build_s']:.1f} | {s['enc_ms']:.0f} | {ref['enc_ms'] / s['enc_ms']:.1f} "
            f"| {s['slices_per_s']:.2f} | {s['slices_per_s'] / ref['slices_per_s']:.1f} "
            f"| {s['dec_ms']:.1f} | {ref['dec_ms'] / s['dec_ms']:.1f} | {s['dec4_ms']:.0f} "
            f"| {ref['dec4_ms'] / s['dec4_ms']:.1f} | {s['peak_rss_mb']:.0f} | {err:.1e} "
            f"| {min(dices):.4f} / {np.mean(dices):.4f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
