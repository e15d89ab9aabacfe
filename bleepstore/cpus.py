"""Which CPU each gunicorn worker runs on (``server.cpu_affinity``).

A worker's request threads take turns holding one GIL, and hand it over at every system
call (recv, send, each SQLite step, fsync). Left to the scheduler, those threads run on
every core, so each hand-over wakes a thread on another core: on 2 cores a loaded
worker spent 12 % of its cycles switching tasks, and one thread served a GET in half the
CPU two threads of the same process did (docs/performance.md). With each worker's
threads on a CPU of their own, hand-overs stay on one core: measured on 2 cores, 4 KiB
GET +19 % / +51 % ops/s at 16 / 64 connections, PUT +53 % / +64 %.

A large body is received, hashed and written by three threads that mostly run without
the GIL (storage/writebehind.py): while it streams, they all run on every CPU the process
may use. Pinned, a single-stream 512 MiB PUT lost 17 %.

Invariants: the master picks each worker's CPU before the fork (the least used by live
workers, so a replacement takes its predecessor's); the worker pins itself before it
starts any thread, and every thread it starts inherits that; ``unpin_this_thread`` only
ever widens the calling thread, to the set the worker had before pinning, and
``repin_this_thread`` narrows it back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

_usable: frozenset[int] | None = None  # this process's CPUs before pin(); None: not pinned


def usable() -> list[int]:
    """The CPUs this process may run on (taskset, cgroup cpusets), ascending."""
    return sorted(os.sched_getaffinity(0))


def pick(cpus: list[int], taken: Iterable[int | None]) -> int:
    """The CPU of ``cpus`` the fewest of ``taken`` (other workers' CPUs) use; lowest first."""
    load = dict.fromkeys(cpus, 0)
    for cpu in taken:
        if cpu in load:
            load[cpu] += 1
    return min(cpus, key=lambda cpu: (load[cpu], cpu))


def pin(cpu: int) -> None:
    """Run the calling thread, and every thread it starts from now on, on ``cpu`` only."""
    global _usable
    before = frozenset(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    _usable = before


def unpin_this_thread() -> frozenset[int] | None:
    """Let the calling thread run on every CPU the process had before ``pin``; the set
    it ran on (for ``repin_this_thread``), or None if it was not narrower."""
    if _usable is None:
        return None
    mine = frozenset(os.sched_getaffinity(0))
    if mine >= _usable:
        return None
    try:
        os.sched_setaffinity(0, _usable)
    except OSError:  # the set shrank since (cpuset changed): stay where we are
        return None
    return mine


def repin_this_thread(cpus: frozenset[int] | None) -> None:
    """Give the calling thread back the set ``unpin_this_thread`` returned."""
    if cpus is not None:
        try:
            os.sched_setaffinity(0, cpus)
        except OSError:
            pass
