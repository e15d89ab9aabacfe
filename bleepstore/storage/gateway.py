"""A ``StorageBackend`` over a cloud object store (storage.md §4): the parts every gateway
shares, written once, over a small per-cloud adapter (``CloudStore``, ``cloud.py``).

Invariants:
- Blobs stay immutable and named by id, never by the user's key: the cloud object of a ref
  is ``{prefix}{ref}``, with refs in the local backend's grammar (``blobs/ab/cd/<w>``,
  ``multipart/<upload id>/<nnnnn>-<w>``; ``upload:<id>`` names a whole upload), so
  overwrite-before-commit, GC and the orphan scan work exactly as on disk.
- A body is streamed to a spool file (``storage.spool_dir``) while its MD5 is computed, and
  uploaded only by ``finish()`` (after core verified every digest): memory stays flat and
  SDK retries can seek. The spool file is removed whatever happens.
- Reads stream the cloud's bytes in chunks of at most 1 MiB; nothing is read whole.
- The adapter translates every SDK error into ``BlobMissing``, an ``S3Error`` (503 SlowDown /
  ServiceUnavailable) or ``GatewayError`` (500 with one clear log line); no SDK exception
  reaches core. Adapters import their SDK lazily and build clients lazily (after fork).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from bleepstore.model import Part, StagedBlob
from bleepstore.storage.backend import BlobMissing, ChunkIteration, RecoveryReport
from bleepstore.storage.cloud import CloudStore, ComposingStore, NativePart, NativeStore
from bleepstore.storage.localio import (
    HEX32,
    OBJECT_REF,
    PART_REF,
    STAGE_FLAGS,
    UPLOAD_REF,
    WRITE_BEHIND_AFTER,
    ByteRange,
    copy_span,
    ensure_dir,
    new_ref,
    space_refusals,
    write_ref,
)
from bleepstore.storage.writebehind import WriteBehind, write_all

log = logging.getLogger("bleepstore.storage")

DELETE_THREADS = 8
_UPLOAD_DIR = re.compile(r"multipart/([0-9a-f]{32})/")


Sink = Callable[[str, int, str], "str | None"]  # (spool path, size, md5 hex) -> handle


class SpoolWriter:
    """One new blob: spooled to a local file with its MD5, handed to ``sink`` by
    ``finish()`` (an upload of the file, or of one part of a native upload)."""

    def __init__(self, sink: Sink, ref: str, spool: str) -> None:
        self._sink = sink
        self._ref = ref
        self._spool = spool
        self._fd = os.open(spool, STAGE_FLAGS, 0o600)
        self._md5 = hashlib.md5()
        self._size = 0
        self._behind: WriteBehind | None = None
        self._done = False

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._done:
            raise ValueError("write to a finished blob writer")
        with space_refusals():
            if self._behind is None and self._size >= WRITE_BEHIND_AFTER:
                self._behind = WriteBehind(self._fd, self._md5)
            chunk = bytes(data)
            if self._behind is not None:
                self._behind.put(chunk)
            else:
                self._md5.update(chunk)
                write_all(self._fd, chunk)
            self._size += len(chunk)

    def finish(self) -> StagedBlob:
        if self._done:
            raise ValueError("blob writer already finished or aborted")
        try:
            with space_refusals():
                behind, self._behind = self._behind, None
                if behind is not None:
                    behind.close()
            md5 = self._md5.hexdigest()
            handle = self._sink(self._spool, self._size, md5)
        finally:
            self._close()
        return StagedBlob(data_ref=self._ref, size=self._size, md5_hex=md5, backend_ref=handle)

    def abort(self) -> None:
        if not self._done:
            self._close()

    def _close(self) -> None:
        self._done = True
        behind, self._behind = self._behind, None
        if behind is not None:
            try:
                behind.close()
            except Exception:  # noqa: S110  the spool is being thrown away
                pass
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        try:
            os.unlink(self._spool)
        except FileNotFoundError:
            pass


class CloudReader(ChunkIteration):
    """A bounded stream of a cloud object: ``read(size)`` and iteration, no ``fileno``
    (gunicorn then streams it instead of ``sendfile``)."""

    def __init__(self, chunks: Iterator[bytes], length: int) -> None:
        self._chunks = chunks
        self._left = length
        self._pending = b""
        self._pos = 0

    def read(self, size: int | None = -1, /) -> bytes:
        want = self._left + len(self._pending) if size is None or size < 0 else size
        out = bytearray()
        while len(out) < want:
            if not self._pending:
                self._pending = next(self._chunks, b"")[: max(self._left, 0)]
                self._left -= len(self._pending)
                if not self._pending:
                    break
            take = self._pending[: want - len(out)]
            self._pending = self._pending[len(take):]
            out += take
        self._pos += len(out)
        return bytes(out)

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


class GatewayBackend:
    """What every gateway shares (see the module invariants); a ``StorageBackend`` once a
    subclass says how multipart works (``ComposeGateway``, ``NativeGateway``)."""

    def __init__(self, store: CloudStore, prefix: str, spool_dir: str) -> None:
        self.store = store
        self.prefix = prefix
        self.spool_dir = spool_dir

    # --- names ----------------------------------------------------------------------------

    def name(self, ref: str) -> str:
        if not isinstance(ref, str) or not (OBJECT_REF.fullmatch(ref) or PART_REF.fullmatch(ref)):
            raise ValueError(f"invalid data ref {str(ref)[:80]!r}")
        return self.prefix + ref

    @staticmethod
    def new_ref(kind: str, upload_id: str | None = None, part_number: int | None = None) -> str:
        return new_ref(kind, upload_id, part_number)

    def _writer(self, ref: str, sink: Sink | None = None) -> SpoolWriter:
        if sink is None:
            name = self.name(ref)

            def sink(path: str, size: int, md5_hex: str) -> None:
                self.store.upload_file(name, path, size)
        spool = os.path.join(self.spool_dir, "gw-" + uuid.uuid4().hex)
        with space_refusals():
            try:
                return SpoolWriter(sink, ref, spool)
            except FileNotFoundError:
                ensure_dir(self.spool_dir)
                return SpoolWriter(sink, ref, spool)

    # --- StorageBackend -------------------------------------------------------------------

    def open_writer(self, kind: str, upload_id: str | None = None,
                    part_number: int | None = None) -> SpoolWriter:
        return self._writer(self.new_ref(kind, upload_id, part_number))

    def open_read(self, data_ref: str, offset: int = 0,
                  length: int | None = None) -> CloudReader:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must be >= 0")
        name = self.name(data_ref)
        if length is None:
            length = max(self.store.size(name) - offset, 0)
        chunks = self.store.read(name, offset, length) if length else iter(())
        return CloudReader(chunks, length)

    def holds(self, data_ref: str) -> bool:
        return True

    def size(self, data_ref: str) -> int:
        return self.store.size(self.name(data_ref))

    def delete(self, data_ref: str) -> None:
        match = UPLOAD_REF.fullmatch(data_ref) if isinstance(data_ref, str) else None
        if match is not None:
            folder = f"{self.prefix}multipart/{match.group(1)}/"
            self._delete_all([name for name, _ in self.store.list(folder)])
            return
        self.store.delete(self.name(data_ref))

    def copy(self, src_ref: str, byte_range: ByteRange | None = None, *,
             need_md5: bool) -> StagedBlob:
        ref = self.new_ref("object")
        if byte_range is None and not need_md5:
            return self._cloud_copy(src_ref, ref)
        return self._stream_copy(src_ref, self._writer(ref), byte_range)

    def _cloud_copy(self, src_ref: str, ref: str) -> StagedBlob:
        """Server-side, no MD5: the caller reuses the source's ETag (same bytes)."""
        size = self.size(src_ref)
        self.store.copy(self.name(src_ref), self.name(ref))
        return StagedBlob(data_ref=ref, size=size, md5_hex="")

    def copy_to_part(self, src_ref: str, upload_id: str, part_number: int,
                     byte_range: ByteRange | None, *, need_md5: bool = True) -> StagedBlob:
        ref = self.new_ref("part", upload_id, part_number)
        if byte_range is None and not need_md5:
            return self._cloud_copy(src_ref, ref)
        return self._stream_copy(src_ref, self._writer(ref), byte_range)

    def _stream_copy(self, src_ref: str, writer: SpoolWriter,
                     byte_range: ByteRange | None) -> StagedBlob:
        """Through BleepStore: the MD5 of the result is needed (a new ETag)."""
        size = self.size(src_ref)
        first, count = copy_span(byte_range, size)
        try:
            for chunk in (self.store.read(self.name(src_ref), first, count) if count else ()):
                writer.write(chunk)
            if writer.size != count:
                raise BlobMissing(f"{src_ref}: {writer.size} of {count} bytes")
            return writer.finish()
        except BaseException:
            writer.abort()
            raise

    def import_file(self, path: str, write_id: str) -> str:
        ref = write_ref(write_id)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            self.size(ref)  # BlobMissing unless an earlier attempt uploaded it
            return ref
        self.store.upload_file(self.name(ref), path, size)
        return ref

    def check(self) -> None:
        self.store.check()

    def recover(self, live_upload_ids: Callable[[str], bool]) -> RecoveryReport:
        """Delete the parts and temporaries of uploads that no longer exist."""
        removed = kept = 0
        seen: dict[str, bool] = {}
        dead: list[str] = []
        for name, _ in list(self.store.list(self.prefix + "multipart/")):
            match = _UPLOAD_DIR.match(name[len(self.prefix):])
            if match is None:
                continue
            upload_id = match.group(1)
            if upload_id not in seen:
                seen[upload_id] = live_upload_ids(upload_id)
                removed, kept = (removed, kept + 1) if seen[upload_id] else (removed + 1, kept)
            if not seen[upload_id]:
                dead.append(name)
        self._delete_all(dead)
        return RecoveryReport(uploads_removed=removed, uploads_kept=kept)

    def _delete_all(self, names: Sequence[str]) -> None:
        """Delete many objects (an upload's 10,000 parts) a few requests at a time."""
        if len(names) <= 1:
            for name in names:
                self.store.delete(name)
            return
        with ThreadPoolExecutor(max_workers=DELETE_THREADS) as pool:
            for _ in pool.map(self.store.delete, names):
                pass

    def iter_blob_refs(self, older_than_s: float) -> Iterator[str]:
        cutoff = time.time() - older_than_s
        for name, modified in self.store.list(self.prefix):
            ref = name[len(self.prefix):]
            if modified <= cutoff and (OBJECT_REF.fullmatch(ref) or PART_REF.fullmatch(ref)):
                yield ref


