"""The one configuration: the settings file (``tutorials/settings.toml``), found, read and checked,
and the one table of defaults (:data:`DEFAULTS`) that the notebooks, scripts and the CLI share.

One TOML file (read with the standard library's ``tomllib``) holds every choice the notebooks make:
the data folder, modality, labels, held-out cases, the area rule, the work folder, the model, the
fine-tuning hyper-parameters, clicks and threads/device. :func:`medsam_lite.app.tutorial.settings`
reads it when called without a data folder; environment variables still override it.

Paths in the file are relative to the file's own folder; ``"samples:ct_abdomen"`` names a folder of
the bundled ``data_samples/`` (resolved by :mod:`medsam_lite.samples`, so ``$MEDSAM_LITE_SAMPLES``
on Colab is honoured).
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

from ..errors import InputError

#: The file's name; looked up by :func:`find`.
NAME = "settings.toml"

#: Entries a settings file may hold, with the types each accepts.
KEYS = {
    "data": (str,), "modality": (str,), "labels": (dict, list), "test_cases": (list,), "min_mm2": (int, float),
    "work": (str,), "model": (str,), "checkpoint": (str,), "epochs": (int,), "lr": (int, float),
    "batch_size": (int,), "clicks": (int,), "threads": (int,), "device": (str,),
    "scan": (str,), "boxes": (dict,), "reference": (str,),
}

#: What :func:`medsam_lite.app.tutorial.settings` takes when neither the file nor a keyword sets an
#: entry; also :class:`~medsam_lite.app.tutorial.Settings`' field defaults (one table). ``threads``
#: None = every core (set where work starts, never when settings are read); ``device`` ``"auto"``.
DEFAULTS = {"modality": "MR", "test_cases": None, "labels": None, "work": "work", "threads": None,
            "min_mm2": None, "model": "lite_medsam", "checkpoint": None, "epochs": 5, "lr": 1e-4,
            "batch_size": 8, "clicks": 0, "device": "auto", "scan": None, "boxes": None, "reference": None}


def find() -> Path | None:
    """The settings file to read: ``$MEDSAM_LITE_SETTINGS``, else ``settings.toml`` in the working
    directory (the notebooks run in ``tutorials/``), else the repository's ``tutorials/settings.toml``;
    None when there is none."""
    env = os.environ.get("MEDSAM_LITE_SETTINGS")
    if env:
        if not Path(env).is_file():
            raise InputError(f"MEDSAM_LITE_SETTINGS={env} is not a file; point it at a settings.toml "
                             "(tutorials/settings.toml is the template).")
        return Path(env)
    for candidate in (Path.cwd() / NAME, Path(__file__).resolve().parents[2] / "tutorials" / NAME):
        if candidate.is_file():
            return candidate
    return None


def short_path(path) -> Path:
    """``path`` relative to the working directory when that is short (inside it, or one ``..`` up),
    else as given: what the notebooks print and store, so outputs carry no absolute path."""
    path = Path(path)
    if not path.is_absolute():
        return path
    try:
        rel = Path(os.path.relpath(path, Path.cwd()))
    except ValueError:  # another drive (Windows)
        return path
    return rel if rel.parts[:2] != ("..", "..") else path


def _resolve(value: str, base: Path) -> Path:
    if value.startswith("samples:"):
        from .. import samples

        return short_path(samples.sample_path(value.split(":", 1)[1]))
    path = Path(value).expanduser()
    return short_path(path if path.is_absolute() else base / path)


def read(path) -> dict:
    """The entries of a settings file as :func:`medsam_lite.app.tutorial.settings` keywords.

    Returns a dict with only the entries present: ``data`` / ``work`` / ``checkpoint`` as paths
    (relative to the file's folder, printed short), ``labels`` as ``{int: name}`` or a list of ints,
    ``test_cases`` as a list (or None when empty), ``min_mm2`` None when 0, ``threads`` None when 0
    (every core), ``checkpoint`` None when empty.

    Raises:
        InputError: unreadable TOML, an unknown entry or an entry of the wrong type, an empty
            ``data`` (never this file's folder by accident), naming
            the fix. A UTF-8 byte-order mark (Windows editors) is read as nothing.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # a BOM (Windows editors) is not TOML
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise InputError(f"cannot read the settings file {path}: {err}") from err
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise InputError(f"{path}: unknown entries {unknown}; the entries are {sorted(KEYS)}.")
    for key, value in raw.items():
        if not isinstance(value, KEYS[key]) or isinstance(value, bool):
            raise InputError(f"{path}: {key} = {value!r} must be {' or '.join(t.__name__ for t in KEYS[key])}.")
    if "data" in raw and isinstance(raw["data"], str) and not raw["data"].strip():
        raise InputError(f"{path}: data = \"\" is empty; name your folder of scans + label maps "
                         "(relative to this file), e.g. data = \"my_scans\", or \"samples:ct_abdomen\".")
    base = path.resolve().parent
    out = dict(raw)
    for key in ("data", "work"):
        if key in out:
            out[key] = _resolve(out[key], base)
    for key in ("checkpoint", "scan", "reference"):
        if key in out:
            out[key] = _resolve(out[key], base) if out[key] else None
    if "boxes" in out:
        out["boxes"] = read_boxes(out["boxes"], path)
    if "labels" in out:
        out["labels"] = read_labels(out["labels"], path)
    if "test_cases" in out:
        out["test_cases"] = [str(c) for c in out["test_cases"]] or None
    if "min_mm2" in out:
        out["min_mm2"] = float(out["min_mm2"]) or None
    if "threads" in out:
        out["threads"] = out["threads"] or None
    if "lr" in out:
        out["lr"] = float(out["lr"])
    for key in ("epochs", "batch_size", "threads"):
        if out.get(key) is not None and out[key] < 1:
            raise InputError(f"{path}: {key} must be a positive integer (threads: 0 = every core).")
    if out.get("clicks", 0) < 0:
        raise InputError(f"{path}: clicks must be 0 or more.")
    if out.get("device", "auto") not in ("auto", "cpu", "cuda"):
        raise InputError(f"{path}: device = {out['device']!r}; choose \"auto\", \"cpu\" or \"cuda\".")
    return out


def read_labels(labels, path="labels"):
    """``labels`` of a settings file: ``{value = "name"}`` → ``{int: name}``; a list of whole values
    and / or names (``[1, 5]``, ``["liver", "spleen"]``) → that list (names are resolved later against
    the data's label names, :func:`medsam_lite.io.cases.resolve_label_names`); ``[]`` / ``{}`` → None.

    Raises:
        InputError: a value that is not a whole number (``1.5``, ``true``), or a key that is not one.
    """
    def whole(v) -> bool:
        return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and v.strip().isdigit())

    if isinstance(labels, dict):
        if not all(whole(k) and isinstance(v, str) and v.strip() for k, v in labels.items()):
            raise InputError(f"{path}: labels must map whole label values to names, e.g. labels = "
                             f"{{ 1 = \"spleen\", 5 = \"liver\" }}, got {labels!r}.")
        return {int(k): str(v) for k, v in labels.items()} or None
    bad = [v for v in labels if not (whole(v) or (isinstance(v, str) and v.strip()))]
    if bad:
        raise InputError(f"{path}: labels {bad} are neither whole label values nor names; write e.g. "
                         "labels = [1, 5] or labels = [\"liver\", \"spleen\"].")
    return [int(v) if whole(v) else v.strip() for v in labels] or None


def read_boxes(boxes: dict, path) -> dict[str, tuple[int, list[float]]]:
    """The ``[boxes]`` table (notebook 08: ``name = [slice, x0, y0, x1, y1]``) → ``{name: (slice, [x0, y0, x1, y1])}``.

    Coordinates are XYXY pixels of the slice **as every figure and the widget show it**
    (radiological orientation: the patient's right on the viewer's left, anterior at the top), on
    that slice index of the array's first axis; :func:`medsam_lite.app.tutorial.boxes_on` turns them into array pixels with
    the scan's direction."""
    out = {}
    for name, value in boxes.items():
        ok = (isinstance(value, list) and len(value) == 5 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                                  for v in value) and isinstance(value[0], int))
        if not ok or value[0] < 0 or not (value[1] < value[3] and value[2] < value[4]):
            raise InputError(f"{path}: boxes.{name} = {value!r} must be [slice, x0, y0, x1, y1] with a whole slice "
                             "index ≥ 0, x0 < x1 and y0 < y1 (XYXY, the scan's pixels), e.g. liver = [5, 41, 26, 106, 83].")
        out[str(name)] = (int(value[0]), [float(v) for v in value[1:]])
    return out


