"""What a Raft entry does to this node's replica, and the replica as a snapshot
(cluster.md §3, §4.3, §6).

Invariants:
- Runs on pysyncobj's tick thread only, the one writer of the replicated tables.
- One ``BEGIN IMMEDIATE`` transaction per entry, holding the applied-index guard: an entry
  whose index is <= ``raft_applied.applied_index`` changes nothing (journal replay, a
  reinstalled snapshot), so every entry is applied exactly once per replica.
- Deterministic: an entry reads the replica and itself only. A business refusal (no such
  bucket, precondition failed) is a result every node reaches alike; anything else (disk
  full, I/O error) means this replica can no longer be trusted: log, ``os._exit(70)``, and
  the restart replays the journal.
- Node-local effects (GC intents, events, write-task rows) happen only on the node that
  proposed the entry (``origin``).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from bleepstore import errors
from bleepstore.metadata import commands as c
from bleepstore.metadata.apply import HANDLERS
from bleepstore.metadata.codec import CodecError, decode_command, encode_outcome
from bleepstore.metadata.sqlite import SqliteStore
from bleepstore.s3.headers import now_iso

log = logging.getLogger("bleepstore.cluster")

# Parents before children (foreign keys): inserted in this order, emptied in reverse.
REPLICATED_TABLES = ("buckets", "bucket_configs", "objects", "object_versions",
                     "version_clock",
                     "multipart_uploads", "multipart_parts", "blob_parts", "credentials",
                     "credential_generation", "completed_uploads", "stats", "raft_applied",
                     "cluster_nodes", "console_sessions", "inline_blobs")
BUSINESS_ERRORS = (errors.S3Error, c.UserOwnsBuckets, c.InvalidReassignTarget,
                   sqlite3.IntegrityError)
SNAPSHOT_KEY = "raft_snapshot"  # node_meta: the last snapshot taken or installed here
REPLAYED = json.dumps({"ok": True, "replayed": True})
EXIT_UNTRUSTED = 70


def applied_index(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT applied_index FROM raft_applied WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


class Applier:
    def __init__(self, store: SqliteStore, node_id: str,
                 on_exit: Callable[[int], None] = os._exit,
                 owner_of: Callable[[str], str | None] | None = None) -> None:
        """``owner_of(ref)``: the node holding a blob under owner placement (None: shared
        placement, where the proposer collects what its command releases)."""
        self.store, self.node_id, self._exit = store, node_id, on_exit
        self._owner_of = owner_of
        self.applied_entries, self.apply_seconds = 0, 0.0  # for /metrics

    # --- entries --------------------------------------------------------------------------

    def apply(self, index: int, text: str) -> str:
        conn = self.store.conn()
        began = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            if index <= applied_index(conn):
                conn.execute("ROLLBACK")
                return REPLAYED
            outcome = self._run(conn, json.loads(text))
            conn.execute("UPDATE raft_applied SET applied_index = ? WHERE id = 1", (index,))
            conn.execute("COMMIT")
        except Exception:
            log.critical("raft entry %d could not be applied; this replica is no longer "
                         "trusted: exiting so the restart replays the journal", index,
                         exc_info=True)
            self._exit(EXIT_UNTRUSTED)
            raise
        self.applied_entries += 1
        self.apply_seconds += time.perf_counter() - began
        return json.dumps(outcome, separators=(",", ":"), ensure_ascii=False)

    def _run(self, conn: sqlite3.Connection, entry: dict[str, Any]) -> dict[str, Any]:
        kind = entry.get("type")
        if kind == "Barrier":
            return {"ok": True}
        if kind == "AddNode":
            return _add_node(conn, entry)
        if kind == "RemoveNode":
            conn.execute("DELETE FROM cluster_nodes WHERE node_id = ?", (entry["node_id"],))
            return {"ok": True}
        try:
            cmd = decode_command(entry["cmd"])
        except (CodecError, KeyError, TypeError) as exc:  # a newer build's entry: refused alike
            return encode_outcome(error=errors.InternalError(f"raft entry: {exc}"))
        mine = entry.get("origin") == self.node_id
        conn.execute("SAVEPOINT command")
        conn.collects = self._collects(mine)  # type: ignore[attr-defined]
        try:
            if mine:
                result = self.store.run_command(conn, cmd)
            else:
                result = HANDLERS[type(cmd)](conn, cmd)
        except BUSINESS_ERRORS as exc:
            conn.execute("ROLLBACK TO command")
            conn.execute("RELEASE command")
            return encode_outcome(error=exc)
        finally:
            conn.collects = None  # type: ignore[attr-defined]
        conn.execute("RELEASE command")
        return encode_outcome(result)

    def _collects(self, mine: bool) -> Callable[[str], bool]:
        owner_of = self._owner_of
        if owner_of is None:
            return lambda ref: mine
        # every node holds its own part directory of an upload (parts land where sent)
        return lambda ref: ref.startswith("upload:") or owner_of(ref) == self.node_id

    # --- snapshots (pysyncobj's serializer seam: no fork, no pickled attributes) -----------

    def serialize(self, path: str, internal: Any) -> None:
        """A consistent copy of the replicated tables plus pysyncobj's own data."""
        for leftover in (path, path + "-journal", path + "-wal"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        dump = sqlite3.connect(path, isolation_level=None)
        try:
            self.store.conn().backup(dump)
            dump.execute("PRAGMA journal_mode=DELETE")
            tables = [r[0] for r in dump.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%'")]
            for name in tables:
                if name not in REPLICATED_TABLES and name != "schema_version":
                    dump.execute(f'DROP TABLE "{name}"')
            dump.execute("CREATE TABLE _pysyncobj (data BLOB NOT NULL)")
            dump.execute("INSERT INTO _pysyncobj VALUES (?)", (pickle.dumps(internal),))
            dump.execute("VACUUM")
        finally:
            dump.close()
        _fsync(path)
        index, term = _entry_position(internal)
        self._note_snapshot(index, term)

    def deserialize(self, path: str) -> Any:
        """Install a snapshot: only when it is ahead of this replica (a replica already past
        it holds everything it has: the guard skips what it would replay)."""
        # NOTE: a snapshot received from the leader was written without fsync, and
        # pysyncobj empties the journal right after this returns.
        _fsync(path)
        _fsync(os.path.dirname(os.path.abspath(path)))
        snap = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            # NOTE: pickle, like every pysyncobj message: the Raft port is trusted (secret).
            internal = pickle.loads(snap.execute("SELECT data FROM _pysyncobj").fetchone()[0])
        finally:
            snap.close()
        index, term = _entry_position(internal)
        conn = self.store.conn()
        if applied_index(conn) < index:
            _copy_replica(conn, path)
            log.info("raft snapshot at index %d installed", index)
        self._note_snapshot(index, term)
        return internal

    def _note_snapshot(self, index: int, term: int) -> None:
        self.store.apply(c.PutNodeMeta(SNAPSHOT_KEY, json.dumps(
            {"index": index, "term": term, "at": now_iso()})))


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _entry_position(internal: Any) -> tuple[int, int]:
    """(log index, term) of the last applied entry a snapshot covers: pysyncobj hands its
    serializer (last applied entry, the one before, cluster); entries are (cmd, idx, term)."""
    last = internal[0]
    return int(last[1]), int(last[2])


def _add_node(conn: sqlite3.Connection, entry: dict[str, Any]) -> dict[str, Any]:
    node_id, addr = entry["node_id"], entry["raft_addr"]
    row = conn.execute("SELECT node_id FROM cluster_nodes WHERE raft_addr = ?",
                       (addr,)).fetchone()
    if row is not None and row[0] != node_id:
        return {"ok": False, "code": "conflict", "message": f"{addr} is {row[0]}"}
    conn.execute("INSERT INTO cluster_nodes (node_id, raft_addr, api_addr, added_at) "
                 "VALUES (?, ?, ?, ?) ON CONFLICT(node_id) DO UPDATE SET "
                 "raft_addr = excluded.raft_addr, api_addr = excluded.api_addr",
                 (node_id, addr, entry.get("api_addr") or "", entry["ts"]))
    return {"ok": True}


def _has_table(conn: sqlite3.Connection, schema: str, table: str) -> bool:
    return conn.execute(f"SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' "
                        "AND name = ?", (table,)).fetchone() is not None


def _copy_replica(conn: sqlite3.Connection, path: str) -> None:
    conn.execute("ATTACH DATABASE ? AS snap", (path,))
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table in reversed(REPLICATED_TABLES):
                conn.execute(f"DELETE FROM main.{table}")
            for table in REPLICATED_TABLES:
                if not _has_table(conn, "snap", table):  # a snapshot from an older version
                    continue
                names = ", ".join(r[1] for r in conn.execute(f"PRAGMA main.table_info({table})"))
                conn.execute(f"INSERT INTO main.{table} ({names}) SELECT {names} "
                             f"FROM snap.{table}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute("DETACH DATABASE snap")
