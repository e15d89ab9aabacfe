"""A crash-safe Raft journal for pysyncobj: every ``add`` is on disk before it returns.

pysyncobj's FileJournal writes through mmap and never fsyncs, stores its meta without fsync,
and compacts by clear-then-re-add in place, so a crash can lose acknowledged entries or the
whole log. Raft is only safe if an entry a node acknowledged is on stable storage (pysyncobj
``add``s on the leader before counting itself, on a follower before answering AppendEntries)
and currentTerm/votedFor are durable before a vote goes out.

Why a seam, not a fork: SyncObj.__init__ looks up the module-level name
``pysyncobj.syncobj.createJournal`` once; ``install()`` rebinds that one name, so pysyncobj's
protocol code stays unpatched and an upgrade is a version bump (a test pins the seam).

Files (``path`` is ``SyncObjConf.journalFile``; keep ``fullDumpFile`` in the same directory:
pysyncobj renames its dump without a directory fsync, the compaction below supplies it):
- ``path``: ``MAGIC``, then records: length u32, crc32 u32 (of the rest), idx u64, term u64,
  command bytes, little-endian.
- ``path.meta``: JSON ``{"v", "currentTerm", "votedForNodeId", "raftCommitIndex"}``.

Invariants:
- ``add`` = one write + fdatasync; nothing else is appended before it returns, so a crash can
  only tear the last record, never acknowledged: opening truncates a short or corrupt tail.
  A damaged record followed by an intact one is no crash artefact: opening refuses it.
- ``deleteEntriesFrom`` follows Raft, not pysyncobj: entries go only where a following
  ``add`` conflicts (same position, other index or term), truncating at the first removed
  record + fsync (atomic); see the method. ``clear`` and
  ``deleteEntriesTo`` write ``path.tmp``, fsync, rename over ``path``, fsync the directory:
  a crash leaves the old journal or the new one, never a prefix. Meta is replaced the same way.
- Memory follows disk: the entry list changes only after its I/O succeeded. After an I/O error
  every later change is refused (a failed fsync leaves the page cache unknown; retrying is
  unsafe) and ``on_failure`` is called: pysyncobj's tick thread swallows exceptions and retries.
- currentTerm/votedFor are stored before ``setCurrentTerm`` returns. The commit index is a hint
  (a lower one is re-learned from the leader): stored at most once a second and on close, and
  never reported past the last entry.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any, overload

import pysyncobj.journal
import pysyncobj.syncobj

log = logging.getLogger("bleepstore.cluster")

MAGIC = b"BSRJNL01"
MEMBERSHIP = b"\x02"  # pysyncobj's _COMMAND_TYPE.MEMBERSHIP, the command's first byte
_HEAD = struct.Struct("<II")  # body length, crc32 of the body
_BODY = struct.Struct("<QQ")  # idx, term; the command follows
_READ_CHUNK = 1 << 20
META_VERSION = 1

Entry = tuple[bytes, int, int]
OnFailure = Callable[[OSError], None]
NodeId = str | int | None


class JournalError(Exception):
    """The journal cannot be used: damaged, foreign, closed, or failed on an earlier I/O."""


def encode_record(command: bytes, idx: int, term: int) -> bytes:
    body = _BODY.pack(idx, term) + command
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


def _decode(data: memoryview, pos: int) -> tuple[Entry, int] | None:
    """The intact record at ``pos`` and the offset after it, or None (short or corrupt)."""
    if len(data) - pos < _HEAD.size:
        return None
    length, crc = _HEAD.unpack_from(data, pos)
    end = pos + _HEAD.size + length
    if length < _BODY.size or end > len(data):
        return None
    body = data[pos + _HEAD.size:end]
    if zlib.crc32(body) != crc:
        return None
    idx, term = _BODY.unpack_from(body)
    return (bytes(body[_BODY.size:]), idx, term), end


def scan(data: bytes) -> tuple[list[Entry], list[int], int]:
    """Entries, their offsets, and where the intact prefix ends (a torn tail starts there)."""
    view = memoryview(data)
    entries: list[Entry] = []
    offsets: list[int] = []
    pos = len(MAGIC)
    while pos < len(view):
        record = _decode(view, pos)
        if record is None:
            # NOTE: only the last record can be torn (adds are serialised by fdatasync); a
            # damaged record with an intact one behind it is corruption, and truncating it
            # would silently drop acknowledged entries.
            length = _HEAD.unpack_from(view, pos)[0] if len(view) - pos >= _HEAD.size else 0
            after = pos + _HEAD.size + length
            if length >= _BODY.size and after < len(view) and _decode(view, after) is not None:
                raise JournalError(f"damaged record at offset {pos} before intact records")
            break
        entries.append(record[0])
        offsets.append(pos)
        pos = record[1]
    return entries, offsets, pos


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_all(fd: int) -> bytes:
    size, chunks, pos = os.fstat(fd).st_size, [], 0
    while pos < size:
        chunk = os.pread(fd, min(size - pos, _READ_CHUNK), pos)
        if not chunk:
            break
        chunks.append(chunk)
        pos += len(chunk)
    return b"".join(chunks)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: str, data: bytes) -> int:
    """``data`` in a fresh file at ``path``, fsynced; returns its open (append) descriptor."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


