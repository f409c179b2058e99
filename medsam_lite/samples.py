"""The bundled sample data (``data_samples/``) behind one function each.

``brain_mri/`` and the brain PNGs are synthetic variants of the MNI ICBM152 2009 template;
``ct_abdomen/`` and ``mr_abdomen/`` are real scans from the TotalSegmentator dataset (CC BY 4.0)
with TotalSegmentator's organ labels, cut into cases of 10 axial slices (see ``data_samples/NOTICE.md``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

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
