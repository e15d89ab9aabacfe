"""Integrity headers and the streaming digester (auth.md §6.1, §7)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bleepstore import errors
from bleepstore.s3 import checksums
from bleepstore.s3.checksums import IntegritySpec, PayloadDigester, integrity_from_headers

CHECK = b"123456789"
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    "alg,check_hex",
    [
        ("CRC32", "cbf43926"),
        ("CRC32C", "e3069283"),
        ("CRC64NVME", "ae8b14860a799888"),
        ("SHA1", hashlib.sha1(CHECK).hexdigest()),
        ("SHA256", hashlib.sha256(CHECK).hexdigest()),
    ],
)
def test_check_values_incremental(alg: str, check_hex: str) -> None:
    whole = checksums.new_hasher(alg)
    whole.update(CHECK)
    assert whole.digest().hex() == check_hex
    pieces = checksums.new_hasher(alg)
    for i in range(len(CHECK)):
        pieces.update(CHECK[i : i + 1])
    assert pieces.digest().hex() == check_hex
    assert len(whole.digest()) == checksums.DIGEST_SIZES[alg]


def test_empty_values() -> None:
    assert b64(checksums.new_hasher("CRC32").digest()) == "AAAAAA=="
    assert checksums.new_hasher("CRC64NVME").digest() == bytes(8)


@pytest.mark.parametrize(
    "alg,name",
    [
        ("CRC32", "x-amz-checksum-crc32"),
        ("CRC32C", "x-amz-checksum-crc32c"),
        ("CRC64NVME", "x-amz-checksum-crc64nvme"),
        ("SHA1", "x-amz-checksum-sha1"),
        ("SHA256", "x-amz-checksum-sha256"),
    ],
)
def test_header_name(alg: str, name: str) -> None:
    assert checksums.header_name(alg) == name
    assert alg in checksums.ALGORITHMS


@pytest.mark.parametrize(
    "value,ok",
    [
        ("1B2M2Y8AsgTpgAmY7PhCfg==", True),
        ("1B2M2Y8AsgTpgAmY7PhCfg", False),
        ("not base64!", False),
        ("AAAAAA==", False),
        ("", False),
        (b64(bytes(17)), False),
    ],
)
def test_parse_content_md5(value: str, ok: bool) -> None:
    if ok:
        assert checksums.parse_content_md5(value) == hashlib.md5(b"").digest()
    else:
        with pytest.raises(errors.InvalidDigest):
            checksums.parse_content_md5(value)


MULTI = "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
SDK_MISSING = (
    "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* "
    "or x-amz-trailer headers were found."
)
CRC = b64(bytes.fromhex("cbf43926"))

SPEC_TABLE: list[
    tuple[str, dict[str, str], IntegritySpec | tuple[type[errors.S3Error], str | None]]
] = [
    ("nothing", {}, IntegritySpec()),
    (
        "md5",
        {"content-md5": "1B2M2Y8AsgTpgAmY7PhCfg=="},
        IntegritySpec(content_md5=hashlib.md5(b"").digest()),
    ),
    ("bad md5", {"content-md5": "xx"}, (errors.InvalidDigest, None)),
    ("hex sha256", {"x-amz-content-sha256": EMPTY_SHA}, IntegritySpec(sha256_hex=EMPTY_SHA)),
    ("unsigned", {"x-amz-content-sha256": "UNSIGNED-PAYLOAD"}, IntegritySpec()),
    ("streaming", {"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"}, IntegritySpec()),
    (
        "crc32 header",
        {"x-amz-checksum-crc32": CRC},
        IntegritySpec(checksum_algorithm="CRC32", checksum_b64=CRC),
    ),
    (
        "crc32 + sdk",
        {"x-amz-checksum-crc32": CRC, "x-amz-sdk-checksum-algorithm": "crc32"},
        IntegritySpec(checksum_algorithm="CRC32", checksum_b64=CRC),
    ),
    (
        "sha256 header",
        {"x-amz-checksum-sha256": b64(bytes(32))},
        IntegritySpec(checksum_algorithm="SHA256", checksum_b64=b64(bytes(32))),
    ),
    (
        "crc32 wrong length",
        {"x-amz-checksum-crc32": b64(bytes(8))},
        (errors.InvalidRequest, "Value for x-amz-checksum-crc32 header is invalid."),
    ),
    (
        "crc64 bad base64",
        {"x-amz-checksum-crc64nvme": "!!!"},
        (errors.InvalidRequest, "Value for x-amz-checksum-crc64nvme header is invalid."),
    ),
    (
        "sha1 empty",
        {"x-amz-checksum-sha1": ""},
        (errors.InvalidRequest, "Value for x-amz-checksum-sha1 header is invalid."),
    ),
    (
        "two headers",
        {"x-amz-checksum-crc32": CRC, "x-amz-checksum-crc32c": CRC},
        (errors.InvalidRequest, MULTI),
    ),
    (
        "header + trailer",
        {"x-amz-checksum-crc32": CRC, "x-amz-trailer": "x-amz-checksum-sha1"},
        (errors.InvalidRequest, MULTI),
    ),
    (
        "two trailers",
        {"x-amz-trailer": "x-amz-checksum-crc32, x-amz-checksum-crc32c"},
        (errors.InvalidRequest, MULTI),
    ),
    (
        "trailer",
        {"x-amz-trailer": " X-Amz-Checksum-CRC32C ", "x-amz-sdk-checksum-algorithm": "CRC32C"},
        IntegritySpec(checksum_algorithm="CRC32C", trailer_names=("x-amz-checksum-crc32c",)),
    ),
    (
        "unknown checksum trailer",
        {"x-amz-trailer": "x-amz-checksum-md5"},
        (errors.InvalidRequest, None),
    ),
    ("other trailer", {"x-amz-trailer": "x-foo,,"}, IntegritySpec(trailer_names=("x-foo",))),
    (
        "sdk unknown",
        {"x-amz-sdk-checksum-algorithm": "MD5", "x-amz-checksum-crc32": CRC},
        (errors.InvalidRequest, None),
    ),
    ("sdk alone", {"x-amz-sdk-checksum-algorithm": "CRC32"}, (errors.InvalidRequest, SDK_MISSING)),
    (
        "sdk other alg",
        {"x-amz-sdk-checksum-algorithm": "SHA1", "x-amz-checksum-crc32": CRC},
        (errors.InvalidRequest, SDK_MISSING),
    ),
    (
        "not value headers",
        {
            "x-amz-checksum-algorithm": "CRC32",
            "x-amz-checksum-type": "FULL_OBJECT",
            "x-amz-checksum-mode": "ENABLED",
        },
        IntegritySpec(),
    ),
]


@pytest.mark.parametrize("name,headers,expected", SPEC_TABLE, ids=[t[0] for t in SPEC_TABLE])
def test_integrity_from_headers(name: str, headers: dict[str, str], expected: Any) -> None:
    if isinstance(expected, IntegritySpec):
        assert integrity_from_headers(headers.get) == expected
        return
    exc, message = expected
    with pytest.raises(exc) as info:
        integrity_from_headers(headers.get)
    if message:
        assert info.value.msg == message


def digest(
    spec: IntegritySpec,
    body: bytes,
    trailers: dict[str, str] | None = None,
) -> checksums.DigestResult:
    d = PayloadDigester(spec)
    for i in range(0, len(body), 7):
        d.update(body[i : i + 7])
    return d.finish(trailers)


def test_digester_success() -> None:
    body = CHECK
    spec = integrity_from_headers(
        {
            "content-md5": b64(hashlib.md5(body).digest()),
            "x-amz-content-sha256": hashlib.sha256(body).hexdigest(),
            "x-amz-checksum-crc32": CRC,
        }.get
    )
    result = digest(spec, body)
    assert result == checksums.DigestResult(9, hashlib.md5(body).hexdigest(), "CRC32", CRC)
    plain = digest(IntegritySpec(), body)
    assert (plain.checksum_algorithm, plain.checksum_b64, plain.size) == (None, None, 9)


@pytest.mark.parametrize("alg", checksums.ALGORITHMS)
def test_digester_trailer_all_algorithms(alg: str) -> None:
    body = b"x" * 100_000
    h = checksums.new_hasher(alg)
    h.update(body)
    spec = integrity_from_headers({"x-amz-trailer": checksums.header_name(alg)}.get)
    result = digest(spec, body, {checksums.header_name(alg): b64(h.digest())})
    assert (result.checksum_algorithm, result.checksum_b64) == (alg, b64(h.digest()))
    with pytest.raises(errors.BadDigest) as info:
        digest(spec, body + b"y", {checksums.header_name(alg): b64(h.digest())})
    assert info.value.msg == f"The {alg} you specified did not match the calculated checksum."


def test_digester_errors_in_order() -> None:
    body = b"hello"
    wrong = {
        "content-md5": b64(hashlib.md5(b"other").digest()),
        "x-amz-content-sha256": hashlib.sha256(b"other").hexdigest(),
        "x-amz-checksum-crc32": CRC,
    }
    with pytest.raises(errors.XAmzContentSHA256Mismatch) as sha_err:
        digest(integrity_from_headers(wrong.get), body)
    assert sha_err.value.extra == {
        "ClientComputedContentSHA256": hashlib.sha256(b"other").hexdigest(),
        "S3ComputedContentSHA256": hashlib.sha256(body).hexdigest(),
    }
    del wrong["x-amz-content-sha256"]
    with pytest.raises(errors.BadDigest) as md5_err:
        digest(integrity_from_headers(wrong.get), body)
    assert md5_err.value.extra == {
        "ExpectedDigest": wrong["content-md5"],
        "CalculatedDigest": b64(hashlib.md5(body).digest()),
    }
    del wrong["content-md5"]
    with pytest.raises(errors.BadDigest) as crc_err:
        digest(integrity_from_headers(wrong.get), body)
    assert crc_err.value.msg == "The CRC32 you specified did not match the calculated checksum."


@pytest.mark.parametrize(
    "trailers,exc",
    [
        (None, errors.MalformedTrailerError),
        ({}, errors.MalformedTrailerError),
        ({"x-amz-checksum-crc32c": CRC}, errors.MalformedTrailerError),
        ({"x-amz-checksum-crc32": "!!"}, errors.InvalidRequest),
        ({"x-amz-checksum-crc32": b64(bytes(5))}, errors.InvalidRequest),
        ({"x-amz-checksum-crc32": "AAAAAA=="}, errors.BadDigest),
    ],
)
def test_digester_trailer_errors(
    trailers: dict[str, str] | None, exc: type[errors.S3Error]
) -> None:
    spec = integrity_from_headers({"x-amz-trailer": "x-amz-checksum-crc32"}.get)
    with pytest.raises(exc):
        digest(spec, CHECK, trailers)


def test_sha256_checksum_shares_payload_hash() -> None:
    body = b"abc" * 1000
    value = b64(hashlib.sha256(body).digest())
    spec = integrity_from_headers(
        {
            "x-amz-checksum-sha256": value,
            "x-amz-content-sha256": hashlib.sha256(body).hexdigest(),
        }.get
    )
    assert digest(spec, body).checksum_b64 == value


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=2000),
    st.lists(st.integers(0, 2000), max_size=10),
    st.sampled_from(checksums.ALGORITHMS),
)
def test_property_split_invariant(body: bytes, cuts: list[int], alg: str) -> None:
    whole = checksums.new_hasher(alg)
    whole.update(body)
    points = sorted({c % (len(body) + 1) for c in cuts} | {0, len(body)})
    d = PayloadDigester(IntegritySpec(checksum_algorithm=alg, checksum_b64=b64(whole.digest())))
    for a, b in zip(points, points[1:], strict=False):
        d.update(body[a:b])
    assert d.finish().checksum_b64 == b64(whole.digest())
