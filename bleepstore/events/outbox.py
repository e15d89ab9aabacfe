"""The transactional outbox (events.md §4): rows written in the transaction of the change
they describe, read and deleted by the relay once the broker confirmed them.

Invariants:
- ``OutboxRecorder`` runs inside a command's SAVEPOINT (``SqliteStore.recorder``): an event
  exists exactly when its change committed. It never touches the broker.
- A full outbox either drops new events (``drop``: counted and logged, the write succeeds)
  or refuses the write (``reject``: 503 SlowDown, the command rolls back alone).
- The outbox is node-local: only this node's relay reads it (one at a time, by lease).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bleepstore import errors
from bleepstore.events.catalog import Event, events_for

log = logging.getLogger("bleepstore.events")

CLAIM_S = 30  # a claimed row is another relay's again after this (its holder died)


def iso_ms(at: datetime | None = None) -> str:
    at = at or datetime.now(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def new_event_id() -> str:
    from ulid import ULID

    return f"evt_{ULID()}"


def envelope(event: Event, event_id: str, source: str, timestamp: str) -> str:
    """The BleepStore envelope (events.md §3): UTF-8 JSON with sorted keys."""
    return json.dumps({"data": event.data, "id": event_id, "request_id": event.request_id,
                       "source": source, "timestamp": timestamp, "type": event.type},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class OutboxRecorder:
    """``SqliteStore.recorder``: the events of a command, into the outbox, same transaction."""

    def __init__(self, source: str, max_rows: int, policy: str,
                 on_drop: Callable[[int], None] | None = None) -> None:
        self.source, self.max_rows, self.policy = source, max_rows, policy
        self._on_drop = on_drop
        self._warned = 0.0

    def __call__(self, conn: sqlite3.Connection, cmd: Any, result: Any) -> None:
        events = events_for(cmd, result)
        if not events:
            return
        if depth(conn) + len(events) > self.max_rows:
            self._full(len(events))
            return
        now = iso_ms()
        conn.executemany(
            "INSERT INTO event_outbox (event_id, event_type, partition_key, body, created_at, "
            "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(eid, e.type, e.bucket, envelope(e, eid, self.source, now), now, now)
             for e in events for eid in (new_event_id(),)])

    def _full(self, count: int) -> None:
        if self.policy == "reject":
            raise errors.SlowDown()
        if self._on_drop is not None:
            self._on_drop(count)
        if time.monotonic() - self._warned > 10:  # a log line per event would flood
            self._warned = time.monotonic()
            log.warning("event outbox full (queue.outbox_max_rows %d): events dropped",
                        self.max_rows)


def depth(conn: sqlite3.Connection) -> int:
    """Rows in the outbox, from the sequence bounds (O(1); rows leave in ``seq`` order)."""
    row = conn.execute("SELECT MAX(seq) - MIN(seq) + 1 FROM event_outbox").fetchone()
    return int(row[0] or 0)


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    event_id: str
    event_type: str
    partition_key: str
    body: str
    created_at: str
    attempts: int


class Outbox:
    """The relay's side of the table, on the caller's thread-local connection."""

    def __init__(self, conn: Callable[[], sqlite3.Connection]) -> None:
        self._conn = conn

    def claim(self, holder: str, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` due, unclaimed rows in ``seq`` order, claimed for ``CLAIM_S``."""
        now = datetime.now(UTC)
        rows = self._conn().execute(
            "UPDATE event_outbox SET claimed_by = ?, claimed_until = ? WHERE seq IN ("
            "SELECT seq FROM event_outbox WHERE (claimed_until IS NULL OR claimed_until < ?) "
            "AND next_attempt_at <= ? ORDER BY seq LIMIT ?) RETURNING seq, event_id, "
            "event_type, partition_key, body, created_at, attempts",
            (holder, iso_ms(now + timedelta(seconds=CLAIM_S)), iso_ms(now), iso_ms(now),
             limit)).fetchall()
        return sorted((OutboxRow(*r) for r in rows), key=lambda r: r.seq)

    # NOTE: one statement per batch: on this autocommit connection executemany() would
    # commit (and fsync) once per row, each time taking the write lock from the writers.

    def delete(self, rows: Sequence[OutboxRow]) -> None:
        if rows:
            self._conn().execute(f"DELETE FROM event_outbox WHERE seq IN ({_marks(rows)})",
                                 [r.seq for r in rows])

    def release(self, rows: Sequence[OutboxRow]) -> None:
        """A failed publish: count the attempt, clear the claim. The rows stay due (the
        relay backs off as a whole), so a retry keeps ``seq`` order."""
        if rows:
            self._conn().execute(
                "UPDATE event_outbox SET attempts = attempts + 1, claimed_by = NULL, "
                f"claimed_until = NULL WHERE seq IN ({_marks(rows)})", [r.seq for r in rows])

    def release_all(self) -> int:
        """Clear every claim (a new relay took over: its predecessor is gone)."""
        return self._conn().execute("UPDATE event_outbox SET claimed_by = NULL, "
                                    "claimed_until = NULL WHERE claimed_by IS NOT NULL").rowcount

    def depth(self) -> int:
        return depth(self._conn())


def _marks(rows: Sequence[OutboxRow]) -> str:
    return ", ".join("?" * len(rows))
