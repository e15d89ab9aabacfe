"""Payload integrity: Content-MD5, x-amz-content-sha256 and flexible checksums (auth.md §6.1, §7).

Sans-I/O. ``integrity_from_headers`` turns request headers into an ``IntegritySpec`` (raising
the §7 header errors up front); ``PayloadDigester`` hashes the decoded payload as it streams
and ``finish`` verifies everything in a fixed order.

Multipart checksums (``x-amz-checksum-type``): ``COMPOSITE`` is ``alg(concat(part
digests))-N``; ``FULL_OBJECT`` is the CRC of the whole object, combined from the parts' CRCs
and sizes (``combine_crc``, GF(2) polynomial arithmetic: no byte is read again).

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from bleepstore.errors import (
    BadDigest,
    ChecksumMismatch,
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


def _crt() -> Any:
    # NOTE: imported on first use: awscrt adds ~5 MB to every process that loads it, and
    # most servers never see a CRC32C / CRC64NVME request.
    from awscrt import checksums  # type: ignore[import-untyped,unused-ignore]

    return checksums


def header_name(alg: str) -> str:
    """``"CRC32"`` -> ``"x-amz-checksum-crc32"``."""
    return "x-amz-checksum-" + alg.lower()


def new_hasher(alg: str) -> Hasher:
    """A fresh incremental hasher for one of ``ALGORITHMS``."""
    if alg == "CRC32":
        return _Crc(zlib.crc32, 4)
    if alg == "CRC32C":
        return _Crc(_crt().crc32c, 4)
    if alg == "CRC64NVME":
        return _Crc(_crt().crc64nvme, 8)
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

    def __init__(self, spec: IntegritySpec) -> None:
        self.spec = spec
        self.size = 0
        # NOTE: MD5 only when Content-MD5 must be checked; the ETag's MD5 is computed once,
        # by the blob writer (hashing every PUT twice halved single-stream throughput).
        self._md5 = hashlib.md5() if spec.content_md5 is not None else None
        self._sha256 = hashlib.sha256() if spec.sha256_hex else None
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

    def finish(self, trailers: Mapping[str, str] | None = None) -> DigestResult:
        """Verify in order x-amz-content-sha256, Content-MD5, checksum; return the digests."""
        spec = self.spec
        if spec.sha256_hex is not None and self._sha256 is not None:
            computed = self._sha256.hexdigest()
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
            raise ChecksumMismatch(mismatch_message(alg))
        return base64.b64encode(computed).decode()


def mismatch_message(alg: str) -> str:
    """BadDigest's message for a flexible checksum that does not match."""
    return f"The {alg} you specified did not match the calculated checksum."


# --- multipart checksum types ------------------------------------------------------------

COMPOSITE = "COMPOSITE"
FULL_OBJECT = "FULL_OBJECT"
CHECKSUM_TYPES = (COMPOSITE, FULL_OBJECT)
# [S3] which algorithm allows which type (the "Checking object integrity" table): SHA-1 and
# SHA-256 only COMPOSITE, CRC64NVME only FULL_OBJECT, CRC32 / CRC32C both.
TYPES_OF = {"CRC32": CHECKSUM_TYPES, "CRC32C": CHECKSUM_TYPES, "CRC64NVME": (FULL_OBJECT,),
            "SHA1": (COMPOSITE,), "SHA256": (COMPOSITE,)}
TYPE_WITHOUT_ALGORITHM_MSG = ("The x-amz-checksum-type header can only be used with the "
                              "x-amz-checksum-algorithm header.")
TYPE_INVALID_MSG = "Value for x-amz-checksum-type header is invalid."


def default_checksum_type(alg: str) -> str:
    """[S3] the type of a multipart upload created without ``x-amz-checksum-type``."""
    return FULL_OBJECT if alg == "CRC64NVME" else COMPOSITE


def multipart_checksum_type(alg: str | None, stored: str | None) -> str | None:
    """The checksum type of an upload: as created, else the algorithm's default."""
    if alg is None:
        return None
    return stored or default_checksum_type(alg)


