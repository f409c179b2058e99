"""Several processes, GPUs or machines: ``torchrun`` for fine-tuning, shards for embedding.

Nothing here changes what one process does. Under ``torchrun`` (``WORLD_SIZE`` > 1 in the
environment) :func:`medsam_lite.finetune` trains with PyTorch ``DistributedDataParallel`` (gloo
on CPUs, NCCL on GPUs) and :func:`medsam_lite.embed` gives each process its share of the slices;
``embed(..., shard=(i, n))`` (CLI ``medsam-lite embed DATASET --shard i/n``) does the same for
independent jobs, e.g. the tasks of a Slurm job array, that never talk to each other.

How a distributed run matches a single-process one:

* **Fine-tuning.** The global batch is ``batch_size`` targets, exactly as in one process: every
  rank draws the same seeded permutation and the same box jitter for the whole global batch, then
  takes positions ``rank::world_size`` of it (:func:`rank_share`). Each rank's mean loss is
  weighted by ``n_rank / n_global × world_size``, so DDP's gradient average equals the gradient of
  the global batch's mean loss, also for a last batch that does not split evenly (a rank with no
  target in it runs one target with weight 0 to keep the collective in step). Validation,
  checkpoints and ``history.csv`` are written by rank 0 only, in the format of a single process.
* **Embedding.** Shard ``i`` of ``n`` computes the rows ``i::n`` of the *selected* slices (not of
  the missing ones, so shards started at different times still split the work the same way).
  One process at a time checks or creates the store's files (:func:`medsam_lite.data.storefiles.store_lock`), so a second
  creator never replaces files someone writes into. Entries are written with positioned writes
  (:class:`medsam_lite.data.storefiles.EntryWriter`), each shard into its own rows' bytes, data before its ``done`` flag.
"""

from __future__ import annotations

import atexit
import datetime
import json
import os
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from .errors import InputError

