"""File-likes and a task runner for the Azure gateway's block staging (``storage/azure.py``).

Invariants:
- Both file-likes hold at most one chunk: ``FileSlice`` preads from the open spool file,
  ``RangeStream`` reads its blob range lazily and drops the download when it seeks (the
  SDK seeks back to retry a block).
- ``run_all`` returns only when every task has finished or the first failure has
  cancelled the ones not started.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import IO

from bleepstore.storage.backend import BlobMissing


class _Window:
    """What both file-likes share: ``length`` bytes, a position, seekable and readable."""

    def __init__(self, offset: int, length: int) -> None:
        self._offset, self._length = offset, length
        self._pos = 0

    def __len__(self) -> int:
        return self._length

    def _wanted(self, size: int | None) -> int:
        left = self._length - self._pos
        return left if size is None or size < 0 else min(size, left)

    def _target(self, pos: int, whence: int) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._length}[whence]
        return min(max(base + pos, 0), self._length)

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


class RangeStream(_Window):
    """A seekable file over ``length`` bytes of a blob from ``offset``, read lazily through
    ``read(name, offset, length)`` (``AzureCloud.read``); the SDK streams it into one Put
    Block and seeks back to retry."""

    def __init__(self, read: Callable[[str, int, int], Iterator[bytes]], name: str,
                 offset: int, length: int) -> None:
        super().__init__(offset, length)
        self._read, self._name = read, name
        self._chunks: Iterator[bytes] | None = None
        self._view = memoryview(b"")

    def read(self, size: int | None = -1, /) -> bytes:
        size = self._wanted(size)
        if size <= 0:
            return b""
        if not self._view:
            if self._chunks is None:
                self._chunks = self._read(self._name, self._offset + self._pos,
                                          self._length - self._pos)
            piece = next(self._chunks, b"")
            if not piece:
                raise BlobMissing(f"{self._name}: ended at {self._pos} of {self._length}")
            self._view = memoryview(piece)
        out = bytes(self._view[:size])
        self._view = self._view[len(out):]
        self._pos += len(out)
        return out

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        target = self._target(pos, whence)
        if target != self._pos:
            self._close_download()
            self._pos = target
        return self._pos

    def close(self) -> None:
        self._close_download()

    def _close_download(self) -> None:
        chunks, self._chunks, self._view = self._chunks, None, memoryview(b"")
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


class FileSlice(_Window):
    """A seekable view of ``length`` bytes of an open file from ``offset``: the SDK streams
    it into one Put Block and seeks back to retry."""

    def __init__(self, f: IO[bytes], offset: int, length: int) -> None:
        super().__init__(offset, length)
        self._f = f

    def read(self, size: int | None = -1, /) -> bytes:
        size = self._wanted(size)
        if size <= 0:
            return b""
        data = os.pread(self._f.fileno(), size, self._offset + self._pos)
        self._pos += len(data)
        return data

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        self._pos = self._target(pos, whence)
        return self._pos


def run_all(tasks: Sequence[Callable[[], None]], workers: int) -> None:
    """Run ``tasks`` on up to ``workers`` threads; the first failure cancels the rest."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            task()
        return
    with ThreadPoolExecutor(min(workers, len(tasks)),
                            thread_name_prefix="bleepstore-azure") as pool:
        futures = [pool.submit(task) for task in tasks]
        try:
            for future in futures:
                future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
