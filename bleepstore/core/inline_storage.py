"""The blob backend as core sees it when small objects are kept inline (storage/inline.py):
every ``StorageBackend`` call on an ``inline:`` ref is answered from the metadata
database; every other call goes to the real backend unchanged.

Invariants: ``open_writer("object")`` is the only writer that may stage inline, and every
caller of it commits ``StagedBlob.inline`` with its row (``PutObject.inline_data``; the
apply step refuses an inline ref without its bytes). Copies of an inline source become
real blobs, so two rows never share an inline ref. An inline blob is dropped by the very
transaction that drops its last row (metadata/apply.py ``_gc``), so ``delete`` of one is
a no-op and the orphan scan never sees one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from bleepstore.metadata.sqlite import SqliteStore
from bleepstore.model import Part, StagedBlob, is_inline_ref
from bleepstore.storage.backend import BlobMissing, BlobReader, BlobWriter, RecoveryReport
from bleepstore.storage.backend import StorageBackend as Backend
from bleepstore.storage.inline import InlineReader, InlineWriter, check_inline_ref


class InlineStorage:
    """``StorageBackend`` = inline blobs in ``store`` + the real ``backend``."""

    def __init__(self, backend: Backend, store: SqliteStore, limit: int) -> None:
        self.backend = backend
        self.store = store
        self.limit = limit

    def __getattr__(self, name: str) -> Any:  # backend-specific extras (e.g. ``root``)
        return getattr(self.backend, name)

    def open_writer(self, kind: str, upload_id: str | None = None,
                    part_number: int | None = None) -> BlobWriter:
        if kind != "object" or self.limit <= 0:
            return self.backend.open_writer(kind, upload_id, part_number)
        return InlineWriter(self.limit, lambda: self.backend.open_writer("object"))

    def _bytes(self, ref: str, offset: int = 0, length: int | None = None) -> bytes:
        check_inline_ref(ref)
        data = self.store.inline_blob(ref, offset, length)
        if data is None:
            raise BlobMissing(ref)
        return data

    def open_read(self, data_ref: str, offset: int = 0,
                  length: int | None = None) -> BlobReader:
        if not is_inline_ref(data_ref):
            return self.backend.open_read(data_ref, offset, length)
        return InlineReader(self._bytes(data_ref, offset, length))

    def size(self, data_ref: str) -> int:
        if not is_inline_ref(data_ref):
            return self.backend.size(data_ref)
        check_inline_ref(data_ref)
        size = self.store.inline_blob_size(data_ref)
        if size is None:
            raise BlobMissing(data_ref)
        return size

    def holds(self, data_ref: str) -> bool:
        return is_inline_ref(data_ref) or self.backend.holds(data_ref)

    def delete(self, data_ref: str) -> None:
        if not is_inline_ref(data_ref):
            self.backend.delete(data_ref)

    def _materialized(self, writer: BlobWriter, data: bytes) -> StagedBlob:
        try:
            writer.write(data)
            return writer.finish()
        except BaseException:
            writer.abort()
            raise

    def copy(self, src_ref: str, byte_range: tuple[int, int] | None = None, *,
             need_md5: bool) -> StagedBlob:
        if not is_inline_ref(src_ref):
            return self.backend.copy(src_ref, byte_range, need_md5=need_md5)
        first, length = _span(byte_range)
        return self._materialized(self.backend.open_writer("object"),
                                  self._bytes(src_ref, first, length))

    def copy_to_part(self, src_ref: str, upload_id: str, part_number: int,
                     byte_range: tuple[int, int] | None, *,
                     need_md5: bool = True) -> StagedBlob:
        if not is_inline_ref(src_ref):
            return self.backend.copy_to_part(src_ref, upload_id, part_number, byte_range,
                                             need_md5=need_md5)
        first, length = _span(byte_range)
        return self._materialized(self.backend.open_writer("part", upload_id, part_number),
                                  self._bytes(src_ref, first, length))

    def import_file(self, path: str, write_id: str) -> str:
        return self.backend.import_file(path, write_id)

    def init_upload(self, upload_id: str) -> str | None:
        return self.backend.init_upload(upload_id)

    def assemble(self, parts: Sequence[Part]) -> StagedBlob:
        return self.backend.assemble(parts)

    def check(self) -> None:
        self.backend.check()

    def recover(self, live_upload_ids: Callable[[str], bool]) -> RecoveryReport:
        return self.backend.recover(live_upload_ids)

    def iter_blob_refs(self, older_than_s: float) -> Iterator[str]:
        return self.backend.iter_blob_refs(older_than_s)


def _span(byte_range: tuple[int, int] | None) -> tuple[int, int | None]:
    """An inclusive ``(first, last)`` range as ``(offset, length)``; the whole blob: None."""
    if byte_range is None:
        return 0, None
    return byte_range[0], byte_range[1] - byte_range[0] + 1
