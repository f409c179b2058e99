"""Does a click update the mask at box speed? Box → mask vs click → mask in BoxPrompter, per backend.

On the real CT sample (``data_samples/ct_abdomen/case-02``, its largest liver slice; the liver box
is drawn, then the robot user's corrective clicks: the interior of the largest error region, positive
on a miss, negative on a false positive: ``medsam_lite.clicks.next_click``), in one run per backend:

* **box → mask**: a new box set on the canvas as the browser sets it, until the overlay is repainted
  (decoder + overlay + PNG), median over ``--repeats`` boxes (jittered by a pixel), each round's box
  before its clicks (interleaved: both timed in the same state of the machine);
* **first click**: the first click of the session (includes any one-time preparation of the
  point-prompt path, e.g. building a compiled prompt graph);
* **click → mask**: each later click (box + every click so far + the previous logits as mask
  input), median over ``--repeats`` rounds of 3 clicks (undone between rounds).

``--size 512`` resizes the slice (and its truth) to 512×512 first, the size of a real CT slice, so
that the work on the full-size mask (the way back to full size, the click rule) is what a user pays.
Each backend is measured with the default click rule (``LocalRule``) and without one (``DecoderRule``).

Run: ``python bench/bench_clicks_widget.py [--threads 2] [--repeats 5] [--size 512] [--backends auto] [--pause 0.2]``;
prints a markdown table with the click/box ratio measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import medsam_lite as ml
from medsam_lite.clicks import next_click
from medsam_lite.model.clickrule import DEFAULT_RULE, DecoderRule
from medsam_lite.interactive.widgets import BoxPrompter
from bench_core import backends_to_measure, ct_case, time_boxes


def measure(backend: str, image, truth, z: int, repeats: int, rule=None, pause: float = 0.0) -> dict:
    """Box → mask and click → mask **interleaved** (round 4): each round sets a new box, then makes 3 clicks
    and undoes them, so both see the machine in the same state (the host's speed drifts by ±10 % over a
    minute); the first round's box and the session's first click are one-time preparation. ``pause``:
    seconds of a user's time (untimed) before each box and each click — a person looks at the mask before
    the next prompt; what the widget does in that time (round 5: the next click's mask input) is then
    done before the prompt, as for a person; ``0``: prompts back to back."""
    model = ml.load_model(backend=backend)
    model.click_rule = rule
    prompter = BoxPrompter(image, model, labels=["liver"], modality="CT", slice_index=z)
    box = np.round(ml.box_from_mask(truth)).astype(int)
    boxes, first, clicks, dices, dice_box = [], None, [], [], None
    for r in range(repeats + 1):
        d = (r + 1) % 2  # a new box each round: the last one, its clicks undone, would not be decoded again
        time.sleep(pause)
        ms = time_boxes(prompter, box + [-d, -d, d, d], "liver", 1, jitter=1)[0]
        if r:
            boxes.append(ms)
        obj = prompter.session.objects[0]
        dice_box = ml.dice(obj.mask, truth) if dice_box is None else dice_box
        for _ in range(3):
            x, y, positive = next_click(obj.mask, truth)
            time.sleep(pause)
            t0 = time.perf_counter()
            prompter.click(x, y, bool(positive))
            ms = (time.perf_counter() - t0) * 1000
            if first is None:
                first = ms
            else:
                clicks.append(ms)
        dices.append(ml.dice(obj.mask, truth))
        for _ in range(3):
            prompter.undo()
    return {"backend": backend, "rule": type(rule or DEFAULT_RULE).__name__, "box_ms": statistics.median(boxes),
            "first_click_ms": first, "click_ms": statistics.median(clicks), "dice_box": dice_box, "dice_3": dices[0],
            "click_decoder": model.click_decoder is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=0, help="resize the slice to size×size first (0: as read)")
    parser.add_argument("--backends", nargs="*", help="default: torch and every compiled backend")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds of a user's time before each box and click, untimed (default 0: back to back)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image, label = ct_case("case-02")
    z = int(np.argmax((label == 5).sum(axis=(1, 2))))
    truth = label[z] == 5
    if args.size:
        import cv2

        image = np.stack([cv2.resize(s.astype(np.float32), (args.size, args.size), interpolation=cv2.INTER_LINEAR)
                          for s in image])
        truth = cv2.resize(truth.astype(np.uint8), (args.size, args.size), interpolation=cv2.INTER_NEAREST) > 0
    rows = [measure(b, image, truth, z, args.repeats, rule, args.pause)
            for b in (args.backends or backends_to_measure()) for rule in (None, DecoderRule())]
    print(f"## Clicks in the widget (`bench/bench_clicks_widget.py`, {args.threads} thread(s), real CT case-02 "
          f"slice {z}{f' resized to {args.size}²' if args.size else ''}, liver; "
          f"{f'{args.pause:g} s pause before each prompt' if args.pause else 'prompts back to back'})\n")
    print("| backend | click rule | box → mask (ms) | first click (ms) | click → mask (ms) | click / box | "
          "liver Dice box → +3 clicks | click decoder |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['rule']} | {r['box_ms']:.0f} | {r['first_click_ms']:.0f} | {r['click_ms']:.0f} | "
              f"{r['click_ms'] / r['box_ms']:.2f}× | {r['dice_box']:.3f} → {r['dice_3']:.3f} | "
              f"{'yes' if r['click_decoder'] else 'no (pretrained decoder)'} |")


if __name__ == "__main__":
    main()
