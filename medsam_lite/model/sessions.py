"""One loaded ONNX graph in OpenVINO or ONNX Runtime, run from numpy arrays (thread-safe)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

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
            self._compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
            self._request = self._compiled.create_infer_request()
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            # idle workers sleep instead of spinning: spinning ORT threads took the CPU from the torch /
            # numpy work after each decoder call (bench/bench_ort_spinning.py, bench/RESULTS.md)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._ort = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
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


def as_array(x: torch.Tensor, what: str, ndim: int) -> np.ndarray:
    if not torch.is_tensor(x) or x.ndim != ndim:
        raise InputError(f"{what} must be a {ndim}-D torch tensor, got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}.")
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
