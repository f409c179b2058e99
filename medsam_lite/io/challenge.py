"""The CVPR 2024 "Segment Anything in Medical Images on Laptop" npz format, both ways.

One ``.npz`` file per case (the LiteMedSAM branch's ``CVPR24_LiteMedSAM_infer.py``):

* **2D** (any name not starting with ``3D``): ``imgs`` ``H×W×3`` uint8, ``boxes`` ``N×4`` XYXY in
  original pixels (inclusive extreme pixels).
* **3D** (name starting with ``3D``): ``imgs`` ``D×H×W`` uint8, **already windowed** (no intensity
  preset applies), ``boxes`` ``N×6`` ``[x_min, y_min, z_min, x_max, y_max, z_max]`` (``z`` = index
  along the first axis), ``spacing`` (SimpleITK order ``(x, y, z)``, as the challenge's
  ``pre_CT_MR.py`` saved ``GetSpacing()``).
* Training / validation files also hold ``gts`` (a label map of ``imgs``' shape, box ``i`` ↔ label ``i``).
* Output: ``OUT_DIR/<same name>.npz`` holding ``segs`` (uint8 label map, box ``i`` → label ``i``;
  a later box overwrites an earlier one where they overlap) and ``OUT_DIR/efficiency.csv``
  (columns ``case``, ``time``: seconds per case), as the challenge's script writes them.

**CVPR 2025** ("Foundation Models for Interactive 3D Biomedical Image Segmentation", harness
``CVPR25_iter_eval.py`` of JunMa11/CVPR-MedSegFMCompetition): any name; ``imgs`` ``D×H×W`` uint8,
``spacing`` (the harness passes it to its NSD with the ``D×H×W`` arrays as they are), and

* ``boxes``: a pickled object array of one dict per class ``{z_min, z_max, z_mid, z_mid_x_min,
  z_mid_y_min, z_mid_x_max, z_mid_y_max}`` (``get_boxes.py``: the target's z-extent, and a 2D XYXY box
  on its middle labelled slice ``z_mid``, inclusive pixels); absent in a clicks-only case;
* ``clicks`` (from the first click step): per class ``{"fg": [[z, y, x], …], "bg": [[z, y, x], …]}``
  — array indices of ``D×H×W`` (the harness takes them from ``np.argwhere``); ``clicks_order``: per
  class the kinds in the order they were added (``"fg"``, ``"bg"`` or ``None`` for a step without a
  click); ``prev_pred``: the previous step's ``segs``.

Class ``k`` (counting from 1) is label ``k`` in ``segs``. The object arrays are read with a
restricted unpickler (:func:`load_npz`) that admits lists, dicts, strings, numbers, ``None`` and numpy
arrays/scalars only: nothing in a file can run code. Detection: a file is CVPR25 when its ``boxes``
is an object array or it holds ``clicks`` / ``clicks_order`` / ``prev_pred``.

This module only reads and writes the files; :func:`medsam_lite.run_challenge` segments them.
"""

from __future__ import annotations

import io as _bytes_io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fileutil import atomic_write
from .challenge25 import checked_imgs, is_cvpr25, load_npz, read_cvpr25


@dataclass
class ChallengeCase:
    """One challenge npz, checked.

    Attributes:
        name: the file name (``3DBox_CT_0001.npz``); the output keeps it.
        is_3d: the name starts with ``3D``.
        imgs: ``H×W×3`` (2D) or ``D×H×W`` (3D) uint8.
        boxes: ``N×4`` (2D, XYXY) or ``N×6`` (3D) float64, original pixels / slice indices.
        spacing: ``(x, y, z)`` mm for 3D (``None`` if absent), ``None`` for 2D.
        gts: the ground-truth label map if present, else ``None``.
        cvpr25: the file is in the CVPR 2025 format (module docstring); then:
        boxes25: per class a dict ``{z_min, z_max, z_mid, z_mid_x_min, z_mid_y_min, z_mid_x_max,
            z_mid_y_max}`` of Python ints (``None``: that class has no box), or ``None`` without boxes.
        clicks: per class ``{"fg": [(z, y, x), …], "bg": [(z, y, x), …]}`` (array indices of
            ``D×H×W``), or ``None`` (the box step).
        clicks_order: per class the kinds in the order added (``"fg"``/``"bg"``/``None``), or ``None``.
        prev_pred: the previous step's ``segs`` (``D×H×W`` integer), or ``None``.
    """

    name: str
    is_3d: bool
    imgs: np.ndarray
    boxes: np.ndarray
    spacing: tuple[float, ...] | None
    gts: np.ndarray | None
    cvpr25: bool = False
    boxes25: list | None = None
    clicks: list | None = None
    clicks_order: list | None = None
    prev_pred: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        """How many targets the case asks for (CVPR25: boxes or click lists; CVPR24: boxes)."""
        if not self.cvpr25:
            return len(self.boxes)
        return len(self.boxes25) if self.boxes25 is not None else len(self.clicks or [])


