"""Checks SimpleITK's NIfTI reader skips: truncated files and NaN voxels (read from the raw data).

SimpleITK reads a truncated ``.nii``/``.nii.gz`` without complaint (the missing voxels become 0)
and reads NaN voxels as 0. :mod:`medsam_lite.io` calls both checks before trusting a NIfTI file.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError


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


def check_nifti_complete(path: Path) -> None:
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


#: NIfTI datatype codes of float voxels that can hold NaN → numpy type.
_NIFTI_FLOATS = {16: "f4", 64: "f8"}


def nifti_nan_index(path: Path) -> np.ndarray | None:
    """Flat indices (NIfTI order) of the NaN voxels of a float NIfTI; None if there are none.

    SimpleITK's NIfTI reader turns NaN into 0, so a scan with NaN outside its field of view would
    pass every NaN check downstream (an ``.nrrd`` keeps them). Only float files are read twice.
    """
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    with opener(path, "rb") as handle:
        header = handle.read(540)
        for endian in "<>":
            size = struct.unpack(endian + "i", header[:4])[0] if len(header) >= 4 else 0
            if size == 348 and len(header) >= 348:
                code = struct.unpack(endian + "h", header[70:72])[0]
                offset = struct.unpack(endian + "f", header[108:112])[0]
                break
            if size == 540 and len(header) >= 540:
                code = struct.unpack(endian + "h", header[12:14])[0]
                offset = struct.unpack(endian + "q", header[168:176])[0]
                break
        else:
            return None
        if code not in _NIFTI_FLOATS or not math.isfinite(offset) or offset < 0:
            return None
        dtype = np.dtype(endian + _NIFTI_FLOATS[code])
        handle.seek(int(offset))  # gzip seeks forward by decompressing
        found, done, carry = [], 0, b""
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            data = carry + chunk
            n = len(data) // dtype.itemsize
            hits = np.flatnonzero(np.isnan(np.frombuffer(data, dtype, count=n)))
            if hits.size:
                found.append(hits + done)
            done, carry = done + n, data[n * dtype.itemsize:]
    return np.concatenate(found) if found else None
