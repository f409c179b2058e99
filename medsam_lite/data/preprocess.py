"""``preprocess``: from a folder of scans and label maps to a prepared training set (MedSAM recipe).

Source layouts (nnU-Net/MSD, images/ + labels/, flat folders, DICOM series) are found by
:func:`medsam_lite.io.cases.find_cases`.

The recipe, per case: read image and label map with SimpleITK (their shape, spacing, origin and
direction must agree), normalize the whole volume to ``uint8`` (CT window or 0.5–99.5 percentiles
of the voxels > 0, :func:`~medsam_lite.model.intensity.normalize_intensity`), cut it into slices along
the axis of largest spacing, and keep one binary target per label (or per connected component) per
slice with at least ``min_pixels`` pixels. The output is the folder described in
:mod:`medsam_lite.data.dataset`; everything is checked before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

from ..io.cases import Case, find_cases
from .dataset import FORMAT, open_dataset
from ..errors import InputError
from ..fileutil import (TMP_PREFIX, FolderLock, atomic_write, atomic_write_text, check_free_space,
                        remove_empty_folders)
from ..model.intensity import IntensityPreset
from ..io.cases import resolve_label_names
from ..io.scans import Volume, align_label, read_label, read_volume, thick_axis
from ..io.weaklabels import read_weak_labels
from .weakprep import check_weak, weak_by_case, weak_only_cases, weak_rows
from .prepcheck import recorded_settings, check_slices, minimum_text, modality_notes, per_label, report
from .prepstate import labels_to_extract, manifest_frame, resume_state
from .sources import split_note
from ..model.geometry import Geometry, box_from_mask, resize_slice
from ..model.intensity import CT_WINDOWS, normalize_intensity

__all__ = ["prepare_dataset", "preprocess"]

#: Name endings that mark a label map in a flat folder (``case_label.nii.gz`` …), tried in order.


def _gray(vol: Volume) -> np.ndarray:
    a = vol.array
    if a.ndim == len(vol.spacing) + 1:  # 2D colour → luminance (the dataset stores grey slices)
        if a.shape[-1] >= 3 and not (a[..., :3] == a[..., :1]).all():
            lum = a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            return np.rint(lum).astype(a.dtype if a.dtype == np.uint8 else np.float32)
        a = a[..., 0]
    return a


def _read_case(case: Case, notes: list | None = None, labels=None) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Read and check one case: ``(image (z, y, x), label (z, y, x) int, spacing_zyx)``; 2D images
    become one-slice volumes with slice spacing NaN. A label whose grid covers the image's voxels
    in another orientation is put on the image grid (:func:`~medsam_lite.io.align_label`); that and
    other reading steps (:func:`~medsam_lite.io.read_label`) are appended to ``notes``. ``labels``
    ({value: name}) numbers the ROI / segment names of an RTSTRUCT / DICOM-SEG label."""
    image = read_volume(case.image)
    if case.label is None:  # weak labels only (boxes / RECIST lines): an all-background label map
        arr, spacing = _gray(image), tuple(float(s) for s in image.spacing_zyx)
        arr, spacing = (arr[None], (math.nan,) + spacing) if arr.ndim == 2 else (arr, spacing)
        return arr, np.zeros(arr.shape, np.uint8), spacing
    label = read_label(case.label, reference=case.image, names=labels if isinstance(labels, dict) else None)
    for vol, what in ((image, "image"), (label, "label")):
        if vol.array.ndim > len(vol.spacing) + (len(vol.spacing) == 2) or len(vol.spacing) not in (2, 3):
            raise InputError(f"{what} {vol.path} has shape {vol.array.shape}; expected a 3D volume or a 2D "
                             "image (multi-channel 4D files: save each channel as its own file).")
    label, _ = align_label(label, image)
    if notes is not None:
        notes.extend(label.notes)
    arr, lab = _gray(image), label.array
    if arr.dtype == bool or arr.dtype.kind not in "uif":
        raise InputError(f"image {case.image} has dtype {arr.dtype}; expected a scalar image.")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(f"image {case.image} holds NaN/Inf values; replace them (np.nan_to_num) first.")
    spacing = tuple(float(s) for s in image.spacing_zyx)
    if arr.ndim == 2:
        arr, lab, spacing = arr[None], lab[None], (math.nan,) + spacing
    return arr, lab, spacing


