"""The RabbitMQ publisher (events.md §6.2): pika ``BlockingConnection``, publisher confirms.

One connection and one channel, owned by the calling thread. ``connect()`` declares the
topology idempotently; ``publish_batch`` publishes each event persistently to ``{exchange}``
with the event type as routing key and returns once the broker confirmed every one.

Time bounds: the TCP connect and the AMQP handshake are bounded by ``socket_timeout`` /
``stack_timeout``, a broker resource alarm by ``blocked_connection_timeout`` (all
``timeout_s``). A broker that stops answering with the TCP connection still up (hung,
partitioned) is not noticed by pika before the heartbeat (~30-65 s), so every blocking call
here runs under a watchdog timer on pika's own I/O loop: if no confirm or reply arrives
for ``timeout_s`` it aborts the stream the way pika's heartbeat checker does, and the call
raises. Any failure becomes ``PublishError`` and drops the connection; the next call
reconnects.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from bleepstore.events.publisher import BrokerHealth, OutboxEvent, PublishError

T = TypeVar("T")


class RabbitPublisher:
    name = "rabbitmq"

    def __init__(self, url: str, exchange: str = "bleepstore", exchange_type: str = "topic",
                 queue_prefix: str = "bleepstore", durable: bool = True, node_id: str = "node",
                 timeout_s: float = 5.0) -> None:
        self.url = url
        self.exchange = exchange
        self.exchange_type = exchange_type
        self.queue_prefix = queue_prefix
        self.durable = durable
        self.node_id = node_id
        self.timeout_s = timeout_s
        self._conn: Any = None
        self._channel: Any = None
        self._last_error: str | None = None
        self._progress = 0.0  # monotonic time of the last broker reply seen by the watchdog
        split = urlsplit(url)
        self._where = f"{split.hostname or 'localhost'}:{split.port or 5672}"
        self._secret = split.password or ""

    # -- the Publisher protocol ---------------------------------------------------------

    def connect(self) -> None:
        """Open (if needed) and declare the topology; PublishError if unreachable."""
        if self._channel is None or not self._channel.is_open:
            self._drop()
            self._call("connect", self._open)  # declares too
        else:
            self._call("declare", self._declare)

    def publish_batch(self, events: Sequence[OutboxEvent]) -> None:
        if not events:
            return
        if self._channel is None or not self._channel.is_open:
            self.connect()
        self._call("publish", lambda: self._publish(events))

    def health(self) -> BrokerHealth:
        """The connection's state and one passive declare's round trip. Never reconnects:
        reconnecting is the relay's job (with its backoff); a dead broker reads as
        ``connected=False`` with the last error."""
        if self._channel is None or not self._channel.is_open:
            return BrokerHealth(False, None, self._last_error or "not connected")
        t0 = time.perf_counter()
        try:
            self._call("health", lambda: self._channel.queue_declare(
                f"{self.queue_prefix}.dead-letter", passive=True))
        except PublishError as exc:
            return BrokerHealth(False, None, str(exc))
        return BrokerHealth(True, (time.perf_counter() - t0) * 1000.0)

    def close(self) -> None:
        """Idempotent; bounded and silent on a dead or hung connection."""
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None and conn.is_open:
            with contextlib.suppress(Exception), self._watchdog(conn):
                conn.close()

    # -- internals ------------------------------------------------------------------------

    def _open(self) -> None:
        import pika

        params = pika.URLParameters(self.url)
        params.heartbeat = 30
        params.socket_timeout = self.timeout_s
        params.stack_timeout = self.timeout_s
        params.blocked_connection_timeout = self.timeout_s
        params.connection_attempts = 1
        self._conn = pika.BlockingConnection(params)
        with self._watchdog(self._conn):
            self._channel = self._conn.channel()
            self._channel.confirm_delivery()
            self._declare()

    def _declare(self) -> None:
        ch, durable, ex, prefix = self._channel, self.durable, self.exchange, self.queue_prefix
        ch.exchange_declare(ex, exchange_type=self.exchange_type, durable=durable)
        ch.exchange_declare(f"{ex}.dlx", exchange_type="fanout", durable=durable)
        ch.queue_declare(f"{prefix}.dead-letter", durable=durable)
        ch.queue_bind(f"{prefix}.dead-letter", f"{ex}.dlx")
        tasks = f"{prefix}.tasks.{self.node_id}"
        ch.exchange_declare(f"{ex}.tasks", exchange_type="direct", durable=durable)
        ch.queue_declare(tasks, durable=durable,
                         arguments={"x-dead-letter-exchange": f"{ex}.dlx"})
        ch.queue_bind(tasks, f"{ex}.tasks", routing_key=self.node_id)
        if self.exchange_type == "topic":
            ch.queue_declare(f"{prefix}.events", durable=durable)
            ch.queue_bind(f"{prefix}.events", ex, routing_key="#")

    def _publish(self, events: Sequence[OutboxEvent]) -> None:
        import pika

        for ev in events:
            props = pika.BasicProperties(
                delivery_mode=2, content_type="application/json", message_id=ev.event_id,
                timestamp=int(time.time()))
            # Confirms are on: returns after the broker's ack, raises NackError on a nack.
            self._channel.basic_publish(self.exchange, ev.event_type, ev.body.encode("utf-8"),
                                        props, mandatory=False)
            self._progress = time.monotonic()  # the watchdog measures silence, not the batch

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run a pika call; any failure (pika, AMQP, socket, watchdog) → PublishError, and
        the connection is dropped so the next call reconnects."""
        try:
            if self._conn is None:
                result = fn()  # connecting: pika's own socket/stack timeouts bound it
            else:
                with self._watchdog(self._conn):
                    result = fn()
        except Exception as exc:
            self._drop()
            # pika's connect errors have an empty str() and the cause only in their repr
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc)
            if self._secret:
                detail = detail.replace(self._secret, "***")
            self._last_error = f"rabbitmq {self._where} {what} failed: {detail}"
            raise PublishError(self._last_error) from None
        self._last_error = None
        return result

    def _drop(self) -> None:
        """Forget the connection: a graceful close if it answers within a second, else the
        watchdog aborts the socket."""
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None and conn.is_open:
            with contextlib.suppress(Exception), self._watchdog(conn, min(self.timeout_s, 1.0)):
                conn.close()

    @contextlib.contextmanager
    def _watchdog(self, conn: Any, limit: float | None = None) -> Iterator[None]:
        """Abort ``conn``'s stream once nothing has progressed for ``limit`` seconds.

        The timer lives on pika's I/O loop, which the blocking calls drive, so it fires in
        the middle of a wait for a confirm or a reply. Progress is ``self._progress``."""
        import pika.exceptions

        impl = conn._impl  # pika's own connection: the only place a timer can run mid-wait
        limit = self.timeout_s if limit is None else limit
        self._progress = time.monotonic()
        timer: list[object] = []

        def check() -> None:
            idle = time.monotonic() - self._progress
            if idle < limit:
                timer[:] = [impl._adapter_call_later(limit - idle, check)]
                return
            timer.clear()
            if impl.is_open or impl.is_opening or impl.is_closing:
                impl._terminate_stream(pika.exceptions.AMQPConnectionError(
                    f"no reply from broker within {limit:g}s"))

        timer.append(impl._adapter_call_later(limit, check))
        try:
            yield
        finally:
            if timer:
                with contextlib.suppress(Exception):
                    impl._adapter_remove_timeout(timer[0])
