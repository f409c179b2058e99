"""Which backend runs each frozen part: the installed backends, and ``auto``'s choice per part.

``backend="auto"`` on a CPU times every installed backend's encoder and decoder on this machine
(a few interleaved calls each, medians) the first time it is used, keeps the fastest fp32 runtime
for each part — e.g. OpenVINO's encoder with ONNX Runtime's decoder — and caches that choice in
``<cache>/exports/backend_choice.json``, keyed by what decides it: the CPU model, the thread count,
the package versions and the model's architecture. A pair is named ``"encoder+decoder"``
(``"openvino+onnxruntime"``); ``backend=`` / ``$MEDSAM_LITE_BACKEND`` with one name or a pair
force it. Nothing here runs a model: :mod:`.backends` hands in the calls to time.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from ..errors import InputError

#: Every backend name :func:`resolve_backend` accepts (``"auto"`` and ``"enc+dec"`` pairs besides).
BACKENDS = ("torch", "openvino", "onnxruntime")
#: The order ``auto`` falls back to without measurements (and breaks ties in): ONNX Runtime first
#: (bench/RESULTS.md: fastest decoder on both machine kinds measured so far).
_FASTEST_FIRST = ("onnxruntime", "openvino", "torch")
PIP_INSTALL = {"openvino": "pip install openvino onnx", "onnxruntime": "pip install onnxruntime onnx"}
CHOICE_FILE = "backend_choice.json"


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except Exception:  # noqa: BLE001 - a broken install (ImportError, OSError from a DLL …) is "not installed"
        return False


def _backend_ready(backend: str) -> bool:
    # the compiled backends need the ONNX exporter's ``onnx`` package as well
    return backend == "torch" or (_importable(backend) and _importable("onnx"))


def available_backends() -> list[str]:
    """Installed and importable backends, ``auto``'s fallback order (``"torch"`` is last and always present)."""
    return [b for b in _FASTEST_FIRST if _backend_ready(b)]


def split_backend(name: str) -> tuple[str, str]:
    """``"openvino+onnxruntime"`` → ``("openvino", "onnxruntime")`` (encoder, decoder); ``"x"`` → ``("x", "x")``."""
    enc, _, dec = name.partition("+")
    return enc, dec or enc


def resolve_backend(backend: str, device=None) -> str:
    """The backend (or ``"encoder+decoder"`` pair) to use for ``backend`` on ``device``.

    Args:
        backend: ``"auto"``, one of :data:`BACKENDS`, or a pair ``"openvino+onnxruntime"``.
        device: where the model lives (``"cpu"``, ``"cuda"``, a ``torch.device``; ``None`` = CPU).

    Returns:
        ``"auto"`` → on the CPU the first installed of ``"onnxruntime"``, ``"openvino"``, ``"torch"``
        (:func:`~medsam_lite.model.backends.build_runtime` refines ``auto`` per part by
        measurement); on CUDA/MPS ``"torch"``. An explicit name or pair is returned as is once checked.

    Raises:
        InputError: an unknown name; a backend that is not installed (the message gives the
            ``pip install`` line); a compiled backend asked for on a GPU device.
    """
    dev = _device_type(device)
    if backend == "auto":
        return available_backends()[0] if dev == "cpu" else "torch"
    parts = split_backend(backend) if isinstance(backend, str) else (None,)
    if not all(p in BACKENDS for p in parts) or backend.count("+") > 1:
        raise InputError(f"unknown backend {backend!r}; choose 'auto', one of {list(BACKENDS)}, or an "
                         "'encoder+decoder' pair such as 'openvino+onnxruntime'.")
    for part in parts:
        if part == "torch":
            continue
        if dev != "cpu":
            raise InputError(f"backend {part!r} runs on the CPU, but the model is on {device}; use "
                             "backend='torch' on a GPU, or device='cpu'.")
        if not _backend_ready(part):
            raise InputError(f"backend {part!r} is not installed here; install it with "
                             f"`{PIP_INSTALL[part]}`, or use backend='auto' (falls back to torch).")
    return backend


def _device_type(device) -> str:
    """``"cpu"``, ``"cuda"`` … of a device name or ``torch.device`` (``None``: the CPU), without importing torch."""
    if device is None:
        return "cpu"
    if isinstance(device, str):
        return device.split(":", 1)[0].strip()
    import torch

    return torch.device(device).type


def machine_key(threads: int, arch: str) -> dict:
    """What a measured choice depends on: CPU model, threads, package versions, model architecture."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("torch", "onnxruntime", "openvino", "medsam-lite"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return {"cpu": cpu, "machine": platform.machine(), "cpus": os.cpu_count(), "threads": int(threads),
            "versions": versions, "arch": arch}


def _key_id(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def loadable_backends(only=None) -> list[str]:
    """The backends that can run an export already made (no ``onnx`` needed, unlike
    :func:`available_backends`, which can also export), in ``auto``'s order; ``only``: import only these."""
    return [b for b in _FASTEST_FIRST if b == "torch" or ((only is None or b in only) and _importable(b))]


