"""The CVPR 2025 interactive 3D challenge's evaluation, run against ``medsam-lite challenge`` (issue 32).

Cases are built from ``data_samples/`` in the CVPR25 format, with the harness's own conventions
(``get_boxes.py``: labels relabelled 1…N in sorted order; per class the z-extent and a 2D box on
the middle labelled slice, widened by a random 0–5 px × size/256 with ``np.random.seed(2025)`` per
case; ``imgs`` D×H×W uint8: CT windowed W400/L40, MR percentiles; ``spacing`` in array order
(z, y, x), as the harness hands it to its NSD):

* ``CT_case-03``: real abdominal CT, the 6 organs of the slab (10×101×122). The click decoder
  (``scripts/train_click_decoder.py``) trained on CT case-01/02 — slabs of the same patient:
  not a held-out patient.
* ``MR_case-02``: real abdominal MR, 9 organs (the click decoder trained on MR case-01, same patient).
* ``MRbrain_sub-08``, ``MRbrain_sub-06``: synthetic brain MR (3 structures; 12-slice slabs): a domain the click
  decoder and LiteMedSAM's fine-tunes in this repository never saw — unseen.
* ``CTlesion_case-03``, ``MRlesion_case-02``, ``MRbrainlesion_sub-07``: synthetic 3D lesions
  (:func:`add_lesions_3d`, built on :func:`medsam_lite.samples.synthetic_lesion`) in the liver and spleen of
  the CT / MR slabs and in the white matter of brain sub-07, the lesions alone as classes: a target kind
  no bundled label has — unseen.
* ``CT_case-01``: real CT, 9 organs (a training slab of the click decoder), with ``--all``.
* ``MRtumour_brain1``, ``CTtumour_lung2`` (``--cases`` only): real patients of another source and domain
  (``bench_clicks.REAL``: pyradiomics' brain-tumour MR and lung-tumour CT test cases, fetched once from PyPI),
  the tumour as the one class, its labelled slices ± 2 — nothing was trained or chosen on them.

Runs (one thread: the machine is shared)::

    OMP_NUM_THREADS=1 MEDSAM_LITE_THREADS=1 python bench/bench_cvpr25.py            # the re-implemented loop
    python bench/bench_cvpr25.py --harness /path/to/CVPR-MedSegFMCompetition        # the official harness

Without ``--harness`` the protocol runs from ``bench/cvpr25/loop.py`` (a re-implementation, also
what CI runs). With it, the official ``CVPR25_iter_eval.py`` runs **unchanged** in a temporary
folder: the only thing replaced is the ``docker`` program it calls, by ``bench/cvpr25/docker``
first on ``PATH`` (``docker container run … sh predict.sh`` → ``medsam-lite challenge ./inputs
./outputs``; ``docker image load`` / ``rmi`` do nothing). Its requirements pin numpy 1.26; on numpy 2
``bench/cvpr25/numpy2_shim/sitecustomize.py`` restores the ``np.Inf`` alias its ``SurfaceDice.py`` uses
(on its PYTHONPATH only). It needs torch, ``connected-components-3d``,
pandas, scipy, scikit-image (no GPU: it takes its CPU path). Each step is a fresh process, as in the
challenge; slice embeddings persist across steps in the cache folder.

Writes its table into ``bench/RESULTS.md`` in place of the marked ``bench_cvpr25`` section (``--no-write``: print
only; ``--cases``: some cases; ``--save`` / ``--merge``: one table from several runs).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "cvpr25"))

import loop  # noqa: E402  (bench/cvpr25/loop.py)

CASES = {  # name → (folder, case, modality, click decoder trained on it?, lesion hosts (labels) or None)
    "CT_case-03": ("ct_abdomen", "case-03", "CT", "no (held-out slab; same patient as training)", None),
    "MR_case-02": ("mr_abdomen", "case-02", "MR", "no (held-out slab; same patient as training)", None),
    "MRbrain_sub-08": ("brain_mri", "sub-08", "MR", "no (synthetic brain: unseen domain)", None),
    "MRbrain_sub-06": ("brain_mri", "sub-06", "MR", "no (synthetic brain: unseen domain)", None),
    "CTlesion_case-03": ("ct_abdomen", "case-03", "CT", "no (synthetic lesions: unseen target kind)", (5, 1)),
    "MRlesion_case-02": ("mr_abdomen", "case-02", "MR", "no (synthetic lesions: unseen target kind)", (5, 1)),
    "MRbrainlesion_sub-07": ("brain_mri", "sub-07", "MR", "no (synthetic brain + lesion: unseen domain and kind)", (1,)),
    "CT_case-01": ("ct_abdomen", "case-01", "CT", "yes (training slab)", None),
    # round 4 of issue 31: real patients of another source (bench_clicks.REAL: pyradiomics' test cases, fetched once
    # from PyPI), the tumour alone as the class, its labelled slices ± 2; with --cases only (never in the default set)
    "MRtumour_brain1": ("pyradiomics", "brain1", "MR", "no (real patient, brain tumour: unseen patient and domain)", None),
    "CTtumour_lung2": ("pyradiomics", "lung2", "CT", "no (real patient, lung tumour: unseen patient and domain)", None),
}
REAL_CASES = ("MRtumour_brain1", "CTtumour_lung2")
LESION = 100  # lesion labels: LESION + i for the i-th host (sorted after every organ label)


def add_lesions_3d(array: np.ndarray, lab: np.ndarray, hosts, modality: str, seed: int, spacing_zyx) -> tuple:
    """Synthetic 3D lesions: one blob per host label, a few slices thick, each slice drawn by
    :func:`medsam_lite.samples.synthetic_lesion` (the 2D lesion of the click bench) around one centre.

    The in-plane radius ``r`` is drawn from 3–7 px (abdomen, 3 mm) or 5–11 px (brain, 1 mm); the blob
    spans ``h`` = ``r`` in mm over the slice spacing, 1–2, slices on each side (an ellipsoid:
    ``r_z = r·√(1 − (dz/(h + 1))²)``); its centre: the host's largest slice at least ``h`` from the slab's
    ends, at the pixel deepest inside the host on all ``2h + 1`` slices (``r`` capped by that depth − 2); each slice's lesion
    confined to a disc of ``r_z + 1.5`` px around the centre inside the host (so it stays one blob), with
    the same seed on every slice (the same hypo-/hyper-intensity). Returns ``(array, labels)``: the
    image with the lesions (float64) and the label map with ``LESION + i`` where the i-th lesion is.
    """
    from scipy import ndimage

    from medsam_lite.samples import synthetic_lesion

    rng = np.random.default_rng(seed)
    out, lab = array.astype(np.float64).copy(), lab.copy()
    dz, dy = float(spacing_zyx[0]), float(spacing_zyx[1])
    lo_r, hi_r = (5.0, 11.0) if dy <= 1.5 else (3.0, 7.0)
    for i, host in enumerate(hosts, start=1):
        region = lab == host
        r = rng.uniform(lo_r, hi_r)
        half = int(np.clip(r * dy / dz, 1, 2))  # slices on each side (the blob's radius in mm, at most 2)
        area = region.sum((1, 2)).astype(float)
        area[:half], area[len(area) - half:] = -1, -1  # the whole blob inside the slab
        z0 = int(np.argmax(area))
        depth = ndimage.distance_transform_edt(region[z0 - half:z0 + half + 1].all(0))
        cy, cx = np.unravel_index(int(np.argmax(depth)), depth.shape)
        r = min(r, float(depth[cy, cx]) - 2)
        yy, xx = np.ogrid[:lab.shape[1], :lab.shape[2]]
        slice_seed = int(rng.integers(2 ** 31))
        for z in range(z0 - half, z0 + half + 1):
            if not 0 <= z < lab.shape[0]:
                continue
            rz = r * np.sqrt(max(0.0, 1 - ((z - z0) / (half + 1)) ** 2))
            if rz < 1.5:
                continue
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= (rz + 1.5) ** 2
            made = synthetic_lesion(out[z], (lab[z] == host) & disc, np.random.default_rng(slice_seed), modality,
                                    radius_px=(rz, rz))
            if made is not None:
                out[z], mask = made
                lab[z][mask] = LESION + i
    return out, lab


def mask2d_box(gt2d: np.ndarray) -> list:
    """``get_boxes.py``'s ``mask2D_to_bbox``: tight box + a random 0–5 px shift scaled by size/256."""
    ys, xs = np.where(gt2d > 0)
    h, w = gt2d.shape
    shift = np.random.randint(0, 6, 1)[0]
    sx, sy = int(shift * w / 256), int(shift * h / 256)
    return [max(0, xs.min() - sx), max(0, ys.min() - sy), min(w - 1, xs.max() + sx), min(h - 1, ys.max() + sy)]


