"""Reading and writing scans and masks with their geometry (SimpleITK).

Arrays are indexed ``(z, y, x)`` for volumes and ``(y, x)`` for 2D images, as SimpleITK's
``GetArrayFromImage`` gives them; spacing, origin and direction keep SimpleITK's ``(x, y, z)``
order. This module is the only place that converts between the two.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputError

#: File endings SimpleITK reads as volumes or images here.
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: File endings :func:`write_volume` writes (single-file formats: written under a temporary name, renamed).
WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass
class Volume:
    """A scan or label map with its geometry.

    Attributes:
        array: ``(z, y, x)`` for 3D or ``(y, x)`` / ``(y, x, c)`` for 2D images.
        spacing: voxel size in mm, SimpleITK order ``(x, y[, z])``.
        origin: physical position of the first voxel, ``(x, y[, z])``.
        direction: flattened direction cosine matrix (row-major, as SimpleITK gives it).
        path: where it was read from, if anywhere.
    """

    array: np.ndarray
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0)
    origin: tuple[float, ...] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = field(default=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    path: str | None = None

    @property
    def spacing_zyx(self) -> tuple[float, ...]:
        """Spacing in array order: ``(z, y, x)`` (or ``(y, x)`` in 2D)."""
        return tuple(reversed(self.spacing))

    def same_geometry(self, other: "Volume", tol: float = 1e-4) -> bool:
        """True if shape, spacing, origin and direction agree (within ``tol``)."""
        a, b = self.array.shape[: len(self.spacing)][::-1], other.array.shape[: len(other.spacing)][::-1]
        return (
            a == b
            and np.allclose(self.spacing, other.spacing, atol=tol)
            and np.allclose(self.origin, other.origin, atol=max(tol, 1e-3))
            and np.allclose(self.direction, other.direction, atol=tol)
        )

    def to_sitk(self) -> sitk.Image:
        is_vector = self.array.ndim == len(self.spacing) + 1
        image = sitk.GetImageFromArray(self.array, isVector=is_vector)
        image.SetSpacing([float(s) for s in self.spacing])
        image.SetOrigin([float(o) for o in self.origin])
        image.SetDirection([float(d) for d in self.direction])
        return image


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a NIfTI / NRRD / MHA / DICOM file, a DICOM series folder, or a 2D image file.

    Args:
        path: a file, or a folder holding one DICOM series (the first series found is read).

    Returns:
        :class:`Volume` with ``array`` in ``(z, y, x)`` order (``(y, x)`` or ``(y, x, c)`` for 2D).

    Raises:
        InputError: the path is missing, is an empty folder, or cannot be read as an image, or a
            NIfTI file holds less data than its header announces (truncated download or copy).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path (relative paths start at {Path.cwd()}).")
    if path.is_file() and _suffix(path) in (".nii", ".nii.gz"):
        _check_nifti_complete(path)
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise InputError(f"{path} is a folder without a DICOM series; pass a file or a DICOM folder.")
            files = reader.GetGDCMSeriesFileNames(str(path), series[0])
            reader.SetFileNames(files)
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(
            f"{path} could not be read as an image ({_sitk_reason(exc)}); "
            f"is it corrupt or truncated? Supported: {', '.join(VOLUME_SUFFIXES + IMAGE_SUFFIXES)} "
            "and DICOM series folders."
        ) from None
    array = sitk.GetArrayFromImage(image)
    if image.GetDimension() == 3 and array.shape[0] == 1 and _suffix(path) in IMAGE_SUFFIXES + (".dcm",):
        array = array[0]  # a single 2D slice read as a 1-slice volume
        return Volume(array, image.GetSpacing()[:2], image.GetOrigin()[:2],
                      _direction_2d(image.GetDirection()), str(path))
    return Volume(array, tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                  tuple(image.GetDirection()), str(path))


def _sitk_reason(exc: Exception) -> str:
    """The informative part of a SimpleITK exception (without source locations and object ids)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines()[1:] if ln.strip()]
    lines = [re.sub(r"^(ITK ERROR: \w+\(0x[0-9a-f]+\): |sitk::ERROR: )", "", ln) for ln in lines
             if not ln.startswith("Reason: No such file")]  # ITK's errno is stale: the file exists
    return " ".join(lines)[-200:] or str(exc).strip()[:200]


