"""Composite blobs: a completed multipart object made of its part files, not a copy of
them (issue 17: copying wrote every byte of a multipart upload twice).

A composite blob is a directory at an object ref (``blobs/ab/cd/<w>/``) holding hard links
to the part files, named ``<index>-<size>``: index ``00001``.. in object order, size in
bytes. A size, or the segments of a range, costs one directory scan and no ``stat``.

Invariants:
- Built in a staging directory under ``.tmp`` (links made and checked, the directory
  fsynced), renamed into place whole, the destination directory fsynced: the crash rules of
  a file blob. Links never copy data: the part files were fsynced when they were written.
- Segments are immutable regular files, opened O_NOFOLLOW; names outside the grammar are
  ignored (never read).
- A reader opens the first ``EAGER_SEGMENTS`` files of its range when it is created, the
  others when it reaches them, and closes each file once read past. A GC that removes the
  composite meanwhile (local GC has no grace period) cannot cut a response short within
  those files: open files stay readable, as they do for a file blob. Beyond them (objects
  of more than 128 parts overwritten during a GET) the response ends early and the client
  retries: a reader never holds 10,000 descriptors, which a few parallel GETs of a large
  object would turn into a worker that cannot accept connections. Out of descriptors is
  503 SlowDown.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from bleepstore import errors
from bleepstore.storage.backend import BlobMissing, ChunkIteration
from bleepstore.storage.faults import fault_point
from bleepstore.storage.localio import (
    DIR_MODE,
    ensure_dir,
    fsync_dir,
    open_ro,
    remove_any,
    scan,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

SEGMENT = re.compile(r"[0-9]{5}-(?:0|[1-9][0-9]{0,19})")
EAGER_SEGMENTS = 128  # files a reader opens up front (aws s3 cp: 1 GiB in 8 MiB parts)
Span = tuple[int, int, int]  # (fd, offset in the file, byte count)
Step = tuple[str, int, int]  # (path, offset in the file, byte count)


def segments(path: str) -> list[tuple[str, int]]:
    """(file path, size) of each segment of the composite at ``path``, in object order;
    BlobMissing when the directory is gone or empty."""
    found = scan(path, SEGMENT)
    if not found:
        raise BlobMissing(path)
    return [(e.path, int(e.name.split("-", 1)[1])) for e in found]


def total_size(path: str) -> int:
    return sum(size for _, size in segments(path))


def plan(sources: Sequence[tuple[str, int]], first: int, count: int) -> list[Step]:
    """The files holding bytes ``first`` .. ``first + count`` of the concatenation of
    ``sources`` ((path, size) pairs), one step per file touched."""
    steps: list[Step] = []
    start = 0
    for path, size in sources:
        end = start + size
        if count and end > first and start < first + count:
            offset = max(first - start, 0)
            steps.append((path, offset, min(end, first + count) - (start + offset)))
        start = end
    return steps


def _open(path: str) -> int:
    try:
        return open_ro(path)
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            raise errors.SlowDown() from exc
        raise


def build(tmp_root: str, final: str, sources: Sequence[tuple[str, int]]) -> None:
    """Make ``final`` a composite of the files ``sources`` ((path, expected size)), in
    order. BlobMissing if a source is gone, ValueError if its size differs, OSError (errno
    in ``localio.NO_LINK``) where hard links are not possible; nothing is left behind then."""
    staging = os.path.join(tmp_root, uuid.uuid4().hex)
    try:
        os.mkdir(staging, DIR_MODE)
    except FileNotFoundError:  # recover() has not run: create the tree lazily
        ensure_dir(tmp_root)
        os.mkdir(staging, DIR_MODE)
    renamed = False
    try:
        for index, (src, size) in enumerate(sources, start=1):
            link = os.path.join(staging, f"{index:05d}-{size}")
            try:
                os.link(src, link, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError) as exc:
                raise BlobMissing(src) from exc
            st = os.lstat(link)
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                raise ValueError(f"segment {index}: {st.st_size} B on disk, {size} B expected")
            if index == 1:
                fault_point("assemble.middle")
        fsync_dir(staging)
        folder = os.path.dirname(final)
        ensure_dir(folder)
        fault_point("blob.before_rename")
        os.rename(staging, final)
        renamed = True
        fault_point("blob.after_rename")
        fsync_dir(folder)
    except BaseException:
        remove_any(final if renamed else staging)
        raise


class CompositeReader(ChunkIteration):
    """A bounded view over the files of ``plan()``: ``read``/``readinto``, iteration in
    chunks of at most 1 MiB, ``tell`` (the position in the object), and ``sendfile_spans``
    for a server that can ``sendfile`` each file itself (BleepStore's gunicorn worker). No
    ``fileno``: a server that cannot do that streams it."""

    def __init__(self, steps: list[Step], offset: int) -> None:
        self._steps = steps
        self._fds: dict[int, int] = {}
        self._index = 0  # the step being read
        self._done = 0  # bytes of that step already read
        self._position = offset
        try:
            for index, (path, _, _) in enumerate(steps[:EAGER_SEGMENTS]):
                self._fds[index] = _open(path)
        except BaseException:
            self.close()
            raise

    def _next_piece(self, limit: int) -> Span | None:
        """(fd, file offset, count <= limit) of the next unread bytes, consumed."""
        while self._index < len(self._steps):
            path, offset, count = self._steps[self._index]
            if self._done < count:
                fd = self._fds.get(self._index)
                if fd is None:
                    fd = self._fds[self._index] = _open(path)
                n = min(limit, count - self._done)
                piece = (fd, offset + self._done, n)
                self._done += n
                self._position += n
                return piece
            done = self._fds.pop(self._index, None)
            if done is not None:
                os.close(done)
            self._index, self._done = self._index + 1, 0
        return None

    def _remaining(self) -> int:
        if self._index >= len(self._steps):
            return 0
        return sum(c for _, _, c in self._steps[self._index:]) - self._done

    def read(self, size: int | None = -1, /) -> bytes:
        want = self._remaining() if size is None or size < 0 else size
        pieces = []
        while want > 0:
            piece = self._next_piece(want)
            if piece is None:
                break
            fd, offset, n = piece
            data = os.pread(fd, n, offset)
            if len(data) != n:
                raise BlobMissing("a segment is shorter than its name says")
            pieces.append(data)
            want -= n
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def sendfile_spans(self) -> Iterator[Span]:
        """The unread bytes as (fd, file offset, count), consumed as they are yielded; each
        fd stays open until the next one is asked for."""
        while (piece := self._next_piece(1 << 62)) is not None:
            yield piece

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        fds, self._fds, self._steps = self._fds, {}, []
        for fd in fds.values():
            os.close(fd)
