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
from medsam_lite.interactive.widgets import BoxPrompter
from bench_core import backends_to_measure, ct_case, time_boxes


def measure(backend: str, image: np.ndarray, label: np.ndarray, boxes: int) -> dict:
    model = ml.load_model(backend=backend)
    z = image.shape[0] // 2
    organ_box = ml.box_from_mask(label[z] == 5)
    prompter = BoxPrompter(image, model, labels=["organ"], modality="CT", slice_index=z, prefetch=0)
    box_ms = statistics.median(time_boxes(prompter, organ_box, "organ", boxes, jitter=5)[1:])

    def step(prefetch: int, start: int) -> float:
        p = BoxPrompter(image, model, labels=["organ"], modality="CT", slice_index=start, prefetch=prefetch)
        if prefetch:
            p._prefetcher.wait(timeout=300)
        t0 = time.perf_counter()
        p.set_slice(start + 1)
        time_boxes(p, ml.box_from_mask(label[start + 1] == 5), "organ", 1, jitter=1)
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
    image, label = ct_case("case-02")
    rows = [measure(b, image, label, args.boxes) for b in backends_to_measure()]
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
