"""Payload integrity: Content-MD5, x-amz-content-sha256 and flexible checksums (auth.md §6.1, §7).

Sans-I/O. ``integrity_from_headers`` turns request headers into an ``IntegritySpec`` (raising
the §7 header errors up front); ``PayloadDigester`` hashes the decoded payload as it streams
and ``finish`` verifies everything in a fixed order.

Invariants:
- every digest is computed incrementally over the bytes passed to ``update``; nothing is
  buffered, and there is no per-byte Python work (hashlib / zlib / awscrt do the loops);
- ``finish`` checks x-amz-content-sha256, then Content-MD5, then the flexible checksum;
- checksum values are compared as decoded digest bytes, never as base64 text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from awscrt import checksums as _crt  # type: ignore[import-untyped,unused-ignore]

from bleepstore.errors import (
    BadDigest,
    InvalidDigest,
    InvalidRequest,
    MalformedTrailerError,
    XAmzContentSHA256Mismatch,
)

ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
DIGEST_SIZES = {"CRC32": 4, "CRC32C": 4, "CRC64NVME": 8, "SHA1": 20, "SHA256": 32}
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")

MULTIPLE_MSG = "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
SDK_NO_VALUE_MSG = (
    "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* "
    "or x-amz-trailer headers were found."
)
UNSUPPORTED_ALG_MSG = (
    "Checksum algorithm provided is unsupported. Please try again with any of the valid "
    "types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]"
)
UNSUPPORTED_TRAILER_MSG = "The value specified in the x-amz-trailer header is not supported"


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc:
    """Incremental CRC over a function ``f(data, previous) -> int``; big-endian digest."""

    __slots__ = ("_fn", "_size", "_value")

    def __init__(self, fn: Callable[[bytes, int], int], size: int) -> None:
        self._fn, self._size, self._value = fn, size, 0

    def update(self, data: bytes, /) -> None:
        self._value = self._fn(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._size, "big")


def header_name(alg: str) -> str:
    """``"CRC32"`` -> ``"x-amz-checksum-crc32"``."""
    return "x-amz-checksum-" + alg.lower()


def new_hasher(alg: str) -> Hasher:
    """A fresh incremental hasher for one of ``ALGORITHMS``."""
    if alg == "CRC32":
        return _Crc(zlib.crc32, 4)
    if alg == "CRC32C":
        return _Crc(_crt.crc32c, 4)
    if alg == "CRC64NVME":
        return _Crc(_crt.crc64nvme, 8)
    if alg == "SHA1":
        return hashlib.sha1()
    if alg == "SHA256":
        return hashlib.sha256()
    raise ValueError(f"unknown checksum algorithm {alg!r}")


def _b64decode(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_content_md5(value: str) -> bytes:
    """Decode a Content-MD5 header to its 16 digest bytes, or raise InvalidDigest."""
    raw = _b64decode(value)
    if raw is None or len(raw) != 16:
        raise InvalidDigest()
    return raw


def decode_checksum(alg: str, value: str, *, trailing: bool = False) -> bytes:
    """Decode a base64 checksum value for ``alg``; InvalidRequest if invalid or wrong length."""
    raw = _b64decode(value)
    if raw is None or len(raw) != DIGEST_SIZES[alg]:
        kind = "trailing header" if trailing else "header"
        raise InvalidRequest(f"Value for {header_name(alg)} {kind} is invalid.")
    return raw


@dataclass(frozen=True)
class IntegritySpec:
    """What the request declares about its payload (decoded payload for aws-chunked)."""

    content_md5: bytes | None = None
    sha256_hex: str | None = None
    checksum_algorithm: str | None = None
    checksum_b64: str | None = None  # None when the value arrives in a trailer
    trailer_names: tuple[str, ...] = ()


def parse_trailer_header(value: str | None) -> tuple[str, ...]:
    """``x-amz-trailer`` -> lowercase, trimmed names (empty entries dropped)."""
    if not value:
        return ()
    return tuple(n for n in (p.strip().lower() for p in value.split(",")) if n)


def _trailer_algorithms(names: tuple[str, ...]) -> list[str]:
    algs = []
    for name in names:
        if name.startswith("x-amz-checksum-"):
            alg = name[len("x-amz-checksum-"):].upper()
            if alg not in DIGEST_SIZES:
                raise InvalidRequest(UNSUPPORTED_TRAILER_MSG)
            algs.append(alg)
    return algs


def integrity_from_headers(get: Callable[[str], str | None]) -> IntegritySpec:
    """Parse the integrity headers (``get`` takes a lowercase name); raise §7 header errors."""
    md5_value = get("content-md5")
    content_md5 = parse_content_md5(md5_value) if md5_value is not None else None
    declared = get("x-amz-content-sha256")
    sha256_hex = declared.lower() if declared and _HEX64.fullmatch(declared) else None
    trailer_names = parse_trailer_header(get("x-amz-trailer"))
    in_headers = [(a, v) for a in ALGORITHMS if (v := get(header_name(a))) is not None]
    in_trailer = _trailer_algorithms(trailer_names)
    if len(in_headers) + len(in_trailer) > 1:
        raise InvalidRequest(MULTIPLE_MSG)
    alg: str | None = None
    value: str | None = None
    if in_headers:
        alg, value = in_headers[0]
        decode_checksum(alg, value)
        value = value.strip()
    elif in_trailer:
        alg = in_trailer[0]
    _check_sdk_algorithm(get("x-amz-sdk-checksum-algorithm"), alg)
    return IntegritySpec(content_md5, sha256_hex, alg, value, trailer_names)


def _check_sdk_algorithm(sdk: str | None, alg: str | None) -> None:
    if sdk is None:
        return
    named = sdk.strip().upper()
    if named not in DIGEST_SIZES:
        raise InvalidRequest(UNSUPPORTED_ALG_MSG)
    if named != alg:
        raise InvalidRequest(SDK_NO_VALUE_MSG)


@dataclass(frozen=True)
class DigestResult:
    size: int
    md5_hex: str  # "" unless Content-MD5 was sent (the ETag comes from the blob writer)
    checksum_algorithm: str | None
    checksum_b64: str | None  # base64 of the computed checksum when an algorithm was in play


class PayloadDigester:
    """Hash a payload as it streams; ``finish`` verifies it against the ``IntegritySpec``."""

    def __init__(self, spec: IntegritySpec, *, need_sha256: bool) -> None:
        self.spec = spec
        self.size = 0
        # NOTE: MD5 only when Content-MD5 must be checked; the ETag's MD5 is computed once,
        # by the blob writer (hashing every PUT twice halved single-stream throughput).
        self._md5 = hashlib.md5() if spec.content_md5 is not None else None
        self._sha256 = hashlib.sha256() if need_sha256 or spec.sha256_hex else None
        alg = spec.checksum_algorithm
        # NOTE: a SHA256 checksum and the payload SHA-256 are the same digest; share it.
        self._checksum: Hasher | None = None
        if alg == "SHA256" and self._sha256 is not None:
            self._checksum = self._sha256
        elif alg is not None:
            self._checksum = new_hasher(alg)

    def update(self, data: bytes) -> None:
        self.size += len(data)
        if self._md5 is not None:
            self._md5.update(data)
        if self._sha256 is not None:
            self._sha256.update(data)
        if self._checksum is not None and self._checksum is not self._sha256:
            self._checksum.update(data)

    def sha256_hex(self) -> str:
        """Hex SHA-256 of everything so far (only when constructed to compute it)."""
        if self._sha256 is None:
            raise RuntimeError("PayloadDigester was not asked to compute SHA-256")
        return self._sha256.hexdigest()

    def finish(self, trailers: Mapping[str, str] | None = None) -> DigestResult:
        """Verify in order x-amz-content-sha256, Content-MD5, checksum; return the digests."""
        spec = self.spec
        if spec.sha256_hex is not None:
            computed = self.sha256_hex()
            if computed != spec.sha256_hex:
                raise XAmzContentSHA256Mismatch(
                    ClientComputedContentSHA256=spec.sha256_hex,
                    S3ComputedContentSHA256=computed,
                )
        md5 = self._md5.digest() if self._md5 is not None else b""
        if spec.content_md5 is not None and md5 != spec.content_md5:
            raise BadDigest(
                ExpectedDigest=base64.b64encode(spec.content_md5).decode(),
                CalculatedDigest=base64.b64encode(md5).decode(),
            )
        checksum = self._verify_checksum(trailers)
        return DigestResult(self.size, md5.hex(), spec.checksum_algorithm, checksum)

    def _verify_checksum(self, trailers: Mapping[str, str] | None) -> str | None:
        alg = self.spec.checksum_algorithm
        if alg is None or self._checksum is None:
            return None
        if self.spec.checksum_b64 is not None:
            expected = decode_checksum(alg, self.spec.checksum_b64)
        else:
            value = (trailers or {}).get(header_name(alg))
            if value is None:
                raise MalformedTrailerError()
            expected = decode_checksum(alg, value, trailing=True)
        computed = self._checksum.digest()
        if computed != expected:
            raise BadDigest(f"The {alg} you specified did not match the calculated checksum.")
        return base64.b64encode(computed).decode()
