"""The bundled sample data (``data_samples/``) behind one function each.

The files are synthetic variants of the MNI ICBM152 2009 template (see ``data_samples/NOTICE.md``).
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


def label_names() -> dict[int, str]:
    """Label value → name for the sample label maps."""
    path = data_samples_dir() / "labels.json"
    if path.exists():
        return {int(k): v for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    return dict(SAMPLE_LABELS)
