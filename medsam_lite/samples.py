"""The bundled sample data (``data_samples/``) behind one function each.

``brain_mri/`` and the brain PNGs are synthetic variants of the MNI ICBM152 2009 template;
``ct_abdomen/`` and ``mr_abdomen/`` are real scans from the TotalSegmentator dataset (CC BY 4.0)
with TotalSegmentator's organ labels, cut into cases of 10 axial slices (see ``data_samples/NOTICE.md``).
:func:`synthetic_lesion` adds a seeded synthetic lesion to a slice (targets of a kind no bundled label has);
:func:`split_target`, :func:`cap_target` and :func:`merged_targets` make new targets of a slice's labels (a part of
an organ beyond a cut the image does not show, its edge, two touching organs as one).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import InputError

#: Label values of the sample label maps.
SAMPLE_LABELS = {1: "white_matter", 2: "grey_matter", 3: "lateral_ventricles"}


def data_samples_dir() -> Path:
    """The ``data_samples/`` folder: ``$MEDSAM_LITE_SAMPLES`` if set, else the repository's copy."""
    env = os.environ.get("MEDSAM_LITE_SAMPLES")
    path = Path(env) if env else Path(__file__).resolve().parents[1] / "data_samples"
    if not path.is_dir():
        raise InputError(
            f"sample data folder {path} not found; clone the repository (git clone …) or set "
            "MEDSAM_LITE_SAMPLES to its data_samples/ folder."
        )
    return path


def sample_path(name: str) -> Path:
    """Path of one file or folder inside ``data_samples/`` (e.g. ``"brain_slice.png"``)."""
    root = data_samples_dir()
    path = root / str(name)
    if root.resolve() not in path.resolve().parents:
        raise InputError(f"{name!r} points outside {root}; pass a name inside data_samples/, e.g. 'brain_slice.png'.")
    if not path.exists():
        raise InputError(f"{name!r} is not in {data_samples_dir()}; see data_samples/README.md.")
    return path


def brain_mri_dir() -> Path:
    """Folder of the multi-subject MRI dataset: ``sub-XX.nii.gz`` + ``sub-XX_label.nii.gz``."""
    return sample_path("brain_mri")


def ct_abdomen_dir() -> Path:
    """Real abdominal CT (int16 HU, 3 mm): ``case-01`` … ``case-03`` (10 axial slices each, cut
    from one scan, 122×101 pixels) + ``case-XX_label.nii.gz`` + ``labels.json``; prepare with
    ``preprocess(ct_abdomen_dir(), out, modality="CT")``. Label values: :func:`sample_labels`."""
    return sample_path("ct_abdomen")


def mr_abdomen_dir() -> Path:
    """Real abdominal MR (int16, 3 mm): ``case-01``, ``case-02`` (10 axial slices each, cut from one
    scan, 117×91 pixels) + ``case-XX_label.nii.gz`` + ``labels.json``. Label values: :func:`sample_labels`."""
    return sample_path("mr_abdomen")


def sample_labels(name: str = "brain_mri") -> dict[int, str]:
    """Label value → name of one sample folder: ``"brain_mri"``, ``"ct_abdomen"`` or ``"mr_abdomen"``.

    The abdomen folders keep TotalSegmentator's values (CT: 1 spleen … 52 aorta, 63 inferior_vena_cava;
    MR: … 23 aorta, 24 inferior_vena_cava), read from the folder's ``labels.json``.
    """
    if name in ("brain_mri", "brain_slice.png", "brain_slice_label.png"):
        return label_names()
    folder = sample_path(name)
    path = folder / "labels.json" if folder.is_dir() else None
    if path is None or not path.is_file():
        raise InputError(f"{name!r} has no labels.json; choose 'brain_mri', 'ct_abdomen' or 'mr_abdomen'.")
    return {int(k): v for k, v in json.loads(path.read_text(encoding="utf-8")).items()}


