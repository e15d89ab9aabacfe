"""Group commit on a real SQLite file: concurrent commands are batched, yet each one
succeeds or fails exactly as if applied alone."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from bleepstore import errors
from bleepstore.metadata.commands import CreateBucket, PutObject
from bleepstore.metadata.group_commit import GroupCommitter
from bleepstore.metadata.sqlite import SqliteStore
from bleepstore.model import Bucket, ObjectMeta

NOW = "2026-01-01T00:00:00.000Z"


def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "m.db")
    s.migrate()
    s.apply(CreateBucket(Bucket("b", "us-east-1", "o" * 64, "o", "{}", NOW), 100, True))
    return s


def put(key: str, n: int, if_none_match: str | None = None) -> PutObject:
    meta = ObjectMeta("b", key, n, f'"{n:032x}"', NOW, f"blobs/00/00/{n:032x}")
    return PutObject(meta, NOW, NOW, if_none_match=if_none_match)


def run_threads(n: int, fn: Any) -> list[Any]:
    results: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def target(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:  # collected, asserted below
            results[i] = exc

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_racing_if_none_match_has_exactly_one_winner(tmp_path: Path) -> None:
    s = store(tmp_path)
    results = run_threads(32, lambda i: s.apply(put("race", i + 1, "*")))
    winners = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
    assert len(winners) == 1
    assert all(isinstance(r, errors.PreconditionFailed) for i, r in enumerate(results)
               if i not in winners)
    obj = s.get_object("b", "race")
    assert obj is not None and obj.size == winners[0] + 1
    assert s.stats()["object_count"] == 1


def test_a_failing_command_does_not_spoil_its_batch(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.apply(put("exists", 1))

    def op(i: int) -> Any:
        if i % 2:
            return s.apply(put("exists", 100 + i, "*"))  # fails: key exists
        return s.apply(put(f"k{i}", 100 + i))

    results = run_threads(40, op)
    for i, r in enumerate(results):
        if i % 2:
            assert isinstance(r, errors.PreconditionFailed)
        else:
            assert r == (None, None)  # (no blob replaced, no version id: never versioned)
    assert s.stats()["object_count"] == 21
    assert {o.key for o in s.scan_objects("b", None, "", 100)} == {"exists"} | {
        f"k{i}" for i in range(0, 40, 2)}


def test_commands_are_batched_under_concurrency(tmp_path: Path) -> None:
    s = store(tmp_path)
    commits = 0
    original = s._begin

    def counting_begin(conn: sqlite3.Connection) -> None:
        nonlocal commits
        commits += 1
        original(conn)

    s._committer.begin = counting_begin
    run_threads(48, lambda i: s.apply(put(f"k{i}", i + 1)))
    assert s.stats()["object_count"] == 48
    assert commits < 48  # at least some commands shared a transaction


def test_commit_failure_fails_every_command_of_the_batch(tmp_path: Path) -> None:
    s = store(tmp_path)
    conn = s.conn()

    def broken_begin(c: sqlite3.Connection) -> None:
        raise errors.ServiceUnavailable()

    committer = GroupCommitter(lambda: conn, broken_begin, lambda cmd: lambda c, x: None)
    with pytest.raises(errors.ServiceUnavailable):
        committer.submit(put("x", 1))
    assert s.get_object("b", "x") is None
