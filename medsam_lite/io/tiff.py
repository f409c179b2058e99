"""TIFF files SimpleITK would read wrongly, refused before it reads them.

ITK reads a TIFF whose pixels hold several samples in a layout it does not support (planar
``PlanarConfiguration=2``, or more than 8 bits per sample) through its 8-bit RGBA fallback: the
bits above 8 are lost and only a warning on stderr says so. ``tifffile.imwrite`` writes a
``(3, H, W)`` or ``(4, H, W)`` ``uint16`` array exactly this way (as planar RGB), so a 3-slice stack
saved with its defaults is such a file.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def check_tiff(path: Path) -> None:
    """Refuse a TIFF that SimpleITK would read as 8-bit RGBA (see the module docstring).

    Uses ``tifffile`` (installed with scikit-image) to read the first page's tags; without it,
    nothing is checked.

    Raises:
        InputError: naming the samples, bits and layout, and how to save the file instead.
    """
    try:
        import tifffile
    except ImportError:  # pragma: no cover - scikit-image brings it
        return
    try:
        with tifffile.TiffFile(str(path)) as tif:
            page = tif.pages[0]
            samples, bits, planar = int(page.samplesperpixel), int(page.bitspersample), int(page.planarconfig)
            shape = tuple(tif.series[0].shape)
    except Exception:  # noqa: BLE001 - not a TIFF tifffile understands: SimpleITK says what is wrong
        return
    if samples > 1 and (bits > 8 or planar == 2):
        raise InputError(
            f"{path} holds {samples} samples of {bits} bits per pixel{' stored planar' if planar == 2 else ''} "
            f"(shape {shape}); SimpleITK would read it as 8-bit RGBA and lose data. If these are slices, save "
            "them as a stack: tifffile.imwrite(path, array, photometric='minisblack') (or as .nii.gz); if it is "
            "a colour image, save it as 8-bit RGB.")
