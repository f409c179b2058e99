"""What a dataset folder already holds, for :func:`medsam_lite.preprocess` to resume or refuse.

* :func:`resume_state`: an earlier run's ``dataset.json`` and manifest, checked against this call's
  settings and cases (a dataset never mixes settings), and the cases still pending;
* :func:`labels_to_extract`: the labels to extract and their names;
* :func:`_is_ours`: the lock and temporary files medsam_lite itself leaves in a folder.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..fileutil import TMP_PREFIX
from ..io.cases import Case, labels_from_files
from .dataset import FORMAT, MANIFEST_COLUMNS, open_dataset
from .prepcheck import assign_split


def _is_ours(entry: Path) -> bool:
    """A lock or temporary file medsam_lite leaves behind when killed (not the user's data)."""
    return entry.name in (".lock", ".lock.owner") or entry.name.startswith(TMP_PREFIX)


def _read_meta(out: Path) -> dict:
    """``dataset.json`` of a dataset folder, also while its manifest is not yet written."""
    if (out / "manifest.csv").is_file():
        return open_dataset(out).meta
    try:
        meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"out_dir {out} exists and is not a medsam_lite dataset; pass a new or empty folder.")
    return meta


def _existing(out: Path, settings: dict, names: list[str]) -> dict | None:
    """The dataset.json of an earlier run into ``out`` (None if ``out`` is new or empty)."""
    if out.is_file():
        raise InputError(f"out_dir {out} is a file; pass a folder.")
    if not out.is_dir() or all(_is_ours(p) for p in out.iterdir()):
        return None
    if not (out / "dataset.json").is_file():
        raise InputError(f"out_dir {out} exists and is not a medsam_lite dataset; pass a new or empty folder.")
    meta = _read_meta(out)
    old = dict(meta.get("settings", {}))
    old.setdefault("min_mm2", None)  # datasets written before min_mm2 existed
    changed = [f"{k}: {old.get(k)!r} → {settings[k]!r}" for k in settings if old.get(k) != settings[k]]
    if changed:
        raise InputError(f"{out} was prepared with other settings ({'; '.join(changed)}); a dataset never "
                         "mixes settings. Use another out_dir, delete this one, or re-run with the old settings.")
    if sorted(meta.get("cases", {})) != sorted(names):
        extra = sorted(set(names) - set(meta.get("cases", {})))
        gone = sorted(set(meta.get("cases", {})) - set(names))
        raise InputError(f"{out} was prepared from other cases (new: {extra[:5]}, missing: {gone[:5]}); "
                         "prepare into a new out_dir so the split stays fixed.")
    return meta


def _is_done(out: Path, meta: dict, manifest: pd.DataFrame, name: str) -> bool:
    if meta["cases"].get(name, {}).get("status") != "done":
        return False
    rows = manifest[manifest["case"] == name]
    return len(rows) == meta["cases"][name].get("targets", -1) and all(
        (out / p).is_file() for p in pd.concat([rows["image"], rows["mask"]]).unique())


def manifest_frame(rows: list[dict]) -> pd.DataFrame:
    weak = any(r.get("weak") for r in rows)  # box / RECIST targets: the "weak" column (else not written)
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS + (["weak"] if weak else []))
    if weak:
        df["weak"] = df["weak"].fillna("")
    return df.sort_values(["case", "slice", "label", "component"], kind="stable").reset_index(drop=True)


def labels_to_extract(requested, found: set[int], source, cases: list[Case], meta: dict | None) -> dict[int, str]:
    """``{value: name}`` of the labels to extract, in value order."""
    if isinstance(requested, dict):
        names = {int(k): v for k, v in requested.items()}
    else:
        folder = Path(source) if isinstance(source, (str, os.PathLike)) else next(
            (c.label.parent for c in cases if c.label is not None), cases[0].image.parent)
        from_files = labels_from_files([folder, folder.parent])
        names = {int(v): from_files.get(int(v), f"label_{int(v)}")
                 for v in (requested if requested is not None else sorted(found))}
    if not found & set(names):
        raise InputError(f"none of the labels {sorted(names)} occur in the label maps (found "
                         f"{sorted(found)}); check labels= or the label files.")
    missing = sorted(set(names) - found - {int(k) for k in (meta or {}).get("labels", {})})
    if missing:
        warnings.warn(f"labels {missing} occur in none of the label maps.", stacklevel=3)
    if meta is not None:
        names.update({int(k): v for k, v in meta["labels"].items()})
    return {k: names[k] for k in sorted(names) if k in found or (meta and str(k) in meta["labels"])}


def resume_state(out: Path, settings: dict, cases: list[Case]):
    """``(meta or None, manifest, pending cases, split)`` of ``out`` for these settings and cases."""
    names = [c.name for c in cases]
    meta = _existing(out, settings, names)
    split = assign_split(names, settings)
    if meta is not None and meta.get("split") != split:
        raise InputError(f"{out} holds another split than these settings give; use a new out_dir.")
    if meta is not None and (out / "manifest.csv").is_file():
        manifest = open_dataset(out).manifest
    else:
        manifest = pd.DataFrame(columns=MANIFEST_COLUMNS)
    todo = [c for c in cases if meta is None or not _is_done(out, meta, manifest, c.name)]
    return meta, manifest, todo, split
