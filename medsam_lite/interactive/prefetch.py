"""Encode the neighbouring slices in the background while the user looks at one.

:class:`Prefetcher` owns one worker thread and an :class:`~medsam_lite.model.inference.EmbeddingCache`.
``get(key)`` returns a slice's embedding — from the cache, by waiting for the worker if it is
encoding that very slice, or by encoding it here — and ``request(keys)`` replaces the queue of
slices to encode next (bounded: older requests are dropped, so stepping quickly through a volume
never piles up work). The worker runs the same :func:`~medsam_lite.model.inference.encode` as the
foreground, with the thread count the process has (``torch.set_num_threads`` / the compiled
runtime's threads), and stops at :meth:`close` (or when the owner is garbage collected).
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections.abc import Callable, Hashable

from ..model.inference import Embedding, EmbeddingCache

_LIVE: "weakref.WeakSet[Prefetcher]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """At interpreter exit, let every worker finish its slice: a native inference runtime torn down
    under a running thread aborts the process ("terminate called without an active exception")."""
    for prefetcher in list(_LIVE):
        prefetcher.close()


class Prefetcher:
    """A cache of embeddings filled on demand and, ahead of demand, by one background thread.

    Args:
        encode: ``key → Embedding`` (e.g. encode slice ``key`` of a volume); raising
            :class:`~medsam_lite.InputError` marks the key as not encodable (a blank slice).
        cache: where embeddings are kept (default: unbounded).
        max_pending: at most this many keys wait in the queue (default 4).
        idle_seconds: the worker starts a key only once the foreground has been idle this long
            (see :meth:`touch`; default 0): on a 2-core CPU a background encode beside the
            foreground's decoder would slow the very box the user just drew.

    Attributes:
        encoder_calls: how many keys were encoded, in the foreground and in the background.
        background_calls: how many of them the worker encoded.
    """

    def __init__(self, encode: Callable[[Hashable], Embedding], cache: EmbeddingCache | None = None,
                 max_pending: int = 4, idle_seconds: float = 0.0):
        self._encode = encode
        self.cache = cache if cache is not None else EmbeddingCache()
        self.max_pending = int(max_pending)
        self.idle_seconds = float(idle_seconds)
        self._last_touch = 0.0
        self.encoder_calls = 0
        self.background_calls = 0
        self._lock = threading.Condition()
        self._queue: list = []
        self._busy: Hashable | None = None
        self._refused: set = set()
        self._closed = False
        self._thread: threading.Thread | None = None
        weakref.finalize(self, Prefetcher._stop, self._lock, self.__dict__)
        _LIVE.add(self)

    @classmethod
    def owned(cls, owner, encode: Callable, cache: EmbeddingCache | None = None, **options) -> "Prefetcher":
        """A prefetcher for ``owner`` (a VolumePredictor, a BoxPrompter) that does not keep it alive.

        ``encode(owner, key)`` is called through a weak reference, so the worker holds no strong
        reference to its owner; when the owner is garbage collected the queue is dropped and the
        worker stops after the slice it is encoding. ``options`` as :class:`Prefetcher`.
        """
        ref = weakref.ref(owner)

        def encode_key(key):
            me = ref()
            if me is None:
                from ..errors import InputError

                raise InputError("the owner of this prefetcher was collected")
            return encode(me, key)

        prefetcher = cls(encode_key, cache, **options)
        weakref.finalize(owner, cls._stop, prefetcher._lock, prefetcher.__dict__)
        return prefetcher

    def get(self, key) -> Embedding:
        """The embedding of ``key``: cached, awaited from the worker, or encoded now."""
        with self._lock:
            while self._busy == key:
                self._lock.wait()
            found = self.cache.get(key)
            if found is not None:
                return found
            if key in self._queue:
                self._queue.remove(key)
        embedding = self._encode(key)  # may raise InputError (e.g. a blank slice)
        with self._lock:
            self.encoder_calls += 1
            return self.cache.put(key, embedding)

    def touch(self) -> None:
        """The foreground is working (a box is being decoded): hold back new background work."""
        self._last_touch = time.monotonic()

    def request(self, keys) -> None:
        """Encode ``keys`` next in the background (replacing what was still waiting)."""
        with self._lock:
            if self._closed:
                return
            wanted = [k for k in keys if k not in self.cache and k != self._busy and k not in self._refused]
            self._queue = wanted[: self.max_pending]
            if self._queue and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._work, name="medsam-lite-prefetch", daemon=True)
                self._thread.start()
            self._lock.notify_all()

    def pending(self) -> list:
        """Keys waiting to be encoded (the one being encoded not included)."""
        with self._lock:
            return list(self._queue)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the queue is empty and the worker idle; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._queue and self._busy is None, timeout)

    def cancel(self) -> None:
        """Drop every waiting request (the slice being encoded finishes)."""
        with self._lock:
            self._queue.clear()

    def close(self) -> None:
        """Stop the worker (after the slice it is encoding)."""
        Prefetcher._stop(self._lock, self.__dict__)
        if self._thread is not None:
            self._thread.join()

    @staticmethod
    def _stop(lock, state) -> None:
        with lock:
            state["_closed"] = True
            state["_queue"].clear()
            lock.notify_all()

    def _work(self) -> None:
        from ..errors import InputError

        while True:
            with self._lock:
                while not self._closed and self._queue:
                    wait = self._last_touch + self.idle_seconds - time.monotonic()
                    if wait <= 0:
                        break
                    self._lock.wait(wait)
                if self._closed or not self._queue:
                    return
                key = self._busy = self._queue.pop(0)
            try:
                embedding = self._encode(key)
            except InputError:
                embedding = None
            with self._lock:
                if embedding is None:
                    self._refused.add(key)
                else:
                    self.cache.put(key, embedding)
                    self.encoder_calls += 1
                    self.background_calls += 1
                self._busy = None
                self._lock.notify_all()
