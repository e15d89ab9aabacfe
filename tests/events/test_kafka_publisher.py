"""KafkaPublisher against a real Kafka-protocol broker (tansu, memory storage): topology,
delivery with keys/headers/per-bucket order, a dead broker (bounded PublishError, health)
and recovery after a restart on the same port. Every test uses its own topic prefix."""

from __future__ import annotations

import statistics
import time
import uuid
from collections import defaultdict
from typing import Any

import pytest
from support.kafka_broker import TansuBroker
from support.server import free_port

from bleepstore.events.kafka_publisher import EVENT_TYPES, KafkaPublisher
from bleepstore.events.publisher import OutboxEvent, PublishError


@pytest.fixture(scope="module")
def broker(kafka_broker: TansuBroker) -> TansuBroker:
    """The session's broker (tests/events/conftest.py)."""
    return kafka_broker


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


def make_events(n: int, start: int = 0, buckets: int = 5,
                types: tuple[str, ...] = ("object.created", "object.deleted", "bucket.created")
                ) -> list[OutboxEvent]:
    out = []
    for seq in range(start, start + n):
        bucket = f"bucket-{seq % buckets}-{'x' * (seq % buckets)}"
        etype = types[seq % len(types)]
        out.append(OutboxEvent(seq=seq, event_id=f"evt_{seq:026d}", event_type=etype,
                               partition_key=bucket,
                               body=f'{{"data":{{"bucket":"{bucket}"}},"seq":{seq},'
                                    f'"type":"{etype}"}}'))
    return out


def headers(msg: Any) -> dict[str, bytes]:
    return dict(msg.headers() or [])


def test_connect_creates_all_topics_and_is_idempotent(broker: TansuBroker, prefix: str) -> None:
    pub = KafkaPublisher([broker.bootstrap], topic_prefix=prefix, partitions=3,
                         node_id="node-a", timeout_s=5)
    expected = {f"{prefix}.{t}" for t in EVENT_TYPES} | {f"{prefix}.tasks.node-a",
                                                          f"{prefix}.dead-letter"}
    assert len(expected) == 13 and set(pub.topics()) == expected
    assert {f"{prefix}.objects.deleted", f"{prefix}.part.uploaded"} <= expected
    try:
        pub.connect()
        assert expected <= broker.topics()
        pub.connect()  # TOPIC_ALREADY_EXISTS for every topic: ignored
        again = KafkaPublisher([broker.bootstrap], topic_prefix=prefix, partitions=5,
                               node_id="node-a", timeout_s=5)
        again.connect()  # another node/worker: same topics, their partitions unchanged
        again.close()
    finally:
        pub.close()
        pub.close()  # idempotent
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=5)
    ours = {name: t for name, t in meta.topics.items() if name.startswith(prefix + ".")}
    assert set(ours) == expected
    assert {len(t.partitions) for t in ours.values()} == {3}


def test_batches_are_delivered_with_key_headers_and_per_bucket_order(
        broker: TansuBroker, prefix: str) -> None:
    pub = KafkaPublisher([broker.bootstrap], topic_prefix=prefix, timeout_s=5)
    events = make_events(150)
    try:
        pub.connect()
        for i in range(0, len(events), 50):  # three batches: order must hold across them
            pub.publish_batch(events[i:i + 50])
        assert pub.health().connected
    finally:
        pub.close()

    by_type: dict[str, list[OutboxEvent]] = defaultdict(list)
    for ev in events:
        by_type[ev.event_type].append(ev)
    sent = {ev.event_id: ev for ev in events}
    seen: set[str] = set()
    for etype, evs in by_type.items():
        msgs = broker.read_topic(f"{prefix}.{etype}", len(evs))
        assert len(msgs) == len(evs), etype
        # per bucket: one partition, offsets increasing in publish (seq) order
        by_bucket: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        for msg in msgs:
            hdr = headers(msg)
            ev = sent[hdr["event_id"].decode()]
            assert hdr["type"].decode() == etype == ev.event_type
            assert msg.key() == ev.partition_key.encode()
            assert msg.value() == ev.body.encode()
            assert ev.event_id not in seen
            seen.add(ev.event_id)
            by_bucket[ev.partition_key].append((ev.seq, msg.partition(), msg.offset()))
        assert len(by_bucket) > 1
        for bucket, rows in by_bucket.items():
            rows.sort()
            assert len({p for _, p, _ in rows}) == 1, f"{bucket} spread over partitions"
            offsets = [o for _, _, o in rows]
            assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), bucket
    assert seen == set(sent)


