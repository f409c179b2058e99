"""Do a test case and a training case come from one scan? "Held out" means another patient or domain.

A slab of a training scan is not a held-out case: a model (or a recipe) that saw the other slabs has
seen the patient. :func:`shared_sources` says, where the files show it, which test case shares its
source with which training case:

* **the same file** (the same resolved path, or the same bytes: SHA-256);
* **the same DICOM series** (a folder's ``SeriesInstanceUID``);
* **slabs of one grid**: 3D image files (NIfTI, NRRD, MHA …) whose headers give the same in-plane
  size, spacing, direction and in-plane origin, and slice origins a whole number of slices apart
  (blocks cut from one scan, as ``data_samples/ct_abdomen``'s three cases; two patients' scans do
  not share an origin to a twentieth of a voxel).

It cannot see two series of one patient (another acquisition of the same person) — check the
patient IDs yourself where you have them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

__all__ = ["shared_sources", "split_note"]


def shared_sources(train: dict, test: dict) -> list[str]:
    """One note per (test case, training case) pair that share a source scan.

    Args:
        train, test: ``{case name: image path}`` (a file, or a DICOM series folder).

    Returns:
        Notes like ``"test case 'case-03' and training case 'case-02' are slabs of one scan (…)"``;
        empty when nothing is shared (as far as the files show).
    """
    info = {("train", k): _describe(Path(v)) for k, v in train.items()}
    info.update({("test", k): _describe(Path(v)) for k, v in test.items()})
    notes = []
    for t in test:
        a = info[("test", t)]
        for r in train:
            why = _shared(a, info[("train", r)])
            if why:
                notes.append(f"test case {t!r} and training case {r!r} {why}: the test case is not held out "
                             "(another patient or domain is); its numbers measure memory of the scan.")
    return notes


def split_note(train: dict, test: dict) -> str | None:
    """One warning text for a split whose test cases share a source scan with training cases, naming
    the cases and the fix; ``None`` when nothing is shared (as far as the files show).

    Args:
        train, test: ``{case name: image path}`` as for :func:`shared_sources`.
    """
    notes = shared_sources(train, test)
    if not notes:
        return None
    pairs = {}
    for t in test:
        pairs[t] = [r for r in train if any(n.startswith(f"test case {t!r} and training case {r!r} ") for n in notes)]
    pairs = {t: r for t, r in pairs.items() if r}
    named = "; ".join(f"{t} with {', '.join(r)}" for t, r in pairs.items())
    return (f"test case(s) {sorted(pairs)} share a source scan with training case(s) ({named}): "
            f"{notes[0].split(': the test case')[0]}"
            f"{f' (and {len(notes) - 1} more pair(s))' if len(notes) > 1 else ''}. Scores on them — evaluate(), "
            "the NoC report before/after finetune(clicks=K) — measure memory of that scan, not held-out accuracy. "
            "Split by patient: name as test_cases only cases of patients or scans that no training case comes from "
            "(preprocess(test_cases=[…]); the CLI's --test-cases; the tutorial settings' test_cases = […]), "
            "e.g. put each patient's slabs or series all in one split.")


def _describe(path: Path) -> dict:
    out = {"path": str(path.resolve())}
    if path.is_dir():
        out["series"] = _series_uid(path)
        return out
    if path.is_file():
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        out["sha256"] = digest.hexdigest()
        out["grid"] = _grid(path)
    return out


def _series_uid(folder: Path):
    try:
        import pydicom
    except ImportError:  # pragma: no cover - pydicom is a dependency
        return None
    for f in sorted(folder.iterdir())[:50]:
        if f.is_file():
            try:
                uid = str(pydicom.dcmread(f, stop_before_pixels=True).get("SeriesInstanceUID", "") or "")
            except Exception:  # not a DICOM file: try the next one
                continue
            if uid:
                return uid
    return None


def _grid(path: Path):
    """``(size, spacing, direction, origin)`` from an image header, or ``None``."""
    try:
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        if reader.GetDimension() != 3:
            return None
        return (tuple(reader.GetSize()), np.array(reader.GetSpacing()), np.array(reader.GetDirection()).reshape(3, 3),
                np.array(reader.GetOrigin()))
    except Exception:  # an unreadable header: nothing can be seen
        return None


def _shared(a: dict, b: dict) -> str | None:
    if a["path"] == b["path"] or (a.get("sha256") and a.get("sha256") == b.get("sha256")):
        return "are the same file"
    if a.get("series") and a.get("series") == b.get("series"):
        return f"are the same DICOM series ({a['series']})"
    ga, gb = a.get("grid"), b.get("grid")
    if ga is None or gb is None:
        return None
    (sa, spa, da, oa), (sb, spb, db, ob) = ga, gb
    if sa[:2] != sb[:2] or not np.allclose(spa, spb, atol=1e-4) or not np.allclose(da, db, atol=1e-4):
        return None
    # positions in the (shared) voxel frame: in-plane origins must agree, slice ranges touch or overlap
    offset = np.linalg.solve(da * spa, ob - oa)  # b's first voxel in a's voxel indices
    if not np.allclose(offset[:2], 0, atol=0.05) or abs(offset[2] - round(offset[2])) > 0.05:
        return None
    return (f"are slabs of one scan (the same in-plane grid: size, spacing, direction and origin; slices "
            f"{abs(int(round(offset[2])))} apart)")
