"""DICOM series: list the series of a folder, read one with its real geometry, refuse gaps.

SimpleITK (GDCM) sorts a series' files by their position along the slice normal, takes the
slice spacing from those positions and applies RescaleSlope/RescaleIntercept (CT → HU, as
``int32``/``float``). What it does not do is notice a missing or unreadable file: it reads the
remaining slices and stretches the spacing to cover the gap (one file missing out of 16 at 4 mm
gave 15 slices at 4.29 mm). :func:`read_series` checks the positions (and InstanceNumbers) first
and refuses a series with a hole, naming it.
"""

from __future__ import annotations

import os
import stat
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

#: A slice step larger than this multiple of the series' usual step is a missing slice.
GAP_FACTOR = 1.5


@contextmanager
def quiet_pydicom():
    """Silence ITK's own warnings (printed to stderr): this module reports problems itself."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def _check_entries(folder: Path) -> None:
    """Refuse a folder holding a FIFO, socket or device: GDCM opens every entry and would block."""
    for entry in os.scandir(folder):
        try:
            mode = os.stat(entry.path).st_mode
        except OSError:
            continue  # a dangling symlink: GDCM skips it too
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise InputError(f"{folder} holds {entry.name!r}, which is not a regular file (a pipe, socket or "
                             "device): reading the folder as a DICOM series would block on it. Move it out.")


def _header(path: str) -> dict[str, str]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.LoadPrivateTagsOff()
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return {}
    return {k: reader.GetMetaData(k).strip() for k in ("0020|0032", "0020|0037", "0020|0013", "0008|103e", "0008|0060")
            if reader.HasMetaDataKey(k)}


def list_series(folder: str | os.PathLike) -> list[dict]:
    """The DICOM image series in ``folder`` (not its sub-folders; an RTSTRUCT or SEG there is a label, not a series).

    Returns:
        One dict per series: ``uid`` (SeriesInstanceUID), ``description`` (SeriesDescription, may
        be ``""``), ``files`` (number of files), ``first`` (path of one of its files).
    """
    folder = Path(folder)
    _check_entries(folder)
    with quiet_pydicom():
        uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
        out = []
        for uid in uids:
            files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
            head = _header(files[0]) if files else {}
            if head.get("0008|0060", "").upper() in ("SEG", "RTSTRUCT"):
                continue  # labels of the series (io.dicomlabels), not images
            out.append(dict(uid=uid, description=head.get("0008|103e", ""),
                            files=len(files), first=files[0] if files else None))
    return out


def pick_series(folder: Path, series: str | None) -> str:
    found = list_series(folder)
    if not found:
        raise InputError(f"{folder} is a folder without a DICOM series; pass a file or a DICOM folder.")
    uids = [s["uid"] for s in found]
    if series is not None:
        if series not in uids:
            raise InputError(f"{folder} has no series {series!r}; it holds {_describe(found)}.")
        return series
    if len(found) > 1:
        raise InputError(
            f"{folder} holds {len(found)} DICOM series: {_describe(found)}. Pick one with "
            f"medsam_lite.io.read_volume(folder, series='{found[0]['uid']}'), or move each series into "
            "its own folder (one series per folder for preprocess and the CLI).")
    return uids[0]


def _describe(found: list[dict]) -> str:
    return "; ".join(f"{s['uid']} ({s['description'] or 'no description'!r}, {s['files']} files)" for s in found)


def _floats(text: str, n: int) -> np.ndarray | None:
    try:
        values = np.array([float(v) for v in text.split("\\")], float)
    except ValueError:
        return None
    return values if values.size == n and np.isfinite(values).all() else None


def check_series_gaps(folder: Path, files: list[str]) -> None:
    """Refuse a series whose slice positions have a hole (a missing or unreadable file) or repeat.

    Positions are ImagePositionPatient projected on the slice normal (from ImageOrientationPatient).
    A step larger than :data:`GAP_FACTOR` × the median step is a gap. InstanceNumbers that skip
    while the positions are regular are only warned about (scanners may number so).

    Raises:
        InputError: naming the files on either side of each gap, the expected number of missing
            slices, and any file of the folder that could not be read (the likely missing slice).
    """
    if len(files) < 3:
        return
    heads = [_header(f) for f in files]
    orient = _floats(heads[0].get("0020|0037", ""), 6)
    pos = [_floats(h.get("0020|0032", ""), 3) for h in heads]
    if orient is None or any(p is None for p in pos):
        return  # no geometry to check (e.g. secondary captures): GDCM sorted by what it had
    normal = np.cross(orient[:3], orient[3:])
    order = np.argsort([float(p @ normal) for p in pos], kind="stable")
    s = np.array([float(pos[i] @ normal) for i in order])
    steps = np.diff(s)
    usual = float(np.median(steps))
    names = [Path(files[i]).name for i in order]
    inst = [heads[i].get("0020|0013", "?") for i in order]
    where = lambda k: f"{names[k]} (position {s[k]:.2f} mm, InstanceNumber {inst[k]})"  # noqa: E731
    repeats = [k for k, d in enumerate(steps) if d < 1e-3 * max(usual, 1e-6)]
    if usual <= 0 or repeats:
        k = repeats[0] if repeats else 0
        raise InputError(f"DICOM series in {folder} has two files at the same slice position: {where(k)} and "
                         f"{where(k + 1)}. Is it several acquisitions (phases, echoes) in one series? Move them "
                         "into separate folders.")
    gaps = [k for k, d in enumerate(steps) if d > GAP_FACTOR * usual]
    if gaps:
        described = "; ".join(f"between {where(k)} and {where(k + 1)}: {steps[k]:.2f} mm, about "
                              f"{round(steps[k] / usual) - 1} slice(s) missing" for k in gaps[:3])
        series_files = {os.path.realpath(f) for f in files}
        others = sorted(e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")
                        and os.path.realpath(e.path) not in series_files)
        hint = f" Files of the folder that are not part of the series (unreadable?): {others[:5]}." if others else ""
        raise InputError(
            f"DICOM series in {folder} ({len(files)} files) is missing slices — its slices step {usual:.2f} mm "
            f"but there is a gap {described}.{hint} Reading it would stretch the slice spacing. Copy the "
            "series again from its source (PACS export, download) so that every slice is present.")
    numbers = []
    for n in inst:
        try:
            numbers.append(int(float(n)))
        except ValueError:
            return
    jumps = np.abs(np.diff(numbers))
    if len(numbers) >= 3 and np.median(jumps) == 1 and (jumps > 1).any():
        k = int(np.flatnonzero(jumps > 1)[0])
        warnings.warn(f"DICOM series in {folder}: InstanceNumber jumps from {numbers[k]} to {numbers[k + 1]} "
                      f"between {names[k]} and {names[k + 1]}, although the slice positions are regular; "
                      "check that no slice is missing.", stacklevel=3)


def read_series(folder: str | os.PathLike, series: str | None = None) -> sitk.Image:
    """Read one DICOM series from ``folder`` with its geometry, after checking it for gaps.

    Args:
        folder: a folder holding the series' files.
        series: the SeriesInstanceUID to read when the folder holds several (see :func:`list_series`).

    Returns:
        A 3D SimpleITK image (values with RescaleSlope/Intercept applied: HU for CT), slices sorted
        along the normal, spacing from the positions, origin and direction from the headers.

    Raises:
        InputError: no series, several series and no ``series`` (the message lists them), a gap
            in the slice positions (a missing or corrupt file), or a file GDCM cannot decode.
    """
    folder = Path(folder)
    uid = pick_series(folder, series)
    with quiet_pydicom():
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
        check_series_gaps(folder, files)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        return reader.Execute()
