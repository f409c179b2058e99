"""``run_challenge``: segment a folder of challenge npz files — CVPR24 "MedSAM on Laptop" as the published
script does, and CVPR25 "Foundation Models for Interactive 3D Biomedical Image Segmentation" steps.

**CVPR25** (format in :mod:`medsam_lite.io.challenge`; :func:`segment_case25`): the harness runs this
program afresh for each step of a case. The box step propagates each class from its middle-slice box
inside its z-extent (the package's rules, :func:`box25_mask`); a click step corrects ``prev_pred``
with the click the harness just added per class, in 3D (:meth:`medsam_lite.VolumePredictor.refine`).
Slice embeddings are kept on disk between the steps' processes
(:mod:`medsam_lite.interactive.embedcache`), so a click step runs only the decoder.

The file format is in :mod:`medsam_lite.io.challenge`. The inference follows the LiteMedSAM
branch's ``CVPR24_LiteMedSAM_infer.py``:

* **2D**: the image is encoded once; each box ``i`` (XYXY, original pixels) is decoded and its mask
  written as label ``i`` (a later box overwrites an earlier one).
* **3D**: for each 3D box ``[x_min, y_min, z_min, x_max, y_max, z_max]``, the middle slice from the
  box's ``x, y``, then outwards to ``z_max - 1`` and ``z_min + 1``, each slice's box from the previous
  slice's mask at the model's 256 scale widened by 3 px; never stopping early. These are the
  :class:`~medsam_lite.interactive.propagation.PublishedRules` of the package's one propagation walk
  (:func:`medsam_lite.interactive.propagation.propagate_published`; the module spells them out), not the
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
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from ..errors import InputError
from ..fileutil import atomic_write_text, check_writable
from ..io.challenge import list_cases, read_case, write_segs
from ..model.inference import decode, encode
from ..model.models import inference_model
from ..interactive.propagation import PackageRules, propagate, propagate_published
from ..interactive.refine3d import apply_corrections
from ..interactive.volume import VolumePredictor

if TYPE_CHECKING:  # (imported only for type checkers: the torch model's class, pandas)
    import pandas as pd

    from ..model.sammodel import SamModel


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
    if case.cvpr25:
        return segment_case25(case, model)
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
    masks = decode(model, embedding, prompts, space="model", logits=False)[0]
    for label, mask in enumerate(masks, start=1):
        segs[mask] = label
    return segs


def box25_mask(vp: VolumePredictor, box: dict) -> np.ndarray:
    """One CVPR25 box (``get_boxes.py``: a 2D XYXY box on slice ``z_mid``, the target's extent
    ``z_min … z_max``) → ``bool`` ``D×H×W``: the package's propagation
    (:meth:`~medsam_lite.VolumePredictor.predict`'s rules and defaults) from ``z_mid`` kept inside
    ``[z_min, z_max]``; no ``x, y`` clip (the box is the middle slice's only)."""
    from ..interactive.volume import DEFAULTS

    xyxy = np.array([box["z_mid_x_min"], box["z_mid_y_min"], box["z_mid_x_max"], box["z_mid_y_max"]], np.float32)
    return propagate(vp, {box["z_mid"]: xyxy}, (box["z_min"], box["z_max"]), PackageRules(**DEFAULTS))[0]


def _new_clicks(case, k: int) -> tuple[list, list]:
    """Class ``k``'s (from 1) clicks → (the newest, the earlier ones), each ``[((z, y, x), is_fg), …]``.

    The newest is the last of the kind ``clicks_order[k - 1][-1]`` names (``None``: this step added
    none for the class); without ``clicks_order`` every click is taken as new.
    """
    entry = case.clicks[k - 1]
    every = [(p, True) for p in entry["fg"]] + [(p, False) for p in entry["bg"]]
    if case.clicks_order is None:
        return every, []
    order = case.clicks_order[k - 1]
    last = order[-1] if order else None
    if last is None or not entry[last]:
        return [], every
    newest = (entry[last][-1], last == "fg")
    rest = [(p, True) for p in entry["fg"][:-1 if last == "fg" else None]] + \
           [(p, False) for p in entry["bg"][:-1 if last == "bg" else None]]
    return [newest], rest


def segment_case25(case, model: SamModel, disk_cache=True) -> np.ndarray:
    """``segs`` of one CVPR25 case (uint8 ``D×H×W``, class ``k`` → label ``k``).

    * **Box step** (no ``clicks``): each class's box by :func:`box25_mask`. Where classes overlap the
      smaller one wins (:func:`_paint`).
    * **Click step**: the previous prediction (``prev_pred``; without it the box step again) is
      corrected, per class, by the click the harness added at this step
      (:meth:`~medsam_lite.VolumePredictor.refine`, with the class's earlier clicks on the same
      slice, inside the box's ``z_min … z_max``). A class with neither box nor earlier mask starts
      from its clicks alone. Each class changes only the voxels its correction changed
      (:func:`~medsam_lite.interactive.refine3d.apply_corrections`): one class's click does not repaint
      another's voxels away from it.

    Slice embeddings come from the on-disk cache when an earlier step (another process) computed
    them (``disk_cache``, :mod:`~medsam_lite.interactive.embedcache`): a click step runs the decoder only.
    """
    n = case.n_classes
    segs = np.zeros(case.imgs.shape, np.uint8 if n < 256 else np.uint16)
    vp = VolumePredictor(case.imgs, model=model, axis=0, disk_cache=disk_cache)
    boxes = case.boxes25 or [None] * n
    masks = {}
    if case.clicks is None:
        for k, box in enumerate(boxes, start=1):
            if box is not None:
                masks[k] = box25_mask(vp, box)
        return _paint(segs, masks)
    prev = case.prev_pred
    corrections = []
    for k in range(1, n + 1):
        box = boxes[k - 1]
        mask = prev == k if prev is not None else np.zeros(case.imgs.shape, bool)
        if prev is None and box is not None:
            mask = box25_mask(vp, box)
        new, earlier = _new_clicks(case, k)
        if new:
            z_range = None if box is None else (box["z_min"], box["z_max"])
            corrected = vp.refine(mask, new, previous_clicks=earlier, z_range=z_range)
            corrections.append((k, mask, corrected, [p for p, fg in new if fg]))
            mask = corrected
        masks[k] = mask
    if prev is None:
        return _paint(segs, masks)
    return apply_corrections(prev.astype(segs.dtype), corrections, case.imgs)  # each class changes only its own voxels


def _paint(segs: np.ndarray, masks: dict) -> np.ndarray:
    """Class masks → label map; where masks overlap the smaller target wins (larger ones are painted
    first): a small organ beside a large one is not erased by the large one's leak."""
    for k in sorted(masks, key=lambda k: (-int(masks[k].sum()), k)):
        segs[masks[k]] = k
    return segs


def check_case(case) -> None:
    """What can be known before any case runs: refuse an image with nothing to segment.

    Raises:
        InputError: a constant image (every pixel the same: blank, or a mask saved as the image), a
            2D/3D CVPR24 box or a CVPR25 box whose key slice is constant.
    """
    imgs = case.imgs
    if imgs.size == 0 or imgs.min() == imgs.max():
        raise InputError(f"{case.name}: the image is constant (every pixel is {int(imgs.flat[0]) if imgs.size else '-'}"
                         "): there is nothing to segment, and the model would still return a mask for any box. "
                         "Check that imgs holds the scan (not a mask or an empty slice).")
    if case.cvpr25:
        keys = [(k, b["z_mid"]) for k, b in enumerate(case.boxes25 or [], start=1) if b is not None]
    elif case.is_3d:
        keys = [(k, int((b[5] - b[2]) / 2 + b[2])) for k, b in enumerate(case.boxes, start=1)]
    else:
        keys = []
    for k, z in keys:
        if 0 <= z < imgs.shape[0] and imgs[z].min() == imgs[z].max():
            raise InputError(f"{case.name}: the key slice {z} of box {k} is constant (blank): the box cannot be "
                             "segmented there. Check the box's z-range against imgs (D×H×W).")


def _scores(case, segs: np.ndarray, tolerance_mm: float) -> dict:
    from ..metrics import dice, nsd

    spacing = tuple(reversed(case.spacing)) if case.is_3d and case.spacing else None
    values = [v for v in range(1, case.n_classes + 1)]
    if not values:
        return {"dsc": np.nan, "nsd": np.nan}
    d = [dice(segs == v, case.gts == v) for v in values]
    s = [nsd(segs == v, case.gts == v, spacing, tolerance_mm) for v in values]
    return {"dsc": float(np.mean(d)), "nsd": float(np.mean(s))}


def run_challenge(in_dir, out_dir, model: SamModel | None = None, *, tolerance_mm: float = 2.0,
                  progress: bool = True, score_cvpr25: bool = False) -> pd.DataFrame:
    """Segment every challenge ``*.npz`` of ``in_dir`` into ``out_dir``, as the published script does.

    Args:
        in_dir: folder of CVPR24 challenge npz files (2D: ``imgs`` H×W×3 uint8 + ``boxes`` N×4 XYXY;
            3D, names starting with ``3D``: ``imgs`` D×H×W uint8 + ``boxes`` N×6 + ``spacing``) or of
            CVPR25 steps (``boxes`` as a list of dicts and/or ``clicks``; :mod:`medsam_lite.io.challenge`).
        out_dir: where ``<same name>.npz`` (``segs``, box ``i`` → label ``i``) and ``efficiency.csv``
            (``case``, ``time`` in seconds) are written; created if needed.
        model: a :class:`~medsam_lite.SamModel` (default: the bundled LiteMedSAM).
        tolerance_mm: NSD tolerance when the files hold ``gts`` (default 2 mm, the challenge's).
        progress: show a progress bar over the cases.
        score_cvpr25: also score CVPR25 step files that carry ``gts`` (the harness writes them into every
            step's input and scores the outputs itself; DSC and NSD of a 3D case cost seconds of each
            step). CVPR24 files with ``gts`` are always scored.

    Returns:
        One row per case: ``case``, ``time`` (seconds, the case's whole read-segment-write), and, for
        files with ``gts`` (CVPR25 steps only with ``score_cvpr25``), ``dsc`` and ``nsd`` (means over
        the boxes' labels; NSD in mm with the 3D ``spacing``, 1 mm pixels in 2D).

    Raises:
        InputError: ``in_dir`` holds no npz, a file is malformed or holds nothing to segment (a
            constant image, a box whose key slice is blank: :func:`check_case`) — checked for every
            file before any is segmented — or ``out_dir`` cannot be written.
    """
    import pandas as pd

    files = list_cases(in_dir)
    out = Path(out_dir)
    if out.resolve() == Path(in_dir).resolve():
        raise InputError(f"out_dir {out} is in_dir: the outputs keep the input names and would replace them; "
                         "choose another folder.")
    check_writable(out, "out_dir")
    checked, size = {}, 0
    for path in files:  # check every file before any work: readable and well formed …
        case = read_case(path)
        size += case.imgs.nbytes
        if size < 2 ** 29:  # keep what was read (a harness step holds one case) unless it is large
            checked[path] = case
    for path in files:  # … then something to segment in each
        check_case(checked.get(path) or read_case(path))
    model = inference_model(model)
    out.mkdir(parents=True, exist_ok=True)
    rows, used_disk = [], False
    for path in tqdm(files, desc="cases", unit="case", disable=not progress):
        start = time.perf_counter()
        case = checked.pop(path, None) or read_case(path)
        segs = segment_case(case, model)
        write_segs(out / path.name, segs)
        row = {"case": path.name, "time": time.perf_counter() - start}
        if case.gts is not None and (score_cvpr25 or not case.cvpr25):
            row.update(_scores(case, segs, tolerance_mm))
        rows.append(row)
        atomic_write_text(out / "efficiency.csv", pd.DataFrame(rows)[["case", "time"]].to_csv(index=False))
        used_disk = used_disk or case.cvpr25
    if used_disk:  # keep the on-disk slice embeddings under their size cap
        from ..interactive.embedcache import prune

        prune()
    return pd.DataFrame(rows)


__all__ = ["box25_mask", "box_prompts", "check_case", "run_challenge", "segment_3d", "segment_case", "segment_case25"]