_OWN_GROUP = False  # True once init_distributed() created the process group (it then destroys it)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly one-process) job.

    Attributes:
        rank, world_size: this process's index and the number of processes (``RANK``,
            ``WORLD_SIZE``; 0 and 1 alone).
        local_rank, local_world_size: the same on this machine (``LOCAL_RANK``,
            ``LOCAL_WORLD_SIZE``).
        device: this rank's device: ``cuda:<local_rank>`` where CUDA is available, else ``cpu``.
        initialized: the ``torch.distributed`` process group is up.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")
    initialized: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0 (and in a single process)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when several processes take part and their process group is up."""
        return self.world_size > 1 and self.initialized


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(f"the environment variable {name}={value!r} is not a whole number; it is set by "
                         "torchrun (or your launcher): unset it to run in one process.") from None


def dist_context() -> DistContext:
    """This process's rank, world size and device, read from the torchrun environment.

    ``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE``; without
    them this is rank 0 of 1 on the default device. Nothing is initialized here.
    """
    initialized = torch.distributed.is_available() and torch.distributed.is_initialized()
    if initialized:
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    else:
        rank, world = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0 if world == 1 else rank)
    local_world = _env_int("LOCAL_WORLD_SIZE", 1 if world == 1 else world)
    if world < 1 or not 0 <= rank < world or not 0 <= local_rank < max(local_world, 1):
        raise InputError(f"inconsistent launcher settings RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local_rank}, "
                         f"LOCAL_WORLD_SIZE={local_world}; start the processes with torchrun, which sets them.")
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank % torch.cuda.device_count()}" if cuda else "cpu")
    return DistContext(rank, world, local_rank, local_world, device, initialized)


def default_device(requested=None):
    """The device a model should load on in this process (for ``load_model(device=...)``).

    ``requested`` as it is in a single process. Under torchrun, ``None`` or a bare ``"cuda"``
    becomes this rank's own device (``cuda:<LOCAL_RANK>``, or ``cpu`` without CUDA for ``None``):
    one GPU per process.
    """
    ctx = dist_context()
    if ctx.world_size == 1:
        return requested
    if requested is None or (str(requested) == "cuda" and ctx.device.type == "cuda"):
        return str(ctx.device)
    return requested


def init_distributed(device=None) -> DistContext:
    """Join the torchrun job's process group (once); a no-op in a single process.

    Args:
        device: the device this process computes on (a model's ``.device``); CUDA → NCCL,
            otherwise gloo. Default: this rank's :attr:`DistContext.device`.

    Returns:
        The :class:`DistContext` after initialization. A process group the caller initialized
        already is used as it is.

    Collectives wait up to ``MEDSAM_LITE_DIST_TIMEOUT_MINUTES`` (default 120) for the slowest
    rank — e.g. at the barrier after each rank embedded its share, or while rank 0 validates.
    """
    global _OWN_GROUP
    ctx = dist_context()
    if ctx.world_size == 1 or ctx.initialized:
        return ctx
    if not torch.distributed.is_available():
        raise InputError("WORLD_SIZE > 1 is set but this PyTorch build has no torch.distributed; run in one "
                         "process (unset WORLD_SIZE) or install a PyTorch with distributed support.")
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise InputError(f"WORLD_SIZE={ctx.world_size} is set but {' and '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} not: start the "
                         "processes with torchrun (e.g. torchrun --nproc_per_node 2 -m medsam_lite.app.cli finetune …), "
                         "or unset WORLD_SIZE to run in one process.")
    dev = torch.device(device) if device is not None else ctx.device
    if dev.type == "cuda":
        if dev != ctx.device:
            raise InputError(f"rank {ctx.rank} should use {ctx.device} but was given {dev}; load the model with "
                             "load_model(device=medsam_lite.distributed.default_device()) (one GPU per process).")
        torch.cuda.set_device(dev)
    minutes = _env_int("MEDSAM_LITE_DIST_TIMEOUT_MINUTES", 120)
    torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                         timeout=datetime.timedelta(minutes=max(minutes, 1)))
    _OWN_GROUP = True
    atexit.register(cleanup)
    return dist_context()


def cleanup() -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    global _OWN_GROUP
    if _OWN_GROUP and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _OWN_GROUP = False


def is_main() -> bool:
    """True on rank 0 and in a single process."""
    return dist_context().is_main


def _comm_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for in a single process)."""
    if dist_context().distributed:
        if torch.distributed.get_backend() == "nccl":
            torch.distributed.barrier(device_ids=[torch.cuda.current_device()])
        else:
            torch.distributed.barrier()


def all_sum(value: float) -> float:
    """The sum of ``value`` over all ranks (``value`` itself in a single process)."""
    if not dist_context().distributed:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=_comm_device())
    torch.distributed.all_reduce(t)
    return float(t.item())


def any_rank(flag: bool) -> bool:
    """True if ``flag`` is true on any rank."""
    return all_sum(1.0 if flag else 0.0) > 0


def from_main(obj):
    """Rank 0's ``obj`` (JSON-able: numbers incl. NaN, strings, lists, dicts) on every rank.

    Sent as JSON text, so nothing is unpickled. In a single process ``obj`` is returned as is.
    """
    if not dist_context().distributed:
        return obj
    dev = _comm_device()
    data = json.dumps(obj).encode() if is_main() else b""
    size = torch.tensor([len(data)], dtype=torch.int64, device=dev)
    torch.distributed.broadcast(size, src=0)
    buf = torch.zeros(int(size.item()), dtype=torch.uint8, device=dev)
    if is_main():
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    torch.distributed.broadcast(buf, src=0)
    return json.loads(bytes(buf.cpu().numpy()).decode())