def check_modality(s) -> bool:
    """Warn when the first scan of ``s.data`` (a :class:`medsam_lite.app.tutorial.Settings`) contradicts
    ``s.modality``; return whether they agree.

    A scan whose lowest values are near −1000 (air in Hounsfield units) is a CT: with ``"MR"`` it
    would be scaled by percentiles instead of a HU window.
    """
    import warnings

    import numpy as np

    from ..io import scans as io
    from ..io.cases import find_cases

    try:
        case = find_cases(s.data, exclude=s.work)[0]
        arr = io.read_volume(case.image).array
    except (InputError, IndexError):
        return True  # preprocess will say what is wrong with the folder
    low = float(np.percentile(arr, 1)) if arr.size else 0.0
    if low < -500 and s.modality.upper() != "CT":
        warnings.warn(f"{case.image.name} has values near {low:.0f} (air in Hounsfield units): it looks like a CT, "
                      f"but modality={s.modality!r} scales it as MR. Set modality=\"CT\" in the settings cell.",
                      stacklevel=3)
        return False
    if s.modality.upper() == "CT" and float(arr.min()) >= 0:
        warnings.warn(f"modality='CT' but {case.image.name} has no negative values: CT in Hounsfield units "
                      "has air at −1000. If this is not a CT, set modality=\"MR\".", stacklevel=3)
        return False
    return True


