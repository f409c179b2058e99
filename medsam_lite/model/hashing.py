"""The package's one hash of model weights (export-cache keys, embedding-store signatures).

File hashes are :func:`medsam_lite.fileutil.file_sha256`.
"""

from __future__ import annotations

import hashlib

import torch


def state_sha256(*modules: torch.nn.Module) -> str:
    """SHA-256 hex of the modules' state dicts: per module, each tensor in name order as
    ``"name|dtype|shape|"`` and its raw bytes (CPU, contiguous)."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
