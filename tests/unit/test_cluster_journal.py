"""DurableJournal on real files: crash safety (torn tails, kill -9 in the middle of an add or
a compaction), the exact semantics of pysyncobj's MemoryJournal, durable meta, and a real
three-node pysyncobj cluster that restarts on its journals."""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pysyncobj.journal
import pysyncobj.syncobj
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pysyncobj import SyncObj, SyncObjConf, replicated

from bleepstore.cluster import journal as jmod
from bleepstore.cluster.journal import MAGIC, DurableJournal, JournalError, encode_record

REPO = Path(__file__).resolve().parents[2]
CHILD_ENV = {**os.environ, "PYTHONPATH": str(REPO)}

Entry = tuple[bytes, int, int]


def cmd(i: int) -> bytes:
    """Commands of varied length, including empty, derived from the index."""
    return (b"%08d" % i) * (i % 5) * 8


def entries(first: int, last: int) -> list[Entry]:
    return [(cmd(i), i, 1 + i // 7) for i in range(first, last + 1)]


def write_journal(path: Path, items: list[Entry]) -> None:
    """A journal file as DurableJournal writes it (fast: no fsync per record)."""
    path.write_bytes(MAGIC + b"".join(encode_record(*e) for e in items))


def reopen(path: Path) -> list[Entry]:
    j = DurableJournal(path)
    try:
        return list(j[:])
    finally:
        j._destroy()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[DurableJournal]:
    j = DurableJournal(tmp_path / "raft.journal")
    yield j
    j._destroy()


# --- entries and reopen ------------------------------------------------------------------


def test_new_journal_is_only_the_magic(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    j = DurableJournal(path)
    assert len(j) == 0 and j[:] == [] and path.read_bytes() == MAGIC
    j._destroy()
    assert reopen(path) == []


def test_entries_survive_reopen_and_appends_continue(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    j = DurableJournal(path)
    big = os.urandom(200_000)
    for e in [*entries(1, 20), (big, 21, 9), (b"", 22, 9)]:
        j.add(*e)
    assert j[20] == (big, 21, 9) and j[-1] == (b"", 22, 9)
    j._destroy()
    again = DurableJournal(path)
    assert again[:] == [*entries(1, 20), (big, 21, 9), (b"", 22, 9)]
    again.add(b"more", 23, 9)
    again._destroy()
    assert reopen(path)[-2:] == [(b"", 22, 9), (b"more", 23, 9)]


# --- torn tails and damage ---------------------------------------------------------------

LAST = len(encode_record(*entries(11, 11)[0]))  # a 64-byte command


@pytest.mark.parametrize("cut", [1, 4, 8, 12, 23, 24, LAST - 1], ids=lambda c: f"cut{c}")
def test_record_cut_short_is_dropped_and_the_prefix_kept(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "raft.journal"
    write_journal(path, entries(1, 11))
    intact = path.stat().st_size - LAST
    os.truncate(path, intact + cut)
    j = DurableJournal(path)
    assert j[:] == entries(1, 10) and path.stat().st_size == intact
    j.add(b"after", 11, 5)
    j._destroy()
    assert reopen(path) == [*entries(1, 10), (b"after", 11, 5)]


GARBAGE = {
    "one zero": b"\0",
    "zero filled (ext4 after a crash)": b"\0" * 4096,
    "random short": bytes(random.Random(1).randrange(256) for _ in range(7)),
    "random long": random.Random(2).randbytes(5000),
    "plausible header, bad crc": encode_record(b"x", 11, 2)[:4] + b"\0\0\0\0" + b"y" * 17,
}


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_tail_is_dropped(tmp_path: Path, garbage: bytes) -> None:
    path = tmp_path / "raft.journal"
    write_journal(path, entries(1, 10))
    size = path.stat().st_size
    with path.open("ab") as f:
        f.write(garbage)
    j = DurableJournal(path)
    assert j[:] == entries(1, 10) and path.stat().st_size == size
    j.add(b"next", 11, 2)
    j._destroy()
    assert reopen(path)[-1] == (b"next", 11, 2)


def test_damage_before_intact_records_is_refused_not_truncated(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    write_journal(path, entries(1, 5))
    data = bytearray(path.read_bytes())
    second = len(MAGIC) + len(encode_record(*entries(1, 1)[0]))
    data[second + 30] ^= 0xFF  # inside the command of record 2 of 5
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match="damaged record"):
        DurableJournal(path)
    assert path.read_bytes() == bytes(data)


def test_pysyncobj_file_journal_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    theirs = pysyncobj.journal.FileJournal(str(path))
    theirs.add(b"cmd", 1, 1)
    theirs._destroy()
    before = path.read_bytes()
    with pytest.raises(JournalError, match="not a BleepStore journal"):
        DurableJournal(path)
    assert path.read_bytes() == before


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8), st.data())
def test_scan_of_any_prefix_is_the_records_wholly_inside_it(
        commands: list[bytes], data: st.DataObject) -> None:
    items = [(c, i + 1, 3) for i, c in enumerate(commands)]
    records = [encode_record(*e) for e in items]
    blob = MAGIC + b"".join(records)
    cut = data.draw(st.integers(len(MAGIC), len(blob)))
    got, offsets, end = jmod.scan(blob[:cut])
    ends = [len(MAGIC) + sum(map(len, records[:k + 1])) for k in range(len(records))]
    whole = sum(1 for e in ends if e <= cut)
    assert got == items[:whole] and len(offsets) == whole
    assert end == (ends[whole - 1] if whole else len(MAGIC))


# --- the same semantics as pysyncobj's MemoryJournal -------------------------------------

Op = tuple[str, int]
SEQUENCES: dict[str, list[Op]] = {
    "append then trim both ends": [("add", 6), ("from", 4), ("add", 2), ("to", 2), ("add", 1)],
    "from 0 empties": [("add", 4), ("from", 0), ("add", 2)],
    "from at or past the end changes nothing": [("add", 3), ("from", 3), ("from", 10)],
    "negative from": [("add", 5), ("from", -2), ("from", -9)],
    "to 0 changes nothing": [("add", 3), ("to", 0)],
    "to past the end empties": [("add", 3), ("to", 7), ("add", 2)],
    "negative to": [("add", 5), ("to", -2), ("to", -9)],
    "clear then add": [("add", 4), ("clear", 0), ("add", 3)],
    "everything on empty": [("from", 0), ("to", 0), ("clear", 0), ("to", 3), ("from", -1),
                            ("add", 1)],
    "dump load (clear, add, add)": [("add", 6), ("clear", 0), ("add", 2), ("add", 3),
                                    ("from", 3), ("to", 1)],
}
SLICE_BOUNDS = [None, -7, -3, -1, 0, 1, 2, 3, 5, 9]


def apply_ops(ops: list[Op], ours: DurableJournal, path: Path) -> None:
    """The MemoryJournal is the model, with Raft's truncation rule: a ``from`` takes effect
    only when the next ``add`` conflicts (here: always, every add is a new index); a
    ``from`` followed by anything else keeps the entries."""
    theirs = pysyncobj.journal.MemoryJournal()
    counter = 0
    for n, (name, arg) in enumerate(ops):
        if name == "add":
            for _ in range(arg):
                counter += 1
                for j in (ours, theirs):
                    j.add(cmd(counter), counter, counter // 3)
        elif name == "from":
            ours.deleteEntriesFrom(arg)
            if n + 1 < len(ops) and ops[n + 1][0] == "add" and ops[n + 1][1] > 0:
                theirs.deleteEntriesFrom(arg)
                continue  # a read now would settle the cut as "keep"
        elif name == "to":
            ours.deleteEntriesTo(arg)
            theirs.deleteEntriesTo(arg)
        else:
            ours.clear()
            theirs.clear()
        assert_same(ours, theirs)
        assert reopen(path) == theirs[:]


def assert_same(ours: DurableJournal, theirs: Any) -> None:
    n = len(theirs)
    assert len(ours) == n
    for i in range(-n - 2, n + 2):
        if -n <= i < n:
            assert ours[i] == theirs[i]
        else:
            with pytest.raises(IndexError):
                ours[i]
    for a in SLICE_BOUNDS:
        for b in SLICE_BOUNDS:
            assert ours[a:b] == theirs[a:b]


@pytest.mark.parametrize("ops", SEQUENCES.values(), ids=SEQUENCES.keys())
def test_same_semantics_as_memory_journal(journal: DurableJournal, tmp_path: Path,
                                          ops: list[Op]) -> None:
    apply_ops(ops, journal, tmp_path / "raft.journal")


OPS = st.lists(st.tuples(st.sampled_from(["add", "from", "to", "clear"]),
                         st.integers(-6, 6)), max_size=12)


@settings(max_examples=40, deadline=None)
@given(OPS)
def test_random_operations_match_memory_journal(ops: list[Op]) -> None:
    ops = [(name, abs(arg) if name == "add" else arg) for name, arg in ops]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raft.journal"
        ours = DurableJournal(path)
        try:
            apply_ops(ops, ours, path)
        finally:
            ours._destroy()


# --- kill -9 -----------------------------------------------------------------------------

CHILD_PRELUDE = """
import sys
from bleepstore.cluster.journal import DurableJournal
def cmd(i): return (b"%08d" % i) * (i % 5) * 8
j = DurableJournal(sys.argv[1])
print("ready", flush=True)
"""
ADD_CHILD = CHILD_PRELUDE + """
for i in range(len(j) + 1, 10 ** 6):
    j.add(cmd(i), i, 1 + i // 7)
    print(i, flush=True)
"""
COMPACT_CHILD = CHILD_PRELUDE + """
while True:
    j.deleteEntriesTo(1)
    print("D", j[0][1], j[-1][1], flush=True)
    n = j[-1][1] + 1
    j.add(cmd(n), n, 1 + n // 7)
    print("A", j[0][1], j[-1][1], flush=True)
"""


def run_and_kill(code: str, path: Path, after: float) -> list[str]:
    """Run ``code`` on the journal at ``path``, SIGKILL it ``after`` s after it is ready;
    the lines it printed (each printed after the operation it reports had returned)."""
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=REPO, env=CHILD_ENV,
                             stdout=subprocess.PIPE)
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == b"ready\n"
        time.sleep(after)  # the random moment of the crash
    finally:
        child.send_signal(signal.SIGKILL)
        out = child.communicate(timeout=10)[0]
    assert child.returncode == -signal.SIGKILL
    return [line for line in out.decode().splitlines(keepends=True) if line.endswith("\n")]


def test_every_add_that_returned_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    rng = random.Random(7)
    for _ in range(3):
        printed = [int(line) for line in run_and_kill(ADD_CHILD, path, rng.uniform(0.05, 0.3))]
        got = reopen(path)
        assert printed, "the child never got to add"
        # Every acknowledged index is there; at most the one add in flight was added too.
        assert got == entries(1, len(got)) and len(got) - printed[-1] in (0, 1)


def test_kill_9_during_compaction_leaves_old_or_new_journal(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    rng = random.Random(11)
    write_journal(path, entries(1, 3000))
    state, torn = (1, 3000), 0
    for _ in range(8):
        lines = run_and_kill(COMPACT_CHILD, path, rng.uniform(0.0, 0.25))
        if lines:
            op, first, last = lines[-1].split()
            state = int(first), int(last)
            following = (state[0], state[1] + 1) if op == "D" else (state[0] + 1, state[1])
        else:
            following = (state[0] + 1, state[1])
        torn += (tmp_path / "raft.journal.tmp").exists()
        got = reopen(path)
        assert (got[0][1], got[-1][1]) in (state, following)
        assert got == entries(got[0][1], got[-1][1])
        state = got[0][1], got[-1][1]
    assert not (tmp_path / "raft.journal.tmp").exists()
    print(f"kills that interrupted a rewrite before its rename: {torn} of 8")


STRACE_CHILD = """
import os, sys
from bleepstore.cluster.journal import DurableJournal
j = DurableJournal(sys.argv[1])
for i in range(1, 4):
    j.add(b"cmd%d" % i, i, 1)
    os.write(1, b"added %d\\n" % i)
"""


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")
def test_add_writes_then_fdatasyncs_before_returning(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    write_journal(path, [])
    trace = tmp_path / "trace"
    proc = subprocess.run(["strace", "-f", "-e", "trace=openat,write,fdatasync", "-o",
                           str(trace), sys.executable, "-c", STRACE_CHILD, str(path)],
                          cwd=REPO, env=CHILD_ENV, capture_output=True, timeout=30)
    if proc.returncode != 0 and b"ptrace" in proc.stderr:
        pytest.skip("ptrace not permitted here")
    assert proc.returncode == 0, proc.stderr
    calls = trace.read_text().splitlines()
    opened = [ln for ln in calls if f'"{path}"' in ln and "openat" in ln]
    fd = re.search(r"= (\d+)$", opened[-1])
    assert fd is not None
    seen = [ln.split(None, 1)[1] for ln in calls if re.search(
        rf"\b(write|fdatasync)\(({fd[1]}|1)[,)]", ln)]
    steps = [s.split("(")[0] + ("" if f"({fd[1]}" in s else " stdout") for s in seen]
    assert steps == ["write", "fdatasync", "write stdout"] * 3


# --- meta --------------------------------------------------------------------------------


def test_term_and_vote_are_on_disk_when_set_returns(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    j = DurableJournal(path)
    assert (j.getCurrentTerm(), j.getVotedForNodeId()) == (0, None)
    for term, voted in [(3, "127.0.0.1:4321"), (4, None), (5, 7), (6, "node-ä:1")]:
        j.setCurrentTerm(term, voted)
        meta = json.loads((tmp_path / "raft.journal.meta").read_text())
        assert (meta["currentTerm"], meta["votedForNodeId"]) == (term, voted)
        other = DurableJournal(path)  # no close of the first: a crash right now
        assert (other.getCurrentTerm(), other.getVotedForNodeId()) == (term, voted)
        assert type(other.getVotedForNodeId()) is type(voted)
        other._destroy()
    with pytest.raises(TypeError):
        j.setCurrentTerm(7, ("127.0.0.1", 4321))
    assert j.getCurrentTerm() == 6
    j._destroy()
    assert not (tmp_path / "raft.journal.meta.tmp").exists()


def test_commit_index_stored_on_timer_and_close_and_clamped(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    j = DurableJournal(path)
    assert j.getRaftCommitIndex() == 1
    for e in entries(1, 5):
        j.add(*e)
    j.setRaftCommitIndex(3)
    assert j.getRaftCommitIndex() == 3
    crashed = DurableJournal(path)
    assert crashed.getRaftCommitIndex() == 1  # not stored before the timer
    crashed._destroy()
    j.onOneSecondTimer()
    assert (crashed := DurableJournal(path)).getRaftCommitIndex() == 3
    crashed._destroy()
    j.setRaftCommitIndex(9)  # past the end: stored, never reported
    assert j.getRaftCommitIndex() == 5
    j._destroy()
    again = DurableJournal(path)
    assert again.getRaftCommitIndex() == 5
    for e in entries(6, 12):
        again.add(*e)
    assert again.getRaftCommitIndex() == 9
    again.deleteEntriesFrom(2)
    again.add(b"other", 3, 99)  # conflicts with entry 3: entries 3.. go
    assert again.getRaftCommitIndex() == 3 and len(again) == 3
    again._destroy()


def test_a_resent_shorter_append_keeps_what_the_follower_acknowledged(tmp_path: Path) -> None:
    """pysyncobj cuts a follower's log after prevLogIdx and appends the message's entries;
    a resent AppendEntries with fewer entries would shrink the log below what it had
    acknowledged (and applied). Raft: only a conflicting entry is dropped."""
    path = tmp_path / "raft.journal"
    j = DurableJournal(path)
    for e in entries(1, 10):
        j.add(*e)
    j.deleteEntriesFrom(4)  # prevLogIdx = 4, the message carries entries 5 and 6 only
    for e in entries(5, 6):
        j.add(*e)
    assert [e[1] for e in j[:]] == list(range(1, 11))
    j.deleteEntriesFrom(8)  # a heartbeat with prevLogIdx = 8: nothing to add
    assert len(j) == 10
    j.deleteEntriesFrom(6)  # a new leader's entry 7 in another term: 7.. conflict
    j.add(b"new", 7, 50)
    assert [e[1:] for e in j[5:]] == [(6, entries(6, 6)[0][2]), (7, 50)]
    j._destroy()
    assert [e[1] for e in reopen(path)] == list(range(1, 8))


def test_an_unconfirmed_cut_over_a_membership_change_is_carried_out(tmp_path: Path) -> None:
    """pysyncobj rolls back a membership change past prevLogIdx in memory before its cut:
    the journal must not keep that entry."""
    j = DurableJournal(tmp_path / "raft.journal")
    for e in entries(1, 3):
        j.add(*e)
    j.add(b"\x02membership", 4, 1)
    j.deleteEntriesFrom(2)
    assert len(j) == 2
    j._destroy()


def test_unreadable_meta_is_refused(tmp_path: Path) -> None:
    (tmp_path / "raft.journal.meta").write_text("{not json")
    with pytest.raises(JournalError, match="meta"):
        DurableJournal(tmp_path / "raft.journal")


# --- I/O failure -------------------------------------------------------------------------


def test_io_error_calls_on_failure_and_refuses_every_later_change(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    failures: list[OSError] = []
    j = DurableJournal(path, on_failure=failures.append)
    j.add(b"ok", 1, 1)
    ro = os.open(os.devnull, os.O_RDONLY)
    os.dup2(ro, j._fd)  # the journal's descriptor now refuses writes (EBADF)
    os.close(ro)
    with pytest.raises(OSError):
        j.add(b"lost", 2, 1)
    assert len(failures) == 1 and j[:] == [(b"ok", 1, 1)]
    with pytest.raises(JournalError, match="I/O error"):
        j.add(b"retry", 2, 1)
    with pytest.raises(JournalError):
        j.setCurrentTerm(2, None)
    j._destroy()
    assert reopen(path) == [(b"ok", 1, 1)]


# --- the seam ----------------------------------------------------------------------------


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """install(), undone after the test (the seam is process-global)."""
    monkeypatch.setattr(pysyncobj.syncobj, "createJournal", pysyncobj.syncobj.createJournal)
    jmod.install()


def test_install_is_idempotent_and_keeps_memory_journals(installed: None,
                                                         tmp_path: Path) -> None:
    jmod.install()
    made = pysyncobj.syncobj.createJournal(str(tmp_path / "j"))
    assert isinstance(made, DurableJournal)
    made._destroy()
    assert isinstance(pysyncobj.syncobj.createJournal(None), pysyncobj.journal.MemoryJournal)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Appender(SyncObj):  # type: ignore[misc]
    def __init__(self, addr: str, partners: list[str], journal_file: str) -> None:
        self.values: list[int] = []  # before SyncObj starts replaying on its tick thread
        self.indexes: list[int] = []  # raftLastApplied + 1, seen inside the method
        self.lock = threading.Lock()
        super().__init__(addr, partners, SyncObjConf(
            journalFile=journal_file, appendEntriesUseBatch=False,
            dynamicMembershipChange=True, raftMinTimeout=0.3, raftMaxTimeout=0.6,
            appendEntriesPeriod=0.05, connectionRetryTime=0.1, connectionTimeout=2.0,
            autoTickPeriod=0.01))

    @replicated  # type: ignore[misc]
    def append(self, value: int) -> int:
        with self.lock:
            self.indexes.append(self.raftLastApplied + 1)
            self.values.append(value)
        return int(self.raftLastApplied + 1)

    def status(self) -> dict[str, Any]:
        for _ in range(50):  # getStatus iterates dicts the tick thread changes
            try:
                return dict(self.getStatus())
            except RuntimeError:
                time.sleep(0.001)
        raise RuntimeError("no status")


class Cluster:
    def __init__(self, tmp_path: Path) -> None:
        self.addrs = [f"127.0.0.1:{p}" for p in free_ports(3)]
        self.files = [str(tmp_path / f"node{i}.journal") for i in range(3)]
        self.nodes: list[Appender] = []

    def start(self) -> list[Appender]:
        self.nodes = [Appender(a, [o for o in self.addrs if o != a], f)
                      for a, f in zip(self.addrs, self.files, strict=True)]
        wait_for(self.settled, 20, "a leader known to all three, all ready")
        return self.nodes

    def settled(self) -> bool:
        leaders = {n.status()["leader"] for n in self.nodes}
        return len(leaders) == 1 and None not in leaders and all(n.isReady() for n in self.nodes)

    def stop(self) -> None:
        for n in self.nodes:
            n.destroy()
        for n in self.nodes:
            wait_for(lambda n=n: not n.tick_thread_alive(), 10, "a tick thread to end")


def test_three_nodes_restart_on_their_journals_and_replay(installed: None,
                                                          tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        nodes = cluster.start()
        got = [nodes[0].append(i, sync=True, timeout=5) for i in range(50)]
        # Inside the replicated method raftLastApplied + 1 is the entry's log index: the
        # call's result is that value on the calling node, strictly increasing ...
        assert got == sorted(set(got)) and nodes[0].indexes == got
        wait_for(lambda: all(n.values == list(range(50)) for n in nodes), 10, "replication")
        assert all(n.indexes == got for n in nodes)
        # ... and the last one is where every node's commit index and last_applied stop.
        wait_for(lambda: all(n.status()["commit_idx"] == n.status()["last_applied"] == got[-1]
                             for n in nodes), 10, "commit_idx == last applied entry")
    finally:
        cluster.stop()
    for journal_file in cluster.files:  # ... and each journal holds the call at that index
        by_index = {idx: command for command, idx, _ in reopen(Path(journal_file))}
        calls = [pickle.loads(by_index[idx][1:]) for idx in got]
        assert [call[1] for call in calls] == [(i,) for i in range(50)]
    try:
        nodes = cluster.start()
        wait_for(lambda: all(len(n.values) == 50 for n in nodes), 10, "replay")
        for n in nodes:
            assert n.values == list(range(50)) and n.indexes == got
        assert nodes[1].append(50, sync=True, timeout=5) > got[-1]
        wait_for(lambda: all(n.values == list(range(51)) for n in nodes), 10, "new entry")
    finally:
        cluster.stop()
