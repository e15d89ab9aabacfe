"""The broker seam (events.md §4, §6): what the outbox relay asks of Redis / RabbitMQ / Kafka.

Invariants:
- ``publish_batch`` returns only once the broker has confirmed every event of the batch
  (XADD id, RabbitMQ publisher confirm, Kafka delivery report); on any failure it raises
  ``PublishError`` and the caller keeps the rows (at-least-once: a retry may duplicate,
  consumers dedupe by ``event_id``).
- Every broker call is bounded in time (no call blocks longer than ``timeout_s``), so a
  dead broker costs the relay thread seconds, never a request anything.
- ``connect()`` declares the topology idempotently and may be called again after a failure;
  clients are created lazily (after fork), never at import time.
- Broker SDKs are imported inside the implementation modules only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class PublishError(Exception):
    """The broker did not confirm (down, timeout, refused); the message says which."""


@dataclass(frozen=True)
class OutboxEvent:
    """One outbox row, ready to publish. ``body`` is the serialised event (UTF-8 JSON)."""

    seq: int
    event_id: str
    event_type: str  # dotted type, events.md §2 (``object.created`` ...)
    partition_key: str  # the bucket name: per-bucket order on Kafka
    body: str


@dataclass(frozen=True)
class BrokerHealth:
    connected: bool
    latency_ms: float | None
    error: str | None = None


class Publisher(Protocol):
    """One broker connection owned by one thread (pika and librdkafka objects are not
    shared across threads)."""

    name: str  # "redis" | "rabbitmq" | "kafka"

    def connect(self) -> None:
        """Open the connection and declare the topology; PublishError if unreachable."""

    def publish_batch(self, events: Sequence[OutboxEvent]) -> None:
        """Publish in order; return after the broker confirmed all; PublishError else."""

    def health(self) -> BrokerHealth:
        """A bounded round trip (PING, connection open, list_topics)."""

    def close(self) -> None:
        """Idempotent."""
