"""The request payload as core sees it: bounded reads of the decoded bytes, with
aws-chunked decoding, digests and chunk signature checks done on the way.

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
from bleepstore.s3.numbers import INT64_MAX, parse_saturated
from bleepstore.s3.sigv4 import AuthResult
from bleepstore.s3.sigv4_signing import ChunkSignatureChain
from bleepstore.web.bodyrate import BODY_WATCH_KEY, BodyRateWatch
from bleepstore.web.environ import CONTINUE_KEY, timed_read

READ_BLOCK = 1024 * 1024
SIGNED_STREAMING = ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")


class RawBody:
    """The undecoded request body, bounded by Content-Length when there is one.

    While it is being read, the worker's ``BodyRateWatch`` (when the environ has one) may
    cut a body that arrives slower than ``server.min_body_rate_bytes_s``: RequestTimeout.
    """

    def __init__(self, stream: BinaryIO, length: int | None,
                 environ: dict[str, Any] | None = None) -> None:
        self._stream = stream
        self._environ = environ or {}
        self._left = length
        self.length = length
        self.received = 0
        self._watch: BodyRateWatch | None = self._environ.get(BODY_WATCH_KEY)
        self._sock = self._environ.get("gunicorn.socket")
        self._watching = False

    def read(self, size: int) -> bytes:
        if self._left is not None:
            size = min(size, self._left)
            if size <= 0:
                return b""
        self._watch_begin()
        try:
            data = timed_read(self._environ, self._stream, size)
            if self._left is not None and not data:
                raise errors.IncompleteBody()
        except errors.S3Error:
            if self._cut():
                raise errors.RequestTimeout() from None
            raise
        if self._left is not None:
            self._left -= len(data)
        self.received += len(data)
        if not data or self._left == 0:
            self._watch_end()
        return data

    def _watch_begin(self) -> None:
        send_continue = self._environ.pop(CONTINUE_KEY, None)
        if send_continue is not None:
            send_continue()
        if not self._watching and self._watch is not None and self._sock is not None:
            self._watch.begin(self._sock)
            self._watching = True

    def _watch_end(self) -> None:
        if self._watching and self._watch is not None and self._sock is not None:
            self._watch.end(self._sock)
            self._watching = False

    def _cut(self) -> bool:
        return (self._watching and self._watch is not None and self._sock is not None
                and self._watch.tripped(self._sock))


class RequestPayload:
    """Implements ``core.request.Payload`` over a WSGI input stream."""

    def __init__(self, raw: RawBody, spec: IntegritySpec, *, decoder: AwsChunkedDecoder | None,
                 declared_length: int | None) -> None:
        self._raw = raw
        self._decoder = decoder
        self._digester = PayloadDigester(spec)
        self._pending = b""
        self._eof = False
        self._result: DigestResult | None = None
        self.declared_length = declared_length

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
        self._result = self._digester.finish(trailers)
        return self._result


def _int_header(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    number = parse_saturated(value.strip(), INT64_MAX)  # not "²", not 5,000 digits
    if number is None or number > INT64_MAX:
        raise errors.InvalidArgument(f"Invalid {name}", ArgumentName=name, ArgumentValue=value)
    return number


def build_payload(environ: dict[str, Any], get: Any, auth: AuthResult,
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
    return RequestPayload(raw, spec, decoder=decoder, declared_length=declared_length)
