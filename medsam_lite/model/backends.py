"""Fast CPU inference backends for the frozen model parts: OpenVINO, ONNX Runtime, or torch.

:func:`build_runtime` exports the image encoder and the prompt encoder + mask decoder to ONNX once
(cached on disk, keyed by each part's weights), loads each part into its backend (``auto``: the one
measured fastest here, per part — :mod:`.backend_choice`) and returns a :class:`CompiledRuntime`
with the same two calls as the torch model:

* ``encode(x)``: ``B×3×S×S`` float32 **model-input** image(s) → ``B×256×64×64`` float32 embeddings;
* ``decode(embedding, boxes)``: one image's ``1×256×64×64`` embedding and ``N×4`` float32 XYXY
  boxes in **model-input** pixels → ``(low_res_logits N×1×256×256, iou N×1)``, the torch decoder's
  numbers with ``multimask_output=False``; all boxes in one call.

Exports live in ``$MEDSAM_LITE_CACHE`` (default ``~/.cache/medsam_lite``) under
``exports/<part>-<sha16 of the part's state dict>-<medsam_lite version>-<backend>/`` beside a
``meta.json`` holding every exported file's SHA-256. A file that does not match (truncated, edited,
another version) is rebuilt, never trusted; a fine-tuned decoder has other weights, hence its own
export; beyond ``$MEDSAM_LITE_CACHE_MAX_MB`` (default 500) the least recently used exports are evicted
(:mod:`.exportcache`, which also decides once whether the cache can be used at all). In fp32 the
embeddings agree with torch eager to ~1e-5 relative; ``precision="bf16"`` (OpenVINO only) is ~1.7x
faster again at ~4 % embedding error. Training stays in torch. Compiled models
are cached beside the exports (:mod:`.sessions`), and a manifest per checkpoint lets a process without
torch find its exports (:mod:`.exported`).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..fileutil import atomic_folder, atomic_write_text, file_sha256
from .hashing import state_sha256
from . import exportcache
from .exportcache import cache_problem, default_cache_dir, export_folder, package_version, verify_export
from .sessions import GraphSession, as_array, openvino_cpu_has_bf16

from .backend_choice import (PIP_INSTALL, BACKENDS, auto_choice, available_backends, machine_key,
                             resolve_backend, split_backend)

PRECISIONS = ("fp32", "bf16")
_OPSET = 17


# --------------------------------------------------------------------------------------------
# What gets exported
# --------------------------------------------------------------------------------------------
class DecoderGraph(torch.nn.Module):
    """Prompt encoder (boxes only) + mask decoder for ONE image embedding and N boxes.

    Written from the decoder's parts, so it gives the same numbers for LiteMedSAM's decoder (which
    pairs embedding i with box i) and segment_anything's (which repeats one embedding per box):
    the single embedding is broadcast to the N boxes here, as SAM does.
    Inputs ``embedding 1×C×h×w``, ``boxes N×4`` XYXY model-input pixels; outputs
    ``(logits N×1×4h×4w, iou N×1)`` (mask token 0, i.e. ``multimask_output=False``).
    """

    def __init__(self, prompt_encoder, mask_decoder):
        super().__init__()
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        with torch.no_grad():
            self.register_buffer("image_pe", prompt_encoder.get_dense_pe().detach().clone())

    def forward(self, embedding: torch.Tensor, boxes: torch.Tensor):
        pe, md = self.prompt_encoder, self.mask_decoder
        corners = pe.pe_layer.forward_with_coords((boxes + 0.5).reshape(-1, 2, 2), pe.input_image_size)
        corners = corners + torch.stack([pe.point_embeddings[2].weight[0], pe.point_embeddings[3].weight[0]])
        n = corners.shape[0]
        output_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(n, -1, -1), corners], dim=1)
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        src = (embedding + dense).expand(n, -1, -1, -1)
        pos_src = self.image_pe.expand(n, -1, -1, -1)
        c, h, w = src.shape[1], src.shape[2], src.shape[3]
        hs, src = md.transformer(src, pos_src, tokens)
        mask_token = hs[:, 1, :]
        upscaled = md.output_upscaling(src.transpose(1, 2).reshape(n, c, h, w))
        hyper = md.output_hypernetworks_mlps[0](mask_token)  # N×C'
        uc, uh, uw = upscaled.shape[1], upscaled.shape[2], upscaled.shape[3]
        logits = torch.bmm(hyper.unsqueeze(1), upscaled.reshape(n, uc, uh * uw)).reshape(n, 1, uh, uw)
        iou = md.iou_prediction_head(hs[:, 0, :])[:, :1]
        return logits, iou


def _export(part: str, module: torch.nn.Module, path: Path, input_size: int) -> None:
    """Write ``module`` (on CPU, float32, eval) to the ONNX file ``path``."""
    if part == "encoder":
        args = (torch.zeros(1, 3, input_size, input_size),)
        names, outputs = ["image"], ["embedding"]
        dynamic = None  # TinyViT's reshapes bake the batch size into the graph: one image per call
    elif hasattr(module, "export_args"):  # a graph that names its own inputs (model/prompt_graph.py)
        args, names, outputs, dynamic = module.export_args()
    else:
        emb = module.image_pe  # 1×C×h×w, same shape as one embedding
        args = (torch.zeros_like(emb), torch.tensor([[10.0, 10.0, 100.0, 100.0], [20.0, 30.0, 90.0, 120.0]]))
        names, outputs = ["embedding", "boxes"], ["low_res_logits", "iou"]
        dynamic = {"boxes": {0: "n"}, "low_res_logits": {0: "n"}, "iou": {0: "n"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=names, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=_OPSET, dynamo=False)


def _export_module(part: str, image_encoder, prompt_encoder, mask_decoder) -> torch.nn.Module:
    """A CPU float32 eval copy of what gets exported (the caller's modules are never touched)."""
    import copy

    if part == "encoder":
        module = copy.deepcopy(image_encoder)
    else:
        module = DecoderGraph(copy.deepcopy(prompt_encoder), copy.deepcopy(mask_decoder))
    return module.cpu().float().eval()


#: Export folders this process has built or loaded: never evicted by it (:func:`.exportcache.evict`).
_IN_USE: set = set()


class CacheUnusable(OSError):
    """The export cache cannot hold an export (a file in its place, read-only, full disk)."""


def export_cached(part: str, make_module, key: str, backend: str, cache_dir: Path, input_size: int,
                   progress: bool, force: bool = False) -> Path:
    """Path of a verified ONNX export of ``part``, building (atomically) what is missing or bad.

    Two processes exporting into one cache take its lock (``exports/.lock``) in turn: the second
    finds the first's export verified and uses it. Raises :class:`CacheUnusable` when the cache
    cannot be written (:class:`CompiledRuntime` then runs that part in torch, with one warning).
    """
    from ..fileutil import FolderLock

    folder = export_folder(cache_dir, part, key, backend)
    if not force and verify_export(folder, part, key, backend) is None:
        _IN_USE.add(folder)
        exportcache.touch(folder)  # its last use, for the size cap's LRU order
        return folder / f"{part}.onnx"  # a sound export: no lock, nothing written
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with FolderLock(folder.parent, "export", wait=None):  # the one lock (fileutil): wait for the other exporter
            path = _export_locked(folder, part, make_module, key, backend, input_size, progress, force)
            _IN_USE.add(folder)
            exportcache.evict(folder.parent, keep=_IN_USE)  # the cache grew: keep it under its size cap (exportcache)
            return path
    except OSError as exc:
        raise CacheUnusable(exc.errno, f"{exc.strerror or exc} ({exc.filename or folder.parent})") from exc


def _export_locked(folder: Path, part: str, make_module, key: str, backend: str, input_size: int,
                   progress: bool, force: bool) -> Path:
    if not force:
        problem = verify_export(folder, part, key, backend)
        if problem is None:
            return folder / f"{part}.onnx"
        if folder.exists():
            print(f"medsam_lite: cached {part} export {folder} is {problem}; rebuilding it.", file=sys.stderr)
    if progress:
        print(f"medsam_lite: exporting the {part} to ONNX for {backend} (once per weights, a few seconds) "
              f"→ {folder.name} in the export cache", file=sys.stderr)  # no absolute path in stored outputs
    start = time.perf_counter()
    try:
        with atomic_folder(folder) as tmp:
            twins = [f for b in BACKENDS if not force and b != backend for f in [folder.with_name(
                folder.name[:-len(backend)] + b)] if verify_export(f, part, key, b) is None]  # the same ONNX, another backend
            if twins:
                for f in twins[0].iterdir():
                    if f.name != "meta.json":
                        shutil.copy2(f, tmp / f.name)
            else:
                _export(part, make_module(), tmp / f"{part}.onnx", input_size)
            files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            meta = {"part": part, "weights_sha256": key, "medsam_lite": package_version(), "backend": backend,
                    "opset": _OPSET, "torch": torch.__version__, "files": files,
                    "export_seconds": round(time.perf_counter() - start, 2)}
            atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=1))
    except OSError:  # another process finished the same export first: use theirs if it is sound
        if verify_export(folder, part, key, backend) is not None:
            raise
    if progress:
        print(f"medsam_lite: {part} export done in {time.perf_counter() - start:.1f} s.", file=sys.stderr)
    return folder / f"{part}.onnx"


