"""Finding the cases of a source folder: which scan goes with which label map.

Source layouts found automatically when ``source`` is a folder (``<ext>`` is any of ``.nii.gz``,
``.nii``, ``.nrrd``, ``.mha``, ``.mhd``, and for 2D ``.png``, ``.jpg``, ``.tif``, ``.bmp``)::

    nnU-Net / Medical Segmentation Decathlon     flat folder (3D or 2D)
    source/imagesTr/<case>_0000<ext>             source/<case><ext>
    source/labelsTr/<case><ext>                  source/<case>_label<ext>   (or _mask, _seg)
    source/dataset.json  (optional label names)  source/labels.json  (optional label names)

    images/ + labels/ (or images/ + masks/)      DICOM series, one folder per case
    source/images/<case><ext>                    source/<case>/…      (the series' files)
    source/labels/<case><ext>                    source/<case>_label<ext>   (beside the folder;
                                                 or an RTSTRUCT / DICOM-SEG: <case>_label.dcm, or
    CVPR24 challenge training files              one such file inside <case>/, io.dicomlabels)
    source/<case>.npz  (imgs + gts)

In nnU-Net folders only channel ``_0000`` is used; MSD's ``<case>.nii.gz`` without a channel
suffix works too. Instead of a folder, pass a list of ``(image, label)`` path pairs (case names
from the image file names) or a dict ``{case: (image, label)}``.
"""

from __future__ import annotations

import json
import numbers
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from ..errors import InputError
from ..fileutil import NAME_MAX
from .challenge import is_training_folder, list_cases as list_challenge_files
from .dicomlabels import label_in_series, label_kind
from .scans import IMAGE_SUFFIXES, VOLUME_SUFFIXES

LABEL_SUFFIXES = ("_label", "_mask", "_seg")
#: (images, labels) sub-folder pairs recognized in a source folder, tried in order.
PAIRED_FOLDERS = (("imagesTr", "labelsTr"), ("images", "labels"), ("images", "masks"))
_SUFFIXES = tuple(s for s in VOLUME_SUFFIXES if s != ".dcm") + IMAGE_SUFFIXES


@dataclass(frozen=True)
class Case:
    """One subject: a name (used as a folder name) and its image and label-map paths."""

    name: str
    image: Path
    label: Path