def _load(path: Path) -> dict:
    return load_npz(path)  # object arrays (CVPR25) through the restricted unpickler


def read_case(path: str | os.PathLike, need_boxes: bool = True) -> ChallengeCase:
    """Read and check one challenge npz.

    Args:
        path: the ``.npz`` file.
        need_boxes: require ``boxes`` (inference); ``False`` for training files read with ``gts``.

    Raises:
        InputError: a missing key, ``imgs`` of the wrong shape or dtype (not uint8 in [0, 255]),
            boxes of the wrong shape, inverted or outside the image, ``gts`` of another shape.
    """
    path = Path(path)
    data = _load(path)
    if is_cvpr25(data):
        return ChallengeCase(**read_cvpr25(path, data))
    is_3d = path.name.startswith("3D")
    where = f"{path.name} ({'3D' if is_3d else '2D'}: name {'starts' if is_3d else 'does not start'} with '3D')"
    imgs = checked_imgs(data, where, "a challenge npz holds imgs and boxes (and gts for training).", rgb=not is_3d)
    boxes = None
    if "boxes" in data:
        boxes = np.asarray(data["boxes"], np.float64)
        width = 6 if is_3d else 4
        if boxes.ndim == 1 and boxes.size == width:
            boxes = boxes[None]
        if boxes.ndim != 2 or boxes.shape[1] != width or not np.isfinite(boxes).all():
            raise InputError(f"{where}: boxes has shape {boxes.shape}; expected N×{width} finite numbers "
                             f"({'[x_min, y_min, z_min, x_max, y_max, z_max]' if is_3d else 'XYXY'}).")
        _check_boxes(boxes, imgs.shape, is_3d, where)
    elif need_boxes:
        raise InputError(f"{where} has no 'boxes' array; inference needs one box per target.")
    gts = data.get("gts")
    if gts is not None:
        shape = imgs.shape if is_3d else imgs.shape[:2]
        if gts.shape != shape or gts.dtype.kind not in "iu" and not np.array_equal(gts, np.rint(gts)):
            raise InputError(f"{where}: gts has shape {gts.shape} dtype {gts.dtype}; expected an integer label "
                             f"map of shape {shape}.")
        gts = gts.astype(np.int64, copy=False)
    spacing = None
    if is_3d and "spacing" in data:
        spacing = tuple(float(s) for s in np.ravel(data["spacing"]))
        if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
            raise InputError(f"{where}: spacing {spacing} is not three positive numbers (x, y, z) in mm.")
    return ChallengeCase(path.name, is_3d, imgs, boxes if boxes is not None else np.zeros((0, 6 if is_3d else 4)),
                         spacing, gts)


def _check_boxes(boxes: np.ndarray, shape, is_3d: bool, where: str) -> None:
    if is_3d:
        d, h, w = shape
        lo, hi, limit = boxes[:, :3], boxes[:, 3:], np.array([w, h, d])
    else:
        h, w = shape[:2]
        lo, hi, limit = boxes[:, :2], boxes[:, 2:], np.array([w, h])
    for i in range(len(boxes)):
        if (hi[i] < lo[i]).any() or (hi[i] < 0).any() or (lo[i] > limit - 1).any():
            raise InputError(f"{where}: box {i} = {boxes[i].tolist()} is inverted or outside the image "
                             f"({'x, y, z < ' if is_3d else 'x, y < '}{limit.tolist()}).")
        if is_3d and not hi[i][2] > lo[i][2]:
            raise InputError(f"{where}: box {i} = {boxes[i].tolist()} has z_min ≥ z_max; the published 3D path "
                             "needs z_min < z_max (it segments the slices strictly between them and the middle).")


