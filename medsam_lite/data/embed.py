"""Image embeddings computed once per slice and stored beside the dataset (the verb; the store is
:mod:`medsam_lite.data.store`).

The frozen image encoder is by far the most expensive part of a SAM-family model (about 1–2 s per
256×256 slice on a laptop CPU for LiteMedSAM in torch, against ~40 ms for a box through the
decoder). So :func:`embed` runs it **once per stored slice** and keeps the result on disk;
fine-tuning (:func:`medsam_lite.finetune`) and evaluation (:func:`medsam_lite.evaluate`) read it back.

An interrupted run (kernel restart, Ctrl-C, killed process) resumes where it stopped: an entry's
flag is set only after its embedding has been written and flushed, so a half-written entry is
simply computed again.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..checks import check_cases, check_int
from .dataset import check_dataset
from ..model.models import check_model
from .dataset import Dataset
from ..distributed import any_rank, barrier, dist_context, init_distributed, parse_shard, shard_rows
from ..errors import InputError
from ..fileutil import os_error_to_input_error
from ..model.inference import encode_images
from ..model.models import SamModel
from .store import EmbeddingStore, open_store, reload_store
from .storefiles import EntryWriter


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
    cases = check_cases(cases)
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
    ``model.geometry((height, width)).box_prompt``, exactly as :func:`~medsam_lite.model.inference.decode`
    maps a box on the original slice. The stored slice has the same geometry in model space (same
    resized size), so the box lands on the same spot of the stored embedding.
    """
    out = np.zeros((len(targets), 4), np.float32)
    cols = ["x0", "y0", "x1", "y1"]
    for (h, w), group in targets.groupby(["height", "width"]):
        pos = targets.index.get_indexer(group.index)
        out[pos] = model.geometry((int(h), int(w))).box_prompt(group[cols].to_numpy(np.float32))
    return out


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
            :class:`~medsam_lite.data.dataset.Dataset`.
        model: a :class:`~medsam_lite.model.models.SamModel` (default: ``load_model()``, LiteMedSAM).
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
    replicated to RGB and encoded through :func:`~medsam_lite.model.inference.encode_images` with the
    geometry of a stored slice of its original ``height × width`` (for LiteMedSAM on a 256
    dataset: min-max to [0, 1] and zero padding bottom/right, no resizing — ``preprocess`` already
    resized it with the published ``cv2.INTER_AREA``).
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
    mine = shard_rows(wanted.index, shard)
    for rel in dataset.slices.loc[mine, "image"]:  # every slice this call encodes opens as a PNG, checked
        dataset.image(rel)  # before the store (hundreds of MiB) is created: a refusal writes nothing
    store = open_store(dataset, model, dtype=dtype, path=path, recompute=recompute, verbose=progress)
    todo = [int(i) for i in mine if not store.done[i]]
    per = int(np.prod(store.signature["embedding_shape"])) * np.dtype(dtype).itemsize
    if progress:
        part = "" if shard is None else f"shard {shard[0]}/{shard[1]}: {len(mine)} of them, "
        print(f"embedding store {store.path}: {len(store)} slices × {per / 2**20:.1f} MiB = "
              f"{len(store) * per / 2**20:.0f} MiB on disk ({dtype}); selected {len(wanted)}, {part}"
              f"{len(mine) - len(todo)} already stored, {len(todo)} to compute")
    if not todo:
        return store
    try:
        writer = EntryWriter(store.path)  # positioned writes: shards on other machines share no bytes
    except OSError as exc:  # a read-only dataset whose store lacks entries: say so before encoding
        raise os_error_to_input_error(exc, store.path / "embeddings.npy",
                                      f"{len(todo)} embeddings are missing; or pass path= to put the store "
                                      "on a writable disk.") from None
    table = dataset.slices
    bar = tqdm(total=len(todo), desc=f"embed ({model.name})", unit="slice", disable=not progress)
    try:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            images = [np.repeat(dataset.image(table.at[i, "image"])[..., None], 3, axis=2) for i in batch]
            originals = [(int(table.at[i, "height"]), int(table.at[i, "width"])) for i in batch]
            out = encode_images(model, images, originals)  # the stored slice's geometry: original ↔ stored
            try:
                writer.write(batch, [emb.tensor[0].cpu().numpy() for emb in out])  # data, synced, then flags
            except OSError as exc:  # a full disk: the entries written so far are kept
                raise os_error_to_input_error(exc, store.path / "embeddings.npy",
                                              "Then run embed() again: it resumes.") from None
            store.done[batch] = True
            bar.update(len(batch))
    finally:
        bar.close()
        writer.close()
    return store


def embed_on_all_ranks(embed_fn, wanted_rows, model, progress: bool, **kwargs):
    """``embed`` under torchrun: every rank its share, then all wait until the store is complete.

    Pass 1: rank ``r`` of ``W`` computes rows ``r::W`` of ``wanted_rows``. After a barrier, if
    any rank still misses rows (each machine has its own copy of the store), the ranks of each
    machine complete their copy, split by local rank. Every rank must call this.
    """
    ctx = init_distributed(model.device)
    progress = progress and ctx.is_main
    store = embed_fn(model=model, shard=(ctx.rank, ctx.world_size), progress=progress, **kwargs)
    barrier()
    store = reload_store(store)
    if any_rank(not store.done[np.asarray(wanted_rows, dtype=np.int64)].all()):
        store = embed_fn(model=model, shard=(ctx.local_rank, ctx.local_world_size), progress=progress, **kwargs)
        barrier()
        store = reload_store(store)
    return store
