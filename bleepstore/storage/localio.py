"""Local-filesystem blob I/O primitives (storage.md §3): directory fsyncs, the bounded
reader handed to gunicorn for ``sendfile``, the staging writer, and directory scans.

Invariants:
- A blob becomes visible only by ``rename`` after its bytes are fsynced; every directory
  created on the way and the destination directory are fsynced too.
- Blobs are opened O_RDONLY|O_NOFOLLOW; nothing here ever opens an existing blob for writing.
- Copies between blobs stay in the kernel (``copy_file_range``) unless an MD5 must be
  computed; no function holds more than one 1 MiB chunk in memory.
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
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from bleepstore import errors
from bleepstore.model import StagedBlob
from bleepstore.storage.backend import READ_CHUNK, BlobMissing, ChunkIteration
from bleepstore.storage.faults import fault_point
from bleepstore.storage.writebehind import WriteBehind

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

CHUNK = READ_CHUNK  # 1 MiB: the largest read and copy step, as large as an iteration chunk
WRITE_BEHIND_AFTER = 4 << 20  # small bodies are written inline: no thread to start
MAX_PART_NUMBER = 10_000
DIR_MODE = 0o700
RO_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
STAGE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# NOTE: fullmatch, never "$": "$" also matches before a trailing newline.
OBJECT_REF = re.compile(r"blobs/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{32}")
PART_REF = re.compile(r"multipart/[0-9a-f]{32}/[0-9]{5}-[0-9a-f]{32}")
UPLOAD_REF = re.compile(r"upload:([0-9a-f]{32})")
HEX32 = re.compile(r"[0-9a-f]{32}")
HEX2 = re.compile(r"[0-9a-f]{2}")
ByteRange = tuple[int, int]  # (first, last), last inclusive
NO_LINK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP)
NO_COPY_FILE_RANGE = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM)


def write_ref(write_id: str) -> str:
    """The object ref of a deterministic write id (a write task's: events.md §5.5)."""
    if not isinstance(write_id, str) or not HEX32.fullmatch(write_id):
        raise ValueError(f"invalid write id {str(write_id)[:80]!r}")
    return f"blobs/{write_id[:2]}/{write_id[2:4]}/{write_id}"


def new_ref(kind: str, upload_id: str | None = None, part_number: int | None = None) -> str:
    """A fresh blob ref (the same grammar on disk and in every gateway); no user data."""
    w = secrets.token_hex(16)
    if kind == "object" and upload_id is None and part_number is None:
        return f"blobs/{w[:2]}/{w[2:4]}/{w}"
    if kind == "part":
        if not isinstance(upload_id, str) or not HEX32.fullmatch(upload_id):
            raise ValueError("upload id must be 32 lowercase hex characters")
        if type(part_number) is not int or not 1 <= part_number <= MAX_PART_NUMBER:
            raise ValueError(f"part number must be 1..{MAX_PART_NUMBER}")
        return f"multipart/{upload_id}/{part_number:05d}-{w}"
    raise ValueError(f"bad writer kind/arguments: {kind!r}")


def copy_span(byte_range: ByteRange | None, size: int) -> tuple[int, int]:
    """(first, count) of an inclusive ``byte_range`` of a ``size``-byte blob (all of it
    when None); ValueError when the range is not inside the blob."""
    if byte_range is None:
        return 0, size
    first, last = byte_range
    if not 0 <= first <= last < size:
        raise ValueError(f"byte range {byte_range} outside a {size}-byte blob")
    return first, last - first + 1


@contextlib.contextmanager
def space_refusals() -> Iterator[None]:
    """Out of space (ENOSPC/EDQUOT) while writing a blob is 503 InsufficientStorage."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise errors.InsufficientStorage() from exc
        raise


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: str) -> None:
    """``mkdir -p`` (mode 0700) that fsyncs the parent of every directory it creates."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    ensure_dir(parent)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        return
    fsync_dir(parent)


def remove_any(path: str) -> None:
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


def open_ro(path: str) -> int:
    """Open a blob read-only without following a symlink; BlobMissing if absent."""
    try:
        fd = os.open(path, RO_FLAGS)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise BlobMissing(path) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IsADirectoryError(errno.EISDIR, "not a regular file", path)
    return fd


class LocalBlobReader(ChunkIteration, io.FileIO):
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
        self._behind: WriteBehind | None = None  # started once a body proves large

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._fd < 0:
            raise ValueError("write to a closed blob writer")
        if self._behind is None and self._size >= WRITE_BEHIND_AFTER:
            self._behind = WriteBehind(self._fd, self._md5)
        if self._behind is not None:
            chunk = bytes(data)  # the helper thread may only see immutable bytes
            self._behind.put(chunk)
            self._size += len(chunk)
            return
        if self._md5 is not None:
            self._md5.update(data)
        view = memoryview(data).cast("B")
        done = os.write(self._fd, view)
        while done < len(view):
            done += os.write(self._fd, view[done:])
        self._size += done

    def _drain(self) -> None:
        behind, self._behind = self._behind, None
        if behind is not None:
            behind.close()

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
        self._drain()  # kernel copies append at the file position: queued bytes go first
        while offset < end:
            try:
                n = os.copy_file_range(src_fd, self._fd, min(end - offset, 1 << 30), offset)
            except OSError as exc:
                if exc.errno in NO_COPY_FILE_RANGE:
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
            self._drain()
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            final = self._inside(self._ref)
            folder = os.path.dirname(final)
            ensure_dir(folder)
            fault_point("blob.before_rename")
            os.rename(self._staging, final)
            self._final = final
            fault_point("blob.after_rename")
            fsync_dir(folder)
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
        with contextlib.suppress(Exception):
            self._drain()
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
        for path in (self._staging, self._final):
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


def scan(path: str, pattern: re.Pattern[str], prefix: str = "") -> list[os.DirEntry[str]]:
    """Entries of ``path`` whose ``prefix + name`` matches, sorted; [] if ``path`` vanished."""
    try:
        with os.scandir(path) as entries:
            found = [e for e in entries if pattern.fullmatch(prefix + e.name)]
    except FileNotFoundError:  # GC or recovery removed it meanwhile
        return []
    return sorted(found, key=lambda e: e.name)


def subdirs(path: str, pattern: re.Pattern[str]) -> Iterator[os.DirEntry[str]]:
    return (e for e in scan(path, pattern) if e.is_dir(follow_symlinks=False))


def old_files(path: str, prefix: str, pattern: re.Pattern[str], cutoff: float, *,
              composites: bool = False) -> Iterator[str]:
    """Refs (``prefix + name``) of the files, and directories when ``composites``, last
    changed before ``cutoff``."""
    for entry in scan(path, pattern, prefix):
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        # NOTE: ctime too -- a hard-linked copy keeps the source's old mtime but its
        # link() bumps ctime, so a fresh uncommitted copy is not mistaken for an orphan.
        kind_ok = stat.S_ISREG(st.st_mode) or (composites and stat.S_ISDIR(st.st_mode))
        if kind_ok and max(st.st_mtime, st.st_ctime) < cutoff:
            yield prefix + entry.name
