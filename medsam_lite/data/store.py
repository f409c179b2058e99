"""The embedding store: stored image embeddings of a dataset, their signature, lock and writers.

Layout (format ``medsam_lite.embeddings/1``), by default ``<dataset>/embeddings/<model>/``::

    embeddings.npy   N×C×h×w memory-mapped array (float16 by default; C×h×w = 256×64×64)
    done.npy         N uint8 flags: 1 once entry i is completely written (set after its data)
    rows.csv         the store's index: case, slice, image, sha256 of the image file
    signature.json   what the embeddings depend on; written last when the store is created
    .lock            lets one process at a time check or create the store (shards, torchrun ranks)

Row ``i`` is row ``i`` of :attr:`medsam_lite.data.dataset.Dataset.slices` (sorted by case, then slice).
The signature holds the model name, the SHA-256 of the image encoder's weights, the input size
and preprocessing recipe, the storage dtype and a hash of the dataset's slice images; the package
version and the inference backend are recorded for information only (a new release keeps users'
stores). It is checked on every reuse: a mismatch raises :class:`StoreMismatchError` (or, with
``recompute=True``, the store is discarded and computed again) — stored embeddings are never mixed
with another model's or another dataset's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import warnings
import weakref
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .dataset import check_dataset
from ..model.models import check_model
from .dataset import Dataset
from ..errors import InputError, StoreMismatchError
from ..fileutil import TMP_PREFIX, atomic_path, atomic_write_text, os_error_to_input_error, remove_empty_folders
from ..model.hashing import state_sha256
from ..model.inference import Embedding
from ..model.models import SamModel
from .storefiles import store_lock

STORE_FORMAT = "medsam_lite.embeddings/1"
DTYPES = ("float16", "float32")
#: Signature keys that must match for a store to be reused (the others are informational).
CHECKED_KEYS = ("format", "model_name", "encoder_sha256", "input_size", "recipe", "dtype",
                "embedding_shape", "dataset_sha256", "rows", "precision")


def encoder_sha256(model: SamModel) -> str:
    """SHA-256 over the image encoder's tensors (names, dtypes, shapes, values; :func:`state_sha256`).

    The stored embeddings depend on the image encoder only, so a model whose decoder was
    fine-tuned (same encoder) reuses them, and any other encoder is refused. Computed once per
    :attr:`SamModel.weights_version` of ``model`` (call ``model.weights_changed()`` after editing
    its weights in place).
    """
    hit = _ENCODER_HASHES.get(model)
    if hit is None or hit[0] != model.weights_version:
        hit = _ENCODER_HASHES[model] = (model.weights_version, state_sha256(model.image_encoder))
    return hit[1]


_ENCODER_HASHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _rows_with_hashes(dataset: Dataset) -> pd.DataFrame:
    """The store's index for ``dataset``: its slices with the SHA-256 of each image file.

    Every slice file is checked to be a regular file (:meth:`Dataset.file`; a FIFO is never opened)
    holding a PNG, so a changed dataset folder is refused before a store is created or read.
    """
    rows = dataset.slices[["case", "slice", "image"]].copy()
    hashes = []
    for rel in rows["image"]:
        p = dataset.file(rel)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise InputError(f"the manifest's file {rel!r} ({p}) cannot be read ({exc.strerror}); re-run "
                             "preprocess() to rewrite it.") from None
        if not data.startswith(_PNG_MAGIC):
            raise InputError(f"the manifest's file {rel!r} ({p}) is not a PNG image (it was replaced after "
                             "preparing the dataset); re-run preprocess() to rewrite it.")
        hashes.append(hashlib.sha256(data).hexdigest())
    rows["sha256"] = hashes
    return rows


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _read_rows(path: Path) -> pd.DataFrame:
    """A store's ``rows.csv`` (text columns as strings: a case named ``NA`` stays ``NA``)."""
    return pd.read_csv(path, dtype={"case": str, "image": str, "sha256": str}, keep_default_na=False,
                       na_values=[""])


def _dataset_digest(rows: pd.DataFrame) -> str:
    content = "\n".join(f"{c},{s},{i},{h}" for c, s, i, h in rows[["case", "slice", "image", "sha256"]]
                        .itertuples(index=False))
    return hashlib.sha256(content.encode()).hexdigest()


def dataset_fingerprint(dataset: Dataset) -> str:
    """SHA-256 hex naming a prepared dataset's content: every slice image's bytes (the store's
    ``dataset_sha256``) and the manifest's targets (masks' boxes, pixels, labels, splits); case
    names alone do not make two datasets the same."""
    manifest = dataset.manifest
    if "weak" in manifest and (manifest["weak"] == "").all():  # mask-only: the same digest as before weak labels
        manifest = manifest.drop(columns="weak")
    targets = hashlib.sha256(manifest.to_csv(index=False).encode()).hexdigest()
    return hashlib.sha256(f"{_dataset_digest(_rows_with_hashes(dataset))}|{targets}".encode()).hexdigest()


