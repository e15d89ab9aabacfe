"""RabbitPublisher against a real RabbitMQ 3.10 (events.md §6.2, publisher.py invariants).

One broker for the module (it takes seconds to start); every test uses its own exchange and
queue prefix, so tests never see each other's messages. Tests that stop or pause the broker
bring it back before they return (``live_broker``).
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pika.exceptions
import pytest
from support.rabbitmq_broker import RabbitBroker
from support.server import free_port

from bleepstore.events.publisher import OutboxEvent, PublishError
from bleepstore.events.rabbitmq_publisher import RabbitPublisher


@pytest.fixture(scope="module")
def broker(rabbitmq_broker: RabbitBroker) -> RabbitBroker:
    """The session's broker (tests/events/conftest.py)."""
    return rabbitmq_broker


@pytest.fixture
def live_broker(broker: RabbitBroker) -> Iterator[RabbitBroker]:
    """The module broker, guaranteed running again after a test that stopped or paused it."""
    yield broker
    if broker.paused:
        broker.resume()
    if not broker.running:
        broker.start()


def names() -> tuple[str, str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"ex-{tag}", f"pfx-{tag}", f"node-{tag}"


def make_events(n: int, types: list[str] | None = None, start: int = 1) -> list[OutboxEvent]:
    types = types or ["object.created"]
    out = []
    for i, seq in enumerate(range(start, start + n)):
        event_id, event_type = f"evt_{seq:026d}", types[i % len(types)]
        body = json.dumps({
            "data": {"bucket": "reports", "key": f"2026/räksmörgås-{seq}.pdf", "size": seq},
            "id": event_id, "request_id": "7C1E0A9B44D2F613", "source": "edge-a",
            "timestamp": "2026-03-14T09:26:53.589Z", "type": event_type,
        }, sort_keys=True, ensure_ascii=False)
        out.append(OutboxEvent(seq=seq, event_id=event_id, event_type=event_type,
                               partition_key="reports", body=body))
    return out


def drain(ch: Any, queue: str, n: int, timeout: float = 10.0) -> list[tuple[Any, Any, bytes]]:
    """Up to ``n`` messages from ``queue`` (acked), polling until ``timeout``."""
    got: list[tuple[Any, Any, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            ch.connection.sleep(0.02)  # bounded poll: pika keeps the connection serviced
            continue
        got.append((method, props, body))
    return got


def depth(ch: Any, queue: str) -> int:
    return int(ch.queue_declare(queue, passive=True).method.message_count)


def test_connect_declares_topology(broker: RabbitBroker) -> None:
    ex, pfx, node = names()
    pub = RabbitPublisher(broker.url, exchange=ex, queue_prefix=pfx, node_id=node)
    try:
        pub.connect()
    finally:
        pub.close()
    with broker.channel() as ch:
        for exchange in (ex, f"{ex}.dlx", f"{ex}.tasks"):
            ch.exchange_declare(exchange, passive=True)
        for queue in (f"{pfx}.dead-letter", f"{pfx}.tasks.{node}", f"{pfx}.events"):
            assert depth(ch, queue) == 0
        # Durable: redeclaring with the same flags is fine, a non-durable redeclare is refused.
        ch.queue_declare(f"{pfx}.events", durable=True)
    with broker.channel() as ch, pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(f"{pfx}.events", durable=False)
    assert info.value.reply_code == 406

    # The task queue dead-letters into {exchange}.dlx → {prefix}.dead-letter.
    tasks, dead = f"{pfx}.tasks.{node}", f"{pfx}.dead-letter"
    with broker.channel() as ch:
        ch.confirm_delivery()
        ch.basic_publish(f"{ex}.tasks", node, b'{"task_id": "t1"}',
                         pika.BasicProperties(message_id="t1", delivery_mode=2))
        deadline, method = time.monotonic() + 10, None
        while method is None and time.monotonic() < deadline:
            method, _props, _body = ch.basic_get(tasks, auto_ack=False)
            if method is None:
                ch.connection.sleep(0.02)
        assert method is not None, "task never reached the task queue"
        ch.basic_nack(method.delivery_tag, requeue=False)
        [(_m, props, body)] = drain(ch, dead, 1)
    assert body == b'{"task_id": "t1"}' and props.message_id == "t1"
    death = props.headers["x-death"][0]
    assert death["queue"] == tasks and death["reason"] == "rejected"
    assert death["exchange"] == f"{ex}.tasks"


def test_non_topic_exchange_has_no_events_queue(broker: RabbitBroker) -> None:
    ex, pfx, node = names()
    pub = RabbitPublisher(broker.url, exchange=ex, exchange_type="fanout", queue_prefix=pfx,
                          node_id=node)
    try:
        pub.connect()
    finally:
        pub.close()
    with broker.channel() as ch:
        ch.exchange_declare(ex, exchange_type="fanout", passive=True)
        assert depth(ch, f"{pfx}.tasks.{node}") == 0
    with broker.channel() as ch, pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        ch.queue_declare(f"{pfx}.events", passive=True)
    assert info.value.reply_code == 404


def test_batch_lands_in_order_with_properties(broker: RabbitBroker) -> None:
    ex, pfx, node = names()
    pub = RabbitPublisher(broker.url, exchange=ex, queue_prefix=pfx, node_id=node)
    pub.connect()
    events = make_events(30, ["object.created", "bucket.created", "object.deleted"])
    with broker.channel() as ch:
        sub = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(sub, ex, routing_key="object.*")
        before = int(time.time())
        try:
            pub.publish_batch(events)
        finally:
            pub.close()
        after = int(time.time())
        got = drain(ch, f"{pfx}.events", len(events))
        only_objects = drain(ch, sub, 20)
        assert depth(ch, f"{pfx}.events") == 0 and depth(ch, sub) == 0

    assert [p.message_id for _m, p, _b in got] == [e.event_id for e in events]
    for (method, props, body), ev in zip(got, events, strict=True):
        assert method.exchange == ex and method.routing_key == ev.event_type
        assert props.delivery_mode == 2
        assert props.content_type == "application/json"
        assert before <= props.timestamp <= after
        assert body.decode("utf-8") == ev.body
        assert json.loads(body)["type"] == ev.event_type
    want = [e for e in events if e.event_type.startswith("object.")]
    assert [p.message_id for _m, p, _b in only_objects] == [e.event_id for e in want]
    assert {m.routing_key for m, _p, _b in only_objects} == {"object.created", "object.deleted"}


def test_broker_stopped_then_restarted(live_broker: RabbitBroker) -> None:
    broker = live_broker
    ex, pfx, node = names()
    pub = RabbitPublisher(broker.url, exchange=ex, queue_prefix=pfx, node_id=node, timeout_s=2)
    first, second, third = make_events(5), make_events(5, start=6), make_events(5, start=11)
    try:
        pub.connect()
        pub.publish_batch(first)
        assert pub.health().connected

        broker.stop_broker_only()
        t0 = time.monotonic()
        with pytest.raises(PublishError) as info:
            pub.publish_batch(second)
        assert time.monotonic() - t0 < 10
        assert type(info.value) is PublishError and "127.0.0.1" in str(info.value)
        health = pub.health()
        assert not health.connected and health.latency_ms is None and health.error
        t0 = time.monotonic()
        with pytest.raises(PublishError, match=rf"127\.0\.0\.1:{broker.port}"):
            pub.publish_batch(second)  # reconnect attempt: connection refused, at once
        assert time.monotonic() - t0 < 10

        broker.start()  # same ports, same Mnesia: durable queue and persistent messages kept
        pub.publish_batch(second)  # reconnects by itself
        pub.connect()
        pub.connect()  # twice: harmless, same connection
        pub.publish_batch(third)
        health = pub.health()
        assert health.connected and health.latency_ms is not None and health.error is None
    finally:
        pub.close()
    pub.close()  # idempotent
    with broker.channel() as ch:
        got = drain(ch, f"{pfx}.events", 15)
    assert [p.message_id for _m, p, _b in got] == [e.event_id for e in first + second + third]


def test_hung_broker_is_bounded(live_broker: RabbitBroker) -> None:
    """SIGSTOPped broker: TCP stays up, nothing answers. pika alone would wait for the
    heartbeat (~30-65 s); the publisher gives up after timeout_s."""
    broker = live_broker
    ex, pfx, node = names()
    pub = RabbitPublisher(broker.url, exchange=ex, queue_prefix=pfx, node_id=node, timeout_s=2)
    try:
        pub.connect()
        broker.pause()
        t0 = time.monotonic()
        with pytest.raises(PublishError, match="no reply from broker within 2s"):
            pub.publish_batch(make_events(3))
        assert 1.5 < time.monotonic() - t0 < 10
        assert not pub.health().connected
        t0 = time.monotonic()
        with pytest.raises(PublishError):
            pub.connect()  # TCP connects (the kernel accepts), the AMQP handshake never ends
        assert time.monotonic() - t0 < 10
        t0 = time.monotonic()
        pub.close()  # nothing to close gracefully: immediate
        assert time.monotonic() - t0 < 5

        broker.resume()
        pub.publish_batch(make_events(3, start=4))
        assert pub.health().connected
    finally:
        broker.resume()
        pub.close()
    with broker.channel() as ch:
        got = drain(ch, f"{pfx}.events", 6, timeout=3)
    # The batch in flight at the pause may or may not have been enqueued (at-least-once);
    # the one after the resume is there, in order, after whatever came before it.
    ids = [p.message_id for _m, p, _b in got]
    assert ids[-3:] == [e.event_id for e in make_events(3, start=4)]


def test_unreachable_url_names_host_not_password() -> None:
    port = free_port()
    pub = RabbitPublisher(f"amqp://bleep:s3cr3t-pw@127.0.0.1:{port}/%2F", timeout_s=2)
    t0 = time.monotonic()
    with pytest.raises(PublishError) as info:
        pub.connect()
    assert time.monotonic() - t0 < 10
    msg = str(info.value)
    assert f"127.0.0.1:{port}" in msg and "s3cr3t-pw" not in msg
    assert "Connection refused" in msg  # the cause, not just pika's class name
    health = pub.health()
    assert not health.connected and health.error and "s3cr3t-pw" not in health.error
    pub.close()
    pub.close()


def test_bad_credentials_name_host_not_password(broker: RabbitBroker) -> None:
    url = f"amqp://guest:wr0ng-pass@127.0.0.1:{broker.port}/%2F"
    pub = RabbitPublisher(url, timeout_s=2)
    with pytest.raises(PublishError) as info:
        pub.connect()
    msg = str(info.value)
    assert f"127.0.0.1:{broker.port}" in msg and "wr0ng-pass" not in msg
    assert "ACCESS_REFUSED" in msg
    pub.close()


def test_throughput(broker: RabbitBroker, capsys: pytest.CaptureFixture[str]) -> None:
    """Not a benchmark gate: 5,000 events in batches of 100, confirms on."""
    ex, pfx, node = names()
    pub = RabbitPublisher(broker.url, exchange=ex, queue_prefix=pfx, node_id=node)
    events = make_events(5000)
    per_batch: list[float] = []
    try:
        pub.connect()
        t0 = time.perf_counter()
        for i in range(0, len(events), 100):
            b0 = time.perf_counter()
            pub.publish_batch(events[i:i + 100])
            per_batch.append((time.perf_counter() - b0) * 1000)
        total = time.perf_counter() - t0
    finally:
        pub.close()
    with broker.channel() as ch:
        assert depth(ch, f"{pfx}.events") == len(events)
        ch.queue_delete(f"{pfx}.events")
    q = statistics.quantiles(per_batch, n=100)
    with capsys.disabled():
        print(f"\nrabbitmq publish: {len(events) / total:,.0f} events/s "
              f"({len(events)} in {total:.2f}s); per batch of 100: p50 {q[49]:.1f} ms, "
              f"p99 {q[98]:.1f} ms; broker startup {broker.startup_s:.1f}s")
