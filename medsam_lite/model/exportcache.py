"""The export cache without torch: where an export lives, whether it is sound, the package version.

:mod:`.backends` writes exports (with torch); :mod:`.exported` reads them in a process that never
imports torch. One folder per part and weights: ``<cache>/exports/<part>-<sha16>-<version>-<backend>/``
with a ``meta.json`` listing every file's SHA-256.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from functools import lru_cache
from pathlib import Path

from ..fileutil import file_sha256


def export_folder(cache_dir, part: str, key: str, backend: str) -> Path:
    """The folder of ``part``'s export for the weights hash ``key`` in ``backend`` (exists or not)."""
    return Path(cache_dir) / "exports" / f"{part}-{key[:16]}-{package_version()}-{backend}"


@lru_cache(maxsize=1)
def package_version() -> str:
    """The installed ``medsam-lite`` version (``"0"`` if it is not installed as a distribution)."""
    try:
        return importlib.metadata.version("medsam-lite")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def default_cache_dir() -> Path:
    """``$MEDSAM_LITE_CACHE`` if set, else ``~/.cache/medsam_lite``."""
    env = os.environ.get("MEDSAM_LITE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "medsam_lite"


def verify_export(folder: Path, part: str, key: str, backend: str) -> str | None:
    """``None`` if ``folder`` holds a sound export for these weights, else what is wrong with it."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError):
        return "unreadable (meta.json is not valid JSON)"
    expected = {"part": part, "weights_sha256": key, "medsam_lite": package_version(), "backend": backend}
    stale = [k for k, v in expected.items() if not isinstance(meta, dict) or meta.get(k) != v]
    if stale:
        return f"stale ({', '.join(stale)} differ)"
    files = meta.get("files")
    if not isinstance(files, dict) or f"{part}.onnx" not in files:
        return "incomplete (meta.json lists no ONNX file)"
    for name, sha in files.items():
        path = folder / name
        if not path.is_file():
            return f"incomplete ({name} is missing)"
        if file_sha256(path) != sha:
            return f"corrupt ({name} does not match its SHA-256 in meta.json)"
    return None