def box3d(gt: np.ndarray) -> dict:
    """``get_boxes.py``'s ``mask3D_to_bbox``."""
    z = np.unique(np.where(gt)[0])
    mid = z[len(z) // 2]
    x0, y0, x1, y1 = mask2d_box(gt[mid])
    return dict(z_min=z.min(), z_max=z.max(), z_mid=mid, z_mid_x_min=x0, z_mid_y_min=y0, z_mid_x_max=x1,
                z_mid_y_max=y1)


def build_case(name: str, folder: Path) -> tuple[Path, np.ndarray]:
    from medsam_lite import io, normalize_intensity
    from medsam_lite.io.challenge25 import write_case25

    sub, case, modality, _, hosts = CASES[name]
    if sub == "pyradiomics":
        from bench_clicks import real_case

        vol, lab = real_case(case)
        lab = (lab > 0).astype(np.uint8)
        z = np.nonzero(lab.any((1, 2)))[0]
        keep = slice(max(0, z.min() - 2), z.max() + 3)
        vol_array, lab = vol.array[keep], lab[keep]
    else:
        vol = io.read_volume(ROOT / "data_samples" / sub / f"{case}.nii.gz")
        lab = io.read_volume(ROOT / "data_samples" / sub / f"{case}_label.nii.gz").array
        vol_array = vol.array
    if sub == "brain_mri":  # a 12-slice slab around the structures' middle (time budget)
        z = np.nonzero(lab.any((1, 2)))[0]
        mid = (z.min() + z.max()) // 2
        keep = slice(max(0, mid - 6), mid + 6)
        vol_array, lab = vol_array[keep], lab[keep]
    if hosts:  # synthetic lesions; the case's classes: the hosts and their lesions
        vol_array, lab = add_lesions_3d(vol_array, lab, hosts, modality, 2025, tuple(reversed(vol.spacing)))
        lab = np.where(lab > LESION, lab, 0)
    values = np.unique(lab)[1:]
    gts = np.zeros(lab.shape, np.uint8)
    for i, v in enumerate(values, start=1):  # skimage.segmentation.relabel_sequential
        gts[lab == v] = i
    imgs = normalize_intensity(vol_array, modality)
    np.random.seed(2025)
    boxes = [box3d(gts == k) for k in range(1, len(values) + 1)]
    path = folder / f"{name}.npz"
    write_case25(path, imgs, tuple(reversed(vol.spacing)), boxes=boxes, gts=gts)
    return path, gts


def run_official(harness: Path, cases: dict, work: Path, env: dict) -> dict:
    """The official CVPR25_iter_eval.py, unchanged, with the stand-in docker on PATH."""
    import pandas as pd

    tmp = work / "official"
    tmp.mkdir()
    for f in ("CVPR25_iter_eval.py", "SurfaceDice.py"):
        shutil.copy(harness / f, tmp / f)
    (tmp / "imgs").mkdir()
    (tmp / "team_docker").mkdir()
    (tmp / "team_docker" / "medsamlite.tar.gz").write_bytes(b"")
    for path in cases.values():
        shutil.copy(path, tmp / "imgs" / path.name)
    env = dict(env, PATH=f"{ROOT / 'bench' / 'cvpr25'}{os.pathsep}{env['PATH']}", MEDSAM_LITE_PYTHON=sys.executable)
    env["PYTHONPATH"] = f"{ROOT / 'bench' / 'cvpr25' / 'numpy2_shim'}{os.pathsep}{env['PYTHONPATH']}"
    start = time.time()
    proc = subprocess.run([sys.executable, "CVPR25_iter_eval.py", "-i", "imgs", "-o", "seg", "-d", "team_docker",
                           "-val_gts", "none"], cwd=tmp, env=env, capture_output=True, text=True)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    print(f"official harness: {time.time() - start:.0f} s, rc {proc.returncode}")
    df = pd.read_csv(tmp / "seg" / "medsamlite" / "medsamlite_metrics.csv")
    out = {}
    for _, row in df.iterrows():
        out[Path(row["CaseName"]).stem] = {
            "dsc": [row[f"DSC_{i}"] for i in range(1, 7)], "nsd": [row[f"NSD_{i}"] for i in range(1, 7)],
            "time": [row[f"RunningTime_{i}"] for i in range(1, 7)], "DSC_AUC": row["DSC_AUC"],
            "NSD_AUC": row["NSD_AUC"], "DSC_Final": row["DSC_Final"], "NSD_Final": row["NSD_Final"]}
    out["_log"] = proc.stdout
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--harness", type=Path, default=os.environ.get("CVPR25_HARNESS"),
                    help="a checkout of JunMa11/CVPR-MedSegFMCompetition: run its CVPR25_iter_eval.py unchanged")
    ap.add_argument("--all", action="store_true", help="also CT_case-01 (a click-decoder training slab)")
    ap.add_argument("--cases", nargs="+", choices=list(CASES), help="run only these cases (default: every unseen one)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--save", type=Path, help="also save the per-case results as JSON (to merge runs: --merge)")
    ap.add_argument("--merge", type=Path, nargs="+", help="write one table from earlier --save files (runs nothing)")
    args = ap.parse_args()
    names = args.cases or [n for n in CASES if (args.all or n != "CT_case-01") and n not in REAL_CASES]
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               MEDSAM_LITE_THREADS=os.environ.get("MEDSAM_LITE_THREADS", "1"),
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    if args.merge:
        import json

        results, which = {}, None
        for f in args.merge:
            saved = json.loads(Path(f).read_text())
            which = which or saved.pop("_which")
            saved.pop("_which", None)
            results.update(saved)
        names = [n for n in CASES if n in results]
        return write(report(results, names, which), args.no_write)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env["MEDSAM_LITE_CACHE"] = os.environ.get("MEDSAM_LITE_CACHE", str(Path.home() / ".cache" / "medsam_lite"))
        (work / "cases").mkdir()
        built = {n: build_case(n, work / "cases") for n in names}
        results, which = {}, "re-implemented loop (bench/cvpr25/loop.py)"
        if args.harness:
            results = run_official(Path(args.harness), {n: p for n, (p, _) in built.items()}, work, env)
            which = "official CVPR25_iter_eval.py (unchanged; docker replaced by bench/cvpr25/docker)"
        else:
            def command(inputs, outputs):
                proc = subprocess.run([sys.executable, "-m", "medsam_lite.app.cli", "challenge", str(inputs), str(outputs)],
                                      env=env, capture_output=True, text=True)
                if proc.returncode:
                    print(proc.stderr[-2000:])
            for n, (path, gts) in built.items():
                results[n] = loop.run_case(path, gts, work / "run", command, log=print)
    if args.save:
        import json

        keep = {n: {k: (list(map(float, v)) if isinstance(v, list) else float(v)) for k, v in results[n].items()
                    if k != "clicks"} for n in names}
        args.save.write_text(json.dumps(dict(keep, _which=which)))
    write(report(results, names, which), args.no_write)


