"""Mapping between SQLite rows and model dataclasses (one place for column lists)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from bleepstore.model import Bucket, ContentHeaders, Credential, ObjectMeta, Part, Upload

CONTENT_COLS = ("content_type", "content_encoding", "content_language",
                "content_disposition", "cache_control", "expires")
OBJECT_COLS = ("bucket", "key", "size", "etag", *CONTENT_COLS, "storage_class", "acl",
               "user_metadata", "last_modified", "data_ref", "parts_count",
               "checksum_algorithm", "checksum_value", "version_id", "tags")
# object_versions: an object row plus whether it is a delete marker and its clock value
VERSION_COLS = (*OBJECT_COLS, "delete_marker", "vseq")
LISTING_COLS = ("bucket", "key", "size", "etag", "storage_class", "acl", "last_modified",
                "data_ref")
UPLOAD_COLS = ("upload_id", "bucket", "key", *CONTENT_COLS, "storage_class", "acl",
               "user_metadata", "owner_id", "owner_display", "initiated_at",
               "checksum_algorithm", "data_ref", "backend_ref", "checksum_type", "tags")
PART_COLS = ("upload_id", "part_number", "size", "etag", "last_modified", "data_ref",
             "checksum_value", "backend_ref")
BUCKET_COLS = ("name", "region", "owner_id", "owner_display", "acl", "created_at",
               "versioning")
CREDENTIAL_COLS = ("access_key_id", "secret_key", "owner_id", "display_name", "active",
                   "created_at", "description")


def cols(names: tuple[str, ...], table: str = "") -> str:
    prefix = f"{table}." if table else ""
    return ", ".join(prefix + n for n in names)


def placeholders(names: tuple[str, ...]) -> str:
    return ", ".join("?" for _ in names)


def _meta_json(pairs: tuple[tuple[str, str], ...]) -> str:
    return json.dumps(dict(pairs), sort_keys=True, separators=(",", ":"))


def _meta_pairs(text: str) -> tuple[tuple[str, str], ...]:
    data = json.loads(text or "{}")
    return tuple(sorted((str(k), str(v)) for k, v in data.items()))


def tags_json(tags: tuple[tuple[str, str], ...]) -> str | None:
    """Tags as stored: a JSON list of [key, value] pairs (order kept), NULL when none."""
    return json.dumps([list(t) for t in tags], separators=(",", ":")) if tags else None


def tags_from_json(text: str | None) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in json.loads(text)) if text else ()


def _content(row: sqlite3.Row) -> ContentHeaders:
    return ContentHeaders(*(row[c] for c in CONTENT_COLS))


def _content_values(c: ContentHeaders) -> tuple[Any, ...]:
    return (c.content_type, c.content_encoding, c.content_language, c.content_disposition,
            c.cache_control, c.expires)


def object_from_row(row: sqlite3.Row) -> ObjectMeta:
    return ObjectMeta(
        bucket=row["bucket"], key=row["key"], size=row["size"], etag=row["etag"],
        last_modified=row["last_modified"], data_ref=row["data_ref"], content=_content(row),
        storage_class=row["storage_class"], acl=row["acl"],
        user_metadata=_meta_pairs(row["user_metadata"]), parts_count=row["parts_count"],
        checksum_algorithm=row["checksum_algorithm"], checksum_value=row["checksum_value"],
        version_id=row["version_id"], tags=tags_from_json(row["tags"]))


def listing_object_from_row(row: sqlite3.Row) -> ObjectMeta:
    """The listing view of an object row (``LISTING_COLS`` only)."""
    return ObjectMeta(bucket=row[0], key=row[1], size=row[2], etag=row[3], storage_class=row[4],
                      acl=row[5], last_modified=row[6], data_ref=row[7])


def object_values(m: ObjectMeta) -> tuple[Any, ...]:
    return (m.bucket, m.key, m.size, m.etag, *_content_values(m.content), m.storage_class,
            m.acl, _meta_json(m.user_metadata), m.last_modified, m.data_ref, m.parts_count,
            m.checksum_algorithm, m.checksum_value, m.version_id, tags_json(m.tags))


def upload_from_row(row: sqlite3.Row) -> Upload:
    return Upload(
        upload_id=row["upload_id"], bucket=row["bucket"], key=row["key"],
        owner_id=row["owner_id"], owner_display=row["owner_display"],
        initiated_at=row["initiated_at"], content=_content(row),
        storage_class=row["storage_class"], acl=row["acl"],
        user_metadata=_meta_pairs(row["user_metadata"]),
        checksum_algorithm=row["checksum_algorithm"], data_ref=row["data_ref"],
        backend_ref=row["backend_ref"], checksum_type=row["checksum_type"],
        tags=tags_from_json(row["tags"]))


def upload_values(u: Upload) -> tuple[Any, ...]:
    return (u.upload_id, u.bucket, u.key, *_content_values(u.content), u.storage_class,
            u.acl, _meta_json(u.user_metadata), u.owner_id, u.owner_display,
            u.initiated_at, u.checksum_algorithm, u.data_ref, u.backend_ref, u.checksum_type,
            tags_json(u.tags))


def part_from_row(row: sqlite3.Row) -> Part:
    return Part(*(row[c] for c in PART_COLS))


def part_values(p: Part) -> tuple[Any, ...]:
    return (p.upload_id, p.part_number, p.size, p.etag, p.last_modified, p.data_ref,
            p.checksum_value, p.backend_ref)


def bucket_from_row(row: sqlite3.Row) -> Bucket:
    return Bucket(*(row[c] for c in BUCKET_COLS))


def bucket_values(b: Bucket) -> tuple[Any, ...]:
    return (b.name, b.region, b.owner_id, b.owner_display, b.acl, b.created_at, b.versioning)


def credential_from_row(row: sqlite3.Row) -> Credential:
    return Credential(
        access_key_id=row["access_key_id"], secret_key=row["secret_key"],
        owner_id=row["owner_id"], display_name=row["display_name"],
        active=bool(row["active"]), created_at=row["created_at"],
        description=row["description"])


def credential_values(c: Credential) -> tuple[Any, ...]:
    return (c.access_key_id, c.secret_key, c.owner_id, c.display_name, int(c.active),
            c.created_at, c.description)
