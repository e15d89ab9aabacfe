"""Incremental aws-chunked decoder (auth.md §6.2-§6.4).

Sans-I/O: feed the encoded body in any split with ``feed`` (which returns the decoded payload
bytes available so far) and call ``finish`` at end of input to get the trailers.

Invariants:
- payload bytes are sliced out of the fed block and returned at once, never held until the
  chunk ends; the only buffer is one partial control line (at most ``max_line`` bytes);
- in signed mode each chunk is hashed slice by slice and its signature checked as soon as its
  last data byte arrives (before the chunk's closing CRLF), so bad data never passes a chunk end;
- the decoded total never exceeds ``decoded_length`` (checked at each chunk header);
- bytes after the closing CRLF are rejected (InvalidRequest): the framing says the body ended.
"""

from __future__ import annotations

import hashlib
import re

from bleepstore.errors import (
    IncompleteBody,
    InvalidRequest,
    MalformedTrailerError,
    SignatureDoesNotMatch,
)
from bleepstore.s3.sigv4_signing import ChunkSignatureChain

MALFORMED = "Malformed aws-chunked encoding"
TRAILER_SIGNATURE = "x-amz-trailer-signature"
MAX_TRAILER_LINES = 16
_SIZE_RE = re.compile(rb"[0-9a-fA-F]{1,16}")

# Parser states.
_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


def _malformed() -> InvalidRequest:
    return InvalidRequest(MALFORMED)


class AwsChunkedDecoder:
    """Decode one aws-chunked body; signed when a ``ChunkSignatureChain`` is given."""

    def __init__(self, *, decoded_length: int | None, chain: ChunkSignatureChain | None,
                 expect_trailers: tuple[str, ...] = (), trailer_signed: bool = False,
                 max_line: int = 4096) -> None:
        self.decoded_length = decoded_length
        self.chain = chain
        self.expect_trailers = frozenset(n.lower() for n in expect_trailers)
        self.trailer_signed = trailer_signed
        self.max_line = max_line
        self.total = 0
        self._state = _SIZE
        self._line = bytearray()
        self._remaining = 0  # data bytes left in the current chunk
        self._chunk_sig: str | None = None
        self._sha: hashlib._Hash | None = None
        self._trailers: dict[str, str] = {}
        self._trailer_block = bytearray()
        self._trailer_sig: str | None = None

    def feed(self, data: bytes) -> bytes:
        """Consume encoded bytes; return the decoded payload bytes they completed."""
        out: list[memoryview] = []
        view = memoryview(data)
        pos, end = 0, len(data)
        while pos < end:
            if self._state == _DATA:
                pos = self._take_data(view, pos, out)
            elif self._state == _DONE:
                raise _malformed()
            else:
                line, pos = self._take_line(data, pos)
                if line is not None:
                    self._on_line(line)
        if len(out) == 1 and len(out[0]) == end:
            return bytes(data)
        return b"".join(out)

    def finish(self) -> dict[str, str]:
        """End of input: raise IncompleteBody unless the body was complete; return trailers."""
        if self._state != _DONE:
            raise IncompleteBody()
        if self.decoded_length is not None and self.total != self.decoded_length:
            raise IncompleteBody()
        return dict(self._trailers)

    # --- framing ---------------------------------------------------------------------------

    def _take_data(self, view: memoryview, pos: int, out: list[memoryview]) -> int:
        n = min(self._remaining, len(view) - pos)
        piece = view[pos:pos + n]
        out.append(piece)
        if self._sha is not None:
            self._sha.update(piece)
        self._remaining -= n
        if self._remaining == 0:
            self._end_chunk(final=False)
        return pos + n

    def _take_line(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        """Append to the pending line; return it (CRLF stripped) once its LF arrives."""
        nl = data.find(b"\n", pos)
        stop = len(data) if nl < 0 else nl + 1
        if len(self._line) + (stop - pos) > self.max_line + 2:
            raise _malformed()
        self._line += data[pos:stop]
        if nl < 0:
            return None, stop
        line = bytes(self._line)
        self._line.clear()
        if not line.endswith(b"\r\n"):
            raise _malformed()
        return line[:-2], stop

    def _on_line(self, line: bytes) -> None:
        if self._state == _SIZE:
            self._on_size_line(line)
        elif self._state == _DATA_END:
            if line:
                raise _malformed()
            self._state = _SIZE
        else:
            self._on_trailer_line(line)

    def _on_size_line(self, line: bytes) -> None:
        size_text, *extensions = line.split(b";")
        if not _SIZE_RE.fullmatch(size_text):
            raise _malformed()
        size = int(size_text, 16)
        self._chunk_sig = None
        for ext in extensions:
            name, _, value = ext.partition(b"=")
            if name.strip() == b"chunk-signature":
                self._chunk_sig = value.strip().decode("latin-1")
        if self.chain is not None and self._chunk_sig is None:
            raise SignatureDoesNotMatch("A chunk in a signed aws-chunked body has no signature.")
        if self.decoded_length is not None and self.total + size > self.decoded_length:
            raise IncompleteBody()
        self.total += size
        self._sha = hashlib.sha256() if self.chain is not None else None
        self._remaining = size
        if size == 0:
            self._end_chunk(final=True)
        else:
            self._state = _DATA

    def _end_chunk(self, *, final: bool) -> None:
        """The current chunk's data is complete: verify it and move on."""
        if self.chain is not None:
            assert self._sha is not None and self._chunk_sig is not None
            self.chain.verify_chunk(self._sha.hexdigest(), self._chunk_sig)
        if final and self.decoded_length is not None and self.total != self.decoded_length:
            raise IncompleteBody()
        self._state = _TRAILER if final else _DATA_END

    # --- trailers --------------------------------------------------------------------------

    def _on_trailer_line(self, line: bytes) -> None:
        if not line:
            self._end_trailers()
            return
        if self._trailer_sig is not None or len(self._trailers) >= MAX_TRAILER_LINES:
            raise MalformedTrailerError()
        name_b, colon, value_b = line.partition(b":")
        name = name_b.strip().lower().decode("latin-1")
        if not colon or not name or name in self._trailers:
            raise MalformedTrailerError()
        value = value_b.strip().decode("latin-1")
        if name == TRAILER_SIGNATURE and self.trailer_signed:
            self._trailer_sig = value
            return
        self._trailers[name] = value
        self._trailer_block += f"{name}:{value}\n".encode("latin-1")

    def _end_trailers(self) -> None:
        if set(self._trailers) != self.expect_trailers:
            raise MalformedTrailerError()
        if self.trailer_signed:
            if self._trailer_sig is None or self.chain is None:
                raise SignatureDoesNotMatch("The trailer of the aws-chunked body is not signed.")
            self.chain.verify_trailer(bytes(self._trailer_block), self._trailer_sig)
        self._state = _DONE
