"""Do ONNX Runtime's spinning worker threads slow the torch/numpy work that follows a decoder call?
(issue 22, item 4).

Two ORT sessions of the package's exported decoder, ``--threads`` intra-op threads each: ORT's
default (workers spin after a run) and ``session.intra_op.allow_spinning = 0``. Each round runs one
decoder call, then the work the challenge path does next (torch bilinear of the logits, a cv2
INTER_AREA resize of a 512² mask, a numpy reduction) and times both; the two sessions alternate.

    OMP_NUM_THREADS=2 python bench/bench_ort_spinning.py --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    os.environ.setdefault("MEDSAM_LITE_THREADS", str(args.threads))
    import cv2
    import onnxruntime as ort
    import torch
    import torch.nn.functional as F

    import medsam_lite as ml

    torch.set_num_threads(args.threads)
    model = ml.load_model(backend="onnxruntime")
    path = str(model.runtime.decoder_path)

    def session(spin: bool):
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    sessions = {"spinning (ORT default)": session(True), "allow_spinning=0": session(False)}
    rng = np.random.default_rng(0)
    feeds = {}
    for i in next(iter(sessions.values())).get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = rng.standard_normal(shape).astype(np.float32) if "float" in i.type else np.ones(shape, np.int64)
    if "boxes" in feeds:
        feeds["boxes"] = np.array([[40, 50, 160, 170]], np.float32).reshape(feeds["boxes"].shape)
    mask = np.zeros((512, 512), np.uint8)
    mask[100:300, 150:400] = 1
    times = {k: {"decoder": [], "follow": [], "both": []} for k in sessions}
    for r in range(args.rounds + 3):
        for name, sess in (sessions.items() if r % 2 == 0 else reversed(list(sessions.items()))):
            t0 = time.perf_counter()
            low = sess.run(None, feeds)[0]
            t1 = time.perf_counter()
            x = F.interpolate(torch.from_numpy(np.ascontiguousarray(low[:1, :1])), size=(512, 512), mode="bilinear",
                              align_corners=False)
            small = cv2.resize(mask * 3, (256, 256), interpolation=cv2.INTER_AREA)
            _ = (x > 0).sum().item() + int(np.nonzero(small.any(1))[0].size)
            t2 = time.perf_counter()
            if r >= 3:  # warm-up rounds dropped
                times[name]["decoder"].append(t1 - t0)
                times[name]["follow"].append(t2 - t1)
                times[name]["both"].append(t2 - t0)
    print(f"threads {args.threads}, {args.rounds} rounds, load average {os.getloadavg()[0]:.1f}; medians in ms\n")
    print("| ORT session | decoder call | following torch/cv2/numpy work | both |")
    print("|---|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {1000 * statistics.median(t['decoder']):.1f} | {1000 * statistics.median(t['follow']):.2f} "
              f"| {1000 * statistics.median(t['both']):.1f} |")


if __name__ == "__main__":
    main()
