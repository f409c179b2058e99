"""medsam_lite: segment anything in medical images from a bounding box, and fine-tune it.

Public API (see each function's docstring for shapes and conventions):

* :func:`load_model`, :class:`Predictor`, :func:`predict` — box-prompted segmentation.
* :class:`InputError` — the error every public function raises on bad input.
"""

from __future__ import annotations

from .evaluate import dice
from .errors import CheckpointError, InputError, StoreMismatchError
from .models import MODELS, SamModel, load_model
from .predict import Predictor, predict
from .transforms import box_from_mask, normalize_intensity, xywh_to_xyxy, xyxy_to_xywh

__version__ = "0.1.0"

__all__ = [
    "MODELS",
    "CheckpointError",
    "InputError",
    "Predictor",
    "SamModel",
    "StoreMismatchError",
    "box_from_mask",
    "dice",
    "load_model",
    "normalize_intensity",
    "predict",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
]
