"""Which events a committed metadata change produces (events.md §2): a pure function of
the command and what ``apply()`` returned, so it can run inside the command's transaction.

Reads, failed commands and idempotent no-ops (re-creating your own bucket, deleting a key
that was not there) produce nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bleepstore.metadata import commands as c

EVENT_TYPES = ("bucket.created", "bucket.deleted", "bucket.acl.updated", "object.created",
               "object.deleted", "objects.deleted", "object.acl.updated", "multipart.created",
               "part.uploaded", "multipart.completed", "multipart.aborted")


@dataclass(frozen=True)
class Event:
    type: str
    bucket: str  # the partition key: per-bucket order
    data: dict[str, Any]
    request_id: str


def _object_created(meta: Any, operation: str, version_id: str | None) -> dict[str, Any]:
    data = {"bucket": meta.bucket, "key": meta.key, "size": meta.size, "etag": meta.etag,
            "content_type": meta.content.content_type, "operation": operation,
            "last_modified": meta.last_modified}
    if version_id is not None:  # a versioned bucket (docs/decisions.md, Versioning)
        data["version_id"] = version_id
    return data


def _deleted(removal: Any) -> dict[str, Any]:
    """A DeleteObjects change: the key, plus the version removed (``delete_marker`` when it
    was one) or the delete marker created (``delete_marker_created``)."""
    key, _, version_id, was_marker, marker_id = removal
    entry: dict[str, Any] = {"key": key}
    if marker_id is not None:
        entry.update(version_id=marker_id, delete_marker_created=True)
    elif version_id is not None:
        entry["version_id"] = version_id
        if was_marker:
            entry["delete_marker"] = True
    return entry


def events_for(cmd: Any, result: Any) -> list[Event]:
    """The events of ``cmd``, committed with ``result`` (the handler's return value)."""
    origin = getattr(cmd, "origin", None)
    rid, op = (origin.request_id, origin.operation) if origin is not None else ("", "")
    if isinstance(cmd, (c.PutObject, c.CompleteUpload, c.DeleteObjects)):
        return _object_events(cmd, result, rid, op)
    return _bucket_and_upload_events(cmd, result, rid)


def _one(kind: str, bucket: str, rid: str, **data: Any) -> list[Event]:
    return [Event(kind, bucket, {"bucket": bucket, **data}, rid)]


def _object_events(cmd: c.PutObject | c.CompleteUpload | c.DeleteObjects, result: Any,
                   rid: str, op: str) -> list[Event]:
    if isinstance(cmd, c.PutObject):
        meta = cmd.meta
        return [Event("object.created", meta.bucket,
                      _object_created(meta, op or "PutObject", result[1] if result else None),
                      rid)]
    if isinstance(cmd, c.CompleteUpload):
        meta = cmd.meta
        return [Event("object.created", meta.bucket,
                      _object_created(meta, "CompleteMultipartUpload",
                                      result[1] if result else None), rid),
                *_one("multipart.completed", meta.bucket, rid, key=meta.key,
                      upload_id=cmd.upload_id, etag=meta.etag, size=meta.size)]
    changes = [_deleted(r) for r in result or ()]
    if not changes:
        return []
    if op == "DeleteObject":
        return _one("object.deleted", cmd.bucket, rid, **changes[0])
    keys = [ch["key"] for ch in changes]
    if any(len(change) > 1 for change in changes):  # versions: say which, per key
        return _one("objects.deleted", cmd.bucket, rid, keys=keys, versions=changes)
    return _one("objects.deleted", cmd.bucket, rid, keys=keys)


def _bucket_and_upload_events(cmd: Any, result: Any, rid: str) -> list[Event]:
    if isinstance(cmd, c.CreateBucket):
        b = cmd.bucket
        return (_one("bucket.created", b.name, rid, region=b.region, owner=b.owner_id)
                if result else [])
    if isinstance(cmd, c.DeleteBucket):
        return _one("bucket.deleted", cmd.name, rid)
    if isinstance(cmd, c.PutBucketAcl):
        return _one("bucket.acl.updated", cmd.name, rid, acl=json.loads(cmd.acl))
    if isinstance(cmd, c.PutObjectAcl):
        return _one("object.acl.updated", cmd.bucket, rid, key=cmd.key,
                    acl=json.loads(cmd.acl))
    if isinstance(cmd, c.CreateUpload):
        u = cmd.upload
        return _one("multipart.created", u.bucket, rid, key=u.key, upload_id=u.upload_id)
    if isinstance(cmd, c.PutPart):
        p = cmd.part
        return _one("part.uploaded", cmd.bucket, rid, key=cmd.key, upload_id=p.upload_id,
                    part_number=p.part_number, etag=p.etag, size=p.size)
    if isinstance(cmd, c.AbortUpload):
        return _one("multipart.aborted", cmd.bucket, rid, key=cmd.key,
                    upload_id=cmd.upload_id, reason="client")
    if isinstance(cmd, c.ReapExpiredUploads):
        return [Event("multipart.aborted", bucket,
                      {"bucket": bucket, "key": key, "upload_id": upload_id,
                       "reason": "expired"}, "")
                for upload_id, bucket, key in result or ()]
    return []
