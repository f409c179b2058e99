"""The prepared-dataset folder: its layout, and a safe reader shared by embed/finetune/evaluate.

Layout written by :func:`medsam_lite.preprocess` (format ``medsam_lite.dataset/1``)::

    <root>/dataset.json      settings (image_size, modality, window, min_pixels, seed, split,
                             label names) and per-case status ("done"), written last per case
    <root>/manifest.csv      one row per target (see MANIFEST_COLUMNS)
    <root>/images/<case>/<slice:04d>.png            uint8 grayscale slice, normalized per volume,
                                                    longest side = image_size, aspect kept
    <root>/masks/<case>/<slice:04d>_l<label>_c<component>.png   uint8 0/255, same size as its image

Coordinates: ``x0, y0, x1, y1`` is the target's XYXY box (inclusive extreme pixels) in the
**original** slice pixels (``height × width`` before resizing); ``spacing_row`` / ``spacing_col``
are that slice's pixel size in mm along rows (y) and columns (x); ``slice_spacing`` the distance
between slices in mm. ``component`` is 0 when targets are not split into connected components.
Stored images/masks are ``Geometry((height, width), image_size, "pad").resized_hw`` in size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError

FORMAT = "medsam_lite.dataset/1"
MANIFEST_COLUMNS = [
    "case", "slice", "label", "label_name", "component", "split", "pixels",
    "x0", "y0", "x1", "y1", "height", "width", "spacing_row", "spacing_col", "slice_spacing",
    "axis", "image", "mask",
]


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"))
    except (OSError, UnidentifiedImageError) as exc:
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

    @cached_property
    def slices(self) -> pd.DataFrame:
        """One row per stored slice image (``case``, ``slice``, ``image``, ``height``, ``width``,
        ``split``, spacings), in a stable order (by case, then slice): the embedding store's index."""
        cols = ["case", "slice", "image", "height", "width", "split", "spacing_row", "spacing_col",
                "slice_spacing"]
        return (self.manifest[cols].drop_duplicates(["case", "slice"]).sort_values(["case", "slice"])
                .reset_index(drop=True))

    def path(self, relative: str) -> Path:
        """Resolve a manifest path, refusing any that would leave the dataset folder."""
        p = (self.root / str(relative)).resolve()
        root = self.root.resolve()
        if root not in p.parents:
            raise InputError(
                f"manifest path {relative!r} points outside the dataset folder {root}; the manifest "
                "was edited or is not from medsam_lite. Re-run preprocess()."
            )
        return p

    def image(self, relative: str) -> np.ndarray:
        """A stored slice: ``h×w`` uint8 (longest side = image_size)."""
        return _read_png(self.path(relative))

    def mask(self, relative: str) -> np.ndarray:
        """A stored target mask: ``h×w`` bool."""
        return _read_png(self.path(relative)) > 0

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
    except json.JSONDecodeError as exc:
        raise InputError(f"{meta_path} is not valid JSON ({exc}); re-run preprocess().") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{root} has format {meta.get('format')!r}, expected {FORMAT!r}; re-run preprocess().")
    manifest = pd.read_csv(manifest_path, dtype={"case": str})
    missing = set(MANIFEST_COLUMNS) - set(manifest.columns)
    if missing:
        raise InputError(f"{manifest_path} lacks columns {sorted(missing)}; re-run preprocess().")
    return Dataset(root, meta, manifest)