def _values(lab: np.ndarray) -> set[int]:
    """The label values > 0 present in an integer label map (bincount: no sort of a big volume)."""
    top = int(lab.max(initial=0))
    found = np.flatnonzero(np.bincount(lab.ravel().astype(np.intp, copy=False))) if top < 1 << 16 else np.unique(lab)
    return set(found.tolist()) - {0}


def _r(values) -> list:
    return [round(float(v), 4) for v in values]


def _is_2d_uint8(arr: np.ndarray, spacing, case: Case | None = None) -> bool:
    """A 2D 8-bit image (PNG/JPG), or a challenge npz (already windowed): stored as it is, without
    intensity normalization."""
    return arr.dtype == np.uint8 and (math.isnan(spacing[0]) or str(getattr(case, "image", "")).endswith(".npz"))


def _check_normalizable(arr: np.ndarray, spacing, case: Case, settings: dict) -> None:
    lo, hi = arr.min(), arr.max()
    if lo == hi:
        raise InputError(f"image {case.image} is constant (every voxel is {lo}): there is nothing to segment. "
                         "Check that it is the scan and not an empty or placeholder file.")
    window = settings["window"]
    if settings["modality"] == "CT" or window is not None:
        low, high = CT_WINDOWS[window] if isinstance(window, str) else (window or CT_WINDOWS["medsam"])
        if hi <= low or lo >= high:
            raise InputError(f"image {case.image} (values {lo} … {hi}) lies entirely outside the window "
                             f"[{low}, {high}], so every slice would be blank. For CT pass values in HU (apply "
                             "RescaleSlope/Intercept) or choose window=(low, high) that covers the data.")
        return
    if _is_2d_uint8(arr, spacing, case):
        return
    fg = arr[arr > 0]
    if fg.size == 0 or fg.min() == fg.max():
        raise InputError(
            f"image {case.image} has {'no' if fg.size == 0 else 'constant'} voxels > 0, so MR-style "
            "percentile normalization is undefined; for CT pass modality='CT', else window=(low, high).")


def _slice_axis(arr: np.ndarray, spacing, settings: dict) -> int:
    """The axis a case is cut along (array order): 2D images are their own slice."""
    if arr.shape[0] == 1 and math.isnan(spacing[0]):
        return 0
    return settings["axis"] if settings["axis"] is not None else thick_axis(spacing, arr.shape)



# ---------------------------------------------------------------- slices and targets
def _targets(lab2d: np.ndarray, labels: dict[int, str], min_pixels: int, split_components: bool,
             pixel_mm2: float = math.nan, min_mm2: float | None = None, counts: dict | None = None):
    """Yield ``(label, component, mask)`` for each target with ≥ ``min_pixels`` pixels (and, with
    ``min_mm2``, an area ≥ ``min_mm2`` mm² at ``pixel_mm2`` mm² per pixel). Targets too small are
    counted in ``counts[label]["dropped"]`` (and their largest pixel count in ``largest_dropped_pixels``)."""
    def big(n: int) -> bool:
        ok = n >= max(min_pixels, 1) and (min_mm2 is None or n * pixel_mm2 >= min_mm2)
        if not ok and n and counts is not None:
            c = counts[value]
            c["dropped"] += 1
            c["largest_dropped_pixels"] = max(c["largest_dropped_pixels"], int(n))
        return ok

    for value in labels:
        mask = lab2d == value
        if not split_components:
            if big(int(mask.sum())):
                yield value, 0, mask
            continue
        if not mask.any():
            continue
        cc, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
        sizes = np.bincount(cc.ravel(), minlength=n + 1)
        kept = [k for k in range(1, n + 1) if big(int(sizes[k]))]
        for i, k in enumerate(kept, start=1):
            yield value, i, cc == k