# ------------------------------------------------------------------------------------ fine-tuning
def rank_share(idx: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, float]:
    """This rank's share of a global batch, and the weight of its mean loss.

    Args:
        idx: the global batch's target indices (the same on every rank).
        boxes: their (jittered) boxes, drawn for the whole global batch on every rank.

    Returns:
        ``(idx_r, boxes_r, count, weight)``: positions ``rank::world_size`` of the batch,
        ``count`` real targets, and ``weight = count / len(idx) × world_size`` so that DDP's mean
        over ranks of ``weight × mean loss`` is the global batch's mean loss. A rank left without
        a target gets the first one with ``count = 0`` and ``weight = 0`` (it still joins the
        gradient all-reduce). In a single process: ``(idx, boxes, len(idx), 1.0)``.
    """
    ctx = dist_context()
    if not ctx.distributed:
        return idx, boxes, len(idx), 1.0
    part = slice(ctx.rank, None, ctx.world_size)
    idx_r, boxes_r = idx[part], boxes[part]
    if len(idx_r) == 0:
        return idx[:1], boxes[:1], 0, 0.0
    return idx_r, boxes_r, len(idx_r), len(idx_r) * ctx.world_size / len(idx)


class _DecoderHead(torch.nn.Module):
    """The trained parts of a model (prompt encoder + mask decoder) as the module DDP wraps.

    The frozen image encoder is left out, so DDP neither broadcasts nor watches its weights.
    ``forward`` runs ``fn(trainee, *args)`` (finetune's forward pass).
    """

    def __init__(self, trainee, fn):
        super().__init__()
        self.prompt_encoder = trainee.prompt_encoder
        self.mask_decoder = trainee.mask_decoder
        self._call = partial(fn, trainee)

    def forward(self, *args):
        return self._call(*args)


def data_parallel(trainee, fn):
    """``fn(trainee, *args)`` as a callable; under torchrun through ``DistributedDataParallel``.

    In a single process this is ``functools.partial(fn, trainee)``. Under torchrun the prompt
    encoder and mask decoder are wrapped in DDP (the module's own parameters are used, so an
    optimizer over ``trainee``'s parameters steps them, and ``trainee.state_dict()`` keeps its
    keys without a ``module.`` prefix). The IoU head gets no gradient from the segmentation loss,
    hence ``find_unused_parameters=True``.
    """
    ctx = dist_context()
    if not ctx.distributed:
        return partial(fn, trainee)
    device = next(trainee.mask_decoder.parameters()).device
    if torch.distributed.get_backend() == "nccl" and device.type != "cuda":
        raise InputError("the process group uses NCCL (GPUs) but the model is on the CPU; load it with "
                         "load_model(device=medsam_lite.distributed.default_device()).")
    if device.type == "cuda" and device != ctx.device:
        raise InputError(f"rank {ctx.rank} should use {ctx.device} but the model is on {device}; load it with "
                         "load_model(device=medsam_lite.distributed.default_device()) (one GPU per process).")
    return torch.nn.parallel.DistributedDataParallel(
        _DecoderHead(trainee, fn), device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=True)


# ------------------------------------------------------------------------------------ embedding
def parse_shard(shard) -> tuple[int, int] | None:
    """``None``, ``(i, n)`` or ``"i/n"`` → ``(i, n)`` with ``0 ≤ i < n`` (or ``None``).

    Raises:
        InputError: anything else, e.g. ``"3/3"`` (shards count from 0) or ``"1of4"``.
    """
    if shard is None:
        return None
    parts = shard.split("/") if isinstance(shard, str) else shard
    try:
        i, n = (int(p.strip()) if isinstance(p, str) else int(p) if isinstance(p, (int, np.integer))
                and not isinstance(p, bool) else None for p in parts)
    except (TypeError, ValueError):
        i = n = None
    if i is None or n is None or n < 1 or not 0 <= i < n:
        raise InputError(f"shard must be 'I/N' (or a tuple (I, N)) with 0 ≤ I < N, e.g. '0/4' … '3/4' for four "
                         f"jobs; got {shard!r}.")
    return i, n


def shard_rows(rows, shard: tuple[int, int] | None):
    """Rows ``i::n`` of ``rows`` (all of them for ``None``)."""
    return rows if shard is None else rows[shard[0]::shard[1]]
