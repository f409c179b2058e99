"""What an :class:`~medsam_lite.interactive.session.AnnotationSession` is made of, opens and saves.

:class:`Annotation` is one object with its prompts and mask; :class:`Prompt` a snapshot of one.
:func:`as_scan` checks the image or volume a session opens; :func:`save_label_map` writes its label
map with the scan's geometry.

:func:`save_case` writes a case the way :func:`~medsam_lite.preprocess` finds it in a flat folder
(:mod:`medsam_lite.io.cases`): ``<case>.nii.gz`` + ``<case>_label.nii.gz`` (``.png`` for a 2D
``uint8`` image) and ``labels.json`` (``{value: name}``), both files with the scan's geometry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..fileutil import atomic_write, atomic_write_text
from ..io.cases import LABEL_SUFFIXES, PAIRED_FOLDERS
from ..io.formats import label_writer, write_volume
from ..io.scans import Volume, read_volume

#: File endings :func:`save_label_map` writes (``.png`` only for 2D images).


@dataclass(frozen=True)
class Prompt:
    """One object's prompt and the mask it gave (a snapshot, as :attr:`AnnotationSession.prompts` lists them).

    Attributes:
        slice: index ``z`` of the slice in a 3D volume, ``None`` for a 2D image.
        box: ``[x0, y0, x1, y1]`` float32, XYXY in original image pixels.
        label: the class name.
        mask: ``H×W`` bool mask of this object.
        score: the model's predicted IoU for the mask.
    """

    slice: int | None
    box: np.ndarray
    label: str
    mask: np.ndarray
    score: float


@dataclass(eq=False)
class Annotation:
    """One object being annotated, with its prompts and the mask they give.

    Attributes:
        id: the object's number in its session (never reused).
        label: its class name.
        slice: the slice ``z`` it lies on (``0`` for a 2D image).
        box: ``[x0, y0, x1, y1]`` float32, XYXY in original pixels, clipped to the image as decoded.
        points: ``K×2`` float32 clicks, XY in original pixels, in click order (``0×2`` without clicks).
        point_labels: ``K`` int32, ``1`` foreground / ``0`` background.
        mask: ``H×W`` bool.
        score: the model's predicted IoU for ``mask``.
        logits: ``H×W`` float32 logits of ``mask``: the ``mask_input`` of the next click.
    """

    id: int
    label: str
    slice: int
    box: np.ndarray
    points: np.ndarray
    point_labels: np.ndarray
    mask: np.ndarray
    score: float
    logits: np.ndarray
    history: list = field(default_factory=list, repr=False)  # earlier states, for undo

    _STATE = ("box", "points", "point_labels", "mask", "score", "logits")

    def push_state(self) -> None:
        """Remember the current state (for undo)."""
        self.history.append(tuple(getattr(self, k) for k in self._STATE))

    def pop_state(self) -> None:
        """Go back to the state last remembered by :meth:`push_state`."""
        for k, v in zip(self._STATE, self.history.pop()):
            setattr(self, k, v)


def check_class_names(labels) -> dict[str, int]:
    """``{name: value}`` from class names (values 1, 2, … in order) or ``{value: name}``."""
    if isinstance(labels, str):
        labels = (labels,)
    if isinstance(labels, Mapping):
        items = list(labels.items())
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 < v < 65536
                   and isinstance(n, str) for v, n in items):
            raise InputError(f"labels as a dict must map label values 1…65535 to class names, e.g. {{5: 'liver'}}; "
                             f"got {labels!r}.")
        values, names = [int(v) for v, _ in items], [n for _, n in items]
    elif isinstance(labels, (list, tuple)) and all(isinstance(v, str) for v in labels):
        names, values = list(labels), list(range(1, len(labels) + 1))
    else:
        raise InputError(f"labels must be a class name or a list of names, e.g. ['tumour', 'liver']; got {labels!r}.")
    if not names or not all(names) or len(set(names)) != len(names):
        raise InputError(f"labels must be distinct, non-empty class names, e.g. ['tumour', 'liver']; got {labels!r}.")
    return dict(zip(names, values))



def as_scan(image) -> tuple[np.ndarray, Volume | None, bool]:
    """``(array, source Volume or None, is_volume)`` from a path, a Volume or an array."""
    image = read_volume(image) if isinstance(image, (str, Path)) else image
    source = image if isinstance(image, Volume) else None
    array = np.asarray(image.array if source is not None else image)
    if array.dtype == bool or array.dtype.kind not in "uif":
        raise InputError(f"the image has dtype {array.dtype}; pass the scan (real numbers), not a mask or objects.")
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4) and array.dtype == np.uint8):
        return array, source, False
    if array.ndim == 3 and array.shape[2] in (3, 4):
        raise InputError(f"an image of shape {array.shape} and dtype {array.dtype} looks like colour: colour images "
                         "must be uint8 H×W×3 (np.clip(image, 0, 255).astype(np.uint8)); volumes are (z, y, x).")
    if array.ndim == 3 and min(array.shape[1:]) >= 2:
        return array, source, True
    raise InputError(f"expected a 2D image (H×W or H×W×3 uint8) or a 3D volume (z, y, x), got shape {array.shape}; "
                     "squeeze extra axes or pick a channel first.")


def _like(session) -> Volume | None:
    src = session.source
    return src if src is not None and src.array.shape[:len(session.shape)] == session.shape else None


def save_label_map(session, path) -> Path:
    """Write the session's label map in the format of ``path`` (:mod:`medsam_lite.io.formats`):
    NIfTI / NRRD / MHA / TIFF with the source's geometry, PNG for 2D, or ``.dcm`` (a DICOM-SEG)
    when the session's scan was read from a DICOM series folder.

    The geometry (spacing, origin, direction) is the one of the Volume or file the session was
    made from (identity for a bare array). Checked before anything is written; returns the written path.
    """
    like = _like(session)
    names = {value: name for name, value in getattr(session, "label_values", {}).items()}
    write = label_writer(path, None, like, names, label_map=True,
                         ndim=3 if session.is_volume else 2)
    return write(session.to_label_map())  # the registry decides the encoding


def save_case(session, folder, case: str | None = None) -> tuple[Path, Path]:
    """Save the scan and its label map as one case of a folder :func:`~medsam_lite.preprocess` reads.

    Writes ``folder/<case>.nii.gz`` (the scan as given, original intensities and geometry; ``.png``
    for a 2D ``uint8`` image), ``folder/<case>_label.nii.gz`` (the label map, same
    geometry) and ``folder/labels.json`` (``{value: name}``, merged with one already there).
    Unlabelled slices are background: ``preprocess`` takes targets only from labelled ones.

    Args:
        folder: the source folder (created if needed; may hold other cases).
        case: the case name (default: the scan file's name, else ``"case"``).

    Returns:
        ``(image path, label path)``.

    Raises:
        InputError: a bad case name, a ``folder`` that is (or lies under) a file, an empty label
            map (nothing annotated), a different scan already saved under that name, a folder where
            one of the three files goes, a ``labels.json`` giving a value another name, or a folder
            ``preprocess`` would not read as a flat folder. All checked first: nothing is written then.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise InputError(f"cannot save into {folder}: {existing} is a file, not a folder; pass a folder (it is "
                         "created if needed).")
    stem = re.sub(r"(\.nii\.gz|\.[A-Za-z0-9]+)$", "", Path(session.source.path).name) if (
        session.source is not None and session.source.path) else "case"
    case = stem if case is None else case
    if not isinstance(case, str) or not re.fullmatch(r"[^\W_][\w.-]{0,100}", case) or re.search(
            r"_(label|mask|seg)$|_\d{4}$", case):
        raise InputError(f"case name {case!r} must be letters (any script), digits, '.', '_' or '-' (≤ 100, "
                         "starting with a letter or digit), not ending in _label, _mask, _seg or a 4-digit channel; "
                         "pass case='…'.")
    label_map = session.to_label_map()
    if not label_map.any():
        raise InputError("nothing to save: the session's label map is empty (no object annotated yet, or every "
                         "mask was undone); annotate at least one object before save_case.")
    for images, labels in PAIRED_FOLDERS:  # the layout rule of io.cases, not a copy
        if (folder / images).is_dir():
            raise InputError(f"{folder} has an {images}/ folder: preprocess would read it as {images}/ + "
                             f"{labels}/ and skip flat files; save into another folder.")
    meta = folder / "dataset.json"
    if meta.is_file() and '"medsam_lite.data.dataset' in meta.read_text(encoding="utf-8", errors="ignore"):
        raise InputError(f"{folder} is a prepared dataset; save the case into a source folder of scans.")
    names = {str(v): n for n, v in session.label_values.items()}
    labels_json = folder / "labels.json"
    if labels_json.is_file():
        try:
            known = {str(k): str(v) for k, v in json.loads(labels_json.read_text(encoding="utf-8")).items()}
            if not all(k.isdigit() for k in known):
                raise ValueError
        except (ValueError, AttributeError):
            raise InputError(f"{labels_json} is not a JSON object {{value: name}}; fix or remove it.") from None
        clash = {k: (known[k], n) for k, n in names.items() if k in known and known[k] != n}
        if clash:
            raise InputError(f"{labels_json} names label value(s) differently: {clash} (there, here); create the "
                             "session with labels={value: name} matching it.")
        names = {**known, **names}
    n = len(session.shape)
    scan = session.source or Volume(session.array, (1.0,) * n, (0.0,) * n, tuple(np.eye(n).ravel()))
    colour = not session.is_volume and scan.array.ndim == 3
    ext = ".png" if not session.is_volume and scan.array.dtype == np.uint8 else ".nii.gz"
    image_path, label_path = folder / f"{case}{ext}", folder / f"{case}{LABEL_SUFFIXES[0]}{ext}"
    for path in (image_path, label_path, labels_json):  # every file checked before the first is written
        if path.exists() and not path.is_file():
            raise InputError(f"{path} is a folder (or not a regular file); move it away or choose another case "
                             "name (case='…'). Nothing was written.")
    write_image = True
    if image_path.exists():
        old = read_volume(image_path)
        if not (old.array.shape == scan.array.shape and np.array_equal(old.array, scan.array)
                and (ext == ".png" or old.same_geometry(scan))):
            raise InputError(f"{image_path} holds another scan; choose another case name (case='…').")
        write_image = False
    folder.mkdir(parents=True, exist_ok=True)
    if write_image and colour:
        rgb = Image.fromarray(np.ascontiguousarray(scan.array))
        atomic_write(image_path, lambda f: rgb.save(f, format="PNG"))
    elif write_image:
        write_volume(scan.array, image_path, like=scan)
    write_volume(label_map, label_path, like=scan if not colour else None)
    atomic_write_text(labels_json, json.dumps(dict(sorted(names.items(), key=lambda kv: int(kv[0]))), indent=1))
    return image_path, label_path
