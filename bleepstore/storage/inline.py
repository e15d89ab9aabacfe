"""Small objects kept in the metadata database instead of a file (docs/decisions.md,
"Small objects inline").

A writer holds at most ``limit`` bytes in memory; the first byte past it spills
everything to a real blob writer, which then streams the rest as usual. An inline blob's
bytes reach the database in the same transaction as the object row that references
them, so a small PUT costs one shared WAL fsync instead of a staging file, two fsyncs, a
rename and a directory fsync.

Invariants: nothing here touches the database; an inline ``StagedBlob`` carries its bytes
and the caller must commit them with the row (``PutObject.inline_data``); a ref is
``inline:`` + 32 hex, so it holds no user data.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
from collections.abc import Callable

from bleepstore.model import INLINE_REF_PREFIX, StagedBlob
from bleepstore.storage.backend import BlobWriter, ChunkIteration

INLINE_REF = re.compile(re.escape(INLINE_REF_PREFIX) + r"[0-9a-f]{32}")


def new_inline_ref() -> str:
    return INLINE_REF_PREFIX + secrets.token_hex(16)


def check_inline_ref(ref: str) -> None:
    if not INLINE_REF.fullmatch(ref):
        raise ValueError(f"malformed inline ref: {ref!r}")


class InlineWriter:
    """A ``BlobWriter`` for one object: bytes in memory up to ``limit``, else a real blob
    (``open_spill()``, opened only when needed)."""

    def __init__(self, limit: int, open_spill: Callable[[], BlobWriter]) -> None:
        self._limit = limit
        self._open_spill = open_spill
        self._buf = bytearray()
        self._md5 = hashlib.md5()
        self._spill: BlobWriter | None = None

    def write(self, data: bytes) -> None:
        if self._spill is None and len(self._buf) + len(data) > self._limit:
            self._spill = self._open_spill()
            self._spill.write(bytes(self._buf))
            self._buf = bytearray()
        if self._spill is not None:
            self._spill.write(data)
            return
        self._buf += data
        self._md5.update(data)

    def finish(self) -> StagedBlob:
        if self._spill is not None:
            return self._spill.finish()
        data = bytes(self._buf)
        return StagedBlob(data_ref=new_inline_ref(), size=len(data),
                          md5_hex=self._md5.hexdigest(), inline=data)

    def abort(self) -> None:
        if self._spill is not None:
            self._spill.abort()
        self._buf = bytearray()

    @property
    def size(self) -> int:
        return self._spill.size if self._spill is not None else len(self._buf)


class InlineReader(ChunkIteration, io.BytesIO):
    """A ``BlobReader`` over bytes already read from the database (at most the inline
    limit): ``read``, ``tell``, iteration in chunks, ``close``; no ``fileno``, so the
    server writes it rather than sendfile-ing it."""
