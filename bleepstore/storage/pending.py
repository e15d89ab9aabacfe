"""Write-task payload files (events.md §5.3, §7): ``{pending_dir}/<task_id>``, written
like a blob (staging file, fsync, rename, fsync of the directory) before the task is
recorded, so an accepted async write is on disk before its 202; ``dead/`` keeps the
files of dead-lettered tasks until they are purged."""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid

from bleepstore.storage.localio import (
    STAGE_FLAGS,
    LocalBlobWriter,
    ensure_dir,
    fsync_dir,
    space_refusals,
)

TASK_ID = re.compile(r"task_[0-9A-HJKMNP-TV-Z]{26}")


class PendingFiles:
    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, task_id: str) -> str:
        if not TASK_ID.fullmatch(task_id):
            raise ValueError(f"invalid task id {task_id[:80]!r}")
        return os.path.join(self.root, task_id)

    def open_writer(self, task_id: str) -> LocalBlobWriter:
        final = self.path(task_id)
        tmp = os.path.join(self.root, ".tmp")
        staging = os.path.join(tmp, uuid.uuid4().hex)
        with space_refusals():
            try:
                fd = os.open(staging, STAGE_FLAGS, 0o600)
            except FileNotFoundError:
                ensure_dir(tmp)
                fd = os.open(staging, STAGE_FLAGS, 0o600)
        return LocalBlobWriter(task_id, staging, fd, lambda _ref: final, md5=True)

    def exists(self, task_id: str) -> bool:
        return os.path.exists(self.path(task_id))

    def remove(self, task_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(task_id))

    def bury(self, task_id: str) -> None:
        """A dead task's file goes to ``dead/`` (kept for a replay, then purged)."""
        dead = os.path.join(self.root, "dead")
        ensure_dir(dead)
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.path(task_id), os.path.join(dead, task_id))
            fsync_dir(dead)

    def sweep(self, live: set[str], dead_older_than_s: float) -> int:
        """Startup: staging leftovers, files of tasks that are not live, old dead files."""
        removed = 0
        for folder, keep in ((os.path.join(self.root, ".tmp"), set()), (self.root, live)):
            for entry in _entries(folder):
                if entry.is_file(follow_symlinks=False) and entry.name not in keep:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed += 1
        cutoff = time.time() - dead_older_than_s
        for entry in _entries(os.path.join(self.root, "dead")):
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
        return removed


def _entries(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except FileNotFoundError:
        return []
