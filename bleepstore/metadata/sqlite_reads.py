"""The metadata store's reads (SqliteStore's base): indexed statements on the calling
thread's connection.

Invariants:
- Reads never write and never take the write lock; a read that must agree with another
  (a listing page) runs inside ``snapshot()``.
- A prefix is an index range (``_below_prefix_end``), never LIKE (which folds case and
  treats % and _).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from bleepstore.metadata.rows import (
    BUCKET_COLS,
    LISTING_COLS,
    OBJECT_COLS,
    PART_COLS,
    UPLOAD_COLS,
    VERSION_COLS,
    bucket_from_row,
    cols,
    credential_from_row,
    listing_object_from_row,
    object_from_row,
    part_from_row,
    upload_from_row,
)
from bleepstore.metadata.versions import CURRENT_SELECT, HISTORY_SELECT, NULL, VERSION_SELECT
from bleepstore.model import (
    Bucket,
    CompletedUpload,
    ConsoleSession,
    Credential,
    ObjectMeta,
    ObjectVersion,
    Part,
    Upload,
)
from bleepstore.s3.listing import prefix_upper_bound

# An object, an older version, a part or an upload row points at the ref (four ``?``).
_ROW_REFS = ("(EXISTS(SELECT 1 FROM objects WHERE data_ref = ?) "
             "OR EXISTS(SELECT 1 FROM object_versions WHERE data_ref = ?) "
             "OR EXISTS(SELECT 1 FROM multipart_parts WHERE data_ref = ?) "
             "OR EXISTS(SELECT 1 FROM multipart_uploads WHERE data_ref = ?))")


def _below_prefix_end(prefix: str) -> tuple[str, list[Any]]:
    """The upper end of a prefix range scan (no LIKE: it folds case, treats % and _)."""
    upper = prefix_upper_bound(prefix) if prefix else None
    return (" AND key < ?", [upper]) if upper is not None else ("", [])


def _version_from_row(row: sqlite3.Row) -> ObjectVersion:
    return ObjectVersion(object_from_row(row), bool(row["delete_marker"]),
                         bool(row["is_latest"]), int(row["vseq"]))


class SqliteReads:
    """Every read query of the metadata store; ``conn()`` is the subclass's."""

    def conn(self) -> sqlite3.Connection:
        raise NotImplementedError

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

    def get_object_version(self, bucket: str, key: str,
                           version_id: str) -> ObjectVersion | None:
        """One version of a key ("null" included), current or not, or a delete marker."""
        where = "version_id IS NULL" if version_id == NULL else "version_id = ?"
        args = (bucket, key) if version_id == NULL else (bucket, key, version_id)
        row = self._one(f"{CURRENT_SELECT} WHERE bucket = ? AND key = ? AND {where}", args)
        if row is not None:
            return ObjectVersion(object_from_row(row), False, True, int(row["vseq"]))
        row = self._one(f"{VERSION_SELECT} WHERE v.bucket = ? AND v.key = ? AND v.{where}",
                        args)
        return _version_from_row(row) if row is not None else None

    def latest_delete_marker(self, bucket: str, key: str) -> ObjectVersion | None:
        """The delete marker that is the key's latest version, if it is one."""
        row = self._one(f"{VERSION_SELECT} WHERE v.bucket = ? AND v.key = ? "
                        "ORDER BY v.vseq DESC LIMIT 1", (bucket, key))
        entry = _version_from_row(row) if row is not None else None
        return entry if entry is not None and entry.delete_marker and entry.is_latest else None

    def scan_versions(self, bucket: str, after: tuple[str, int] | None, prefix: str,
                      limit: int) -> list[ObjectVersion]:
        """Versions and delete markers strictly after ``after`` = (key, -vseq) in the order
        (key ascending, newest first), keys starting with ``prefix``: two index range scans
        (current rows, history) merged. An entry is the latest of its key when it comes first
        for that key, unless the scan resumed inside that key's history."""
        lower, skip = (prefix, None) if after is None or after[0] < prefix else after
        bound = " AND key >= ?"
        args: list[Any] = [bucket, lower]
        if skip is not None:
            bound += " AND NOT (key = ? AND vseq >= ?)"
            args += [lower, -skip]
        upper_sql, upper_args = _below_prefix_end(prefix)
        args += [*upper_args, limit]
        conn = self.conn()
        current = [ObjectVersion(object_from_row(r), False, True, int(r["vseq"]))
                   for r in conn.execute(f"{CURRENT_SELECT} WHERE bucket = ?{bound}"
                                         f"{upper_sql} ORDER BY key LIMIT ?", args)]
        history = [ObjectVersion(object_from_row(r), bool(r["delete_marker"]), False,
                                 int(r["vseq"]))
                   for r in conn.execute(f"{HISTORY_SELECT} WHERE bucket = ?{bound}{upper_sql} "
                                         "ORDER BY key, vseq DESC LIMIT ?", args)]
        merged = sorted(current + history, key=lambda e: (e.key, -e.vseq))[:limit]
        resumed_in = lower if skip is not None else None
        out: list[ObjectVersion] = []
        for entry in merged:
            if (not entry.is_latest and entry.key != resumed_in
                    and (not out or out[-1].key != entry.key)):
                entry = replace(entry, is_latest=True)
            out.append(entry)
        return out

    def get_bucket_config(self, bucket: str, kind: str) -> str | None:
        """The bucket's configuration document of ``kind`` (policy, cors, ...), or None."""
        row = self._one("SELECT document FROM bucket_configs WHERE bucket = ? AND kind = ?",
                        (bucket, kind))
        return str(row[0]) if row else None

    def get_bucket_configs(self, bucket: str, *kinds: str) -> dict[str, str]:
        """The bucket's documents of each of ``kinds`` that it has, in one read."""
        marks = ", ".join("?" * len(kinds))
        rows = self.conn().execute(
            f"SELECT kind, document FROM bucket_configs WHERE bucket = ? AND kind IN ({marks})",
            (bucket, *kinds)).fetchall()
        return {str(kind): str(doc) for kind, doc in rows}

    def buckets_with_config(self, kind: str) -> list[tuple[str, str]]:
        """(bucket, document) of every bucket with a configuration of ``kind``."""
        rows = self.conn().execute("SELECT bucket, document FROM bucket_configs WHERE kind = ? "
                                   "ORDER BY bucket", (kind,))
        return [(str(r[0]), str(r[1])) for r in rows]

    def get_credential(self, access_key_id: str) -> Credential | None:
        row = self._one("SELECT * FROM credentials WHERE access_key_id = ?", (access_key_id,))
        return credential_from_row(row) if row else None

    def list_credentials(self) -> list[Credential]:
        rows = self.conn().execute("SELECT * FROM credentials ORDER BY access_key_id")
        return [credential_from_row(r) for r in rows]

    def credential_generation(self) -> int:
        """Bumped by every credential change (the credential caches' staleness check)."""
        row = self._one("SELECT value FROM credential_generation WHERE id = 1", ())
        return int(row[0]) if row else 0

    def get_console_session(self, token_hash: str) -> ConsoleSession | None:
        """The console session whose token hashes to ``token_hash`` (expired or not)."""
        row = self._one("SELECT token_hash, access_key, csrf_token, created_at, expires_at "
                        "FROM console_sessions WHERE token_hash = ?", (token_hash,))
        return ConsoleSession(*(str(v) for v in row)) if row else None

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

    def part_windows(self, data_ref: str, *, after: int = 0,
                     limit: int = -1) -> list[tuple[int, int]]:
        """(part_number, size) of the parts of a completed multipart blob after ``after``."""
        rows = self.conn().execute(
            "SELECT part_number, size FROM blob_parts WHERE data_ref = ? AND part_number > ? "
            "ORDER BY part_number LIMIT ?", (data_ref, after, limit))
        return [(int(r[0]), int(r[1])) for r in rows]

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
        """A row or a GC intent points at ``data_ref`` (the orphan scan spares it)."""
        return self._one(f"SELECT 1 WHERE {_ROW_REFS} "
                         "OR EXISTS(SELECT 1 FROM blob_gc WHERE data_ref = ?)",
                         (data_ref,) * 5) is not None

    def inline_blob(self, data_ref: str, offset: int = 0,
                    length: int | None = None) -> bytes | None:
        """Bytes of an inline blob (``length`` from ``offset``; all: None); None if absent."""
        if length is None:
            row = self._one("SELECT substr(data, ?) FROM inline_blobs WHERE data_ref = ?",
                            (offset + 1, data_ref))
        else:
            row = self._one("SELECT substr(data, ?, ?) FROM inline_blobs WHERE data_ref = ?",
                            (offset + 1, length, data_ref))
        return None if row is None else bytes(row[0] or b"")  # substr of x'' is NULL

    def inline_blob_size(self, data_ref: str) -> int | None:
        row = self._one("SELECT length(data) FROM inline_blobs WHERE data_ref = ?", (data_ref,))
        return None if row is None else int(row[0])

    def is_live(self, data_ref: str) -> bool:
        """An object, a part or an upload points at ``data_ref`` (GC intents aside)."""
        return self._one(f"SELECT 1 WHERE {_ROW_REFS}", (data_ref,) * 4) is not None

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

    def node_api_addr(self, node_id: str) -> str | None:
        """A cluster member's S3 ``host:port`` (``cluster_nodes``)."""
        row = self._one("SELECT api_addr FROM cluster_nodes WHERE node_id = ?", (node_id,))
        return str(row[0]) if row and row[0] else None

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

    # --- lifecycle scans (core/lifecycle.py): index range scans, bounded by ``limit`` ------

    def lifecycle_current(self, bucket: str, after: str, limit: int) -> list[ObjectVersion]:
        """Current versions of the keys after ``after``, in key order, whole rows (tags)."""
        rows = self.conn().execute(f"{CURRENT_SELECT} WHERE bucket = ? AND key > ? "
                                   "ORDER BY key LIMIT ?", (bucket, after, limit))
        return [ObjectVersion(object_from_row(r), False, True, int(r["vseq"])) for r in rows]

    def lifecycle_history(self, bucket: str, after: str, limit: int,
                          only_key: str | None = None) -> list[ObjectVersion]:
        """``object_versions`` rows (older versions, delete markers) of the keys after
        ``after`` in (key, newest first) order, or every row of ``only_key``. ``is_latest``
        is not computed (False): the caller knows a key's whole history."""
        where, args = ("v.key = ?", [only_key]) if only_key is not None else ("v.key > ?",
                                                                             [after])
        rows = self.conn().execute(
            f"SELECT {cols(VERSION_COLS, 'v')} FROM object_versions v WHERE v.bucket = ? "
            f"AND {where} ORDER BY v.key, v.vseq DESC LIMIT ?", [bucket, *args, limit])
        return [ObjectVersion(object_from_row(r), bool(r["delete_marker"]), False,
                              int(r["vseq"])) for r in rows]

    def current_versions(self, bucket: str, keys: list[str]) -> dict[str, ObjectVersion]:
        """The current rows of those of ``keys`` that have one (point lookups, 500 a query)."""
        found: dict[str, ObjectVersion] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            marks = ", ".join("?" * len(chunk))
            for r in self.conn().execute(f"{CURRENT_SELECT} WHERE bucket = ? AND key IN "
                                         f"({marks})", [bucket, *chunk]):
                found[r["key"]] = ObjectVersion(object_from_row(r), False, True, int(r["vseq"]))
        return found
