"""Label maps stored the DICOM way: an RTSTRUCT or a DICOM-SEG beside (or inside) a DICOM series.

Where they are found (:func:`medsam_lite.io.cases.find_cases`):

* inside the series folder, as PACS and treatment-planning exports put them (one RTSTRUCT or SEG
  file among the slices; the series' own slices are read as the image);
* beside it as ``<case>_label.dcm`` (or ``_mask.dcm``, ``_seg.dcm``) next to the folder ``<case>/``.

ROI / segment names become label names. In a dataset of several cases the names are numbered
once for all cases (:func:`resolve_names`), so ``liver`` has one value everywhere, and
``labels=`` can select them by name (``["liver", "spleen"]``) or by value.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError

#: DICOM modalities that hold labels, not images.
LABEL_MODALITIES = ("RTSTRUCT", "SEG")


def label_kind(path: str | os.PathLike) -> str | None:
    """``"RTSTRUCT"``, ``"SEG"`` or ``None`` (not a DICOM label file), from the header only."""
    import pydicom

    path = Path(path)
    if not path.is_file():
        return None
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
    except Exception:  # not DICOM (pydicom raises InvalidDicomError, or others on odd bytes)
        return None
    modality = str(getattr(ds, "Modality", "")).upper()
    return modality if modality in LABEL_MODALITIES else None


def label_in_series(folder: str | os.PathLike) -> Path | None:
    """The RTSTRUCT / SEG file inside a series folder, if there is one.

    Raises:
        InputError: the folder holds several (the message names them).
    """
    found = [p for p in sorted(Path(folder).iterdir()) if p.is_file() and not p.name.startswith(".")
             and label_kind(p)]
    if len(found) > 1:
        raise InputError(f"{folder} holds {len(found)} label files {[p.name for p in found][:5]} (RTSTRUCT / SEG); "
                         "keep one, or put it beside the series folder as <folder>_label.dcm.")
    return found[0] if found else None


def series_folder_for(path: Path, reference=None) -> Path:
    """The series folder a DICOM label file belongs to: ``reference`` if given, else the folder it
    lies in (a label inside the series), else ``<case>/`` beside ``<case>_label.dcm``."""
    if reference is not None:
        ref = Path(getattr(reference, "path", None) or reference)
        if ref.is_dir():
            return ref
        raise InputError(f"the label {path.name} is an RTSTRUCT / DICOM-SEG: its image must be the DICOM series "
                         f"folder it was drawn on, got {ref}.")
    stem = path.name[: -len(".dcm")] if path.name.lower().endswith(".dcm") else path.stem
    for suffix in ("_label", "_mask", "_seg"):  # cases.LABEL_SUFFIXES (cases imports this module)
        if stem.endswith(suffix) and (path.parent / stem[: -len(suffix)]).is_dir():
            return path.parent / stem[: -len(suffix)]
    return path.parent


def _key(name: str) -> str:
    return " ".join(str(name).split()).lower()


def read_dicom_label(path, reference=None, names=None):
    """Read an RTSTRUCT or DICOM-SEG as a label map on its series' grid.

    Args:
        path: the RTSTRUCT / SEG file.
        reference: the series folder (default: see :func:`series_folder_for`).
        names: ``{value: name}`` fixing the value of each ROI / segment name (matched ignoring case
            and repeated spaces); names not in it are left out (said in a note). Default: values
            1, 2, … in the file's order.

    Returns:
        ``dict(array=(z, y, x) uint16, spacing, origin, direction, names={value: name}, notes=[…])``
        with the series' geometry (:func:`medsam_lite.io.read_label` makes it a ``Volume``).
    """
    from types import SimpleNamespace

    import SimpleITK as sitk

    from .dicom import read_series
    from .dicomseg import read_seg, series_datasets
    from .rtstruct import read_rtstruct

    path = Path(path)
    kind = label_kind(path)
    folder = series_folder_for(path, reference)
    image = read_series(folder)
    datasets = series_datasets(folder)
    geometry = SimpleNamespace(array=np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8),
                               spacing=image.GetSpacing(), origin=image.GetOrigin(), direction=image.GetDirection())
    if kind == "SEG":
        array, found, notes = read_seg(path, datasets)
    elif kind == "RTSTRUCT":
        array, found, notes = read_rtstruct(path, datasets, geometry)
    else:
        raise InputError(f"{path} is neither an RTSTRUCT nor a DICOM-SEG.")
    if names is not None:
        wanted = {_key(v): int(k) for k, v in dict(names).items()}
        out = np.zeros(array.shape, np.uint16)
        used, left = {}, []
        for value, name in found.items():
            target = wanted.get(_key(name))
            if target is None:
                left.append(name)
                continue
            out[array == value] = target
            used[target] = name
        if left:
            notes = notes + [f"{path.name}: not selected by labels=: {left}"]
        array, found = out, used
    return dict(array=array, spacing=tuple(geometry.spacing), origin=tuple(geometry.origin),
                direction=tuple(geometry.direction), names=dict(found), notes=list(notes))


def names_in_file(path) -> list[str]:
    """The ROI (RTSTRUCT) or segment (SEG) names of a label file, in file order, from its header."""
    import pydicom

    from .dicomseg import distinct_names

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if getattr(ds, "Modality", "") == "SEG":
        items = list(getattr(ds, "SegmentSequence", []))
        return distinct_names([str(s.SegmentLabel) for s in items], [s.SegmentNumber for s in items], "segment")[0]
    items = list(getattr(ds, "StructureSetROISequence", []))
    return distinct_names([str(getattr(r, "ROIName", "") or f"ROI {r.ROINumber}") for r in items],
                          [r.ROINumber for r in items], "ROI")[0]


def resolve_names(label_paths, labels=None):
    """The ``labels=`` of :func:`~medsam_lite.preprocess` for DICOM label files: ``{value: name}``.

    Names are numbered once for every file (first seen first, ignoring case), so a name keeps one
    value across cases. ``labels`` selects: a list of names (numbered in that order), a list of
    values (of that numbering), ``{value: name}`` or ``{name: value}``. Returns ``labels``
    unchanged when no path is a DICOM label file.

    Raises:
        InputError: a requested name no file holds (the message lists the names found).
    """
    paths = [Path(p) for p in label_paths if str(p).lower().endswith(".dcm") and label_kind(p)]
    if not paths:
        return labels
    seen: dict[str, str] = {}
    for p in paths:
        for name in names_in_file(p):
            seen.setdefault(_key(name), name)
    ordered = list(seen.values())
    if labels is None:
        return {i: name for i, name in enumerate(ordered, start=1)}
    if isinstance(labels, dict):
        if all(isinstance(k, str) and not k.isdigit() for k in labels):
            labels = {int(v): k for k, v in labels.items()}  # {name: value}
        pairs = {int(k): str(v) for k, v in labels.items()}
        missing = [v for v in pairs.values() if _key(v) not in seen]
    else:
        items = list(np.atleast_1d(labels)) if not isinstance(labels, (list, tuple)) else list(labels)
        if all(isinstance(v, str) and not v.isdigit() for v in items):
            pairs = {i: seen.get(_key(v), v) for i, v in enumerate(items, start=1)}
            missing = [v for v in items if _key(v) not in seen]
        else:
            values = [int(v) for v in items]
            bad = [v for v in values if not 1 <= v <= len(ordered)]
            if bad:
                raise InputError(f"labels {bad} are not among the DICOM label values 1 … {len(ordered)} "
                                 f"({dict(enumerate(ordered, start=1))}); select by value or by name.")
            pairs, missing = {v: ordered[v - 1] for v in values}, []
    if missing:
        raise InputError(f"labels {missing} name no ROI / segment of the DICOM label files; they hold {ordered}.")
    return pairs