def parse_checksum_type(value: str) -> str:
    """An ``x-amz-checksum-type`` value (any case) -> ``COMPOSITE`` / ``FULL_OBJECT``."""
    kind = value.strip().upper()
    if kind not in CHECKSUM_TYPES:
        raise InvalidRequest(TYPE_INVALID_MSG)
    return kind


def checksum_type_for_create(alg: str | None, requested: str | None) -> str | None:
    """CreateMultipartUpload: the upload's checksum type, or InvalidRequest (S3's order:
    an unknown value, a type without an algorithm, a type the algorithm does not allow)."""
    kind = parse_checksum_type(requested) if requested is not None else None
    if alg is None:
        if kind is not None:
            raise InvalidRequest(TYPE_WITHOUT_ALGORITHM_MSG)
        return None
    if kind is None:
        return default_checksum_type(alg)
    if kind not in TYPES_OF[alg]:
        raise InvalidRequest(f"The {kind} checksum type cannot be used with the "
                             f"{alg.lower()} checksum algorithm.")
    return kind


def type_mismatch_message(expected: str | None, actual: str | None) -> str:
    """[S3] a request's checksum algorithm is not the upload's (``null`` for none)."""
    return (f"Checksum Type mismatch occurred, expected checksum Type: "
            f"{(expected or 'null').lower()}, actual checksum Type: {(actual or 'null').lower()}")


# --- CRC combination (FULL_OBJECT) --------------------------------------------------------
# The three CRCs are reflected, with init and xorout all ones; for such a CRC
#   crc(A || B) = crc(A) * x^(8 * len(B)) mod P  xor  crc(B)
# (zlib's crc32_combine). Polynomials are kept reflected: bit ``width-1`` is x^0.

_REFLECTED_POLY = {"CRC32": (32, 0xEDB88320), "CRC32C": (32, 0x82F63B78),
                   "CRC64NVME": (64, 0x9A6C9329AC4BC9B5)}
COMBINABLE = tuple(_REFLECTED_POLY)
_POWERS = 70  # x^(2^k) for k < 70: byte counts up to 2^66 (8 * n < 2^69)


def _multmodp(a: int, b: int, width: int, poly: int) -> int:
    """a * b mod P, both reflected; ``a`` must not be 0 (no power of x is)."""
    m = 1 << (width - 1)
    p = 0
    while True:
        if a & m:
            p ^= b
            if not a & (m - 1):
                return p
        m >>= 1
        b = (b >> 1) ^ poly if b & 1 else b >> 1


@lru_cache(maxsize=len(_REFLECTED_POLY))
def _x2n_table(alg: str) -> tuple[int, ...]:
    """x^(2^k) mod P for k in range(_POWERS)."""
    width, poly = _REFLECTED_POLY[alg]
    p = 1 << (width - 2)  # x^1
    table = []
    for _ in range(_POWERS):
        table.append(p)
        p = _multmodp(p, p, width, poly)
    return tuple(table)


@lru_cache(maxsize=256)  # parts mostly share one size: one power per upload
def _x8n(alg: str, n: int) -> int:
    """x^(8n) mod P."""
    width, poly = _REFLECTED_POLY[alg]
    table = _x2n_table(alg)
    p = 1 << (width - 1)  # x^0
    k = 3  # 8n = n * 2^3
    while n:
        if n & 1:
            p = _multmodp(table[k], p, width, poly)
        n >>= 1
        k += 1
    return p


def combine_crc(alg: str, crc1: int, crc2: int, len2: int) -> int:
    """The CRC of ``A || B`` from ``crc(A)``, ``crc(B)`` and ``len(B)`` (bytes)."""
    if len2 < 0 or len2 >= 1 << (_POWERS - 3):
        raise ValueError(f"length out of range: {len2}")
    if len2 == 0:
        return crc1
    width, poly = _REFLECTED_POLY[alg]
    return _multmodp(_x8n(alg, len2), crc1, width, poly) ^ crc2


def full_object_crc(alg: str, parts: Sequence[tuple[bytes, int]]) -> bytes:
    """The CRC of the concatenation of parts given as ``(crc digest, size)``, in order."""
    size = DIGEST_SIZES[alg]
    total = 0
    for digest, length in parts:
        total = combine_crc(alg, total, int.from_bytes(digest, "big"), length)
    return total.to_bytes(size, "big")
