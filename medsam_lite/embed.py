"""Image embeddings computed once per slice and stored beside the dataset.

The frozen image encoder is by far the most expensive part of a SAM-family model (about 2 s per
256×256 slice on a laptop CPU for LiteMedSAM, against ~0.1 s for a box through the decoder). So
:func:`embed` runs it **once per stored slice** and keeps the result on disk; fine-tuning
(:func:`medsam_lite.finetune`) and evaluation (:func:`medsam_lite.evaluate`) read it back.

Store layout (format ``medsam_lite.embeddings/1``), by default ``<dataset>/embeddings/<model>/``::

    embeddings.npy   N×C×h×w memory-mapped array (float16 by default; C×h×w = 256×64×64)
    done.npy         N uint8 flags: 1 once entry i is completely written (set after its data)
    rows.csv         the store's index: case, slice, image, sha256 of the image file
    signature.json   what the embeddings depend on; written last when the store is created
    .lock            lets one process at a time check or create the store (shards, torchrun ranks)

Row ``i`` is row ``i`` of :attr:`medsam_lite.dataset.Dataset.slices` (sorted by case, then slice).
The signature holds the model name, the SHA-256 of the image encoder's weights, the input size
and preprocessing recipe, the storage dtype, the medsam_lite version and a hash of the dataset's
slice images. It is checked on every reuse: a mismatch raises :class:`StoreMismatchError` (or,
with ``recompute=True``, discards the store and computes it again) — stored embeddings are never
mixed with another model's or another dataset's.

An interrupted run (kernel restart, Ctrl-C, killed process) resumes where it stopped: an entry's
flag is set only after its embedding has been written and flushed, so a half-written entry is
simply computed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .dataset import Dataset, open_dataset
from .distributed import (EntryWriter, dist_context, embed_on_all_ranks, parse_shard,
                          shard_rows, store_lock)
from .errors import InputError, StoreMismatchError
from .models import SamModel, load_model

STORE_FORMAT = "medsam_lite.embeddings/1"
DTYPES = ("float16", "float32")
#: Signature keys that must match for a store to be reused (the others are informational).
CHECKED_KEYS = ("format", "model_name", "encoder_sha256", "input_size", "recipe", "dtype",
                "embedding_shape", "medsam_lite_version", "dataset_sha256", "rows")


def check_model(model) -> SamModel:
    """``model`` itself if it is a :class:`SamModel`, ``load_model()`` if None, else InputError."""
    if model is None:
        return load_model()
    if not isinstance(model, SamModel):
        raise InputError(f"model must be a model object from medsam_lite.load_model(), got {type(model).__name__} "
                         f"{str(model)[:40]!r}; pass model=ml.load_model({model!r}) if that is a model name.")
    return model


def check_dataset(dataset) -> Dataset:
    """Open ``dataset`` (a folder path or a :class:`Dataset`), refusing anything else."""
    if not isinstance(dataset, (str, os.PathLike, Dataset)):
        raise InputError(f"dataset must be the folder written by medsam_lite.preprocess (a path) or an opened "
                         f"Dataset, got {type(dataset).__name__}.")
    return open_dataset(dataset)


def check_int(value, name: str, minimum: int) -> int:
    """``value`` as an int ≥ ``minimum`` (bool, float and text are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be a whole number ≥ {minimum}, got {value!r}.")
    return int(value)


def check_labels(labels) -> list[int] | None:
    """``None`` or a sorted list of label values (ints); names and other types are refused."""
    if labels is None:
        return None
    items = [labels] if not isinstance(labels, (list, tuple, set, np.ndarray)) else list(labels)
    if not items or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
        raise InputError(f"labels must be label values (whole numbers such as [1, 3], as in the manifest's "
                         f"'label' column), got {labels!r}.")
    return sorted(int(v) for v in items)


def _case_list(cases) -> list[str] | None:
    if cases is None:
        return None
    if isinstance(cases, str):
        return [cases]
    if not isinstance(cases, (list, tuple, set, np.ndarray, pd.Series, pd.Index)) or not all(
            isinstance(c, str) for c in cases):
        raise InputError(f"cases must be a list of case ids (strings such as 'sub-01'), got {cases!r}.")
    return list(cases)


def select_slices(dataset: Dataset, split: str | None = None, cases=None,
                  max_slices_per_case: int | None = None) -> pd.DataFrame:
    """A subset of ``dataset.slices`` (keeping its index, i.e. the store's row numbers).

    Args:
        dataset: an opened dataset.
        split: ``"train"``, ``"test"`` or ``None`` (all).
        cases: case ids to keep (default: all).
        max_slices_per_case: keep at most this many **consecutive** slices per case, centred on
            the case's middle slice (an honest small subset for quick runs; slices stay contiguous
            so per-case 3D metrics remain meaningful). ``None`` keeps every slice.

    Returns:
        Rows of :attr:`Dataset.slices`; the index is the row number in the embedding store.
    """
    table = dataset.slices
    cases = _case_list(cases)
    if split is not None:
        if split not in set(table["split"]):
            raise InputError(f"split {split!r} is not in this dataset; it has {sorted(set(table['split']))}.")
        table = table[table["split"] == split]
    if cases is not None:
        unknown = sorted(set(cases) - set(dataset.slices["case"]))
        if unknown:
            raise InputError(f"cases {unknown} are not in the dataset; it has {sorted(set(dataset.slices['case']))}.")
        table = table[table["case"].isin(cases)]
    if max_slices_per_case is not None:
        k = check_int(max_slices_per_case, "max_slices_per_case (or None for all)", 1)
        parts = []
        for _, group in table.groupby("case", sort=True):
            start = max(0, (len(group) - k) // 2)
            parts.append(group.iloc[start:start + k])
        table = pd.concat(parts) if parts else table.iloc[:0]
    if table.empty:
        raise InputError("no slices selected; check split=, cases= and max_slices_per_case=.")
    return table


def model_boxes(model: SamModel, targets: pd.DataFrame) -> np.ndarray:
    """The manifest boxes of ``targets`` in **model-input** pixels, ``N×4`` float32 XYXY.

    Manifest boxes are in original slice pixels (``height × width``); they are mapped with
    ``model.geometry((height, width))``, exactly as :class:`~medsam_lite.Predictor` maps a box on
    the original slice. The stored slice has the same geometry in model space (same resized size),
    so the box lands on the same spot of the stored embedding.
    """
    out = np.zeros((len(targets), 4), np.float32)
    cols = ["x0", "y0", "x1", "y1"]
    for (h, w), group in targets.groupby(["height", "width"]):
        pos = targets.index.get_indexer(group.index)
        out[pos] = model.geometry((int(h), int(w))).box_to_model(group[cols].to_numpy(np.float32))
    return out


def encoder_sha256(model: SamModel) -> str:
    """SHA-256 over the image encoder's tensors (names, dtypes, shapes, values).

    The stored embeddings depend on the image encoder only, so a model whose decoder was
    fine-tuned (same encoder) reuses them, and any other encoder is refused.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.image_encoder.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _rows_with_hashes(dataset: Dataset) -> pd.DataFrame:
    rows = dataset.slices[["case", "slice", "image"]].copy()
    rows["sha256"] = [hashlib.sha256(dataset.path(p).read_bytes()).hexdigest() for p in rows["image"]]
    return rows


def _signature(model: SamModel, rows: pd.DataFrame, dtype: str) -> dict:
    from . import __version__

    content = "\n".join(f"{c},{s},{i},{h}" for c, s, i, h in rows.itertuples(index=False))
    emb_hw = tuple(int(v) for v in model.prompt_encoder.image_embedding_size)
    return {
        "format": STORE_FORMAT,
        "model_name": model.name,
        "encoder_sha256": encoder_sha256(model),
        "input_size": model.input_size,
        "recipe": model.spec.recipe,
        "dtype": dtype,
        "embedding_shape": [int(model.prompt_encoder.embed_dim), *emb_hw],
        "medsam_lite_version": __version__,
        "dataset_sha256": hashlib.sha256(content.encode()).hexdigest(),
        "rows": len(rows),
        # informational only:
        "weights_sha256": model.weights_sha256,
        "checkpoint": str(model.checkpoint),
    }


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass
class EmbeddingStore:
    """Stored image embeddings of a dataset (read them with :meth:`get`).

    Attributes:
        path: the store folder.
        signature: the content of ``signature.json``.
        rows: ``case``, ``slice``, ``image``, ``sha256`` per entry, in store order.
        embeddings: ``N×C×h×w`` memory-mapped array (float16 or float32), opened read-only.
        done: ``N`` bool, True where the entry is complete.
    """

    path: Path
    signature: dict
    rows: pd.DataFrame
    embeddings: np.ndarray = field(repr=False)
    done: np.ndarray = field(repr=False)

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
    tmp_emb, tmp_done = path / ".tmp-embeddings.npy", path / ".tmp-done.npy"
    arr = np.lib.format.open_memmap(tmp_emb, mode="w+", dtype=dtype, shape=shape)
    del arr
    done = np.lib.format.open_memmap(tmp_done, mode="w+", dtype=np.uint8, shape=(len(rows),))
    done[:] = 0
    done.flush()
    del done
    rows.to_csv(path / ".tmp-rows.csv", index=False)
    os.replace(tmp_emb, path / "embeddings.npy")
    os.replace(tmp_done, path / "done.npy")
    os.replace(path / ".tmp-rows.csv", path / "rows.csv")
    _write_atomic(path / "signature.json", json.dumps(signature, indent=1))


def _damage(path: Path, signature: dict) -> list[str]:
    """What is wrong with a store's files (cut, missing, wrong shape), or ``[]``."""
    shape = (signature["rows"], *signature["embedding_shape"])
    try:
        emb = np.load(path / "embeddings.npy", mmap_mode="r", allow_pickle=False)
        done = np.load(path / "done.npy", mmap_mode="r", allow_pickle=False)
        rows = pd.read_csv(path / "rows.csv", dtype={"case": str})
    except (OSError, ValueError, EOFError, pd.errors.ParserError) as exc:
        return [f"store files unreadable: {str(exc)[:120]}"]
    problems = []
    if emb.shape != shape or emb.dtype != np.dtype(signature["dtype"]):
        problems.append(f"embeddings.npy holds {emb.shape} {emb.dtype}, expected {shape} {signature['dtype']}")
    if done.shape != (shape[0],):
        problems.append(f"done.npy holds {done.shape} flags for {shape[0]} rows")
    if len(rows) != shape[0] or list(rows.columns) != ["case", "slice", "image", "sha256"]:
        problems.append("rows.csv does not list the store's rows")
    return problems


def _mismatch(old: dict, new: dict) -> list[str]:
    return [f"{k}: stored {old.get(k)!r} ≠ now {new.get(k)!r}" for k in CHECKED_KEYS if old.get(k) != new.get(k)]


def open_store(dataset, model: SamModel | None = None, dtype: str = "float16", path=None,
               recompute: bool = False, create: bool = True, verbose: bool = False) -> EmbeddingStore:
    """Open (or create) the embedding store of ``dataset`` for ``model``, checking its signature.

    Args:
        dataset: a prepared dataset folder or :class:`~medsam_lite.dataset.Dataset`.
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
    # one process at a time checks, discards or creates the store's files: a second creator
    # (another shard, another rank) finds the store made and never replaces files being written
    with store_lock(path) if create or path.is_dir() else nullcontext():
        if sig_path.is_file():
            try:
                old = json.loads(sig_path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                old = None
            if not isinstance(old, dict):
                old = {"format": "unreadable signature.json (damaged)"}
            problems = _mismatch(old, signature) or _damage(path, signature)
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
                for name in ("signature.json", "embeddings.npy", "done.npy", "rows.csv"):
                    (path / name).unlink(missing_ok=True)
        if not sig_path.is_file():
            if not create:
                raise InputError(f"there are no stored embeddings in {path}; run medsam_lite.embed(dataset, model) "
                                 "first.")
            need = len(rows) * int(np.prod(signature["embedding_shape"])) * np.dtype(dtype).itemsize
            path.mkdir(parents=True, exist_ok=True)
            for stale in path.glob(".tmp-*"):  # left by a creation that was killed (we hold the lock)
                stale.unlink(missing_ok=True)
            free = shutil.disk_usage(path).free
            if need > free:
                raise InputError(f"the embedding store needs {need / 2**20:.0f} MiB but only {free / 2**20:.0f} MiB "
                                 f"are free at {path}; free some space or pass path= on another disk.")
            _create(path, signature, rows, dtype)
    emb = np.load(path / "embeddings.npy", mmap_mode="r", allow_pickle=False)
    done = np.load(path / "done.npy", mmap_mode="r", allow_pickle=False)
    return EmbeddingStore(path, json.loads(sig_path.read_text()), pd.read_csv(path / "rows.csv", dtype={"case": str}),
                          emb, np.asarray(done, dtype=bool))


def embed(
    dataset,
    model: SamModel | None = None,
    batch_size: int = 1,
    dtype: str = "float16",
    split: str | None = None,
    cases=None,
    max_slices_per_case: int | None = None,
    recompute: bool = False,
    path=None,
    progress: bool = True,
    shard=None,
) -> EmbeddingStore:
    """Compute the image embedding of every slice once and store it beside the dataset.

    Already stored entries are reused (after the signature check), so calling ``embed`` again is
    cheap, and an interrupted run continues where it stopped. Prints the disk estimate first.

    Args:
        dataset: a folder written by :func:`medsam_lite.preprocess` or an opened
            :class:`~medsam_lite.dataset.Dataset`.
        model: a :class:`~medsam_lite.models.SamModel` (default: ``load_model()``, LiteMedSAM).
        batch_size: slices per encoder call (default 1: on a CPU batching gives no speed-up and
            raises memory; try 4–16 on a GPU).
        dtype: storage dtype, ``"float16"`` (default; 2 MiB per 256×64×64 embedding) or
            ``"float32"`` (4 MiB).
        split: only the slices of ``"train"`` or ``"test"`` (default: all).
        cases: only these case ids (default: all).
        max_slices_per_case: at most this many consecutive, central slices per case (quick runs;
            see :func:`select_slices`). The store always has a row for every slice; the others can
            be computed by a later call.
        recompute: discard a store whose signature does not match (model, preprocessing, dtype,
            package version or dataset changed) instead of raising :class:`StoreMismatchError`.
        path: store folder (default ``<dataset>/embeddings/<model name>``).
        progress: show a progress bar.
        shard: ``(i, n)`` or ``"i/n"``: compute only rows ``i::n`` of the selected slices, so ``n``
            independent jobs (other processes or machines, e.g. a Slurm job array) fill one store
            together, each entry written by exactly one of them; a later call without ``shard``
            computes whatever is still missing. Default ``None``: all selected slices, or under
            ``torchrun`` every process its share, after which all wait until the store is complete
            (every process must call ``embed``; ``shard=(0, 1)`` computes everything here).
            See :mod:`medsam_lite.distributed`.

    Returns:
        The :class:`EmbeddingStore` (``store.get(row)`` → ``256×64×64`` float32 tensor). With
        ``shard``, other shards' entries may still be missing from it.

    Each slice is read as stored (``h×w`` uint8, longest side = the dataset's ``image_size``),
    replicated to RGB and mapped with ``model.geometry((h, w)).image_to_model`` (for LiteMedSAM on
    a 256 dataset: min-max to [0, 1] and zero padding bottom/right, no resizing).
    """
    dataset = check_dataset(dataset)
    model = check_model(model)
    batch_size = check_int(batch_size, "batch_size", 1)
    wanted = select_slices(dataset, split, cases, max_slices_per_case)
    shard = parse_shard(shard)
    if shard is None and dist_context().world_size > 1:  # under torchrun: each process its share
        return embed_on_all_ranks(embed, wanted.index, model, progress, dataset=dataset, batch_size=batch_size,
                                  dtype=dtype, split=split, cases=cases, max_slices_per_case=max_slices_per_case,
                                  recompute=recompute, path=path)
    store = open_store(dataset, model, dtype=dtype, path=path, recompute=recompute, verbose=progress)
    mine = shard_rows(wanted.index, shard)
    todo = [int(i) for i in mine if not store.done[i]]
    per = int(np.prod(store.signature["embedding_shape"])) * np.dtype(dtype).itemsize
    if progress:
        part = "" if shard is None else f"shard {shard[0]}/{shard[1]}: {len(mine)} of them, "
        print(f"embedding store {store.path}: {len(store)} slices × {per / 2**20:.1f} MiB = "
              f"{len(store) * per / 2**20:.0f} MiB on disk ({dtype}); selected {len(wanted)}, {part}"
              f"{len(mine) - len(todo)} already stored, {len(todo)} to compute")
    if not todo:
        return store
    writer = EntryWriter(store.path)  # positioned writes: shards on other machines share no bytes
    table = dataset.slices
    bar = tqdm(total=len(todo), desc=f"embed ({model.name})", unit="slice", disable=not progress)
    try:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            inputs = []
            for i in batch:
                gray = dataset.image(table.at[i, "image"])
                rgb = np.repeat(gray[..., None], 3, axis=2)
                inputs.append(model.geometry(gray.shape).image_to_model(rgb))
            out = model.encode(torch.cat(inputs)).cpu().numpy()
            writer.write(batch, out)  # data, synced, then the done flags
            store.done[batch] = True
            bar.update(len(batch))
    finally:
        bar.close()
        writer.close()
    return store
