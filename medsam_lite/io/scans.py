"""Reading and writing scans and masks with their geometry (SimpleITK).

Arrays are indexed ``(z, y, x)`` for volumes and ``(y, x)`` for 2D images, as SimpleITK's
``GetArrayFromImage`` gives them; spacing, origin and direction keep SimpleITK's ``(x, y, z)``
order. This module is the only place that converts between the two.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from .nifti import check_nifti_complete as _check_nifti_complete
from .nifti import nifti_nan_index as _nifti_nan_index

#: File endings SimpleITK reads as volumes or images here.
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def thick_axis(spacing_zyx, shape=None) -> int:
    """The slicing axis in array order ``(z, y, x)``: the one of largest spacing (ties within 1e-6
    relative → the first, so z); a size-1 axis in ``shape`` wins (a one-slice volume)."""
    if shape is not None and 1 in tuple(shape):
        return tuple(shape).index(1)
    s = np.asarray(spacing_zyx, dtype=float)
    return int(np.flatnonzero(s >= s.max() * (1 - 1e-6))[0])


@dataclass
class Volume:
    """A scan or label map with its geometry.

    Attributes:
        array: ``(z, y, x)`` for 3D or ``(y, x)`` / ``(y, x, c)`` for 2D images.
        spacing: voxel size in mm, SimpleITK order ``(x, y[, z])``.
        origin: physical position of the first voxel, ``(x, y[, z])``.
        direction: flattened direction cosine matrix (row-major, as SimpleITK gives it).
        path: where it was read from, if anywhere.
        notes: one line per non-obvious reading step (:func:`read_label`, :func:`align_label`).
        names: ``{label value: name}`` a label file carried (RTSTRUCT ROI / DICOM-SEG segment names).
    """

    array: np.ndarray
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0)
    origin: tuple[float, ...] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = field(default=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    path: str | None = None
    notes: tuple[str, ...] = ()
    names: dict = field(default_factory=dict)

    @property
    def spacing_zyx(self) -> tuple[float, ...]:
        """Spacing in array order: ``(z, y, x)`` (or ``(y, x)`` in 2D)."""
        return tuple(reversed(self.spacing))

    def slice_axis(self, axis: int | None = None) -> int:
        """The axis a volume is sliced across, in array order ``(z, y, x)``: the one rule
        (:func:`thick_axis`) that ``preprocess`` and :class:`~medsam_lite.VolumePredictor` both use.
        A slice (the other two axes) must be at least 2×2 pixels.

        Args:
            axis: the axis asked for (0, 1, 2 or -3…-1), checked; None: :func:`thick_axis`'s choice.

        Raises:
            InputError: ``axis`` is not 0, 1 or 2; its slices are smaller than 2×2 (the message names
                an ``axis=`` that works); no axis of the volume has slices of 2×2 (a line of voxels).
        """
        if axis is not None and (isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer))
                                 or not -3 <= axis < 3):
            raise InputError(f"axis must be 0, 1 or 2 (the array axis slices are taken across), got {axis!r}.")
        shape = tuple(int(n) for n in self.array.shape[: len(self.spacing)])
        if len(shape) == 3:
            plane = {a: "×".join(str(n) for b, n in enumerate(shape) if b != a) for a in range(3)}
            usable = [a for a in range(3) if min(n for b, n in enumerate(shape) if b != a) >= 2]
            if not usable:
                raise InputError(f"the volume {shape} has no axis whose slices are at least 2×2 pixels (slices across "
                                 + ", ".join(f"axis={a}: {plane[a]}" for a in range(3))
                                 + "); it is a line of voxels, not an image.")
            if axis is not None and int(axis) % 3 not in usable:
                raise InputError(f"slices across axis={int(axis) % 3} of the volume {shape} are "
                                 f"{plane[int(axis) % 3]} pixels; a slice needs at least 2×2. Pass axis={usable[0]} "
                                 f"(slices {plane[usable[0]]}).")
        # with one usable axis, thick_axis picks it: a size-1 axis wins, and a volume without one has all usable
        return thick_axis(self.spacing_zyx, shape) if axis is None else int(axis) % 3

    def crop(self, lo: int, hi: int, axis: int | None = None) -> "Volume":
        """Slices ``lo … hi - 1`` along ``axis`` (array order; default :meth:`slice_axis`'s) as a new
        :class:`Volume` that keeps the physical geometry: the origin moves to the first kept slice
        (spacing and direction unchanged), so a mask written ``like=`` the crop overlays it. The
        path, notes and label names are kept.

        Raises:
            InputError: not a 3D volume, or ``lo … hi`` not a non-empty range inside the axis.
        """
        if self.array.ndim != 3 or len(self.spacing) != 3:
            raise InputError(f"crop takes a 3D volume, got array {self.array.shape}.")
        axis = self.slice_axis(axis)
        n = self.array.shape[axis]
        bad = [v for v in (lo, hi) if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))]
        if bad or not 0 <= lo < hi <= n:
            raise InputError(f"crop needs slices lo … hi - 1 with 0 <= lo < hi <= {n} (axis {axis} has {n} slices), "
                             f"got lo={lo!r}, hi={hi!r}.")
        image = self.to_sitk()
        index, size = [0, 0, 0], list(image.GetSize())
        dim = 2 - axis  # SimpleITK's (x, y, z) order is the array's reversed
        index[dim], size[dim] = int(lo), int(hi) - int(lo)
        sub = sitk.RegionOfInterest(image, size, index)
        return Volume(sitk.GetArrayFromImage(sub), tuple(sub.GetSpacing()), tuple(sub.GetOrigin()),
                      tuple(sub.GetDirection()), self.path, self.notes, dict(self.names))

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


def file_suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def read_volume(path: str | os.PathLike, series: str | None = None) -> Volume:
    """Read a NIfTI / NRRD / MHA / DICOM file, a DICOM series folder, or a 2D image file.

    Args:
        path: a file, or a folder holding a DICOM series (see :mod:`medsam_lite.io.dicom`: slices
            sorted by position, spacing from the positions, RescaleSlope/Intercept applied).
        series: SeriesInstanceUID to read from a folder holding several series.

    Returns:
        :class:`Volume` with ``array`` in ``(z, y, x)`` order (``(y, x)`` or ``(y, x, c)`` for 2D).
        NaN voxels of a float NIfTI are NaN in ``array`` (SimpleITK alone reads them as 0).

    Raises:
        InputError: the path is missing, is not a regular file or folder (a pipe or device: refused
            before opening, as reading it could block), is a folder without a DICOM series or with
            several (the message lists them), a series with missing slices, cannot be read as an
            image, or a NIfTI file holds less data than its header announces.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path (relative paths start at {Path.cwd()}).")
    mode = path.stat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InputError(f"{path} is not a regular file (a pipe, socket or device); pass an image file or a "
                         "DICOM series folder (reading it could block forever).")
    nan_index = None
    if path.is_file() and path.suffix.lower() == ".npz":  # a CVPR24 challenge npz (io.challenge)
        from .challenge import read_arrays

        return Volume(**read_arrays(path), path=str(path))
    if path.is_file() and file_suffix(path) in (".nii", ".nii.gz"):
        _check_nifti_complete(path)
        nan_index = _nifti_nan_index(path)
    if path.is_file() and file_suffix(path) in (".tif", ".tiff"):
        from .tiff import check_tiff

        check_tiff(path)  # one SimpleITK would read as 8-bit RGBA, losing bits
    try:
        if path.is_dir():
            from .dicom import read_series

            image = read_series(path, series)
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(
            f"{path} could not be read as an image ({_sitk_reason(exc)}); "
            f"is it corrupt or truncated? Supported: {', '.join(VOLUME_SUFFIXES + IMAGE_SUFFIXES)} "
            "and DICOM series folders."
        ) from None
    array = sitk.GetArrayFromImage(image)
    if nan_index is not None:
        if array.dtype.kind != "f" or image.GetNumberOfComponentsPerPixel() != 1 or array.size <= nan_index.max():
            raise InputError(f"{path} holds {nan_index.size:,} NaN voxels; replace them (e.g. numpy.nan_to_num) "
                             "and save the file again.")
        array.reshape(-1)[nan_index] = np.nan  # NIfTI order (x fastest) is the (z, y, x) C order
    if image.GetDimension() == 3 and array.shape[0] == 1 and file_suffix(path) in IMAGE_SUFFIXES + (".dcm",):
        array = array[0]  # a single 2D slice read as a 1-slice volume
        return Volume(array, image.GetSpacing()[:2], image.GetOrigin()[:2],
                      direction_2d(image.GetDirection()), str(path))
    return Volume(array, tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                  tuple(image.GetDirection()), str(path))


def _sitk_reason(exc: Exception) -> str:
    """The informative part of a SimpleITK exception (without source locations and object ids)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines()[1:] if ln.strip()]
    lines = [re.sub(r"^(ITK ERROR: \w+\(0x[0-9a-f]+\): |sitk::ERROR: )", "", ln) for ln in lines
             if not ln.startswith("Reason: No such file")]  # ITK's errno is stale: the file exists
    return " ".join(lines)[-200:] or str(exc).strip()[:200]


def direction_2d(direction3d) -> tuple[float, ...]:
    d = np.asarray(direction3d, dtype=float).reshape(3, 3)
    return tuple(d[:2, :2].ravel())


# ---------------------------------------------------------------- label maps
#: Lossy image formats: their compression changes label values (a 0/255 mask gains values 1–13, 242–254).
LOSSY_SUFFIXES = (".jpg", ".jpeg")


def read_label(path: str | os.PathLike, *, allow_lossy: bool = False, series: str | None = None,
               reference=None, names=None) -> Volume:
    """Read a label map (integer values, 0 = background) with its geometry.

    Besides :func:`read_volume`'s formats: a palette PNG is read as its palette **indices** (the
    label values a mask editor stored), not as the colours or grey levels of the palette; a grey
    RGB(A) PNG is read from its first channel; a 2D mask holding only 0 and 255 is read as label 1.
    Each such reading is recorded in ``Volume.notes``.

    Args:
        path: the label file (NIfTI, NRRD, MHA, PNG, TIFF, BMP …).
        allow_lossy: read a JPEG anyway, as a binary mask (grey ≥ 128 → 1). Default False: refused.
        series: passed to :func:`read_volume` for a DICOM folder.
        reference, names: for an RTSTRUCT / DICOM-SEG file, the series folder and ``{value: name}``,
            see :func:`medsam_lite.io.dicomlabels.read_dicom_label` (ROI names → ``Volume.names``).
            A challenge ``.npz`` is read from its ``gts``.

    Returns:
        :class:`Volume` with an integer ``array`` (``(z, y, x)`` or ``(y, x)``), values ≥ 0.

    Raises:
        InputError: a JPEG label (without ``allow_lossy``), a colour image, non-integer values
            (a probability map?), negative values or a non-numeric dtype.
    """
    path = Path(path)
    if path.suffix.lower() == ".npz" and path.is_file():
        from .challenge import read_arrays

        return Volume(**read_arrays(path, "gts"), path=str(path))
    if file_suffix(path) == ".dcm":
        from .dicomlabels import label_kind, read_dicom_label

        if label_kind(path):
            got = read_dicom_label(path, reference, names)
            return Volume(got["array"], got["spacing"], got["origin"], got["direction"], str(path),
                          tuple(got["notes"]), got["names"])
    vol = read_volume(path, series=series)
    notes = []
    lossy = file_suffix(path) in LOSSY_SUFFIXES
    if lossy and not allow_lossy:
        raise InputError(
            f"label {path} is a JPEG: its lossy compression changes label values (a 0/255 mask becomes "
            "values 0–13 and 242–255, i.e. dozens of labels). Save masks as PNG (lossless), or read a binary "
            "mask anyway with medsam_lite.io.read_label(path, allow_lossy=True).")
    lab = vol.array
    if file_suffix(path) == ".png":
        from PIL import Image

        with Image.open(path) as im:
            if im.mode == "P":
                lab = np.asarray(im)
                notes.append(f"{path.name}: palette PNG read as its palette indices {_few(lab)}")
    if lab.ndim == len(vol.spacing) + 1:  # a colour mask (2D): accept it if it is grey
        if not (lab[..., :3] == lab[..., :1]).all():
            raise InputError(f"label {path} is a colour image; save it as a single-channel label map "
                             "(one integer per pixel, or a palette PNG).")
        lab = lab[..., 0]
    if lab.dtype == bool:
        lab = lab.astype(np.uint8)
    if lab.dtype.kind == "f":
        if not np.isfinite(lab).all() or not np.array_equal(lab, np.rint(lab)):
            bad = lab[~np.isfinite(lab) | (lab != np.rint(lab))][:3]
            raise InputError(
                f"label map {path} is not integer-valued (e.g. {bad.tolist()}): a label map holds one "
                "integer per voxel (0 = background). Is it a probability map or an image? Threshold it "
                "or resample it with nearest-neighbour interpolation.")
        lab = lab.astype(np.int64)
    elif lab.dtype.kind not in "iu":
        raise InputError(f"label map {path} has dtype {lab.dtype}; expected integers (0 = background).")
    if lab.size and lab.min() < 0:
        raise InputError(f"label map {path} holds negative values; labels are integers ≥ 0 (0 = background).")
    if lossy:
        lab = (lab >= 128).astype(np.uint8)
        notes.append(f"{path.name}: JPEG read as a binary mask (grey ≥ 128 → label 1), allow_lossy=True")
    elif len(vol.spacing) == 2 and lab.size and set(np.unique(lab).tolist()) == {0, 255}:
        lab = (lab > 0).astype(np.uint8)
        notes.append(f"{path.name}: a 0/255 mask, read as label 1")
    return Volume(lab, vol.spacing, vol.origin, vol.direction, vol.path, tuple(notes))


def _few(values: np.ndarray) -> list[int]:
    found = np.unique(values).tolist()
    return found[:8] + (["…"] if len(found) > 8 else [])


def _grid(vol: Volume) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Size (x, y, z), spacing, direction matrix (columns = axes) and origin, as arrays."""
    n = len(vol.spacing)
    size = np.array(vol.array.shape[:n][::-1])
    return size, np.asarray(vol.spacing, float), np.asarray(vol.direction, float).reshape(n, n), \
        np.asarray(vol.origin, float)


