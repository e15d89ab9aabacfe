"""Metadata mutations as frozen commands (design.md "Writes are commands").

Invariants: a command carries every id and timestamp it needs, so applying it is
deterministic (the same command is a Raft log entry in cluster mode). Preconditions
that must be atomic with the write (If-None-Match, If-Match, upload still exists,
bucket empty) travel inside the command and are checked by ``apply()`` in the
same transaction. ``origin`` names the request a change comes from: its events (written
to the outbox in that same transaction) carry it; None for changes no request made.
"""

from __future__ import annotations

from dataclasses import dataclass

from bleepstore.model import (
    Bucket,
    ConsoleSession,
    Credential,
    EventOrigin,
    ObjectMeta,
    Part,
    Upload,
)


@dataclass(frozen=True)
class PutCredential:
    credential: Credential


@dataclass(frozen=True)
class DeleteCredential:
    """Remove a user. Refused (``UserOwnsBuckets``) while the user owns buckets, unless
    ``reassign_to`` names an active user who takes them over in the same transaction."""

    access_key_id: str
    reassign_to: str | None = None


class UserOwnsBuckets(Exception):
    """DeleteCredential without ``reassign_to`` for a user who still owns buckets."""

    def __init__(self, access_key_id: str, buckets: tuple[str, ...]) -> None:
        super().__init__(f"{access_key_id} owns {len(buckets)} bucket(s): "
                         + ", ".join(buckets))
        self.access_key_id, self.buckets = access_key_id, buckets


class InvalidReassignTarget(Exception):
    """``reassign_to`` is unknown, inactive, or the user being removed."""


@dataclass(frozen=True)
class CreateConsoleSession:
    """A console login. Stored only while its access key is an active credential (checked
    in the transaction): returns whether the session was created."""

    session: ConsoleSession


@dataclass(frozen=True)
class DeleteConsoleSession:
    """A console logout; returns whether the session existed."""

    token_hash: str


@dataclass(frozen=True)
class DeleteExpiredConsoleSessions:
    """Drop the console sessions that expired at or before ``now``; returns how many."""

    now: str


@dataclass(frozen=True)
class CreateBucket:
    bucket: Bucket
    max_buckets: int
    # us-east-1 compatibility: re-creating your own bucket answers 200 (s3-api.md §7.2)
    allow_existing_own: bool
    origin: EventOrigin | None = None  # the request, for its events


@dataclass(frozen=True)
class DeleteBucket:
    name: str
    origin: EventOrigin | None = None  # the request, for its events


@dataclass(frozen=True)
class PutBucketAcl:
    name: str
    acl: str
    origin: EventOrigin | None = None  # the request, for its events


@dataclass(frozen=True)
class PutBucketVersioning:
    name: str
    status: str  # "Enabled" | "Suspended"
    origin: EventOrigin | None = None  # the request, for its events


BUCKET_CONFIG_KINDS = ("policy", "cors", "lifecycle", "public_access_block", "tagging")


@dataclass(frozen=True)
class PutBucketConfig:
    """Store a bucket's configuration document of one kind (``BUCKET_CONFIG_KINDS``): the
    document is what the owner sent, validated and normalised by the caller."""

    bucket: str
    kind: str
    document: str
    origin: EventOrigin | None = None  # the request, for its events


@dataclass(frozen=True)
class DeleteBucketConfig:
    bucket: str
    kind: str
    origin: EventOrigin | None = None  # the request, for its events


@dataclass(frozen=True)
class PutObjectTags:
    """Replace the tag set of a key's current version, or of ``version_id``."""

    bucket: str
    key: str
    tags: tuple[tuple[str, str], ...]
    version_id: str | None = None
    origin: EventOrigin | None = None  # the request, for its events


@dataclass(frozen=True)
class PutObject:
    meta: ObjectMeta
    now: str
    gc_not_before: str
    if_match: str | None = None
    if_none_match: str | None = None
    origin: EventOrigin | None = None  # the request, for its events
    inline_data: bytes | None = None  # the blob's bytes when ``meta.data_ref`` is inline


@dataclass(frozen=True)
class DeleteObjects:
    """Delete keys (a delete marker in a versioned bucket) or, where ``version_ids`` names
    one for the key at the same position, that version. Returns one ``Removal`` tuple per
    change made."""

    bucket: str
    keys: tuple[str, ...]
    gc_not_before: str
    origin: EventOrigin | None = None  # the request, for its events
    version_ids: tuple[str | None, ...] = ()  # parallel to keys; empty: no versions
    now: str = ""  # the delete markers' Last-Modified
    # parallel to keys; empty: none. The blob ref the key's current version must still have
    # ("" : the key must have no current version), else the key is left alone: lifecycle
    # decides from rows read earlier and must never remove a write that came after.
    if_current: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class PutObjectAcl:
    bucket: str
    key: str
    acl: str
    origin: EventOrigin | None = None  # the request, for its events
    version_id: str | None = None  # None: the current version


@dataclass(frozen=True)
class CreateUpload:
    upload: Upload
    origin: EventOrigin | None = None  # the request, for its events


@dataclass(frozen=True)
class PutPart:
    bucket: str
    key: str
    part: Part
    gc_not_before: str
    origin: EventOrigin | None = None  # the request, for its events


@dataclass(frozen=True)
class CompleteUpload:
    upload_id: str
    meta: ObjectMeta
    now: str
    gc_not_before: str
    part_sizes: tuple[int, ...] = ()  # sizes of the listed parts, in order
    if_none_match: str | None = None
    origin: EventOrigin | None = None  # the request, for its events
    if_match: str | None = None


@dataclass(frozen=True)
class AbortUpload:
    bucket: str
    key: str
    upload_id: str
    gc_not_before: str
    reason: str = "aborted"
    origin: EventOrigin | None = None  # the request, for its events


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
           | PutBucketVersioning | PutBucketConfig | DeleteBucketConfig | PutObjectTags
           | PutObject | DeleteObjects | PutObjectAcl | CreateUpload | PutPart
           | CompleteUpload | AbortUpload | ReapExpiredUploads | PurgeCompletedUploads
           | AddGcIntent | GcSwept | PutNodeMeta | CreateConsoleSession | DeleteConsoleSession
           | DeleteExpiredConsoleSessions)
