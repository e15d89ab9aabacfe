"""KafkaTaskQueue against the session tansu broker (memory storage): enqueue / dequeue / ack
with per-key order, commits that survive into a new consumer, per-node channels,
redelivery of what a dead consumer did not ack (out-of-order acks never skip it), dead
letters, a stopped broker (bounded PublishError) and recovery after a restart.

Every test uses its own topic prefix and consumer group. Group joins take about half of
``session.timeout.ms`` on tansu, so consumers here use 6 s (3 s where the test waits out a
session) and each test creates as few as it can. Committed offsets are checked with a plain
consumer that never joins the group (OffsetFetch only)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.kafka_broker import TansuBroker

from bleepstore.events.kafka_tasks import KafkaTaskQueue
from bleepstore.events.publisher import PublishError
from bleepstore.events.tasks import Delivery, TaskMessage

SESSION_MS = 6000
JOIN_S = 20.0  # a join takes ~3.6 s at 6 s sessions; generous bound for a loaded machine

MakeQueue = Callable[..., KafkaTaskQueue]


@pytest.fixture
def prefix() -> str:
    return "kt" + uuid.uuid4().hex[:10]


@pytest.fixture
def make_queue(kafka_broker: TansuBroker, prefix: str) -> Iterator[MakeQueue]:
    """``make_queue(**overrides)``: a KafkaTaskQueue on this test's prefix and group,
    connected; every one is closed at teardown."""
    group = "g" + uuid.uuid4().hex[:10]
    made: list[KafkaTaskQueue] = []

    def make(connect: bool = True, **overrides: Any) -> KafkaTaskQueue:
        conf: dict[str, Any] = {"topic_prefix": prefix, "consumer_group": group,
                                "node_id": "node-a", "partitions": 3, "timeout_s": 5.0,
                                "session_timeout_ms": SESSION_MS, **overrides}
        q = KafkaTaskQueue([kafka_broker.bootstrap], **conf)
        made.append(q)
        if connect:
            q.connect()
        return q

    yield make
    for q in made:
        q.close()


def task(n: int, key: str = "reports/2026/q1.pdf") -> TaskMessage:
    task_id = f"task_{uuid.uuid4().hex[:12]}_{n}"
    body = json.dumps({"task_id": task_id, "operation": "PutObject", "attempts": 0,
                       "payload": {"bucket": key.split("/", 1)[0], "key": key.split("/", 1)[1],
                                   "n": n, "text": "naïve ✓"}}, ensure_ascii=False)
    return TaskMessage(task_id=task_id, body=body, key=key)


def take(q: KafkaTaskQueue, n: int, timeout: float = JOIN_S) -> list[Delivery]:
    """``n`` deliveries (the first call includes the group join), bounded."""
    out: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        assert time.monotonic() < deadline, f"got {len(out)} of {n} deliveries in {timeout}s"
        d = q.dequeue(0.5)
        if d is not None:
            out.append(d)
    return out


def committed(broker: TansuBroker, group: str, topic: str, partitions: int = 3
              ) -> dict[int, int]:
    """The group's committed offsets (partition → offset, -1001 when none), read without
    joining the group."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "enable.auto.commit": False, "log_level": 3})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=5)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def test_enqueue_dequeue_ack_order_commit_and_empty_channel(
        kafka_broker: TansuBroker, make_queue: MakeQueue) -> None:
    q1 = make_queue()
    sent = [task(i) for i in range(3)]
    for m in sent:
        q1.enqueue(m)
    health = q1.health()
    assert health.connected and health.error is None
    assert health.pending_tasks == 3 and health.dead_letter_count == 0  # (tansu: 1-record
    # batches, so its watermark is right here)

    got = take(q1, 3)
    assert [(d.task_id, d.body) for d in got] == [(m.task_id, m.body) for m in sent]
    msgs = [d.handle for d in got]
    assert {m.partition() for m in msgs} == {msgs[0].partition()}  # same key, same partition
    assert [m.offset() for m in msgs] == sorted(m.offset() for m in msgs)
    assert all(m.key() == b"reports/2026/q1.pdf" for m in msgs)
    for d in got:
        q1.ack(d)
    part, last = msgs[0].partition(), msgs[-1].offset()
    assert committed(kafka_broker, q1.group_id, q1.tasks_topic)[part] == last + 1
    assert q1.health().pending_tasks == 0
    assert q1.reclaim() == 0
    q1.close()

    # A new consumer in the group starts at the committed offset: the next message it sees
    # is one enqueued now, not one of the three acked ones (same key: they would come first).
    q2 = make_queue()
    fourth = task(3)
    q2.enqueue(fourth)
    (d4,) = take(q2, 1)
    assert (d4.task_id, d4.body) == (fourth.task_id, fourth.body)
    q2.ack(d4)

    started = time.monotonic()
    assert q2.dequeue(1.0) is None
    elapsed = time.monotonic() - started
    assert 0.8 <= elapsed < 3.0, f"empty dequeue(1.0) took {elapsed:.2f}s"