def align_label(label: Volume, image: Volume) -> tuple[Volume, str | None]:
    """Put a label map on the image's grid when both grids cover the same voxels, losslessly.

    Same voxels means: the label's axes are the image's up to a permutation and flips (direction
    columns equal up to sign and order), with the same size and spacing along matched axes, and the
    physical corners of the two voxel grids agree within half a voxel. This is what a label written
    by another tool often is (dcm2niix-style NIfTI of a DICOM series stores rows flipped:
    direction diag(1, −1, 1) against the series' identity, origin at the other end of y). The label
    is then resampled onto the image grid by nearest neighbour (``sitk.Resample`` with the identity
    transform), which moves every voxel without changing any value; the voxel counts per label are
    checked to be unchanged.

    Args:
        label: the label map (from :func:`read_label`), 2D or 3D.
        image: the scan it belongs to.

    Returns:
        ``(label on the image grid, note)``: ``note`` is None when the grids were already equal,
        else one line saying what was done (for a log or the dataset's record).

    Raises:
        InputError: the grids differ otherwise (size, spacing, extent, rotation); the message gives
            both geometries and a SimpleITK fix to use once the pairing is confirmed.
    """
    if image.same_geometry(label):
        return label, None
    why = _same_voxels(label, image)
    if why is None:
        moved = sitk.Resample(label.to_sitk(), image.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        out = sitk.GetArrayFromImage(moved).astype(label.array.dtype, copy=False)
        before = np.unique(label.array, return_counts=True)
        after = np.unique(out, return_counts=True)
        if all(np.array_equal(a, b) for a, b in zip(before, after)):
            note = (f"label {Path(label.path).name if label.path else ''} put on the image grid (same voxels, "
                    f"{_how(label, image)}; nearest neighbour, lossless)").replace("label  ", "label ")
            return Volume(out, image.spacing[: out.ndim], image.origin[: out.ndim],
                          image.direction if out.ndim == len(image.spacing) else direction_2d(image.direction),
                          label.path, label.notes + (note,)), note
        why = "resampling onto the image grid would change voxel counts"
    shape_i, shape_l = image.array.shape[: len(image.spacing)], label.array.shape[: len(label.spacing)]
    lead = "shape " if shape_i != shape_l else ""
    raise InputError(
        f"image {image.path} and label {label.path} differ in geometry: {lead}{shape_i} vs {shape_l}, spacing "
        f"{_r(image.spacing)} vs {_r(label.spacing)}, origin {_r(image.origin)} vs {_r(label.origin)}, direction "
        f"{_r(image.direction)} vs {_r(label.direction)} ({why}). Check the pairing; if the label really belongs "
        "to this scan, resample it onto the image grid (SimpleITK.Resample(label, image, SimpleITK.Transform(), "
        "SimpleITK.sitkNearestNeighbor)) and save it.")


def _r(values) -> list:
    return [round(float(v), 4) for v in values]


def _matching(label: Volume, image: Volume) -> np.ndarray | None:
    """Signed permutation P with ``D_label = D_image @ P`` (None if the axes are not so related)."""
    if len(label.spacing) != len(image.spacing):
        return None
    p = _grid(image)[2].T @ _grid(label)[2]
    q = np.rint(p)
    if not np.allclose(p, q, atol=1e-3) or not (np.abs(q).sum(0) == 1).all() or not (np.abs(q).sum(1) == 1).all():
        return None
    return q


def _same_voxels(label: Volume, image: Volume) -> str | None:
    """None if the grids cover the same voxels, else why not (a few words)."""
    q = _matching(label, image)
    if q is None:
        return "the axes are rotated against each other, not only flipped or swapped"
    size_i, sp_i, d_i, o_i = _grid(image)
    size_l, sp_l, d_l, o_l = _grid(label)
    perm = np.abs(q).argmax(0)  # label axis j runs along image axis perm[j]
    if not np.array_equal(size_l, size_i[perm]):
        return "the sizes differ"
    if not np.allclose(sp_l, sp_i[perm], rtol=1e-4, atol=1e-5):
        return "the spacings differ"

    def corners(size, sp, d, o):
        idx = np.array(np.meshgrid(*[[0, n - 1] for n in size], indexing="ij")).reshape(len(size), -1)
        pts = o[:, None] + d @ (sp[:, None] * idx)
        return pts[:, np.lexsort(np.round(pts, 3)[::-1])]

    gap = np.abs(corners(size_i, sp_i, d_i, o_i) - corners(size_l, sp_l, d_l, o_l)).max(1)
    # gap is in physical axes; compare with half the image spacing along the matching axes
    half = np.abs(d_i) @ (sp_i / 2)
    if (gap >= half).any():
        return f"the voxel grids are shifted by up to {gap.max():.2f} mm (more than half a voxel)"
    return None


def _how(label: Volume, image: Volume) -> str:
    q = _matching(label, image)
    names = "xyz"
    flips = [names[int(np.abs(q[:, j]).argmax())] for j in range(q.shape[1]) if q[:, j].sum() < 0]
    perm = np.abs(q).argmax(0)
    parts = []
    if flips:
        parts.append(f"axis {', '.join(flips)} flipped")
    if not np.array_equal(perm, np.arange(len(perm))):
        parts.append("axes " + " ".join(f"{names[j]}→{names[int(i)]}" for j, i in enumerate(perm) if i != j))
    if not parts:
        parts.append("origin within half a voxel")
    return f"label direction {_r(label.direction)} vs image {_r(image.direction)}: " + ", ".join(parts)
