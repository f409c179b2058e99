"""The prepared-dataset folder: its layout, and a safe reader shared by embed/finetune/evaluate.

Layout written by :func:`medsam_lite.preprocess` (format ``medsam_lite.dataset/1``)::

    <root>/dataset.json      settings (image_size, modality, window, min_pixels, min_mm2, seed,
                             split, label names), "status" ("in progress" / "done"), per-case
                             status ("pending" / "done") and ``targets_per_label`` ({name: {kept,
                             dropped, largest_dropped_pixels}}, also per case); written first
                             (before the manifest) and again after each case
    <root>/.lock             present while a preprocess run writes (pid, host)
    <root>/manifest.csv      one row per target (see MANIFEST_COLUMNS)
    <root>/images/<case>/<slice:04d>.png            uint8 grayscale slice, normalized per volume,
                                                    longest side = image_size, aspect kept
    <root>/masks/<case>/<slice:04d>_l<label>_c<component>.png   uint8 0/255, same size as its image
    <root>/masks/<case>/<slice:04d>_l<label>_w<k>.png           a weak target (``weak`` column "box" /
                                                    "recist"; component 1000 + k): uint8, 128 inside the
                                                    box, 255 on RECIST line pixels (see Dataset.weak_mask)

Coordinates: ``x0, y0, x1, y1`` is the target's XYXY box (inclusive extreme pixels) in the
**original** slice pixels (``height × width`` before resizing); ``spacing_row`` / ``spacing_col``
are that slice's pixel size in mm along rows (y) and columns (x); ``slice_spacing`` the distance
between slices in mm. ``component`` is 0 when targets are not split into connected components.
Stored images/masks are ``Geometry((height, width), image_size, "pad").resized_hw`` in size.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError

FORMAT = "medsam_lite.dataset/1"
MANIFEST_COLUMNS = [
    "case", "slice", "label", "label_name", "component", "split", "pixels",
    "x0", "y0", "x1", "y1", "height", "width", "spacing_row", "spacing_col", "slice_spacing",
    "axis", "image", "mask",
]


_INTEGER_COLUMNS = ["slice", "label", "component", "pixels", "height", "width"]
#: Text columns: read as strings, never as missing values (a case named "NA", "nan" or "null").
TEXT_COLUMNS = ["case", "label_name", "split", "image", "mask", "weak"]


def read_manifest_csv(path) -> pd.DataFrame:
    """Read a manifest-style CSV with the text columns as strings: only an empty cell is missing,
    so case ids such as ``NA``, ``nan``, ``null`` or ``007`` come back as they were written.
    (Use the same for any CSV keyed by case, e.g. an embedding store's ``rows.csv``.)"""
    return pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False, na_values=[""])


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"))
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path} is not a readable PNG ({exc}); re-run preprocess() to rewrite it.") from None


@dataclass
class Dataset:
    """A prepared dataset folder (read-only view).

    Attributes:
        root: the folder.
        meta: the content of ``dataset.json``.
        manifest: the targets, one row per (case, slice, label, component); see ``MANIFEST_COLUMNS``.
    """

    root: Path
    meta: dict
    manifest: pd.DataFrame

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def preset(self):
        """The :class:`~medsam_lite.model.intensity.IntensityPreset` the slices were normalized with
        (``dataset.json``'s ``preset``; older datasets: resolved from their ``modality`` and ``window``)."""
        from ..model.intensity import IntensityPreset

        if isinstance(self.meta.get("preset"), dict):
            return IntensityPreset.from_dict(self.meta["preset"])
        return IntensityPreset.resolve(self.meta.get("modality", "MR"), self.meta.get("window"))

    @cached_property
    def slices(self) -> pd.DataFrame:
        """One row per stored slice image (``case``, ``slice``, ``image``, ``height``, ``width``,
        ``split``, spacings), in a stable order (by case, then slice): the embedding store's index."""
        cols = ["case", "slice", "image", "height", "width", "split", "spacing_row", "spacing_col",
                "slice_spacing"]
        return (self.manifest[cols].drop_duplicates(["case", "slice"]).sort_values(["case", "slice"])
                .reset_index(drop=True))

    def stored_boxes(self, targets: pd.DataFrame) -> np.ndarray:
        """The boxes of manifest rows ``targets`` (original slice pixels) in **stored-slice** pixels,
        ``N×4`` float32 XYXY (the stored slice is the original resized to longest side ``image_size``)."""
        from ..model.geometry import boxes_to_stored

        out = np.zeros((len(targets), 4), np.float32)
        for i, row in enumerate(targets.itertuples()):
            out[i] = boxes_to_stored([row.x0, row.y0, row.x1, row.y1], (row.height, row.width), self.image_size)[0]
        return out

    def path(self, relative: str) -> Path:
        """Resolve a manifest path, refusing any that would leave the dataset folder.

        ``..`` components, absolute paths and symbolic links are resolved first, so none of them can
        point outside ``root``.

        Raises:
            InputError: the path is not a string, or resolves outside the dataset folder.
        """
        if not isinstance(relative, str) or not relative:
            raise InputError(f"manifest path {relative!r} is not a file path (an empty cell?); the manifest "
                             "was edited or is incomplete. Re-run preprocess().")
        root = self.root.resolve()
        try:
            p = (self.root / relative).resolve()
        except (OSError, RuntimeError, ValueError):  # e.g. an embedded NUL byte or a symlink loop
            p = None
        if p is None or root not in p.parents:
            raise InputError(
                f"manifest path {relative!r} points outside the dataset folder {root}; the manifest "
                "was edited or is not from medsam_lite. Re-run preprocess()."
            )
        return p

    def file(self, relative: str) -> Path:
        """:meth:`path` of a stored file that must exist as a regular file (never opened here).

        Raises:
            InputError: the file is missing, a folder, a FIFO, a device … (a FIFO would block a
                reader forever, so nothing but a regular file is ever opened).
        """
        p = self.path(relative)
        try:
            mode = os.stat(p).st_mode
        except OSError as exc:
            what = "is missing" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc.strerror})"
            raise InputError(f"the manifest's file {relative!r} ({p}) {what}; the dataset folder was changed "
                             "after preparing it. Re-run preprocess() to rewrite it.") from None
        if not stat.S_ISREG(mode):
            raise InputError(f"the manifest's file {relative!r} ({p}) is {_kind(mode)}, not a PNG file; the "
                             "dataset folder was changed after preparing it. Re-run preprocess() to rewrite it.")
        return p

    def image(self, relative: str) -> np.ndarray:
        """A stored slice: ``h×w`` uint8 (longest side = image_size).

        Raises:
            InputError: the file is missing, not a regular file or not a readable PNG.
        """
        return _read_png(self.file(relative))

    def mask(self, relative: str) -> np.ndarray:
        """A stored target mask: ``h×w`` bool.

        Raises:
            InputError: the file is missing, not a regular file or not a readable PNG.
        """
        return _read_png(self.file(relative)) > 0

    def weak_mask(self, relative: str) -> np.ndarray:
        """A stored weak target (``weak`` = ``"box"`` / ``"recist"`` in the manifest): ``h×w`` uint8,
        0 outside the box, 128 inside it, 255 on RECIST line pixels (stored-slice pixels).

        Raises:
            InputError: the file is missing, not a regular file or not a readable PNG.
        """
        return _read_png(self.file(relative))

    def split(self, name: str) -> pd.DataFrame:
        """The manifest rows of one split (``"train"`` or ``"test"``)."""
        return self.manifest[self.manifest["split"] == name].reset_index(drop=True)


