"""SqliteStore: the embedded metadata store (storage.md §2).

Invariants:
- One connection per thread per process, opened lazily (never before fork); a
  connection opened in another process (after a fork) is never reused.
- Writes go through ``apply(cmd)`` only: ``BEGIN IMMEDIATE`` ... ``COMMIT`` around one
  handler from ``metadata.apply``; SQLITE_BUSY past the busy timeout is retried 3 times
  with 10-50 ms jitter, then surfaces as 503 ServiceUnavailable.
- Multi-statement reads that must agree (a listing page) use ``snapshot()``.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bleepstore import errors
from bleepstore.metadata import schema
from bleepstore.metadata.apply import HANDLERS
from bleepstore.metadata.commands import Command
from bleepstore.metadata.group_commit import GroupCommitter
from bleepstore.metadata.rows import (
    BUCKET_COLS,
    LISTING_COLS,
    OBJECT_COLS,
    PART_COLS,
    UPLOAD_COLS,
    bucket_from_row,
    cols,
    credential_from_row,
    listing_object_from_row,
    object_from_row,
    part_from_row,
    upload_from_row,
)
from bleepstore.model import Bucket, CompletedUpload, Credential, ObjectMeta, Part, Upload
from bleepstore.s3.listing import prefix_upper_bound

BUSY_RETRIES = 3


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _below_prefix_end(prefix: str) -> tuple[str, list[Any]]:
    """The upper end of a prefix range scan (no LIKE: it folds case, treats % and _)."""
    upper = prefix_upper_bound(prefix) if prefix else None
    return (" AND key < ?", [upper]) if upper is not None else ("", [])


class SqliteStore:
    """Metadata in one SQLite file (WAL)."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL",
                 busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._committer = GroupCommitter(self.conn, self._begin, lambda cmd: HANDLERS[type(cmd)])

    # --- connections --------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = not self.path.exists()
        if fresh:  # create with 0600 before SQLite does (auth.md §9)
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True,
                               timeout=self.busy_timeout_ms / 1000)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-2000")
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
        return applied

    # --- writes -------------------------------------------------------------------

    def apply(self, cmd: Command) -> Any:
        """Commit one command (grouped with concurrent ones: ``group_commit``)."""
        return self._committer.submit(cmd)

    def _begin(self, conn: sqlite3.Connection) -> None:
        for attempt in range(BUSY_RETRIES + 1):
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or attempt == BUSY_RETRIES:
                    raise errors.ServiceUnavailable() from exc
                time.sleep(random.uniform(0.01, 0.05))

    # --- reads --------------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def _one(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn().execute(sql, args).fetchone()
        return row

    def get_bucket(self, name: str) -> Bucket | None:
        row = self._one(f"SELECT {cols(BUCKET_COLS)} FROM buckets WHERE name = ?", (name,))
        return bucket_from_row(row) if row else None

    def list_buckets(self, owner_id: str, *, prefix: str = "", after: str = "",
                     limit: int = -1) -> list[Bucket]:
        sql = (f"SELECT {cols(BUCKET_COLS)} FROM buckets WHERE owner_id = ? AND name > ? "
               "AND substr(name, 1, ?) = ? ORDER BY name LIMIT ?")
        rows = self.conn().execute(sql, (owner_id, after, len(prefix), prefix, limit))
        return [bucket_from_row(r) for r in rows]

    def get_object(self, bucket: str, key: str) -> ObjectMeta | None:
        row = self._one(f"SELECT {cols(OBJECT_COLS)} FROM objects WHERE bucket = ? AND key = ?",
                        (bucket, key))
        return object_from_row(row) if row else None

    def scan_objects(self, bucket: str, start_after: str | None, prefix: str,
                     limit: int) -> list[ObjectMeta]:
        """Keys > start_after starting with prefix, ascending: one index range scan.

        Rows carry only what a listing shows (key, size, ETag, date, class, ACL);
        content headers and user metadata are left at their defaults.
        """
        lower = max(start_after or "", prefix)
        op = ">" if start_after is not None and start_after >= prefix else ">="
        sql = f"SELECT {cols(LISTING_COLS)} FROM objects WHERE bucket = ? AND key {op} ?"
        upper_sql, upper_args = _below_prefix_end(prefix)
        sql += upper_sql + " ORDER BY key LIMIT ?"
        args: list[Any] = [bucket, lower, *upper_args, limit]
        return [listing_object_from_row(r) for r in self.conn().execute(sql, args)]

    def get_credential(self, access_key_id: str) -> Credential | None:
        row = self._one("SELECT * FROM credentials WHERE access_key_id = ?", (access_key_id,))
        return credential_from_row(row) if row else None

    def list_credentials(self) -> list[Credential]:
        rows = self.conn().execute("SELECT * FROM credentials ORDER BY access_key_id")
        return [credential_from_row(r) for r in rows]

    def display_name_for(self, owner_id: str) -> str | None:
        row = self._one("SELECT display_name FROM credentials WHERE owner_id = ?", (owner_id,))
        return str(row[0]) if row else None

    def get_upload(self, upload_id: str) -> Upload | None:
        row = self._one(f"SELECT {cols(UPLOAD_COLS)} FROM multipart_uploads "
                        "WHERE upload_id = ?", (upload_id,))
        return upload_from_row(row) if row else None

    def upload_exists(self, upload_id: str) -> bool:
        return self._one("SELECT 1 FROM multipart_uploads WHERE upload_id = ?",
                         (upload_id,)) is not None

    def list_parts(self, upload_id: str, *, after: int = 0, limit: int = -1) -> list[Part]:
        rows = self.conn().execute(
            f"SELECT {cols(PART_COLS)} FROM multipart_parts WHERE upload_id = ? AND "
            "part_number > ? ORDER BY part_number LIMIT ?", (upload_id, after, limit))
        return [part_from_row(r) for r in rows]

    def part_window(self, data_ref: str, part_number: int) -> tuple[int, int] | None:
        """(offset, size) of part ``part_number`` inside a completed multipart blob."""
        row = self._one("SELECT offset, size FROM blob_parts WHERE data_ref = ? AND "
                        "part_number = ?", (data_ref, part_number))
        return (int(row[0]), int(row[1])) if row else None

    def scan_uploads_after(self, bucket: str, cursor: tuple[str, str, str] | None,
                           prefix: str, limit: int) -> list[Upload]:
        """Uploads in (key, initiated_at, upload_id) order strictly after ``cursor``."""
        sql = f"SELECT {cols(UPLOAD_COLS)} FROM multipart_uploads WHERE bucket = ?"
        args: list[Any] = [bucket]
        if cursor is not None:
            sql += " AND (key, initiated_at, upload_id) > (?, ?, ?)"
            args += list(cursor)
        if prefix:
            upper_sql, upper_args = _below_prefix_end(prefix)
            sql += " AND key >= ?" + upper_sql
            args += [prefix, *upper_args]
        sql += " ORDER BY key, initiated_at, upload_id LIMIT ?"
        args.append(limit)
        return [upload_from_row(r) for r in self.conn().execute(sql, args)]

    def get_completed(self, upload_id: str) -> CompletedUpload | None:
        row = self._one("SELECT * FROM completed_uploads WHERE upload_id = ?", (upload_id,))
        return CompletedUpload(*row) if row else None

    def due_gc(self, now: str, limit: int = 500) -> list[tuple[str, int]]:
        rows = self.conn().execute("SELECT data_ref, attempts FROM blob_gc WHERE "
                                   "not_before <= ? ORDER BY not_before LIMIT ?", (now, limit))
        return [(r[0], r[1]) for r in rows]

    def is_referenced(self, data_ref: str) -> bool:
        return self._one(
            "SELECT 1 WHERE EXISTS(SELECT 1 FROM objects WHERE data_ref = ?) "
            "OR EXISTS(SELECT 1 FROM multipart_parts WHERE data_ref = ?) "
            "OR EXISTS(SELECT 1 FROM blob_gc WHERE data_ref = ?)",
            (data_ref, data_ref, data_ref)) is not None

    def object_refs_after(self, cursor: tuple[str, str] | None,
                          limit: int) -> list[tuple[str, str, str]]:
        """(bucket, key, data_ref) of the objects after ``cursor``, in key order (a batch)."""
        sql = "SELECT bucket, key, data_ref FROM objects"
        args: tuple[Any, ...] = (limit,)
        if cursor is not None:
            sql += " WHERE (bucket, key) > (?, ?)"
            args = (*cursor, limit)
        rows = self.conn().execute(sql + " ORDER BY bucket, key LIMIT ?", args)
        return [(r[0], r[1], r[2]) for r in rows]

    def node_meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM node_meta WHERE key = ?", (key,))
        return str(row[0]) if row else None

    def stats(self) -> dict[str, int]:
        row = self._one("SELECT bucket_count, object_count, total_bytes, upload_count "
                        "FROM stats WHERE id = 1", ())
        gc = self._one("SELECT COUNT(*) FROM blob_gc", ())
        out = {k: int(row[k]) for k in row.keys()} if row else {}
        out["gc_pending"] = int(gc[0]) if gc else 0
        return out

    def quick_check(self) -> bool:
        row = self._one("PRAGMA quick_check(1)", ())
        return bool(row and row[0] == "ok")

    def checkpoint(self) -> None:
        self.conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
