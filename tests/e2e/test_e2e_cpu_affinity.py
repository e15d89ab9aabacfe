"""Each worker's threads run on a CPU of their own (bleepstore/cpus.py; issue 17: GIL
hand-overs between a worker's threads on two cores cost 10-30 % of a small request's CPU).
Real gunicorn, affinities read back from the kernel for every thread of every worker."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from support.clients import boto3_client
from support.server import Server

ALL = frozenset(os.sched_getaffinity(0))
pytestmark = pytest.mark.skipif(len(ALL) < 2, reason="pinning needs 2 or more CPUs")


def _threads_cpus(pid: int) -> set[frozenset[int]]:
    """The CPU sets of every thread of ``pid``."""
    out = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out.add(frozenset(os.sched_getaffinity(int(tid))))
        except ProcessLookupError:  # a thread that just ended
            pass
    return out


def _workers(srv: Server, n: int, exclude: frozenset[int] = frozenset()) -> list[int]:
    deadline = time.monotonic() + 30
    while True:
        pids = [p for p in srv.worker_pids() if p not in exclude]
        if len(pids) == n:
            return pids
        assert time.monotonic() < deadline, f"workers: {srv.worker_pids()}"
        time.sleep(0.1)


def _cpu_of(pid: int) -> int:
    sets = _threads_cpus(pid)
    assert len(sets) == 1 and len(next(iter(sets))) == 1, sets  # every thread, one CPU
    return next(iter(next(iter(sets))))


def test_workers_get_a_cpu_each_keep_it_after_a_large_put_and_a_replacement_takes_it(
        tmp_path: Path) -> None:
    srv = Server(tmp_path / "srv").start()
    try:
        first, second = _workers(srv, 2)
        s3 = boto3_client(srv.endpoint)
        s3.create_bucket(Bucket="bkt")
        for i in range(8):  # small bodies, and large ones (the write-behind widens a thread)
            size = 9 << 20 if i % 2 else 1 << 20
            s3.put_object(Bucket="bkt", Key=f"k{i}", Body=os.urandom(size))
        by_pid = {pid: _cpu_of(pid) for pid in (first, second)}
        assert set(by_pid.values()) == {min(ALL), sorted(ALL)[1]}
        assert os.sched_getaffinity(srv.proc.pid) == ALL  # the master is never pinned
        os.kill(first, signal.SIGKILL)
        (replacement,) = _workers(srv, 1, exclude=frozenset({first, second}))
        deadline = time.monotonic() + 30
        while True:  # pinned in init_process, a moment after the fork
            try:
                got: int | None = _cpu_of(replacement)
            except AssertionError:  # not pinned yet
                got = None
            if got == by_pid[first]:
                break
            assert time.monotonic() < deadline, got
            time.sleep(0.1)
        assert _cpu_of(second) == by_pid[second]
        assert s3.get_object(Bucket="bkt", Key="k1")["ContentLength"] == 9 << 20
    finally:
        srv.stop()


def test_off_leaves_every_worker_on_every_cpu(tmp_path: Path) -> None:
    srv = Server(tmp_path / "srv", extra_config={"server": {"cpu_affinity": "off"}}).start()
    try:
        boto3_client(srv.endpoint).list_buckets()
        for pid in _workers(srv, 2):
            assert _threads_cpus(pid) == {ALL}
    finally:
        srv.stop()


def test_one_worker_is_not_pinned(tmp_path: Path) -> None:
    srv = Server(tmp_path / "srv", workers=1).start()
    try:
        boto3_client(srv.endpoint).list_buckets()
        (pid,) = _workers(srv, 1)
        assert _threads_cpus(pid) == {ALL}
    finally:
        srv.stop()
