"""Metadata mutations as frozen commands (design.md "Writes are commands").

Invariants: a command carries every id and timestamp it needs, so applying it is
deterministic (the same command is a Raft log entry in cluster mode). Preconditions
that must be atomic with the write (If-None-Match, If-Match, upload still exists,
bucket empty) travel inside the command and are checked by ``apply()`` in the
same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from bleepstore.model import Bucket, Credential, ObjectMeta, Part, Upload


@dataclass(frozen=True)
class PutCredential:
    credential: Credential


@dataclass(frozen=True)
class DeleteCredential:
    access_key_id: str


@dataclass(frozen=True)
class CreateBucket:
    bucket: Bucket
    max_buckets: int
    # us-east-1 compatibility: re-creating your own bucket answers 200 (s3-api.md §7.2)
    allow_existing_own: bool


@dataclass(frozen=True)
class DeleteBucket:
    name: str


@dataclass(frozen=True)
class PutBucketAcl:
    name: str
    acl: str


@dataclass(frozen=True)
class PutObject:
    meta: ObjectMeta
    now: str
    gc_not_before: str
    if_match: str | None = None
    if_none_match: str | None = None


@dataclass(frozen=True)
class DeleteObjects:
    bucket: str
    keys: tuple[str, ...]
    gc_not_before: str


@dataclass(frozen=True)
class PutObjectAcl:
    bucket: str
    key: str
    acl: str


@dataclass(frozen=True)
class CreateUpload:
    upload: Upload


@dataclass(frozen=True)
class PutPart:
    bucket: str
    key: str
    part: Part
    gc_not_before: str


@dataclass(frozen=True)
class CompleteUpload:
    upload_id: str
    meta: ObjectMeta
    now: str
    gc_not_before: str
    part_sizes: tuple[int, ...] = ()  # sizes of the listed parts, in order
    if_none_match: str | None = None


@dataclass(frozen=True)
class AbortUpload:
    bucket: str
    key: str
    upload_id: str
    gc_not_before: str
    reason: str = "aborted"


@dataclass(frozen=True)
class ReapExpiredUploads:
    initiated_before: str
    gc_not_before: str


@dataclass(frozen=True)
class PurgeCompletedUploads:
    completed_before: str


@dataclass(frozen=True)
class AddGcIntent:
    data_ref: str
    reason: str
    not_before: str


@dataclass(frozen=True)
class GcSwept:
    """Outcome of one GC pass: refs deleted, refs to retry with their new not_before."""

    done: tuple[str, ...]
    retry: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PutNodeMeta:
    """Upsert one ``node_meta`` row (small node-local facts, e.g. the missing-blob report)."""

    key: str
    value: str


Command = (PutCredential | DeleteCredential | CreateBucket | DeleteBucket | PutBucketAcl
           | PutObject | DeleteObjects | PutObjectAcl | CreateUpload | PutPart
           | CompleteUpload | AbortUpload | ReapExpiredUploads | PurgeCompletedUploads
           | AddGcIntent | GcSwept | PutNodeMeta)
