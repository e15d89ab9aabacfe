"""The Kafka write-task channel (events.md §5, §6.3, §7, §8, §9).

Tasks go to ``{topic_prefix}.tasks.{node_id}`` with key ``<bucket>/<key>`` (one object, one
partition, one order), value = the WriteTask JSON and header ``task_id``; dead letters go to
``{topic_prefix}.dead-letter`` with headers ``task_id``, ``error`` and ``attempts``. The
producer, its configuration, topic declaration and error logging are the publisher's
(``KafkaPublisher``), declaring only these two topics. The consumer (created at the first
``dequeue``) is in group ``{consumer_group}.{node_id}`` with ``enable.auto.commit=false`` and
``auto.offset.reset=earliest``.

Acknowledging is committing an offset, and a Kafka offset is per partition: committing
offset N+1 says "everything up to N is done". A delivery handed out but not acknowledged must
not be skipped by a later one's commit, so this class keeps, per partition, the offsets it
handed out and not yet finished, and commits only up to the lowest of them: acking out of
order is safe (the later ack's commit waits until the earlier delivery is finished too); in
the usual loop (one delivery at a time, ack, next) every ack commits at once. A delivery
abandoned without ack is not handed out again by the same live consumer (Kafka positions
move on); it comes back to whoever consumes the partition after a rebalance, a restart, or
``close()`` (at-least-once; the consumer dedupes by the task row). On a rebalance (or a lost
session) the bookkeeping of revoked partitions is dropped, and a later ack of a delivery from
one of them, or from a consumer since closed, commits nothing and returns (logged at INFO):
the partition's next consumer gets it again. Tasks running longer than librdkafka's
``max.poll.interval.ms`` (300 s) cost the consumer its partitions in the same way.

Bounds: ``enqueue`` / ``dead_letter`` wait at most ``timeout_s`` for the delivery report;
``dequeue`` at most its ``timeout_s``; health calls share one ``timeout_s`` deadline. The one
exception is the synchronous commit of ``ack`` / ``dead_letter``: librdkafka has no timeout
for it, and when the group coordinator vanishes it fails (``_WAIT_COORD``) only once the
group session is lost, i.e. after up to ``session_timeout_ms`` (keep that small: 6–10 s).

tansu (the test broker) reports the high watermark as the last record batch's base offset +
1, so there ``pending_tasks`` and ``dead_letter_count`` are approximate: exact while every
batch holds one record (``enqueue`` and ``dead_letter`` produce one message and wait for it,
so theirs do), short when a producer batched several messages. Real Kafka: exact.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from bleepstore.events.kafka_publisher import KafkaPublisher
from bleepstore.events.publisher import PublishError
from bleepstore.events.tasks import Delivery, TaskChannelHealth, TaskMessage

if TYPE_CHECKING:
    from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

log = logging.getLogger("bleepstore.events.kafka.tasks")


class _TaskProducer(KafkaPublisher):
    """The publisher's producer, config, topic creation and error_cb, for the task topics."""

    @property
    def tasks_topic(self) -> str:
        return f"{self.topic_prefix}.tasks.{self.node_id}"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic_prefix}.dead-letter"

    def topics(self) -> list[str]:
        return [self.tasks_topic, self.dead_letter_topic]

    def declare(self) -> None:
        error = self._declare_topics()
        if error is not None:
            raise PublishError(f"kafka {self.bootstrap}: {error}")
        self._ensure_producer()

    def base_config(self) -> dict[str, Any]:
        return self._base_config()

    def producer(self) -> Producer:
        return self._ensure_producer()

    def send(self, topic: str, key: bytes | str | None, value: bytes | str | None,
             headers: list[tuple[str, str | bytes | None]]) -> None:
        """Produce one message; return once its delivery report succeeded (within
        ``timeout_s``), else PublishError and the producer is dropped (as publish_batch)."""
        from confluent_kafka import KafkaException

        producer = self._ensure_producer()
        outcome: list[str | None] = []

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            outcome.append(None if err is None else f"{msg.topic()}: {err.str()}")

        deadline = time.monotonic() + self.timeout_s
        try:
            while True:
                try:
                    producer.produce(topic, value=value, key=key, headers=headers,
                                     on_delivery=on_delivery)
                    break
                except BufferError:
                    if time.monotonic() >= deadline:
                        raise
                    producer.poll(0.05)
            producer.flush(max(0.0, deadline - time.monotonic()))
        except (BufferError, KafkaException) as exc:
            self._discard()
            raise PublishError(f"kafka {self.bootstrap}: produce to {topic} failed: "
                               f"{exc}") from exc
        if outcome != [None]:
            detail = outcome[0] if outcome else (
                f"no delivery report; last broker error: {self._last_error or 'none'}")
            self._discard()
            raise PublishError(f"kafka {self.bootstrap}: message to {topic} not confirmed "
                               f"within {self.timeout_s}s ({detail})")
        self._logged.clear()
        self._last_error = None

    def last_error(self) -> str | None:
        return self._last_error