def _nifti_expected_bytes(header: bytes) -> int | None:
    """Bytes a single-file NIfTI-1/-2 must hold (header + data), from its header; None if unknown."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = struct.unpack(endian + "f", header[108:112])[0]
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            dims = struct.unpack(endian + "8q", header[16:80])
            offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        return None
    ndim = int(dims[0])
    if not (1 <= ndim <= 7 and bitpix > 0 and math.isfinite(offset) and offset >= 0
            and all(d >= 1 for d in dims[1:ndim + 1])):
        return None
    return int(offset) + -(-math.prod(int(d) for d in dims[1:ndim + 1]) * int(bitpix) // 8)


def _check_nifti_complete(path: Path) -> None:
    """Refuse a NIfTI file (``.nii`` or gzip'ed ``.nii.gz``) that is shorter than its header says.

    SimpleITK reads a truncated NIfTI without complaint and fills the missing voxels with zeros.
    For gzip the trailer's size field is compared first (no decompression); only if it disagrees
    (a truncated file, or a legal multi-member gzip) is the stream decompressed to count its bytes.
    """
    fix = "download or copy it again and compare its size/checksum with the source"
    with open(path, "rb") as handle:
        magic = handle.read(2)
    try:
        if magic != b"\x1f\x8b":  # an uncompressed NIfTI (whatever its name)
            with open(path, "rb") as handle:
                expected = _nifti_expected_bytes(handle.read(540))
            actual = path.stat().st_size
        else:
            with gzip.open(path, "rb") as handle:
                expected = _nifti_expected_bytes(handle.read(540))
            if expected is None:
                return  # not a NIfTI header: SimpleITK says what it is
            with open(path, "rb") as handle:
                handle.seek(-4, os.SEEK_END)
                if struct.unpack("<I", handle.read(4))[0] == expected % (1 << 32):
                    return
            actual = 0
            with gzip.open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 22), b""):
                    actual += len(chunk)
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise InputError(f"{path} could not be read: it is truncated or corrupt ({type(exc).__name__}: "
                         f"{str(exc)[:120]}); {fix}.") from None
    if expected is not None and actual < expected:
        raise InputError(f"{path} could not be read: it is truncated, holding {actual:,} bytes of NIfTI data "
                         f"where its header announces {expected:,}; {fix}.")


def _direction_2d(direction3d) -> tuple[float, ...]:
    d = np.asarray(direction3d, dtype=float).reshape(3, 3)
    return tuple(d[:2, :2].ravel())


def write_volume(array: np.ndarray, path: str | os.PathLike, like: Volume | None = None) -> Path:
    """Write ``array`` with the geometry of ``like`` (spacing, origin, direction), atomically.

    The file is written under a temporary name in the same folder and renamed, so an interrupted
    write never leaves a half file under ``path``.

    Args:
        array: ``(z, y, x)`` or ``(y, x)``; bool is stored as ``uint8``.
        path: output file; the format follows the suffix (``.nii.gz``, ``.nrrd``, ``.mha``, ``.png``).
        like: the source scan whose geometry to copy (its array shape must match).

    Raises:
        InputError: an empty, non-numeric, 1-D or 4-D array, a suffix SimpleITK cannot write here, a
            2D-image format (``.png``, ``.jpg``, ``.bmp``) for a volume or for non-``uint8`` data, or
            an array whose shape differs from ``like``'s. Nothing is written then.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    suffix = _suffix(path)
    if suffix not in WRITE_SUFFIXES:
        raise InputError(f"cannot write {path.name!r}: the suffix must be one of {', '.join(WRITE_SUFFIXES)}.")
    if array.dtype.kind not in "uif":
        raise InputError(f"cannot write an array of dtype {array.dtype}; write real numbers, e.g. "
                         "mask.astype(np.uint8) or image.astype(np.float32).")
    if array.size == 0 or array.ndim not in (2, 3):
        raise InputError(f"cannot write an array of shape {array.shape}: a volume is (z, y, x) and an image "
                         "(y, x), with no empty axis.")
    if suffix in (".png", ".jpg", ".jpeg", ".bmp") and (array.ndim != 2 or array.dtype != np.uint8):
        if not (suffix == ".png" and array.ndim == 2 and array.dtype == np.uint16):
            raise InputError(f"{suffix} holds one 2D uint8 image, got {array.dtype} {array.shape}; write a volume "
                             "as .nii.gz, and a mask as (mask > 0).astype(np.uint8) * 255.")
    if like is not None and not isinstance(like, Volume):
        raise InputError(f"like must be a medsam_lite.io.Volume (from read_volume), got {type(like).__name__}.")
    if like is not None:
        if array.shape[: like.array.ndim] != like.array.shape[: array.ndim] or array.ndim != len(like.spacing):
            if not (array.ndim == 2 and like.array.ndim == 3 and like.array.shape[:2] == array.shape):
                raise InputError(
                    f"array of shape {array.shape} does not match the reference scan {like.array.shape}; "
                    "a mask must have the scan's shape to share its geometry."
                )
        vol = Volume(array, like.spacing[: array.ndim], like.origin[: array.ndim],
                     like.direction if array.ndim == len(like.spacing) else _direction_2d(like.direction))
    else:
        n = array.ndim
        vol = Volume(array, (1.0,) * n, (0.0,) * n, tuple(np.eye(n).ravel()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        sitk.WriteImage(vol.to_sitk(), tmp, useCompression=suffix in (".nii.gz", ".nrrd", ".mha"))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