def _warn_cache(cache_dir: Path, exc: OSError, backend: str) -> None:
    warnings.warn(f"medsam_lite: the export cache {cache_dir} is unusable ({exc.strerror or exc}); running the model "
                  f"in torch instead of {backend} (correct, slower). Fix: set MEDSAM_LITE_CACHE to a writable "
                  "folder with free space (e.g. export MEDSAM_LITE_CACHE=$TMPDIR/medsam_lite), or pass "
                  "backend='torch' to skip the export.", CacheWarning, stacklevel=2)


class CacheWarning(UserWarning):
    """The export cache could not be used; the model runs in torch (see :func:`build_runtime`)."""


# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------
class CompiledRuntime:
    """The frozen encoder and decoder, each running in its backend (see the module docstring).

    Attributes:
        name: ``"openvino"``, ``"onnxruntime"``, ``"torch"`` (eager, nothing exported), or an
            ``"encoder+decoder"`` pair such as ``"openvino+onnxruntime"``.
        encoder_backend, decoder_backend: the backend of each part.
        precision: ``"fp32"`` or ``"bf16"``.
        threads: the backend's intra-op threads.
        encoder_path, decoder_path: the verified ONNX files in the cache (``None`` for torch).
        report: one line saying which backend runs each part and why (``auto``'s measurements).
    """

    def __init__(self, name, precision, threads, modules, settings, encoder=None, encoder_path=None,
                 sessions=None, report=None):
        self.name, self.precision, self.threads = name, precision, int(threads)
        self.encoder_backend, self.decoder_backend = split_backend(name)
        self.report = report or f"medsam_lite backend {name} (encoder {self.encoder_backend}, decoder " \
                                f"{self.decoder_backend}; chosen by the caller)"
        self._modules = modules  # (image_encoder, prompt_encoder, mask_decoder) of the torch model
        self._settings = settings  # cache_dir, progress, input_size
        self.encoder_path, self.decoder_path = encoder_path, None
        self._encoder, self._decoder = encoder, None
        sessions = sessions or {}
        try:
            if self.encoder_backend != "torch" and self._encoder is None and modules[0] is not None:
                self.encoder_path, self._encoder = sessions.get("encoder") or self._session("encoder")
            if self.decoder_backend != "torch":
                self.decoder_path, self._decoder = sessions.get("decoder") or self._session("decoder")
        except CacheUnusable as exc:  # a read-only home, MEDSAM_LITE_CACHE naming a file, a full disk
            _warn_cache(settings["cache_dir"], exc, name)
            if self._encoder is None:  # every part in torch eager (same interface)
                self.name, self.precision = "torch", "fp32"
                self.encoder_backend = self.decoder_backend = "torch"
            else:
                self.decoder_backend = "torch"
                self._decoder = None

    def _session(self, part: str):
        backend = self.encoder_backend if part == "encoder" else self.decoder_backend
        path = self._export(part)
        return path, GraphSession(backend, path, self.precision, self.threads)

    def _export(self, part: str, force: bool = False) -> Path:
        enc, pe, md = self._modules
        key = state_sha256(enc) if part == "encoder" else state_sha256(pe, md)
        backend = self.encoder_backend if part == "encoder" else self.decoder_backend
        return export_cached(part, lambda: _export_module(part, enc, pe, md), key, backend,
                              self._settings["cache_dir"], self._settings["input_size"],
                              self._settings["progress"], force=force)

    def __repr__(self) -> str:
        return f"CompiledRuntime(name={self.name!r}, precision={self.precision!r}, threads={self.threads})"

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``B×3×S×S`` float32 model input(s) → ``B×256×64×64`` float32 embeddings on the CPU."""
        enc = self._modules[0]
        if enc is None:
            raise InputError("this runtime was built without an image encoder (image_encoder=None); "
                             "pass the model's image_encoder to build_runtime to encode images.")
        if self._encoder is None:
            return enc(x.to(next(enc.parameters()).device, torch.float32)).float().cpu()
        arr = as_array(x, "x (B×3×S×S model input)", 4)
        return torch.from_numpy(np.concatenate([self._encoder.run(arr[i:i + 1])[0] for i in range(len(arr))]))

    @torch.no_grad()
    def decode(self, embedding: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One image's embedding and ``N`` boxes → ``(low_res_logits N×1×256×256, iou N×1)`` float32.

        Args:
            embedding: ``1×256×64×64`` (or ``256×64×64``) float embedding of ONE image.
            boxes: ``N×4`` (or ``4``) XYXY boxes in model-input pixels, ``N >= 1``.
        """
        if torch.is_tensor(embedding) and embedding.ndim == 3:
            embedding = embedding[None]
        if torch.is_tensor(boxes) and boxes.ndim == 1:
            boxes = boxes[None]
        emb = as_array(embedding, "embedding (1×256×64×64)", 4)
        box = as_array(boxes, "boxes (N×4 XYXY, model-input pixels)", 2)
        if emb.shape[0] != 1:
            raise InputError(f"decode takes the embedding of ONE image (1×256×64×64), got {emb.shape}; "
                             "call it once per image.")
        if box.shape[0] < 1 or box.shape[1] != 4:
            raise InputError(f"boxes must be N×4 XYXY with N >= 1, got shape {box.shape}.")
        if self._decoder is None:
            _, pe, md = self._modules
            dev = next(md.parameters()).device
            sparse, dense = pe(points=None, boxes=torch.from_numpy(box).to(dev)[:, None, :], masks=None)
            logits, iou = md(image_embeddings=torch.from_numpy(emb).to(dev), image_pe=pe.get_dense_pe(),
                             sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                             multimask_output=False)
            return logits.float().cpu(), iou.float().cpu()
        logits, iou = self._decoder.run(emb, box)
        return torch.from_numpy(logits), torch.from_numpy(iou)

    def with_decoder(self, prompt_encoder, mask_decoder) -> "CompiledRuntime":
        """The same encoder with another (e.g. fine-tuned) decoder, exported under its own hash."""
        modules = (self._modules[0], prompt_encoder, mask_decoder)
        return CompiledRuntime(self.name, self.precision, self.threads, modules, self._settings,
                               encoder=self._encoder, encoder_path=self.encoder_path, report=self.report)


