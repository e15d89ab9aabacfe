"""Disk-full headroom for the metadata store: the reserve file (issue 9 item 4).

Invariants:
- The reserve is a plain file next to the database (``<db>.reserve``) holding at most
  ``size`` bytes of written, incompressible data: every filesystem really allocates it
  (a sparse or fallocated file may reserve nothing on a compressing one).
- It is released (unlinked) only so that a command allowed to spend it (see
  ``SqliteStore``) can commit on a full disk; ``top_up`` grows it back towards ``size``
  with whatever the disk can spare, so one use costs only what that commit wrote.
- Nothing here raises on I/O trouble: the reserve is best effort and never fails a
  request or a start. Several processes share the file; ``flock`` keeps their top-ups
  from racing, and unlinking it under a writer is harmless.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3
import time
from pathlib import Path

log = logging.getLogger("bleepstore.metadata")

DEFAULT_RESERVE_BYTES = 8 * 1024 * 1024
CHUNK = 1 << 20
SQLITE_FULL = 13
SQLITE_IOERR_SHMSIZE = 10 | (19 << 8)  # the wal-index (-shm) could not grow
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
BACKOFF_S = 60.0  # after an unexpected error (EACCES, EROFS ...): do not retry per commit


def is_disk_full(exc: BaseException) -> bool:
    """SQLITE_FULL (any extended code), a -shm that could not grow, or ENOSPC/EDQUOT."""
    if isinstance(exc, sqlite3.Error):
        code = int(getattr(exc, "sqlite_errorcode", 0) or 0)
        return code & 0xFF == SQLITE_FULL or code == SQLITE_IOERR_SHMSIZE
    return isinstance(exc, OSError) and exc.errno in NO_SPACE


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class SpaceReserve:
    """``size`` bytes of the metadata filesystem held back for commits on a full disk."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self._not_before = 0.0

    def held(self) -> int:
        try:
            return os.stat(self.path).st_size
        except OSError:
            return 0

    def release(self, why: str) -> bool:
        """Unlink the reserve; True if there was one to give back to the filesystem."""
        try:
            freed = os.stat(self.path).st_size
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("cannot release the metadata reserve %s: %s", self.path, exc)
            return False
        log.warning("disk full: released the metadata reserve (%d bytes) for %s", freed, why)
        return freed > 0

    def top_up(self) -> int:
        """Grow the reserve towards ``size`` with what the disk can spare; its new size."""
        if self.size <= 0 or time.monotonic() < self._not_before:
            return 0
        held = self.held()
        if held >= self.size:
            return held
        try:
            return self._grow(held)
        except OSError as exc:
            self._not_before = time.monotonic() + BACKOFF_S
            log.warning("cannot grow the metadata reserve %s: %s", self.path, exc)
            return self.held()

    def _grow(self, held: int) -> int:
        want = min(self.size - held, free_bytes(self.path.parent))
        if want <= 0:
            return held
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another process is topping it up right now
                return held
            held = os.fstat(fd).st_size
            grown = _append_until(fd, held, self.size)
        finally:
            os.close(fd)
        if held == 0 and grown > 0:
            log.info("metadata reserve in place: %d bytes at %s", grown, self.path)
        return grown


def _append_until(fd: int, offset: int, size: int) -> int:
    """Write incompressible bytes from ``offset`` up to ``size``, stopping at ENOSPC.

    NOTE: not fsynced: after a crash a short reserve is simply topped up at the next start.
    """
    chunk = os.urandom(min(CHUNK, max(size - offset, 0)))
    while offset < size:
        try:
            written = os.pwrite(fd, chunk[:size - offset], offset)
        except OSError as exc:
            if exc.errno in NO_SPACE:
                break
            raise
        if written == 0:
            break
        offset += written
    return offset
