"""Scans and labels in and out: SimpleITK volumes and 2D images with their geometry, DICOM series,
label alignment, and which scan goes with which label map in a source folder.

Arrays are ``(z, y, x)``; spacing, origin and direction are SimpleITK's ``(x, y, z)`` order. The
conversion between the two lives in :mod:`medsam_lite.io.scans` only.

Labels as sites store them: :mod:`~medsam_lite.io.dicomlabels` (RTSTRUCT / DICOM-SEG in, found by
``find_cases``), :mod:`~medsam_lite.io.rtstruct`, :mod:`~medsam_lite.io.dicomseg`,
:mod:`~medsam_lite.io.formats` (the one output-format registry: every writer, DICOM-SEG / RTSTRUCT included) and :mod:`~medsam_lite.io.challenge`
(the CVPR24 challenge npz).
"""

from .scans import (
    IMAGE_SUFFIXES,
    LOSSY_SUFFIXES,
    VOLUME_SUFFIXES,
    Volume,
    align_label,
    read_label,
    read_volume,
)
from .formats import WRITE_SUFFIXES, write_volume

__all__ = ["IMAGE_SUFFIXES", "LOSSY_SUFFIXES", "VOLUME_SUFFIXES", "WRITE_SUFFIXES", "Volume",
           "align_label", "read_label", "read_volume", "write_volume"]