class ComposeGateway(GatewayBackend):
    """A gateway whose parts are objects of their own (``multipart/<id>/<n>-<attempt>``),
    composed into a fresh blob at Complete (GCS, storage.md §4.3)."""

    store: ComposingStore

    def init_upload(self, upload_id: str) -> None:
        return None  # parts are objects of their own, composed into a fresh one

    def assemble(self, parts: Sequence[Part]) -> StagedBlob:
        ref = self.new_ref("object")
        self.store.compose(self.name(ref), [self.name(p.data_ref) for p in parts])
        return StagedBlob(data_ref=ref, size=sum(p.size for p in parts), md5_hex="")


class NativeGateway(GatewayBackend):
    """A gateway whose multipart uploads are the cloud's own (storage.md §4.2, §4.4): each
    upload reserves the ref of its result at creation (``blobs/<id[:2]>/<id[2:4]>/<id>``,
    kept on the upload row), parts go straight into the native upload (no object per
    part, no copy at Complete), and Complete has the cloud build the reserved ref.

    Part refs keep the ``multipart/<id>/<n>-<attempt>`` grammar but name no object: their
    ``delete`` does nothing; ``upload:<id>`` aborts the native upload."""

    store: NativeStore

    @staticmethod
    def reserved_ref(upload_id: str) -> str:
        if not isinstance(upload_id, str) or not HEX32.fullmatch(upload_id):
            raise ValueError(f"invalid upload id {str(upload_id)[:80]!r}")
        return f"blobs/{upload_id[:2]}/{upload_id[2:4]}/{upload_id}"

    def init_upload(self, upload_id: str) -> str:
        ref = self.reserved_ref(upload_id)
        self.store.start_upload(self.name(ref))
        return ref

    def open_writer(self, kind: str, upload_id: str | None = None,
                    part_number: int | None = None) -> SpoolWriter:
        if kind != "part":
            return super().open_writer(kind, upload_id, part_number)
        return self._part_writer(self.new_ref(kind, upload_id, part_number))

    def _part_writer(self, ref: str) -> SpoolWriter:
        upload_id, number, attempt = _part_of(ref)
        dest = self.name(self.reserved_ref(upload_id))

        def sink(path: str, size: int, md5_hex: str) -> str | None:
            return self.store.upload_part(dest, number, attempt, path, size, md5_hex)
        return self._writer(ref, sink)

    def copy_to_part(self, src_ref: str, upload_id: str, part_number: int,
                     byte_range: ByteRange | None, *, need_md5: bool = True) -> StagedBlob:
        ref = self.new_ref("part", upload_id, part_number)
        if byte_range is not None or need_md5:
            return self._stream_copy(src_ref, self._part_writer(ref), byte_range)
        size = self.size(src_ref)
        handle = self.store.copy_part(self.name(self.reserved_ref(upload_id)), part_number,
                                      _part_of(ref)[2], self.name(src_ref), size)
        return StagedBlob(data_ref=ref, size=size, md5_hex="", backend_ref=handle)

    def assemble(self, parts: Sequence[Part]) -> StagedBlob:
        if not parts:
            raise ValueError("nothing to assemble")
        ref = self.reserved_ref(parts[0].upload_id)
        native = [NativePart(p.part_number, _part_of(p.data_ref)[2], p.size, p.backend_ref)
                  for p in parts]
        self.store.complete_upload(self.name(ref), native)
        return StagedBlob(data_ref=ref, size=sum(p.size for p in parts), md5_hex="")

    def delete(self, data_ref: str) -> None:
        if isinstance(data_ref, str) and PART_REF.fullmatch(data_ref):
            return  # no object: the bytes are in the native upload
        match = UPLOAD_REF.fullmatch(data_ref) if isinstance(data_ref, str) else None
        if match is not None:
            self.store.abort_upload(self.name(self.reserved_ref(match.group(1))))
            return
        super().delete(data_ref)

    def recover(self, live_upload_ids: Callable[[str], bool]) -> RecoveryReport:
        """Abort the native uploads of uploads that no longer exist (and any other native
        upload under the prefix: none of this server's is in flight during recovery)."""
        report = super().recover(live_upload_ids)
        start = len(self.prefix)

        def keep(name: str) -> bool:
            upload_id = name[start:].rsplit("/", 1)[-1]
            return (HEX32.fullmatch(upload_id) is not None
                    and name[start:] == self.reserved_ref(upload_id)
                    and live_upload_ids(upload_id))
        try:
            aborted = self.store.sweep_uploads(self.prefix + "blobs/", keep)
        except Exception as exc:  # an upstream without the API, or no permission for it:
            # never a reason not to start
            log.warning("native uploads left by dead uploads not checked: %s", exc)
            return report
        if aborted:
            log.info("aborted %d native multipart upload(s) of dead uploads", aborted)
        return replace(report, uploads_removed=report.uploads_removed + aborted)


def _part_of(ref: str) -> tuple[str, int, str]:
    """(upload id, part number, attempt) of a part ref."""
    if not isinstance(ref, str) or not PART_REF.fullmatch(ref):
        raise ValueError(f"invalid part ref {str(ref)[:80]!r}")
    _, upload_id, tail = ref.split("/")
    number, attempt = tail.split("-")
    return upload_id, int(number), attempt
