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

import importlib
import sys
import types
from importlib.metadata import PackageNotFoundError, version as _version

from .errors import CheckpointError, InputError, StoreMismatchError

try:
    __version__ = _version("medsam-lite")  # one source of truth: pyproject.toml, through the installed metadata
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

#: Where each public name lives; imported on first use, so ``import medsam_lite`` imports neither torch nor
#: SimpleITK (a cold ``predict`` then imports only what it runs: bench/bench_coldstart.py).
_LAZY = {
    "CT_WINDOWS": ".model.intensity", "IntensityPreset": ".model.intensity", "normalize_intensity": ".model.intensity",
    "box_from_mask": ".model.geometry", "xywh_to_xyxy": ".model.geometry", "xyxy_to_xywh": ".model.geometry",
    "MODELS": ".model.models", "SamModel": ".model.models", "load_model": ".model.models",
    "Embedding": ".model.inference", "decode": ".model.inference", "encode": ".model.inference",
    "Predictor": ".interactive.predict", "predict": ".interactive.predict",
    "VolumePredictor": ".interactive.volume", "predict_volume": ".interactive.volume",
    "box_from_recist": ".interactive.prompts",
    "embed": ".data.embed",
    "evaluate": ".evaluate", "predict_case": ".evaluate",
    "dice": ".metrics", "nsd": ".metrics",
    "simulate_clicks": ".clicks",
    "FinetuneConfig": ".train.config", "finetune": ".train.finetune",
    "prepare_dataset": ".data.preprocess", "preprocess": ".data.preprocess",
    "fetch_checkpoint": ".downloads",
    "predict_label_map": ".interactive.labelmaps", "predict_volume_labels": ".interactive.labelmaps",
    "run_challenge": ".app.challenge",
}
#: Submodules reachable as attributes (``ml.io``, ``ml.labelmaps``, ``ml.widgets``: ipywidgets on first use).
_SUBMODULES = {"io": ".io", "labelmaps": ".interactive.labelmaps", "widgets": ".interactive.widgets"}


def __getattr__(name):
    """A public name on first use (see ``_LAZY``); it is then bound in the package like any other."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(_SUBMODULES[name], __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


class _Package(types.ModuleType):
    """``medsam_lite.evaluate`` stays the function (as when it was imported eagerly), although the
    import system binds the submodule ``medsam_lite.evaluate`` of the same name when it is imported."""

    @property
    def evaluate(self):
        override = self.__dict__.get("_evaluate_set")
        if override is not None:
            return override
        return importlib.import_module(".evaluate", __name__).evaluate

    @evaluate.setter
    def evaluate(self, value):
        if not isinstance(value, types.ModuleType):  # a user's (or a test's) own binding is kept
            self.__dict__["_evaluate_set"] = value


sys.modules[__name__].__class__ = _Package

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
