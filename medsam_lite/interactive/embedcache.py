"""Slice embeddings kept on disk between processes, keyed by content.

The CVPR25 harness starts the participant's program afresh for every step of a case (a box step,
then five click steps on the same image). Encoding the case's slices is ~85 % of a step's work; the
embeddings depend only on the slice's pixels and the image encoder, so they are stored under

    ``<cache>/embeddings/<sha256[:2]>/<sha256>.npy``  (``1×256×64×64`` float32, 4 MiB each)

with ``sha256`` over the model's weights hash, its weights version, its encoder runtime
(name, precision), the model input size and the slice's shape and bytes (the uint8 image the model
sees). ``<cache>`` is ``$MEDSAM_LITE_CACHE`` or ``~/.cache/medsam_lite`` (the export cache's folder);
``$MEDSAM_LITE_EMBEDDING_CACHE`` names another folder for the embeddings alone.
A click step then runs only the decoder. Files are written atomically
(:func:`~medsam_lite.fileutil.atomic_write`); a damaged file is re-encoded. The folder is kept
under ``$MEDSAM_LITE_EMBEDDING_CACHE_MB`` (default 2048 MB): :func:`prune` removes the least
recently used files beyond it, under the folder's lock.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fileutil import FolderLock, atomic_write

DEFAULT_CAP_MB = 2048


def cache_folder() -> Path:
    """``$MEDSAM_LITE_EMBEDDING_CACHE`` if set, else ``<$MEDSAM_LITE_CACHE or ~/.cache/medsam_lite>/embeddings``."""
    own = os.environ.get("MEDSAM_LITE_EMBEDDING_CACHE")
    if own:
        return Path(own).expanduser()
    env = os.environ.get("MEDSAM_LITE_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "medsam_lite"
    return root / "embeddings"


def model_key(model) -> str:
    """What the embeddings of ``model`` depend on: weights, their version, the encoder runtime."""
    runtime = getattr(model, "runtime", None)
    parts = [getattr(model, "weights_sha256", ""), str(getattr(model, "weights_version", "")),
             getattr(model, "name", ""), str(getattr(model, "input_size", "")),
             "" if runtime is None else f"{getattr(runtime, 'name', '')}:{getattr(runtime, 'precision', '')}"]
    return "|".join(parts)


class DiskEmbeddings:
    """``get(model_key, slice uint8) -> array | None`` / ``put``: the on-disk slice embedding cache.

    Args:
        folder: where the ``.npy`` files live (default :func:`cache_folder`). An unusable folder (a
            file in its place, read-only, full disk) makes the cache a no-op: the work is the same,
            only not kept.
    """

    def __init__(self, folder: str | os.PathLike | None = None, key: str = ""):
        self.folder = Path(folder) if folder is not None else cache_folder()
        self.key = key
        self.hits = self.writes = 0
        self.usable = True

    def _path(self, key: str, image: np.ndarray) -> Path:
        digest = hashlib.sha256()
        digest.update(key.encode())
        digest.update(repr((image.shape, str(image.dtype))).encode())
        digest.update(np.ascontiguousarray(image).tobytes())
        name = digest.hexdigest()
        return self.folder / name[:2] / f"{name}.npy"

    def embedding_of(self, model, image: np.ndarray):
        """The :class:`~medsam_lite.model.inference.Embedding` of the ``H×W`` uint8 slice ``image``: from
        disk when this model encoded it before (in any process), else encoded now and stored."""
        from ..model.inference import as_embedding, encode

        stored = self.get(self.key, image)
        if stored is not None and stored.shape[1:] == tuple(model.embedding_shape):
            return as_embedding(model, stored, image.shape[:2])  # numpy for a torch-free model, else a tensor
        embedding = encode(model, image)
        tensor = embedding.tensor
        self.put(self.key, image, tensor if isinstance(tensor, np.ndarray) else tensor.detach().cpu().numpy())
        return embedding

    def get(self, key: str, image: np.ndarray) -> np.ndarray | None:
        path = self._path(key, image)
        try:
            with open(path, "rb") as f:
                arr = np.load(f, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if arr.dtype != np.float32 or arr.ndim != 4:
            return None
        try:
            os.utime(path)  # least recently used = oldest mtime
        except OSError:
            pass
        self.hits += 1
        return arr

    def put(self, key: str, image: np.ndarray, embedding: np.ndarray) -> None:
        if not self.usable:
            return
        path = self._path(key, image)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(embedding, np.float32), allow_pickle=False))
            self.writes += 1
        except (OSError, InputError):
            self.usable = False  # keep working without the cache


def for_model(model, disk_cache) -> DiskEmbeddings | None:
    """``disk_cache`` of :class:`~medsam_lite.VolumePredictor` → its :class:`DiskEmbeddings` (``None``: off).

    Args:
        disk_cache: ``True`` (:func:`cache_folder`), a folder, or ``False``/``None``.
    """
    if disk_cache is False or disk_cache is None:
        return None
    if not isinstance(disk_cache, (bool, str, os.PathLike)):
        raise InputError(f"disk_cache must be True, False or a folder, got {type(disk_cache).__name__}.")
    return DiskEmbeddings(None if disk_cache is True else disk_cache, model_key(model))


def cap_bytes() -> int:
    """``$MEDSAM_LITE_EMBEDDING_CACHE_MB`` (default 2048) in bytes."""
    raw = os.environ.get("MEDSAM_LITE_EMBEDDING_CACHE_MB", str(DEFAULT_CAP_MB))
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"MEDSAM_LITE_EMBEDDING_CACHE_MB={raw!r} is not a number of megabytes.") from None
    return int(max(value, 0) * 2 ** 20)


def prune(folder: str | os.PathLike | None = None, cap: int | None = None) -> int:
    """Remove the least recently used embeddings beyond ``cap`` bytes; returns how many were removed."""
    folder = Path(folder) if folder is not None else cache_folder()
    cap = cap_bytes() if cap is None else cap
    if not folder.is_dir():
        return 0
    try:
        with FolderLock(folder, "embedding cache pruning", wait=0.0):
            files = []
            for p in folder.glob("*/*.npy"):
                try:
                    st = p.stat()
                except OSError:
                    continue
                files.append((st.st_mtime, st.st_size, p))
            total = sum(f[1] for f in files)
            removed = 0
            for _, size, p in sorted(files):
                if total <= cap:
                    break
                try:
                    p.unlink()
                    total -= size
                    removed += 1
                except OSError:
                    pass
            return removed
    except (InputError, OSError):
        return 0  # another process is pruning, or the folder is read-only: nothing to do now
