"""How live is BoxPrompter? Box → mask update latency vs. the image encoder's first run.

Boxes are set the way jupyter-bbox-widget sets them (``canvas.bboxes``, XYWH, the 0×0 mouse-down
box first), on the bundled sample slice and on slices of sample volume sub-01. Measures:

* the first visit of a slice (image encoder, once per slice);
* a new box → mask (prompt encoder + mask decoder for that box only, overlay, PNG for the widget);
* a relabelled box (no decoding: repaint only);
* a revisited slice (embedding cached: no encoder run).

    OMP_NUM_THREADS=1 python bench/bench_widget.py [--threads 1] [--boxes 20] [--write]

``--write`` replaces this script's section of bench/RESULTS.md (other benchmarks keep theirs).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.interactive.widgets import BoxPrompter

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
START, END = "<!-- bench_widget:start -->", "<!-- bench_widget:end -->"


def _xywh(box, label):
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    return {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0, "label": label}


def _ms(values) -> str:
    return f"{statistics.median(values):.0f} ms (min {min(values):.0f}, max {max(values):.0f})"


def boxes_on(image: np.ndarray, label: np.ndarray, model, n_boxes: int, rng) -> dict:
    """Encode ``image`` once, then draw ``n_boxes`` jittered whole-brain boxes and relabel one."""
    h, w = image.shape
    brain_box = ml.box_from_mask(label > 0)
    t0 = time.perf_counter()
    prompter = BoxPrompter(image, model, labels=["brain", "other"])
    ready = (time.perf_counter() - t0) * 1000
    update, decode, render, relabel = [], [], [], []
    for _ in range(n_boxes):
        jitter = rng.integers(-6, 7, size=4) * max(1, h // 191)
        b = _xywh(np.clip(brain_box + jitter, 0, [w - 1, h - 1, w - 1, h - 1]), "brain")
        prompter.canvas.bboxes = [{**b, "width": 0, "height": 0}]   # mouse-down
        t0 = time.perf_counter()
        prompter.canvas.bboxes = [b]                                  # mouse-up: the real box
        update.append((time.perf_counter() - t0) * 1000)
        decode.append(prompter.timings["decode_ms"])
        render.append(prompter.timings["render_ms"])
    for i in range(n_boxes):
        t0 = time.perf_counter()
        prompter.canvas.bboxes = [{**prompter.canvas.bboxes[0], "label": ["other", "brain"][i % 2]}]
        relabel.append((time.perf_counter() - t0) * 1000)
    assert prompter.encoder_calls == 1, "a box must not re-run the image encoder"
    return {"shape": (h, w), "ready": ready, "encode": prompter.timings["encode_ms"], "update": update,
            "decode": decode, "render": render, "relabel": relabel, "decoder_calls": prompter.decoder_calls}


def run(n_boxes: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    model = ml.load_model()
    image = io.read_volume(samples.sample_path("brain_slice.png")).array
    label = io.read_volume(samples.sample_path("brain_slice_label.png")).array
    small = boxes_on(image, label, model, n_boxes, rng)
    big = boxes_on(np.kron(image, np.ones((3, 3), np.uint8)), np.kron(label, np.ones((3, 3), np.uint8)),
                   model, n_boxes, rng)   # a CT-sized slice (573×492)

    volume = io.read_volume(samples.brain_mri_dir() / "sub-01.nii.gz")
    vp = BoxPrompter(volume, model, slice_index=20)
    t0 = time.perf_counter()
    vp.set_slice(24)
    slice_first = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    vp.set_slice(20)
    slice_revisit = (time.perf_counter() - t0) * 1000
    assert vp.encoder_calls == 2
    return {"small": small, "big": big, "volume": volume.array.shape, "n_boxes": n_boxes,
            "slice_first": slice_first, "slice_revisit": slice_revisit}


def report(r: dict, threads: int) -> str:
    rows = []
    for key in ("small", "big"):
        x = r[key]
        size = f"{x['shape'][0]}×{x['shape'][1]}"
        rows += [
            f"| {size} | first visit: image encoder | {x['encode']:.0f} ms (prompter ready in {x['ready']:.0f} ms) |",
            f"| {size} | new box → mask in the widget | {_ms(x['update'])} |",
            f"| {size} | … of which decoder (prompt encoder + mask decoder) | {_ms(x['decode'])} |",
            f"| {size} | … of which overlay + PNG for the widget | {_ms(x['render'])} |",
            f"| {size} | relabel a box (no decoding, repaint only) | {_ms(x['relabel'])} |",
        ]
    small = r["small"]
    speedup = small["encode"] / statistics.median(small["update"])
    return "\n".join([
        START,
        "## Widget: box → mask latency (`bench/bench_widget.py`)",
        "",
        f"`BoxPrompter` with LiteMedSAM, torch {torch.__version__}, {threads} thread(s), {os.cpu_count()} CPUs "
        f"({platform.machine()}, shared and busy machine: medians of {r['n_boxes']} boxes, noisy). Boxes are set "
        "as jupyter-bbox-widget sets them (a 0×0 mouse-down box, then the real box). Images: the sample "
        "slice and a 3× upscaled copy (CT-sized); volume: sample sub-01 "
        f"{tuple(r['volume'])}.",
        "",
        "| image | step | time |",
        "|---|---|---|",
        *rows,
        f"| volume | move to a new slice (image encoder) | {r['slice_first']:.0f} ms |",
        f"| volume | move back to a visited slice (cached embedding) | {r['slice_revisit']:.0f} ms |",
        "",
        f"A new box updates its mask about {speedup:.0f}× faster than encoding the image; over "
        f"{r['n_boxes']} boxes the encoder ran once and the decoder {small['decoder_calls']} times (once per new "
        "box, never for a relabel or a revisit).",
        END,
    ])


def write_section(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=int(os.environ.get("MEDSAM_LITE_THREADS", "2")))
    parser.add_argument("--boxes", type=int, default=20)
    parser.add_argument("--write", action="store_true", help="write the section into bench/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    section = report(run(args.boxes), args.threads)
    print(section)
    if args.write:
        write_section(section)
        print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
