"""Local-filesystem blob store (storage.md §3).

Invariants:
- Layout under the root: ``.tmp/<uuid4 hex>`` staging files, ``blobs/ab/cd/<w>`` object
  blobs, ``multipart/<upload_id>/<nnnnn>-<w>`` part blobs; ``w`` = ``secrets.token_hex(16)``.
  Refs are those relative paths, so they never contain user data.
- Every ref is matched (``fullmatch``) against the ref grammar before any I/O, then joined to
  the root; the realpath of the result must lie inside the root's realpath (ValueError
  otherwise). Files are opened with O_NOFOLLOW, so a symlinked blob is refused (ELOOP).
- Staging files are created O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600; directories mode 0700.
- A blob becomes visible only by rename (or hard link) after its bytes are fsynced; every
  directory created on the way and the destination directory are fsynced too.
- Nothing ever opens an existing blob for writing. The constructor does no I/O (pre-fork);
  directories are also created lazily on first write.
- ``recover()`` deletes every staging file: call it only at startup, before any writer runs.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import secrets
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bleepstore.model import Part, StagedBlob
from bleepstore.storage.backend import BlobMissing, RecoveryReport
from bleepstore.storage.faults import fault_point

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

CHUNK = 1 << 20  # 1 MiB: the largest read, iteration chunk and copy step
MAX_PART_NUMBER = 10_000
_DIR_MODE = 0o700
_RO_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_STAGE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# NOTE: fullmatch, never "$": "$" also matches before a trailing newline.
_OBJECT_REF = re.compile(r"blobs/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{32}")
_PART_REF = re.compile(r"multipart/[0-9a-f]{32}/[0-9]{5}-[0-9a-f]{32}")
_UPLOAD_REF = re.compile(r"upload:([0-9a-f]{32})")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX2 = re.compile(r"[0-9a-f]{2}")
ByteRange = tuple[int, int]  # (first, last), last inclusive
_NO_LINK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP)
_NO_COPY_FILE_RANGE = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ensure_dir(path: str) -> None:
    """``mkdir -p`` (mode 0700) that fsyncs the parent of every directory it creates."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    _ensure_dir(parent)
    try:
        os.mkdir(path, _DIR_MODE)
    except FileExistsError:
        return
    _fsync_dir(parent)


