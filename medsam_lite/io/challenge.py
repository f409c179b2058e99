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
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fileutil import atomic_write


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


#: The only globals an object array in a challenge npz may name: numpy's own reconstruction of
#: arrays, dtypes and scalars (``numpy.core`` before numpy 2, ``numpy._core`` since).
_SAFE_GLOBALS = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")}
_SAFE_GLOBALS |= {("numpy", "ndarray"), ("numpy", "dtype")}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles lists, dicts, tuples, strings, numbers, ``None`` and numpy arrays/scalars only."""

    def find_class(self, module, name):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed")


def _read_member(f, key: str, path: Path):
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    if not dtype.hasobject:
        return None  # read by np.load below, without pickle
    try:
        value = _RestrictedUnpickler(f).load()
    except Exception as exc:  # noqa: BLE001 -- any failure of a file's pickle is the file's fault
        raise InputError(f"{path.name}: '{key}' is a pickled object array holding something other than lists, "
                         f"dicts, strings, numbers and numpy arrays ({exc}); it is refused, as nothing is "
                         "unpickled from files. Write boxes/clicks as the CVPR25 harness does (lists of dicts)."
                         ) from None
    if not isinstance(value, np.ndarray) or value.shape != tuple(shape):
        raise InputError(f"{path.name}: '{key}' does not hold the {shape} object array its header announces; "
                         "the file is damaged or was not written by numpy. Copy it again.")
    return value


def load_npz(path: str | os.PathLike) -> dict:
    """Every array of an ``.npz`` file, reading object arrays with a restricted unpickler.

    Plain arrays load with ``allow_pickle=False``; an object array (the CVPR25 ``boxes``, ``clicks``,
    ``clicks_order``) is unpickled admitting only numpy's array/dtype/scalar reconstruction, so it can
    hold lists, dicts, tuples, strings, numbers, ``None`` and numpy arrays/scalars and nothing else.

    Raises:
        InputError: not a zip file (e.g. a ``.npy`` renamed ``.npz``), truncated or damaged, or an
            object array naming any other class or function (a payload that would run code).
    """
    path = Path(path)
    try:
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as f:
                head = f.read(6)
            what = "a single .npy array, not an npz archive" if head == b"\x93NUMPY" else "not a zip archive"
            raise InputError(f"{path} is not a readable npz file ({what}; truncated?); a challenge case is one .npz "
                             "archive holding imgs and boxes: copy it again, or save it with "
                             "np.savez_compressed(path, imgs=…, boxes=…).")
        out = {}
        with zipfile.ZipFile(path) as z:
            objects = {}
            for member in z.namelist():
                if not member.endswith(".npy"):
                    continue
                key = member[:-4]
                with z.open(member) as f:
                    value = _read_member(f, key, path)
                if value is not None:
                    objects[key] = value
            with np.load(path, allow_pickle=False) as data:
                for key in data.files:
                    out[key] = objects[key] if key in objects else data[key]
        return out
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, RuntimeError) as exc:
        raise InputError(f"{path} is not a readable npz file ({exc}); is it truncated? Copy it again.") from None


def _load(path: Path) -> dict:
    return load_npz(path)


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
        return _read_cvpr25(path, data)
    is_3d = path.name.startswith("3D")
    where = f"{path.name} ({'3D' if is_3d else '2D'}: name {'starts' if is_3d else 'does not start'} with '3D')"
    if "imgs" not in data:
        raise InputError(f"{where} has no 'imgs' array (it holds {sorted(data)}); a challenge npz holds imgs and "
                         "boxes (and gts for training).")
    imgs = data["imgs"]
    want = "D×H×W" if is_3d else "H×W×3"
    if imgs.ndim != 3 or (not is_3d and imgs.shape[2] != 3) or min(imgs.shape) < 1:
        raise InputError(f"{where}: imgs has shape {imgs.shape}; expected {want} uint8.")
    if imgs.dtype != np.uint8:
        if imgs.dtype.kind not in "iuf" or imgs.size == 0 or imgs.min() < 0 or imgs.max() > 255 \
                or not np.array_equal(imgs, np.rint(imgs)):
            raise InputError(f"{where}: imgs is {imgs.dtype} with values outside whole numbers 0–255; the "
                             "challenge format stores images already windowed to uint8.")
        imgs = imgs.astype(np.uint8)  # lossless: whole numbers in 0–255
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


def is_cvpr25(data: dict) -> bool:
    """True for the arrays of a CVPR 2025 case (module docstring): object ``boxes``, or click keys."""
    boxes = data.get("boxes")
    return (isinstance(boxes, np.ndarray) and boxes.dtype.hasobject) or bool(
        {"clicks", "clicks_order", "prev_pred"} & set(data))


_BOX_KEYS = ("z_min", "z_max", "z_mid", "z_mid_x_min", "z_mid_y_min", "z_mid_x_max", "z_mid_y_max")


def _int(value, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or float(value) != int(value):
        raise InputError(f"{what} is {value!r}; expected a whole number (an array index).")
    return int(value)


def _as_list(value, what: str, where: str) -> list:
    if isinstance(value, np.ndarray):
        value = value.tolist() if value.dtype.kind in "OU" and value.ndim > 0 else value
    if not isinstance(value, (list, tuple)):
        raise InputError(f"{where}: {what} is {type(value).__name__}; expected a list with one entry per class, as "
                         "the CVPR25 harness writes it.")
    return list(value)


def _read_cvpr25(path: Path, data: dict) -> ChallengeCase:
    where = f"{path.name} (CVPR25 format)"
    if "imgs" not in data:
        raise InputError(f"{where} has no 'imgs' array (it holds {sorted(data)}); a CVPR25 case holds imgs, spacing "
                         "and boxes and/or clicks.")
    imgs = data["imgs"]
    if imgs.ndim != 3 or min(imgs.shape) < 1:
        raise InputError(f"{where}: imgs has shape {imgs.shape}; expected D×H×W uint8.")
    if imgs.dtype != np.uint8:
        if imgs.dtype.kind not in "iuf" or imgs.min() < 0 or imgs.max() > 255 or not np.array_equal(imgs, np.rint(imgs)):
            raise InputError(f"{where}: imgs is {imgs.dtype} with values outside whole numbers 0–255; the challenge "
                             "format stores images already windowed to uint8.")
        imgs = imgs.astype(np.uint8)
    d, h, w = imgs.shape
    boxes25 = None
    if "boxes" in data:
        boxes25 = []
        for k, box in enumerate(_as_list(data["boxes"], "boxes", where), start=1):
            if box is None:
                boxes25.append(None)
                continue
            if not isinstance(box, dict) or set(_BOX_KEYS) - set(box):
                raise InputError(f"{where}: box of class {k} is {str(box)[:120]!r}; expected a dict with keys "
                                 f"{list(_BOX_KEYS)} (get_boxes.py).")
            b = {key: _int(box[key], f"{where}: box of class {k}, {key}") for key in _BOX_KEYS}
            if not (0 <= b["z_min"] <= b["z_mid"] <= b["z_max"] < d and 0 <= b["z_mid_x_min"] <= b["z_mid_x_max"] < w
                    and 0 <= b["z_mid_y_min"] <= b["z_mid_y_max"] < h):
                raise InputError(f"{where}: box of class {k} = {b} is inverted or outside the image (D, H, W) = "
                                 f"{imgs.shape}: need 0 ≤ z_min ≤ z_mid ≤ z_max < D, x in [0, W), y in [0, H).")
            boxes25.append(b)
    clicks = None
    if "clicks" in data:
        clicks = []
        for k, entry in enumerate(_as_list(data["clicks"], "clicks", where), start=1):
            if not isinstance(entry, dict) or not set(entry) <= {"fg", "bg"}:
                raise InputError(f"{where}: clicks of class {k} are {str(entry)[:120]!r}; expected "
                                 "{'fg': [[z, y, x], …], 'bg': [[z, y, x], …]}.")
            one = {}
            for kind in ("fg", "bg"):
                points = []
                for point in _as_list(entry.get(kind, []), f"clicks[{k - 1}]['{kind}']", where):
                    if not isinstance(point, (list, tuple, np.ndarray)) or len(point) != 3:
                        raise InputError(f"{where}: a {kind} click of class {k} is {str(point)[:60]!r}; expected "
                                         "[z, y, x] (array indices of D×H×W, as the harness's np.argwhere gives).")
                    z, y, x = (_int(c, f"{where}: a {kind} click of class {k}") for c in point)
                    if not (0 <= z < d and 0 <= y < h and 0 <= x < w):
                        raise InputError(f"{where}: {kind} click [z, y, x] = {[z, y, x]} of class {k} lies outside "
                                         f"the image (D, H, W) = {imgs.shape}.")
                    points.append((z, y, x))
                one[kind] = points
            clicks.append(one)
    if boxes25 is None and clicks is None:
        raise InputError(f"{where} has neither 'boxes' nor 'clicks'; each step of the harness gives one or both.")
    n = len(boxes25) if boxes25 is not None else len(clicks)
    if n == 0:
        raise InputError(f"{where}: no class to segment (empty boxes/clicks).")
    if clicks is not None and len(clicks) != n:
        raise InputError(f"{where}: {n} boxes but clicks for {len(clicks)} classes; the harness gives one entry per "
                         "class in each.")
    order = None
    if "clicks_order" in data:
        order = [[None if v is None else str(v) for v in _as_list(o, "clicks_order entry", where)]
                 for o in _as_list(data["clicks_order"], "clicks_order", where)]
        if len(order) != n or any(v not in ("fg", "bg", None, "None") for o in order for v in o):
            raise InputError(f"{where}: clicks_order must hold one list of 'fg'/'bg'/None per class ({n}).")
        order = [[None if v == "None" else v for v in o] for o in order]
    prev = data.get("prev_pred")
    if prev is not None:
        prev = np.asarray(prev)
        if prev.shape != imgs.shape or prev.dtype.kind not in "iub":
            raise InputError(f"{where}: prev_pred has shape {prev.shape} dtype {prev.dtype}; expected an integer "
                             f"label map of the image's shape {imgs.shape}.")
    gts = data.get("gts")
    if gts is not None and (gts.shape != imgs.shape or gts.dtype.kind not in "iu"):
        raise InputError(f"{where}: gts has shape {gts.shape} dtype {gts.dtype}; expected an integer label map "
                         f"of shape {imgs.shape}.")
    spacing = None
    if "spacing" in data:
        spacing = tuple(float(s) for s in np.ravel(data["spacing"]))
        if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
            raise InputError(f"{where}: spacing {spacing} is not three positive numbers in mm.")
    return ChallengeCase(path.name, True, imgs, np.zeros((0, 6)), spacing,
                         None if gts is None else gts.astype(np.int64, copy=False), True, boxes25, clicks, order,
                         prev)


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


def write_case25(path: str | os.PathLike, imgs: np.ndarray, spacing, boxes: list | None = None,
                 gts: np.ndarray | None = None, clicks: list | None = None, clicks_order: list | None = None,
                 prev_pred: np.ndarray | None = None) -> Path:
    """Write a CVPR25 case as the harness does (``np.savez_compressed`` of lists of dicts), atomically.

    Args:
        imgs: ``D×H×W`` uint8. spacing: 3 numbers (mm; the harness's NSD takes them in array order).
        boxes: per class ``{z_min, z_max, z_mid, z_mid_x_min, z_mid_y_min, z_mid_x_max, z_mid_y_max}``.
        gts: ``D×H×W`` label map (class ``k`` = label ``k``). clicks, clicks_order, prev_pred: as the
            harness writes them for a click step (module docstring).
    """
    path = Path(path)
    arrays = dict(imgs=np.asarray(imgs, np.uint8), spacing=np.asarray(spacing, np.float64))
    if gts is not None:
        arrays["gts"] = np.asarray(gts, np.uint8)
    for key, value in (("boxes", boxes), ("clicks", clicks), ("clicks_order", clicks_order),
                       ("prev_pred", prev_pred)):
        if value is not None:
            arrays[key] = value
    buffer = _bytes_io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return path