_resize = resize_slice  # LiteMedSAM's published cv2.INTER_AREA (nearest for masks): what the encoder is fed


def _save_png(array: np.ndarray, path: Path) -> None:
    image = Image.fromarray(array)
    atomic_write(path, lambda f: image.save(f, format="PNG"))


def _prepare_case(case: Case, out: Path, settings: dict, labels: dict[int, str], split: str,
                  counts: dict | None = None, notes: list | None = None, weak: list | None = None) -> list[dict]:
    """Write one case's slices and masks; return its manifest rows. ``counts`` (filled here):
    ``{label: {"kept", "dropped", "largest_dropped_pixels"}}`` over the case's targets; reading
    notes (e.g. a label put on the image grid) → ``notes``. ``weak``: the case's weak annotations
    (labels already values): a slice and label without a mask target gets one weak target per
    annotation (a label's mask wins where both exist)."""
    arr, lab, spacing = _read_case(case, notes, settings["labels"])
    axis = _slice_axis(arr, spacing, settings)
    counts = counts if counts is not None else {}
    for value in labels:
        counts.setdefault(value, {"kept": 0, "dropped": 0, "largest_dropped_pixels": 0})
    if _is_2d_uint8(arr, spacing, case) and settings["window"] is None:
        norm = arr
    else:
        norm = normalize_intensity(arr, settings["modality"], settings["window"])
    row_ax, col_ax = (a for a in range(3) if a != axis)
    rows = []
    for sub in ("images", "masks"):
        (out / sub / case.name).mkdir(parents=True, exist_ok=True)
    pixel_mm2 = spacing[row_ax] * spacing[col_ax]
    by_slice: dict[int, list] = {}
    for a in weak or []:
        if a.label in labels:
            for z in a.slices():
                by_slice.setdefault(z, []).append(a)
    for i in range(arr.shape[axis]):
        lab2d = np.take(lab, i, axis=axis)
        targets = list(_targets(lab2d, labels, settings["min_pixels"], settings["split_components"],
                                pixel_mm2, settings.get("min_mm2"), counts))
        masked = {value for value, _, _ in targets} | {int(v) for v in np.unique(lab2d) if v}
        weak_here = [a for a in by_slice.get(i, []) if a.label not in masked]  # masks where they exist
        if not targets and not weak_here:
            continue
        h, w = lab2d.shape
        hw = Geometry.stored_size((h, w), settings["image_size"])
        small = [_resize(m.astype(np.uint8) * 255, hw, nearest=True) for _, _, m in targets]
        kept = [(t, s) for t, s in zip(targets, small) if s.any()]  # a thin target can vanish
        for (value, _, m), s in zip(targets, small):
            c = counts[value]
            if s.any():
                c["kept"] += 1
            else:
                c["dropped"] += 1
                c["largest_dropped_pixels"] = max(c["largest_dropped_pixels"], int(m.sum()))
        if not kept and not weak_here:
            continue
        image_rel = f"images/{case.name}/{i:04d}.png"
        _save_png(_resize(np.take(norm, i, axis=axis), hw), out / image_rel)
        for (value, comp, mask), small_mask in kept:
            mask_rel = f"masks/{case.name}/{i:04d}_l{value}_c{comp}.png"
            _save_png(small_mask, out / mask_rel)
            x0, y0, x1, y1 = (float(v) for v in box_from_mask(mask))
            rows.append(dict(
                case=case.name, slice=i, label=value, label_name=labels[value], component=comp,
                split=split, pixels=int(mask.sum()), x0=x0, y0=y0, x1=x1, y1=y1, height=h, width=w,
                spacing_row=spacing[row_ax], spacing_col=spacing[col_ax], slice_spacing=spacing[axis],
                axis=axis, image=image_rel, mask=mask_rel))
        rows += weak_rows(weak_here, case.name, i, out, labels, split, counts, (h, w), hw,
                          (spacing[row_ax], spacing[col_ax], spacing[axis]), axis, image_rel, _save_png)
    return rows


