"""medsam_lite: segment anything in medical images from a bounding box, and fine-tune it.

Public API (see each function's docstring for shapes and conventions):

* :func:`load_model`, :class:`Predictor`, :func:`predict` — box-prompted segmentation.
* :func:`preprocess` (alias :func:`prepare_dataset`) — scans + label maps → a training set.
* :func:`embed`, :func:`finetune`, :func:`evaluate` (:func:`dice`, :func:`nsd`, :func:`predict_case`) —
  embeddings computed once, mask-decoder fine-tuning, DSC/NSD per case.
* :func:`simulate_clicks` — Dice after a box and each corrective click of a robot user;
  ``evaluate(..., clicks=K)`` adds Dice@k and NoC@85/90.
* :func:`predict_volume`, :class:`VolumePredictor`, :func:`box_from_recist` — a 3D scan from one box.
* :func:`predict_label_map`, :func:`predict_volume_labels` — a label map in, a label map out.
* :func:`run_challenge` — the CVPR24 "MedSAM on Laptop" npz format in and out.
* :class:`InputError` — the error every public function raises on bad input.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

from .errors import CheckpointError, InputError, StoreMismatchError
from .model.intensity import CT_WINDOWS, IntensityPreset, normalize_intensity
from .model.geometry import box_from_mask, xywh_to_xyxy, xyxy_to_xywh
from .model.models import MODELS, SamModel, load_model
from .model.inference import Embedding, decode, encode
from .interactive.predict import Predictor, predict
from .interactive.volume import VolumePredictor, box_from_recist, predict_volume
from .data.embed import embed
from .evaluate import dice, evaluate, nsd, predict_case
from .clicks import simulate_clicks
from .train.finetune import FinetuneConfig, finetune
from .data.preprocess import prepare_dataset, preprocess
from .downloads import fetch_checkpoint
from . import io
from .interactive import labelmaps
from .interactive.labelmaps import predict_label_map, predict_volume_labels
from .interactive.challenge import run_challenge

try:
    __version__ = _version("medsam-lite")  # one source of truth: pyproject.toml, through the installed metadata
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name):
    """``medsam_lite.widgets`` on first use (ipywidgets is only imported when asked for)."""
    if name == "widgets":
        import importlib

        return importlib.import_module(".interactive.widgets", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "CT_WINDOWS",
    "Embedding",
    "IntensityPreset",
    "MODELS",
    "CheckpointError",
    "InputError",
    "Predictor",
    "SamModel",
    "StoreMismatchError",
    "VolumePredictor",
    "box_from_mask",
    "box_from_recist",
    "decode",
    "dice",
    "embed",
    "encode",
    "evaluate",
    "fetch_checkpoint",
    "FinetuneConfig",
    "finetune",
    "load_model",
    "normalize_intensity",
    "nsd",
    "predict",
    "predict_case",
    "predict_label_map",
    "predict_volume",
    "predict_volume_labels",
    "prepare_dataset",
    "preprocess",
    "run_challenge",
    "simulate_clicks",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
]
