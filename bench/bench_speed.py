"""One table a user reads first (issue 22): per backend and precision, in one process, interleaved.

Per configuration (torch fp32, ONNX Runtime fp32, OpenVINO fp32, OpenVINO bf16, ``auto``), on
real CT slices (``data_samples/ct_abdomen`` case-02, enlarged to 512×512 — a clinical slice size)
with one tight box per organ:

* encoder ms: ``SamModel.encode`` of a slice's model input (median over ``--slices`` slices);
* decoder ms: the decoder call alone for one box (``SamModel.decode`` under ``no_grad``);
* box → mask ms: ``Predictor.predict`` for one box on the 512×512 slice (what a widget pays per
  box), and its ratio to the decoder call alone measured in the same rounds; also the old
  full-size way back (``decode(..., logits=True)``: full-size float logits, then ``> 0``);
* next slice ms: ``Predictor.set_image`` of another slice + ``predict`` of one box;
* per case s (``--per-case``): ``predict_volume`` from one 3D box (spleen) on ``case-01``;
* agreement: mask Dice vs torch fp32 over every slice × organ (min / mean).

Every measurement round visits the configurations in turn (A B C … A B C …), medians reported.
Run (one thread: the machine is shared with other processes; compare ratios, not absolute times)::

    OMP_NUM_THREADS=1 python bench/bench_speed.py --threads 1 [--per-case]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"torch fp32": ("torch", "fp32"), "onnxruntime fp32": ("onnxruntime", "fp32"),
           "openvino fp32": ("openvino", "fp32"), "openvino bf16": ("openvino", "bf16"), "auto": ("auto", "fp32")}


def ct_slices(zs, size):
    import cv2

    from medsam_lite import io, samples

    d = samples.ct_abdomen_dir()
    scan, label = io.read_volume(d / "case-02.nii.gz").array, io.read_volume(d / "case-02_label.nii.gz").array
    out = []
    for z in zs:
        img = cv2.resize(scan[z].astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        lab = cv2.resize(label[z].astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
        boxes = []
        for v in np.unique(lab):
            ys, xs = np.nonzero(lab == v)
            if v and len(ys) > 200:
                boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
        out.append((img, np.array(boxes, np.float32)))
    return out


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--slices", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=7, help="rounds of the per-box measurements")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--per-case", nargs="*", help="configs to time predict_volume with (none given: all)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    args = parser.parse_args()
    import torch

    import medsam_lite as ml
    from medsam_lite.model.inference import decode, prepare_image

    torch.set_num_threads(args.threads)
    from medsam_lite.model.sessions import openvino_cpu_has_bf16

    if "openvino bf16" in args.configs and not openvino_cpu_has_bf16():
        args.configs = [c for c in args.configs if c != "openvino bf16"]
        print("openvino bf16: skipped (this CPU has no native bf16; build_runtime refuses it)", file=sys.stderr)
    slices = ct_slices(np.linspace(1, 8, args.slices).round().astype(int), args.size)
    t0 = time.perf_counter()
    models = {}
    for name in args.configs:
        backend, precision = CONFIGS[name]
        models[name] = ml.load_model(backend=backend, precision=precision)
    setup_s = time.perf_counter() - t0
    auto_name = models["auto"].runtime.name if "auto" in models and models["auto"].runtime else "torch"
    res = {n: {k: [] for k in ("encoder", "decoder", "predict", "full", "next", "case")} for n in models}
    masks = {n: [] for n in models}
    predictors = {n: ml.Predictor(m) for n, m in models.items()}
    preset = ml.IntensityPreset.resolve("CT")
    first = {}
    for img, boxes in slices:  # encoder + agreement, interleaved per slice
        rgb = prepare_image(img, preset)
        for name, model in models.items():
            x = model.geometry(rgb.shape[:2]).image_to_model(rgb)
            t, emb = timed(lambda: model.encode(x))
            res[name]["encoder"].append(t)
            predictors[name].set_embedding(emb, rgb.shape[:2])
            first.setdefault(name, predictors[name].embedding)
            masks[name].append(predictors[name].predict(boxes)[0])
    img, boxes = slices[0]
    box = boxes[int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))]  # the largest organ
    for name, p in predictors.items():
        p.set_embedding(first[name])
    for _ in range(args.rounds):
        for name, model in models.items():
            p = predictors[name]
            prompt = torch.from_numpy(p.embedding.geometry.box_prompt(box[None]))
            with torch.no_grad():
                res[name]["decoder"].append(timed(lambda: model.decode(p.embedding.tensor, prompt))[0])
            res[name]["predict"].append(timed(lambda: p.predict(box))[0])
            res[name]["full"].append(timed(lambda: decode(model, p.embedding, box, logits=True))[0])
    for k in range(2):
        for name in models:
            other = slices[1 + k % (len(slices) - 1)][0] if len(slices) > 1 else img
            p = predictors[name]
            res[name]["next"].append(timed(lambda: (p.set_image(other, modality="CT"), p.predict(box)))[0])
    if args.per_case is not None:
        from medsam_lite import io, samples

        d = samples.ct_abdomen_dir()
        vol = io.read_volume(d / "case-01.nii.gz").array
        lab = io.read_volume(d / "case-01_label.nii.gz").array == 1
        zs, ys, xs = np.nonzero(lab)
        box3d = np.array([xs.min(), ys.min(), zs.min(), xs.max(), ys.max(), zs.max()], np.float32)
        for name, model in models.items():
            if args.per_case and name not in args.per_case:
                continue
            t, seg = timed(lambda: ml.predict_volume(vol, box3d, model=model, modality="CT", progress=False))
            res[name]["case"].append(t)
            res[name]["case_dsc"] = float(ml.dice(seg, lab))
    ref = masks.get("torch fp32")
    print(f"\nThreads: {args.threads}; {len(slices)} real CT slices enlarged to {args.size}²; load average "
          f"{os.getloadavg()[0]:.1f}"
          + (" (other processes shared the 2 CPUs: absolute times are inflated and noisy, ratios come from "
             "interleaved rounds)" if os.getloadavg()[0] > 2.5 else " (ratios come from interleaved rounds)")
          + f"; models loaded in {setup_s:.0f} s; auto = {auto_name}.\n")
    print("| backend, precision | encoder ms | decoder ms/box | box → mask ms (× decoder) | box → mask, old "
          "full-size path ms | next slice ms | per case s | mask Dice vs torch fp32 min / mean |")
    print("|---|---|---|---|---|---|---|---|")
    med = {n: {k: statistics.median(v) * 1000 for k, v in r.items() if isinstance(v, list) and v} for n, r in res.items()}
    for name in models:
        m = med[name]
        dices = [float(ml.dice(a, b)) for sa, sb in zip(masks[name], ref or masks[name]) for a, b in zip(sa, sb)]
        case = f"{m['case'] / 1000:.1f} (DSC {res[name]['case_dsc']:.3f})" if "case" in m else "—"
        label = f"auto ({auto_name})" if name == "auto" else name
        print(f"| {label} | {m['encoder']:.0f} | {m['decoder']:.1f} | {m['predict']:.1f} "
              f"({m['predict'] / m['decoder']:.2f}×) | {m['full']:.1f} | {m['next']:.0f} | {case} | "
              f"{min(dices):.3f} / {np.mean(dices):.3f} |")
    (ROOT / "bench" / "work").mkdir(exist_ok=True)
    (ROOT / "bench" / "work" / "bench_speed.json").write_text(json.dumps(
        {"threads": args.threads, "medians_ms": med, "raw_s": {n: {k: v for k, v in r.items()} for n, r in res.items()}},
        indent=1, default=float), encoding="utf-8")


if __name__ == "__main__":
    main()