# ---------------------------------------------------------------- the verb
def preprocess(source, out_dir, *, modality: str = "MR", window=None, image_size: int = 256, axis=None,
               min_pixels: int | None = None, min_mm2: float | None = None, split_components: bool = False,
               test_fraction: float = 0.2, test_cases=None, seed: int = 0, labels=None,
               label_suffix: str | None = None, weak=None, progress: bool = True) -> pd.DataFrame:
    """Prepare a training set (slices, masks, manifest) from scans and label maps, the MedSAM way.

    Args:
        source: a folder in one of the layouts of :mod:`medsam_lite.preprocess` (nnU-Net/MSD
            ``imagesTr``+``labelsTr``; flat ``case.nii.gz`` + ``case_label.nii.gz``; 2D
            ``name.png`` + ``name_mask.png``; DICOM series folders + ``<folder>_label.nii.gz``),
            a list of ``(image_path, label_path)`` pairs, or a dict ``{case: (image, label)}``.
        out_dir: the dataset folder to create (or to resume: finished cases are skipped).
        modality: ``"CT"`` (window in HU) or any other name (``"MR"`` default: 0.5–99.5
            percentiles of the volume's voxels > 0).
        window: CT window name (default ``"medsam"`` = [-500, 1000] HU) or ``(low, high)``.
        image_size: longest side of the stored slices (256 for LiteMedSAM, 1024 for MedSAM).
        axis: slicing axis in array order (0/``"z"``, 1/``"y"``, 2/``"x"``); default None = the axis
            of largest spacing (ties → z). 2D images are their own single slice.
        min_pixels: drop targets with fewer pixels (original slice pixels) (default: 100, the paper's
            rule, set on ~0.8 mm pixels ≈ 64 mm²; 1 when ``min_mm2`` is given).
        min_mm2: drop targets whose area (pixels × the slice's pixel spacing in mm²) is smaller;
            default None = no area rule. At coarse spacing (3 mm CT) ``min_pixels=100`` drops whole
            organs: ``min_mm2=64`` keeps the paper's intent. Both rules apply when both are given.
        split_components: one target per 8-connected component instead of one per label and slice.
        test_fraction: share of cases in the test split (seeded shuffle of case names; at least one
            test case when there are ≥ 2 cases). Default 0.2.
        test_cases: explicit test case names (overrides ``test_fraction``).
        seed: seed of the split shuffle.
        labels: ``{value: name}`` of the labels to extract, or a list of values; default None = every
            label value found, named from a ``labels.json`` (``{"1": "liver"}``) or MSD/nnU-Net
            ``dataset.json`` in or above the source folder, else ``"label_<k>"``. RTSTRUCT / DICOM-SEG
            labels are named by their ROIs / segments (numbered once for all cases). Any label
            may be selected by name (``["liver", "spleen"]``, names from those files, any case)
            or value (:func:`~medsam_lite.io.cases.resolve_label_names`).
        label_suffix: name ending of label maps in a flat folder (default: ``_label``, ``_mask``
            or ``_seg``).
        weak: a ``.csv`` / ``.json`` file of 2D boxes, 3D boxes and RECIST lines per case (format:
            :mod:`medsam_lite.io.weaklabels`; ``AnnotationSession.save_boxes`` writes one): one target
            per annotation, ``weak`` = ``"box"``/``"recist"`` in the manifest, except where the label
            map has that label on that slice (masks win). Weak-only cases: ``{case: (image, None)}``
            in a dict ``source``, training split only. See :mod:`medsam_lite.data.weakprep`.
        progress: show progress bars.

    The counts of kept and dropped targets per label are printed (``progress=True``), stored in
    ``dataset.json`` (``targets_per_label: {name: {"kept", "dropped"}}``, and per case), and a
    label with no kept target is warned about. Intensities that do not look like ``modality``
    (CT in HU passed as MR; a CT window clipping most voxels) are warned about with the fix.

    Returns:
        The manifest (also saved as ``out_dir/manifest.csv``): one row per target with the columns
        of :data:`medsam_lite.data.dataset.MANIFEST_COLUMNS`. Boxes ``x0, y0, x1, y1`` are XYXY,
        inclusive, in original slice pixels; image/mask paths are relative to ``out_dir``.

    Raises:
        InputError: a missing label file, image/label geometry mismatch, a non-integer label map,
            unreadable files, bad settings, an ``out_dir`` prepared with other settings or being
            written by another run (a ``.lock`` file), slices that vanish at ``image_size``, case
            names too long for a file name, too little free disk space. Everything is checked
            before anything is written, and a refusal removes what the call created. A full disk
            while writing is an ``InputError`` too: finished cases are kept, re-run to resume.
    """
    out = Path(out_dir)
    weak_list = read_weak_labels(weak) if weak is not None else []
    source, weak_only = weak_only_cases(source, weak is not None)
    cases = sorted((find_cases(source, label_suffix, exclude=out) if source else []) + weak_only,
                   key=lambda c: c.name)
    # names → values (labels.json, RTSTRUCT / SEG names), from the cases that have a label map
    labels = resolve_label_names(labels, source, [c for c in cases if c.label is not None])
    settings = recorded_settings(modality, window, image_size, axis, min_pixels, split_components,
                         test_fraction, test_cases, seed, labels, min_mm2)
    weak_for = weak_by_case(weak_list, cases, settings["labels"])
    if weak_list:  # a changed weak-label file is another dataset (resume refuses it)
        settings["weak"] = hashlib.sha256(repr(sorted(map(repr, weak_list))).encode()).hexdigest()
    names = [c.name for c in cases]
    settings = json.loads(json.dumps(settings))
    meta, manifest, todo, split = resume_state(out, settings, cases)
    in_test = sorted(n for n in {c.name for c in weak_only} | set(weak_for) if split[n] == "test")
    if in_test:
        raise InputError(f"case(s) {in_test} have weak labels but fell in the test split; test cases are scored "
                         "against label maps only: pass test_cases= naming cases with label maps and no weak labels.")
    if not todo:
        return manifest  # everything is done: nothing to check or write

    # 1. check every pending case before writing anything
    found: set[int] = set()
    needed = 1 << 20
    notes: dict[str, list[str]] = {}
    for case in tqdm(todo, desc="checking", unit="case", disable=not progress):
        arr, lab, spacing = _read_case(case, labels=settings["labels"])
        _check_normalizable(arr, spacing, case, settings)
        needed += check_slices(arr, _slice_axis(arr, spacing, settings), case.image, settings)
        check_weak(weak_for.get(case.name, []), case, arr.shape, _slice_axis(arr, spacing, settings), {})
        found |= {a.label for a in weak_for.get(case.name, [])}
        for note in modality_notes(arr, settings):
            notes.setdefault(note, []).append(case.name)
        found |= _values(lab)
        del arr, lab
    used = labels_to_extract(settings["labels"], found, source, cases, meta)
    longest = max(len(str((out / "masks" / n / f"0000_l{max(used)}_c99999.png").absolute()).encode()) for n in names)
    if longest >= 4096:
        raise InputError(f"the paths under {out} would be {longest} bytes long (the limit is 4096); use a "
                         "shorter out_dir or shorter case names.")
    check_free_space(out, needed, f"preparing {len(todo)} case(s)")
    for note, where in notes.items():
        warnings.warn(f"case(s) {where[:5]}{' …' if len(where) > 5 else ''}: {note}.", stacklevel=2)
    shared = _shared_split(cases, split)
    if shared:
        warnings.warn(shared, stacklevel=2)

    # 2. write, holding out/.lock: settings and split first, then case by case (files, rows, status)
    created = [p for p in [out, *out.parents] if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(out, "preprocess")  # fails at once if another run writes into out
    try:
        lock.acquire()
    except InputError:
        remove_empty_folders(created)
        raise
    try:
        if resume_state(out, settings, cases)[0] != meta:
            raise InputError(f"{out} was changed by another run while this one was checking; re-run.")
        for stale in out.glob(TMP_PREFIX + "*"):  # left by a killed run (we hold the lock)
            stale.unlink(missing_ok=True)
        return _write(out, cases, todo, meta, manifest, settings, used, split, progress, created, weak_for, shared)
    except InputError:
        lock.release()
        remove_empty_folders(created)
        raise
    finally:
        lock.release()


def _shared_split(cases, split: dict) -> str | None:
    """The warning of :func:`~medsam_lite.data.sources.split_note` when a test case shares a source
    scan (same file, same DICOM series, slabs of one scan) with a training case; ``None`` otherwise."""
    paths = {c.name: c.image for c in cases if isinstance(c.image, (str, Path))}
    test = {n: p for n, p in paths.items() if split.get(n) == "test"}
    train = {n: p for n, p in paths.items() if split.get(n) == "train"}
    return split_note(train, test) if test and train else None


def _write(out, cases, todo, meta, manifest, settings, used, split, progress, created, weak_by_case=None,
           shared=None) -> pd.DataFrame:
    if meta is None:
        meta = dict(format=FORMAT, status="in progress", image_size=settings["image_size"],
                    modality=settings["modality"], window=settings["window"], min_pixels=settings["min_pixels"],
                    min_mm2=settings["min_mm2"], seed=settings["seed"], labels={}, split=split,
                    settings=settings, cases={},
                    preset=IntensityPreset.resolve(settings["modality"], settings["window"]).to_dict())
    meta["status"] = "in progress"
    meta["labels"] = {str(k): v for k, v in used.items()}
    meta["shared_sources"] = shared  # evaluate(split="test") repeats it
    pending = {c.name for c in todo}
    meta["cases"] = {c.name: {"status": "pending", "image": str(c.image), "label": str(c.label)}
                     if c.name in pending else meta["cases"][c.name] for c in cases}
    rows = manifest[~manifest["case"].isin(pending)].to_dict("records")
    hint = f"Cases already done are kept: free some space and re-run the same call to resume into {out}."
    # dataset.json first: a run killed before the manifest exists leaves a folder a re-run resumes
    atomic_write_text(out / "dataset.json", json.dumps(meta, indent=1), hint=hint)
    atomic_write_text(out / "manifest.csv", manifest_frame(rows).to_csv(index=False), hint=hint)
    for case in tqdm(todo, desc="preparing", unit="case", disable=not progress):
        for sub in ("images", "masks"):
            shutil.rmtree(out / sub / case.name, ignore_errors=True)  # left by an interrupted run
        counts: dict = {}
        notes: list[str] = []
        try:
            new = _prepare_case(case, out, settings, used, split[case.name], counts, notes,
                                (weak_by_case or {}).get(case.name))
        except InputError as exc:  # a full disk / lost permission: this case's files go, done ones stay
            for sub in ("images", "masks"):
                shutil.rmtree(out / sub / case.name, ignore_errors=True)
            raise InputError(f"{exc} {hint}" if hint not in str(exc) else str(exc)) from None
        for note in notes:  # said once per case; kept in dataset.json as cases[name]["label_notes"]
            warnings.warn(f"case {case.name}: {note}.", stacklevel=2)
        if not new:
            warnings.warn(f"case {case.name} has no target that passes the minimum size "
                          f"({minimum_text(settings)}).", stacklevel=3)
        rows += new
        atomic_write_text(out / "manifest.csv", manifest_frame(rows).to_csv(index=False), hint=hint)
        meta["cases"][case.name].update(
            status="done", slices=len({r["slice"] for r in new}), targets=len(new),
            axis=new[0]["axis"] if new else None,
            targets_per_label={str(k): v for k, v in counts.items()}, label_notes=notes)
        meta["targets_per_label"] = per_label(meta, used)
        meta["status"] = "done" if all(c["status"] == "done" for c in meta["cases"].values()) else "in progress"
        atomic_write_text(out / "dataset.json", json.dumps(meta, indent=1), hint=hint)
    report(meta, used, settings, progress)
    return open_dataset(out).manifest


#: Alias of :func:`preprocess`, the name used in the docs of the pipeline.
prepare_dataset = preprocess
