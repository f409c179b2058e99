"""``run_challenge``: segment a folder of CVPR24 "MedSAM on Laptop" npz files as the published script does.

The file format is in :mod:`medsam_lite.io.challenge`. The inference follows the LiteMedSAM
branch's ``CVPR24_LiteMedSAM_infer.py``:

* **2D**: the image is encoded once; each box ``i`` (XYXY, original pixels) is decoded and its mask
  written as label ``i`` (a later box overwrites an earlier one).
* **3D**: for each 3D box ``[x_min, y_min, z_min, x_max, y_max, z_max]``, the middle slice from the
  box's ``x, y``, then outwards to ``z_max - 1`` and ``z_min + 1``, each slice's box from the previous
  slice's mask at the model's 256 scale widened by 3 px; never stopping early. These are the
  ``rules="published"`` of the package's one propagation walk
  (:func:`medsam_lite.interactive.propagation.propagate_published`, which spells them out), not the
  margins and stopping rules :meth:`~medsam_lite.VolumePredictor.predict` uses interactively.

Box prompts are made as the script makes them, in model pixels (``int(coord × 256 / max(H, W))``,
float64), and passed to the decoder as they are. The images are uint8 already windowed: no intensity
preset is applied; each slice goes through the published recipe (``cv2.INTER_AREA`` resize of the
longest side to 256, min-max over the resized slice, zero padding). What differs is only the cost:
each slice of a case is encoded once for all its boxes (cached by a
:class:`~medsam_lite.VolumePredictor`; slices outside every box's range are never encoded), on the
model's runtime (``load_model()``'s per-part choice), and masks are mapped back to full size only
where they can be (:func:`~medsam_lite.model.fullsize.masks_at`, bit-identical).
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
from ..model.inference import decode, encode
from ..model.models import SamModel, check_model
from ..interactive.propagation import propagate_published
from ..interactive.volume import VolumePredictor


def segment_3d(vp: VolumePredictor, box3d, label: int = 1) -> np.ndarray:
    """One target by the published 3D path → ``bool`` ``D×H×W`` mask.

    Args:
        vp: the case's :class:`~medsam_lite.VolumePredictor` (axis 0; its cached slices are reused).
        box3d: ``[x_min, y_min, z_min, x_max, y_max, z_max]``, original pixels and slice indices.
        label: the box's label in the case (its position, from 1): the published script resizes the
            previous slice's mask holding this value, which decides its next box.
    """
    return propagate_published(vp, box3d, label)


def box_prompts(boxes: np.ndarray, hw: tuple[int, int], size: int) -> np.ndarray:
    """``N×4`` XYXY original boxes → the published box prompts, ``int(coord × size / max(H, W))`` (float64)."""
    ratio = size / max(hw)
    return np.array([[int(c * ratio) for c in box] for box in np.asarray(boxes, np.float64)], np.float64)


def segment_case(case, model: SamModel) -> np.ndarray:
    """``segs`` of one :class:`~medsam_lite.io.challenge.ChallengeCase` (uint8, box ``i`` → label ``i``)."""
    n = len(case.boxes)
    dtype = np.uint8 if n < 256 else np.uint16
    if case.is_3d:
        segs = np.zeros(case.imgs.shape, dtype)
        vp = VolumePredictor(case.imgs, model=model, axis=0)  # uint8: taken as already normalized
        for label, box in enumerate(case.boxes, start=1):
            segs[segment_3d(vp, box, label)] = label
        return segs
    segs = np.zeros(case.imgs.shape[:2], dtype)
    if n == 0:
        return segs
    embedding = encode(model, case.imgs)  # H×W×3 uint8: passes through unchanged
    prompts = box_prompts(case.boxes, case.imgs.shape[:2], model.input_size)
    masks = decode(model, embedding, prompts, box_space="model", logits=False)[0]
    for label, mask in enumerate(masks, start=1):
        segs[mask] = label
    return segs


def _scores(case, segs: np.ndarray, tolerance_mm: float) -> dict:
    from ..metrics import dice, nsd

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


__all__ = ["box_prompts", "run_challenge", "segment_3d", "segment_case"]
