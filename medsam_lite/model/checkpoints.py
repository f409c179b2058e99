"""Reading checkpoints safely: plain tensor files, strict loading with useful errors, recorded presets.

:mod:`medsam_lite.model.models` builds models from the table and calls these; they never run code
from a file (``torch.load(..., weights_only=True)``).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import torch

from ..errors import CheckpointError, InputError
from .intensity import IntensityPreset

_VIT_DEPTH = {12: "vit_b", 24: "vit_l", 32: "vit_h"}


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a checkpoint safely (``weights_only=True``).

    Returns:
        ``(state_dict, meta)``: the flat state dict (``module.`` prefixes removed, ``{"model": …}``
        or ``{"state_dict": …}`` unwrapped) and the string entries stored beside it (e.g.
        ``model_name`` in a fine-tuned checkpoint).
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = str(exc).splitlines() or [""]
        why = next((ln for ln in lines if "Unsupported" in ln or "GLOBAL" in ln), lines[0]).strip()
        raise CheckpointError(
            f"{path} was refused: it is not a plain tensor checkpoint and loading it would need to "
            f"run code from the file ({why[:200]}). Only load checkpoints you "
            "trust; re-save them as a state dict with torch.save(model.state_dict(), path)."
        ) from None
    except Exception as exc:  # noqa: BLE001 - arbitrary bytes make the unpickler raise anything (KeyError …)
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {str(exc)[:200]}. "
            "Download it again and compare its size/checksum."
        ) from None
    meta = {k: v for k, v in obj.items() if isinstance(v, str)} if isinstance(obj, dict) else {}
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors; expected torch.save(model.state_dict()).")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}
    return state, meta


def guess_architecture(state: dict[str, torch.Tensor]) -> str:
    """Name the architecture a state dict looks like (``lite_medsam``, ``sam vit_b`` …) or ``unknown``."""
    keys = list(state)
    if any(k.startswith("image_encoder.layers.") for k in keys):
        return "lite_medsam (TinyViT encoder)"
    blocks = {int(k.split(".")[2]) for k in keys if k.startswith("image_encoder.blocks.")}
    if blocks:
        variant = _VIT_DEPTH.get(max(blocks) + 1, f"ViT with {max(blocks) + 1} blocks")
        return f"a SAM/MedSAM {variant} model (medsam_vit_b or sam_{variant})"
    if keys and all(k.startswith(("mask_decoder.", "prompt_encoder.")) for k in keys):
        return "a fine-tuned mask decoder only"
    return "not a SAM-family model"




def recorded_preset(meta: dict, path) -> IntensityPreset | None:
    """The intensity preset a fine-tuned checkpoint recorded (``meta["preset"]``, JSON), or None."""
    if not meta.get("preset"):
        return None
    try:
        return IntensityPreset.from_dict(json.loads(meta["preset"]))
    except (json.JSONDecodeError, InputError) as exc:
        raise CheckpointError(f"{path} records an unreadable intensity preset ({str(exc)[:120]}); re-save it "
                              "with medsam_lite.finetune, or remove its 'preset' entry.") from None




def load_strict(net, state, spec, path: Path, partial_ok: bool = False, known=()) -> None:
    """Load ``state`` into ``net`` (strictly unless ``partial_ok``), refusing files of another architecture
    (names/shapes), integer tensors where weights are float, and NaN/Inf. ``known``: the model names
    the error message offers."""
    own = net.state_dict()
    keys = set(state)
    missing = set(own) - keys if not partial_ok else set()
    unexpected = keys - set(own)
    mismatched = [k for k in keys & set(own) if own[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        looks = guess_architecture(state)
        raise CheckpointError(
            f"{path} does not fit model {spec.name!r} ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(mismatched)} wrongly shaped tensors); it looks like {looks}. "
            f"Pick the matching name in load_model(name=...): {sorted(known)}."
        )
    for key in sorted(keys & set(own)):  # right names and shapes, but not weights of this model
        value, want = state[key], own[key]
        if want.is_floating_point() and not value.is_floating_point():
            raise CheckpointError(
                f"{path}: tensor {key!r} holds {str(value.dtype).replace('torch.', '')} values where the model "
                f"has {str(want.dtype).replace('torch.', '')} weights; the file is not a trained checkpoint "
                "(damaged or written by other code). Download or re-save it.")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(
                f"{path}: tensor {key!r} holds {bad} NaN/Inf values (a diverged training run or a damaged "
                "file); use an earlier checkpoint (e.g. best.pt) or download it again.")
    net.load_state_dict(state, strict=not partial_ok)


#: The click-trained prompt encoder + mask decoder shipped in the package (float16 state dict with
#: ``base_sha256``: the SHA-256 of the weights file whose image encoder it was trained on).
CLICK_DECODER = Path(__file__).parent / "weights" / "click_decoder.pt"


def load_click_decoder(prompt_encoder, mask_decoder, base_sha256: str, path: Path | None = None):
    """``ModuleDict(prompt_encoder=…, mask_decoder=…)``: copies of the given parts with the shipped
    click-trained weights (float32), or ``None`` when there is no such file or it was trained on
    another encoder's embeddings (``base_sha256`` differs)."""
    import copy

    path = Path(path) if path is not None else CLICK_DECODER
    if not path.is_file():
        return None
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if obj.get("base_sha256") != base_sha256:
        return None
    parts = torch.nn.ModuleDict({"prompt_encoder": copy.deepcopy(prompt_encoder),
                                 "mask_decoder": copy.deepcopy(mask_decoder)})
    state = {k: v.float() if v.is_floating_point() else v for k, v in obj["model"].items()}
    load_strict(parts, state, SimpleNamespace(name="click decoder"), path, partial_ok=True)
    return parts.float()
