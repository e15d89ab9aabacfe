"""The Kafka publisher (events.md §6.3): one idempotent ``confluent_kafka.Producer``.

Each event goes to ``{topic_prefix}.{event type}`` with key = bucket (per-bucket order: same
key, same partition), value = envelope, headers ``event_id`` and ``type``. A batch is
confirmed when every delivery report succeeded; otherwise PublishError and the producer is
dropped (a failed idempotent producer may be fatally broken) and recreated on the next call.
Every broker call is bounded by ``timeout_s`` (message, request and socket timeouts too).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bleepstore.events.publisher import BrokerHealth, OutboxEvent, PublishError

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer

    DeliveryCallback = Callable[[KafkaError | None, Message], None]

EVENT_TYPES = (
    "bucket.created", "bucket.deleted", "bucket.acl.updated",
    "object.created", "object.deleted", "objects.deleted", "object.acl.updated",
    "multipart.created", "part.uploaded", "multipart.completed", "multipart.aborted",
)

log = logging.getLogger("bleepstore.events.kafka")
# librdkafka's own log lines go to Python logging, not stderr, and only from CRIT up: while
# the broker is down it logs every reconnect attempt at ERR. Broker errors reach error_cb
# instead, which logs each error code once per outage and feeds PublishError / BrokerHealth.
_rdkafka_log = logging.getLogger("bleepstore.events.kafka.librdkafka")


class KafkaPublisher:
    name = "kafka"

    def __init__(self, brokers: list[str], topic_prefix: str = "bleepstore", acks: str = "all",
                 partitions: int = 6, replication_factor: int = 1, node_id: str = "node",
                 timeout_s: float = 5.0) -> None:
        self.bootstrap = ",".join(brokers)
        self.topic_prefix = topic_prefix
        self.acks = acks
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.node_id = node_id
        self.timeout_s = timeout_s
        self._producer: Producer | None = None
        self._last_error: str | None = None
        self._logged: set[int] = set()  # error codes logged since the last success

    def topics(self) -> list[str]:
        """Every topic ``connect()`` declares: one per event type, tasks, dead letters."""
        p = self.topic_prefix
        return [f"{p}.{t}" for t in EVENT_TYPES] + [f"{p}.tasks.{self.node_id}",
                                                    f"{p}.dead-letter"]

    def _base_config(self) -> dict[str, Any]:
        ms = max(1000, int(self.timeout_s * 1000))
        return {"bootstrap.servers": self.bootstrap, "socket.timeout.ms": ms,
                "socket.connection.setup.timeout.ms": ms, "reconnect.backoff.ms": 100,
                "reconnect.backoff.max.ms": 1000, "log.connection.close": False,
                "logger": _rdkafka_log, "log_level": 2, "error_cb": self._on_error}

    def _on_error(self, err: KafkaError) -> None:
        if err.code() not in self._logged:
            self._logged.add(err.code())
            log.warning("kafka %s: %s", self.bootstrap, err.str())
        self._last_error = err.str()

    def _ensure_producer(self) -> Producer:
        if self._producer is None:
            from confluent_kafka import KafkaException, Producer

            ms = max(1000, int(self.timeout_s * 1000))
            # No auto-creation: a topic missing (a memory broker restarted) fails the batch,
            # and connect() declares it again with our partition count.
            conf = {**self._base_config(), "acks": self.acks, "linger.ms": 5,
                    "message.timeout.ms": ms, "request.timeout.ms": ms,
                    "enable.idempotence": self.acks == "all", "allow.auto.create.topics": False}
            self._last_error = None
            try:
                self._producer = Producer(conf)
            except KafkaException as exc:
                raise PublishError(f"kafka producer for {self.bootstrap}: {exc}") from exc
        return self._producer

    def _discard(self) -> None:
        """Destroy the producer without waiting on the broker: purge what it still holds,
        then close (explicitly: a traceback may keep the object alive, reconnecting)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.purge(in_queue=True, in_flight=True)
            producer.poll(0)
            producer.close()

    def connect(self) -> None:
        error = self._declare_topics()
        if error is not None:
            raise PublishError(f"kafka {self.bootstrap}: {error}")
        self._ensure_producer()

    def _declare_topics(self) -> str | None:
        """create_topics for every topic, TOPIC_ALREADY_EXISTS ignored; the error, if any.
        (Returned, not raised: a traceback would keep the AdminClient, which has no close(),
        alive and reconnecting.)"""
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import AdminClient
        from confluent_kafka.cimpl import NewTopic  # where it lives; admin re-exports it

        conf = {k: v for k, v in self._base_config().items() if k != "error_cb"}
        admin = AdminClient(conf)
        try:
            admin.list_topics(timeout=self.timeout_s)
        except KafkaException as exc:
            return f"unreachable: {exc}"
        new = [NewTopic(t, num_partitions=self.partitions,
                        replication_factor=self.replication_factor) for t in self.topics()]
        futures = admin.create_topics(new, operation_timeout=self.timeout_s,
                                      request_timeout=self.timeout_s)
        for topic, future in futures.items():
            try:
                future.result(timeout=self.timeout_s)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    return f"create {topic}: {exc}"
            except Exception as exc:  # concurrent.futures.TimeoutError and kin
                return f"create {topic}: {exc!r}"
        return None

    def publish_batch(self, events: Sequence[OutboxEvent]) -> None:
        if not events:
            return
        from confluent_kafka import KafkaException

        producer = self._ensure_producer()
        failures: list[str] = []
        delivered = 0

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            nonlocal delivered
            if err is None:
                delivered += 1
            else:
                failures.append(f"{msg.topic()}: {err.str()}")

        deadline = time.monotonic() + self.timeout_s
        try:
            for ev in events:
                self._produce(producer, ev, on_delivery, deadline)
            remaining = producer.flush(max(0.0, deadline - time.monotonic()))
        except (BufferError, KafkaException) as exc:
            self._discard()
            raise PublishError(f"kafka {self.bootstrap}: produce failed: {exc}") from exc
        if failures or remaining or delivered != len(events):
            detail = failures[0] if failures else (
                f"no delivery report; last broker error: {self._last_error or 'none'}")
            self._discard()  # (its purge reports the undelivered ones as failures too)
            raise PublishError(f"kafka {self.bootstrap}: {len(events) - delivered} of "
                               f"{len(events)} events not confirmed within {self.timeout_s}s "
                               f"({detail})")
        self._logged.clear()
        self._last_error = None

    def _produce(self, producer: Producer, ev: OutboxEvent, on_delivery: DeliveryCallback,
                 deadline: float) -> None:
        """produce(), waiting (bounded) for room when the local queue is full."""
        while True:
            try:
                producer.produce(f"{self.topic_prefix}.{ev.event_type}", value=ev.body,
                                 key=ev.partition_key, on_delivery=on_delivery,
                                 headers=[("event_id", ev.event_id), ("type", ev.event_type)])
                return
            except BufferError:
                if time.monotonic() >= deadline:
                    raise
                producer.poll(0.05)

    def health(self) -> BrokerHealth:
        from confluent_kafka import KafkaException

        start = time.monotonic()
        try:
            self._ensure_producer().list_topics(timeout=self.timeout_s)
        except (KafkaException, PublishError) as exc:
            return BrokerHealth(connected=False, latency_ms=None, error=str(exc))
        self._logged.clear()
        self._last_error = None
        return BrokerHealth(connected=True, latency_ms=(time.monotonic() - start) * 1000)

    def close(self) -> None:
        producer = self._producer
        if producer is not None:
            producer.flush(min(1.0, self.timeout_s))
        self._discard()