def test_node_channels_are_separate(kafka_broker: TansuBroker, make_queue: MakeQueue) -> None:
    qa = make_queue(node_id="node-a")
    qb = make_queue(node_id="node-b")
    assert qa.tasks_topic.endswith(".tasks.node-a") and qb.tasks_topic.endswith(".tasks.node-b")
    assert qa.group_id.endswith(".node-a") and qb.group_id.endswith(".node-b")
    for_a = [task(i, key=f"b/a-{i}") for i in range(2)]
    for_b = [task(9, key="b/b-9")]
    for m in for_a:
        qa.enqueue(m)
    qb.enqueue(for_b[0])
    assert len(kafka_broker.read_topic(qa.tasks_topic, 2)) == 2
    assert len(kafka_broker.read_topic(qb.tasks_topic, 1)) == 1

    got: dict[str, list[Delivery]] = {"a": [], "b": []}
    deadline = time.monotonic() + JOIN_S
    while len(got["a"]) < 2 or len(got["b"]) < 1:  # both groups join at the same time
        assert time.monotonic() < deadline, got
        for name, q in (("a", qa), ("b", qb)):
            d = q.dequeue(0.2)
            if d is not None:
                got[name].append(d)
                q.ack(d)
    assert {d.task_id for d in got["a"]} == {m.task_id for m in for_a}
    assert [d.task_id for d in got["b"]] == [for_b[0].task_id]
    assert qa.dequeue(0.5) is None and qb.dequeue(0.5) is None


def test_unacked_deliveries_come_back_and_out_of_order_acks_never_skip(
        kafka_broker: TansuBroker, make_queue: MakeQueue) -> None:
    q1 = make_queue()
    sent = [task(i) for i in range(3)]
    for m in sent:
        q1.enqueue(m)
    d0, d1, d2 = take(q1, 3)
    part = d0.handle.partition()
    first = d0.handle.offset()
    q1.ack(d2)  # finished before d1: nothing may be committed past d1 ...
    assert committed(kafka_broker, q1.group_id, q1.tasks_topic)[part] < first + 1
    q1.ack(d0)  # ... d0 done: commit up to d1 (exclusive), d2 still waits for d1
    assert committed(kafka_broker, q1.group_id, q1.tasks_topic)[part] == first + 1
    q1.close()  # dies holding d1 unacknowledged
    q1.ack(d1)  # too late: its consumer is gone, nothing is committed (it comes again)
    assert committed(kafka_broker, q1.group_id, q1.tasks_topic)[part] == first + 1

    q2 = make_queue()
    again = take(q2, 2)
    assert [d.task_id for d in again] == [sent[1].task_id, sent[2].task_id]
    assert [d.body for d in again] == [sent[1].body, sent[2].body]
    for d in again:
        q2.ack(d)
    assert committed(kafka_broker, q2.group_id, q2.tasks_topic)[part] == first + 3
    assert q2.dequeue(0.5) is None


def test_dead_letter(kafka_broker: TansuBroker, make_queue: MakeQueue) -> None:
    q = make_queue()
    m = task(0)
    q.enqueue(m)
    (d,) = take(q, 1)
    q.dead_letter(d, "InternalError: backend said 503 (ünïcode)", 4)

    (dl,) = kafka_broker.read_topic(q.dead_letter_topic, 1)
    headers = dict(dl.headers() or [])
    assert headers["error"].decode() == "InternalError: backend said 503 (ünïcode)"
    assert headers["attempts"] == b"4"
    assert headers["task_id"].decode() == m.task_id
    assert dl.value().decode() == m.body and dl.key() == m.key.encode()
    # ... and the original is done: its offset is committed
    assert committed(kafka_broker, q.group_id, q.tasks_topic)[d.handle.partition()] == \
        d.handle.offset() + 1
    health = q.health()
    assert (health.pending_tasks, health.dead_letter_count) == (0, 1)


def test_stopped_broker_fails_fast_and_restart_recovers(
        kafka_broker: TansuBroker, make_queue: MakeQueue) -> None:
    q = make_queue(timeout_s=2.0, session_timeout_ms=3000)
    q.enqueue(task(0))
    (held,) = take(q, 1)  # a live consumer, holding one unacked delivery
    kafka_broker.stop()
    try:
        # librdkafka's synchronous commit has no timeout: it fails once the group session
        # is lost, i.e. within session_timeout_ms (3 s here)
        started = time.monotonic()
        with pytest.raises(PublishError, match="commit"):
            q.ack(held)
        elapsed = time.monotonic() - started
        assert elapsed < 3.0 + 3.0, f"ack on a dead broker took {elapsed:.1f}s"
        for attempt in range(2):  # the second on a recreated producer
            started = time.monotonic()
            with pytest.raises(PublishError, match=kafka_broker.bootstrap):
                q.enqueue(task(1 + attempt))
            elapsed = time.monotonic() - started
            assert elapsed < 4.0, f"enqueue {attempt}: PublishError after {elapsed:.1f}s"
        started = time.monotonic()
        health = q.health()
        assert not health.connected and health.error
        assert health.pending_tasks is None and health.dead_letter_count is None
        assert time.monotonic() - started < 4.0
        started = time.monotonic()
        assert q.dequeue(1.0) is None
        assert time.monotonic() - started < 3.0
    finally:
        if kafka_broker.proc is None:
            kafka_broker.start()  # same port, memory storage: an empty broker

    assert q.tasks_topic not in kafka_broker.topics()
    deadline = time.monotonic() + 20
    while True:  # what the consumer loop does: connect again until it works
        try:
            q.connect()
            break
        except PublishError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert {q.tasks_topic, q.dead_letter_topic} <= kafka_broker.topics()
    fresh = task(7)
    deadline = time.monotonic() + 20
    while True:  # the old producer was dropped on failure; this one may need a retry
        try:
            q.enqueue(fresh)
            break
        except PublishError:
            assert time.monotonic() < deadline
    got: Delivery | None = None
    deadline = time.monotonic() + 30
    while got is None:  # the pre-restart consumer: rejoins, or is replaced after an error
        assert time.monotonic() < deadline, "no delivery after the restart"
        try:
            got = q.dequeue(0.5)
        except PublishError:
            q.connect()
    assert (got.task_id, got.body) == (fresh.task_id, fresh.body)
    q.ack(got)
    assert q.health().connected
