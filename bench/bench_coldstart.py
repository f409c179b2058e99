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

``--write`` appends a section to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--baseline-rev", default="4e5d79e", help="git revision of the baseline package")
    ap.add_argument("--write", action="store_true", help="append the section to bench/RESULTS.md")
    args = ap.parse_args(argv)

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
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        with open(ROOT / "bench" / "RESULTS.md", "a", encoding="utf-8") as handle:
            handle.write(text)
    shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
