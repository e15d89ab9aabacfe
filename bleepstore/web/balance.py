"""How many connections each worker of this server holds, in memory all of them share, so
a worker holding far more than its share can hand some back (gunicorn_worker.py).

Kept-alive connections stay on the worker that accepted them. A worker that was alone
when a client opened its pool — the first to boot, or the survivor while a crashed peer
is replaced — keeps every connection while its peers idle: measured, one worker with 16
connections served a third of what two with 8 each did. The crowded worker answers the
excess with ``Connection: close`` and stops accepting for a moment; the client
reconnects, and its new connection lands on a worker with room.

New connections are placed by the same table: a worker ahead of a peer that is polling the
listener leaves the next accepts to it.

Invariants: the table is anonymous shared memory created before the workers fork (the
gunicorn master imports the worker class, which creates it); a slot counts only while its
pid is alive and it polls the listener; a worker only ever writes its own slot; times are
``time.monotonic()``, one clock for every process of the machine.
"""

from __future__ import annotations

import math
import mmap
import os
import struct

SLOTS = 256
_SLOT = struct.Struct("=qqd")  # pid, connections, when it last polled the listener (0: not)


class ConnectionTable:
    def __init__(self, slots: int = SLOTS) -> None:
        self.slots = slots
        self._mem = mmap.mmap(-1, slots * _SLOT.size)

    def publish(self, slot: int, pid: int, connections: int, polled_at: float) -> None:
        _SLOT.pack_into(self._mem, (slot % self.slots) * _SLOT.size, pid, connections,
                        polled_at)

    def peer_counts(self, pid: int, polled_since: float) -> list[int]:
        """The connections of every live worker other than ``pid`` that polled the listener
        at or after ``polled_since``. A worker stopped, stuck or not accepting stops
        polling: it is neither yielded new connections nor handed back old ones."""
        return [connections for other, connections, polled_at in _SLOT.iter_unpack(self._mem)
                if other and other != pid and polled_at >= polled_since and _alive(other)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def excess(mine: int, counts: list[int]) -> int:
    """How many of its ``mine`` connections a worker should hand back, given every live
    worker's count: those above a fair share, once the gap is worth the reconnects (more
    than 2 and more than a quarter of the share)."""
    if len(counts) < 2:
        return 0
    fair = math.ceil(sum(counts) / len(counts))
    over = mine - fair
    return over if over > max(2, fair // 4) else 0