def write(section: str, no_write: bool) -> None:
    """Print the section; unless ``no_write``, put it in ``bench/RESULTS.md`` in place of the marked
    ``bench_cvpr25`` section (one section, wherever it is), else at the end."""
    print(section)
    if no_write:
        return
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text()
    start, end = "<!-- bench_cvpr25:start -->", "<!-- bench_cvpr25:end -->"
    if start in text and end in text:
        i, j = text.index(start), text.index(end) + len(end)
        text = text[:i] + section.rstrip("\n") + text[j:]
    else:
        text = text + "\n" + section
    path.write_text(text)


def report(results: dict, names: list, which: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [f"<!-- bench_cvpr25:start -->", f"## CVPR 2025 interactive 3D: the harness against `medsam-lite challenge` "
             f"(bench/bench_cvpr25.py)", "",
             f"{time.strftime('%Y-%m-%dT%H:%M')} · {cpu}, {os.cpu_count()} logical CPUs · "
             f"threads {os.environ.get('MEDSAM_LITE_THREADS', '1')} · {which}. Each step a fresh process "
             "(model load included in its time); slice embeddings kept on disk between steps.", "",
             "| case | click decoder trained on it | DSC box → click 1…5 | NSD box → click 1…5 | DSC_AUC | NSD_AUC | "
             "final DSC | final NSD | s per step (box; clicks mean) |", "|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        r = results[n]
        lines.append(f"| {n} | {CASES[n][3]} | {' → '.join(f'{v:.3f}' for v in r['dsc'])} | "
                     f"{' → '.join(f'{v:.3f}' for v in r['nsd'])} | {r['DSC_AUC']:.3f} | {r['NSD_AUC']:.3f} | "
                     f"{r['DSC_Final']:.3f} | {r['NSD_Final']:.3f} | {r['time'][0]:.1f}; {np.mean(r['time'][1:]):.1f} |")
    mean = lambda key: np.mean([results[n][key] for n in names])  # noqa: E731
    lines.append(f"| **mean** | | box {np.mean([results[n]['dsc'][0] for n in names]):.3f} → final "
                 f"{mean('DSC_Final'):.3f} | | {mean('DSC_AUC'):.3f} | {mean('NSD_AUC'):.3f} | {mean('DSC_Final'):.3f} | "
                 f"{mean('NSD_Final'):.3f} | {np.mean([results[n]['time'][0] for n in names]):.1f}; "
                 f"{np.mean([np.mean(results[n]['time'][1:]) for n in names]):.1f} |")
    unseen = [n for n in names if "unseen" in CASES[n][3]]
    if unseen:  # the bar: final ≥ box + 0.05 on cases the click decoder never trained on
        box, final = (np.mean([results[n]["dsc"][0] for n in unseen]), np.mean([results[n]["DSC_Final"] for n in unseen]))
        lines.append(f"| **mean, never trained on** ({len(unseen)}) | | box {box:.3f} → final {final:.3f} ({final - box:+.3f}) | | "
                     f"{np.mean([results[n]['DSC_AUC'] for n in unseen]):.3f} | "
                     f"{np.mean([results[n]['NSD_AUC'] for n in unseen]):.3f} | {final:.3f} | "
                     f"{np.mean([results[n]['NSD_Final'] for n in unseen]):.3f} | |")
    lines.append("<!-- bench_cvpr25:end -->")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
