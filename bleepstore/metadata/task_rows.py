"""The ``write_tasks`` table (events.md §5.2): node-local rows, like the outbox, written
outside the replicated commands except for ``mark_done``, which runs inside the command
that carries the task out (same transaction: a task is done exactly when its change is)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bleepstore.s3.headers import now_iso

TERMINAL = ("done", "failed", "dead")
COLUMNS = ("task_id", "operation", "state", "published", "attempts", "max_retries", "payload",
           "data_ref", "request_id", "created_at", "updated_at", "last_error", "result")


class TaskSettled(Exception):
    """The task was already carried out (a duplicate delivery raced this one)."""


@dataclass(frozen=True)
class TaskRow:
    task_id: str
    operation: str
    state: str
    published: int
    attempts: int
    max_retries: int
    payload: str
    data_ref: str | None
    request_id: str
    created_at: str
    updated_at: str
    last_error: str | None
    result: str | None

    def public(self) -> dict[str, Any]:
        """GET /admin/queue/tasks/{id} (events.md §9)."""
        return {"task_id": self.task_id, "operation": self.operation, "state": self.state,
                "attempts": self.attempts, "max_retries": self.max_retries,
                "created_at": self.created_at, "updated_at": self.updated_at,
                "last_error": json.loads(self.last_error) if self.last_error else None,
                "result": json.loads(self.result) if self.result else None,
                "request_id": self.request_id}


def mark_done(conn: sqlite3.Connection, task_id: str, result: dict[str, Any]) -> None:
    """Inside the command's transaction; TaskSettled (rolling the command back) when the
    task is no longer pending or running."""
    cur = conn.execute("UPDATE write_tasks SET state = 'done', result = ?, updated_at = ? "
                       "WHERE task_id = ? AND state IN ('pending', 'running')",
                       (json.dumps(result), now_iso(), task_id))
    if cur.rowcount == 0:
        raise TaskSettled(task_id)


class TaskRows:
    def __init__(self, conn: Callable[[], sqlite3.Connection]) -> None:
        self._conn = conn

    def insert(self, row: TaskRow) -> None:
        self._conn().execute(f"INSERT INTO write_tasks ({', '.join(COLUMNS)}) VALUES "
                             f"({', '.join('?' * len(COLUMNS))})",
                             tuple(getattr(row, c) for c in COLUMNS))

    def get(self, task_id: str) -> TaskRow | None:
        r = self._conn().execute(f"SELECT {', '.join(COLUMNS)} FROM write_tasks "
                                 "WHERE task_id = ?", (task_id,)).fetchone()
        return TaskRow(*r) if r is not None else None

    def mark_published(self, task_id: str) -> None:
        self._conn().execute("UPDATE write_tasks SET published = 1 WHERE task_id = ?",
                             (task_id,))

    def start(self, task_id: str, *, replay: bool = False) -> bool:
        """pending -> running (dead -> running too for an operator's replay); False when
        another consumer has it or it is settled."""
        states = ("pending", "dead") if replay else ("pending",)
        cur = self._conn().execute(
            "UPDATE write_tasks SET state = 'running', updated_at = ? WHERE task_id = ? AND "
            f"state IN ({', '.join('?' * len(states))})", (now_iso(), task_id, *states))
        return cur.rowcount > 0

    def settle(self, task_id: str, state: str, *, error: dict[str, Any] | None = None,
               attempts: int | None = None) -> None:
        self._conn().execute(
            "UPDATE write_tasks SET state = ?, last_error = COALESCE(?, last_error), "
            "attempts = COALESCE(?, attempts), updated_at = ? WHERE task_id = ? "
            "AND state NOT IN ('done')",
            (state, json.dumps(error) if error else None, attempts, now_iso(), task_id))

    def reset_running(self) -> int:
        """At startup: tasks whose consumer died go back to pending (events.md §8)."""
        return self._conn().execute("UPDATE write_tasks SET state = 'pending', updated_at = ? "
                                    "WHERE state = 'running'", (now_iso(),)).rowcount

    def unpublished(self, limit: int = 500) -> list[TaskRow]:
        rows = self._conn().execute(f"SELECT {', '.join(COLUMNS)} FROM write_tasks WHERE "
                                    "state = 'pending' AND published = 0 ORDER BY created_at "
                                    "LIMIT ?", (limit,)).fetchall()
        return [TaskRow(*r) for r in rows]

    def live_ids(self) -> set[str]:
        return {r[0] for r in self._conn().execute(
            "SELECT task_id FROM write_tasks WHERE state IN ('pending', 'running')")}

    def purge(self, before: str) -> int:
        return self._conn().execute("DELETE FROM write_tasks WHERE state IN ('done', "
                                    "'failed', 'dead') AND updated_at < ?", (before,)).rowcount
