"""The RabbitMQ write-task channel (events.md §5, §6.2, §7): pika ``BlockingConnection``.

One connection and one channel per object, owned by the calling thread. The connection, the
topology declaration, the time bounds and the error handling are the publisher's
(``RabbitPublisher``, reused through a subclass): ``connect()`` declares the whole topology
idempotently — the task exchange ``{exchange}.tasks`` (direct) → ``{queue_prefix}.tasks.
{node_id}`` with ``x-dead-letter-exchange={exchange}.dlx``, the DLX → ``{queue_prefix}.
dead-letter`` — then ``basic_qos(prefetch_count)``; publisher confirms are on.

- ``enqueue`` publishes persistently to ``{exchange}.tasks`` with routing key ``node_id``,
  ``mandatory`` (a task queue deleted behind our back is an error, not a silent drop), and
  returns after the broker's confirm.
- ``dequeue`` starts a ``basic_consume`` (manual ack) on the first call and then drives
  pika's I/O loop in slices until a delivery arrives or ``timeout_s`` has passed. The broker
  pushes up to ``prefetch_count`` deliveries ahead; they wait in a local buffer and are
  unacknowledged at the broker until acked, or until the connection closes (then the broker
  redelivers them, to whichever consumer).
- Delivery tags belong to one channel: a delivery taken on a connection since dropped
  cannot be acknowledged any more (the broker has requeued it), so ``ack`` and
  ``dead_letter`` refuse it with ``PublishError`` instead of acknowledging whichever message
  carries the same tag on the new channel.
- ``dead_letter`` publishes the task to ``{exchange}.dlx`` itself, with the headers
  ``x-error`` and ``x-attempts`` (a ``basic_nack(requeue=False)`` would route it there too
  but could not carry them), confirmed, then acks the original. Acking, not nacking: a nack
  would make the broker dead-letter a second copy through the queue's DLX argument.

Time bounds: as the publisher's (socket / handshake timeouts, the watchdog on every call);
a dequeue's wait is bounded by its own ``timeout_s``. Any pika / AMQP / socket failure
becomes ``PublishError`` and drops the connection; the next call reconnects.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from bleepstore.events.publisher import PublishError
from bleepstore.events.rabbitmq_publisher import RabbitPublisher
from bleepstore.events.tasks import Delivery, TaskChannelHealth, TaskMessage

T = TypeVar("T")

MAX_ERROR_CHARS = 8192  # the x-error header; headers travel in one frame (frame_max 128 KiB)


class _TaskLink(RabbitPublisher):
    """The publisher's connection handling, plus QoS, a consumer and its delivery buffer."""

    def __init__(self, url: str, exchange: str, exchange_type: str, queue_prefix: str,
                 durable: bool, node_id: str, prefetch_count: int, timeout_s: float) -> None:
        super().__init__(url, exchange=exchange, exchange_type=exchange_type,
                         queue_prefix=queue_prefix, durable=durable, node_id=node_id,
                         timeout_s=timeout_s)
        self.prefetch_count = prefetch_count
        self.task_queue = f"{queue_prefix}.tasks.{node_id}"
        self.dead_queue = f"{queue_prefix}.dead-letter"
        self.consumer_tag: str | None = None
        self.buffer: deque[Delivery] = deque()  # pushed by the broker, not yet handed out
        self.issued: dict[int, Delivery] = {}  # handed out on this channel, not yet acked

    # -- connection state -----------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._channel is not None and self._channel.is_open

    def _declare(self) -> None:
        super()._declare()
        self._channel.basic_qos(prefetch_count=self.prefetch_count)

    def _drop(self) -> None:
        self._forget()
        super()._drop()

    def close(self) -> None:
        self._forget()
        super().close()

    def _forget(self) -> None:
        """The channel's deliveries die with it: the broker requeues them."""
        self.consumer_tag = None
        self.buffer.clear()
        self.issued.clear()

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """``_call`` (PublishError, drop) after making sure the channel is open."""
        if not self.is_open:
            self.connect()
        return self._call(what, fn)

    # -- operations (run inside ``_call``: watchdog, error mapping) -------------------------

    def publish(self, exchange: str, routing_key: str, body: str, message_id: str,
                headers: dict[str, Any] | None = None) -> None:
        import pika

        props = pika.BasicProperties(
            delivery_mode=2, content_type="application/json", message_id=message_id,
            timestamp=int(time.time()), headers=headers)
        # Confirms are on: returns after the broker's ack; NackError on a nack,
        # UnroutableError when no queue took it (mandatory).
        self._channel.basic_publish(exchange, routing_key, body.encode("utf-8"), props,
                                    mandatory=True)

    def wait(self, deadline: float) -> Delivery | None:
        """Consume (once per channel), then run the I/O loop until a delivery or the
        deadline. Slices shorter than the watchdog's limit, progress noted after each: an
        idle queue is not a hung broker (and a quiet wait cannot tell them apart)."""
        if self.consumer_tag is None or self.consumer_tag not in self._channel.consumer_tags:
            self.consumer_tag = self._channel.basic_consume(self.task_queue, self._on_message,
                                                            auto_ack=False)
        step = max(self.timeout_s / 2, 0.01)
        while True:  # one pass at least: timeout 0 still looks at what has arrived
            remaining = deadline - time.monotonic()
            self._conn.process_data_events(time_limit=max(0.0, min(remaining, step)))
            self._progress = time.monotonic()
            if self.buffer:
                return self.take()
            if remaining <= 0:
                return None

    def take(self) -> Delivery:
        delivery = self.buffer.popleft()
        self.issued[delivery.handle] = delivery
        return delivery

    def _on_message(self, _ch: Any, method: Any, props: Any, body: bytes) -> None:
        text = body.decode("utf-8", errors="replace")
        self.buffer.append(Delivery(task_id=props.message_id or _task_id_of(text),
                                    body=text, handle=method.delivery_tag))

    def check_current(self, delivery: Delivery) -> int:
        """The delivery tag, if ``delivery`` was handed out on this channel."""
        tag = delivery.handle
        if not self.is_open or not isinstance(tag, int) or self.issued.get(tag) != delivery:
            raise PublishError(
                f"rabbitmq {self._where}: delivery of {delivery.task_id} is not from the "
                "current connection (the broker redelivers it)")
        return tag

    def ack(self, tag: int) -> None:
        self._channel.basic_ack(tag)
        self.issued.pop(tag, None)

    def counts(self) -> tuple[int, int]:
        ch = self._channel
        pending = ch.queue_declare(self.task_queue, passive=True).method.message_count
        dead = ch.queue_declare(self.dead_queue, passive=True).method.message_count
        return int(pending), int(dead)