def list_cases(folder: str | os.PathLike) -> list[Path]:
    """The ``*.npz`` files of ``folder`` (not its sub-folders), sorted by name.

    Raises:
        InputError: ``folder`` is not a folder or holds no ``.npz`` file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; pass the folder holding the challenge's .npz files.")
    found = sorted(p for p in folder.iterdir() if p.suffix == ".npz" and p.is_file() and not p.name.startswith("."))
    if not found:
        raise InputError(f"{folder} holds no .npz file; the challenge format is one <case>.npz per case.")
    return found


def is_training_folder(folder: Path) -> bool:
    """True if ``folder`` holds challenge npz files with ``imgs`` and ``gts`` (a training set)."""
    try:
        files = [p for p in folder.iterdir() if p.suffix == ".npz" and p.is_file() and not p.name.startswith(".")]
    except OSError:
        return False
    if not files:
        return False
    try:
        with zipfile.ZipFile(files[0]) as z:
            names = set(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    return {"imgs.npy", "gts.npy"} <= names


def read_arrays(path: str | os.PathLike, what: str = "imgs") -> dict:
    """A challenge npz's ``imgs`` (or ``gts``) with its geometry: ``dict(array, spacing, origin,
    direction)`` for :class:`~medsam_lite.io.Volume` (3D: ``(z, y, x)`` with the file's ``spacing``
    (x, y, z); 2D: ``H×W×3`` / ``H×W`` at 1 mm).

    Raises:
        InputError: asked for ``gts`` in a file without them (an inference file, not a training one).
    """
    case = read_case(path, need_boxes=False)
    if what == "gts" and case.gts is None:
        raise InputError(f"{Path(path).name} holds no 'gts' label map; training needs the challenge's training "
                         "npz files (imgs + gts).")
    array = case.gts if what == "gts" else case.imgs
    if case.is_3d:
        return dict(array=array, spacing=case.spacing or (1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                    direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return dict(array=array, spacing=(1.0, 1.0), origin=(0.0, 0.0), direction=(1.0, 0.0, 0.0, 1.0))


def write_segs(path: str | os.PathLike, segs: np.ndarray) -> Path:
    """Write ``segs`` (uint8 label map) as ``np.savez_compressed`` does, atomically."""
    path = Path(path)
    buffer = _bytes_io.BytesIO()
    np.savez_compressed(buffer, segs=np.asarray(segs, np.uint8 if segs.max(initial=0) < 256 else np.uint16))
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return path


def write_case(path: str | os.PathLike, imgs: np.ndarray, boxes: np.ndarray, gts: np.ndarray | None = None,
               spacing=None) -> Path:
    """Write a challenge input npz (``imgs``, ``boxes``, optional ``gts`` and ``spacing``), atomically.

    Args:
        path: the ``.npz`` file; a name starting with ``3D`` marks a 3D case.
        imgs: ``H×W×3`` or ``D×H×W`` uint8 (already windowed).
        boxes: ``N×4`` XYXY or ``N×6`` ``[x_min, y_min, z_min, x_max, y_max, z_max]``.
        gts: optional label map of the image's shape (box ``i`` ↔ label ``i``).
        spacing: ``(x, y, z)`` mm for a 3D case.
    """
    path = Path(path)
    arrays = dict(imgs=np.asarray(imgs, np.uint8), boxes=np.asarray(boxes))
    if gts is not None:
        arrays["gts"] = np.asarray(gts, np.uint8 if np.max(gts) < 256 else np.uint16)
    if spacing is not None:
        arrays["spacing"] = np.asarray(spacing, np.float64)
    buffer = _bytes_io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return path

