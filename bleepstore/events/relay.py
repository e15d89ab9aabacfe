"""The outbox relay (events.md §4): one thread per worker; the worker holding the node's
``event-relay`` lease publishes, the others stand by (one publisher per node keeps the
per-bucket order across workers).

Invariants:
- A row is deleted only after the broker confirmed it; a failure releases the batch and the
  whole relay backs off (1 s doubling to 30 s), so rows go out again in ``seq`` order.
- The broker being down never reaches a request: requests only write rows and ``wake()``.
- A relay that takes the lease over clears every claim first: its predecessor is gone (or
  late, and then a few events go out twice: consumers dedupe by ``id``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bleepstore.events import metrics
from bleepstore.events.outbox import Outbox, OutboxRow
from bleepstore.events.publisher import BrokerHealth, OutboxEvent, Publisher

log = logging.getLogger("bleepstore.events")

LEASE = "event-relay"
LEASE_S = 10.0
IDLE_POLL_S = 0.2  # other workers' commits are found by polling (this one's wake us)
BACKOFF_S = (1.0, 30.0)


class Relay:
    def __init__(self, outbox: Outbox, take_lease: Callable[[str, str, float], bool],
                 make_publisher: Callable[[], Publisher],
                 render: Callable[[OutboxRow], OutboxEvent | None], batch: int,
                 report: Callable[[BrokerHealth], None] | None = None) -> None:
        """``report`` hears every change of the broker's state (for /health, which any
        worker may answer while only the lease holder talks to the broker)."""
        self.outbox, self._take_lease = outbox, take_lease
        self._make_publisher, self._render, self.batch = make_publisher, render, batch
        self._report = report
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._publisher: Publisher | None = None
        self._leased_at = 0.0
        self._backoff = BACKOFF_S[0]
        self.last_error: str | None = None
        self.connected = False
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bleepstore-event-relay",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._drop_publisher()

    def wake(self) -> None:
        self._wake.set()

    # --- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delay = self.step()
            except Exception:  # never let the thread die; the rows stay for the next try
                log.exception("event relay step failed")
                delay = BACKOFF_S[0]
            if delay:
                self._wake.wait(delay)
                self._wake.clear()

    def step(self) -> float:
        """One pass; -> seconds to wait before the next (0: go on at once)."""
        if not self._hold_lease():
            return LEASE_S / 2
        if self._publisher is None:  # connect before there is anything to send: /health
            try:
                self._connect()
            except Exception as exc:
                return self._failed(exc)
        rows = self.outbox.claim(self.holder, self.batch)
        self._sample_depth()
        if not rows:
            return IDLE_POLL_S
        try:
            self._publish(rows)
        except Exception as exc:
            self.outbox.release(rows)
            return self._failed(exc)
        self.outbox.delete(rows)
        self._backoff = BACKOFF_S[0]
        self._published(rows)
        return 0.0

    def _hold_lease(self) -> bool:
        now = time.monotonic()
        if now - self._leased_at < LEASE_S / 3:
            return True
        held = self._take_lease(LEASE, self.holder, LEASE_S)
        if held and not self._leased_at:
            released = self.outbox.release_all()
            if released:
                log.info("event relay took over: %d claimed events released", released)
        self._leased_at = now if held else 0.0
        return held

    def _connect(self) -> Publisher:
        publisher = self._make_publisher()
        try:
            publisher.connect()
        except BaseException:
            publisher.close()
            raise
        self._publisher = publisher
        self._state(True, None)
        return publisher

    def _publish(self, rows: list[OutboxRow]) -> None:
        events = [e for e in (self._render(r) for r in rows) if e is not None]
        publisher = self._publisher or self._connect()
        publisher.publish_batch(events)

    def _failed(self, exc: Exception) -> float:
        """Drop the connection, say so once, -> the back-off before the next try."""
        self._drop_publisher()
        if self.connected or self.last_error is None:
            log.warning("event broker unavailable, events wait in the outbox: %s", exc)
        self._state(False, str(exc) or type(exc).__name__)
        try:
            metrics.FAILED.labels(reason="broker_error").inc()
        except Exception:  # noqa: S110
            pass
        delay, self._backoff = self._backoff, min(self._backoff * 2, BACKOFF_S[1])
        return delay

    def _state(self, connected: bool, error: str | None) -> None:
        changed = (connected, error) != (self.connected, self.last_error)
        self.connected, self.last_error = connected, error
        if changed and self._report is not None:
            try:
                self._report(self.health())
            except Exception:  # noqa: S110  /health is informative only
                pass

    def _published(self, rows: list[OutboxRow]) -> None:
        try:
            metrics.PUBLISHED.labels(kind="event").inc(len(rows))
            now = datetime.now(UTC)
            for row in rows:
                created = datetime.fromisoformat(row.created_at.replace("Z", "+00:00"))
                metrics.LATENCY.labels(kind="event").observe(
                    (now - created).total_seconds() * 1000)
        except Exception:  # noqa: S110  a metric never fails the relay
            pass

    def _sample_depth(self) -> None:
        try:
            metrics.OUTBOX_DEPTH.set(self.outbox.depth())
        except Exception:  # noqa: S110
            pass

    def _drop_publisher(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            try:
                publisher.close()
            except Exception:  # noqa: S110  closing a broken connection
                pass

    # --- status ---------------------------------------------------------------------------

    def health(self) -> BrokerHealth:
        """What the relay last saw (no broker round trip on a request's thread: a
        publisher belongs to the relay thread)."""
        return BrokerHealth(connected=self.connected, latency_ms=None, error=self.last_error)
