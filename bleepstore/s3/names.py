"""Bucket names, object keys, storage classes and user metadata (s3-api.md §6).

Invariants:
- A bucket name is valid exactly when all seven §6.1 rules hold.
- A valid key is 1..1024 UTF-8 bytes and contains only code points XML 1.0 can carry
  (no C0 controls but TAB/LF/CR, no U+FFFE/U+FFFF, no lone surrogates).
- User metadata comes back lowercased with the full ``x-amz-meta-`` prefix, sorted by
  name, repeated headers joined with ``,`` in arrival order; a value that is US-ASCII is
  kept as sent, any other is stored (and so returned) RFC 2047-encoded as S3 returns it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

from bleepstore.errors import (
    InvalidArgument,
    InvalidBucketName,
    InvalidStorageClass,
    KeyTooLongError,
    MetadataTooLarge,
)

MAX_KEY_BYTES = 1024
MAX_METADATA_BYTES = 2048
META_PREFIX = "x-amz-meta-"

STORAGE_CLASSES = frozenset({
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
    "GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "OUTPOSTS", "EXPRESS_ONEZONE",
})

_BUCKET_CHARS = re.compile(r"[a-z0-9][a-z0-9.\-]*[a-z0-9]", re.ASCII)
_IPV4_SHAPE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+", re.ASCII)
_BAD_SUBSTRINGS = ("..", ".-", "-.")
_BAD_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BAD_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def is_valid_bucket_name(name: str) -> bool:
    """All seven rules of §6.1."""
    return (
        3 <= len(name) <= 63
        and _BUCKET_CHARS.fullmatch(name) is not None
        and not any(s in name for s in _BAD_SUBSTRINGS)
        and _IPV4_SHAPE.fullmatch(name) is None
        and not name.startswith(_BAD_PREFIXES)
        and not name.endswith(_BAD_SUFFIXES)
    )


def validate_bucket_name(name: str) -> None:
    """Raise ``InvalidBucketName`` unless ``is_valid_bucket_name``."""
    if not is_valid_bucket_name(name):
        raise InvalidBucketName(BucketName=name)


def validate_key(key: str) -> None:
    """Raise ``InvalidArgument`` / ``KeyTooLongError`` for keys §6.2 rejects."""
    if not key:
        raise InvalidArgument("Object key must not be empty", ArgumentName="key")
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise KeyTooLongError(Size=size, MaxSizeAllowed=MAX_KEY_BYTES)
    if _XML_UNSAFE.search(key):
        raise InvalidArgument("Object key contains characters that cannot be represented in XML")


def validate_storage_class(value: str) -> str:
    """Return ``value`` when it is one of §6.4's classes, else ``InvalidStorageClass``."""
    if value not in STORAGE_CLASSES:
        raise InvalidStorageClass(StorageClassRequested=value)
    return value


def _wire_len(text: str) -> int:
    # NOTE: header values arrive as WSGI latin-1 strings; their latin-1 encoding is the
    # bytes the client sent (its UTF-8). Anything else is measured as UTF-8.
    try:
        return len(text.encode("latin-1"))
    except UnicodeEncodeError:
        return len(text.encode("utf-8", "surrogatepass"))


def mail_safe(value: str) -> str:
    """A metadata value as S3 returns it: as is when US-ASCII, else one RFC 2047 encoded
    word, ``=?UTF-8?B?<base64>?=`` [S3].

    NOTE: S3 reads the header's bytes as ISO-8859-1 characters and encodes the UTF-8 of
    those characters (its "double encoding": UTF-8 ``ö`` (C3 B6) comes back as
    ``=?UTF-8?B?w4PCtg==?=``); a WSGI value is exactly that latin-1 view, so this is
    the UTF-8 of ``value`` (docs/decisions.md).
    """
    if value.isascii():
        return value
    data = value.encode("utf-8", "surrogatepass")
    return f"=?UTF-8?B?{base64.b64encode(data).decode('ascii')}?="


def user_metadata_from_headers(
    items: Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    """Collect ``x-amz-meta-*`` headers (§6.3); raise ``MetadataTooLarge`` above 2048 bytes
    (counted on the values as sent); non-ASCII values are stored ``mail_safe``."""
    merged: dict[str, list[str]] = {}
    for name, value in items:
        lowered = name.lower()
        if lowered.startswith(META_PREFIX):
            merged.setdefault(lowered, []).append(value)
    result = tuple(sorted((name, ",".join(values)) for name, values in merged.items()))
    size = sum(_wire_len(n[len(META_PREFIX):]) + _wire_len(v) for n, v in result)
    if size > MAX_METADATA_BYTES:
        raise MetadataTooLarge(Size=size, MaxSizeAllowed=MAX_METADATA_BYTES)
    return tuple((name, mail_safe(value)) for name, value in result)
