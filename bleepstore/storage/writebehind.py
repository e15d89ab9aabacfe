"""Write-behind for large staging writes: hash and write on a helper thread while the
request thread receives the next chunk (the 1 GiB PUT profile was recv, then MD5, then
write(), strictly one after another on one thread).

Invariants: chunks are hashed and written in the order given; at most ``depth`` chunks
(<= 1 MiB each) wait in memory; the first failure (e.g. ENOSPC) is re-raised to the
caller on its next ``put`` or at ``close``; ``close`` returns only when every byte has
been handed to the kernel. hashlib and os.write release the GIL, so the two threads
really overlap.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

_STOP = object()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    done = os.write(fd, view)
    while done < len(view):
        done += os.write(fd, view[done:])


class WriteBehind:
    def __init__(self, fd: int, md5: Any, depth: int = 4) -> None:
        self._fd = fd
        self._md5 = md5
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bleepstore-write-behind",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue  # keep draining so put() never blocks forever
            try:
                assert isinstance(item, bytes)
                if self._md5 is not None:
                    self._md5.update(item)
                write_all(self._fd, item)
            except BaseException as exc:  # handed to the request thread
                self._error = exc

    def put(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(data)

    def close(self) -> None:
        """Wait for every queued chunk; re-raise the first failure."""
        self._queue.put(_STOP)
        self._thread.join()
        if self._error is not None:
            raise self._error
