"""A small, test-side aws-chunked encoder and SigV4 signer (auth.md §3, §6.2-§6.4).

Written from the spec and AWS's published example, independently of the product's decoder
and verifier (it shares no code with ``bleepstore``). botocore cannot produce signed
streaming requests (its S3 signer replaces ``x-amz-content-sha256``), so this module signs
the seed request itself and chains the chunk and trailer signatures.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import socket
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote_to_bytes, urlsplit

from support.server import ACCESS_KEY, SECRET_KEY
from support.signing import as_signed

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def derive_key(secret: str, date: str, region: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, "s3", "aws4_request"):
        key = _hmac(key, part)
    return key


def _enc(raw: str, safe: str) -> str:
    return quote(unquote_to_bytes(raw), safe=safe)


def canonical_query(raw_query: str) -> str:
    pairs = []
    for seg in (s for s in raw_query.split("&") if s):
        name, _, value = seg.partition("=")
        pairs.append((_enc(name, "-_.~"), _enc(value, "-_.~")))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


@dataclass
class Signer:
    """SigV4 header signing of one request; keeps what the chunk chain needs."""

    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = "us-east-1"
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def timestamp(self) -> str:
        return self.now.strftime("%Y%m%dT%H%M%SZ")

    @property
    def scope(self) -> str:
        return f"{self.timestamp[:8]}/{self.region}/s3/aws4_request"

    @property
    def key(self) -> bytes:
        return derive_key(self.secret_key, self.timestamp[:8], self.region)

    def sign(self, method: str, target: str, headers: dict[str, str]) -> str:
        """Add x-amz-date (unless a Date header is given) and Authorization, every given
        header signed; return the signature (the seed of a chunk chain)."""
        if not any(k.lower() == "date" for k in headers):
            headers.setdefault("x-amz-date", self.timestamp)
        path, _, query = target.partition("?")
        lower = {k.lower(): " ".join(as_signed(v).split()) for k, v in headers.items()}
        names = sorted(lower)
        creq = "\n".join([method, _enc(path, "-_.~/") or "/", canonical_query(query),
                          "".join(f"{n}:{lower[n]}\n" for n in names), ";".join(names),
                          lower["x-amz-content-sha256"]])
        sts = "\n".join(["AWS4-HMAC-SHA256", self.timestamp, self.scope,
                         hashlib.sha256(creq.encode()).hexdigest()])
        signature = hmac.new(self.key, sts.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{self.scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}")
        return signature

    def chunk_signature(self, previous: str, data: bytes) -> str:
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", self.timestamp, self.scope, previous,
                         EMPTY_SHA256, hashlib.sha256(data).hexdigest()])
        return hmac.new(self.key, sts.encode(), hashlib.sha256).hexdigest()

    def trailer_signature(self, previous: str, block: bytes) -> str:
        sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", self.timestamp, self.scope, previous,
                         hashlib.sha256(block).hexdigest()])
        return hmac.new(self.key, sts.encode(), hashlib.sha256).hexdigest()


def encode(payload: bytes, chunk_size: int, *, signer: Signer | None = None,
           seed: str = "", trailers: dict[str, str] | None = None) -> list[bytes]:
    """The aws-chunked frames of ``payload``: signed chunks when ``signer`` is given, then
    the trailer lines (signed with ``x-amz-trailer-signature`` in signed mode)."""
    frames: list[bytes] = []
    previous = seed
    sizes = [chunk_size] * (len(payload) // chunk_size)
    if len(payload) % chunk_size:
        sizes.append(len(payload) % chunk_size)
    pos = 0
    for size in [*sizes, 0]:
        data = payload[pos:pos + size]
        pos += size
        ext = ""
        if signer is not None:
            previous = signer.chunk_signature(previous, data)
            ext = ";chunk-signature=" + previous
        frames.append(f"{size:x}{ext}\r\n".encode() + (data + b"\r\n" if size else b""))
    tail = b""
    if trailers:
        tail = "".join(f"{k}:{v}\r\n" for k, v in trailers.items()).encode()
        if signer is not None:
            block = "".join(f"{k}:{v}\n" for k, v in trailers.items()).encode()
            sig = signer.trailer_signature(previous, block)
            tail += f"x-amz-trailer-signature:{sig}\r\n".encode()
    frames.append(tail + b"\r\n")
    return frames


@dataclass
class StreamingPut:
    """A ready-to-send aws-chunked PUT: headers (signed) and the encoded frames."""

    target: str
    headers: dict[str, str]
    frames: list[bytes]

    @property
    def body(self) -> bytes:
        return b"".join(self.frames)


def streaming_put(host: str, target: str, payload: bytes, mode: str, *, chunk_size: int = 65536,
                  trailer: str | None = None, trailer_value: str | None = None,
                  signer: Signer | None = None,
                  extra: dict[str, str] | None = None, content_length: bool = True,
                  decoded_length: bool = True) -> StreamingPut:
    """Build a signed aws-chunked PUT of ``payload`` in ``mode`` (one of the three above).
    ``trailer`` = ``"x-amz-checksum-crc32"`` sends the payload's CRC32 (or ``trailer_value``)
    as a trailer."""
    signer = signer or Signer()
    trailers = {trailer: trailer_value or crc32_b64(payload)} if trailer else None
    headers = {"Host": host, "x-amz-content-sha256": mode, "Content-Encoding": "aws-chunked",
               **(extra or {})}
    if decoded_length:
        headers["x-amz-decoded-content-length"] = str(len(payload))
    if trailer:
        headers["x-amz-trailer"] = trailer
    chunk_signer = signer if mode != UNSIGNED_TRAILER else None
    # The encoded length does not depend on signature values, only on their (fixed) size.
    probe = encode(payload, chunk_size, signer=chunk_signer, seed="0" * 64, trailers=trailers)
    if content_length:
        headers["Content-Length"] = str(sum(map(len, probe)))
    seed = signer.sign("PUT", target, headers)
    frames = encode(payload, chunk_size, signer=chunk_signer, seed=seed, trailers=trailers)
    return StreamingPut(target, headers, frames)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def send(endpoint: str, method: str, target: str, headers: dict[str, str],
         frames: Iterable[bytes], *, transfer_chunked: bool = False) -> Reply:
    """Send the frames as the body; with ``transfer_chunked`` each frame becomes one HTTP/1.1
    chunk (``Transfer-Encoding: chunked``, no Content-Length), as the JS SDK does."""
    conn = http.client.HTTPConnection(urlsplit(endpoint).netloc, timeout=60)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if transfer_chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for frame in frames:
            conn.send(b"%x\r\n%s\r\n" % (len(frame), frame) if transfer_chunked else frame)
        if transfer_chunked:
            conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def send_truncated(endpoint: str, method: str, target: str, headers: dict[str, str],
                   data: bytes) -> bytes:
    """Send the headers and ``data`` (less than declared), half-close, return the raw reply."""
    netloc = urlsplit(endpoint).netloc
    host, port = netloc.rsplit(":", 1)
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode("latin-1") + data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                got = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not got:
                break
            chunks.append(got)
    return b"".join(chunks)