def _remove_any(path: str) -> None:
    """Remove a file, symlink or directory tree without following symlinks; missing is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)  # fd-based on Linux: does not follow symlinks inside
        else:
            os.unlink(path)


def _open_ro(path: str) -> int:
    """Open a blob read-only without following a symlink; BlobMissing if absent."""
    try:
        fd = os.open(path, _RO_FLAGS)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise BlobMissing(path) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IsADirectoryError(errno.EISDIR, "not a regular file", path)
    return fd


class LocalBlobReader(io.FileIO):
    """A real file seeked to the range start (gunicorn can ``sendfile`` it) that never
    reads past ``end`` -- through ``read``/``readinto`` or iteration (<= 1 MiB chunks)."""

    def __init__(self, fd: int, end: int) -> None:
        super().__init__(fd, "r", closefd=True)
        self._end = end

    def _remaining(self) -> int:
        return max(0, self._end - self.tell())

    def read(self, size: int | None = -1, /) -> bytes:
        remaining = self._remaining()
        if size is None or size < 0 or size > remaining:
            size = remaining
        return (super().read(size) or b"") if size else b""

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        return super().readinto(view[: self._remaining()]) or 0

    def __iter__(self) -> LocalBlobReader:
        return self

    def __next__(self) -> bytes:
        chunk = self.read(CHUNK)
        if not chunk:
            raise StopIteration
        return chunk


class LocalBlobWriter:
    """Streams one new blob into a staging file; ``finish()`` renames it into place."""

    def __init__(self, ref: str, staging: str, fd: int, inside: Callable[[str], str], md5: bool):
        self._ref = ref
        self._staging = staging
        self._fd = fd
        self._inside = inside
        self._md5 = hashlib.md5() if md5 else None
        self._size = 0
        self._final: str | None = None  # set once renamed into place
        self._finished = False

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._fd < 0:
            raise ValueError("write to a closed blob writer")
        if self._md5 is not None:
            self._md5.update(data)
        view = memoryview(data).cast("B")
        done = os.write(self._fd, view)
        while done < len(view):
            done += os.write(self._fd, view[done:])
        self._size += done

    def copy_from_fd(self, src_fd: int, offset: int, count: int) -> None:
        """Append ``count`` bytes of ``src_fd`` from ``offset`` (in-kernel when no MD5)."""
        end = offset + count
        if self._md5 is None:
            offset = self._copy_file_range(src_fd, offset, end)
        while offset < end:
            chunk = os.pread(src_fd, min(CHUNK, end - offset), offset)
            if not chunk:
                raise BlobMissing("source blob is shorter than expected")
            self.write(chunk)
            offset += len(chunk)

    def _copy_file_range(self, src_fd: int, offset: int, end: int) -> int:
        """Copy what the kernel will copy; return the offset to continue from by hand."""
        while offset < end:
            try:
                n = os.copy_file_range(src_fd, self._fd, min(end - offset, 1 << 30), offset)
            except OSError as exc:
                if exc.errno in _NO_COPY_FILE_RANGE:
                    return offset
                raise
            if n == 0:
                raise BlobMissing("source blob is shorter than expected")
            offset += n
            self._size += n
        return offset

    def finish(self) -> StagedBlob:
        if self._finished or self._fd < 0:
            raise ValueError("blob writer already finished or aborted")
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            final = self._inside(self._ref)
            folder = os.path.dirname(final)
            _ensure_dir(folder)
            fault_point("blob.before_rename")
            os.rename(self._staging, final)
            self._final = final
            fault_point("blob.after_rename")
            _fsync_dir(folder)
        except BaseException:
            self.abort()
            raise
        self._finished = True
        md5_hex = self._md5.hexdigest() if self._md5 is not None else ""
        return StagedBlob(data_ref=self._ref, size=self._size, md5_hex=md5_hex)

    def abort(self) -> None:
        """Idempotent. No-op after a successful ``finish()``; after a failed one it also
        removes the renamed blob, since the caller never learnt its ref."""
        if self._finished:
            return
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
        for path in (self._staging, self._final):
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


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
            _OBJECT_REF.fullmatch(data_ref) or _PART_REF.fullmatch(data_ref)
        ):
            raise ValueError(f"invalid data ref {str(data_ref)[:80]!r}")
        return self._contained(self._join(data_ref))

    @staticmethod
    def _new_ref(kind: str, upload_id: str | None, part_number: int | None) -> str:
        w = secrets.token_hex(16)
        if kind == "object" and upload_id is None and part_number is None:
            return f"blobs/{w[:2]}/{w[2:4]}/{w}"
        if kind == "part":
            if not isinstance(upload_id, str) or not _HEX32.fullmatch(upload_id):
                raise ValueError("upload id must be 32 lowercase hex characters")
            if type(part_number) is not int or not 1 <= part_number <= MAX_PART_NUMBER:
                raise ValueError(f"part number must be 1..{MAX_PART_NUMBER}")
            return f"multipart/{upload_id}/{part_number:05d}-{w}"
        raise ValueError(f"bad writer kind/arguments: {kind!r}")

    def _writer(self, ref: str, md5: bool) -> LocalBlobWriter:
        self._path(ref)  # fail early if the destination tree is unsafe
        tmp = self._join(".tmp")
        staging = self._contained(os.path.join(tmp, uuid.uuid4().hex))
        try:
            fd = os.open(staging, _STAGE_FLAGS, 0o600)
        except FileNotFoundError:  # recover() has not run: create the tree lazily
            _ensure_dir(tmp)
            fd = os.open(staging, _STAGE_FLAGS, 0o600)
        return LocalBlobWriter(ref, staging, fd, self._path, md5)

    def open_writer(
        self, kind: str, upload_id: str | None = None, part_number: int | None = None
    ) -> LocalBlobWriter:
        return self._writer(self._new_ref(kind, upload_id, part_number), md5=True)

    def copy(
        self, src_ref: str, byte_range: ByteRange | None = None, *, need_md5: bool
    ) -> StagedBlob:
        if byte_range is None and not need_md5:
            staged = self._link_copy(src_ref)
            if staged is not None:
                return staged
        return self._stream_copy(src_ref, self._new_ref("object", None, None), byte_range)

    def copy_to_part(
        self, src_ref: str, upload_id: str, part_number: int, byte_range: ByteRange | None
    ) -> StagedBlob:
        ref = self._new_ref("part", upload_id, part_number)
        return self._stream_copy(src_ref, ref, byte_range)

    def _link_copy(self, src_ref: str) -> StagedBlob | None:
        """Hard-link the immutable source to a new object ref; None if links are unsupported."""
        src, st = self._lstat(src_ref)
        ref = self._new_ref("object", None, None)
        dst = self._path(ref)
        folder = os.path.dirname(dst)
        _ensure_dir(folder)
        try:
            os.link(src, dst, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise BlobMissing(src_ref) from exc
        except OSError as exc:
            if exc.errno in _NO_LINK:
                return None
            raise
        try:
            _fsync_dir(folder)
        except BaseException:
            os.unlink(dst)
            raise
        return StagedBlob(data_ref=ref, size=st.st_size, md5_hex="")

    def _stream_copy(self, src_ref: str, ref: str, byte_range: ByteRange | None) -> StagedBlob:
        src_fd = _open_ro(self._path(src_ref))
        try:
            size = os.fstat(src_fd).st_size
            first, count = 0, size
            if byte_range is not None:
                first, last = byte_range
                if not 0 <= first <= last < size:
                    raise ValueError(f"byte range {byte_range} outside a {size}-byte blob")
                count = last - first + 1
            writer = self._writer(ref, md5=True)
            try:
                writer.copy_from_fd(src_fd, first, count)
                return writer.finish()
            except BaseException:
                writer.abort()
                raise
        finally:
            os.close(src_fd)

    def assemble(self, parts: Sequence[Part]) -> StagedBlob:
        writer = self._writer(self._new_ref("object", None, None), md5=False)
        try:
            for index, part in enumerate(parts):
                src_fd = _open_ro(self._path(part.data_ref))
                try:
                    size = os.fstat(src_fd).st_size
                    if size != part.size:
                        raise ValueError(
                            f"part {part.part_number}: {size} B on disk, {part.size} B in row"
                        )
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
    ) -> LocalBlobReader:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must be >= 0")
        fd = _open_ro(self._path(data_ref))
        try:
            end = os.fstat(fd).st_size if length is None else offset + length
            os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return LocalBlobReader(fd, end)

    def size(self, data_ref: str) -> int:
        return self._lstat(data_ref)[1].st_size

    def _lstat(self, data_ref: str) -> tuple[str, os.stat_result]:
        """Path and lstat of a blob; BlobMissing if absent, ELOOP if not a regular file."""
        path = self._path(data_ref)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise BlobMissing(data_ref) from exc
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.ELOOP, "blob is not a regular file", data_ref)
        return path, st

    def delete(self, data_ref: str) -> None:
        match = _UPLOAD_REF.fullmatch(data_ref) if isinstance(data_ref, str) else None
        if match is not None:
            _remove_any(self._contained(self._join("multipart", match.group(1))))
            return
        path = self._path(data_ref)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(path)  # unlink never follows a symlink

    def check(self) -> None:
        probe = self._contained(self._join(".tmp", "probe-" + uuid.uuid4().hex))
        os.close(os.open(probe, _STAGE_FLAGS, 0o600))
        os.unlink(probe)

    def recover(self, live_upload_ids: Callable[[str], bool]) -> RecoveryReport:
        tmp, multipart = self._join(".tmp"), self._join("multipart")
        for folder in (str(self._root), tmp, self._join("blobs"), multipart):
            _ensure_dir(folder)
        staging = 0
        for entry in list(os.scandir(tmp)):
            _remove_any(entry.path)
            staging += 1
        removed = kept = 0
        for entry in list(os.scandir(multipart)):
            name = entry.name
            is_upload = entry.is_dir(follow_symlinks=False) and _HEX32.fullmatch(name)
            if is_upload and live_upload_ids(name):
                kept += 1
            else:
                _remove_any(entry.path)
                removed += 1
        return RecoveryReport(staging_removed=staging, uploads_removed=removed, uploads_kept=kept)

    def iter_blob_refs(self, older_than_s: float) -> Iterator[str]:
        cutoff = time.time() - older_than_s
        for a in _subdirs(self._join("blobs"), _HEX2):
            for b in _subdirs(a.path, _HEX2):
                yield from _old_files(b.path, f"blobs/{a.name}/{b.name}/", _OBJECT_REF, cutoff)
        for upload in _subdirs(self._join("multipart"), _HEX32):
            yield from _old_files(upload.path, f"multipart/{upload.name}/", _PART_REF, cutoff)


def _scan(path: str, pattern: re.Pattern[str], prefix: str = "") -> list[os.DirEntry[str]]:
    """Entries of ``path`` whose ``prefix + name`` matches, sorted; [] if ``path`` vanished."""
    try:
        with os.scandir(path) as entries:
            found = [e for e in entries if pattern.fullmatch(prefix + e.name)]
    except FileNotFoundError:  # GC or recovery removed it meanwhile
        return []
    return sorted(found, key=lambda e: e.name)


def _subdirs(path: str, pattern: re.Pattern[str]) -> Iterator[os.DirEntry[str]]:
    return (e for e in _scan(path, pattern) if e.is_dir(follow_symlinks=False))


def _old_files(path: str, prefix: str, pattern: re.Pattern[str], cutoff: float) -> Iterator[str]:
    for entry in _scan(path, pattern, prefix):
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        # NOTE: ctime too -- a hard-linked copy keeps the source's old mtime but its
        # link() bumps ctime, so a fresh uncommitted copy is not mistaken for an orphan.
        if stat.S_ISREG(st.st_mode) and max(st.st_mtime, st.st_ctime) < cutoff:
            yield prefix + entry.name
