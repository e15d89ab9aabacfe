"""One writer at a time across the worker processes, handed over without sleeping.

SQLite's own busy handler polls: a process that finds the write lock taken sleeps 1, 2,
5 ... up to 100 ms between tries, so two workers committing under load kept each other
waiting for hundreds of milliseconds (PUT p99 640 ms at 16 connections, docs/performance.md).
A blocking ``flock`` on a file next to the database is queued in the kernel and granted the
moment the holder lets go. The group-commit leader holds it around BEGIN ... COMMIT.

Invariants: held by at most one thread per process (only the group-commit leader takes it);
the kernel drops it when its process dies, so a SIGKILLed holder never blocks the others;
writers that do not take it (leases, migrations), or a process that cannot open the file,
still meet SQLite's busy handler, as before.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class WriteLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0
        self._guard = threading.Lock()

    def _file(self) -> int | None:
        if self._fd is None or self._pid != os.getpid():  # never share one across a fork
            with self._guard:
                if self._fd is None or self._pid != os.getpid():
                    try:
                        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                           0o600)
                    except OSError:  # e.g. no inode left: SQLite's busy handler still serializes
                        return None
                    self._pid = os.getpid()
        return self._fd

    @contextmanager
    def held(self) -> Iterator[None]:
        fd = self._file()
        if fd is None:
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)  # releases the GIL while it waits
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
