"""The write-task channel seam (events.md §5, §6): each node has its own task channel on
the broker; handlers enqueue WriteTask messages, consumer threads take them, carry them out
and acknowledge them.

Invariants:
- ``enqueue`` returns only once the broker confirmed the message (durable there); on any
  failure it raises ``PublishError`` (the handler then carries the task out itself).
- A delivery not acknowledged (the consumer died) comes back: Redis by ``reclaim()``
  (XAUTOCLAIM of entries idle over ``claim_idle_ms``), RabbitMQ when the consumer's
  connection closes, Kafka because the offset was not committed. Delivery is therefore
  at-least-once; the consumer dedupes by the task row's state.
- One ``TaskQueue`` object belongs to one thread (pika, librdkafka consumers).
- Every broker call is bounded in time; ``dequeue`` blocks at most ``timeout_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class TaskMessage:
    task_id: str
    body: str  # the WriteTask JSON (events.md §5.1)
    key: str  # "<bucket>/<key>": Kafka's message key (order per object)


@dataclass(frozen=True)
class Delivery:
    task_id: str
    body: str
    handle: Any  # the broker's own: a stream entry id, a delivery tag, a Kafka message


@dataclass(frozen=True)
class TaskChannelHealth:
    connected: bool
    pending_tasks: int | None
    dead_letter_count: int | None
    error: str | None = None


class TaskQueue(Protocol):
    name: str

    def connect(self) -> None:
        """Open the connection, declare the channel (stream + group / queue with its DLX /
        topics); PublishError if unreachable. Idempotent."""

    def enqueue(self, message: TaskMessage) -> None:
        """Publish to this node's task channel; return after the broker's confirmation."""

    def dequeue(self, timeout_s: float) -> Delivery | None:
        """The next delivery for this node, or None after ``timeout_s``."""

    def ack(self, delivery: Delivery) -> None:
        """Done with it (a terminal state, or republished as a retry)."""

    def dead_letter(self, delivery: Delivery, error: str, attempts: int) -> None:
        """To the dead-letter destination with ``error`` and ``attempts``; then it is done."""

    def reclaim(self) -> int:
        """Take over deliveries a dead consumer left unacknowledged (Redis); 0 elsewhere."""

    def health(self) -> TaskChannelHealth:
        """Pending tasks and dead letters (events.md §9); never raises."""

    def close(self) -> None:
        """Idempotent."""