def test_dead_broker_fails_fast_then_recovers_after_restart(broker: TansuBroker,
                                                            prefix: str) -> None:
    pub = KafkaPublisher([broker.bootstrap], topic_prefix=prefix, timeout_s=2)
    try:
        pub.connect()
        pub.publish_batch(make_events(10))
        broker.stop()
        try:
            for attempt in range(2):  # the second one runs on a recreated producer
                started = time.monotonic()
                with pytest.raises(PublishError) as err:
                    pub.publish_batch(make_events(10, start=100 + 10 * attempt))
                elapsed = time.monotonic() - started
                assert elapsed < 5, f"attempt {attempt}: PublishError after {elapsed:.1f}s"
                assert broker.bootstrap in str(err.value)
            started = time.monotonic()
            health = pub.health()
            assert not health.connected and health.error and health.latency_ms is None
            assert time.monotonic() - started < 5
        finally:
            broker.start()  # same port; memory storage: an empty broker
        assert f"{prefix}.object.created" not in broker.topics()
        with pytest.raises(PublishError):  # no auto-creation: connect() must declare again
            pub.publish_batch(make_events(3, start=300))
        assert f"{prefix}.object.created" not in broker.topics()

        deadline = time.monotonic() + 20
        while True:  # what the relay does: connect again, retry the batch
            try:
                pub.connect()
                pub.publish_batch(make_events(10, start=200))
                break
            except PublishError:
                if time.monotonic() > deadline:
                    raise
        assert pub.health().connected
    finally:
        pub.close()
    created = broker.read_topic(f"{prefix}.object.created", 3)  # seqs 201, 204, 207
    assert {int(headers(m)["event_id"].decode()[4:]) for m in created} == {201, 204, 207}
    assert len(broker.topics() & {f"{prefix}.{t}" for t in EVENT_TYPES}) == len(EVENT_TYPES)


def test_unreachable_bootstrap_at_connect(prefix: str) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens there
    pub = KafkaPublisher([bootstrap], topic_prefix=prefix, timeout_s=1)
    started = time.monotonic()
    with pytest.raises(PublishError, match=bootstrap):
        pub.connect()
    assert time.monotonic() - started < 5
    assert not pub.health().connected
    pub.close()


def test_throughput(broker: TansuBroker, prefix: str, capsys: pytest.CaptureFixture[str]
                    ) -> None:
    pub = KafkaPublisher([broker.bootstrap], topic_prefix=prefix, timeout_s=5)
    events = make_events(10_000, buckets=50, types=("object.created",))
    pub.connect()
    pub.publish_batch(make_events(1, start=10_000_000, types=("object.created",)))  # warm
    per_batch: list[float] = []
    started = time.monotonic()
    try:
        for i in range(0, len(events), 100):
            t0 = time.monotonic()
            pub.publish_batch(events[i:i + 100])
            per_batch.append((time.monotonic() - t0) * 1000)
    finally:
        total = time.monotonic() - started
        pub.close()
    q = statistics.quantiles(per_batch, n=100)
    with capsys.disabled():
        print(f"\nkafka (tansu) publish: {len(events)} events in batches of 100: "
              f"{len(events) / total:,.0f} events/s, per batch p50 {q[49]:.1f} ms, "
              f"p99 {q[98]:.1f} ms, max {max(per_batch):.1f} ms")
    assert len(broker.read_topic(f"{prefix}.object.created", 10_001, timeout=30)) == 10_001
