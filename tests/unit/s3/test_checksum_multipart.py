"""Multipart checksums (s3/checksums.py): the CRC combination behind FULL_OBJECT, checked
against the CRC of the concatenated bytes, and S3's x-amz-checksum-type rules."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable

import pytest
from awscrt import checksums as crt  # type: ignore[import-untyped,unused-ignore]
from hypothesis import given, settings
from hypothesis import strategies as st

from bleepstore import errors
from bleepstore.s3 import checksums
from bleepstore.s3.checksums import (
    PayloadDigester,
    checksum_type_for_create,
    combine_crc,
    full_object_crc,
    integrity_from_headers,
)

CRC: dict[str, Callable[[bytes], int]] = {
    "CRC32": zlib.crc32,
    "CRC32C": lambda data: int(crt.crc32c(data)),
    "CRC64NVME": lambda data: int(crt.crc64nvme(data)),
}
CHECK = b"123456789"
CHECK_VALUES = {"CRC32": 0xCBF43926, "CRC32C": 0xE3069283, "CRC64NVME": 0xAE8B14860A799888}


def test_combinable_algorithms_are_the_crcs() -> None:
    assert set(checksums.COMBINABLE) == set(CRC)


@pytest.mark.parametrize("alg", list(CRC))
def test_every_split_of_the_check_string(alg: str) -> None:
    crc = CRC[alg]
    for cut in range(len(CHECK) + 1):
        a, b = CHECK[:cut], CHECK[cut:]
        assert combine_crc(alg, crc(a), crc(b), len(b)) == CHECK_VALUES[alg], cut


# (lengths of the pieces) -> the CRC of their concatenation, for each algorithm
TABLE = [
    (0,), (1,), (0, 0), (0, 5), (5, 0), (1, 1), (3, 7, 11), (64, 1, 64),
    (4096, 4095, 1), (1, 0, 1, 0, 1), (1000, 1000, 1000, 17), (65537, 3),
]


@pytest.mark.parametrize("alg", list(CRC))
@pytest.mark.parametrize("sizes", TABLE)
def test_full_object_crc_is_the_crc_of_the_concatenation(alg: str,
                                                         sizes: tuple[int, ...]) -> None:
    pieces = [os.urandom(n) for n in sizes]
    crc, width = CRC[alg], checksums.DIGEST_SIZES[alg]
    parts = [(crc(p).to_bytes(width, "big"), len(p)) for p in pieces]
    assert full_object_crc(alg, parts) == crc(b"".join(pieces)).to_bytes(width, "big")


@settings(max_examples=200)
@given(alg=st.sampled_from(list(CRC)), pieces=st.lists(st.binary(max_size=300), max_size=6))
def test_combination_property(alg: str, pieces: list[bytes]) -> None:
    crc = CRC[alg]
    total = 0
    for piece in pieces:
        total = combine_crc(alg, total, crc(piece), len(piece))
    assert total == crc(b"".join(pieces))


COMBINE = {name: getattr(crt, fn, None) for name, fn in (
    ("CRC32", "combine_crc32"), ("CRC32C", "combine_crc32c"),
    ("CRC64NVME", "combine_crc64nvme"))}


@pytest.mark.parametrize("alg", list(CRC))
@pytest.mark.parametrize("length", [1, 8, 5 * 1024 ** 2, 5 * 1024 ** 3, 5 * 1024 ** 4 + 7,
                                    2 ** 62 - 1])
def test_large_lengths_agree_with_awscrt(alg: str, length: int) -> None:
    """Part sizes no test can hold in memory: checked against awscrt's own combine (newer
    awscrt than BleepStore requires, hence the pure code)."""
    combine = COMBINE[alg]
    if combine is None:
        pytest.skip("this awscrt has no combine functions")
    a, b = CRC[alg](b"first part"), CRC[alg](b"second")
    assert combine_crc(alg, a, b, length) == combine(a, b, length)


def test_combine_rejects_impossible_lengths() -> None:
    with pytest.raises(ValueError):
        combine_crc("CRC32", 1, 2, -1)
    with pytest.raises(ValueError):
        combine_crc("CRC32", 1, 2, 2 ** 70)


@pytest.mark.parametrize("alg,requested,expected", [
    (None, None, None),
    ("CRC32", None, "COMPOSITE"),
    ("CRC32C", None, "COMPOSITE"),
    ("SHA1", None, "COMPOSITE"),
    ("SHA256", None, "COMPOSITE"),
    ("CRC64NVME", None, "FULL_OBJECT"),
    ("CRC32", "FULL_OBJECT", "FULL_OBJECT"),
    ("CRC32C", "full_object", "FULL_OBJECT"),
    ("CRC32", "COMPOSITE", "COMPOSITE"),
    ("SHA256", "COMPOSITE", "COMPOSITE"),
    ("CRC64NVME", "FULL_OBJECT", "FULL_OBJECT"),
])
def test_checksum_type_for_create(alg: str | None, requested: str | None,
                                  expected: str | None) -> None:
    assert checksum_type_for_create(alg, requested) == expected


@pytest.mark.parametrize("alg,requested,message", [
    ("SHA256", "FULL_OBJECT",
     "The FULL_OBJECT checksum type cannot be used with the sha256 checksum algorithm."),
    ("SHA1", "FULL_OBJECT",
     "The FULL_OBJECT checksum type cannot be used with the sha1 checksum algorithm."),
    ("CRC64NVME", "COMPOSITE",
     "The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm."),
    (None, "FULL_OBJECT", "The x-amz-checksum-type header can only be used with the "
                          "x-amz-checksum-algorithm header."),
    ("CRC32", "PARTIAL", "Value for x-amz-checksum-type header is invalid."),
    (None, "PARTIAL", "Value for x-amz-checksum-type header is invalid."),
])
def test_checksum_type_for_create_refusals(alg: str | None, requested: str,
                                           message: str) -> None:
    with pytest.raises(errors.InvalidRequest) as exc:
        checksum_type_for_create(alg, requested)
    assert exc.value.msg == message


def test_multipart_checksum_type_defaults() -> None:
    assert checksums.multipart_checksum_type(None, None) is None
    assert checksums.multipart_checksum_type("CRC32", None) == "COMPOSITE"
    assert checksums.multipart_checksum_type("CRC32", "FULL_OBJECT") == "FULL_OBJECT"
    assert checksums.multipart_checksum_type("CRC64NVME", None) == "FULL_OBJECT"


def test_type_mismatch_message() -> None:
    assert checksums.type_mismatch_message("CRC32", None) == (
        "Checksum Type mismatch occurred, expected checksum Type: crc32, actual checksum "
        "Type: null")
    assert checksums.type_mismatch_message("SHA256", "CRC32C").endswith(
        "expected checksum Type: sha256, actual checksum Type: crc32c")


def test_a_wrong_checksum_is_a_checksum_mismatch_bad_digest() -> None:
    """Malformed -> InvalidRequest up front; well-formed but wrong -> BadDigest, raised as
    the ChecksumMismatch subclass (Complete tells it from Content-MD5's BadDigest)."""
    wrong = "AAAAAA=="
    with pytest.raises(errors.InvalidRequest) as bad:
        integrity_from_headers({"x-amz-checksum-crc32": "AAAA"}.get)
    assert bad.value.msg == "Value for x-amz-checksum-crc32 header is invalid."
    digester = PayloadDigester(integrity_from_headers({"x-amz-checksum-crc32": wrong}.get))
    digester.update(b"data")
    with pytest.raises(errors.ChecksumMismatch) as exc:
        digester.finish()
    assert isinstance(exc.value, errors.BadDigest) and exc.value.code == "BadDigest"
    assert exc.value.msg == "The CRC32 you specified did not match the calculated checksum."
    assert errors.error_class("BadDigest") is errors.BadDigest
