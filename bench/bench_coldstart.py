"""Cold start, timed as whole processes (issue 30): ``import medsam_lite``, ``medsam-lite --help`` and
``medsam-lite predict <PNG> --box … --out m.png`` with the exports cached, against the same commands
run from a baseline revision of the package (default: the commit before the torch-free path), A B A B ….

Each command is a fresh ``python`` process; its wall time runs from just before the start to just after
the child is reaped, user + system CPU and peak RSS are the kernel's accounting of the child
(``os.wait4``). One warm-up pair is not counted (it also fills the compiled-model caches); then
``--runs`` pairs, medians, and the A/B ratio taken pair by pair (pairing keeps it meaningful on a
machine whose speed drifts). Both sides run with the same thread count (``--threads``, default 1:
other jobs share this machine) and the same export cache; before timing, one torch load of the
default model writes the manifest the torch-free path finds its exports by.

Usage::

    python bench/bench_coldstart.py [--runs 5] [--threads 1] [--baseline-rev 4e5d79e] [--write]
    python bench/bench_coldstart.py --suite 3d --only predict|box|click [--runs 3] [--baseline-rev 372adf3] [--write]

``--write`` appends a section to bench/RESULTS.md.

``--suite 3d`` (issues 30 and 32) times, on a 20×512×512 CT with 7 classes built at bench time
(:func:`build_ct20`; nothing large is committed): ``predict`` — ``medsam-lite predict ct20.nii.gz --box3d …
--out m.nii.gz`` (the liver's 3D box; no embedding cache: every slice the walk reaches is encoded), with
the encoder's seconds per slice and the number of slices encoded measured by a helper process of the new
tree (each encode timed) so that "≤ 2 s + the slices' encoder time" can be checked; ``box`` — the CVPR25
box step ``medsam-lite challenge box/ out/`` with an empty embedding cache each run (as the harness's first
step); ``click`` — the first click step (one harness click per class, ``prev_pred`` = the new tree's box
step output; the same input file for both sides), each side's slice embeddings on disk from its own
warm-up box step. Each ``--only`` part is one invocation (each stays under ~10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PNG = ROOT / "data_samples" / "brain_slice.png"
BOX = ["40", "50", "120", "150"]


def run_once(argv: list[str], env: dict, cwd: Path) -> dict:
    """One whole process: wall seconds, user + system CPU seconds, peak RSS (MiB), exit code. ``cwd``
    holds no package (``python -c`` puts the working folder before ``PYTHONPATH``)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{err[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024}


def baseline_tree(rev: str) -> Path:
    """The package as it was at ``rev`` (``git archive``: no worktree, nothing in the repository changes)."""
    out = Path(tempfile.mkdtemp(prefix="coldstart-base-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "medsam_lite"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def cli_entry(pyproject: str) -> str:
    """The ``medsam-lite`` console script's ``module:function`` as a ``pyproject.toml`` text declares it
    (each side runs its own command: the module moved between the baseline and now)."""
    import tomllib

    return tomllib.loads(pyproject)["project"]["scripts"]["medsam-lite"]


def commands(out_png: Path, entry: str) -> dict[str, list[str]]:
    py = sys.executable
    module, func = entry.split(":")
    cli = [py, "-c", f"import sys; from {module} import {func}; sys.exit({func}())"]
    return {"import medsam_lite": [py, "-c", "import medsam_lite"],
            "medsam-lite --help": cli + ["--help"],
            "medsam-lite predict PNG --box (exports cached)": cli + ["predict", str(PNG), "--box", *BOX,
                                                                     "--out", str(out_png)]}


#: The CT classes of the 20×512×512 case (``data_samples/ct_abdomen/labels.json``): spleen, kidneys,
#: liver, stomach, aorta, inferior vena cava → classes 1 … 7 (gallbladder and pancreas left out: too few
#: voxels in one of the two slabs).
CT20_LABELS = (1, 2, 3, 5, 6, 52, 63)


def build_ct20(folder: Path) -> dict:
    """The 20×512×512 CT with 7 classes, built at bench time from ``data_samples/ct_abdomen``: slabs
    ``case-01`` and ``case-02`` (10 slices each, 101×122 at 3 mm, one patient) stacked to 20 slices,
    each slice padded at the bottom to 122×122 (−1024 HU, label 0) and upsampled in-plane to 512×512
    (``cv2.INTER_LINEAR`` for HU, ``INTER_NEAREST`` for labels; spacing 3·122/512 = 0.715 mm in-plane,
    3 mm between slices). Writes ``ct20.nii.gz`` (HU, for ``medsam-lite predict``), the CVPR25 box-step
    input ``box/CT_ct20.npz`` (``imgs`` = ``normalize_intensity(HU, "CT")``, one harness box per class,
    no random shift) and returns ``{"nii", "box_dir", "imgs", "gts", "spacing", "box3d"}`` (``box3d``:
    the liver's 3D box, ``X0 Y0 Z0 X1 Y1 Z1``)."""
    import cv2
    import SimpleITK as sitk

    sys.path.insert(0, str(ROOT))
    from medsam_lite import io, normalize_intensity
    from medsam_lite.io.challenge25 import write_case25

    src = ROOT / "data_samples" / "ct_abdomen"
    hu = np.concatenate([io.read_volume(src / f"case-0{i}.nii.gz").array for i in (1, 2)]).astype(np.float32)
    lab = np.concatenate([io.read_label(src / f"case-0{i}_label.nii.gz").array for i in (1, 2)])
    pad = hu.shape[2] - hu.shape[1]
    hu = np.pad(hu, ((0, 0), (0, pad), (0, 0)), constant_values=-1024)
    lab = np.pad(lab, ((0, 0), (0, pad), (0, 0)))
    hu = np.stack([cv2.resize(s, (512, 512), interpolation=cv2.INTER_LINEAR) for s in hu]).astype(np.int16)
    lab = np.stack([cv2.resize(s.astype(np.uint8), (512, 512), interpolation=cv2.INTER_NEAREST) for s in lab])
    gts = np.zeros(lab.shape, np.uint8)
    for k, v in enumerate(CT20_LABELS, start=1):
        gts[lab == v] = k
    spacing_xyz = (3.0 * 122 / 512, 3.0 * 122 / 512, 3.0)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing(spacing_xyz)
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(folder / "ct20.nii.gz"))
    imgs = normalize_intensity(hu, "CT")
    boxes = []
    for k in range(1, len(CT20_LABELS) + 1):
        z = np.unique(np.nonzero(gts == k)[0])
        mid = z[len(z) // 2]
        ys, xs = np.nonzero(gts[mid] == k)
        boxes.append(dict(z_min=z.min(), z_max=z.max(), z_mid=mid, z_mid_x_min=xs.min(), z_mid_y_min=ys.min(),
                          z_mid_x_max=xs.max(), z_mid_y_max=ys.max()))
    (folder / "box").mkdir(exist_ok=True)
    spacing = tuple(reversed(spacing_xyz))
    write_case25(folder / "box" / "CT_ct20.npz", imgs, spacing, boxes=boxes, gts=gts)
    z, y, x = np.nonzero(gts == 4)
    return {"nii": folder / "ct20.nii.gz", "box_dir": folder / "box", "imgs": imgs, "gts": gts, "spacing": spacing,
            "boxes": boxes, "box3d": [int(x.min()), int(y.min()), int(z.min()), int(x.max()), int(y.max()), int(z.max())]}


def click_step_input(case: dict, segs: np.ndarray, folder: Path) -> Path:
    """The harness's first click step after a box step that gave ``segs``: one click per class at the
    centre of its largest error component (``bench/cvpr25/loop.next_click``), ``prev_pred = segs``."""
    sys.path.insert(0, str(ROOT / "bench" / "cvpr25"))
    import loop
    from medsam_lite.io.challenge25 import write_case25

    clicks, order = [], []
    for k in range(1, len(CT20_LABELS) + 1):
        click = loop.next_click((segs == k).astype(np.uint8), (case["gts"] == k).astype(np.uint8))
        entry = {"fg": [], "bg": []}
        if click is not None:
            entry[click[0]].append(click[1])
        clicks.append(entry)
        order.append([None if click is None else click[0]])
    (folder / "click").mkdir(parents=True, exist_ok=True)
    return write_case25(folder / "click" / "CT_ct20.npz", case["imgs"], case["spacing"], boxes=case["boxes"],
                        gts=case["gts"], clicks=clicks, clicks_order=order, prev_pred=segs)


_ENCODE_TIMER = r"""
import json, statistics, sys, time
import numpy as np
import medsam_lite as ml
from medsam_lite import io
model = ml.load_model()
assert type(model).__name__ == "ExportedModel", type(model).__name__
calls, inner = [], model.encode
def timed(x):
    w, c = time.perf_counter(), time.process_time()
    out = inner(x)
    calls.append((time.perf_counter() - w, time.process_time() - c))
    return out
model.encode = timed
volume = io.read_volume(sys.argv[1])
box = [float(v) for v in sys.argv[2:8]]
start = time.perf_counter()
mask = ml.predict_volume(volume, box, model=model, progress=False)
print(json.dumps({"slices": len(calls), "enc_wall": statistics.median(c[0] for c in calls),
                  "enc_cpu": statistics.median(c[1] for c in calls), "predict_wall": time.perf_counter() - start,
                  "voxels": int(mask.sum())}))
"""


def _emit(lines: list[str], write: bool, *scratch: Path) -> int:
    """Print the section, append it to bench/RESULTS.md when asked, remove the scratch folders."""
    text = "\n".join(lines) + "\n"
    print(text)
    if write:
        with open(ROOT / "bench" / "RESULTS.md", "a", encoding="utf-8") as handle:
            handle.write(text)
    for folder in scratch:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def _pairs(name, cmd_a, cmd_b, env_a, env_b, cwd, runs, rows, before=None):
    """``runs`` pairs A B (``before(side, i)`` may change the env first: a fresh cache folder)."""
    a, b = [], []
    for i in range(runs):
        for side, cmd, env, out in (("a", cmd_a, env_a, a), ("b", cmd_b, env_b, b)):
            env = before(side, i, env) if before else env
            out.append(run_once(cmd, env, cwd))
        print(f"  {name} pair {i + 1}: new {a[-1]['wall']:.2f} s ({a[-1]['cpu']:.2f} CPU), baseline "
              f"{b[-1]['wall']:.2f} s ({b[-1]['cpu']:.2f} CPU)", flush=True)
    row = {"name": name, "ratio": statistics.median(x["wall"] / y["wall"] for x, y in zip(a, b)),
           "cpu_ratio": statistics.median(x["cpu"] / y["cpu"] for x, y in zip(a, b)), "runs": runs,
           **{f"{side}_{k}": statistics.median(r[k] for r in rs) for side, rs in (("a", a), ("b", b))
              for k in ("wall", "cpu", "rss")},
           **{f"{side}_{m.__name__}": m(r["wall"] for r in rs) for side, rs in (("a", a), ("b", b)) for m in (min, max)}}
    rows.append(row)
    return row


def run_3d(args) -> int:
    """``--suite 3d``: the 20×512×512 CT's cold ``predict --box3d``, CVPR25 box step and click step."""
    tmp = Path(tempfile.mkdtemp(prefix="coldstart3d-"))
    base = baseline_tree(args.baseline_rev)
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_NUM_THREADS", "MEDSAM_LITE_BACKEND",
                                                             "MEDSAM_LITE_EMBEDDING_CACHE")}
    env.update(OMP_NUM_THREADS=str(args.threads), MEDSAM_LITE_THREADS=str(args.threads))
    env_a, env_b = dict(env, PYTHONPATH=str(ROOT)), dict(env, PYTHONPATH=str(base))
    for env_x, want in ((env_a, str(ROOT)), (env_b, str(base))):  # each side: its own package, its manifest
        subprocess.run([sys.executable, "-c", "import torch, medsam_lite as ml; ml.load_model()"], env=env_x,
                       check=True, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        where = subprocess.run([sys.executable, "-c", "import medsam_lite; print(medsam_lite.__file__)"], env=env_x,
                               cwd=tmp, check=True, capture_output=True, text=True).stdout
        assert where.startswith(want), (where, want)
    case = build_ct20(tmp / "case")
    entry_b = cli_entry(subprocess.run(["git", "-C", str(ROOT), "show", f"{args.baseline_rev}:pyproject.toml"],
                                       check=True, capture_output=True, text=True).stdout)
    entry_a = cli_entry((ROOT / "pyproject.toml").read_text())

    def cli(entry):
        module, func = entry.split(":")
        return [sys.executable, "-c", f"import sys; from {module} import {func}; sys.exit({func}())"]

    load_before = os.getloadavg()[0]
    rows, notes = [], []
    if args.only == "predict":
        box = [str(v) for v in case["box3d"]]
        cmd = {side: cli(entry) + ["predict", str(case["nii"]), "--box3d", *box, "--out", str(tmp / f"m_{side}.nii.gz")]
               for side, entry in (("a", entry_a), ("b", entry_b))}
        timer = [sys.executable, "-c", _ENCODE_TIMER, str(case["nii"]), *box]
        enc = [json.loads(subprocess.run(timer, env=env_a, cwd=tmp, check=True, capture_output=True,
                                         text=True).stdout.strip().splitlines()[-1])]
        row = _pairs("medsam-lite predict CT --box3d (20×512², exports cached)", cmd["a"], cmd["b"], env_a, env_b,
                     tmp, args.runs, rows)
        enc.append(json.loads(subprocess.run(timer, env=env_a, cwd=tmp, check=True, capture_output=True,
                                             text=True).stdout.strip().splitlines()[-1]))
        n = enc[0]["slices"]
        enc_wall = statistics.mean(e["enc_wall"] for e in enc)
        enc_cpu = statistics.mean(e["enc_cpu"] for e in enc)
        import SimpleITK as sitk

        same = np.array_equal(*(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp / f"m_{s}.nii.gz"))) for s in "ab"))
        notes.append(f"Encoder (helper process of the new tree, before/after the pairs, median per slice): "
                     f"{enc[0]['enc_wall']:.2f}/{enc[1]['enc_wall']:.2f} s wall, {enc[0]['enc_cpu']:.2f}/"
                     f"{enc[1]['enc_cpu']:.2f} s CPU; the walk encodes **{n} slices** ({enc[0]['voxels']} voxels). "
                     f"New wall − {n} × encoder = **{row['a_wall'] - n * enc_wall:.2f} s** (target ≤ 2 s), CPU "
                     f"{row['a_cpu'] - n * enc_cpu:.2f} s; baseline wall − {n} × encoder = "
                     f"{row['b_wall'] - n * enc_wall:.2f} s. The two mask files are "
                     f"{'voxel-identical' if same else 'DIFFERENT'}.")
    else:
        box_cmd = {side: cli(entry) + ["challenge", str(case["box_dir"]), str(tmp / f"out_box_{side}")]
                   for side, entry in (("a", entry_a), ("b", entry_b))}

        def fresh_cache(side, i, env_x):
            return dict(env_x, MEDSAM_LITE_EMBEDDING_CACHE=str(tmp / f"emb_{side}_{i}"))

        if args.only == "box":
            _pairs("CVPR25 box step, 7 boxes (empty embedding cache)", box_cmd["a"], box_cmd["b"], env_a, env_b, tmp,
                   args.runs, rows, fresh_cache)
        else:  # click: warm-up box step per side fills its cache, then the click input from the new side's output
            for side, env_x in (("a", env_a), ("b", env_b)):
                run_once(box_cmd[side], fresh_cache(side, "warm", env_x), tmp)
            segs = np.load(tmp / "out_box_a" / "CT_ct20.npz")["segs"]
            click_in = click_step_input(case, segs, tmp / "case")
            cmd = {side: cli(entry) + ["challenge", str(click_in.parent), str(tmp / f"out_click_{side}")]
                   for side, entry in (("a", entry_a), ("b", entry_b))}
            _pairs("CVPR25 click step, 1 click per class (embeddings on disk)", cmd["a"], cmd["b"], env_a, env_b, tmp,
                   args.runs, rows, lambda side, i, env_x: fresh_cache(side, "warm", env_x))
            same = np.array_equal(*(np.load(tmp / f"out_click_{s}" / "CT_ct20.npz")["segs"] for s in "ab"))
            same_box = np.array_equal(segs, np.load(tmp / "out_box_b" / "CT_ct20.npz")["segs"])
            notes.append(f"Box-step outputs of the warm-up pair {'identical' if same_box else 'DIFFERENT'}; click-step "
                         f"outputs {'identical' if same else 'DIFFERENT'} between new and baseline.")
    load_after = os.getloadavg()[0]
    lines = ["", f"## Cold 3D and CVPR25 steps: whole-process timings (bench/bench_coldstart.py --suite 3d --only "
             f"{args.only})", "",
             f"{time.strftime('%Y-%m-%dT%H:%M', time.gmtime())} UTC · {_cpu_name()}, {os.cpu_count()} logical CPUs · "
             f"{args.threads} thread(s) · load average before/after {load_before:.1f}/{load_after:.1f} (other jobs share "
             f"the machine: compare the paired ratios and the CPU seconds) · {args.runs} pairs, A B A B …, medians "
             f"(min–max) · exports, auto's choice and compiled models cached. New = this tree (torch-free); baseline = "
             f"`{args.baseline_rev}` (volumes and the challenge on the torch model). Case: `build_ct20` — "
             "`data_samples/ct_abdomen` case-01 + case-02 stacked (20 slices), padded to 122² and upsampled to 512² "
             "(linear HU, nearest labels), classes spleen, kidneys, liver, stomach, aorta, IVC.", "",
             "| command | new wall s | baseline wall s | new / baseline (wall) | new CPU s | baseline CPU s | "
             "new / baseline (CPU) | new peak MiB | baseline peak MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['a_wall']:.2f} ({r['a_min']:.2f}–{r['a_max']:.2f}) | {r['b_wall']:.2f} "
                     f"({r['b_min']:.2f}–{r['b_max']:.2f}) | {r['ratio']:.3f} | {r['a_cpu']:.2f} | {r['b_cpu']:.2f} | "
                     f"{r['cpu_ratio']:.3f} | {r['a_rss']:.0f} | {r['b_rss']:.0f} |")
    lines += [""] + notes
    return _emit(lines, args.write, base, tmp)


