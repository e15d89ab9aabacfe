"""Group commit: commands from many threads applied in one SQLite write transaction.

Invariants:
- Commands of a batch run in arrival order, each inside its own SAVEPOINT: a command that
  raises (a failed precondition, a missing bucket) is rolled back alone and its exception
  goes to its own caller, exactly as if the commands had been applied one by one.
- A caller returns only after the COMMIT that contains its command (never acknowledge
  before commit); if the COMMIT fails, or SQLite itself rolls the transaction back under
  a command (SQLITE_FULL, IOERR), every command of the batch fails with that error.
- No background thread: a waiting caller becomes the leader when nobody leads, applies one
  batch on its own thread-local connection, then wakes the others (leader/follower).
  Under load one WAL fsync covers a whole batch instead of one per command.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

MAX_BATCH = 64


@dataclass
class Pending:
    cmd: Any
    result: Any = None
    error: BaseException | None = None
    finished: bool = False


@dataclass
class GroupCommitter:
    """``begin(conn)`` opens the write transaction (with busy retries); ``exclusive()`` is
    held around each transaction (the cross-process write lock, metadata/write_lock.py)."""

    connect: Callable[[], sqlite3.Connection]
    begin: Callable[[sqlite3.Connection], None]
    handler_for: Callable[[Any], Callable[[sqlite3.Connection, Any], Any]]
    exclusive: Callable[[], AbstractContextManager[Any]] = nullcontext
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _queue: list[Pending] = field(default_factory=list)
    _leading: bool = False

    def submit(self, cmd: Any) -> Any:
        item = Pending(cmd)
        with self._cond:
            self._queue.append(item)
            while not item.finished:
                if self._leading:
                    self._cond.wait()
                    continue
                self._leading = True
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                self._cond.release()
                try:
                    self._run(batch)
                finally:
                    self._cond.acquire()
                    self._leading = False
                    self._cond.notify_all()
        if item.error is not None:
            raise item.error
        return item.result

    def _run(self, batch: list[Pending]) -> None:
        conn = self.connect()
        with self.exclusive():
            self._transaction(conn, batch)

    def _transaction(self, conn: sqlite3.Connection, batch: list[Pending]) -> None:
        try:
            self.begin(conn)
            for item in batch:
                self._apply_one(conn, item)
            conn.execute("COMMIT")
        except BaseException as exc:
            for item in batch:  # first: a failing ROLLBACK must not leave one "committed"
                if item.error is None:
                    item.result, item.error = None, exc
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        finally:
            for item in batch:
                item.finished = True

    def _apply_one(self, conn: sqlite3.Connection, item: Pending) -> None:
        conn.execute("SAVEPOINT command")
        try:
            item.result = self.handler_for(item.cmd)(conn, item.cmd)
        except Exception as exc:  # this command only: its caller gets the exception
            if not conn.in_transaction:  # SQLite rolled the whole batch back (SQLITE_FULL)
                raise
            conn.execute("ROLLBACK TO command")
            item.error = exc
        conn.execute("RELEASE command")