def label_names() -> dict[int, str]:
    """Label value → name for the brain sample label maps (``brain_mri/``, ``brain_slice_label.png``)."""
    path = data_samples_dir() / "labels.json"
    if path.exists():
        return {int(k): v for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    return dict(SAMPLE_LABELS)


def synthetic_lesion(image, region, rng: np.random.Generator, modality: str = "MR",
                     radius_px: tuple[float, float] = (5.0, 11.0)):
    """A synthetic lesion inside ``region`` of one slice → ``(image_with_lesion, lesion_mask)``, or
    ``None`` when the region cannot hold one.

    The lesion: a round blob of radius ``rng.uniform(*radius_px)`` pixels (e.g. ``(3, 7)`` for the
    3 mm abdomen samples, ``(5, 11)`` for the 1 mm brain), its outline perturbed by 2nd/3rd angular
    harmonics (±15 % / ±10 %), centred on a random pixel of ``region`` at least radius + 1 px from the
    region's border. Its intensity is the region's median + δ — CT: ±25–60 (HU), other modalities:
    ±20–40 % of the slice's 1–99 % percentile range; hypo- or hyper-intense by a coin — plus texture
    (Gaussian-smoothed noise, σ = 1 px, std 25 % of |δ|). Its edge has partial volume: each pixel
    takes the lesion's fraction ``f`` of its area (4 × 4 supersampling),
    ``image_with_lesion = (1 − f)·image + f·lesion``, and ``lesion_mask = f ≥ 0.5``. Deterministic for
    a given ``rng`` state (the draws, in order: radius, centre, outline phases, sign, δ, texture).

    Args:
        image: ``H×W`` slice in original intensities (HU for CT), any real dtype; not modified.
        region: ``H×W`` bool, the same pixel grid (e.g. an organ of the slice's label map).
        rng: ``numpy.random.Generator`` (e.g. ``np.random.default_rng(2026)``).
        modality: ``"CT"`` (δ in HU) or anything else (δ relative to the slice's intensity range).
        radius_px: ``(low, high)`` lesion radius in pixels of ``image``.

    Returns:
        ``(image_with_lesion, lesion_mask)``: ``H×W`` float64 (same pixel grid, original intensity
        scale) and ``H×W`` bool (inside ``region``), or ``None`` when no pixel of ``region`` is deep
        enough for the drawn radius.
    """
    from scipy import ndimage

    image = np.asarray(image)
    region = np.asarray(region)
    if image.ndim != 2 or not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
        raise InputError(f"image must be one H×W real-valued slice, got shape {image.shape} dtype {image.dtype}; "
                         "pass volume.array[z].")
    if region.shape != image.shape:
        raise InputError(f"region {region.shape} and image {image.shape} differ in shape; give a mask of the same slice.")
    lo_r, hi_r = (float(r) for r in radius_px)
    if not 0 < lo_r <= hi_r:
        raise InputError(f"radius_px must be (low, high) with 0 < low <= high pixels, got {radius_px!r}; e.g. (5, 11).")
    region = region.astype(bool)
    r0 = rng.uniform(lo_r, hi_r)
    depth = ndimage.distance_transform_edt(region)
    ys, xs = np.nonzero(depth >= r0 + 1)
    if ys.size == 0:
        return None
    i = int(rng.integers(ys.size))
    cy, cx = float(ys[i]), float(xs[i])
    h, w = image.shape
    s = 4  # supersampling: the partial-volume fraction of each pixel
    yy, xx = np.mgrid[0:h * s, 0:w * s]
    yy, xx = (yy + 0.5) / s - 0.5 - cy, (xx + 0.5) / s - 0.5 - cx
    theta, rad = np.arctan2(yy, xx), np.hypot(yy, xx)
    p1, p2 = rng.uniform(0, 2 * np.pi, 2)
    edge = r0 * (1 + 0.15 * np.sin(2 * theta + p1) + 0.10 * np.sin(3 * theta + p2))
    frac = (rad <= edge).reshape(h, s, w, s).mean(axis=(1, 3))
    values = image[region]
    sign = 1 if rng.random() < 0.5 else -1
    if str(modality).upper() == "CT":
        delta = sign * rng.uniform(25, 60)
    else:
        lo, hi = np.percentile(image, [1, 99])
        delta = sign * rng.uniform(0.2, 0.4) * (hi - lo)
    texture = ndimage.gaussian_filter(rng.standard_normal((h, w)), 1.0)
    texture *= 0.25 * abs(delta) / (texture.std() + 1e-9)
    lesion = np.median(values) + delta + texture
    out = (1 - frac) * image + frac * lesion
    return out, frac >= 0.5


def split_target(truth: np.ndarray, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """An organ split in two by a straight cut (issue 31: "merged or split labels as new targets"; validation
    targets of ``bench/bench_clicks.py`` and, with ``--synth``, training targets of ``scripts/train_click_decoder.py``):
    the cut at a random angle, through a point up to 0.4 × the organ's equivalent radius from its centroid
    (seeded by ``tag``); the two sides, each a target. The image shows no edge at the cut — the organ's
    tissue runs on beyond it — so a box around one part also holds tissue like it on the other side of the
    truth (as a vertebra's edge beside its body, or a pancreas beside a bowel loop in MR): the validation
    targets where a click's tissue cannot size its error. ``truth``: H×W bool (any pixel grid); returns two H×W
    bool (disjoint, their union ``truth``; a side may be empty). Deterministic for a given ``tag``."""
    import zlib

    rng = np.random.default_rng(zlib.crc32(tag.encode()))
    side = _beyond(truth, rng.uniform(0, np.pi), rng.uniform(-0.4, 0.4) * np.sqrt(truth.sum() / np.pi))
    return truth & side, truth & ~side


def _beyond(truth: np.ndarray, theta: float, shift: float) -> np.ndarray:
    """H×W bool: the pixels beyond the line at angle ``theta`` (radians; its normal (sin, cos) in (row, col)) that
    lies ``shift`` pixels from ``truth``'s centroid along that normal."""
    rows, cols = np.nonzero(truth)
    yy, xx = np.ogrid[: truth.shape[0], : truth.shape[1]]
    return (yy - rows.mean()) * np.sin(theta) + (xx - cols.mean()) * np.cos(theta) > shift


def cap_target(truth: np.ndarray, tag: str) -> np.ndarray:
    """The small side of an organ cut by a straight line 0.4–0.8 × its equivalent radius from its centroid, at
    a random angle (seeded by ``tag``): an organ's edge as a target (round 7), its box holding mostly tissue like
    it on the other side of a cut the image does not show (as the end of a vertebra in an axial slice: 192 truth
    pixels in a 611-pixel box mask). ``truth``: H×W bool; returns H×W bool (inside ``truth``; may be empty)."""
    import zlib

    rng = np.random.default_rng(zlib.crc32(f"cap:{tag}".encode()))
    return truth & _beyond(truth, rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 0.8) * np.sqrt(truth.sum() / np.pi))


def apart_targets(targets: list) -> list:
    """Two organs that do not touch but lie close merged into one target (issue 31, round 10): a label in pieces with
    other tissue between them, as a vertebra's arch cut by an axial slice into pedicles and spinous process around
    the canal, or both kidneys in one "kidney" label. The box around the pieces holds the tissue between them, which
    the box-only mask fills: a background click there must remove the gap and not the pieces beside it. A pair
    qualifies when it is more than 2 px apart and at most the smaller organ's equivalent radius apart (at least
    3 px); each pair once. ``targets``: ``[(name, H×W bool)]`` of one slice; returns ``[("a and b", a | b)]``."""
    import cv2

    out = []
    for i, (a, ta) in enumerate(targets):
        if not ta.any():
            continue
        far = cv2.distanceTransform(np.ascontiguousarray(~ta).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        for b, tb in targets[i + 1:]:
            if not tb.any():
                continue
            gap = float(far[tb].min())  # px from a to b's nearest pixel
            if 2.0 < gap <= max(3.0, np.sqrt(min(ta.sum(), tb.sum()) / np.pi)):
                out.append((f"{a} and {b}", ta | tb))
    return out


def merged_targets(targets: list) -> list:
    """Two organs that touch (within 2 px) merged into one target (issue 31, round 7: "merged or split labels as
    new targets"): a target of two tissues (liver + gallbladder, stomach + spleen), each pair once, as a tumour
    with a necrotic core or a vertebra's cortex and marrow — a click on one tissue says nothing of the other's
    extent. ``targets``: ``[(name, H×W bool)]`` of one slice; returns ``[("a + b", a | b)]``."""
    import cv2

    grown = [cv2.dilate(np.ascontiguousarray(t).view(np.uint8), np.ones((5, 5), np.uint8)).view(bool) for _, t in targets]
    return [(f"{a} + {b}", ta | tb) for i, (a, ta) in enumerate(targets) for j, (b, tb) in enumerate(targets)
            if i < j and (grown[i] & tb).any()]
