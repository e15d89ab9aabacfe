"""Local-filesystem blob store (storage.md §3).

Invariants:
- Layout under the root: ``.tmp/<uuid4 hex>`` staging files, ``blobs/ab/cd/<w>`` object
  blobs, ``multipart/<upload_id>/<nnnnn>-<w>`` part blobs; ``w`` = ``secrets.token_hex(16)``.
  Refs are those relative paths, so they never contain user data. An object blob is a file,
  or a directory of hard links to other blobs' files (``storage.composite``): what a
  completed multipart upload, and a copy of one, are made of.
- Every ref is matched (``fullmatch``) against the ref grammar before any I/O, then joined to
  the root; the realpath of the result must lie inside the root's realpath (ValueError
  otherwise). Files are opened with O_NOFOLLOW, so a symlinked blob is refused (ELOOP).
- Staging files are created O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600; directories mode 0700.
- A blob becomes visible only by rename (or hard link) after its bytes are fsynced; every
  directory created on the way and the destination directory are fsynced too.
- Nothing ever opens an existing blob for writing. The constructor does no I/O (pre-fork);
  directories are also created lazily on first write.
- ``recover()`` deletes every staging file: call it only at startup, before any writer runs.
- Out of space (ENOSPC/EDQUOT) while staging, copying or assembling is 503
  InsufficientStorage, raised after the staging file is gone.
- Where hard links are refused (another filesystem, a quota on links) copies and assembly
  write the bytes instead: same results, more I/O.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bleepstore.model import Part, StagedBlob
from bleepstore.storage import composite
from bleepstore.storage.backend import BlobMissing, RecoveryReport
from bleepstore.storage.composite import CompositeReader
from bleepstore.storage.faults import fault_point
from bleepstore.storage.localio import (
    HEX2,
    HEX32,
    NO_LINK,
    OBJECT_REF,
    PART_REF,
    STAGE_FLAGS,
    UPLOAD_REF,
    ByteRange,
    LocalBlobReader,
    LocalBlobWriter,
    copy_span,
    ensure_dir,
    fsync_dir,
    new_ref,
    old_files,
    open_ro,
    remove_any,
    space_refusals,
    subdirs,
    write_ref,
)


class LocalBackend:
    """StorageBackend on a local directory tree (see the module invariants)."""

    def __init__(self, root_dir: str | Path) -> None:
        self._root = Path(root_dir)
        self._real_root: str | None = None  # resolved lazily: no I/O in the constructor

    @property
    def root(self) -> Path:
        return self._root

    def _join(self, *parts: str) -> str:
        return os.path.join(self._root, *parts)

    def _contained(self, path: str) -> str:
        """Return ``path`` unchanged if its realpath is inside the root, else ValueError."""
        if self._real_root is None:
            self._real_root = os.path.realpath(self._root)
        real = os.path.realpath(path)
        if real != self._real_root and not real.startswith(self._real_root + os.sep):
            raise ValueError("data ref resolves outside the storage root")
        return path

    def _path(self, data_ref: str) -> str:
        if not isinstance(data_ref, str) or not (
            OBJECT_REF.fullmatch(data_ref) or PART_REF.fullmatch(data_ref)
        ):
            raise ValueError(f"invalid data ref {str(data_ref)[:80]!r}")
        return self._contained(self._join(data_ref))

    @staticmethod
    def _new_ref(kind: str, upload_id: str | None, part_number: int | None) -> str:
        return new_ref(kind, upload_id, part_number)

    def _writer(self, ref: str, md5: bool) -> LocalBlobWriter:
        self._path(ref)  # fail early if the destination tree is unsafe
        tmp = self._join(".tmp")
        staging = self._contained(os.path.join(tmp, uuid.uuid4().hex))
        try:
            fd = os.open(staging, STAGE_FLAGS, 0o600)
        except FileNotFoundError:  # recover() has not run: create the tree lazily
            ensure_dir(tmp)
            fd = os.open(staging, STAGE_FLAGS, 0o600)
        return LocalBlobWriter(ref, staging, fd, self._path, md5)

    def open_writer(
        self, kind: str, upload_id: str | None = None, part_number: int | None = None
    ) -> LocalBlobWriter:
        with space_refusals():
            return self._writer(self._new_ref(kind, upload_id, part_number), md5=True)

    def copy(
        self, src_ref: str, byte_range: ByteRange | None = None, *, need_md5: bool
    ) -> StagedBlob:
        with space_refusals():
            return self._copy(src_ref, byte_range, need_md5)

    def _copy(self, src_ref: str, byte_range: ByteRange | None, need_md5: bool) -> StagedBlob:
        if byte_range is None and not need_md5:
            staged = self._link_copy(src_ref)
            if staged is not None:
                return staged
        return self._stream_copy(src_ref, self._new_ref("object", None, None), byte_range)

    def copy_to_part(
        self, src_ref: str, upload_id: str, part_number: int, byte_range: ByteRange | None,
        *, need_md5: bool = True,
    ) -> StagedBlob:
        ref = self._new_ref("part", upload_id, part_number)
        with space_refusals():
            return self._stream_copy(src_ref, ref, byte_range)

    def _sources(self, data_ref: str) -> list[tuple[str, int]]:
        """(file, size) of the files holding a blob's bytes, in order: the file of a file
        blob, the segments of a composite one."""
        path, st = self._lstat(data_ref)
        return composite.segments(path) if stat.S_ISDIR(st.st_mode) else [(path, st.st_size)]

    def _link_copy(self, src_ref: str) -> StagedBlob | None:
        """The immutable source's files hard-linked to a new object ref; None if links are
        unsupported."""
        try:
            return self._link(self._sources(src_ref))
        except OSError as exc:
            if exc.errno in NO_LINK:
                return None
            raise

    def _link(self, sources: Sequence[tuple[str, int]]) -> StagedBlob:
        """A new object blob made of links to ``sources`` ((file, size)): the file itself
        for one, a composite for more. OSError (errno in NO_LINK) where links are refused."""
        ref = self._new_ref("object", None, None)
        dst = self._path(ref)
        if len(sources) > 1:
            composite.build(self._join(".tmp"), dst, sources)
            return StagedBlob(data_ref=ref, size=sum(n for _, n in sources), md5_hex="")
        ((src, size),), folder = sources, os.path.dirname(dst)
        ensure_dir(folder)
        try:
            os.link(src, dst, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise BlobMissing(src) from exc
        try:
            fsync_dir(folder)
        except BaseException:
            os.unlink(dst)
            raise
        return StagedBlob(data_ref=ref, size=size, md5_hex="")

    def _stream_copy(self, src_ref: str, ref: str, byte_range: ByteRange | None) -> StagedBlob:
        sources = self._sources(src_ref)
        first, count = copy_span(byte_range, sum(n for _, n in sources))
        reader = CompositeReader(composite.plan(sources, first, count), first)
        try:
            writer = self._writer(ref, md5=True)
            try:
                for fd, offset, n in reader.sendfile_spans():
                    writer.copy_from_fd(fd, offset, n)
                return writer.finish()
            except BaseException:
                writer.abort()
                raise
        finally:
            reader.close()

    def import_file(self, path: str, write_id: str) -> str:
        ref = write_ref(write_id)
        final = self._path(ref)
        folder = os.path.dirname(final)
        ensure_dir(folder)
        try:
            # NOTE: a link, not a rename: the task's file stays its source until the task
            # is settled, so a crash between this and the commit (and the orphan scan of
            # the restart, which removes the unreferenced blob) loses nothing.
            os.link(path, final)  # pending_dir is on this filesystem (events.md §5.3)
        except FileExistsError:
            return ref  # an earlier attempt of this task
        except FileNotFoundError:
            if not os.path.exists(final):
                raise BlobMissing(f"{path} and {ref}") from None
            return ref
        fsync_dir(folder)
        return ref

    def init_upload(self, upload_id: str) -> None:
        return None  # parts are blobs of their own, linked into a fresh one

    def assemble(self, parts: Sequence[Part]) -> StagedBlob:
        with space_refusals():
            return self._assemble(parts)

    def _assemble(self, parts: Sequence[Part]) -> StagedBlob:
        sources: list[tuple[str, int]] = []
        for part in parts:
            found = self._sources(part.data_ref)
            size = sum(n for _, n in found)
            if size != part.size:
                raise ValueError(f"part {part.part_number}: {size} B on disk, {part.size} B in row")
            sources.extend(found)
        try:
            return self._link(sources)
        except OSError as exc:
            if exc.errno not in NO_LINK:
                raise
        return self._concatenate(sources)

    def _concatenate(self, sources: Sequence[tuple[str, int]]) -> StagedBlob:
        """A new file blob with the bytes of ``sources``, copied (in the kernel if it can)."""
        writer = self._writer(self._new_ref("object", None, None), md5=False)
        try:
            for index, (path, size) in enumerate(sources):
                src_fd = open_ro(path)
                try:
                    writer.copy_from_fd(src_fd, 0, size)
                finally:
                    os.close(src_fd)
                if index == 0:
                    fault_point("assemble.middle")
            return writer.finish()
        except BaseException:
            writer.abort()
            raise

    def open_read(
        self, data_ref: str, offset: int = 0, length: int | None = None
    ) -> LocalBlobReader | CompositeReader:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must be >= 0")
        path = self._path(data_ref)
        try:
            fd = open_ro(path)
        except IsADirectoryError:
            sources = composite.segments(path)
            end = sum(n for _, n in sources)
            end = end if length is None else min(end, offset + length)
            return CompositeReader(composite.plan(sources, offset, max(0, end - offset)), offset)
        try:
            end = os.fstat(fd).st_size if length is None else offset + length
            os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return LocalBlobReader(fd, end)

    def size(self, data_ref: str) -> int:
        path, st = self._lstat(data_ref)
        return composite.total_size(path) if stat.S_ISDIR(st.st_mode) else st.st_size

    def holds(self, data_ref: str) -> bool:
        return True

    def _lstat(self, data_ref: str) -> tuple[str, os.stat_result]:
        """Path and lstat of a blob (a file, or a composite's directory); BlobMissing if
        absent, ELOOP if anything else."""
        path = self._path(data_ref)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise BlobMissing(data_ref) from exc
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise OSError(errno.ELOOP, "blob is not a regular file", data_ref)
        return path, st

    def delete(self, data_ref: str) -> None:
        match = UPLOAD_REF.fullmatch(data_ref) if isinstance(data_ref, str) else None
        if match is not None:
            remove_any(self._contained(self._join("multipart", match.group(1))))
            return
        path = self._path(data_ref)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            try:
                os.unlink(path)  # unlink never follows a symlink
            except IsADirectoryError:
                remove_any(path)  # a composite: its links

    def check(self) -> None:
        probe = self._contained(self._join(".tmp", "probe-" + uuid.uuid4().hex))
        os.close(os.open(probe, STAGE_FLAGS, 0o600))
        os.unlink(probe)

    def prepare(self) -> None:
        """The directory tree, created if missing (nothing else touched: a cluster node
        shares it with other nodes' writes in progress)."""
        for folder in (str(self._root), self._join(".tmp"), self._join("blobs"),
                       self._join("multipart")):
            ensure_dir(folder)

    def recover(self, live_upload_ids: Callable[[str], bool]) -> RecoveryReport:
        tmp, multipart = self._join(".tmp"), self._join("multipart")
        self.prepare()
        staging = 0
        for entry in list(os.scandir(tmp)):
            remove_any(entry.path)
            staging += 1
        removed = kept = 0
        for entry in list(os.scandir(multipart)):
            name = entry.name
            is_upload = entry.is_dir(follow_symlinks=False) and HEX32.fullmatch(name)
            if is_upload and live_upload_ids(name):
                kept += 1
            else:
                remove_any(entry.path)
                removed += 1
        return RecoveryReport(staging_removed=staging, uploads_removed=removed, uploads_kept=kept)

    def iter_blob_refs(self, older_than_s: float) -> Iterator[str]:
        cutoff = time.time() - older_than_s
        for a in subdirs(self._join("blobs"), HEX2):
            for b in subdirs(a.path, HEX2):
                yield from old_files(b.path, f"blobs/{a.name}/{b.name}/", OBJECT_REF, cutoff,
                                     composites=True)
        for upload in subdirs(self._join("multipart"), HEX32):
            yield from old_files(upload.path, f"multipart/{upload.name}/", PART_REF, cutoff)
