"""Per case, as the CVPR 2024 "MedSAM on Laptop" challenge times it (issue 22, item 4).

Challenge-format cases are made from the real bundled scans: a 3D case (``imgs`` D×H×W uint8,
CT windowed W400/L40 or MR percentiles, one 3D box per target ``[x0, y0, z0, x1, y1, z1]`` from
the label) and a 2D case (``imgs`` H×W×3 uint8, one XYXY box per organ). In-plane size: the native
slices (101×122 CT, 91×117 MR) enlarged to ``--size`` (default 512, a clinical slice size; bilinear
for the image, nearest for the labels).

Arms, each in its own fresh process per case (so wall time and peak RSS are that case's own;
the model is loaded before the clock starts, as the challenge's docker has it on disk):

* ``published`` — an eager-torch implementation of the published ``CVPR24_LiteMedSAM_infer.py``
  path, written here from its description: INTER_AREA resize of the longest side to 256, min-max,
  pad; box ``int(coord·256/max(H, W))``; 3D from the middle slice of the box outward, each slice
  encoded (the encoder runs inside the slice loop) and its box from the previous slice's mask at
  256 scale ± 3 px; logits upsampled to 256, cropped, bilinear to (H, W), sigmoid > 0.5.
* ``medsam_lite`` — ``predict_volume`` (3D) / ``Predictor`` (2D) with ``load_model()`` defaults
  (``backend="auto"``), optionally ``--int8`` as a third arm.

Run (one thread: the machine is shared; ratios are measured in one run, arms alternating)::

    OMP_NUM_THREADS=1 python bench/bench_challenge.py --threads 1

Prints a markdown table: per case and arm, seconds, DSC per target, peak RSS.
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
# The published path, eager torch (from CVPR24_LiteMedSAM_infer.py's description)
# ---------------------------------------------------------------------------------------------
def _resize_longest(image, target=256):
    import cv2

    h, w = image.shape[:2]
    s = target / max(h, w)
    return cv2.resize(image, (int(w * s + 0.5), int(h * s + 0.5)), interpolation=cv2.INTER_AREA)


def _pad(image, target=256):
    h, w = image.shape[:2]
    pad = ((0, target - h), (0, target - w)) + (((0, 0),) if image.ndim == 3 else ())
    return np.pad(image, pad)


def _box256(box, hw):
    ratio = 256 / max(hw)
    return np.array([int(c * ratio) for c in box], dtype=np.float64)


def _bbox256(mask256, shift=3):
    ys, xs = np.nonzero(mask256 > 0)
    h, w = mask256.shape
    return np.array([max(0, xs.min() - shift), max(0, ys.min() - shift), min(w, xs.max() + shift),
                     min(h, ys.max() + shift)], dtype=np.float64)


class Published:
    def __init__(self, model):
        self.model = model  # a SamModel; its torch modules are run eagerly here

    def embed(self, img_3c):
        import torch

        img = _resize_longest(img_3c)
        new_hw = img.shape[:2]
        img = (img - img.min()) / np.clip(img.max() - img.min(), 1e-8, None)
        x = torch.tensor(_pad(img)).float().permute(2, 0, 1)[None]
        with torch.no_grad():
            return self.model.image_encoder(x), new_hw

    def infer(self, embedding, box256, new_hw, hw):
        import torch
        import torch.nn.functional as F

        m = self.model
        with torch.no_grad():
            box = torch.as_tensor(box256[None, None], dtype=torch.float)
            sparse, dense = m.prompt_encoder(points=None, boxes=box, masks=None)
            logits, _ = m.mask_decoder(image_embeddings=embedding, image_pe=m.prompt_encoder.get_dense_pe(),
                                       sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                       multimask_output=False)
            x = F.interpolate(logits, size=(256, 256), mode="bilinear", align_corners=False)
            x = x[..., :new_hw[0], :new_hw[1]]
            x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False)
            return (torch.sigmoid(x)[0, 0].numpy() > 0.5).astype(np.uint8)

    def case_2d(self, img, boxes):
        hw = img.shape[:2]
        segs = np.zeros(hw, np.uint16)
        emb, new_hw = self.embed(img)
        for idx, box in enumerate(boxes, start=1):
            segs[self.infer(emb, _box256(box, hw), new_hw, hw) > 0] = idx
        return segs

    def case_3d(self, imgs, boxes):
        depth, h, w = imgs.shape
        segs = np.zeros(imgs.shape, np.uint16)
        for idx, (x0, y0, z0, x1, y1, z1) in enumerate(boxes, start=1):
            tmp = np.zeros(imgs.shape, np.uint16)
            mid_box = np.array([x0, y0, x1, y1])
            z_mid = int((z1 - z0) / 2 + z0)
            order = [(z, z - 1) for z in range(z_mid, min(z1 + 1, depth))]
            order += [(z, z + 1) for z in range(z_mid - 1, max(-1, z0 - 1), -1)]
            for z, previous in order:
                img_3c = np.repeat(imgs[z][..., None], 3, axis=-1)
                emb, new_hw = self.embed(img_3c)
                box = _box256(mid_box, (h, w))
                if z != z_mid and tmp[previous].max() > 0:
                    pre = _resize_longest(tmp[previous])
                    if pre.max() > 0:
                        box = _bbox256(_pad(pre))
                tmp[z, self.infer(emb, box, new_hw, (h, w)) > 0] = idx
            segs[tmp > 0] = idx
        return segs


# ---------------------------------------------------------------------------------------------
# One case in one arm (runs in its own process)
# ---------------------------------------------------------------------------------------------
def worker(arm: str, kind: str, modality: str, size: int, threads: int) -> dict:
    import torch

    import medsam_lite as ml

    torch.set_num_threads(threads)
    imgs, boxes, gts, names = make_case(kind, modality, size)
    t0 = time.perf_counter()
    if arm == "published":
        model = ml.load_model(backend="torch")
    else:
        model = ml.load_model(precision="int8" if arm == "medsam_lite int8" else "fp32")
    load_s = time.perf_counter() - t0
    start = time.perf_counter()
    if arm == "published":
        runner = Published(model)
        segs = runner.case_2d(imgs, boxes) if kind == "2D" else runner.case_3d(imgs, boxes)
    elif kind == "2D":
        predictor = ml.Predictor(model)
        predictor.set_image(imgs)
        masks, _ = predictor.predict(boxes.astype(np.float32))
        segs = np.zeros(imgs.shape[:2], np.uint16)
        for idx, m in enumerate(masks, start=1):
            segs[m] = idx
    else:
        segs = np.zeros(imgs.shape, np.uint16)
        for idx, box in enumerate(boxes, start=1):
            segs[ml.predict_volume(imgs, box.astype(np.float32), model=model, progress=False)] = idx
    seconds = time.perf_counter() - start
    dsc = {names[v]: round(float(ml.dice(segs == i, gts[v])), 4) for i, v in enumerate(gts, start=1)}
    with open("/proc/self/status") as handle:
        peak = next(int(line.split()[1]) for line in handle if line.startswith("VmHWM"))
    runtime = model.runtime.name if model.runtime is not None else "torch"
    return {"arm": arm, "case": f"{kind} {modality}", "seconds": seconds, "load_s": load_s, "dsc": dsc,
            "peak_rss_mb": peak / 1024, "backend": runtime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=512, help="in-plane size of the cases (0 = native)")
    parser.add_argument("--cases", nargs="+", default=["3D CT", "2D CT", "3D MR", "2D MR"])
    parser.add_argument("--int8", action="store_true", help="add medsam_lite with precision='int8'")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        arm, kind, modality = args.worker
        print(json.dumps(worker(arm, kind, modality, args.size, args.threads)))
        return
    arms = ["published", "medsam_lite"] + (["medsam_lite int8"] if args.int8 else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "MEDSAM_LITE_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    rows = []
    for i, case in enumerate(args.cases):
        kind, modality = case.split()
        for arm in (arms if i % 2 == 0 else arms[::-1]):  # alternate the order between cases
            out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--size", str(args.size),
                                  "--worker", arm, kind, modality], capture_output=True, text=True, env=env)
            if out.returncode:
                sys.exit(f"{arm} {case} failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    print(f"\nThreads: {args.threads}; cases {args.size or 'native'} px in-plane; load average {load:.1f} "
          "(other processes shared the CPU: compare ratios, not absolute times).\n")
    print("| case | arm | backend | seconds | × vs published | DSC per target | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        ref = next(r for r in rows if r["case"] == row["case"] and r["arm"] == "published")
        dsc = ", ".join(f"{k} {v:.3f}" for k, v in row["dsc"].items())
        print(f"| {row['case']} | {row['arm']} | {row['backend']} | {row['seconds']:.1f} | "
              f"{ref['seconds'] / row['seconds']:.2f} | {dsc} | {row['peak_rss_mb']:.0f} |")
    Path(ROOT / "bench" / "work").mkdir(exist_ok=True)
    (ROOT / "bench" / "work" / "bench_challenge.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