def _cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--baseline-rev", default=None, help="git revision of the baseline package (default: "
                    "4e5d79e for the 2D suite, 372adf3 for --suite 3d)")
    ap.add_argument("--suite", choices=("2d", "3d"), default="2d")
    ap.add_argument("--only", choices=("predict", "box", "click"), default="click",
                    help="--suite 3d: which command (one per invocation)")
    ap.add_argument("--write", action="store_true", help="append the section to bench/RESULTS.md")
    args = ap.parse_args(argv)
    if args.baseline_rev is None:
        args.baseline_rev = "4e5d79e" if args.suite == "2d" else "372adf3"
    if args.suite == "3d":
        return run_3d(args)

    tmp = Path(tempfile.mkdtemp(prefix="coldstart-"))
    base = baseline_tree(args.baseline_rev)
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_NUM_THREADS", "MEDSAM_LITE_BACKEND")}
    env.update(OMP_NUM_THREADS=str(args.threads), MEDSAM_LITE_THREADS=str(args.threads))
    env_a, env_b = dict(env, PYTHONPATH=str(ROOT)), dict(env, PYTHONPATH=str(base))
    # the torch path once: exports, auto's choice and the manifest are in the cache (as after any first use)
    subprocess.run([sys.executable, "-c", "import torch, medsam_lite as ml; ml.load_model()"], env=env_a, check=True,
                   cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for env_x, want in ((env_a, str(ROOT)), (env_b, str(base))):  # each side imports its own package
        where = subprocess.run([sys.executable, "-c", "import medsam_lite; print(medsam_lite.__file__)"], env=env_x,
                               cwd=tmp, check=True, capture_output=True, text=True).stdout
        assert where.startswith(want), (where, want)
    load_before = os.getloadavg()[0]
    rows = []
    entry_b = cli_entry(subprocess.run(["git", "-C", str(ROOT), "show", f"{args.baseline_rev}:pyproject.toml"],
                                       check=True, capture_output=True, text=True).stdout)
    commands_b = commands(tmp / "m_base.png", entry_b)
    for name, cmd in commands(tmp / "m.png", cli_entry((ROOT / "pyproject.toml").read_text())).items():
        cmd_b = commands_b[name]
        run_once(cmd, env_a, tmp), run_once(cmd_b, env_b, tmp)  # warm-up pair (fills the compiled-model caches)
        a, b = [], []
        for _ in range(args.runs):
            a.append(run_once(cmd, env_a, tmp))
            b.append(run_once(cmd_b, env_b, tmp))
        ratio = statistics.median(x["wall"] / y["wall"] for x, y in zip(a, b))
        row = {"name": name, "ratio": ratio,
               **{f"{side}_{k}": statistics.median(r[k] for r in runs) for side, runs in (("a", a), ("b", b))
                  for k in ("wall", "cpu", "rss")},
               "a_min": min(r["wall"] for r in a), "a_max": max(r["wall"] for r in a),
               "b_min": min(r["wall"] for r in b), "b_max": max(r["wall"] for r in b)}
        rows.append(row)
        print(f"{name}: new {row['a_wall']:.2f} s (min {row['a_min']:.2f}, max {row['a_max']:.2f}), "
              f"baseline {row['b_wall']:.2f} s (min {row['b_min']:.2f}, max {row['b_max']:.2f}), "
              f"new/baseline {ratio:.3f}", flush=True)
    same = (tmp / "m.png").read_bytes() == (tmp / "m_base.png").read_bytes()
    load_after = os.getloadavg()[0]
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [
        "", "## Cold start: whole-process timings (bench/bench_coldstart.py)", "",
        f"{time.strftime('%Y-%m-%dT%H:%M', time.gmtime())} UTC · {cpu}, {os.cpu_count()} logical CPUs · Python "
        f"{platform.python_version()} · {args.threads} thread(s) (OMP_NUM_THREADS; other jobs share the machine) · "
        f"load average before/after {load_before:.1f}/{load_after:.1f} · {args.runs} runs per command after one "
        f"warm-up, A B A B …, medians (min–max) · exports, auto's choice and the compiled-model caches in the cache.",
        "",
        f"New = this tree; baseline = the package at `{args.baseline_rev}` (before the torch-free path), same "
        "Python, same cache. The PNG is `data_samples/brain_slice.png` (164×191), box "
        f"`{' '.join(BOX)}`; the two mask files written are {'byte-identical' if same else 'DIFFERENT'}.",
        "",
        "| command | new wall s | baseline wall s | new / baseline | new CPU s | baseline CPU s | new peak MiB | baseline peak MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| `{r['name']}` | {r['a_wall']:.2f} ({r['a_min']:.2f}–{r['a_max']:.2f}) | {r['b_wall']:.2f} "
                     f"({r['b_min']:.2f}–{r['b_max']:.2f}) | {r['ratio']:.3f} | {r['a_cpu']:.2f} | {r['b_cpu']:.2f} | "
                     f"{r['a_rss']:.0f} | {r['b_rss']:.0f} |")
    return _emit(lines, args.write, base, tmp)


if __name__ == "__main__":
    sys.exit(main())
