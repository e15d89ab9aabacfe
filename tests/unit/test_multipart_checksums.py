"""core/multipart_complete.py: the completed object's checksum from its parts' checksums,
and Complete's payload, whose x-amz-checksum-<alg> header is the object's checksum."""

from __future__ import annotations

import base64
import zlib

import pytest

from bleepstore import errors
from bleepstore.core.multipart_complete import _CompleteBody, object_checksum
from bleepstore.model import Part, Upload
from bleepstore.s3.checksums import DigestResult

TS = "2026-02-22T12:00:00.123Z"
BODIES = [b"a" * 1000, b"bc", b"", b"defg"]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


def upload(checksum_type: str | None) -> Upload:
    return Upload("0" * 32, "b", "k", "o", "o", TS, checksum_algorithm="CRC32",
                  checksum_type=checksum_type)


def parts(with_checksums: bool = True) -> list[Part]:
    return [Part("0" * 32, n, len(body), '"e"', TS, f"r{n}",
                 checksum_value=b64(crc32(body)) if with_checksums else None)
            for n, body in enumerate(BODIES, start=1)]


def test_full_object_checksum_is_the_crc_of_the_whole() -> None:
    assert object_checksum(upload("FULL_OBJECT"), parts()) == b64(crc32(b"".join(BODIES)))


@pytest.mark.parametrize("stored_type", [None, "COMPOSITE"])  # CRC32's default: COMPOSITE
def test_composite_checksum(stored_type: str | None) -> None:
    joined = b"".join(crc32(body) for body in BODIES)
    assert object_checksum(upload(stored_type), parts()) == f"{b64(crc32(joined))}-4"


def test_no_checksum_without_algorithm_or_part_checksums() -> None:
    plain = Upload("0" * 32, "b", "k", "o", "o", TS)
    assert object_checksum(plain, parts()) is None
    assert object_checksum(upload("FULL_OBJECT"), parts(with_checksums=False)) is None
    assert object_checksum(upload("FULL_OBJECT"), []) is None


class _Payload:
    declared_length = 3

    def __init__(self, error: errors.S3Error | None) -> None:
        self.error = error

    def read(self, size: int) -> bytes:
        return b""

    def finish(self) -> DigestResult:
        if self.error is not None:
            raise self.error
        return DigestResult(3, "", None, None)


def test_complete_body_drops_only_the_checksum_mismatch() -> None:
    assert _CompleteBody(_Payload(errors.ChecksumMismatch("x"))).finish().checksum_b64 is None
    assert _CompleteBody(_Payload(None)).finish().size == 3
    for error in (errors.BadDigest(), errors.XAmzContentSHA256Mismatch(),
                  errors.InvalidRequest("Value for x-amz-checksum-crc32 header is invalid.")):
        with pytest.raises(type(error)):
            _CompleteBody(_Payload(error)).finish()
