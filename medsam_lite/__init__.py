"""medsam_lite: segment anything in medical images from a bounding box, and fine-tune it.

Public API (see each function's docstring for shapes and conventions):

* :func:`load_model`, :class:`Predictor`, :func:`predict` — box-prompted segmentation.
* :func:`preprocess` (alias :func:`prepare_dataset`) — scans + label maps → a training set.
* :func:`embed`, :func:`finetune`, :func:`evaluate` (:func:`dice`, :func:`nsd`, :func:`predict_case`) —
  embeddings computed once, mask-decoder fine-tuning, DSC/NSD per case.
* :func:`predict_volume`, :class:`VolumePredictor`, :func:`box_from_recist` — a 3D scan from one box.
* :class:`InputError` — the error every public function raises on bad input.
"""

from __future__ import annotations

from .evaluate import dice
from .embed import embed  # noqa: E402  (the functions below shadow their modules' names)
from .evaluate import evaluate, nsd, predict_case
from .finetune import finetune
from .errors import CheckpointError, InputError, StoreMismatchError
from .models import MODELS, SamModel, load_model
from .predict import Predictor, predict
from .transforms import box_from_mask, normalize_intensity, xywh_to_xyxy, xyxy_to_xywh
from .volume import VolumePredictor, box_from_recist, predict_volume
from .preprocess import prepare_dataset, preprocess  # noqa: E402  (the function shadows the module)

preprocess.normalize_intensity = normalize_intensity  # keeps medsam_lite.preprocess.normalize_intensity

__version__ = "0.1.0"


def __getattr__(name):
    """``medsam_lite.widgets`` on first use (ipywidgets is only imported when asked for)."""
    if name == "widgets":
        import importlib

        return importlib.import_module(".widgets", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "MODELS",
    "CheckpointError",
    "InputError",
    "Predictor",
    "SamModel",
    "StoreMismatchError",
    "VolumePredictor",
    "box_from_mask",
    "box_from_recist",
    "dice",
    "embed",
    "evaluate",
    "finetune",
    "load_model",
    "normalize_intensity",
    "nsd",
    "predict",
    "predict_case",
    "predict_volume",
    "prepare_dataset",
    "preprocess",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
]