def _signature(model: SamModel, rows: pd.DataFrame, dtype: str) -> dict:
    from .. import __version__

    runtime = model.runtime
    emb_hw = tuple(int(v) for v in model.prompt_encoder.image_embedding_size)
    return {
        "format": STORE_FORMAT,
        "model_name": model.name,
        "encoder_sha256": encoder_sha256(model),
        "input_size": model.input_size,
        "recipe": model.spec.recipe,
        "dtype": dtype,
        "embedding_shape": [int(model.prompt_encoder.embed_dim), *emb_hw],
        "dataset_sha256": _dataset_digest(rows),
        "rows": len(rows),
        # informational only:
        "medsam_lite_version": __version__,
        "backend": runtime.name if runtime is not None else "torch",
        # checked only when not the default fp32 (bf16 embeddings differ by a few percent):
        **({"precision": runtime.precision} if runtime is not None and runtime.precision != "fp32" else {}),
        "weights_sha256": model.weights_sha256,
        "checkpoint": str(model.checkpoint),
    }


@dataclass
class EmbeddingStore:
    """Stored image embeddings of a dataset (read them with :meth:`get`).

    Attributes:
        path: the store folder.
        signature: the content of ``signature.json``.
        rows: ``case``, ``slice``, ``image``, ``sha256`` per entry, in store order.
        embeddings: ``N×C×h×w`` memory-mapped array (float16 or float32), opened read-only.
        done: ``N`` bool, True where the entry is complete.
        served: the :class:`Dataset` whose slice images were last hashed and found to be the store's
            (by :func:`open_store` or :meth:`check_serves`), so checking it again costs nothing.
    """

    path: Path
    signature: dict
    rows: pd.DataFrame
    embeddings: np.ndarray = field(repr=False)
    done: np.ndarray = field(repr=False)
    served: object = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.rows)

    def index(self, case: str, slice_index: int) -> int:
        """Row number of ``(case, slice)`` in the store."""
        hit = np.flatnonzero((self.rows["case"].to_numpy() == str(case))
                             & (self.rows["slice"].to_numpy() == int(slice_index)))
        if hit.size == 0:
            raise InputError(f"slice {slice_index} of case {case!r} is not in this dataset's store.")
        return int(hit[0])

    def get(self, row: int) -> torch.Tensor:
        """Embedding of store row ``row`` as a ``C×h×w`` float32 tensor."""
        if not self.done[row]:
            raise InputError(f"store row {row} ({self.rows.iloc[row]['case']}, slice "
                             f"{self.rows.iloc[row]['slice']}) is not computed yet; run embed() for it.")
        return torch.from_numpy(self._read(int(row)).astype(np.float32))

    def embedding(self, model: SamModel, case: str, slice_index: int, original_hw, stored_hw) -> Embedding:
        """The stored :class:`~medsam_lite.model.inference.Embedding` of ``(case, slice)``, with its geometry:
        ``original_hw`` is the original slice's ``(H, W)``, ``stored_hw`` the stored slice's ``(h, w)``."""
        return Embedding(self.get(self.index(case, slice_index))[None].to(model.device),
                         model.geometry(original_hw, stored_hw))

    def check_serves(self, dataset: Dataset) -> None:
        """Refuse a store made for another dataset (or whose dataset's slices changed since).

        Raises:
            StoreMismatchError: the store's signature names other slice images than ``dataset`` has.
        """
        if dataset is self.served:  # this very Dataset was hashed and matched already
            return
        digest = _dataset_digest(_rows_with_hashes(dataset))
        if self.signature.get("dataset_sha256") != digest or self.signature.get("rows") != len(dataset.slices):
            raise StoreMismatchError(
                f"the embedding store {self.path} was computed for other slice images than those of "
                f"{dataset.root} (another dataset, or its slices changed since); pass this dataset's own "
                "store (embed(dataset, model)) or recompute it with embed(..., recompute=True).")
        self.served = dataset

    def get_batch(self, rows) -> torch.Tensor:
        """Embeddings of several rows, ``B×C×h×w`` float32."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self.done[rows].all():
            raise InputError("some requested store rows are not computed yet; run embed() for them.")
        return torch.from_numpy(np.stack([self._read(int(r)).astype(np.float32) for r in rows]))

    def _read(self, row: int) -> np.ndarray:
        """One entry read from the file (not through the memory map, so the rows a long training
        run reads do not pile up in this process's resident memory; the OS page cache keeps them)."""
        shape, dtype = self.embeddings.shape[1:], self.embeddings.dtype
        size = int(np.prod(shape)) * dtype.itemsize
        with open(self.path / "embeddings.npy", "rb") as handle:
            data = os.pread(handle.fileno(), size, int(self.embeddings.offset) + row * size)
        if len(data) != size:
            raise InputError(f"{self.path / 'embeddings.npy'} is cut short at row {row}; pass recompute=True "
                             "to embed() to rebuild the store.")
        return np.frombuffer(data, dtype=dtype).reshape(shape)

    @property
    def nbytes(self) -> int:
        """Size of the embeddings file's data in bytes."""
        return int(self.embeddings.nbytes)


def store_dir(dataset: Dataset, model: SamModel) -> Path:
    """Default store folder: ``<dataset>/embeddings/<model name>``."""
    return Path(dataset.root) / "embeddings" / model.name


def _create(path: Path, signature: dict, rows: pd.DataFrame, dtype: str) -> None:
    """Create an empty store: data files under temporary names, renamed, signature last."""
    path.mkdir(parents=True, exist_ok=True)
    shape = (len(rows), *signature["embedding_shape"])
    hint = "Then run embed() again."
    with atomic_path(path / "embeddings.npy", hint=hint) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        del arr
    with atomic_path(path / "done.npy", hint=hint) as tmp:
        done = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(rows),))
        done[:] = 0
        done.flush()
        del done
    with atomic_path(path / "rows.csv", hint=hint) as tmp:
        rows.to_csv(tmp, index=False)
    atomic_write_text(path / "signature.json", json.dumps(signature, indent=1), hint=hint)