class KafkaTaskQueue:
    name = "kafka"

    def __init__(self, brokers: list[str], topic_prefix: str = "bleepstore",
                 consumer_group: str = "bleepstore-workers", acks: str = "all",
                 partitions: int = 6, replication_factor: int = 1, node_id: str = "node",
                 timeout_s: float = 5.0, session_timeout_ms: int = 10000) -> None:
        self._channel = _TaskProducer(brokers, topic_prefix=topic_prefix, acks=acks,
                                      partitions=partitions,
                                      replication_factor=replication_factor, node_id=node_id,
                                      timeout_s=timeout_s)
        self.bootstrap = self._channel.bootstrap
        self.group_id = f"{consumer_group}.{node_id}"
        self.tasks_topic = self._channel.tasks_topic
        self.dead_letter_topic = self._channel.dead_letter_topic
        self.timeout_s = timeout_s
        self.session_timeout_ms = session_timeout_ms
        self._consumer: Consumer | None = None
        self._probe: Consumer | None = None  # health: never subscribes, never joins
        # per (topic, partition): offsets handed out and not finished, the end of the
        # finished run (last finished offset + 1), and the offset last committed
        self._outstanding: dict[tuple[str, int], set[int]] = {}
        self._finished: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}

    # -- connection ---------------------------------------------------------------------

    def connect(self) -> None:
        """Declare both topics (TOPIC_ALREADY_EXISTS ignored) and create the producer."""
        self._channel.declare()

    def _consumer_config(self) -> dict[str, Any]:
        heartbeat = max(100, min(3000, self.session_timeout_ms // 10))
        return {**self._channel.base_config(), "group.id": self.group_id,
                "enable.auto.commit": False, "auto.offset.reset": "earliest",
                "session.timeout.ms": self.session_timeout_ms,
                "heartbeat.interval.ms": heartbeat,
                "max.poll.interval.ms": max(300_000, self.session_timeout_ms),
                "allow.auto.create.topics": False}

    def _ensure_consumer(self) -> Consumer:
        if self._consumer is None:
            from confluent_kafka import Consumer, KafkaException

            try:
                consumer = Consumer(self._consumer_config())
                consumer.subscribe([self.tasks_topic], on_revoke=self._on_revoke,
                                   on_lost=self._on_revoke)
            except KafkaException as exc:
                raise PublishError(f"kafka consumer for {self.bootstrap}: {exc}") from exc
            self._consumer = consumer
        return self._consumer

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Rebalance (served inside poll): forget the bookkeeping of those partitions."""
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._outstanding.pop(key, None)
            self._finished.pop(key, None)
            self._committed.pop(key, None)

    def _drop_consumer(self) -> None:
        """Close the consumer (it leaves the group: what it did not commit goes to the next
        consumer of the partition, this object's own next one included)."""
        consumer, self._consumer = self._consumer, None
        self._outstanding.clear()
        self._finished.clear()
        self._committed.clear()
        if consumer is not None:
            try:
                consumer.close()
            except Exception as exc:  # already closed, broker gone: nothing left to do
                log.debug("kafka consumer close: %r", exc)

    # -- tasks --------------------------------------------------------------------------

    def enqueue(self, message: TaskMessage) -> None:
        self._channel.send(self.tasks_topic, key=message.key, value=message.body,
                           headers=[("task_id", message.task_id)])

    def dequeue(self, timeout_s: float) -> Delivery | None:
        """The next message of this node's channel. The first call subscribes; the group
        join takes about half of ``session_timeout_ms``, so early calls may return None."""
        from confluent_kafka import KafkaError, KafkaException

        consumer = self._ensure_consumer()
        try:
            msg = consumer.poll(max(0.0, timeout_s))
        except (KafkaException, RuntimeError) as exc:
            self._drop_consumer()
            raise PublishError(f"kafka {self.bootstrap}: consume failed: {exc}") from exc
        if msg is None:
            return None
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return None
            # e.g. "Subscribed topic not available" after a memory broker restarted: a
            # fresh consumer (after connect() declared the topics again) is the sure way back.
            self._drop_consumer()
            raise PublishError(f"kafka {self.bootstrap}: consume {self.tasks_topic}: "
                               f"{err.str()}")
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        if topic is not None and partition is not None and offset is not None:
            key = (topic, partition)
            self._outstanding.setdefault(key, set()).add(offset)
            self._committed.setdefault(key, offset)  # the position started at or below it
        body = _text(msg.value())
        return Delivery(task_id=_task_id(msg, body), body=body, handle=msg)

    def ack(self, delivery: Delivery) -> None:
        """Commit (synchronously) past this delivery, and past every later one of its
        partition already finished, but never past one still outstanding."""
        from confluent_kafka import KafkaException, TopicPartition

        msg: Message = delivery.handle
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        if topic is None or partition is None or offset is None:
            raise PublishError(f"kafka {self.bootstrap}: task {delivery.task_id}: the handle "
                               "is not a consumed message")
        key = (topic, partition)
        outstanding = self._outstanding.get(key)
        consumer = self._consumer
        if consumer is None or outstanding is None or offset not in outstanding:
            # Its partition was revoked (rebalance, lost session) or its consumer closed
            # since: committing now could move another member's position. Nothing to do:
            # whoever consumes the partition next gets it again (and dedupes).
            log.info("kafka: task %s (%s[%d]@%d) is no longer this consumer's; not "
                     "committed, it will be delivered again", delivery.task_id, topic,
                     partition, offset)
            return
        outstanding.discard(offset)
        finished = max(self._finished.get(key, 0), offset + 1)
        self._finished[key] = finished
        target = min(min(outstanding), finished) if outstanding else finished
        if target <= self._committed.get(key, -1):
            return  # an earlier delivery of this partition is still being worked on
        try:
            result = consumer.commit(offsets=[TopicPartition(topic, partition, target)],
                                     asynchronous=False)
        except KafkaException as exc:
            raise PublishError(f"kafka {self.bootstrap}: commit {topic}[{partition}]@{target} "
                               f"failed: {exc}") from exc
        for tp in result or []:
            if tp.error is not None:
                raise PublishError(f"kafka {self.bootstrap}: commit {topic}[{partition}]@"
                                   f"{target} failed: {tp.error.str()}")
        self._committed[key] = target

    def dead_letter(self, delivery: Delivery, error: str, attempts: int) -> None:
        """To ``{prefix}.dead-letter`` (same key and value; headers task_id, error,
        attempts), confirmed; then the original is acknowledged."""
        msg: Message = delivery.handle
        self._channel.send(self.dead_letter_topic, key=msg.key(), value=msg.value(),
                           headers=[("task_id", delivery.task_id), ("error", error),
                                    ("attempts", str(attempts))])
        self.ack(delivery)

    def reclaim(self) -> int:
        """Nothing to do: uncommitted offsets are consumed again after a rebalance/restart."""
        return 0

    # -- health -------------------------------------------------------------------------

    def health(self) -> TaskChannelHealth:
        """list_topics succeeds; pending = Σ (high watermark − committed offset) of the task
        topic (committed defaults to the low watermark); dead letters = high − low of the
        dead-letter topic. Approximate on tansu (module docstring). Never raises."""
        deadline = time.monotonic() + self.timeout_s

        def left() -> float:
            return max(0.1, deadline - time.monotonic())

        try:
            self._channel.producer().list_topics(timeout=left())
        except Exception as exc:
            return TaskChannelHealth(connected=False, pending_tasks=None,
                                     dead_letter_count=None, error=str(exc))
        try:
            probe = self._ensure_probe()
            parts = self._partitions(probe, self.tasks_topic, left())
            committed = probe.committed(parts, timeout=left())
            pending = 0
            for tp in committed:
                low, high = probe.get_watermark_offsets(tp, timeout=left(), cached=False)
                start = tp.offset if tp.offset >= 0 else low
                pending += max(0, high - max(start, low))
            dead = 0
            for tp in self._partitions(probe, self.dead_letter_topic, left()):
                low, high = probe.get_watermark_offsets(tp, timeout=left(), cached=False)
                dead += max(0, high - low)
        except Exception as exc:
            return TaskChannelHealth(connected=True, pending_tasks=None,
                                     dead_letter_count=None, error=f"counts: {exc}")
        return TaskChannelHealth(connected=True, pending_tasks=pending, dead_letter_count=dead)

    def _ensure_probe(self) -> Consumer:
        if self._probe is None:
            from confluent_kafka import Consumer

            conf = {k: v for k, v in self._consumer_config().items() if k != "error_cb"}
            self._probe = Consumer(conf)
        return self._probe

    @staticmethod
    def _partitions(probe: Consumer, topic: str, timeout: float) -> list[TopicPartition]:
        from confluent_kafka import TopicPartition

        meta = probe.list_topics(topic, timeout=timeout).topics[topic]
        if meta.error is not None:
            raise PublishError(f"topic {topic}: {meta.error.str()}")
        return [TopicPartition(topic, p) for p in sorted(meta.partitions)]

    def close(self) -> None:
        self._drop_consumer()
        probe, self._probe = self._probe, None
        if probe is not None:
            try:
                probe.close()
            except Exception as exc:
                log.debug("kafka probe close: %r", exc)
        self._channel.close()


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.decode("utf-8", errors="replace")


def _task_id(msg: Message, body: str) -> str:
    """The ``task_id`` header; failing that, the body's ``task_id``; failing that, ""."""
    headers = msg.headers() or []  # a consumed message's: a list of (name, bytes)
    for name, value in headers.items() if isinstance(headers, dict) else headers:
        if name == "task_id" and value is not None:
            return _text(value)
    try:
        parsed = json.loads(body)
    except ValueError:
        return ""
    task_id = parsed.get("task_id") if isinstance(parsed, dict) else None
    return task_id if isinstance(task_id, str) else ""
