"""Bucket names, keys, storage classes, user metadata (s3-api.md §6)."""

from __future__ import annotations

import pytest

from bleepstore.errors import (
    InvalidArgument,
    InvalidBucketName,
    InvalidStorageClass,
    KeyTooLongError,
    MetadataTooLarge,
)
from bleepstore.s3.names import (
    STORAGE_CLASSES,
    is_valid_bucket_name,
    user_metadata_from_headers,
    validate_bucket_name,
    validate_key,
    validate_storage_class,
)

VALID_BUCKETS = ["abc", "a" * 63, "my.bucket", "my-bucket-1", "1bucket", "docs", "metrics",
                 "192.168.1", "a.b.c.d.e", "xn-abc", "bucket-s3alia", "0.0.0.0a"]
INVALID_BUCKETS = [
    "ab", "a" * 64, "",                                   # 1. length
    "MyBucket", "my_bucket", "my bucket", "bücket",      # 2. characters
    "-bucket", "bucket-", ".bucket", "bucket.",          # 3. first/last
    "my..bucket", "my.-bucket", "my-.bucket",            # 4. substrings
    "192.168.1.1", "1.2.3.4",                            # 5. IPv4 shape
    "xn--abc", "sthree-abc", "amzn-s3-demo-bucket",      # 6. prefixes
    "abc-s3alias", "abc--ol-s3", "abc.mrap", "abc--x-s3", "abc--table-s3",  # 7. suffixes
    "abc\n", "ab\u0441",
]


@pytest.mark.parametrize("name", VALID_BUCKETS)
def test_valid_bucket_names(name: str) -> None:
    assert is_valid_bucket_name(name)
    validate_bucket_name(name)


@pytest.mark.parametrize("name", INVALID_BUCKETS)
def test_invalid_bucket_names(name: str) -> None:
    assert not is_valid_bucket_name(name)
    with pytest.raises(InvalidBucketName) as exc:
        validate_bucket_name(name)
    assert exc.value.extra == {"BucketName": name}


@pytest.mark.parametrize("key", ["a", "a//b", "./x", "../x", "dir/", " ", "\t\n\r",
                                 "é" * 512, "k" * 1024, "\U0001f600", "%2F+", "\ufffd"])
def test_valid_keys(key: str) -> None:
    validate_key(key)


def test_key_too_long_counts_utf8_bytes() -> None:
    with pytest.raises(KeyTooLongError) as exc:
        validate_key("é" * 513)
    assert exc.value.extra == {"Size": "1026", "MaxSizeAllowed": "1024"}
    with pytest.raises(KeyTooLongError):
        validate_key("k" * 1025)


def test_empty_key() -> None:
    with pytest.raises(InvalidArgument):
        validate_key("")


@pytest.mark.parametrize("key", ["a\x00b", "\x01", "\x08", "\x0b", "\x0c", "\x1f", "a\ufffe",
                                 "\uffff", "\ud800", "x\udcff",
                                 b"\xff".decode("utf-8", "surrogateescape")])
def test_xml_unrepresentable_keys(key: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_key(key)
    assert exc.value.msg == "Object key contains characters that cannot be represented in XML"


def test_storage_classes() -> None:
    assert len(STORAGE_CLASSES) == 10
    for value in STORAGE_CLASSES:
        assert validate_storage_class(value) == value
    for bad in ("standard", "", "COLD"):
        with pytest.raises(InvalidStorageClass) as exc:
            validate_storage_class(bad)
        assert exc.value.extra == {"StorageClassRequested": bad}


def test_user_metadata_lowercased_sorted_joined() -> None:
    items = [("X-Amz-Meta-Zeta", "1"), ("Content-Type", "text/plain"),
             ("x-amz-meta-author", "Ann"), ("X-AMZ-META-AUTHOR", "Bob"),
             ("x-amz-metadata-directive", "COPY"), ("x-amz-meta-raw", "  é  ")]
    assert user_metadata_from_headers(items) == (
        ("x-amz-meta-author", "Ann,Bob"),
        ("x-amz-meta-raw", "=?UTF-8?B?ICDDqSAg?="),  # non-ASCII: as S3 returns it (RFC 2047)
        ("x-amz-meta-zeta", "1"))


def test_user_metadata_empty() -> None:
    assert user_metadata_from_headers([]) == ()


def test_user_metadata_size_limit() -> None:
    # name "k" (1 byte, prefix excluded) + 2047 bytes of value = 2048: allowed
    assert user_metadata_from_headers([("x-amz-meta-k", "v" * 2047)])
    with pytest.raises(MetadataTooLarge) as exc:
        user_metadata_from_headers([("x-amz-meta-k", "v" * 2048)])
    assert exc.value.extra == {"Size": "2049", "MaxSizeAllowed": "2048"}


def test_user_metadata_size_counts_wire_bytes() -> None:
    # WSGI gives latin-1 strings: "Ã©" is the two wire bytes of UTF-8 "é".
    wsgi_value = "é".encode().decode("latin-1") * 1023
    assert user_metadata_from_headers([("x-amz-meta-k", wsgi_value)])  # 1 + 2046
    with pytest.raises(MetadataTooLarge):
        user_metadata_from_headers([("x-amz-meta-kk", wsgi_value + "x")])
