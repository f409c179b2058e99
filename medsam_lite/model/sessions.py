"""One loaded ONNX graph in OpenVINO or ONNX Runtime, run from numpy arrays (thread-safe; no torch).

Compiled models are cached beside the exports, in ``<cache>/exports/compiled/<export folder>/``, so a
second process compiles nothing: OpenVINO's model cache (``CACHE_DIR``) and ONNX Runtime's optimised
graph (``SessionOptions.optimized_model_filepath``, written once and loaded with graph optimisation
off, see :func:`_ort_session`). An unusable cache folder only costs the compilation.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from ..errors import InputError


def openvino_cpu_has_bf16() -> bool:
    """Whether OpenVINO runs bf16 natively on this CPU (AVX-512 BF16 or AMX: ``"BF16"`` among the CPU
    plugin's ``OPTIMIZATION_CAPABILITIES``). Elsewhere OpenVINO silently runs a bf16 hint in f32."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class GraphSession:
    """One loaded ONNX graph in one backend: ``run(*arrays) -> list of float32 arrays``."""

    def __init__(self, backend: str, path: Path, precision: str, threads: int):
        self.lock = threading.Lock()
        if backend == "openvino":
            import openvino as ov

            core = ov.Core()
            config = {"INFERENCE_NUM_THREADS": int(threads), "PERFORMANCE_HINT": "LATENCY",
                      "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
            cache = _compiled_dir(path, "openvino")
            if cache is not None:  # OpenVINO keys its blobs by the model, device and config itself
                config["CACHE_DIR"] = str(cache)
            self._compiled = core.compile_model(str(path), "CPU", config)
            self._request = self._compiled.create_infer_request()
        else:
            self._ort = _ort_session(path, threads)
            self._names = [i.name for i in self._ort.get_inputs()]
        self.backend = backend

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        with self.lock:  # one infer request per graph; the lock makes it safe for a prefetch thread
            if self.backend == "openvino":
                self._request.infer(list(arrays))
                return [np.array(self._request.get_output_tensor(i).data, dtype=np.float32)
                        for i in range(len(self._compiled.outputs))]
            return [np.asarray(o, dtype=np.float32) for o in
                    self._ort.run(None, dict(zip(self._names, arrays)))]


def _compiled_dir(path: Path, what: str) -> Path | None:
    """``<cache>/exports/compiled/<export folder>/<what>/`` for the export ``path`` (created), or ``None``
    when it cannot be made (a read-only cache: the model is then compiled in memory each time)."""
    folder = Path(path).parent
    out = folder.parent / "compiled" / folder.name / what
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return out


def _ort_options(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # idle workers sleep instead of spinning: spinning ORT threads took the CPU from the torch /
    # numpy work after each decoder call (bench/bench_ort_spinning.py, bench/RESULTS.md)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _ort_session(path: Path, threads: int):
    """An ONNX Runtime CPU session for ``path``; its optimised graph is saved once beside the exports
    and loaded by later processes with graph optimisation off (keyed by the export's SHA-256 in its
    ``meta.json``, the ONNX Runtime version and the threads; a file that does not match is rebuilt)."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    cache = _compiled_dir(path, "onnxruntime")
    if cache is None:
        return ort.InferenceSession(str(path), _ort_options(threads), providers=providers)
    key = {"source": _source_sha(path), "onnxruntime": ort.__version__, "threads": int(threads)}
    optimized, tag = cache / f"{Path(path).stem}.optimized.onnx", cache / f"{Path(path).stem}.optimized.json"
    try:
        if key["source"] and json.loads(tag.read_text(encoding="utf-8")) == key and optimized.is_file():
            options = _ort_options(threads)
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            return ort.InferenceSession(str(optimized), options, providers=providers)
    except (OSError, ValueError):
        pass
    except Exception:  # noqa: BLE001 - a damaged optimised file: rebuild it below
        pass
    options = _ort_options(threads)
    tmp = cache / f".tmp-{os.getpid()}-{threading.get_ident()}-{Path(path).stem}.onnx"
    options.optimized_model_filepath = str(tmp)
    session = ort.InferenceSession(str(path), options, providers=providers)
    try:
        if key["source"] and tmp.is_file():
            os.replace(tmp, optimized)
            tmp_tag = tag.with_name(f".tmp-{os.getpid()}-{tag.name}")
            tmp_tag.write_text(json.dumps(key), encoding="utf-8")
            os.replace(tmp_tag, tag)
    except OSError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return session


def _source_sha(path: Path) -> str | None:
    """The export's SHA-256 as its ``meta.json`` records it (verified when the export was looked up)."""
    try:
        return json.loads((Path(path).parent / "meta.json").read_text(encoding="utf-8"))["files"][Path(path).name]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def prompt_arrays(boxes, points, point_labels, mask_input, n: int, mask_hw) -> tuple[np.ndarray, ...]:
    """The :class:`~medsam_lite.model.prompt_graph.PromptGraph` inputs (float32 arrays) for CPU float32
    tensors (or anything with their ``.numpy()``) or ``None``.

    Points come first, then the box corners labelled 2 and 3, or the padding point (label -1) when
    there is no box, as SAM's prompt encoder orders them; a zero mask with ``has_mask_input = 0``
    when there is no mask input.
    """
    coords = [points.numpy()] if points is not None else []
    labels = [point_labels.numpy()] if points is not None else []
    if boxes is not None:
        coords.append(boxes.numpy().reshape(n, 2, 2))
        labels.append(np.tile(np.array([[2, 3]], np.float32), (n, 1)))
    else:
        coords.append(np.zeros((n, 1, 2), np.float32))
        labels.append(-np.ones((n, 1), np.float32))
    has_mask = np.array([0.0 if mask_input is None else 1.0], np.float32)
    mask = np.zeros((n, 1, *mask_hw), np.float32) if mask_input is None else mask_input.numpy()
    return (np.ascontiguousarray(np.concatenate(coords, 1), np.float32),
            np.ascontiguousarray(np.concatenate(labels, 1), np.float32),
            np.ascontiguousarray(mask, np.float32), has_mask)


def as_array(x, what: str, ndim: int) -> np.ndarray:
    """``x`` (a CPU or GPU torch tensor with ``ndim`` dimensions) as a contiguous float32 array."""
    import torch

    if not torch.is_tensor(x) or x.ndim != ndim:
        raise InputError(f"{what} must be a {ndim}-D torch tensor, got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}.")
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())


def is_tensor(x) -> bool:
    """Whether ``x`` is a torch tensor (never imports torch: a tensor cannot exist before it is)."""
    torch = sys.modules.get("torch")
    return torch is not None and torch.is_tensor(x)


def no_grad():
    """``torch.no_grad()`` when torch is imported, else nothing to do."""
    torch = sys.modules.get("torch")
    return torch.no_grad() if torch is not None else nullcontext()


def from_numpy(array: np.ndarray):
    """``torch.from_numpy(array)`` (imports torch)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(array))
