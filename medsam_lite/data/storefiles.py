"""The embedding store's file mechanics: one creator at a time (the package's one lock, waiting),
and entries written with positioned writes, data before their ``done`` flag.

See :mod:`medsam_lite.data.store` for the layout; nothing here knows about models or datasets.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..fileutil import FolderLock


@contextmanager
def store_lock(folder: Path, poll_seconds: float = 0.2, stale_seconds: float = 600.0):
    """Hold the exclusive lock of an embedding store folder (created if missing), **waiting** for it.

    :class:`~medsam_lite.fileutil.FolderLock` with ``wait=None``: a second creator (another shard,
    another rank) waits while the first checks or creates the store's files, then finds them made.
    Without ``flock`` (see :class:`~medsam_lite.fileutil.FolderLock`) ``poll_seconds`` is the wait
    between attempts, and another host's ``.lock.owner`` older than ``stale_seconds`` is removed
    (creating a store takes seconds, so an old one was left by a killed run).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with FolderLock(folder, "embed", wait=None, poll_seconds=poll_seconds, stale_seconds=stale_seconds):
        yield


class _NpyRows:
    """Positioned writes of whole rows into an existing ``.npy`` file (no memory map)."""

    def __init__(self, path: Path):
        view = np.load(path, mmap_mode="r", allow_pickle=False)
        self.path, self.dtype, self.shape, self.offset = path, view.dtype, view.shape, int(view.offset)
        self.row_bytes = int(np.prod(view.shape[1:], dtype=np.int64)) * view.dtype.itemsize
        del view
        self.fd = os.open(path, os.O_RDWR)

    def write(self, row: int, value) -> None:
        if not 0 <= row < self.shape[0]:
            raise IndexError(f"row {row} outside {self.path} ({self.shape[0]} rows)")
        data = memoryview(np.ascontiguousarray(value, dtype=self.dtype).tobytes())
        if len(data) != self.row_bytes:
            raise ValueError(f"a row of {self.path} has {self.row_bytes} bytes, got {len(data)}")
        pos = self.offset + row * self.row_bytes
        while data:
            if hasattr(os, "pwrite"):
                n = os.pwrite(self.fd, data, pos)
            else:  # Windows: this process's own descriptor, so seek + write is safe
                os.lseek(self.fd, pos, os.SEEK_SET)
                n = os.write(self.fd, data)
            data, pos = data[n:], pos + n

    def sync(self) -> None:
        (os.fdatasync if hasattr(os, "fdatasync") else os.fsync)(self.fd)

    def close(self) -> None:
        os.close(self.fd)


class EntryWriter:
    """Writes finished entries into a store: their embeddings, synced, then their ``done`` flags.

    Each entry is written with ``pwrite`` at its own byte range, never through a shared memory
    map: on a network filesystem a mapped page holding the end of one entry and the start of the
    next (written by another machine) would be written back whole, undoing the neighbour's bytes.

    Attributes:
        rows_written: the store rows this writer completed, in order.
        inode: the inode of the ``embeddings.npy`` written into (for tests: one file per store).
    """

    def __init__(self, store_path):
        path = Path(store_path)
        self._emb, self._done = _NpyRows(path / "embeddings.npy"), _NpyRows(path / "done.npy")
        self.inode = os.fstat(self._emb.fd).st_ino
        self.rows_written: list[int] = []

    def write(self, rows, values) -> None:
        """Store ``values[j]`` as the entry of row ``rows[j]`` and mark those rows done."""
        for row, value in zip(rows, values):
            self._emb.write(int(row), value)
        self._emb.sync()  # data first ...
        for row in rows:
            self._done.write(int(row), 1)
        self._done.sync()  # ... then the flag: a half-written entry is never counted as done
        self.rows_written.extend(int(r) for r in rows)

    def close(self) -> None:
        self._emb.close()
        self._done.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
