"""Versioned writes inside ``apply()`` (docs/decisions.md, Versioning).

Invariants:
- ``objects`` holds exactly the current version of a key, never a delete marker; older
  versions and every delete marker live in ``object_versions``. A key's current row has the
  largest ``vseq`` of its history, so "newest first" is ``vseq`` descending everywhere.
- Version ids come from the replicated version clock (``version_clock``) while the command
  is applied: deterministic on every replica, unique, and their text sorts by recency
  (16 hex digits of the clock, then 8 of a hash of bucket, key and clock).
- The "null" version (``version_id`` NULL) exists at most once per key: writes in a
  suspended bucket replace it wherever it sits in the history.
- Nothing here deletes a blob: the refs that lost their last row are returned, and the
  caller records their GC intents in the same transaction.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from typing import Any

from bleepstore import errors
from bleepstore.metadata.rows import OBJECT_COLS, VERSION_COLS, cols, object_values, placeholders
from bleepstore.model import ObjectMeta
from bleepstore.s3.headers import iso_to_epoch_seconds

ENABLED, SUSPENDED = "Enabled", "Suspended"
NULL = "null"
_VERSION_ID = re.compile(r"[0-9a-f]{24}")
_CURRENT_COLS = (*OBJECT_COLS, "vseq")


def is_version_id(text: str) -> bool:
    """Well-formed: ``null`` or an id this server issues (else 400 InvalidArgument)."""
    return text == NULL or _VERSION_ID.fullmatch(text) is not None


def versioning_of(conn: sqlite3.Connection, bucket: str) -> str | None:
    row = conn.execute("SELECT versioning FROM buckets WHERE name = ?", (bucket,)).fetchone()
    if row is None:
        raise errors.NoSuchBucket(BucketName=bucket)
    return row[0]  # type: ignore[no-any-return]


def _micros(now: str) -> int:
    if not now:
        return 0
    millis = int(now[20:23]) if len(now) >= 23 and now[19] == "." else 0
    return (iso_to_epoch_seconds(now) * 1000 + millis) * 1000


def next_version(conn: sqlite3.Connection, now: str, bucket: str, key: str) -> tuple[int, str]:
    """(vseq, version id) of a new version: the clock ticks past ``now`` and its last value."""
    last = int(conn.execute("SELECT value FROM version_clock WHERE id = 1").fetchone()[0])
    vseq = max(last + 1, _micros(now))
    conn.execute("UPDATE version_clock SET value = ? WHERE id = 1", (vseq,))
    tag = hashlib.blake2b(f"{bucket}\0{key}\0{vseq}".encode(), digest_size=4).hexdigest()
    return vseq, f"{vseq:016x}{tag}"


def _match(version_id: str) -> tuple[str, tuple[Any, ...]]:
    return ("version_id IS NULL", ()) if version_id == NULL else ("version_id = ?", (version_id,))


def archive_current(conn: sqlite3.Connection, bucket: str, key: str) -> None:
    """Move the current row (if any) into the history, as a noncurrent version."""
    moved = cols(_CURRENT_COLS)
    conn.execute(f"INSERT INTO object_versions ({moved}) SELECT {moved} FROM objects "
                 "WHERE bucket = ? AND key = ?", (bucket, key))
    conn.execute("DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, key))


def drop_null_history(conn: sqlite3.Connection, bucket: str, key: str) -> list[str]:
    """Remove the null version from the history; -> its blob ref (none for a marker)."""
    rows = conn.execute("DELETE FROM object_versions WHERE bucket = ? AND key = ? AND "
                        "version_id IS NULL RETURNING data_ref, delete_marker",
                        (bucket, key)).fetchall()
    return [str(r[0]) for r in rows if not r[1]]


def insert_current(conn: sqlite3.Connection, meta: ObjectMeta, vseq: int) -> None:
    conn.execute(f"INSERT OR REPLACE INTO objects ({cols(_CURRENT_COLS)}) "
                 f"VALUES ({placeholders(_CURRENT_COLS)})", (*object_values(meta), vseq))


def insert_marker(conn: sqlite3.Connection, bucket: str, key: str, now: str, vseq: int,
                  version_id: str | None) -> None:
    conn.execute("INSERT INTO object_versions (bucket, key, vseq, version_id, delete_marker, "
                 "size, etag, last_modified, data_ref) VALUES (?, ?, ?, ?, 1, 0, '', ?, '')",
                 (bucket, key, vseq, version_id, now))


def promote_latest(conn: sqlite3.Connection, bucket: str, key: str) -> int:
    """When the key has no current row, make its newest version current unless that is a
    delete marker. -> the size promoted, or -1 when nothing was."""
    if conn.execute("SELECT 1 FROM objects WHERE bucket = ? AND key = ?",
                    (bucket, key)).fetchone() is not None:
        return -1
    row = conn.execute("SELECT vseq, delete_marker, size FROM object_versions WHERE bucket = ? "
                       "AND key = ? ORDER BY vseq DESC LIMIT 1", (bucket, key)).fetchone()
    if row is None or row["delete_marker"]:
        return -1
    moved = cols(_CURRENT_COLS)
    conn.execute(f"INSERT INTO objects ({moved}) SELECT {moved} FROM object_versions "
                 "WHERE bucket = ? AND key = ? AND vseq = ?", (bucket, key, row["vseq"]))
    conn.execute("DELETE FROM object_versions WHERE bucket = ? AND key = ? AND vseq = ?",
                 (bucket, key, row["vseq"]))
    return int(row["size"])


def delete_version_row(conn: sqlite3.Connection, table: str, bucket: str, key: str,
                       version_id: str) -> sqlite3.Row | None:
    """Remove ``version_id`` of the key from ``table`` (``objects``: the current version;
    ``object_versions``: an older one or a marker). -> (size, data_ref, delete_marker)."""
    where, args = _match(version_id)
    marker = "0" if table == "objects" else "delete_marker"
    row: sqlite3.Row | None = conn.execute(
        f"DELETE FROM {table} WHERE bucket = ? AND key = ? AND {where} "
        f"RETURNING size, data_ref, {marker} AS delete_marker",
        (bucket, key, *args)).fetchone()
    return row


def set_version_field(conn: sqlite3.Connection, bucket: str, key: str, version_id: str,
                      column: str, value: str | None) -> None:
    """Set ``column`` (``acl`` or ``tags``) of one version, current or not (not a marker)."""
    assert column in ("acl", "tags")
    where, args = _match(version_id)
    cur = conn.execute(f"UPDATE objects SET {column} = ? WHERE bucket = ? AND key = ? "
                       f"AND {where}", (value, bucket, key, *args))
    if cur.rowcount:
        return
    cur = conn.execute(f"UPDATE object_versions SET {column} = ? WHERE bucket = ? AND key = ? "
                       f"AND delete_marker = 0 AND {where}", (value, bucket, key, *args))
    if cur.rowcount == 0:
        raise errors.NoSuchVersion(Key=key, VersionId=version_id)


VERSION_SELECT = (f"SELECT {cols(VERSION_COLS, 'v')}, "
                  "NOT EXISTS(SELECT 1 FROM objects o WHERE o.bucket = v.bucket "
                  "AND o.key = v.key) AND v.vseq = (SELECT MAX(w.vseq) FROM object_versions w "
                  "WHERE w.bucket = v.bucket AND w.key = v.key) AS is_latest "
                  "FROM object_versions v")
CURRENT_SELECT = f"SELECT {cols(_CURRENT_COLS)} FROM objects"
HISTORY_SELECT = f"SELECT {cols(VERSION_COLS)} FROM object_versions"