def env_labels(text: str):
    """``$MEDSAM_LITE_LABELS``: JSON ``{"1": "liver"}`` → ``{1: "liver"}``, or ``1,2`` / ``liver,spleen``
    → ``[1, 2]`` / ``["liver", "spleen"]`` (values and names as in the settings file)."""
    text = text.strip()
    try:
        if text.startswith("{"):
            return read_labels(json.loads(text), "MEDSAM_LITE_LABELS")
        return read_labels([v.strip() for v in text.split(",") if v.strip()], "MEDSAM_LITE_LABELS")
    except (ValueError, AttributeError) as err:
        raise InputError(f"MEDSAM_LITE_LABELS={text!r} is neither JSON {{\"1\": \"liver\"}} nor a list "
                         "such as 1,2 or liver,spleen.") from err


def env_flag(name: str) -> bool:
    """An on/off environment variable: ``1/true/yes/on`` → True, unset, empty or ``0/false/no/off`` →
    False (any case); anything else is refused naming the variable."""
    text = os.environ.get(name, "").strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise InputError(f"{name}={os.environ[name]!r} is neither on (1, true, yes) nor off (0, false, no, or unset).")


def resolve_labels(labels, data, work, origin: str = "labels"):
    """The tutorials' ``labels`` with names (``["liver", 52]``) → ``{value: name}`` through the data's
    label names (:func:`medsam_lite.io.cases.resolve_label_names`); without names, as given.

    Raises:
        InputError: a name the data does not carry, prefixed with where the labels came from (``origin``).
    """
    if labels is None or isinstance(labels, dict) or not any(isinstance(v, str) for v in labels):
        return labels
    from ..io.cases import find_cases, resolve_label_names

    try:
        return resolve_label_names(labels, data, find_cases(data, exclude=work))
    except InputError as err:
        raise InputError(f"{origin}: {err}") from None


def dicom_label_names(s, label_path):
    """``names=`` for reading one case's label file in the tutorials: an RTSTRUCT / DICOM-SEG's ROI
    names → the values ``preprocess`` gave them (numbered over all cases); None for other files."""
    if isinstance(s.labels, dict):
        return s.labels
    if not str(label_path).lower().endswith(".dcm"):
        return None
    from ..io.cases import find_cases, resolve_label_names

    return resolve_label_names(None, s.data, find_cases(s.data, exclude=s.work)) or None


def data_folder(value, source) -> Path:
    """The tutorials' data folder: ``value`` (the settings' ``data`` or ``$MEDSAM_LITE_DATA``), which
    must be given (the working directory is never used by default) and exist.

    Raises:
        InputError: no data entry, or a folder that does not exist; naming the settings file.
    """
    if value in (None, ""):
        raise InputError(f"no data folder: {source} has no `data` entry (the working directory is never used by "
                         "default); add data = \"my_scans\" (relative to the file) or \"samples:ct_abdomen\".")
    data = Path(value)
    if not data.exists():
        where = f"`data` in {source}" if source else "`data=` in the settings cell"
        raise InputError(f"data folder {data} does not exist; set {where} to your folder "
                         "of scans + label maps (notebook 02 lists the layouts).")
    return data
