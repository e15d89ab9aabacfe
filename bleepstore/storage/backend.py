"""The storage seam (L2): what core/ may ask of a blob store.

Invariants:
- Blobs are immutable. A writer stages into a private file and makes the blob visible
  only by an atomic rename (or hard link) in ``finish()``; nothing reopens a blob for writing.
- Every blob gets a fresh data ref that contains no user data (no bucket, no key).
- A data ref that does not match the backend's ref grammar raises ``ValueError`` before
  any I/O; a well-formed ref whose blob is absent raises ``BlobMissing``.
- ``byte_range`` tuples are ``(first, last)`` with ``last`` INCLUSIVE, exactly like
  ``x-amz-copy-source-range: bytes=first-last``; ``open_read`` takes ``(offset, length)``.
- No method holds a whole payload in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from bleepstore.model import Part, StagedBlob


class BlobMissing(Exception):
    """A well-formed data ref names a blob that does not exist (corruption if referenced)."""


@dataclass(frozen=True)
class RecoveryReport:
    """Counts from startup recovery (``StorageBackend.recover``)."""

    staging_removed: int = 0
    uploads_removed: int = 0
    uploads_kept: int = 0


class BlobWriter(Protocol):
    """One new blob being written; ``finish()`` or ``abort()`` ends it."""

    def write(self, data: bytes) -> None:
        """Append ``data`` to the staging file, updating size and MD5."""

    def finish(self) -> StagedBlob:
        """fsync, close, rename into place, fsync the directory; the blob is then durable."""

    def abort(self) -> None:
        """Idempotent: close and unlink the staging file. No effect after ``finish()``
        (the caller then uses ``StorageBackend.delete(ref)``)."""

    @property
    def size(self) -> int:
        """Bytes written so far."""


READ_CHUNK = 1 << 20  # the largest chunk a reader's iteration yields


class _Reads(Protocol):
    def read(self, size: int, /) -> bytes: ...


class ChunkIteration:
    """Iteration as ``BlobReader`` wants it: ``read(READ_CHUNK)`` until it returns b""."""

    def __iter__(self: _Reads) -> Iterator[bytes]:
        return self  # type: ignore[return-value]

    def __next__(self: _Reads) -> bytes:
        chunk = self.read(READ_CHUNK)
        if not chunk:
            raise StopIteration
        return chunk


class BlobReader(Protocol):
    """A bounded view of a blob: an iterator of chunks of at most 1 MiB and a ``read``;
    neither goes past ``offset + length``. The local backend's reader is also a real file
    (``fileno()`` seeked to the start) so gunicorn can ``sendfile`` it; a gateway's has no
    ``fileno`` and is streamed. ``close()`` releases the descriptor or connection."""

    def read(self, size: int | None = -1, /) -> bytes: ...

    def tell(self) -> int: ...

    def close(self) -> None: ...

    def __iter__(self) -> Iterator[bytes]: ...

    def __next__(self) -> bytes: ...


class StorageBackend(Protocol):
    """Immutable-blob storage addressed by opaque data refs."""

    def open_writer(
        self, kind: str, upload_id: str | None = None, part_number: int | None = None
    ) -> BlobWriter:
        """Start a new blob; ``kind`` is ``"object"`` or ``"part"`` (then ``upload_id``
        (32 hex) and ``part_number`` are required). ValueError on bad arguments."""

    def open_read(self, data_ref: str, offset: int = 0, length: int | None = None) -> BlobReader:
        """Open ``length`` bytes (default: to the end) of a blob starting at ``offset``."""

    def size(self, data_ref: str) -> int:
        """Size in bytes; BlobMissing if absent."""

    def holds(self, data_ref: str) -> bool:
        """This node stores the blob itself (owner placement: only its own refs)."""

    def delete(self, data_ref: str) -> None:
        """Idempotent delete of a blob, or of a whole upload for ``upload:<id>`` refs."""

    def copy(
        self,
        src_ref: str,
        byte_range: tuple[int, int] | None = None,
        *,
        need_md5: bool,
    ) -> StagedBlob:
        """New object blob with the source's bytes (or the inclusive range). ``md5_hex``
        is ``""`` when the copy was a metadata-only shortcut and ``need_md5`` is False."""

    def copy_to_part(
        self,
        src_ref: str,
        upload_id: str,
        part_number: int,
        byte_range: tuple[int, int] | None,
        *,
        need_md5: bool = True,
    ) -> StagedBlob:
        """New part blob with the source's bytes (or the inclusive range). ``md5_hex`` may
        be ``""`` when ``need_md5`` is False (the caller knows it: a whole-object copy)."""

    def import_file(self, path: str, write_id: str) -> str:
        """Make the blob of ``write_id`` (32 hex; a write task's deterministic id) a copy of
        the durable file at ``path``, which stays (the caller removes it once the task is
        settled), and return its ref. Idempotent (a retried task). BlobMissing if neither
        the file nor the blob exists."""

    def init_upload(self, upload_id: str) -> str | None:
        """Prepare a new multipart upload before its row is committed; returns the blob ref
        reserved for its result (kept on the upload row, so the orphan scan spares it), or
        None when the backend reserves nothing (parts are blobs of their own)."""

    def assemble(self, parts: Sequence[Part]) -> StagedBlob:
        """New object blob = concatenation of the parts in order; ``md5_hex`` is ``""``.
        When the result is the upload's reserved ref, a concurrent Complete of the same
        upload may return that same ref: the caller must not delete it after a failed
        commit (the orphan scan does, once nothing references it)."""

    def check(self) -> None:
        """Raise (OSError on disk, an S3Error from a gateway) if the backend cannot
        currently store blobs."""

    def recover(self, live_upload_ids: Callable[[str], bool]) -> RecoveryReport:
        """Node-local startup cleanup: staging files and dead upload leftovers."""

    def iter_blob_refs(self, older_than_s: float) -> Iterator[str]:
        """Every stored blob ref older than ``older_than_s`` seconds (orphan scan)."""
