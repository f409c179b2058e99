"""Interactive latency per backend: a new box → mask in the widget, and stepping to the next slice.

For each backend (torch eager fp32, and the compiled ones installed), on slices of the real CT
sample (``data_samples/ct_abdomen/case-02``), in one run:

* **box → mask**: a new box set on the widget's canvas as the browser sets it (XYWH), until the
  overlay is repainted (decoder + overlay + PNG), median over ``--boxes``;
* **next slice, not prefetched**: ``set_slice(z + 1)`` then a box → mask (includes the encoder);
* **next slice, prefetched**: the same after ``prefetch=1`` encoded ``z ± 1`` in the background
  while the user looked at ``z`` (what stepping through a volume costs then).

Run: ``python bench/bench_interactive.py [--threads 2]``; prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.model.backends import available_backends
from medsam_lite.interactive.widgets import BoxPrompter


def _xywh(box, label="organ"):
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    return {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0, "label": label}


def measure(backend: str, image: np.ndarray, label: np.ndarray, boxes: int) -> dict:
    model = ml.load_model(backend=backend)
    z = image.shape[0] // 2
    organ_box = ml.box_from_mask(label[z] == 5)
    prompter = BoxPrompter(image, model, labels=["organ"], modality="CT", slice_index=z, prefetch=0)
    times = []
    for i in range(boxes):
        d = i % 5
        t0 = time.perf_counter()
        prompter.canvas.bboxes = [_xywh(organ_box + np.array([-d, -d, d, d], np.float32))]
        times.append((time.perf_counter() - t0) * 1000)
    box_ms = statistics.median(times[1:])

    def step(prefetch: int, start: int) -> float:
        p = BoxPrompter(image, model, labels=["organ"], modality="CT", slice_index=start, prefetch=prefetch)
        if prefetch:
            p._prefetcher.wait(timeout=300)
        t0 = time.perf_counter()
        p.set_slice(start + 1)
        p.canvas.bboxes = [_xywh(ml.box_from_mask(label[start + 1] == 5))]
        return (time.perf_counter() - t0) * 1000

    cold = statistics.median(step(0, s) for s in (z - 3, z - 2, z - 1))
    warm = statistics.median(step(1, s) for s in (z - 3, z - 2, z - 1))
    return {"backend": backend, "box_ms": box_ms, "next_cold_ms": cold, "next_prefetched_ms": warm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--boxes", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    d = samples.ct_abdomen_dir()
    image = io.read_volume(d / "case-02.nii.gz").array
    label = io.read_volume(d / "case-02_label.nii.gz").array
    rows = [measure(b, image, label, args.boxes) for b in ["torch", *[b for b in available_backends() if b != "torch"]]]
    base = rows[0]
    print(f"## Interactive latency (`bench/bench_interactive.py`, {args.threads} threads, real CT case-02)\n")
    print("| backend | box → mask (widget, ms) | next slice, not prefetched (ms) | next slice, prefetched (ms) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['box_ms']:.0f} ({base['box_ms'] / r['box_ms']:.1f}×) | "
              f"{r['next_cold_ms']:.0f} ({base['next_cold_ms'] / r['next_cold_ms']:.1f}×) | "
              f"{r['next_prefetched_ms']:.0f} |")


if __name__ == "__main__":
    main()
