"""aws-chunked decoding: AWS's signed example, trailers, framing errors, any split of the input."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum
from hypothesis import given, settings
from hypothesis import strategies as st

from bleepstore import errors
from bleepstore.model import Credential
from bleepstore.s3 import checksums, sigv4, sigv4_signing
from bleepstore.s3.chunked import AwsChunkedDecoder

EX = json.loads((Path(__file__).parent / "vectors" / "chunked_aws_example.json").read_text())
EMPTY = hashlib.sha256(b"").hexdigest()
TS = "20130524T000000Z"
SCOPE = "20130524/us-east-1/s3/aws4_request"


def tiny_key(secret: str = EX["secret_key"]) -> bytes:
    """Independent signing-key derivation (does not use sigv4_signing.signing_key)."""
    key = ("AWS4" + secret).encode()
    for part in ("20130524", "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def tiny_sig(kind: str, prev: str, tail: str) -> str:
    sts = f"AWS4-HMAC-SHA256-{kind}\n{TS}\n{SCOPE}\n{prev}\n{tail}"
    return hmac.new(tiny_key(), sts.encode(), hashlib.sha256).hexdigest()


def encode(
    payload: bytes,
    sizes: Iterable[int],
    *,
    seed: str | None = None,
    trailers: dict[str, str] | None = None,
    trailer_signed: bool = False,
) -> bytes:
    """Encode ``payload`` as aws-chunked; signed when ``seed`` is given (independent signer)."""
    out, pos, prev = [], 0, seed
    for size in [*sizes, 0]:
        data = payload[pos : pos + size]
        pos += size
        ext = b""
        if prev is not None:
            prev = tiny_sig("PAYLOAD", prev, EMPTY + "\n" + hashlib.sha256(data).hexdigest())
            ext = b";chunk-signature=" + prev.encode()
        out.append(b"%x%s\r\n" % (size, ext) + (data + b"\r\n" if size else b""))
        if size == 0:
            break
    assert pos == len(payload)
    block = "".join(f"{k}:{v}\n" for k, v in (trailers or {}).items())
    out += [f"{k}:{v}\r\n".encode() for k, v in (trailers or {}).items()]
    if trailer_signed:
        assert prev is not None
        sig = tiny_sig("TRAILER", prev, hashlib.sha256(block.encode()).hexdigest())
        out.append(b"x-amz-trailer-signature:" + sig.encode() + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def chain(seed: str) -> sigv4_signing.ChunkSignatureChain:
    return sigv4_signing.ChunkSignatureChain(
        sigv4_signing.signing_key(EX["secret_key"], "20130524", "us-east-1"), TS, SCOPE, seed
    )


def splits(body: bytes, mode: str, rng: random.Random) -> list[bytes]:
    if mode == "whole":
        return [body]
    if mode == "bytewise":
        return [body[i : i + 1] for i in range(len(body))]
    cuts = sorted(rng.sample(range(1, len(body)), min(len(body) - 1, rng.randint(1, 40))))
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=False)]


def decode(
    body: bytes, mode: str = "whole", seed: int = 0, **kw: Any
) -> tuple[bytes, dict[str, str]]:
    kw.setdefault("decoded_length", None)
    kw.setdefault("chain", None)
    dec = AwsChunkedDecoder(**kw)
    out = b"".join(dec.feed(piece) for piece in splits(body, mode, random.Random(seed)))
    return out, dec.finish()


MODES = ["whole", "bytewise", "random"]


# --- AWS published example ----------------------------------------------------------------


def aws_example() -> tuple[bytes, bytes, sigv4.AuthResult]:
    headers = dict(EX["headers"])
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={EX['access_key']}/{SCOPE},SignedHeaders="
        f"{EX['signed_headers']},Signature={EX['seed_signature']}"
    )
    cred = Credential(EX["access_key"], EX["secret_key"], "o", "d")
    req = sigv4.SigningRequest(EX["method"], EX["path"], "", headers.get, {}, tuple(headers))
    now = datetime(2013, 5, 24, tzinfo=UTC)
    result = sigv4.authenticate(
        req, lambda akid: cred if akid == cred.access_key_id else None, now=now
    )
    payload = EX["payload_byte"].encode() * EX["payload_length"]
    parts, pos = [], 0
    for size, sig in zip(EX["chunk_sizes"], EX["chunk_signatures"], strict=False):
        data = payload[pos : pos + size]
        pos += size
        # the final zero-size chunk has no data, so its CRLF is the closing CRLF
        parts.append(b"%x;chunk-signature=%s\r\n" % (size, sig.encode()) + data + b"\r\n")
    return payload, b"".join(parts), result


def test_aws_example_seed_signature() -> None:
    _, body, result = aws_example()
    assert result.content_sha256 == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    assert result.signature == EX["seed_signature"]
    recomputed = hmac.new(tiny_key(), result.string_to_sign.encode(), hashlib.sha256).hexdigest()
    assert recomputed == EX["seed_signature"]
    assert len(body) == int(EX["headers"]["content-length"])


@pytest.mark.parametrize("mode", MODES)
def test_aws_example_chunk_signatures(mode: str) -> None:
    payload, body, result = aws_example()
    ch = sigv4_signing.ChunkSignatureChain(
        result.signing_key, result.timestamp, result.scope, result.signature
    )
    out, trailers = decode(body, mode, decoded_length=len(payload), chain=ch)
    assert (out, trailers) == (payload, {})
    assert ch.previous == EX["chunk_signatures"][-1]
    # The independent encoder produces the very same bytes.
    assert encode(payload, EX["chunk_sizes"][:-1], seed=EX["seed_signature"]) == body


@pytest.mark.parametrize("offset", [100, 65000, 65536 + 90 + 500])
def test_aws_example_tampered_data(offset: int) -> None:
    payload, body, result = aws_example()
    bad = body[:offset] + b"b" + body[offset + 1 :]
    dec = AwsChunkedDecoder(decoded_length=len(payload), chain=chain(result.signature))
    with pytest.raises(errors.SignatureDoesNotMatch):
        dec.feed(bad)


def test_aws_example_tampered_signatures() -> None:
    payload, body, _ = aws_example()
    for sig in EX["chunk_signatures"]:
        bad = body.replace(sig.encode(), sig[:-1].encode() + b"0")
        with pytest.raises(errors.SignatureDoesNotMatch):
            decode(bad, decoded_length=len(payload), chain=chain(EX["seed_signature"]))
    unsigned_final = body.replace(b"0;chunk-signature=" + EX["chunk_signatures"][2].encode(), b"0")
    with pytest.raises(errors.SignatureDoesNotMatch):
        decode(unsigned_final, decoded_length=len(payload), chain=chain(EX["seed_signature"]))
    with pytest.raises(errors.SignatureDoesNotMatch):  # wrong seed: first chunk fails
        decode(body, decoded_length=len(payload), chain=chain("0" * 64))


def test_payload_streams_before_chunk_end() -> None:
    payload, body, _ = aws_example()
    dec = AwsChunkedDecoder(decoded_length=len(payload), chain=chain(EX["seed_signature"]))
    header_len = body.index(b"\r\n") + 2
    assert dec.feed(body[:header_len]) == b""
    assert dec.feed(body[header_len : header_len + 1000]) == payload[:1000]
    assert dec.feed(body[header_len + 1000 : header_len + 65536]) == payload[1000:65536]


# --- trailing data and truncation ---------------------------------------------------------


@pytest.mark.parametrize("extra", [b"X", b"\r\n", b"0\r\n\r\n"])
@pytest.mark.parametrize("mode", MODES)
def test_data_after_end_is_rejected(extra: bytes, mode: str) -> None:
    body = encode(b"hello world", [5, 6]) + extra
    with pytest.raises(errors.InvalidRequest) as info:
        decode(body, mode)
    assert info.value.msg == "Malformed aws-chunked encoding"


def test_every_truncation_is_incomplete() -> None:
    for signed in (False, True):
        payload = bytes(range(50))
        body = encode(payload, [20, 30], seed="0" * 64 if signed else None)
        for cut in range(len(body)):
            dec = AwsChunkedDecoder(
                decoded_length=len(payload), chain=chain("0" * 64) if signed else None
            )
            dec.feed(body[:cut])
            with pytest.raises(errors.IncompleteBody):
                dec.finish()


@pytest.mark.parametrize("declared", [0, 10, 99, 101, 10**9])
def test_decoded_length_mismatch(declared: int) -> None:
    body = encode(b"x" * 100, [60, 40])
    with pytest.raises(errors.IncompleteBody):
        decode(body, decoded_length=declared)


# --- framing errors -----------------------------------------------------------------------

BAD_FRAMING = [
    b"zz\r\nabc\r\n0\r\n\r\n",
    b"3\r\nabcX\r\n0\r\n\r\n",
    b"3\nabc\r\n0\r\n\r\n",
    b"3\r\nabc\n0\r\n\r\n",
    b"\r\n3\r\nabc\r\n0\r\n\r\n",
    b"-3\r\nabc\r\n0\r\n\r\n",
    b" 3\r\nabc\r\n0\r\n\r\n",
    b"0x3\r\nabc\r\n0\r\n\r\n",
    b"00000000000000003\r\nabc\r\n0\r\n\r\n",
    b"3\r\nabc\r\n0\r\n\r\n\r\n",
    b"3" + b";x=y" * 2000 + b"\r\nabc\r\n0\r\n\r\n",
]


@pytest.mark.parametrize("body", BAD_FRAMING, ids=range(len(BAD_FRAMING)))
@pytest.mark.parametrize("mode", MODES)
def test_bad_framing(body: bytes, mode: str) -> None:
    with pytest.raises(errors.InvalidRequest):
        decode(body, mode)


def test_extensions_and_hex_case() -> None:
    body = b"A;foo=bar;chunk-signature=abc\r\n0123456789\r\n0000000000000000;x\r\n\r\n"
    assert decode(body, decoded_length=10) == (b"0123456789", {})
    with pytest.raises(errors.SignatureDoesNotMatch):  # signed mode: "abc" is not the signature
        decode(body, decoded_length=10, chain=chain("0" * 64))


def test_absurd_size_is_rejected_before_reading() -> None:
    dec = AwsChunkedDecoder(decoded_length=10, chain=None)
    with pytest.raises(errors.IncompleteBody):
        dec.feed(b"ffffffffffffffff\r\n")


# --- trailers -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_botocore_unsigned_trailer(mode: str) -> None:
    payload = random.Random(1).randbytes(5000)
    body = AwsChunkedWrapper(
        io.BytesIO(payload),
        checksum_cls=Crc32Checksum,
        checksum_name="x-amz-checksum-crc32",
        chunk_size=1024,
    ).read()
    out, trailers = decode(
        body, mode, decoded_length=len(payload), expect_trailers=("x-amz-checksum-crc32",)
    )
    assert out == payload
    spec = checksums.integrity_from_headers(
        {"x-amz-trailer": "x-amz-checksum-crc32", "x-amz-sdk-checksum-algorithm": "CRC32"}.get
    )
    digester = checksums.PayloadDigester(spec)
    digester.update(out)
    assert digester.finish(trailers).checksum_b64 == trailers["x-amz-checksum-crc32"]


@pytest.mark.parametrize("mode", MODES)
def test_signed_trailer(mode: str) -> None:
    payload = b"z" * 9000
    tr = {"x-amz-checksum-crc32c": "sOO8/Q=="}
    body = encode(payload, [8192, 808], seed="1" * 64, trailers=tr, trailer_signed=True)
    out, trailers = decode(
        body,
        mode,
        decoded_length=9000,
        chain=chain("1" * 64),
        expect_trailers=tuple(tr),
        trailer_signed=True,
    )
    assert (out, trailers) == (payload, tr)


def test_signed_trailer_tampering() -> None:
    tr = {"x-amz-checksum-crc32": "AAAAAA=="}
    kw: dict[str, Any] = dict(decoded_length=3, expect_trailers=tuple(tr), trailer_signed=True)
    body = encode(b"abc", [3], seed="1" * 64, trailers=tr, trailer_signed=True)
    decode(body, chain=chain("1" * 64), **kw)
    sig = body.split(b"x-amz-trailer-signature:")[1][:64]
    for bad in (
        body.replace(b"AAAAAA==", b"AAAAAB=="),
        body.replace(sig, b"0" + sig[1:] if sig[:1] != b"0" else b"1" + sig[1:]),
    ):
        with pytest.raises(errors.SignatureDoesNotMatch):
            decode(bad, chain=chain("1" * 64), **kw)
    unsigned = encode(b"abc", [3], seed="1" * 64, trailers=tr)
    with pytest.raises(errors.SignatureDoesNotMatch):  # signature line missing
        decode(unsigned, chain=chain("1" * 64), **kw)


TRAILER_ERRORS: list[tuple[str, bytes, tuple[str, ...]]] = [
    ("sent, none announced", b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n", ()),
    ("announced, none sent", b"3\r\nabc\r\n0\r\n\r\n", ("x-amz-checksum-crc32",)),
    (
        "other name",
        b"3\r\nabc\r\n0\r\nx-amz-checksum-sha1:AAAAAA==\r\n\r\n",
        ("x-amz-checksum-crc32",),
    ),
    (
        "extra",
        b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\nx-foo:1\r\n\r\n",
        ("x-amz-checksum-crc32",),
    ),
    (
        "duplicate",
        b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n",
        ("x-amz-checksum-crc32",),
    ),
    (
        "no colon",
        b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32 AAAAAA==\r\n\r\n",
        ("x-amz-checksum-crc32",),
    ),
    ("empty name", b"3\r\nabc\r\n0\r\n:AAAAAA==\r\n\r\n", ("x-amz-checksum-crc32",)),
    (
        "unexpected signature line",
        b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n"
        b"x-amz-trailer-signature:" + b"0" * 64 + b"\r\n\r\n",
        ("x-amz-checksum-crc32",),
    ),
]


@pytest.mark.parametrize("name,body,expected", TRAILER_ERRORS, ids=[t[0] for t in TRAILER_ERRORS])
@pytest.mark.parametrize("mode", MODES)
def test_trailer_errors(name: str, body: bytes, expected: tuple[str, ...], mode: str) -> None:
    with pytest.raises(errors.MalformedTrailerError):
        decode(body, mode, decoded_length=3, expect_trailers=expected)


def test_trailer_names_and_values_normalised() -> None:
    body = b"3\r\nabc\r\n0\r\nX-Amz-Checksum-CRC32 :  AAAAAA==  \r\n\r\n"
    assert decode(body, expect_trailers=("x-amz-checksum-crc32",))[1] == {
        "x-amz-checksum-crc32": "AAAAAA=="
    }


# --- properties ---------------------------------------------------------------------------


@st.composite
def chunked_cases(draw: Callable[..., Any]) -> tuple[bytes, list[int], list[int], bool, bool]:
    payload = draw(st.binary(max_size=3000))
    sizes: list[int] = []
    left = len(payload)
    while left:
        size = draw(st.integers(min_value=1, max_value=max(1, left)))
        sizes.append(size)
        left -= size
    cuts = draw(st.lists(st.integers(min_value=0, max_value=4000), max_size=30))
    return payload, sizes, cuts, draw(st.booleans()), draw(st.booleans())


@settings(max_examples=200, deadline=None)
@given(chunked_cases())
def test_property_round_trip(case: tuple[bytes, list[int], list[int], bool, bool]) -> None:
    payload, sizes, cuts, signed, with_trailer = case
    tr = {"x-amz-checksum-crc32": "AAAAAA=="} if with_trailer else {}
    body = encode(
        payload,
        sizes,
        seed="2" * 64 if signed else None,
        trailers=tr,
        trailer_signed=signed and with_trailer,
    )
    points = sorted({c % (len(body) + 1) for c in cuts} | {0, len(body)})
    dec = AwsChunkedDecoder(
        decoded_length=len(payload),
        chain=chain("2" * 64) if signed else None,
        expect_trailers=tuple(tr),
        trailer_signed=signed and with_trailer,
    )
    out = b"".join(dec.feed(body[a:b]) for a, b in zip(points, points[1:], strict=False))
    assert out == payload
    assert dec.finish() == tr


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0), st.integers(1, 255))
def test_property_corruption_never_passes_silently(payload: bytes, where: int, flip: int) -> None:
    """Flipping any byte of a signed body raises an S3Error (or decodes identical payload)."""
    body = bytearray(encode(payload, [len(payload)], seed="3" * 64))
    i = where % len(body)
    body[i] ^= flip
    try:
        out, _ = decode(bytes(body), decoded_length=len(payload), chain=chain("3" * 64))
    except errors.S3Error:
        return
    assert out == payload  # only a harmless change (e.g. hex case of the size) may pass
