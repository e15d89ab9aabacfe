"""One server per data directory: an exclusive ``flock`` on a lock file in every directory
the server writes (the SQLite database's, the blob root, the spool and the metrics dir).

Invariants:
- Taken first thing in the gunicorn master (``on_starting``), before recovery touches
  anything; a start that cannot take every lock releases those it took and has changed
  nothing but (possibly) created its own missing directories and empty lock files.
- The lock is an open file description inherited by every forked worker, so it lasts
  until the last process of the server exits — kill -9 included: the kernel drops a flock
  with its last descriptor, so no stale lock survives a crash.
- The PID in the file is for the refusal message only; the flock alone is the lock.
- CLI commands (``check-config``, ``user ...``) never take it: they run beside a server.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from bleepstore.config import Config

LOCK_NAME = ".bleepstore.lock"


class DataDirBusy(Exception):
    """Another live server holds the lock of ``path``."""

    def __init__(self, path: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"{path} is locked by another BleepStore server ({holder}); "
                         "refusing to start on the same data directory")
        self.path, self.pid = path, pid


@dataclass
class DataDirLock:
    """The held locks: keep this object for the life of the process."""

    fds: list[int]
    paths: list[Path]

    def release(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def data_dirs(cfg: Config) -> list[Path]:
    """Each distinct directory the server writes, resolved, in a fixed (sorted) order."""
    dirs = [Path(cfg.metadata.sqlite.path).parent, Path(cfg.storage.spool_dir),
            Path(cfg.observability.metrics_dir)]
    if cfg.metadata.engine == "raft":
        dirs.append(Path(cfg.cluster.data_dir))
    # NOTE: cluster nodes share the blob directory under data_placement: shared
    if cfg.metadata.engine != "raft" or cfg.cluster.data_placement == "owner":
        dirs.append(Path(cfg.storage.local.root_dir))
    return sorted({Path(os.path.realpath(d)) for d in dirs})


def lock_data_dirs(cfg: Config) -> DataDirLock:
    """Lock every data directory of ``cfg`` or raise ``DataDirBusy`` holding none."""
    paths = [d / LOCK_NAME for d in data_dirs(cfg)]
    fds: list[int] = []
    try:
        for path in paths:
            fds.append(_lock(path))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    for fd in fds:  # only once all are ours: a refused start writes nothing
        _write_pid(fd)
    return DataDirLock(fds, paths)


def _lock(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # EWOULDBLOCK: another open file description holds it
        try:
            pid = _holder(fd)
        finally:
            os.close(fd)
        raise DataDirBusy(path, pid) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_pid(fd: int) -> None:
    # NOTE: best effort: on a full disk the start must still succeed, and the flock,
    # not the PID, is the lock (a refused start then reports "pid unknown").
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _holder(fd: int) -> int | None:
    """The PID the holder wrote (None while it has not written it yet)."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None
