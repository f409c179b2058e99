"""``run_challenge``: segment a folder of CVPR24 "MedSAM on Laptop" npz files as the published script does.

The file format is in :mod:`medsam_lite.io.challenge`. The inference follows the LiteMedSAM
branch's ``CVPR24_LiteMedSAM_infer.py``:

* **2D**: the image is encoded once; each box ``i`` (XYXY, original pixels) is decoded and its mask
  written as label ``i`` (a later box overwrites an earlier one).
* **3D**: for each 3D box ``[x_min, y_min, z_min, x_max, y_max, z_max]``, the middle slice
  ``z_mid = int((z_max - z_min) / 2 + z_min)`` is segmented from the box's ``x, y``; then slices
  ``z_mid + 1 … z_max - 1`` upwards and ``z_mid - 1 … z_min + 1`` downwards (the published ranges
  leave ``z_min`` and ``z_max`` themselves out), each from the previous slice's mask: the mask is
  resized to the model's 256 grid (``cv2.INTER_AREA``), its box taken there and widened by 3 px
  (``get_bbox256``, clamped to 0…256); an empty previous mask falls back to the middle slice's box.
  Propagation never stops early (unlike :meth:`~medsam_lite.VolumePredictor.predict`, whose
  stopping rules and margins are for interactive use).

Slices are encoded and cached by a :class:`~medsam_lite.VolumePredictor` (each slice once for all
boxes of a case, instead of once per box and slice), and decoded through the package's one seam with
the published recipe (INTER_AREA resize, min-max, pad, ``int(coord × 256 / max(H, W))`` boxes). The
images are uint8 already windowed: no intensity preset is applied.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..errors import InputError
from ..fileutil import atomic_write_text, check_writable
from ..io.challenge import list_cases, read_case, write_segs
from ..model.geometry import resize_slice
from ..model.models import SamModel, check_model
from .predict import Predictor
from .volume import VolumePredictor

#: ``get_bbox256``'s widening of a propagated box, in model (256) pixels.
BBOX_SHIFT = 3


def _box_from_previous(vp: VolumePredictor, mask: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """The published next-slice box: ``mask`` at model scale, its box ± 3 px, back in original pixels.

    The model-pixel box ``b`` becomes ``(b + 0.5) / s`` original pixels, so that the decoder's
    ``floor(coord × s)`` gives back exactly ``b``."""
    if not mask.any():
        return fallback
    h, w = vp.slice_hw
    size = vp.model.input_size
    s = size / max(h, w)
    small = resize_slice(mask.astype(np.uint8), (int(h * s + 0.5), int(w * s + 0.5))) > 0
    if not small.any():
        return fallback
    ys, xs = np.nonzero(small)
    b = np.array([max(0, xs.min() - BBOX_SHIFT), max(0, ys.min() - BBOX_SHIFT),
                  min(size, xs.max() + BBOX_SHIFT), min(size, ys.max() + BBOX_SHIFT)], np.float64)
    box = (b + 0.5) / s
    return np.minimum(box, [w - 1, h - 1, w - 1, h - 1])


def segment_3d(vp: VolumePredictor, box3d) -> np.ndarray:
    """One target by the published 3D path (see the module docstring) → ``bool`` ``D×H×W`` mask.

    Args:
        vp: the case's :class:`~medsam_lite.VolumePredictor` (axis 0; its cached slices are reused).
        box3d: ``[x_min, y_min, z_min, x_max, y_max, z_max]``, original pixels and slice indices.
    """
    x0, y0, z0, x1, y1, z1 = (float(v) for v in box3d)
    z0, z1 = int(z0), int(z1)
    mid = int((z1 - z0) / 2 + z0)
    mid_box = np.array([x0, y0, x1, y1], np.float64)
    out = np.zeros(vp.shape, bool)
    order = [(z, z - 1) for z in range(mid, z1)] + [(z, z + 1) for z in range(mid - 1, z0, -1)]
    for z, previous in order:
        if not 0 <= z < vp.n_slices:
            continue
        box = mid_box if z == mid else _box_from_previous(vp, out[previous], mid_box)
        out[z] = vp.predict_slice(z, box)[0][0]
    return out


def segment_case(case, model: SamModel) -> np.ndarray:
    """``segs`` of one :class:`~medsam_lite.io.challenge.ChallengeCase` (uint8, box ``i`` → label ``i``)."""
    n = len(case.boxes)
    dtype = np.uint8 if n < 256 else np.uint16
    if case.is_3d:
        segs = np.zeros(case.imgs.shape, dtype)
        vp = VolumePredictor(case.imgs, model=model, axis=0)  # uint8: taken as already normalized
        for label, box in enumerate(case.boxes, start=1):
            segs[segment_3d(vp, box)] = label
        return segs
    segs = np.zeros(case.imgs.shape[:2], dtype)
    if n == 0:
        return segs
    predictor = Predictor(model)
    predictor.set_image(case.imgs)  # H×W×3 uint8: passes through unchanged
    masks, _ = predictor.predict(case.boxes)
    for label, mask in enumerate(masks, start=1):
        segs[mask] = label
    return segs


def _scores(case, segs: np.ndarray, tolerance_mm: float) -> dict:
    from ..evaluate import dice, nsd

    spacing = tuple(reversed(case.spacing)) if case.is_3d and case.spacing else None
    values = [v for v in range(1, len(case.boxes) + 1)]
    if not values:
        return {"dsc": np.nan, "nsd": np.nan}
    d = [dice(segs == v, case.gts == v) for v in values]
    s = [nsd(segs == v, case.gts == v, spacing, tolerance_mm) for v in values]
    return {"dsc": float(np.mean(d)), "nsd": float(np.mean(s))}


def run_challenge(in_dir, out_dir, model: SamModel | None = None, *, tolerance_mm: float = 2.0,
                  progress: bool = True) -> pd.DataFrame:
    """Segment every challenge ``*.npz`` of ``in_dir`` into ``out_dir``, as the published script does.

    Args:
        in_dir: folder of CVPR24 challenge npz files (2D: ``imgs`` H×W×3 uint8 + ``boxes`` N×4 XYXY;
            3D, names starting with ``3D``: ``imgs`` D×H×W uint8 + ``boxes`` N×6 + ``spacing``).
        out_dir: where ``<same name>.npz`` (``segs``, box ``i`` → label ``i``) and ``efficiency.csv``
            (``case``, ``time`` in seconds) are written; created if needed.
        model: a :class:`~medsam_lite.SamModel` (default: the bundled LiteMedSAM).
        tolerance_mm: NSD tolerance when the files hold ``gts`` (default 2 mm, the challenge's).
        progress: show a progress bar over the cases.

    Returns:
        One row per case: ``case``, ``time`` (seconds, the case's whole read-segment-write), and, for
        files with ``gts``, ``dsc`` and ``nsd`` (means over the boxes' labels; NSD in mm with the 3D
        ``spacing``, 1 mm pixels in 2D).

    Raises:
        InputError: ``in_dir`` holds no npz, a file is malformed (checked for every file before any
            is segmented), or ``out_dir`` cannot be written.
    """
    files = list_cases(in_dir)
    out = Path(out_dir)
    if out.resolve() == Path(in_dir).resolve():
        raise InputError(f"out_dir {out} is in_dir: the outputs keep the input names and would replace them; "
                         "choose another folder.")
    check_writable(out, "out_dir")
    for path in files:  # check every file before any work
        read_case(path)
    model = check_model(model)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in tqdm(files, desc="cases", unit="case", disable=not progress):
        start = time.perf_counter()
        case = read_case(path)
        segs = segment_case(case, model)
        write_segs(out / path.name, segs)
        row = {"case": path.name, "time": time.perf_counter() - start}
        if case.gts is not None:
            row.update(_scores(case, segs, tolerance_mm))
        rows.append(row)
        atomic_write_text(out / "efficiency.csv", pd.DataFrame(rows)[["case", "time"]].to_csv(index=False))
    return pd.DataFrame(rows)


__all__ = ["run_challenge", "segment_3d", "segment_case"]
