"""The request payload as core sees it: bounded reads of the decoded bytes, with
aws-chunked decoding, digests and (deferred) signature checks done on the way.

Invariants: nothing is read whole; the WSGI input is never read past Content-Length;
a body shorter than declared is IncompleteBody; ``finish()`` verifies every integrity
claim (payload hash, Content-MD5, flexible checksum, chunk and trailer signatures)
before anything may be committed.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from bleepstore import errors
from bleepstore.s3.checksums import (
    DigestResult,
    IntegritySpec,
    PayloadDigester,
    integrity_from_headers,
)
from bleepstore.s3.chunked import AwsChunkedDecoder
from bleepstore.s3.sigv4 import AuthResult, ChunkSignatureChain, SigningRequest, verify_deferred
from bleepstore.web.environ import timed_read

READ_BLOCK = 1024 * 1024
SIGNED_STREAMING = ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")


class RawBody:
    """The undecoded request body, bounded by Content-Length when there is one."""

    def __init__(self, stream: BinaryIO, length: int | None,
                 environ: dict[str, Any] | None = None) -> None:
        self._stream = stream
        self._environ = environ or {}
        self._left = length
        self.length = length
        self.received = 0

    def read(self, size: int) -> bytes:
        if self._left is not None:
            size = min(size, self._left)
            if size <= 0:
                return b""
        data = timed_read(self._environ, self._stream, size)
        if self._left is not None:
            if not data:
                raise errors.IncompleteBody()
            self._left -= len(data)
        self.received += len(data)
        return data


class RequestPayload:
    """Implements ``core.request.Payload`` over a WSGI input stream."""

    def __init__(self, raw: RawBody, spec: IntegritySpec, *, decoder: AwsChunkedDecoder | None,
                 declared_length: int | None, deferred: tuple[AuthResult, SigningRequest] | None
                 ) -> None:
        self._raw = raw
        self._decoder = decoder
        self._deferred = deferred
        self._digester = PayloadDigester(spec, need_sha256=deferred is not None)
        self._pending = b""
        self._eof = False
        self._result: DigestResult | None = None
        self.declared_length = declared_length

    @property
    def deferred(self) -> bool:
        """True while header auth still waits for the body hash (no x-amz-content-sha256)."""
        return self._deferred is not None

    def _fill(self, size: int) -> None:
        while not self._pending and not self._eof:
            data = self._raw.read(max(size, 64 * 1024) if self._decoder else size)
            if not data:
                self._eof = True
                return
            self._pending = self._decoder.feed(data) if self._decoder else data

    def read(self, size: int) -> bytes:
        self._fill(size)
        out, self._pending = self._pending[:size], self._pending[size:]
        if out:
            self._digester.update(out)
        return out

    def finish(self) -> DigestResult:
        if self._result is not None:
            return self._result
        while self.read(READ_BLOCK):
            pass
        trailers = self._decoder.finish() if self._decoder else None
        if self.declared_length is not None and self._digester.size != self.declared_length:
            raise errors.IncompleteBody()
        if self._deferred is not None:
            auth, sreq = self._deferred
            verify_deferred(auth, sreq, self._digester.sha256_hex())
        self._result = self._digester.finish(trailers)
        return self._result


def _int_header(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if not (value.isascii() and value.strip().isdigit()):  # "²".isdigit() is True
        raise errors.InvalidArgument(f"Invalid {name}", ArgumentName=name, ArgumentValue=value)
    return int(value)


def build_payload(environ: dict[str, Any], get: Any, auth: AuthResult, sreq: SigningRequest,
                  *, needs_body: bool) -> RequestPayload:
    """Wire raw body -> (aws-chunked decoder) -> digests for one request."""
    length = _int_header(environ.get("CONTENT_LENGTH"), "Content-Length")
    chunked_te = "chunked" in (get("transfer-encoding") or "").lower()
    declared = auth.content_sha256
    streaming = declared is not None and declared.startswith("STREAMING-")
    if streaming:
        decoded = _int_header(get("x-amz-decoded-content-length"), "x-amz-decoded-content-length")
        if decoded is None:
            raise errors.MissingContentLength()
    elif needs_body and length is None and not chunked_te:
        raise errors.MissingContentLength()
    raw = RawBody(environ["wsgi.input"], length if not chunked_te else None, environ)
    if length is None and not chunked_te:
        raw = RawBody(environ["wsgi.input"], 0, environ)
    spec = integrity_from_headers(get)
    decoder = None
    if streaming:
        assert declared is not None
        chain = (ChunkSignatureChain(auth.signing_key, auth.timestamp, auth.scope, auth.signature)
                 if declared in SIGNED_STREAMING else None)
        decoder = AwsChunkedDecoder(decoded_length=decoded, chain=chain,
                                    expect_trailers=spec.trailer_names,
                                    trailer_signed=(declared.endswith("-TRAILER")
                                                    and chain is not None))
        declared_length = decoded
    else:
        declared_length = None if chunked_te else (length or 0)
    deferred = (auth, sreq) if auth.mode == "header" and declared is None else None
    return RequestPayload(raw, spec, decoder=decoder, declared_length=declared_length,
                          deferred=deferred)
