"""The metadata store on a really full disk: a small tmpfs (needs root; CI is) filled to the
last byte by a plain file. PUT-like commands get 503 InsufficientStorage and leave nothing;
deletes spend the reserve file and it is topped up again; a checkpoint is never fatal."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.tmpfs import tmpfs

from bleepstore import errors
from bleepstore.metadata.apply import HANDLERS
from bleepstore.metadata.commands import (
    CreateBucket,
    DeleteObjects,
    GcSwept,
    PutCredential,
    PutObject,
)
from bleepstore.metadata.group_commit import GroupCommitter, Pending
from bleepstore.metadata.reserve import SpaceReserve, free_bytes, is_disk_full
from bleepstore.metadata.sqlite import SqliteStore
from bleepstore.model import Bucket, Credential, ObjectMeta

NOW = "2026-01-01T00:00:00.000Z"
KiB, MiB = 1024, 1024 * 1024
RESERVE = MiB


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", "8m") as mount:
        yield mount


def fill(disk: Path, leave: int = 0) -> Path:
    """Write a plain file until the disk is full, or has about ``leave`` bytes left."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while free_bytes(disk) > leave:
            os.write(fd, b"\xa5" * min(64 * KiB, max(free_bytes(disk) - leave, 4 * KiB)))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def put(key: str, n: int) -> PutObject:
    meta = ObjectMeta("b", key, n, f'"{n:032x}"', NOW, f"blobs/00/00/{n:032x}")
    return PutObject(meta, NOW, NOW)


def user(secret: str) -> PutCredential:
    return PutCredential(Credential("AK", secret, "o" * 64, "o", True, NOW))


def store_on(disk: Path, reserve: int = RESERVE) -> SqliteStore:
    s = SqliteStore(disk / "m.db", reserve_bytes=reserve)
    s.migrate()
    s.apply(CreateBucket(Bucket("b", "us-east-1", "o" * 64, "o", "{}", NOW), 100, True))
    s.apply(user("s1"))
    for n, key in enumerate(("a", "b", "c"), start=1):
        s.apply(put(key, n))
    return s


def test_the_reserve_is_really_allocated_and_given_back(disk: Path) -> None:
    reserve = SpaceReserve(disk / "m.db.reserve", RESERVE)
    before = free_bytes(disk)
    assert reserve.top_up() == RESERVE
    assert os.stat(reserve.path).st_blocks * 512 >= RESERVE  # not sparse
    assert before - free_bytes(disk) >= RESERVE
    assert reserve.release("a test")
    assert not reserve.path.exists()
    assert free_bytes(disk) == before
    assert not reserve.release("again")  # nothing left to free


def test_the_reserve_takes_what_the_disk_can_spare(disk: Path) -> None:
    reserve = SpaceReserve(disk / "m.db.reserve", RESERVE)
    filler = fill(disk, leave=300 * KiB)
    held = reserve.top_up()
    assert 200 * KiB <= held < RESERVE
    assert free_bytes(disk) == 0
    assert reserve.top_up() == held  # a full disk: nothing to do, nothing raised
    filler.unlink()
    assert reserve.top_up() == RESERVE


def test_disk_full_is_told_from_other_errors(disk: Path) -> None:
    conn = sqlite3.connect(disk / "t.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (v BLOB)")
    fill(disk)
    with pytest.raises(sqlite3.OperationalError) as full:
        conn.execute("INSERT INTO t VALUES (?)", (os.urandom(8 * KiB),))
    with pytest.raises(OSError) as enospc:
        (disk / "more").write_bytes(b"x" * 8 * KiB)
    with pytest.raises(sqlite3.OperationalError) as syntax:
        conn.execute("SELEC 1")
    with pytest.raises(OSError) as missing:
        (disk / "nowhere" / "x").write_bytes(b"")
    assert is_disk_full(full.value) and is_disk_full(enospc.value)
    assert not is_disk_full(syntax.value) and not is_disk_full(missing.value)
    conn.close()