def build_runtime(image_encoder, prompt_encoder, mask_decoder, *, backend: str, precision: str = "fp32",
                  threads: int | None = None, cache_dir=None, progress: bool = True) -> CompiledRuntime:
    """Export (once, cached) and load the frozen parts into ``backend``.

    Args:
        image_encoder, prompt_encoder, mask_decoder: the torch modules (their weights are hashed;
            they are copied to the CPU in float32 for the export and never modified).
            ``image_encoder=None`` builds a decoder-only runtime (``encode`` then refuses).
        backend: ``"auto"``, one of :data:`BACKENDS`, or an ``"encoder+decoder"`` pair
            (``"openvino+onnxruntime"``). ``"auto"`` (assumes the CPU; fp32) runs each part in the
            backend measured fastest on this machine (:mod:`.backend_choice`: timed once per CPU
            model, thread count and package versions, cached in ``<cache_dir>/exports/``; the
            runtime's ``report`` says what was picked and why). ``"torch"`` returns an eager runtime
            with the same interface.
        precision: ``"fp32"`` (default; embeddings within 1e-4 relative of torch eager) or
            ``"bf16"`` (OpenVINO on a CPU with AVX-512 BF16 or AMX only; faster, ~4 % embedding error).
        threads: the backend's threads (default ``torch.get_num_threads()``).
        cache_dir: the cache root (default :func:`default_cache_dir`); exports go in ``exports/``.
        progress: print one line to stderr when an export is built or ``auto`` measured.

    Raises:
        InputError: an unknown or missing backend, an unknown precision, bf16 without OpenVINO or
            on a CPU without native bf16, threads that are not a positive integer.
    """
    auto = backend == "auto"
    backend = resolve_backend(backend, "cpu")
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}.")
    if precision == "bf16" and backend != "openvino":
        raise InputError(f"precision='bf16' needs backend='openvino' (got {backend!r}); install it with "
                         f"`{PIP_INSTALL['openvino']}` and pass backend='openvino', or use precision='fp32'.")
    if precision == "bf16" and not openvino_cpu_has_bf16():
        raise InputError("precision='bf16' needs a CPU with native bf16 (AVX-512 BF16 or AMX); this one has "
                         "neither, and OpenVINO would run fp32 while reporting bf16 — use precision='fp32'.")
    if threads is None:
        threads = torch.get_num_threads()
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise InputError(f"threads must be a positive integer (or None for torch.get_num_threads()), got {threads!r}.")
    settings = {"cache_dir": Path(cache_dir) if cache_dir is not None else default_cache_dir(),
                "progress": bool(progress), "input_size": int(prompt_encoder.input_image_size[0])}
    modules = (image_encoder, prompt_encoder, mask_decoder)
    if backend != "torch":  # decided once, for every errno and depth of the path: torch, one warning
        problem = cache_problem(settings["cache_dir"])
        if problem is not None:
            _warn_cache(settings["cache_dir"], problem, backend)
            return CompiledRuntime("torch", "fp32", threads, modules, settings)
    if auto and precision == "fp32" and image_encoder is not None and len(available_backends()) > 1:
        return _auto_runtime(modules, int(threads), settings)
    return CompiledRuntime(backend, precision, threads, modules, settings)


def _auto_runtime(modules, threads: int, settings: dict) -> CompiledRuntime:
    """``auto``: each part in the backend measured fastest here (cached per machine; see :mod:`.backend_choice`)."""
    enc, pe, md = modules
    arch = f"{sum(p.numel() for p in enc.parameters())}-{sum(p.numel() for p in md.parameters())}-" \
           f"{settings['input_size']}"
    choice, built = auto_choice(lambda name: CompiledRuntime(name, "fp32", threads, modules, settings),
                                settings["input_size"], (int(pe.embed_dim), *map(int, pe.image_embedding_size)),
                                machine_key(threads, arch), settings["cache_dir"], settings["progress"])
    sessions = {part: (rt.encoder_path, rt._encoder) if part == "encoder" else (rt.decoder_path, rt._decoder)
                for part, rt in ((p, built.get(choice[p])) for p in ("encoder", "decoder")) if rt is not None}
    return CompiledRuntime(choice["name"], "fp32", threads, modules, settings, sessions=sessions,
                           report=choice["report"])
