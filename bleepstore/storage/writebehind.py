"""Write-behind for large staging writes: hash on one helper thread and write on another
while the request thread receives the next chunk (the 1 GiB PUT profile was recv, then
MD5, then write(), strictly one after another on one thread; with MD5 and write() sharing
one helper, a single-stream 1 GiB PUT had a median of ~375 MB/s here, with a helper each
~455 MB/s: docs/performance.md).

Invariants: chunks are hashed and written in the order given; at most ``depth`` chunks
(<= 1 MiB each) wait in each lane, so ~2 x ``depth`` in memory; the first failure (e.g.
ENOSPC) is re-raised to the caller on its next ``put`` or at ``close``; ``close`` returns
only when every byte has been handed to the kernel and hashed. hashlib and os.write
release the GIL, so the threads really overlap: while they run, the request thread and
its helpers may use every CPU even when the worker is pinned to one (cpus.py).
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

from bleepstore import cpus

_STOP = object()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    done = os.write(fd, view)
    while done < len(view):
        done += os.write(fd, view[done:])


class _Lane:
    """One helper thread applying ``step`` to each chunk, in order."""

    def __init__(self, step: Any, depth: int, name: str) -> None:
        self._step = step
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self.error is not None:
                continue  # keep draining so put() never blocks forever
            try:
                self._step(item)
            except BaseException as exc:  # handed to the request thread
                self.error = exc

    def put(self, item: object) -> None:
        self._queue.put(item)

    def join(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()


class WriteBehind:
    """MD5 and ``write()`` each on a helper thread of their own (both release the GIL,
    so a large body is received, hashed and written on up to three cores at once)."""

    def __init__(self, fd: int, md5: Any, depth: int = 4) -> None:
        # NOTE: widened before the lanes start, so they inherit it; close() narrows back.
        self._owner = threading.get_ident()
        self._pinned = cpus.unpin_this_thread()
        self._lanes = [_Lane(lambda data: write_all(fd, data), depth, "bleepstore-write")]
        if md5 is not None:
            self._lanes.append(_Lane(md5.update, depth, "bleepstore-md5"))

    def _raise(self) -> None:
        for lane in self._lanes:
            if lane.error is not None:
                raise lane.error

    def put(self, data: bytes) -> None:
        self._raise()
        for lane in self._lanes:
            lane.put(data)

    def close(self) -> None:
        """Wait for every queued chunk; re-raise the first failure."""
        for lane in self._lanes:
            lane.join()
        if threading.get_ident() == self._owner:
            cpus.repin_this_thread(self._pinned)
            self._pinned = None
        self._raise()