def read_choice(cache_dir: Path, key: dict, installed: list[str] | None = None) -> dict | None:
    """The cached choice for ``key``, or ``None`` (no file, another machine/versions, unreadable, or a
    chosen backend not among ``installed``, default :func:`available_backends`)."""
    try:
        entries = json.loads((Path(cache_dir) / "exports" / CHOICE_FILE).read_text(encoding="utf-8"))
        entry = entries[_key_id(key)]
        installed = available_backends() if installed is None else installed
        ok = entry["key"] == key and all(entry[p] in installed for p in ("encoder", "decoder"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return entry if ok else None


def write_choice(cache_dir: Path, key: dict, choice: dict) -> Path:
    """Add ``choice`` for ``key`` to the cache file (atomically; other machines' entries are kept)."""
    path = Path(cache_dir) / "exports" / CHOICE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        entries = entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
        entries = {}
    entries[_key_id(key)] = {**choice, "key": key}
    from ..fileutil import atomic_write_text  # the one atomic write: the umask's mode (0644), as every cache file

    atomic_write_text(path, json.dumps(entries, indent=1))
    return path


def time_parts(calls: dict, rounds: int = 3, slack: float = 2.0, clock=time.perf_counter) -> dict:
    """Median seconds per call of each backend's parts, timed interleaved (A B A B …).

    Args:
        calls: ``{backend: {"encoder": fn, "decoder": fn}}``, each ``fn()`` one call.
        rounds: timed calls per part (after one warm-up call).
        slack: after the first round, a part more than ``slack`` × the fastest is not timed again.

    Returns:
        ``{backend: {"encoder": seconds, "decoder": seconds}}`` (medians).
    """
    times: dict = {b: {p: [] for p in parts} for b, parts in calls.items()}
    for parts in calls.values():
        for fn in parts.values():
            fn()  # warm-up: first-call allocations, lazy compilation
    for r in range(rounds):
        for part in ("encoder", "decoder"):
            best = min((statistics.median(t[part]) for t in times.values() if t.get(part)), default=None)
            for backend, parts in calls.items():
                if part not in parts or (r and best is not None and times[backend][part][0] > slack * best):
                    continue
                start = clock()
                parts[part]()
                times[backend][part].append(clock() - start)
    return {b: {p: statistics.median(v) for p, v in t.items() if v} for b, t in times.items()}


def pick(timings: dict) -> dict:
    """The fastest backend per part from :func:`time_parts`'s medians (ties: :data:`_FASTEST_FIRST` order).

    Returns:
        ``{"encoder": name, "decoder": name, "timings_ms": {...}, "reason": one line}``.
    """
    order = {b: i for i, b in enumerate(_FASTEST_FIRST)}
    chosen = {}
    for part in ("encoder", "decoder"):
        ranked = sorted((t[part], order.get(b, 99), b) for b, t in timings.items() if part in t)
        chosen[part] = ranked[0][2]
    ms = {b: {p: round(s * 1000, 1) for p, s in t.items()} for b, t in timings.items()}
    reason = "; ".join(f"{part}: " + ", ".join(f"{b} {ms[b][part]:g} ms" for b in sorted(
        ms, key=lambda b: ms[b].get(part, float("inf"))) if part in ms[b]) for part in ("encoder", "decoder"))
    return {"encoder": chosen["encoder"], "decoder": chosen["decoder"], "timings_ms": ms, "reason": reason}


def choose(cache_dir: Path, key: dict, measure) -> dict:
    """The per-part choice for ``key``: from the cache, else ``pick(measure())``, then cached.

    Args:
        measure: a call returning :func:`time_parts`'s result (run only when nothing is cached).

    Returns:
        :func:`pick`'s dict plus ``"cached"`` (bool) and ``"report"``: one line saying what was
        picked and why, for the user.
    """
    entry = read_choice(cache_dir, key)
    cached = entry is not None
    if entry is None:
        entry = pick(measure())
        entry["measured"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        try:
            write_choice(cache_dir, key, entry)
        except (OSError, InputError) as exc:  # the cache filled up since it was checked: measure again next time
            print(f"medsam_lite: the backend choice could not be cached ({exc}).", file=sys.stderr)
    name = pair_name(entry["encoder"], entry["decoder"])
    how = f"cached measurement of {entry.get('measured', '?')}" if cached else "measured now"
    report = (f"medsam_lite backend auto → {name} (encoder {entry['encoder']}, decoder {entry['decoder']}; "
              f"{how}, {key['threads']} thread(s): {entry['reason']})")
    return {**entry, "name": name, "cached": cached, "report": report}


def pair_name(encoder: str, decoder: str) -> str:
    """``("openvino", "onnxruntime")`` → ``"openvino+onnxruntime"``; one name when both are the same."""
    return encoder if encoder == decoder else f"{encoder}+{decoder}"


def auto_choice(make_runtime, input_size: int, embedding_shape, key: dict, cache_dir: Path, progress: bool):
    """:func:`choose` with real measurements: every installed backend's runtime, timed on one input.

    Args:
        make_runtime: ``name -> runtime`` (exports and compiles both parts of that backend).
        input_size, embedding_shape: the model's ``S`` and ``(C, h, w)``.

    Returns:
        ``(choice, built)``: :func:`choose`'s dict and ``{name: runtime}`` of what was built to measure
        (empty when the choice came from the cache).
    """
    from functools import partial

    import torch

    built: dict = {}

    def measure() -> dict:
        if progress:
            print(f"medsam_lite: backend='auto' times {', '.join(available_backends())} once on this machine "
                  f"({key['threads']} thread(s)) to pick the fastest encoder and decoder …", file=sys.stderr)
        s = int(input_size)
        x = torch.rand(1, 3, s, s, generator=torch.Generator().manual_seed(0))
        emb = 0.1 * torch.randn(1, *embedding_shape, generator=torch.Generator().manual_seed(0))
        box = torch.tensor([[0.3 * s, 0.25 * s, 0.6 * s, 0.7 * s]])
        calls = {}
        for name in available_backends():
            built[name] = runtime = make_runtime(name)
            calls[name] = {"encoder": partial(runtime.encode, x), "decoder": partial(runtime.decode, emb, box)}
        return time_parts(calls)

    choice = choose(cache_dir, key, measure)
    if progress and not choice["cached"]:
        print(choice["report"], file=sys.stderr)
    return choice, built