# ---------------------------------------------------------------- finding cases
def _split_name(path: Path) -> tuple[str, str]:
    """``("case", ".nii.gz")`` for ``case.nii.gz``; folders have no suffix."""
    name = path.name
    if path.is_dir():
        return name, ""
    for suffix in sorted(_SUFFIXES + (".dcm",), key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def _check_name(name: str, where) -> str:
    if not name or name.startswith(".") or re.search(r"[/\\:\x00]", name):
        raise InputError(f"case name {name!r} (from {where}) cannot be a folder name; rename it.")
    if len(name.encode("utf-8")) > NAME_MAX:
        raise InputError(f"case name {name[:40]!r}… (from {str(where)[:80]}) is {len(name.encode('utf-8'))} bytes "
                         f"long; a file or folder name may have at most {NAME_MAX}. Rename the file, or pass a "
                         "dict {short_name: (image, label)}.")
    return name


def _is_dicom_dir(path: Path) -> bool:
    """True for a folder holding a DICOM series (ITK's "no series found" warning is silenced)."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return path.is_dir() and bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file()
                  and _split_name(p)[1] in _SUFFIXES)


def _paired_folders(images: Path, labels: Path) -> list[Case]:
    by_stem = {_split_name(p)[0]: p for p in _files(labels)}
    cases, missing = [], []
    for path in _files(images):
        stem = _split_name(path)[0]
        m = re.fullmatch(r"(.+)_(\d{4})", stem)
        if m and m.group(2) != "0000":
            continue  # extra nnU-Net channels: only _0000 is used
        name = m.group(1) if m else stem
        if name in by_stem:
            cases.append(Case(_check_name(name, path), path, by_stem[name]))
        else:
            missing.append(f"{labels.name}/{name}<ext> for {images.name}/{path.name}")
    if missing:
        raise InputError(f"missing label file(s): {', '.join(missing[:5])}; add them or remove those images.")
    return cases


def _flat_folder(root: Path, suffixes: tuple[str, ...], exclude: Path | None) -> list[Case]:
    entries = _files(root) + sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                                    and p.resolve() != exclude and _is_dicom_dir(p))
    entries += sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().endswith(".dcm")  # RTSTRUCT / SEG
                      and any(_split_name(p)[0].endswith(s) for s in suffixes) and label_kind(p))
    labels = {}
    for p in entries:
        stem = _split_name(p)[0]
        for suffix in suffixes:
            if p.is_file() and stem.endswith(suffix) and len(stem) > len(suffix):
                labels.setdefault(stem[: -len(suffix)], []).append(p)
                break
    label_files = {p for ps in labels.values() for p in ps}
    images = [p for p in entries if p not in label_files]
    cases, missing = [], []
    for path in images:
        name = _split_name(path)[0]
        found = labels.pop(name, [])
        if len(found) > 1:
            raise InputError(f"{path.name} has several label files {[p.name for p in found]}; keep one.")
        inside = label_in_series(path) if not found and path.is_dir() else None
        if inside is not None:  # an RTSTRUCT / SEG among the series' files
            cases.append(Case(_check_name(name, path), path, inside))
        elif not found:
            missing.append(f"{name}{suffixes[0]}{_split_name(path)[1] or '.nii.gz'} for {path.name}")
        else:
            cases.append(Case(_check_name(name, path), path, found[0]))
    if missing:
        raise InputError(
            f"missing label file(s) in {root}: expected {', '.join(missing[:5])}"
            f"{' …' if len(missing) > 5 else ''}. Label maps are named <case>{'/'.join(suffixes)}<ext>; "
            "add them, remove the unlabelled images, or pass label_suffix=.")
    for name in sorted(labels):  # a single-file (multi-frame) DICOM beside its label: read_volume reads it
        dcm = [p for p in root.iterdir() if p.is_file() and _split_name(p) == (name, ".dcm")] if len(labels[name]) == 1 else []
        if len(dcm) == 1:
            cases.append(Case(_check_name(name, dcm[0]), dcm[0], labels.pop(name)[0]))
    if labels:
        orphans = [p.name for ps in labels.values() for p in ps]
        raise InputError(f"label file(s) without an image in {root}: {orphans[:5]}; add the images or remove them.")
    return cases


def find_cases(source, label_suffix: str | None = None, exclude=None) -> list[Case]:
    """List the (image, label) cases of a source (see the module docstring for the layouts).

    Args:
        source: a folder, a list of ``(image, label)`` path pairs, or a dict ``{case: (image, label)}``.
        label_suffix: name ending of label maps in a flat folder (default: any of
            :data:`LABEL_SUFFIXES`).
        exclude: a folder to ignore inside ``source`` (the output folder, if it lies there).

    Returns:
        Cases sorted by name.

    Raises:
        InputError: a missing folder, image or label file, an orphan label, duplicate case names.
    """
    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        if not root.is_dir():
            raise InputError(f"source {root} is not a folder; pass a folder or a list of (image, label) pairs.")
        meta = root / "dataset.json"
        if meta.is_file() and '"medsam_lite.dataset/' in meta.read_text(encoding="utf-8", errors="ignore"):
            raise InputError(f"{root} is already a prepared dataset; open it with open_dataset().")
        for images, labels in PAIRED_FOLDERS:
            if is_training_folder(root):  # CVPR24 challenge npz: imgs + gts in one file per case
                cases = [Case(_check_name(p.stem, p), p, p) for p in list_challenge_files(root)]
                break
            if (root / images).is_dir() and (root / labels).is_dir():
                cases = _paired_folders(root / images, root / labels)
                break
        else:
            suffixes = (label_suffix,) if label_suffix else LABEL_SUFFIXES
            cases = _flat_folder(root, suffixes, Path(exclude).resolve() if exclude else None)
        if not cases:
            raise InputError(
                f"no image/label pairs found in {root}. Expected imagesTr/ + labelsTr/ (nnU-Net, MSD), "
                "case.nii.gz + case_label.nii.gz (also .nrrd/.mha/.png), or DICOM series folders with "
                "<folder>_label.nii.gz beside them; see help(medsam_lite.preprocess).")
    else:
        items = source.items() if isinstance(source, Mapping) else None
        if items is None:
            try:
                pairs = [(Path(i), Path(lab)) for i, lab in source]
            except (TypeError, ValueError):
                raise InputError("source must be a folder, a list of (image, label) pairs or a dict "
                                 "{case: (image, label)}.") from None
            items = [(re.sub(r"_0000$", "", _split_name(i)[0]), (i, lab)) for i, lab in pairs]
        cases = [Case(_check_name(str(n), i), Path(i), Path(lab)) for n, (i, lab) in items]
        missing = [str(p) for c in cases for p in (c.image, c.label) if not p.exists()]
        if missing:
            raise InputError(f"missing file(s): {missing[:5]}; check the paths (relative to {Path.cwd()}).")
    names = [c.name for c in cases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"several images give the case name(s) {dupes}; rename them or pass a dict "
                         "{case: (image, label)}.")
    if not cases:
        raise InputError("source holds no cases; pass at least one (image, label) pair.")
    return sorted(cases, key=lambda c: c.name)


# ---------------------------------------------------------------- reading and checking one case
def labels_from_files(folders) -> dict[int, str]:
    """Label names from ``labels.json`` ({value: name}) or an MSD / nnU-Net ``dataset.json``.

    A file that is present but unusable (invalid JSON, not an object, ``labels`` not an object, no
    entry that pairs a whole-number value with a name) is skipped with a warning naming the file
    and the problem; names given as digit strings (``{"liver": "1"}``) are read as values.
    """
    for folder in folders:
        for fname in ("labels.json", "dataset.json"):
            path = Path(folder) / fname
            if not path.is_file():
                continue
            out, problem = _label_names(path, fname)
            if problem:
                used = "the other names are used" if out else "its label names are not used (labels are called label_<value>)"
                warnings.warn(f"{path}: {problem}; {used}. "
                              'Write it as {"1": "liver", ...} (or nnU-Net\'s "labels": {"liver": 1}).', stacklevel=3)
            if out:
                return out
    return {}


def _label_names(path: Path, fname: str) -> tuple[dict[int, str], str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        return {}, f"not valid JSON ({str(exc)[:80]})"
    if not isinstance(data, dict):
        return {}, f"holds a JSON {type(data).__name__}, not an object"
    if fname == "dataset.json":
        if "labels" not in data:
            return {}, None  # an MSD / nnU-Net file without names: nothing to say
        data = data["labels"]
        if not isinstance(data, dict):
            return {}, f'its "labels" is a {type(data).__name__} ({str(data)[:40]!r}), not an object'
    out, bad = {}, []
    for k, v in data.items():
        if str(k).strip().isdigit():
            out[int(k)] = str(v)
        elif isinstance(v, int) and not isinstance(v, bool):
            out[v] = str(k)  # nnU-Net v2: {name: value}
        elif isinstance(v, str) and v.strip().isdigit():
            out[int(v)] = str(k)  # {name: "value"}: the value as a string, read as its number
        else:
            bad.append(f"{k!r}: {v!r}")
    out.pop(0, None)
    if bad:
        return out, f"entries {', '.join(bad[:3])} pair no whole-number label value with a name"
    return out, None


def _is_name(v) -> bool:
    return isinstance(v, str) and not v.strip().isdigit()


def resolve_label_names(labels, source, cases=None):
    """``labels`` given by name (``["liver", "spleen"]``, mixed with values, or ``{name: value}``)
    → ``{value: name}``, through the label names the data carries: ``labels.json`` / MSD / nnU-Net
    ``dataset.json`` in or above the source folder (:func:`labels_from_files`), or the ROI / segment
    names of RTSTRUCT / DICOM-SEG label files (:func:`medsam_lite.io.dicomlabels.resolve_names`).

    Names match ignoring case and surrounding spaces; values (ints, digit strings) pass through.
    ``labels`` without any name is returned unchanged (``[1, 5]``, ``{1: "liver"}``; None too,
    except for RTSTRUCT / SEG labels: then every ROI name, numbered).

    Raises:
        InputError: a name the data does not carry (the message lists the names it does), a value
            that is not a whole number (``1.5``), or a folder with no label names at all.
    """
    from ..errors import InputError
    from .dicomlabels import resolve_names

    if labels is None:  # every label; RTSTRUCT / SEG: their names, numbered once for all files
        cases = find_cases(source) if cases is None and isinstance(source, (str, os.PathLike)) else (cases or [])
        return resolve_names([c.label for c in cases], None)
    if isinstance(labels, (str, numbers.Integral)):
        labels = [labels]
    items = list(labels.items()) if isinstance(labels, Mapping) else list(labels)
    for v in (items if not isinstance(labels, Mapping) else [k for k, _ in items] + [v for _, v in items]):
        if isinstance(v, bool) or (isinstance(v, numbers.Real) and not float(v).is_integer()) \
                or not isinstance(v, (str, numbers.Real)):
            raise InputError(f"labels: {v!r} is neither a whole label value nor a label name; give values "
                             "(labels = [1, 5]) or names (labels = [\"liver\", \"spleen\"]).")
    if cases is None:
        cases = find_cases(source) if isinstance(source, (str, os.PathLike)) else []
    label_paths = [c.label for c in cases]
    dicom = resolve_names(label_paths, labels)
    if dicom is not labels:
        return dicom  # RTSTRUCT / SEG: numbered ROI names
    if isinstance(labels, Mapping):
        if all(_is_name(k) for k in labels):  # {name: value}
            return {int(v): str(k) for k, v in labels.items()}
        return labels
    if not any(_is_name(v) for v in items):
        return [int(v) for v in items]
    folder = Path(source) if isinstance(source, (str, os.PathLike)) else (cases[0].label.parent if cases else Path("."))
    known = labels_from_files([folder, folder.parent])
    by_name = {name.strip().lower(): value for value, name in known.items()}
    out, missing = {}, []
    for v in items:
        if _is_name(v):
            value = by_name.get(v.strip().lower())
            if value is None:
                missing.append(v)
            else:
                out[value] = known[value]
        else:
            out[int(v)] = known.get(int(v), f"label_{int(v)}")
    if missing:
        where = (f"its names are {sorted(known.values())}" if known
                 else "it has no labels.json or dataset.json naming its label values")
        raise InputError(f"labels {missing} name no label of {folder}: {where}. Give label values "
                         "(labels = [1, 5]) or add a labels.json {\"1\": \"liver\", ...} beside the scans.")
    return out