def open_dataset(root: str | Path | Dataset) -> Dataset:
    """Open a folder written by :func:`medsam_lite.preprocess`.

    Raises:
        InputError: the folder, ``dataset.json`` or ``manifest.csv`` is missing or not this format.
    """
    if isinstance(root, Dataset):
        return root
    root = Path(root)
    meta_path, manifest_path = root / "dataset.json", root / "manifest.csv"
    if not meta_path.is_file() or not manifest_path.is_file():
        raise InputError(
            f"{root} is not a prepared dataset (dataset.json and manifest.csv expected); "
            "create one with medsam_lite.preprocess(...)."
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{meta_path} is not valid JSON ({exc}); re-run preprocess().") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise InputError(f"{root} has format {found!r}, expected {FORMAT!r}; re-run preprocess().")
    size = meta.get("image_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InputError(f"{meta_path} has no valid image_size ({meta.get('image_size')!r}); re-run preprocess().")
    try:
        manifest = read_manifest_csv(manifest_path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{manifest_path} is not a readable CSV ({str(exc)[:160]}); re-run preprocess().") from None
    missing = set(MANIFEST_COLUMNS) - set(manifest.columns)
    if missing:
        raise InputError(f"{manifest_path} lacks columns {sorted(missing)}; re-run preprocess().")
    if "weak" in manifest.columns:  # written only when box / RECIST targets exist; "" = a mask target
        manifest["weak"] = manifest["weak"].fillna("").astype(str)
    if manifest.empty:  # written so before the first case is done
        return Dataset(root, meta, manifest)
    numbers = manifest[_INTEGER_COLUMNS + ["x0", "y0", "x1", "y1"]]
    bad = [c for c in numbers.columns if not pd.api.types.is_numeric_dtype(numbers[c])
           or not np.isfinite(numbers[c].to_numpy(float)).all()]
    bad += [c for c in _INTEGER_COLUMNS if c not in bad and not (numbers[c] == np.round(numbers[c])).all()]
    if not bad:
        b = manifest
        if not ((b.x0 >= 0) & (b.x0 <= b.x1) & (b.x1 < b.width) & (b.y0 >= 0) & (b.y0 <= b.y1)
                & (b.y1 < b.height)).all():
            bad = ["x0/y0/x1/y1 (boxes outside their slice or inverted)"]
    if bad or manifest[["case", "image", "mask"]].isna().any().any():
        raise InputError(f"{manifest_path} holds missing or invalid values in {bad or ['case/image/mask']}; "
                         "the manifest was edited or damaged. Re-run preprocess().")
    return Dataset(root, meta, manifest)


def check_dataset(dataset) -> Dataset:
    """Open ``dataset`` (a folder path or a :class:`Dataset`), refusing anything else."""
    if not isinstance(dataset, (str, os.PathLike, Dataset)):
        raise InputError(f"dataset must be the folder written by medsam_lite.preprocess (a path) or an opened "
                         f"Dataset, got {type(dataset).__name__}.")
    return open_dataset(dataset)