def _task_id_of(body: str) -> str:
    """A message without ``message_id`` (published by hand): the body's own task_id."""
    try:
        task_id = json.loads(body).get("task_id")
    except (ValueError, AttributeError):
        return ""
    return task_id if isinstance(task_id, str) else ""


class RabbitTaskQueue:
    """This node's task channel on RabbitMQ; one object per thread (pika is not
    thread-safe)."""

    name = "rabbitmq"

    def __init__(self, url: str, exchange: str = "bleepstore", exchange_type: str = "topic",
                 queue_prefix: str = "bleepstore", durable: bool = True, node_id: str = "node",
                 prefetch_count: int = 10, timeout_s: float = 5.0) -> None:
        self.exchange = exchange
        self.node_id = node_id
        self.timeout_s = timeout_s
        self._link = _TaskLink(url, exchange, exchange_type, queue_prefix, durable, node_id,
                               prefetch_count, timeout_s)

    def connect(self) -> None:
        """Open (if needed) and declare the topology and QoS; PublishError if unreachable."""
        self._link.connect()

    def enqueue(self, message: TaskMessage) -> None:
        link = self._link
        link.call("enqueue", lambda: link.publish(
            f"{self.exchange}.tasks", self.node_id, message.body, message.task_id))

    def dequeue(self, timeout_s: float) -> Delivery | None:
        """A delivery already pushed by the broker at once; else wait up to ``timeout_s``."""
        link = self._link
        if link.buffer and link.is_open:
            return link.take()
        deadline = time.monotonic() + max(timeout_s, 0.0)
        return link.call("dequeue", lambda: link.wait(deadline))

    def ack(self, delivery: Delivery) -> None:
        link = self._link
        tag = link.check_current(delivery)
        link.call("ack", lambda: link.ack(tag))

    def dead_letter(self, delivery: Delivery, error: str, attempts: int) -> None:
        link = self._link
        tag = link.check_current(delivery)
        headers = {"x-error": error[:MAX_ERROR_CHARS], "x-attempts": attempts,
                   "x-node-id": self.node_id, "x-task-queue": link.task_queue}

        def move() -> None:
            link.publish(f"{self.exchange}.dlx", self.node_id, delivery.body, delivery.task_id,
                         headers)
            link.ack(tag)

        link.call("dead-letter", move)

    def reclaim(self) -> int:
        """RabbitMQ requeues a dead consumer's unacked deliveries when its connection
        closes: nothing to do here."""
        return 0

    def health(self) -> TaskChannelHealth:
        """Never reconnects (as the publisher's): a dropped connection reads as
        ``connected=False`` with the last error. ``pending_tasks`` is the task queue's
        *ready* count: deliveries pushed to consumers and not yet acked (up to
        ``prefetch_count`` per consumer, and the ones being carried out) are not in it."""
        link = self._link
        if not link.is_open:
            return TaskChannelHealth(False, None, None, link.last_error or "not connected")
        try:
            pending, dead = link.call("health", link.counts)
        except PublishError as exc:
            return TaskChannelHealth(False, None, None, str(exc))
        except Exception as exc:  # never raises
            return TaskChannelHealth(False, None, None, f"rabbitmq health failed: {exc!r}")
        return TaskChannelHealth(True, pending, dead)

    def close(self) -> None:
        """Idempotent; unacked deliveries go back to the queue with the connection."""
        self._link.close()
