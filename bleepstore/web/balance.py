"""How many connections each worker of this server holds, in memory all of them share, so
a worker holding far more than its share can hand some back (gunicorn_worker.py).

Kept-alive connections stay on the worker that accepted them. A worker that was alone
when a client opened its pool — the first to boot, or the survivor while a crashed peer
is replaced — keeps every connection while its peers idle: measured, one worker with 16
connections served a third of what two with 8 each did. The crowded worker answers the
excess with ``Connection: close`` and stops accepting for a moment; the client
reconnects, and its new connection lands on a worker with room.

Invariants: the table is anonymous shared memory created before the workers fork (the
gunicorn master imports the worker class, which creates it); a slot counts only while its
pid is alive; a worker only ever writes its own slot.
"""

from __future__ import annotations

import math
import mmap
import os
import struct

SLOTS = 256
_SLOT = struct.Struct("=qq")  # pid, connections


class ConnectionTable:
    def __init__(self, slots: int = SLOTS) -> None:
        self.slots = slots
        self._mem = mmap.mmap(-1, slots * _SLOT.size)

    def publish(self, slot: int, pid: int, connections: int) -> None:
        _SLOT.pack_into(self._mem, (slot % self.slots) * _SLOT.size, pid, connections)

    def live_counts(self) -> list[int]:
        """The connections of every live worker that has published (its own included)."""
        counts = []
        for offset in range(0, self.slots * _SLOT.size, _SLOT.size):
            pid, connections = _SLOT.unpack_from(self._mem, offset)
            if pid and _alive(pid):
                counts.append(connections)
        return counts


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
