"""Worker connection balance: the shared table and the hand-back rule (web/balance.py)."""

from __future__ import annotations

import os

import pytest

from bleepstore.web.balance import ConnectionTable, excess


@pytest.mark.parametrize(("mine", "counts", "expected"), [
    (16, [16, 0], 8),  # alone when the client opened its pool
    (64, [64, 0], 32),
    (8, [8, 0], 4),
    (16, [16, 0, 0, 0], 12),
    (9, [9, 7], 0),  # ordinary unevenness: not worth a reconnect
    (10, [10, 6], 0),
    (36, [36, 28], 0),  # a quarter of the share (8) is the bar at this size
    (42, [42, 22], 10),
    (3, [3, 0], 0),  # too few to matter
    (0, [0, 16], 0),  # the emptier worker never hands back
    (16, [16], 0),  # no peer (yet, or any more)
    (16, [], 0),
])
def test_only_a_clear_excess_is_handed_back(mine: int, counts: list[int],
                                            expected: int) -> None:
    assert excess(mine, counts) == expected


NOW = 100.0


def test_counts_are_shared_with_forked_workers_and_dead_ones_drop_out() -> None:
    table = ConnectionTable(slots=8)  # created before the fork, as in the master
    child = os.fork()
    if child == 0:  # a worker: publishes its own slot, then exits
        table.publish(2, os.getpid(), 11, NOW)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    assert status == 0
    assert table.peer_counts(os.getpid(), NOW - 1) == []  # the child's slot: pid reaped


def test_a_live_worker_counts_until_it_exits() -> None:
    table = ConnectionTable(slots=8)
    published_r, published_w = os.pipe()
    done_r, done_w = os.pipe()
    child = os.fork()
    if child == 0:
        table.publish(4, os.getpid(), 7, NOW)
        os.write(published_w, b"x")
        os.read(done_r, 1)  # alive until the parent has looked
        os._exit(0)
    try:
        assert os.read(published_r, 1) == b"x"
        table.publish(0, os.getpid(), 2, NOW)
        assert table.peer_counts(os.getpid(), NOW - 1) == [7]  # its own slot never counts
        assert table.peer_counts(0, NOW - 1) == [2, 7]
        table.publish(0, os.getpid(), 3, NOW)  # a worker overwrites only its own slot
        assert table.peer_counts(0, NOW - 1) == [3, 7]
    finally:
        os.write(done_w, b"x")
        os.waitpid(child, 0)
        for fd in (published_r, published_w, done_r, done_w):
            os.close(fd)
    assert table.peer_counts(0, NOW - 1) == [3]


def test_slots_wrap_around() -> None:
    table = ConnectionTable(slots=4)
    table.publish(5, os.getpid(), 9, NOW)  # worker age 5 -> slot 1
    table.publish(1, os.getpid(), 4, NOW)  # age 1 shares it: the newer write wins
    assert table.peer_counts(0, NOW - 1) == [4]


def test_only_workers_polling_the_listener_count() -> None:
    """A stopped or stuck worker stops publishing, one not accepting publishes 0: neither
    is yielded new connections nor handed back old ones."""
    table = ConnectionTable(slots=8)
    peer = os.getppid()  # alive, and not this process
    table.publish(1, peer, 4, NOW - 0.1)
    table.publish(2, peer, 2, NOW - 0.5)  # polled too long ago
    table.publish(3, peer, 1, 0.0)  # not accepting
    assert table.peer_counts(os.getpid(), NOW - 0.3) == [4]
    table.publish(1, 2 ** 22 + 1, 0, NOW)  # above any pid_max: dead
    assert table.peer_counts(os.getpid(), NOW - 0.3) == []
