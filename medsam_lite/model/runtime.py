"""Where a loaded model runs: the device check and the compiled CPU runtime ``load_model`` attaches.

``backend=None`` reads ``$MEDSAM_LITE_BACKEND`` (else ``"auto"``); ``"auto"`` picks each part's
backend by measurement (:mod:`.backend_choice`); the runtime itself is built by :mod:`.backends`.
"""

from __future__ import annotations

import os

import torch

from ..errors import InputError
from .backend_choice import BACKENDS, resolve_backend, split_backend
from .backends import build_runtime


def runtime_for(model, backend: str | None, precision: str, device: torch.device):
    """The compiled CPU runtime ``backend`` resolves to for a :class:`~medsam_lite.model.models.SamModel`
    (``backend=None``: ``$MEDSAM_LITE_BACKEND``, else ``"auto"``), or ``None`` for torch eager."""

    if backend is None:
        backend = os.environ.get("MEDSAM_LITE_BACKEND", "").strip() or "auto"
        if backend != "auto" and not all(part in BACKENDS for part in split_backend(backend)):
            raise InputError(f"MEDSAM_LITE_BACKEND={backend!r} is not a backend; set it to 'auto', one of "
                             f"{list(BACKENDS)} or an encoder+decoder pair such as 'openvino+onnxruntime', "
                             "or unset it.")
    if backend == "auto" and precision == "bf16" and device.type == "cpu":
        backend = "openvino"  # the backend with a bf16 path
    resolved = resolve_backend(backend, device)
    if resolved == "torch":
        if precision != "fp32":
            raise InputError(f"precision={precision!r} needs backend='openvino'; with torch use precision='fp32'.")
        return None
    return build_runtime(model.image_encoder, model.prompt_encoder, model.mask_decoder,
                         backend="auto" if backend == "auto" else resolved, precision=precision)


def check_device(device) -> torch.device:
    """``device`` as a ``torch.device`` that exists here (default: CUDA if available, else CPU)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"device {device!r} is not a device name; use 'cpu', 'cuda' or 'cuda:1'.") from None
    if dev.type == "cuda" and (not torch.cuda.is_available()
                               or (dev.index is not None and dev.index >= torch.cuda.device_count())):
        raise InputError(f"device {device!r} is not available here ({torch.cuda.device_count()} CUDA "
                         "device(s)); use device='cpu' or leave device=None.")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device {device!r} is not supported; use 'cpu' or 'cuda'.")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InputError(f"device {device!r} is not available here; use device='cpu'.")
    return dev
