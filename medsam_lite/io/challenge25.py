"""The CVPR 2025 challenge npz: safe reading of its pickled object arrays, its keys checked, and writing.

The format is described in :mod:`medsam_lite.io.challenge` (which reads both challenges' files
through :func:`load_npz`). ``boxes``, ``clicks`` and ``clicks_order`` are object arrays, which
``np.load(allow_pickle=False)`` cannot read: :func:`load_npz` unpickles them admitting only numpy's
array / dtype / scalar reconstruction, so they can hold lists, dicts, tuples, strings, numbers,
``None`` and numpy arrays/scalars and nothing else — a payload that would run code is refused.
"""

from __future__ import annotations

import io as _bytes_io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fileutil import atomic_write


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


def checked_imgs(data: dict, where: str, holds: str, rgb: bool = False) -> np.ndarray:
    """``data["imgs"]`` of a challenge npz (either challenge), checked: ``D×H×W`` (``rgb``: ``H×W×3``, a
    CVPR24 2D case) with every side ≥ 1, uint8 or whole numbers in 0–255 (then converted to uint8, lossless).

    Args:
        data: the file's arrays (:func:`load_npz`). where: the file, as the messages name it.
        holds: what such a file holds, said when ``imgs`` is missing.

    Raises:
        InputError: no ``imgs``, another shape, or values that are not whole numbers in 0–255.
    """
    if "imgs" not in data:
        raise InputError(f"{where} has no 'imgs' array (it holds {sorted(data)}); {holds}")
    imgs = data["imgs"]
    if imgs.ndim != 3 or (rgb and imgs.shape[2] != 3) or min(imgs.shape) < 1:
        raise InputError(f"{where}: imgs has shape {imgs.shape}; expected {'H×W×3' if rgb else 'D×H×W'} uint8.")
    if imgs.dtype != np.uint8:
        if imgs.dtype.kind not in "iuf" or imgs.min() < 0 or imgs.max() > 255 \
                or not np.array_equal(imgs, np.rint(imgs)):
            raise InputError(f"{where}: imgs is {imgs.dtype} with values outside whole numbers 0–255; the challenge "
                             "format stores images already windowed to uint8.")
        imgs = imgs.astype(np.uint8)  # lossless: whole numbers in 0–255
    return imgs


def read_cvpr25(path: Path, data: dict) -> dict:
    """The checked fields of a CVPR25 case (``data``: its arrays from :func:`load_npz`), for
    :class:`~medsam_lite.io.challenge.ChallengeCase`.

    Raises:
        InputError: a missing or malformed key (box dicts, ``[z, y, x]`` clicks inside the image,
            ``clicks_order``, ``prev_pred`` / ``gts`` of another shape, ``spacing``).
    """
    where = f"{path.name} (CVPR25 format)"
    imgs = checked_imgs(data, where, "a CVPR25 case holds imgs, spacing and boxes and/or clicks.")
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
    return dict(name=path.name, is_3d=True, imgs=imgs, boxes=np.zeros((0, 6)), spacing=spacing,
                gts=None if gts is None else gts.astype(np.int64, copy=False), cvpr25=True, boxes25=boxes25,
                clicks=clicks, clicks_order=order, prev_pred=prev)


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
