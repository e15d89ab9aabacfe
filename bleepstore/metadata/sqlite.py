"""SqliteStore: the embedded metadata store (storage.md §2).

Invariants:
- One connection per thread per process, opened lazily (never before fork); a
  connection opened in another process (after a fork) is never reused.
- Writes go through ``apply(cmd)`` only: ``BEGIN IMMEDIATE`` ... ``COMMIT`` around one
  handler from ``metadata.apply``; SQLITE_BUSY past the busy timeout is retried 3 times
  with 10-50 ms jitter, then surfaces as 503 ServiceUnavailable.
- A commit refused for space (SQLITE_FULL) surfaces as 503 InsufficientStorage with
  nothing applied; a command in ``USES_RESERVE`` first releases the reserve file
  (``metadata.reserve``) and is retried once, and the reserve is topped up after it.
- A failed checkpoint is logged, never raised: the WAL stays valid without it.
- Multi-statement reads that must agree (a listing page) use ``snapshot()``.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bleepstore import errors
from bleepstore.metadata import commands as c
from bleepstore.metadata import schema
from bleepstore.metadata.apply import HANDLERS, ReplicaConnection
from bleepstore.metadata.commands import Command
from bleepstore.metadata.group_commit import GroupCommitter
from bleepstore.metadata.reserve import DEFAULT_RESERVE_BYTES, SpaceReserve, is_disk_full
from bleepstore.metadata.sqlite_reads import SqliteReads
from bleepstore.metadata.task_rows import mark_done
from bleepstore.metadata.write_lock import WriteLock
from bleepstore.s3.headers import iso_from_datetime

log = logging.getLogger("bleepstore.metadata")

BUSY_RETRIES = 3
# NOTE: on a full disk SQLite cannot even grow its WAL for a DELETE, so space could not be
# freed through the API. These commands may spend the reserve file: they free space
# (deletes, aborts, GC and its intents, maintenance) or revoke access (credentials, small
# and urgent). Anything else gets 503 on a full disk, so the reserve stays for them.
USES_RESERVE: tuple[type, ...] = (
    c.DeleteObjects, c.DeleteBucket, c.AbortUpload, c.GcSwept, c.AddGcIntent,
    c.ReapExpiredUploads, c.PurgeCompletedUploads, c.PutCredential, c.DeleteCredential,
    c.DeleteConsoleSession, c.DeleteExpiredConsoleSessions)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def task_result(cmd: Command) -> dict[str, Any]:
    """What a write task's row records as its result (the direct-mode answer)."""
    if isinstance(cmd, c.PutObject):
        return {"status": 200, "etag": cmd.meta.etag}
    return {"status": 204 if isinstance(cmd, c.DeleteObjects) else 200}


class SqliteStore(SqliteReads):
    """Metadata in one SQLite file (WAL)."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL",
                 busy_timeout_ms: int = 5000,
                 reserve_bytes: int = DEFAULT_RESERVE_BYTES) -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self.reserve = SpaceReserve(Path(str(self.path) + ".reserve"), reserve_bytes)
        self._local = threading.local()
        self.write_lock = WriteLock(Path(str(self.path) + ".write-lock"))
        self._committer = GroupCommitter(self.conn, self._begin, lambda cmd: self.run_command,
                                         self.write_lock.held)
        # Set by the composition root when events are on (events/outbox.py): called with
        # (connection, command, result) inside the command's transaction; then ``notify``
        # after every commit.
        self.recorder: Callable[[sqlite3.Connection, Any, Any], None] | None = None
        self.notify: Callable[[], None] | None = None

    # --- connections --------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            # NOTE: a database closed cleanly has no -shm file, and SQLite cannot create
            # one (32 KiB) on a full disk: without the reserve even reads would fail.
            self.reserve.release("opening the database")
        conn = self._connect()
        self.reserve.top_up()
        return conn

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = not self.path.exists()
        if fresh:  # create with 0600 before SQLite does (auth.md §9)
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True,
                               timeout=self.busy_timeout_ms / 1000,
                               factory=ReplicaConnection)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.execute("PRAGMA cache_size=-2000")
        except BaseException:
            conn.close()
            raise
        return conn

    def conn(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid() or local.conn is None:
            local.conn = self._open()
            local.pid = os.getpid()
        conn: sqlite3.Connection = local.conn
        return conn

    def close(self) -> None:
        """Close this thread's connection (recovery closes before fork)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            conn.close()
        self._local.conn = None

    def migrate(self) -> int:
        applied = schema.migrate(self.conn())
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                os.chmod(p, 0o600)
        self.reserve.top_up()  # at startup, when the disk has room
        return applied

    # --- writes -------------------------------------------------------------------

    def apply(self, cmd: Command) -> Any:
        """Commit one command (grouped with concurrent ones: ``group_commit``)."""
        if not isinstance(cmd, USES_RESERVE):
            return self._submit(cmd)
        try:
            result = self._submit(cmd)
        except errors.InsufficientStorage:
            self.reserve.release(type(cmd).__name__)
            result = self._submit(cmd)
        self.reserve.top_up()  # after a delete's GC, or once space is back
        return result

    def _submit(self, cmd: Command) -> Any:
        try:
            result = self._committer.submit(cmd)
        except sqlite3.Error as exc:
            if is_disk_full(exc):
                raise errors.InsufficientStorage() from exc
            raise
        if self.notify is not None:
            self.notify()
        return result

    def run_command(self, conn: sqlite3.Connection, cmd: Command) -> Any:
        """One command inside the caller's transaction, with this node's side effects
        (write task marked done, events recorded)."""
        result = HANDLERS[type(cmd)](conn, cmd)
        origin = getattr(cmd, "origin", None)
        if origin is not None and origin.task_id:
            mark_done(conn, origin.task_id, task_result(cmd))
        if self.recorder is not None:
            self.recorder(conn, cmd, result)
        return result

    def _begin(self, conn: sqlite3.Connection) -> None:
        for attempt in range(BUSY_RETRIES + 1):
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if is_disk_full(exc):
                    raise
                if not _is_busy(exc) or attempt == BUSY_RETRIES:
                    raise errors.ServiceUnavailable() from exc
                time.sleep(random.uniform(0.01, 0.05))

    def take_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Hold (or renew) the node-local lease ``name`` for ``seconds``: one worker of the
        node does a job at a time (maintenance, the event relay). False: another holds it."""
        now = datetime.now(UTC)
        conn = self.conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(
                "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, "
                "expires_at = excluded.expires_at WHERE leases.holder = excluded.holder "
                "OR leases.expires_at < ?",
                (name, holder, iso_from_datetime(now + timedelta(seconds=seconds)),
                 iso_from_datetime(now)))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return cur.rowcount > 0

    def checkpoint(self) -> None:
        """Fold the WAL into the database. A failure (a full disk: the database must grow)
        only costs the space the WAL keeps, so it is logged and startup goes on."""
        try:
            self.conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:
            log.warning("checkpoint failed, the WAL is kept: %s", exc)
        self.reserve.top_up()
