"""The export cache without torch: where an export lives, whether it is sound, whether the cache can
be used at all, and its size cap.

:mod:`.backends` writes exports (with torch); :mod:`.exported` reads them in a process that never
imports torch. One folder per part and weights: ``<cache>/exports/<part>-<sha16>-<version>-<backend>/``
with a ``meta.json`` listing every file's SHA-256; its compiled models (OpenVINO blobs, ONNX Runtime's
optimised graph) in ``<cache>/exports/compiled/<that folder's name>/``; per-checkpoint manifests in
``<cache>/exports/models/``.

* :func:`cache_problem` decides **once**, before anything is exported or measured, whether
  ``<cache>/exports`` can hold files: it creates the folder (every missing level) and one empty
  temporary file in it, so every reason it cannot — a file at any level of the path
  (``ENOTDIR``/``EEXIST``), a read-only mount (``EROFS``), no permission (``EACCES``/``EPERM``), a
  full disk (``ENOSPC``), a name too long, a dangling link … — is one ``OSError`` answer, whatever
  its errno or depth. :func:`~medsam_lite.model.backends.build_runtime` then runs the model in
  torch with one :class:`~medsam_lite.model.backends.CacheWarning` instead of failing later.
* :func:`evict` keeps the cache under a size cap: ``$MEDSAM_LITE_CACHE_MAX_MB`` megabytes
  (default :data:`DEFAULT_MAX_MB`; ``0`` = no cap). Each export folder's modification time is its
  last use (:func:`touch` on every load); beyond the cap the least recently used exports are removed,
  oldest first, **under the cache's lock** (the one exporters take), and never an export in use: the
  ones the running process just built or loaded, and any used in the last :data:`IN_USE_SECONDS`
  (another process may be between verifying and loading it). An evicted export is simply exported
  again when it is needed (a few seconds).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import secrets
import shutil
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from ..errors import InputError
from ..fileutil import atomic_write_text, file_sha256

#: Default size cap of ``<cache>/exports`` in megabytes (10⁶ bytes): ~20 exports of 16–27 MB.
DEFAULT_MAX_MB = 500
#: The variable that sets the cap (megabytes; ``0`` turns eviction off).
MAX_MB_VARIABLE = "MEDSAM_LITE_CACHE_MAX_MB"
#: Folders of ``<cache>/exports`` that are not exports: compiled models (counted and evicted with their
#: export) and the per-checkpoint manifests (a few hundred bytes each).
NOT_EXPORTS = ("compiled", "models")
#: An export used less than this many seconds ago is in use and never evicted.
IN_USE_SECONDS = 120.0


def cache_problem(cache_dir: str | os.PathLike) -> OSError | None:
    """``None`` if ``<cache_dir>/exports`` exists (or was created) and a file can be created in it,
    else the ``OSError`` that says why not (any errno, at any level of the path)."""
    exports = Path(cache_dir).expanduser() / "exports"
    try:
        exports.mkdir(parents=True, exist_ok=True)
        if not exports.is_dir():  # mkdir(exist_ok) accepts a dangling or odd entry on some systems
            raise NotADirectoryError(20, "Not a directory", str(exports))
        fd, probe = tempfile.mkstemp(prefix=".medsam-tmp-", dir=exports)  # as every cache write starts
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return exc
    return None


def max_bytes() -> int | None:
    """The cap in bytes from ``$MEDSAM_LITE_CACHE_MAX_MB`` (default :data:`DEFAULT_MAX_MB`); ``None``: no cap.

    Raises:
        InputError: the variable is not a number ≥ 0.
    """
    text = os.environ.get(MAX_MB_VARIABLE, "").strip()
    if not text:
        return int(DEFAULT_MAX_MB * 1e6)
    try:
        value = float(text)
        if not value >= 0 or value == float("inf"):
            raise ValueError
    except ValueError:
        raise InputError(f"{MAX_MB_VARIABLE}={text!r} must be a number of megabytes ≥ 0 (0 = no cap on the "
                         f"export cache; default {DEFAULT_MAX_MB}).") from None
    return None if value == 0 else int(value * 1e6)


def touch(folder: Path) -> None:
    """Mark an export as just used (its folder's mtime); a read-only cache is left as it is."""
    try:
        os.utime(folder)
    except OSError:
        pass


def _size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def exports_in(exports: Path) -> list[tuple[float, int, Path]]:
    """``(last use, bytes, folder)`` of every export folder (``<part>-<hash>-…``), least recently used first."""
    found = []
    for entry in os.scandir(exports):
        if entry.name.startswith(".") or entry.name in NOT_EXPORTS or not entry.is_dir(follow_symlinks=False):
            continue  # temporaries, the lock, backend_choice.json, compiled models, manifests
        try:
            used = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        size = _size(Path(entry.path)) + _size(exports / "compiled" / entry.name)  # an export with its compiled models
        found.append((used, size, Path(entry.path)))
    return sorted(found, key=lambda t: (t[0], t[2].name))


def evict(exports: Path, keep=(), cap: int | None = None, now: float | None = None) -> list[Path]:
    """Remove least recently used exports until ``exports`` holds at most ``cap`` bytes of them.

    Call it holding the cache's lock (``FolderLock(exports, "export")``). Exports in ``keep`` (those
    of the running process) and those used in the last :data:`IN_USE_SECONDS` are never removed, so
    the cache may stay above the cap while they are.

    Args:
        exports: ``<cache>/exports``.
        keep: export folders in use by the caller.
        cap: bytes (default :func:`max_bytes`; ``None`` from there: no cap).
        now: the current time (``time.time()``).

    Returns:
        The removed folders (each renamed to a hidden temporary first, so no half-removed export is
        ever seen under its name).
    """
    cap = max_bytes() if cap is None else cap
    if cap is None:
        return []
    now = time.time() if now is None else now
    keep = {Path(k).resolve() for k in keep}
    found = exports_in(exports)
    total = sum(size for _, size, _ in found)
    removed = []
    for used, size, folder in found:
        if total <= cap:
            break
        if folder.resolve() in keep or now - used < IN_USE_SECONDS:
            continue
        tmp = exports / f".medsam-tmp-evicted-{secrets.token_hex(6)}"
        try:
            os.rename(folder, tmp)  # atomic: readers see the export whole or not at all
        except OSError:
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(exports / "compiled" / folder.name, ignore_errors=True)  # rebuilt from the export if needed
        total -= size
        removed.append(folder)
    return removed


def export_folder(cache_dir, part: str, key: str, backend: str) -> Path:
    """The folder of ``part``'s export for the weights hash ``key`` in ``backend`` (exists or not)."""
    return Path(cache_dir) / "exports" / f"{part}-{key[:16]}-{package_version()}-{backend}"


@lru_cache(maxsize=1)
def package_version() -> str:
    """The installed ``medsam-lite`` version (``"0"`` if it is not installed as a distribution); looked up
    once per process (each lookup scans the path's distributions)."""
    try:
        return importlib.metadata.version("medsam-lite")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def default_cache_dir() -> Path:
    """``$MEDSAM_LITE_CACHE`` if set, else ``~/.cache/medsam_lite``."""
    env = os.environ.get("MEDSAM_LITE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "medsam_lite"


#: The file (in ``<cache>/exports``) that remembers the SHA-256 of files already hashed (:func:`known_sha256`).
DIGESTS_FILE = "digests.json"
#: A file is remembered only once it has been unchanged this long (ns): a change within the filesystem's
#: timestamp granule would leave its stat as it was (the "racy git" rule).
_SETTLED_NS = 2_000_000_000
_DIGEST_MEMO: dict[str, dict] = {}  # per exports folder: its digests file's entries, read once per process


def known_sha256(path: str | Path, exports: Path) -> str:
    """:func:`~medsam_lite.fileutil.file_sha256` of ``path``, remembered across processes in
    ``exports/digests.json`` under the file's identity and stat (device, inode, size, modification and
    change times in ns): a file changed in any way since (every write, truncation or rename moves its
    change time, which no user call can set back) is hashed again. Only a file unchanged for 2 s is
    remembered; an unreadable or unwritable digests file only costs the hashing. Raises as
    ``file_sha256`` for a missing file.

    (A cold process verified ~85 MB of checkpoint and exports on every load: ~0.07 s of CPU.)
    """
    path = Path(path)
    try:
        st = path.stat()
        name = str(path.resolve())
    except OSError:
        return file_sha256(path)
    ident = _identity(st)
    memo = _digests(exports)
    entry = memo.get(name)
    if isinstance(entry, list) and len(entry) == 6 and entry[:5] == ident and isinstance(entry[5], str):
        return entry[5]
    sha = file_sha256(path)
    try:
        after = path.stat()
    except OSError:
        return sha
    if (_identity(after) == ident
            and time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _SETTLED_NS):
        memo[name] = ident + [sha]
        try:
            fresh = _read_digests(exports)  # another process's entries are kept
            fresh[name] = memo[name]
            atomic_write_text(Path(exports) / DIGESTS_FILE, json.dumps(fresh))
        except OSError:
            pass
    return sha


def _identity(st) -> list[int]:
    """A file's identity and stat as :func:`known_sha256` remembers it: device, inode, size, mtime, ctime (ns)."""
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _digests(exports: Path) -> dict:
    key = str(exports)
    if key not in _DIGEST_MEMO:
        _DIGEST_MEMO[key] = _read_digests(exports)
    return _DIGEST_MEMO[key]


def _read_digests(exports: Path) -> dict:
    try:
        entries = json.loads((Path(exports) / DIGESTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


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
        if known_sha256(path, Path(folder).parent) != sha:
            return f"corrupt ({name} does not match its SHA-256 in meta.json)"
    return None
