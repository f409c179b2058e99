"""The CVPR 2025 interactive-segmentation evaluation protocol, re-implemented for CI and the bench.

The organisers' harness is ``CVPR25_iter_eval.py`` in JunMa11/CVPR-MedSegFMCompetition
(Apache-2.0). Its code is not copied here: this module re-implements its protocol from that file,
so CI can run a case through the same loop without Docker, the harness checkout, ``cc3d`` or torch's
CUDA check. ``bench/bench_cvpr25.py --harness <checkout>`` runs the official file itself instead,
unchanged, with a stand-in ``docker`` command first on ``PATH`` (``bench/cvpr25/docker``) and
checks that both give the same clicks and metrics.

Per case (as the harness does): step 1 the input npz as given (``imgs``, ``spacing``, ``boxes``;
skipped with DSC/NSD 0 when it has no boxes); steps 2–6 add one click per class: the largest
26-connected component of that class's error (prediction ≠ truth), its Euclidean distance transform
(computed in the component's bounding box padded by 25 %, at least 1 voxel), a maximum chosen by
``np.random.seed(42); np.random.choice`` among ties; ``fg`` where the truth holds the class, else
``bg``; the click is ``list(np.argwhere(...)[i])`` = ``[z, y, x]``. The input is rewritten with
``np.savez_compressed(imgs, [gts], spacing, clicks, clicks_order, prev_pred, [boxes])``. Each step
runs ``command`` (the participant's program on ``inputs/`` → ``outputs/``) and is timed. Metrics:
mean over the truth's labels of DSC and NSD at 2 mm (NSD 0 when DSC ≤ 0.2; the harness passes
``spacing`` as it is, in array order), DSC_AUC / NSD_AUC = trapezoid over the 5 click steps,
final DSC / NSD, and the running time per step.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import integrate, ndimage


def _load(path) -> dict:
    with np.load(path, allow_pickle=True) as f:  # the harness's own trusted files
        return dict(f)


def compute_edt(component: np.ndarray) -> np.ndarray:
    coords = np.argwhere(component)
    lo, hi = coords.min(0), coords.max(0) + 1
    crop = hi - lo
    pad = np.maximum((crop * 0.25).astype(int), 1)
    padded = np.zeros(crop + 2 * pad, np.uint8)
    padded[tuple(slice(p, p + c) for p, c in zip(pad, crop))] = component[tuple(slice(a, b) for a, b in zip(lo, hi))]
    edt = ndimage.distance_transform_edt(padded)
    full = np.zeros(component.shape, edt.dtype)
    full[tuple(slice(a, b) for a, b in zip(lo, hi))] = edt[tuple(slice(p, p + c) for p, c in zip(pad, crop))]
    return full


def sample_coord(edt: np.ndarray) -> tuple:
    np.random.seed(42)
    coords = np.argwhere(edt == edt.max())
    return tuple(coords[np.random.choice(len(coords))])


def next_click(segs_cls: np.ndarray, gts_cls: np.ndarray):
    """→ ``("fg" | "bg", [z, y, x])`` or ``None`` when the class is perfect."""
    error = segs_cls != gts_cls
    if not error.any():
        return None
    labels, _ = ndimage.label(error, structure=np.ones((3, 3, 3)))  # 26-connectivity (cc3d's)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = labels == np.argmax(sizes)
    edt = compute_edt(largest) * largest
    if edt.sum() == 0:
        edt = largest
    center = sample_coord(edt)
    return ("bg" if gts_cls[center] == 0 else "fg"), list(center)


def scores(gts: np.ndarray, segs: np.ndarray, spacing) -> tuple[float, float]:
    from medsam_lite.metrics import dice, nsd

    labels = np.sort(np.unique(gts))[1:]
    d = float(np.mean([dice(segs == c, gts == c) for c in labels]))
    if d <= 0.2:
        return d, 0.0
    return d, float(np.mean([nsd(segs == c, gts == c, tuple(float(s) for s in spacing), 2.0) for c in labels]))


def run_case(case_path, gts: np.ndarray, work: Path, command: Callable[[Path, Path], None], n_clicks: int = 5,
             log: Callable[[str], None] = lambda s: None) -> dict:
    """One case through the protocol. ``command(inputs, outputs)`` segments ``inputs/*.npz``.

    Returns ``{"dsc": [...], "nsd": [...], "time": [...], "clicks": [...], "DSC_AUC", "NSD_AUC",
    "DSC_Final", "NSD_Final"}`` (lists per step; ``clicks`` per step per class).
    """
    inputs, outputs = work / "inputs", work / "outputs"
    for d in (inputs, outputs):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    name = Path(case_path).name
    shutil.copy(case_path, inputs / name)
    classes = np.sort(np.unique(gts))[1:]
    clicks = [{"fg": [], "bg": []} for _ in classes]
    order = [[] for _ in classes]
    first = _load(inputs / name)
    boxes = first.get("boxes")
    out = {"dsc": [], "nsd": [], "time": [], "clicks": []}
    for it in range(n_clicks + 1):
        if it == 0 and boxes is None:
            out["dsc"].append(0.0), out["nsd"].append(0.0), out["time"].append(0.0), out["clicks"].append(None)
            continue
        step_clicks = None
        if it > 0:
            segs = _load(outputs / name)["segs"].astype(np.uint8) if (outputs / name).is_file() \
                else np.zeros_like(gts, np.uint8)
            step_clicks = []
            for i, c in enumerate(classes):
                click = next_click((segs == c).astype(np.uint8), (gts == c).astype(np.uint8))
                if click is None:
                    order[i].append(None)
                else:
                    clicks[i][click[0]].append(click[1])
                    order[i].append(click[0])
                step_clicks.append(click)
            img = _load(inputs / name)
            arrays = dict(imgs=img["imgs"])
            if "gts" in img:
                arrays["gts"] = img["gts"]
            arrays.update(spacing=img["spacing"], clicks=clicks, clicks_order=order, prev_pred=segs)
            if boxes is not None:
                arrays["boxes"] = boxes
            np.savez_compressed(inputs / name, **arrays)
        start = time.time()
        command(inputs, outputs)
        seconds = time.time() - start
        segs = _load(outputs / name)["segs"] if (outputs / name).is_file() else np.zeros_like(gts, np.uint8)
        dsc, nsd = scores(gts, segs, _load(inputs / name)["spacing"])
        out["dsc"].append(dsc), out["nsd"].append(nsd), out["time"].append(seconds), out["clicks"].append(step_clicks)
        log(f"{name} step {it + 1}: DSC {dsc:.4f} NSD {nsd:.4f} {seconds:.1f} s clicks {step_clicks}")
    out["DSC_AUC"] = float(integrate.cumulative_trapezoid(np.array(out["dsc"][-n_clicks:]), np.arange(n_clicks))[-1])
    out["NSD_AUC"] = float(integrate.cumulative_trapezoid(np.array(out["nsd"][-n_clicks:]), np.arange(n_clicks))[-1])
    out["DSC_Final"], out["NSD_Final"] = out["dsc"][-1], out["nsd"][-1]
    return out
