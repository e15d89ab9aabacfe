"""Frozen rows and values shared by every layer (L0, stdlib only).

Timestamps are ISO 8601 UTC strings with milliseconds (``2026-02-22T12:00:00.123Z``),
exactly as stored in SQLite; ETags are stored and carried quoted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
GROUP_URIS = (ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY)
PERMISSIONS = ("FULL_CONTROL", "READ", "WRITE", "READ_ACP", "WRITE_ACP")
ANONYMOUS = "anonymous"
# Refs of blobs kept in the metadata database itself (small objects, storage/inline.py):
# "inline:" + 32 hex; like every ref, no user data.
INLINE_REF_PREFIX = "inline:"


def is_inline_ref(ref: str | None) -> bool:
    return ref is not None and ref.startswith(INLINE_REF_PREFIX)


@dataclass(frozen=True)
class Owner:
    id: str
    display_name: str = ""


@dataclass(frozen=True)
class Grantee:
    """``type`` is ``CanonicalUser`` (``id``) or ``Group`` (``uri``)."""

    type: str
    id: str = ""
    display_name: str = ""
    uri: str = ""


@dataclass(frozen=True)
class Grant:
    grantee: Grantee
    permission: str


@dataclass(frozen=True)
class Acl:
    owner: Owner
    grants: tuple[Grant, ...]


@dataclass(frozen=True)
class Principal:
    """Who is calling: an authenticated credential's owner, or anonymous."""

    id: str = ANONYMOUS
    display_name: str = ""
    access_key: str = ""

    @property
    def is_anonymous(self) -> bool:
        return self.id == ANONYMOUS


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    secret_key: str
    owner_id: str
    display_name: str
    active: bool = True
    created_at: str = ""
    description: str | None = None


@dataclass(frozen=True)
class ConsoleSession:
    """A web console login (web/console/): only the SHA-256 hex of the cookie's token."""

    token_hash: str
    access_key: str
    csrf_token: str
    created_at: str
    expires_at: str


@dataclass(frozen=True)
class Bucket:
    name: str
    region: str
    owner_id: str
    owner_display: str
    acl: str  # ACL JSON (storage.md §2.15); "{}" = private to the owner
    created_at: str
    versioning: str | None = None  # None (never enabled), "Enabled" or "Suspended"


@dataclass(frozen=True)
class ContentHeaders:
    """The standard content headers stored with an object or upload."""

    content_type: str = "application/octet-stream"
    content_encoding: str | None = None
    content_language: str | None = None
    content_disposition: str | None = None
    cache_control: str | None = None
    expires: str | None = None


@dataclass(frozen=True)
class ObjectMeta:
    bucket: str
    key: str
    size: int
    etag: str
    last_modified: str
    data_ref: str
    content: ContentHeaders = field(default_factory=ContentHeaders)
    storage_class: str = "STANDARD"
    acl: str = "{}"
    user_metadata: tuple[tuple[str, str], ...] = ()
    parts_count: int | None = None
    checksum_algorithm: str | None = None
    checksum_value: str | None = None
    version_id: str | None = None  # None: the null version (docs/decisions.md, Versioning)
    tags: tuple[tuple[str, str], ...] = ()  # the object's tag set, in the order sent


@dataclass(frozen=True)
class ObjectVersion:
    """One entry of a key's history (ListObjectVersions, reads by versionId): a version or
    a delete marker (``meta`` then carries only key, date and owner ACL)."""

    meta: ObjectMeta
    delete_marker: bool
    is_latest: bool
    vseq: int  # the version's place in time (the version clock); orders a key's history

    @property
    def key(self) -> str:
        return self.meta.key

    @property
    def version_id(self) -> str:
        return self.meta.version_id or "null"


@dataclass(frozen=True)
class Upload:
    upload_id: str
    bucket: str
    key: str
    owner_id: str
    owner_display: str
    initiated_at: str
    content: ContentHeaders = field(default_factory=ContentHeaders)
    storage_class: str = "STANDARD"
    acl: str = "{}"
    user_metadata: tuple[tuple[str, str], ...] = ()
    checksum_algorithm: str | None = None
    data_ref: str | None = None
    backend_ref: str | None = None
    checksum_type: str | None = None  # COMPOSITE / FULL_OBJECT; None: the algorithm's default
    tags: tuple[tuple[str, str], ...] = ()  # given to the object at Complete


@dataclass(frozen=True)
class Part:
    upload_id: str
    part_number: int
    size: int
    etag: str
    last_modified: str
    data_ref: str
    checksum_value: str | None = None
    backend_ref: str | None = None


@dataclass(frozen=True)
class StagedBlob:
    """A blob that is durable in the backend but not yet referenced by metadata."""

    data_ref: str
    size: int
    md5_hex: str
    backend_ref: str | None = None
    inline: bytes | None = None  # an inline ref's bytes: the commit stores them


@dataclass(frozen=True)
class CompletedUpload:
    upload_id: str
    bucket: str
    key: str
    etag: str
    size: int
    completed_at: str


@dataclass(frozen=True)
class Page:
    """One listing page: entries are keys (objects) or common prefixes, in order."""

    contents: tuple[ObjectMeta, ...]
    common_prefixes: tuple[str, ...]
    is_truncated: bool
    next_marker: str | None  # last entry emitted when truncated (key or prefix)


@dataclass(frozen=True)
class EventOrigin:
    """The request a metadata change comes from, for its events (events.md §3)."""

    request_id: str
    operation: str  # the S3 API name: PutObject, CopyObject, DeleteObjects ...
    task_id: str | None = None  # a write task carried out by this change (events.md §5)