def _damage(path: Path, signature: dict) -> list[str]:
    """What is wrong with a store's files (cut, missing, wrong shape), or ``[]``."""
    shape = (signature["rows"], *signature["embedding_shape"])
    try:
        emb = np.load(path / "embeddings.npy", mmap_mode="r", allow_pickle=False)
        done = np.load(path / "done.npy", mmap_mode="r", allow_pickle=False)
        rows = _read_rows(path / "rows.csv")
    except (OSError, ValueError, EOFError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        return [f"store files unreadable: {str(exc)[:120]}"]
    problems = []
    if emb.shape != shape or emb.dtype != np.dtype(signature["dtype"]):
        problems.append(f"embeddings.npy holds {emb.shape} {emb.dtype}, expected {shape} {signature['dtype']}")
    if done.shape != (shape[0],):
        problems.append(f"done.npy holds {done.shape} flags for {shape[0]} rows")
    if len(rows) != shape[0] or list(rows.columns) != ["case", "slice", "image", "sha256"]:
        problems.append("rows.csv does not list the store's rows")
    elif _dataset_digest(rows) != signature["dataset_sha256"]:
        problems.append("rows.csv lists other slices or image hashes than signature.json's dataset_sha256 "
                        "(the store's files were replaced or edited)")
    return problems


def _mismatch(old: dict, new: dict) -> list[str]:
    return [f"{k}: stored {old.get(k)!r} ≠ now {new.get(k)!r}" for k in CHECKED_KEYS if old.get(k) != new.get(k)]


def open_store(dataset, model: SamModel | None = None, dtype: str = "float16", path=None,
               recompute: bool = False, create: bool = True, verbose: bool = False) -> EmbeddingStore:
    """Open (or create) the embedding store of ``dataset`` for ``model``, checking its signature.

    Args:
        dataset: a prepared dataset folder or :class:`~medsam_lite.data.dataset.Dataset`.
        model: the model whose image encoder the embeddings come from (default ``load_model()``).
        dtype: ``"float16"`` (default, 2 MiB per 256×64×64 embedding) or ``"float32"``.
        path: the store folder (default ``<dataset>/embeddings/<model name>``).
        recompute: on a signature mismatch, delete the stored embeddings and start again instead of
            raising.
        create: create an empty store if there is none (else raise).
        verbose: print what happens.

    Raises:
        StoreMismatchError: the stored embeddings were made with another encoder, preprocessing,
            dtype, package version or dataset content (and ``recompute`` is False).
    """
    dataset = check_dataset(dataset)
    model = check_model(model)
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {DTYPES}, got {dtype!r}.")
    if dataset.image_size != model.input_size:
        warnings.warn(f"the dataset's images have longest side {dataset.image_size} but {model.name} "
                      f"takes {model.input_size}×{model.input_size}: they will be resized on the fly. "
                      f"Prepare the dataset with image_size={model.input_size} for the best quality.")
    path = Path(path) if path is not None else store_dir(dataset, model)
    rows = _rows_with_hashes(dataset)
    signature = _signature(model, rows, dtype)
    sig_path = path / "signature.json"
    if sig_path.is_file() and not _problems(path, signature):
        # a matching, undamaged store is only read here: no lock, nothing written (read-only datasets)
        return dataclasses.replace(_load(path), served=dataset)
    need = len(rows) * int(np.prod(signature["embedding_shape"])) * np.dtype(dtype).itemsize
    if create and not sig_path.is_file():
        _check_space(path, need)  # before the folder or its .lock exist
    existing = _nearest_existing(path)
    try:
        _open_locked(path, signature, rows, dtype, need, recompute, create, verbose)
    except BaseException:
        _remove_created(path, existing)  # a refusal (or Ctrl-C) leaves no folder it created
        raise
    return dataclasses.replace(_load(path), served=dataset)


def _problems(path: Path, signature: dict) -> list[str]:
    """Why the store in ``path`` cannot serve ``signature`` (mismatch, damage), or ``[]``."""
    try:
        old = json.loads((path / "signature.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        old = None
    if not isinstance(old, dict):
        old = {"format": "unreadable signature.json (damaged)"}
    return _mismatch(old, signature) or _damage(path, signature)


def _load(path: Path) -> EmbeddingStore:
    emb = np.load(path / "embeddings.npy", mmap_mode="r", allow_pickle=False)
    done = np.load(path / "done.npy", mmap_mode="r", allow_pickle=False)
    return EmbeddingStore(path, json.loads((path / "signature.json").read_text()), _read_rows(path / "rows.csv"),
                          emb, np.asarray(done, dtype=bool))


def _nearest_existing(path: Path) -> Path:
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _check_space(path: Path, need: int) -> None:
    free = shutil.disk_usage(_nearest_existing(path)).free
    if need > free:
        raise InputError(f"the embedding store needs {need / 2**20:.0f} MiB but only {free / 2**20:.0f} MiB "
                         f"are free at {path}; free some space or pass path= on another disk.")


def _remove_created(path: Path, existing: Path) -> None:
    """Remove ``path`` and its parents up to ``existing`` if this call created them (only the store's
    own file names inside; a folder holding anything else is kept)."""
    path = path.absolute()
    if path == existing or existing not in path.parents:
        return
    for name in (*_STORE_FILES, ".lock", ".lock.owner"):
        (path / name).unlink(missing_ok=True)
    for stale in path.glob(f"{TMP_PREFIX}*"):
        stale.unlink(missing_ok=True)
    remove_empty_folders([path, *(p for p in path.parents if existing in p.parents)])  # deepest first


_STORE_FILES = ("signature.json", "embeddings.npy", "done.npy", "rows.csv")


def _open_locked(path: Path, signature: dict, rows: pd.DataFrame, dtype: str, need: int, recompute: bool,
                 create: bool, verbose: bool) -> None:
    """Check, discard or create the store's files, holding its lock."""
    sig_path = path / "signature.json"
    # one process at a time checks, discards or creates the store's files: a second creator
    # (another shard, another rank) finds the store made and never replaces files being written
    with store_lock(path) if create or path.is_dir() else nullcontext():
        if sig_path.is_file():
            problems = _problems(path, signature)
            if problems and not recompute:
                raise StoreMismatchError(
                    f"the embeddings stored in {path} do not match this model and dataset, or are damaged ("
                    + "; ".join(p[:160] for p in problems)
                    + "). They are never mixed: pass recompute=True to embed() to discard and recompute "
                    "them, or path= to keep several stores side by side."
                )
            if problems:
                if verbose:
                    print(f"signature mismatch ({'; '.join(p[:80] for p in problems)}): recomputing {path}")
                for name in _STORE_FILES:
                    (path / name).unlink(missing_ok=True)
        if not sig_path.is_file():
            if not create:
                raise InputError(f"there are no stored embeddings in {path}; run medsam_lite.embed(dataset, model) "
                                 "first.")
            path.mkdir(parents=True, exist_ok=True)
            for stale in path.glob(f"{TMP_PREFIX}*"):  # left by a creation that was killed (we hold the lock)
                stale.unlink(missing_ok=True)
            _check_space(path, need)
            try:
                _create(path, signature, rows, dtype)
            except OSError as exc:
                for stale in path.glob(f"{TMP_PREFIX}*"):
                    stale.unlink(missing_ok=True)
                raise os_error_to_input_error(exc, path / "embeddings.npy",
                                              "Then run embed() again.") from None


def reload_store(store):
    """``store`` with its files opened again (sees entries other processes wrote meanwhile)."""
    path = Path(store.path)
    emb = np.load(path / "embeddings.npy", mmap_mode="r", allow_pickle=False)
    done = np.load(path / "done.npy", mmap_mode="r", allow_pickle=False)
    return dataclasses.replace(store, embeddings=emb, done=np.asarray(done, dtype=bool))


