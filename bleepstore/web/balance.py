"""Spreading connections over the workers: how many each worker holds, in memory all of
them share, and the gthread worker base that places new connections and hands old ones
back by it (``BalancedThreadWorker``; BleepStore's ``S3Worker`` builds on it).

All workers poll one shared listening socket and the first to call ``accept`` wins, so
new connections tended to land on one worker: a burst (a client opening its pool), and,
with each worker pinned to a CPU, every connection of a client opening them one after
another (the worker on the CPU the client is not on wins each race; 64 of 64 seen). With
16 keep-alive connections, 16 on one worker and none on the other halved GET throughput
and doubled its CPU per request (GIL contention; docs/performance.md). Workers therefore
publish, at every accept and every turn of their loop, how many connections they serve
and whether they are polling the listener; a worker that has just accepted and is more
than one connection ahead of a peer still polling leaves the listener to it until that
peer catches up, for at most ``ACCEPT_YIELD_S``.

Kept-alive connections stay on the worker that accepted them. A worker that was alone
when a client opened its pool — the first to boot, or the survivor while a crashed peer
is replaced — would keep them all while its peers idle: measured, one worker with 16
connections served a third of what two with 8 each did. One holding well above its share
(counting only peers still polling: a stopped one could take nothing back) answers that
many responses with ``Connection: close`` and stops accepting for ``BALANCE_PAUSE_S``;
the clients reconnect, and their new connections land on a worker with room.

Invariants: the table is anonymous shared memory created before the workers fork (the
gunicorn master imports the worker class, whose module imports this one); a slot counts
only while its pid is alive and it polls the listener; a worker only ever writes its own
slot; times are ``time.monotonic()``, one clock for every process of the machine. A
worker stops accepting only while a peer that polled the listener within
``PEER_POLLING_S`` holds fewer connections, and then for at most ``ACCEPT_YIELD_S`` at a
time, or ``BALANCE_PAUSE_S`` after a hand-back (it never starves: a stopped or stuck peer
stops polling).
"""

from __future__ import annotations

import math
import mmap
import os
import struct
import threading
import time

from gunicorn.workers.gthread import ThreadWorker

ACCEPT_YIELD_S = 0.05  # longest a worker ahead of a polling peer leaves the listener to it
YIELD_RECHECK_S = 0.002  # while yielding: has the peer caught up?
PEER_POLLING_S = 0.3  # a peer that polled the listener this recently is taking connections
PUBLISH_EVERY_S = 0.1  # an idle loop still turns (and publishes) this often
BALANCE_EVERY_S = 0.5  # compare this worker's connection count with its peers'
BALANCE_HOLD_S = 2.0  # after handing connections back, before the next comparison
BALANCE_PAUSE_S = 1.0  # no accepting while the handed-back connections reconnect
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


CONNECTIONS = ConnectionTable()  # created in the master (at import): shared with its workers


class BalancedThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread placing new connections and handing back old ones by ``CONNECTIONS``.

    A subclass calls ``_accepted()`` for every connection it accepts, may count some
    connections out of its load (``_unserved()``), and answers with ``Connection: close``
    while ``_shed > 0 and _take_shed()``.
    """

    def init_process(self) -> None:
        self._accept_after = 0.0  # monotonic: no accept before this (BALANCE_PAUSE_S)
        self._yield_until = 0.0  # monotonic: leaving the listener to a peer (ACCEPT_YIELD_S)
        self._yields = self.cfg.workers > 1
        self._shed = 0  # responses still to answer with Connection: close
        self._shed_lock = threading.Lock()
        self._balance_at = 0.0
        super().init_process()

    def set_accept_enabled(self, enabled: bool) -> None:
        if enabled:
            now = time.monotonic()
            if now < self._accept_after or (now < self._yield_until and self._ahead(now)):
                enabled = False  # the loop wakes to look again (wait_for_and_dispatch_events)
            else:
                self._yield_until = 0.0
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        now = time.monotonic()
        if self._yields:
            timeout = min(timeout, PUBLISH_EVERY_S)
        if self._yield_until > now:
            timeout = min(timeout, YIELD_RECHECK_S)
        if self._accept_after > now:
            timeout = min(timeout, self._accept_after - now)
        super().wait_for_and_dispatch_events(timeout)

    def murder_keepalived(self, force: bool = False) -> None:
        """The main loop's timers (at least once a second): publish, then compare."""
        super().murder_keepalived(force)
        if self._yields:
            now = time.monotonic()
            self._publish(now)
            if self.alive and now >= self._balance_at:
                self._balance(now)

    def _unserved(self) -> int:
        """Connections not counted for balance (a subclass's heads still arriving)."""
        return 0

    def _serving(self) -> int:
        return int(self.nr_conns) - self._unserved()

    def _publish(self, now: float) -> None:
        CONNECTIONS.publish(self.age, self.pid, self._serving(),
                            now if self._accepting else 0.0)

    def _peer_counts(self, now: float) -> list[int]:
        return CONNECTIONS.peer_counts(self.pid, now - PEER_POLLING_S)

    def _ahead(self, now: float) -> bool:
        """More than one connection ahead of a peer that is polling the listener."""
        peers = self._peer_counts(now)
        return bool(peers) and self._serving() > min(peers) + 1

    def _balance(self, now: float) -> None:
        """Main loop: above its share of this worker's and its polling peers' connections,
        hand the excess back."""
        serving = self._serving()
        over = excess(serving, [serving, *self._peer_counts(now)])
        self._balance_at = now + (BALANCE_HOLD_S if over else BALANCE_EVERY_S)
        if over:
            with self._shed_lock:
                self._shed = over
            self._accept_after = max(self._accept_after, now + BALANCE_PAUSE_S)
            self.set_accept_enabled(False)
            self.log.debug("handing %d of %d connections back to peers", over, serving)

    def _take_shed(self) -> bool:
        with self._shed_lock:
            if self._shed <= 0:
                return False
            self._shed -= 1
            return True

    def _accepted(self) -> None:
        """Counts a new connection; ahead of a polling peer, leaves it the next ones."""
        self.nr_conns += 1
        if not self._yields:
            return
        now = time.monotonic()
        self._publish(now)
        if self._ahead(now):
            self._yield_until = now + ACCEPT_YIELD_S
            self.set_accept_enabled(False)