class DurableJournal(pysyncobj.journal.Journal):  # type: ignore[misc]
    """pysyncobj's journal interface (0.3.17), fsynced; entries are (command, idx, term)."""

    def __init__(self, path: str | os.PathLike[str], on_failure: OnFailure | None = None) -> None:
        self._path = os.fspath(path)
        self._dir = os.path.dirname(os.path.abspath(self._path))
        self._on_failure = on_failure
        self._failure: OSError | None = None
        self._fd = -1
        self._entries: list[Entry] = []
        self._offsets: list[int] = []
        self._end = len(MAGIC)
        self._term, self._voted_for, self._commit = self._load_meta()
        self._commit_dirty = False
        self._cut: int | None = None  # a deleteEntriesFrom waiting for its adds
        self._open_log()

    # --- opening ------------------------------------------------------------------------

    def _open_log(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path + ".tmp")  # a compaction that never reached its rename
        if not os.path.exists(self._path) or os.path.getsize(self._path) == 0:
            self._rewrite([])
            return
        fd = os.open(self._path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        try:
            data = _read_all(fd)
            if not data.startswith(MAGIC):
                raise JournalError(f"{self._path} is not a BleepStore journal (a pysyncobj "
                                   "FileJournal?); refusing to touch it")
            entries, offsets, end = scan(data)
            if end < len(data):
                log.warning("raft journal %s: dropping a torn tail of %d bytes at offset %d",
                            self._path, len(data) - end, end)
                os.ftruncate(fd, end)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._entries, self._offsets, self._end = fd, entries, offsets, end

    def _load_meta(self) -> tuple[int, NodeId, int | None]:
        try:
            with open(self._path + ".meta", "rb") as f:
                raw = f.read(1 << 16)
        except FileNotFoundError:
            return 0, None, None
        try:
            meta = json.loads(raw)
            term, voted, commit = (meta["currentTerm"], meta["votedForNodeId"],
                                   meta["raftCommitIndex"])
        except (ValueError, TypeError, KeyError) as exc:
            raise JournalError(f"{self._path}.meta is unreadable: {exc}") from exc
        if not isinstance(term, int) or not isinstance(commit, int | None) \
                or not isinstance(voted, str | int | None):
            raise JournalError(f"{self._path}.meta has unexpected values: {meta!r}")
        return term, voted, commit

    # --- the guard ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _io(self) -> Iterator[None]:
        if self._failure is not None:
            raise JournalError("raft journal unusable after an I/O error; restart the node"
                               ) from self._failure
        if self._fd < 0:
            raise JournalError("raft journal is closed")
        try:
            yield
        except OSError as exc:
            self._failure = exc
            log.critical("raft journal %s: I/O error, refusing further writes", self._path,
                         exc_info=True)
            if self._on_failure is not None:
                self._on_failure(exc)
            raise

    # --- entries ------------------------------------------------------------------------

    def add(self, command: bytes | str, idx: int, term: int) -> None:
        data = command.encode() if isinstance(command, str) else bytes(command)
        if self._cut is not None:
            if self._cut < len(self._entries) and self._entries[self._cut][1:] == (idx, term):
                self._cut += 1  # the entry this node already holds (same index and term)
                return
            self._truncate(self._cut)  # a real conflict: Raft drops it and all after
        record = encode_record(data, idx, term)
        with self._io():
            _write_all(self._fd, record)
            os.fdatasync(self._fd)
        self._entries.append((data, idx, term))
        self._offsets.append(self._end)
        self._end += len(record)

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        """Raft's rule, not pysyncobj's: a follower drops its entries from ``entryFrom``
        only where the leader's entries that follow (the next ``add``s) conflict with them.

        NOTE: pysyncobj truncates every entry past the leader's prevLogIdx and appends what
        the message carries, so a reordered or resent AppendEntries with fewer entries
        shrank a follower's log below entries it had acknowledged -- even applied ("state
        machine may have diverged"); a leader crash then could lose committed writes. The
        cut is resolved lazily: a matching ``add`` keeps the entry, a conflicting one
        truncates there, and any other call keeps the rest (no conflict was shown)."""
        start = slice(entryFrom, None).indices(len(self._entries))[0]
        self._resolve_cut()
        if start < len(self._entries):
            self._cut = start

    def _resolve_cut(self) -> None:
        """A pending cut that no conflicting ``add`` confirmed: the entries stay, unless
        one of them changes the membership (pysyncobj has already rolled that back in
        memory, so the journal must follow it)."""
        cut, self._cut = self._cut, None
        if cut is not None and any(e[0][:1] == MEMBERSHIP for e in self._entries[cut:]):
            self._truncate(cut)

    def _truncate(self, start: int) -> None:
        self._cut = None
        if start >= len(self._entries):
            return
        log.info("raft journal: dropping %d entries from index %d (conflict with the "
                 "leader's log)", len(self._entries) - start, self._entries[start][1])
        with self._io():
            os.ftruncate(self._fd, self._offsets[start])
            os.fsync(self._fd)
        self._end = self._offsets[start]
        del self._entries[start:], self._offsets[start:]

    def deleteEntriesTo(self, entryTo: int) -> None:
        self._resolve_cut()
        if slice(entryTo, None).indices(len(self._entries))[0] == 0:
            return  # nothing to drop: spare the rewrite
        with self._io():
            self._rewrite(self._entries[entryTo:])

    def clear(self) -> None:
        self._cut = None
        if self._entries:
            with self._io():
                self._rewrite([])

    def _rewrite(self, kept: list[Entry]) -> None:
        """Replace the journal by one holding ``kept``: old or new after a crash, never a mix."""
        buf, offsets = bytearray(MAGIC), []
        for entry in kept:
            offsets.append(len(buf))
            buf += encode_record(*entry)
        tmp = self._path + ".tmp"
        fd = _write_new(tmp, bytes(buf))
        try:
            os.replace(tmp, self._path)
            _fsync_dir(self._dir)
        except BaseException:
            os.close(fd)
            raise
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._entries, self._offsets, self._end = fd, list(kept), offsets, len(buf)

    @overload
    def __getitem__(self, item: int) -> Entry: ...
    @overload
    def __getitem__(self, item: slice) -> list[Entry]: ...
    def __getitem__(self, item: int | slice) -> Entry | list[Entry]:
        self._resolve_cut()
        return self._entries[item]

    def __len__(self) -> int:
        self._resolve_cut()
        return len(self._entries)

    # --- meta ---------------------------------------------------------------------------

    def setCurrentTerm(self, term: int, votedForNodeId: NodeId) -> None:
        if not isinstance(votedForNodeId, str | int | None):
            # NOTE: JSON would hand back a tuple id as a list, unequal to what Raft compares.
            raise TypeError(f"node id {votedForNodeId!r} is not str, int or None")
        with self._io():
            self._store_meta(term, votedForNodeId)
        self._term, self._voted_for = term, votedForNodeId

    def getCurrentTerm(self) -> int:
        return self._term

    def getVotedForNodeId(self) -> NodeId:
        return self._voted_for

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        self._commit, self._commit_dirty = raftCommitIndex, True

    def getRaftCommitIndex(self) -> int:
        # NOTE: past the journal's end (lost entries, a cleared journal) pysyncobj waits
        # forever for entries it can never apply.
        commit = 1 if self._commit is None else self._commit
        return min(commit, self._entries[-1][1]) if self._entries else commit

    def onOneSecondTimer(self) -> None:
        self.flush()

    def flush(self) -> None:
        """Store the commit index if it changed (everything else is already durable)."""
        if self._commit_dirty:
            with self._io():
                self._store_meta(self._term, self._voted_for)

    def _store_meta(self, term: int, voted_for: NodeId) -> None:
        doc = {"v": META_VERSION, "currentTerm": term, "votedForNodeId": voted_for,
               "raftCommitIndex": self._commit}
        tmp, path = self._path + ".meta.tmp", self._path + ".meta"
        os.close(_write_new(tmp, json.dumps(doc).encode()))
        os.replace(tmp, path)
        _fsync_dir(self._dir)
        self._commit_dirty = False

    def _destroy(self) -> None:
        """Close (pysyncobj calls this from SyncObj.destroy on its tick thread)."""
        if self._fd < 0:
            return
        try:
            if self._failure is None:
                self.flush()
        finally:
            os.close(self._fd)
            self._fd = -1


def create_journal(journal_file: str | None = None, *,
                   on_failure: OnFailure | None = None) -> pysyncobj.journal.Journal:
    """pysyncobj's ``createJournal`` contract: durable with a path, in memory without."""
    if journal_file is None:
        return pysyncobj.journal.MemoryJournal()
    return DurableJournal(journal_file, on_failure)


class KeptEntriesFilter(logging.Filter):
    """pysyncobj logs CRITICAL "truncating already-applied log entries ... may have diverged"
    before every cut past an applied entry; with this journal no matching entry is dropped
    (``DurableJournal.deleteEntriesFrom``), so the line would only alarm. Real conflicts
    are logged by the journal itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("truncating already-applied log entries")


def install(on_failure: OnFailure | None = None) -> None:
    """Make every SyncObj created from now on use DurableJournal (idempotent; the last
    ``on_failure`` given wins). The sidecar passes one that exits the process."""
    if not callable(getattr(pysyncobj.syncobj, "createJournal", None)):
        raise RuntimeError("pysyncobj.syncobj.createJournal is gone: the journal seam moved")
    factory: Callable[..., Any] = functools.partial(create_journal, on_failure=on_failure)
    pysyncobj.syncobj.createJournal = factory