def test_a_write_on_a_full_disk_is_503_and_keeps_the_reserve(disk: Path) -> None:
    s = store_on(disk)
    fill(disk)
    with pytest.raises(errors.InsufficientStorage) as exc:
        s.apply(put("new", 9))
    assert exc.value.status == 503 and exc.value.code == "ServiceUnavailable"
    assert s.get_object("b", "new") is None
    assert s.reserve.held() == RESERVE


def test_a_delete_on_a_full_disk_spends_the_reserve_then_tops_it_up(
        disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = store_on(disk)
    filler = fill(disk)
    with caplog.at_level(logging.WARNING, "bleepstore.metadata"):
        removed = s.apply(DeleteObjects("b", ("a", "b"), NOW))
    assert [r[0] for r in removed] == ["a", "b"]
    assert s.get_object("b", "a") is None and s.get_object("b", "c") is not None
    assert "released the metadata reserve" in caplog.text
    assert RESERVE - 64 * KiB < s.reserve.held() < RESERVE  # only the commit's WAL frames
    filler.unlink()  # space is back: the next delete-like command restores it in full
    s.apply(GcSwept(done=(), retry=()))
    assert s.reserve.held() == RESERVE


def test_without_a_reserve_a_delete_on_a_full_disk_is_503(disk: Path) -> None:
    s = store_on(disk, reserve=0)
    fill(disk)
    with pytest.raises(errors.InsufficientStorage):
        s.apply(DeleteObjects("b", ("a",), NOW))
    assert s.get_object("b", "a") is not None


def test_a_checkpoint_on_a_full_disk_is_a_warning(
        disk: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = store_on(disk, reserve=0)  # every page is still in the WAL: the database must grow
    fill(disk)
    with caplog.at_level(logging.WARNING, "bleepstore.metadata"):
        s.checkpoint()
    assert "checkpoint failed, the WAL is kept" in caplog.text
    assert s.get_object("b", "c") is not None


def test_an_unchanged_credential_needs_no_space(disk: Path) -> None:
    """Every start re-applies the bootstrap credential."""
    s = store_on(disk, reserve=0)
    fill(disk)
    s.apply(user("s1"))
    with pytest.raises(errors.InsufficientStorage):
        s.apply(user("s2"))  # a real change needs space; with no reserve, 503


def test_a_database_closed_cleanly_opens_on_a_full_disk(disk: Path) -> None:
    """No -shm file after a clean close; creating it needs space the reserve gives."""
    store_on(disk).close()
    assert not Path(str(disk / "m.db") + "-shm").exists()
    fill(disk)
    s = SqliteStore(disk / "m.db", reserve_bytes=RESERVE)
    s.migrate()
    assert s.get_object("b", "c") is not None
    assert RESERVE - 64 * KiB < s.reserve.held() < RESERVE


def test_a_credential_change_on_a_full_disk_uses_the_reserve(disk: Path) -> None:
    s = store_on(disk)
    fill(disk)
    s.apply(user("rotated"))
    cred = s.get_credential("AK")
    assert cred is not None and cred.secret_key == "rotated"


def test_when_sqlite_rolls_the_batch_back_every_command_fails(disk: Path) -> None:
    """A cache spill that hits a full disk makes SQLite roll back the whole transaction
    under a command: the commands before it in the batch must not be acknowledged."""
    s = store_on(disk)
    conn = sqlite3.connect(disk / "m.db", isolation_level=None)
    conn.execute("PRAGMA cache_size=5")  # spill to the WAL mid-transaction
    committer = GroupCommitter(lambda: conn, lambda c: c.execute("BEGIN IMMEDIATE"),
                               lambda cmd: HANDLERS[type(cmd)])
    fill(disk)
    batch = [Pending(put("small", 7))]
    batch += [Pending(put(f"k{'x' * 900}{n}", n + 10)) for n in range(300)]
    committer._run(batch)
    assert all(item.finished and item.error is not None for item in batch)
    assert all(is_disk_full(item.error) for item in batch if item.error is not None)
    assert not conn.in_transaction
    assert s.get_object("b", "small") is None
    conn.close()
