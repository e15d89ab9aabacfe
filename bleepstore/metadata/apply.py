"""The only code that mutates metadata (with ``apply_users``): one handler per command.

Invariants: every handler runs inside the caller's ``BEGIN IMMEDIATE`` transaction
and either completes or raises (rolling everything back). A handler that drops the
last reference to a blob records a GC intent in the same transaction (an inline blob is
deleted right there: nobody streams one after reading its row); ``stats`` is
kept in step with every change so nothing ever needs ``COUNT(*)``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from bleepstore import errors
from bleepstore.metadata import commands as c
from bleepstore.metadata import versions as v
from bleepstore.metadata.apply_users import (
    create_console_session,
    delete_console_session,
    delete_credential,
    delete_expired_console_sessions,
    put_credential,
)
from bleepstore.metadata.rows import (
    BUCKET_COLS,
    OBJECT_COLS,
    PART_COLS,
    UPLOAD_COLS,
    bucket_values,
    cols,
    object_values,
    part_values,
    placeholders,
    tags_json,
    upload_values,
)
from bleepstore.model import ObjectMeta, is_inline_ref
from bleepstore.s3.conditions import check_write_preconditions


def _stats(conn: sqlite3.Connection, *, buckets: int = 0, objects: int = 0,
           size: int = 0, uploads: int = 0) -> None:
    if not (buckets or objects or size or uploads):
        return  # a same-size overwrite: no statement at all
    conn.execute("UPDATE stats SET bucket_count = bucket_count + ?, "
                 "object_count = object_count + ?, total_bytes = total_bytes + ?, "
                 "upload_count = upload_count + ? WHERE id = 1",
                 (buckets, objects, size, uploads))


class ReplicaConnection(sqlite3.Connection):
    """A connection that can apply a command without this node's local side effects.

    In cluster mode every node applies every command, but a blob is collected by one node
    only (cluster.md §4.3): while applying, the Raft applier sets ``collects`` to say which
    refs this node is responsible for (the proposer's under shared placement, its own
    under owner placement); None: all of them (embedded mode)."""

    collects: Callable[[str], bool] | None = None


def _gc(conn: sqlite3.Connection, ref: str, reason: str, not_before: str) -> None:
    if is_inline_ref(ref):  # every replica holds it, so every replica drops it
        conn.execute("DELETE FROM inline_blobs WHERE data_ref = ?", (ref,))
        return
    collects = getattr(conn, "collects", None)
    if collects is not None and not collects(ref):
        return
    conn.execute("INSERT INTO blob_gc (data_ref, reason, not_before) VALUES (?, ?, ?) "
                 "ON CONFLICT(data_ref) DO NOTHING", (ref, reason, not_before))


def _require_bucket(conn: sqlite3.Connection, name: str) -> None:
    if conn.execute("SELECT 1 FROM buckets WHERE name = ?", (name,)).fetchone() is None:
        raise errors.NoSuchBucket(BucketName=name)


def create_bucket(conn: sqlite3.Connection, cmd: c.CreateBucket) -> bool:
    b = cmd.bucket
    row = conn.execute("SELECT owner_id FROM buckets WHERE name = ?", (b.name,)).fetchone()
    if row is not None:
        if row["owner_id"] != b.owner_id:
            raise errors.BucketAlreadyExists(BucketName=b.name)
        if not cmd.allow_existing_own:
            raise errors.BucketAlreadyOwnedByYou(BucketName=b.name)
        return False
    owned = conn.execute("SELECT COUNT(*) FROM buckets WHERE owner_id = ?",
                         (b.owner_id,)).fetchone()[0]
    if owned >= cmd.max_buckets:
        raise errors.TooManyBuckets()
    conn.execute(f"INSERT INTO buckets ({cols(BUCKET_COLS)}) VALUES ({placeholders(BUCKET_COLS)})",
                 bucket_values(b))
    _stats(conn, buckets=1)
    return True


def delete_bucket(conn: sqlite3.Connection, cmd: c.DeleteBucket) -> None:
    _require_bucket(conn, cmd.name)
    busy = conn.execute(
        "SELECT EXISTS(SELECT 1 FROM objects WHERE bucket = ?) "
        "OR EXISTS(SELECT 1 FROM object_versions WHERE bucket = ?) "
        "OR EXISTS(SELECT 1 FROM multipart_uploads WHERE bucket = ?)",
        (cmd.name, cmd.name, cmd.name)).fetchone()[0]
    if busy:
        raise errors.BucketNotEmpty(BucketName=cmd.name)
    conn.execute("DELETE FROM buckets WHERE name = ?", (cmd.name,))
    _stats(conn, buckets=-1)


def put_bucket_acl(conn: sqlite3.Connection, cmd: c.PutBucketAcl) -> None:
    _require_bucket(conn, cmd.name)
    conn.execute("UPDATE buckets SET acl = ? WHERE name = ?", (cmd.acl, cmd.name))


def _replace_object(conn: sqlite3.Connection, meta: ObjectMeta, now: str, gc_not_before: str,
                    if_match: str | None, if_none_match: str | None
                    ) -> tuple[str | None, str | None]:
    """Make ``meta`` the key's current version. -> (the blob ref that became garbage, now a
    GC intent; the version id to report: None in a never-versioned bucket)."""
    state = v.versioning_of(conn, meta.bucket)
    old = conn.execute("SELECT etag, size, data_ref, version_id FROM objects "
                       "WHERE bucket = ? AND key = ?", (meta.bucket, meta.key)).fetchone()
    check_write_preconditions(if_match, if_none_match, old["etag"] if old else None,
                              key=meta.key)
    _stats(conn, objects=0 if old else 1, size=meta.size - (old["size"] if old else 0))
    if state is None:
        conn.execute(f"INSERT OR REPLACE INTO objects ({cols(OBJECT_COLS)}) "
                     f"VALUES ({placeholders(OBJECT_COLS)})", object_values(meta))
        garbage = [old["data_ref"]] if old else []
        reported = None
    else:
        vseq, version_id = v.next_version(conn, now, meta.bucket, meta.key)
        stored = version_id if state == v.ENABLED else None
        garbage = []
        if old is not None and stored is None and old["version_id"] is None:
            garbage.append(old["data_ref"])  # a suspended write replaces the null version
        elif old is not None:
            v.archive_current(conn, meta.bucket, meta.key)
        if stored is None:
            garbage += v.drop_null_history(conn, meta.bucket, meta.key)
        v.insert_current(conn, replace(meta, version_id=stored), vseq)
        reported = stored  # [S3] a suspended write reports no version id
    garbage = [str(ref) for ref in garbage if ref != meta.data_ref]
    for ref in garbage:
        _gc(conn, ref, "replaced", gc_not_before)
    return (garbage[0] if garbage else None), reported


def put_object(conn: sqlite3.Connection, cmd: c.PutObject) -> tuple[str | None, str | None]:
    if cmd.inline_data is not None or is_inline_ref(cmd.meta.data_ref):
        if cmd.inline_data is None or not is_inline_ref(cmd.meta.data_ref) \
                or len(cmd.inline_data) != cmd.meta.size:
            raise ValueError("an inline data ref must be committed with its bytes")
        conn.execute("INSERT INTO inline_blobs (data_ref, data) VALUES (?, ?)",
                     (cmd.meta.data_ref, cmd.inline_data))
    return _replace_object(conn, cmd.meta, cmd.now, cmd.gc_not_before, cmd.if_match,
                           cmd.if_none_match)


def put_bucket_versioning(conn: sqlite3.Connection, cmd: c.PutBucketVersioning) -> None:
    v.versioning_of(conn, cmd.name)  # NoSuchBucket
    conn.execute("UPDATE buckets SET versioning = ? WHERE name = ?", (cmd.status, cmd.name))


# One change made by DeleteObjects: (key, blob ref that became garbage or None, version id
# removed or None, 1 when that version was a delete marker, id of the marker it created).
Removal = tuple[str, str | None, str | None, int, str | None]


def _delete_current(conn: sqlite3.Connection, cmd: c.DeleteObjects, key: str) -> Removal | None:
    row = conn.execute("DELETE FROM objects WHERE bucket = ? AND key = ? "
                       "RETURNING size, data_ref", (cmd.bucket, key)).fetchone()
    if row is None:
        return None
    _gc(conn, row["data_ref"], "deleted", cmd.gc_not_before)
    _stats(conn, objects=-1, size=-row["size"])
    return (key, str(row["data_ref"]), None, 0, None)


def _add_delete_marker(conn: sqlite3.Connection, cmd: c.DeleteObjects, key: str,
                       state: str) -> Removal:
    vseq, version_id = v.next_version(conn, cmd.now, cmd.bucket, key)
    stored = version_id if state == v.ENABLED else None
    old = conn.execute("SELECT size, data_ref, version_id FROM objects WHERE bucket = ? "
                       "AND key = ?", (cmd.bucket, key)).fetchone()
    garbage: list[str] = []
    if old is not None:
        _stats(conn, objects=-1, size=-old["size"])
        if stored is None and old["version_id"] is None:
            conn.execute("DELETE FROM objects WHERE bucket = ? AND key = ?", (cmd.bucket, key))
            garbage.append(str(old["data_ref"]))
        else:
            v.archive_current(conn, cmd.bucket, key)
    if stored is None:
        garbage += v.drop_null_history(conn, cmd.bucket, key)
    v.insert_marker(conn, cmd.bucket, key, cmd.now, vseq, stored)
    for ref in garbage:
        _gc(conn, ref, "deleted", cmd.gc_not_before)
    return (key, garbage[0] if garbage else None, None, 0, stored or v.NULL)


def _delete_version(conn: sqlite3.Connection, cmd: c.DeleteObjects, key: str,
                    version_id: str) -> Removal | None:
    current = v.delete_version_row(conn, "objects", cmd.bucket, key, version_id)
    if current is not None:
        _stats(conn, objects=-1, size=-current["size"])
    row = current or v.delete_version_row(conn, "object_versions", cmd.bucket, key, version_id)
    if row is None:
        return None
    ref, marker = str(row["data_ref"]), int(row["delete_marker"])
    promoted = v.promote_latest(conn, cmd.bucket, key)
    if promoted >= 0:
        _stats(conn, objects=1, size=promoted)
    if marker:
        return (key, None, version_id, 1, None)
    _gc(conn, ref, "deleted", cmd.gc_not_before)
    return (key, ref, version_id, 0, None)


def _current_ref(conn: sqlite3.Connection, bucket: str, key: str) -> str:
    row = conn.execute("SELECT data_ref FROM objects WHERE bucket = ? AND key = ?",
                       (bucket, key)).fetchone()
    return str(row[0]) if row else ""


def delete_objects(conn: sqlite3.Connection, cmd: c.DeleteObjects) -> tuple[Removal, ...]:
    """Returns a ``Removal`` for every change actually made."""
    state = v.versioning_of(conn, cmd.bucket)
    removed: list[Removal] = []
    versions = cmd.version_ids or (None,) * len(cmd.keys)
    expected = cmd.if_current or (None,) * len(cmd.keys)
    for key, version_id, want in zip(cmd.keys, versions, expected, strict=True):
        if want is not None and _current_ref(conn, cmd.bucket, key) != want:
            continue
        if version_id is not None:
            change = _delete_version(conn, cmd, key, version_id)
        elif state is None:
            change = _delete_current(conn, cmd, key)
        else:
            change = _add_delete_marker(conn, cmd, key, state)
        if change is not None:
            removed.append(change)
    return tuple(removed)


def put_object_acl(conn: sqlite3.Connection, cmd: c.PutObjectAcl) -> None:
    if cmd.version_id is not None:
        v.set_version_field(conn, cmd.bucket, cmd.key, cmd.version_id, "acl", cmd.acl)
        return
    cur = conn.execute("UPDATE objects SET acl = ? WHERE bucket = ? AND key = ?",
                       (cmd.acl, cmd.bucket, cmd.key))
    if cur.rowcount == 0:
        raise errors.NoSuchKey(Key=cmd.key)


def put_object_tags(conn: sqlite3.Connection, cmd: c.PutObjectTags) -> None:
    value = tags_json(cmd.tags)
    if cmd.version_id is not None:
        v.set_version_field(conn, cmd.bucket, cmd.key, cmd.version_id, "tags", value)
        return
    cur = conn.execute("UPDATE objects SET tags = ? WHERE bucket = ? AND key = ?",
                       (value, cmd.bucket, cmd.key))
    if cur.rowcount == 0:
        raise errors.NoSuchKey(Key=cmd.key)


def put_bucket_config(conn: sqlite3.Connection, cmd: c.PutBucketConfig) -> None:
    if cmd.kind not in c.BUCKET_CONFIG_KINDS:
        raise ValueError(f"unknown bucket configuration {cmd.kind!r}")
    _require_bucket(conn, cmd.bucket)
    conn.execute("INSERT INTO bucket_configs (bucket, kind, document) VALUES (?, ?, ?) "
                 "ON CONFLICT(bucket, kind) DO UPDATE SET document = excluded.document",
                 (cmd.bucket, cmd.kind, cmd.document))


def delete_bucket_config(conn: sqlite3.Connection, cmd: c.DeleteBucketConfig) -> bool:
    """False when the bucket had no configuration of that kind."""
    _require_bucket(conn, cmd.bucket)
    cur = conn.execute("DELETE FROM bucket_configs WHERE bucket = ? AND kind = ?",
                       (cmd.bucket, cmd.kind))
    return cur.rowcount > 0


def create_upload(conn: sqlite3.Connection, cmd: c.CreateUpload) -> None:
    _require_bucket(conn, cmd.upload.bucket)
    conn.execute(f"INSERT INTO multipart_uploads ({cols(UPLOAD_COLS)}) "
                 f"VALUES ({placeholders(UPLOAD_COLS)})", upload_values(cmd.upload))
    _stats(conn, uploads=1)


def _require_upload(conn: sqlite3.Connection, upload_id: str, bucket: str, key: str) -> None:
    row = conn.execute("SELECT 1 FROM multipart_uploads WHERE upload_id = ? AND bucket = ? "
                       "AND key = ?", (upload_id, bucket, key)).fetchone()
    if row is None:
        raise errors.NoSuchUpload(UploadId=upload_id)


def put_part(conn: sqlite3.Connection, cmd: c.PutPart) -> str | None:
    p = cmd.part
    _require_upload(conn, p.upload_id, cmd.bucket, cmd.key)
    old = conn.execute("SELECT data_ref FROM multipart_parts WHERE upload_id = ? AND "
                       "part_number = ?", (p.upload_id, p.part_number)).fetchone()
    conn.execute(f"INSERT OR REPLACE INTO multipart_parts ({cols(PART_COLS)}) "
                 f"VALUES ({placeholders(PART_COLS)})", part_values(p))
    if old is not None and old["data_ref"] != p.data_ref:
        _gc(conn, old["data_ref"], "replaced", cmd.gc_not_before)
        return str(old["data_ref"])
    return None


def _drop_upload(conn: sqlite3.Connection, upload_id: str, reason: str,
                 not_before: str) -> None:
    conn.execute("DELETE FROM multipart_parts WHERE upload_id = ?", (upload_id,))
    conn.execute("DELETE FROM multipart_uploads WHERE upload_id = ?", (upload_id,))
    _gc(conn, f"upload:{upload_id}", reason, not_before)
    _stats(conn, uploads=-1)


def complete_upload(conn: sqlite3.Connection,
                    cmd: c.CompleteUpload) -> tuple[tuple[str, ...], str | None]:
    """-> (the refs that became garbage: replaced object, the upload's parts; the version
    id to report)."""
    m = cmd.meta
    _require_upload(conn, cmd.upload_id, m.bucket, m.key)
    replaced, version_id = _replace_object(conn, m, cmd.now, cmd.gc_not_before, cmd.if_match,
                                           cmd.if_none_match)
    _drop_upload(conn, cmd.upload_id, "completed", cmd.gc_not_before)
    conn.execute("INSERT OR REPLACE INTO completed_uploads VALUES (?, ?, ?, ?, ?, ?)",
                 (cmd.upload_id, m.bucket, m.key, m.etag, m.size, cmd.now))
    offset, windows = 0, []
    for number, size in enumerate(cmd.part_sizes, start=1):
        windows.append((m.data_ref, number, offset, size))
        offset += size
    conn.executemany("INSERT OR REPLACE INTO blob_parts VALUES (?, ?, ?, ?)", windows)
    return tuple(r for r in (replaced, f"upload:{cmd.upload_id}") if r), version_id


def abort_upload(conn: sqlite3.Connection, cmd: c.AbortUpload) -> None:
    _require_upload(conn, cmd.upload_id, cmd.bucket, cmd.key)
    _drop_upload(conn, cmd.upload_id, cmd.reason, cmd.gc_not_before)


def reap_expired_uploads(conn: sqlite3.Connection,
                         cmd: c.ReapExpiredUploads) -> list[tuple[str, str, str]]:
    """-> (upload id, bucket, key) of every upload dropped."""
    reaped = [(r[0], r[1], r[2]) for r in conn.execute(
        "SELECT upload_id, bucket, key FROM multipart_uploads WHERE initiated_at < ?",
        (cmd.initiated_before,))]
    for upload_id, _, _ in reaped:
        _drop_upload(conn, upload_id, "expired", cmd.gc_not_before)
    return reaped


def purge_completed_uploads(conn: sqlite3.Connection, cmd: c.PurgeCompletedUploads) -> int:
    cur = conn.execute("DELETE FROM completed_uploads WHERE completed_at < ?",
                       (cmd.completed_before,))
    return cur.rowcount


def add_gc_intent(conn: sqlite3.Connection, cmd: c.AddGcIntent) -> None:
    _gc(conn, cmd.data_ref, cmd.reason, cmd.not_before)


def gc_swept(conn: sqlite3.Connection, cmd: c.GcSwept) -> None:
    conn.executemany("DELETE FROM blob_gc WHERE data_ref = ?", [(r,) for r in cmd.done])
    conn.executemany("DELETE FROM blob_parts WHERE data_ref = ?", [(r,) for r in cmd.done])
    conn.executemany("UPDATE blob_gc SET attempts = attempts + 1, not_before = ? "
                     "WHERE data_ref = ?", [(nb, r) for r, nb in cmd.retry])


def put_node_meta(conn: sqlite3.Connection, cmd: c.PutNodeMeta) -> None:
    conn.execute("INSERT INTO node_meta (key, value) VALUES (?, ?) ON CONFLICT(key) "
                 "DO UPDATE SET value = excluded.value", (cmd.key, cmd.value))


HANDLERS: dict[type, Callable[[sqlite3.Connection, Any], Any]] = {
    c.PutCredential: put_credential,
    c.DeleteCredential: delete_credential,
    c.CreateBucket: create_bucket,
    c.DeleteBucket: delete_bucket,
    c.PutBucketAcl: put_bucket_acl,
    c.PutBucketVersioning: put_bucket_versioning,
    c.PutBucketConfig: put_bucket_config,
    c.DeleteBucketConfig: delete_bucket_config,
    c.PutObjectTags: put_object_tags,
    c.PutObject: put_object,
    c.DeleteObjects: delete_objects,
    c.PutObjectAcl: put_object_acl,
    c.CreateUpload: create_upload,
    c.PutPart: put_part,
    c.CompleteUpload: complete_upload,
    c.AbortUpload: abort_upload,
    c.ReapExpiredUploads: reap_expired_uploads,
    c.PurgeCompletedUploads: purge_completed_uploads,
    c.AddGcIntent: add_gc_intent,
    c.GcSwept: gc_swept,
    c.PutNodeMeta: put_node_meta,
    c.CreateConsoleSession: create_console_session,
    c.DeleteConsoleSession: delete_console_session,
    c.DeleteExpiredConsoleSessions: delete_expired_console_sessions,
}
