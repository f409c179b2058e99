"""Writing masks and label maps: ONE place decides the encoding from the output format.

* Checked first (:func:`check_label_output`, before a scan is read or a model runs): the suffix is
  one SimpleITK writes (any letter case: ``.PNG``, ``.Jpeg`` …); a 2D-image format
  (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``) is not asked to hold a volume; a **label map** is never
  written to JPEG, whose lossy compression changes label values (the package refuses to read
  JPEG labels for that reason too).
* Binary masks: in image formats (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.tif``, ``.tiff``) as
  0/255 (visible, and read back as label 1 by :func:`~medsam_lite.io.read_label`; a JPEG mask
  with ``allow_lossy=True``); in volume formats (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``) as
  0/1 with the source scan's geometry.
* Label maps: their values as they are (``uint8``, or ``uint16`` above 255: PNG and TIFF hold it,
  BMP does not).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .scans import LOSSY_SUFFIXES, WRITE_SUFFIXES, Volume, file_suffix, write_volume

#: Formats a mask is written to as 0/255 (image formats); every other format gets 0/1.
IMAGE_FORMATS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Formats that hold one 2D image only.
FLAT_FORMATS = (".png", ".jpg", ".jpeg", ".bmp")


def check_label_output(path: str | os.PathLike, *, label_map: bool, ndim: int | None = None) -> str:
    """Check an output path for a mask (``label_map=False``) or a label map; returns its format.

    Args:
        path: the output file.
        label_map: True for a label map (values 0…N), False for a binary mask.
        ndim: 2 or 3 when known (a 3D result cannot go to a 2D-image format); None skips that check.

    Returns:
        The lower-case suffix (``".nii.gz"``, ``".png"`` …).

    Raises:
        InputError: an unknown suffix, a label map to JPEG, a volume to a 2D-image format.
    """
    path = Path(path)
    suffix = file_suffix(path)
    if suffix not in WRITE_SUFFIXES:
        raise InputError(f"cannot write {path.name!r}: the suffix must be one of {', '.join(WRITE_SUFFIXES)} "
                         "(any letter case).")
    if label_map and suffix in LOSSY_SUFFIXES:
        raise InputError(f"cannot write a label map as {path.name!r}: JPEG is lossy and changes label values "
                         f"(a few % of pixels would carry another label). Use {path.name[:-len(suffix)]}.png "
                         "(lossless) or .nii.gz.")
    if ndim == 3 and suffix in FLAT_FORMATS:
        raise InputError(f"the result is a volume, but {suffix} holds one 2D image; write it as "
                         f"{path.name[:-len(suffix)]}.nii.gz (or .nrrd, .mha).")
    return suffix


def write_mask(mask, path: str | os.PathLike, like: Volume | None = None) -> Path:
    """Write a binary mask: 0/255 ``uint8`` in image formats, 0/1 ``uint8`` in volume formats.

    Args:
        mask: ``(y, x)`` or ``(z, y, x)`` bool (or 0/1) array.
        path: output file (format from its suffix, any case; see the module docstring).
        like: the source scan whose geometry a volume format keeps (ignored for 2D-image formats).
    """
    mask = np.asarray(mask)
    suffix = check_label_output(path, label_map=False, ndim=mask.ndim)
    values = mask.astype(bool).astype(np.uint8)
    if suffix in IMAGE_FORMATS:
        return write_volume(values * 255, path, like=None if suffix in FLAT_FORMATS else like)
    return write_volume(values, path, like=like)


def write_label_map(labels, path: str | os.PathLike, like: Volume | None = None) -> Path:
    """Write a label map (integers, 0 = background) losslessly; JPEG is refused.

    Args:
        labels: ``(y, x)`` or ``(z, y, x)`` integer array with values 0…65535.
        path: output file (format from its suffix, any case).
        like: the source scan whose geometry a volume format keeps.
    """
    labels = np.asarray(labels)
    suffix = check_label_output(path, label_map=True, ndim=labels.ndim)
    if labels.dtype.kind not in "biu" or (labels.size and (labels.min() < 0 or labels.max() > 65535)):
        raise InputError(f"a label map holds whole numbers 0…65535, got {labels.dtype} with values "
                         f"{np.unique(labels)[:5]}….")
    top = int(labels.max()) if labels.size else 0
    if top > 255 and suffix == ".bmp":
        raise InputError(f"label {top} does not fit in {suffix} (8 bits); write .png or .nii.gz.")
    values = labels.astype(np.uint8 if top <= 255 else np.uint16)
    return write_volume(values, path, like=None if suffix in FLAT_FORMATS else like)
