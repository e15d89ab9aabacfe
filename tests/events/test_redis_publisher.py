"""RedisPublisher against a real redis-server (events.md §6.1, publisher.py invariants).

One broker for the module; every test writes to its own stream prefix, so tests never see each
other's entries. Tests that stop or pause the broker bring it back before they return.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from support.redis_broker import RedisBroker
from support.server import free_port

from bleepstore.events.publisher import OutboxEvent, PublishError
from bleepstore.events.redis_publisher import RedisPublisher


@pytest.fixture(scope="module")
def broker(redis_broker: RedisBroker) -> RedisBroker:
    """The session's broker (tests/events/conftest.py)."""
    return redis_broker


@pytest.fixture
def live_broker(broker: RedisBroker) -> Iterator[RedisBroker]:
    """The module broker, guaranteed running again after a test that stopped or paused it."""
    yield broker
    if broker.paused:
        broker.resume()
    if not broker.running:
        broker.start()


def prefix() -> str:
    return "t-" + uuid.uuid4().hex[:12]


def make_events(n: int, start: int = 1) -> list[OutboxEvent]:
    out = []
    for seq in range(start, start + n):
        event_id = f"evt_{seq:026d}"
        body = json.dumps({
            "data": {"bucket": "reports", "key": f"2026/räksmörgås-{seq}.pdf", "size": seq,
                     "etag": '"182f98eda2086eb0d4b837369e168a73"', "operation": "PutObject"},
            "id": event_id, "request_id": "7C1E0A9B44D2F613", "source": "edge-a",
            "timestamp": "2026-03-14T09:26:53.589Z", "type": "object.created",
        }, sort_keys=True, ensure_ascii=False)
        out.append(OutboxEvent(seq=seq, event_id=event_id, event_type="object.created",
                               partition_key="reports", body=body))
    return out


def fields(e: OutboxEvent) -> dict[str, str]:
    return {"event_id": e.event_id, "type": e.event_type, "data": e.body}


def test_batches_are_read_back_in_order_with_exact_fields(broker: RedisBroker) -> None:
    pfx = prefix()
    pub = RedisPublisher(broker.url, stream_prefix=pfx)
    events = make_events(250)
    events[7] = OutboxEvent(seq=8, event_id="evt_other", event_type="object.removed",
                            partition_key="b", body='{"id":"evt_other","type":"object.removed"}')
    try:
        pub.connect()
        pub.publish_batch(events[:100])
        pub.publish_batch(events[100:101])
        pub.publish_batch(events[101:])
    finally:
        pub.close()
    entries = broker.client().xrange(f"{pfx}:events")
    assert [f for _, f in entries] == [fields(e) for e in events]
    ids = [tuple(int(p) for p in entry_id.split("-")) for entry_id, _ in entries]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_empty_batch_is_a_noop_without_touching_the_broker(broker: RedisBroker) -> None:
    unreachable = RedisPublisher(f"redis://127.0.0.1:{free_port()}/0", timeout_s=1)
    unreachable.publish_batch([])  # no connection attempted, so no PublishError
    pfx = prefix()
    pub = RedisPublisher(broker.url, stream_prefix=pfx)
    pub.publish_batch([])
    assert broker.client().exists(f"{pfx}:events") == 0
    pub.close()


def test_health_connect_and_close(broker: RedisBroker) -> None:
    pub = RedisPublisher(broker.url, stream_prefix=prefix())
    h = pub.health()
    assert h.connected and h.error is None
    assert h.latency_ms is not None and 0 <= h.latency_ms < 1000
    pub.connect()
    admin = broker.client()

    def connection_ids() -> set[str]:
        me = str(admin.client_id())
        return {c["id"] for c in admin.client_list() if c["id"] != me}

    before = connection_ids()
    for _ in range(5):
        pub.connect()  # idempotent: reuses the client and its connection
    assert connection_ids() <= before  # no new connection (others may have gone)
    pub.close()
    pub.close()
    pub.publish_batch(make_events(3))  # after close, a publish reconnects lazily
    assert admin.xlen(pub.stream) == 3
    pub.close()


def test_maxlen_approximately_trims_the_stream(broker: RedisBroker) -> None:
    pub = RedisPublisher(broker.url, stream_prefix=prefix(), max_len=100)
    admin = broker.client()
    events = make_events(1000)
    lengths = []
    for i in range(0, len(events), 100):
        pub.publish_batch(events[i:i + 100])
        lengths.append(admin.xlen(pub.stream))
    pub.close()
    # ~ trims whole radix-tree nodes (stream-node-max-entries 100): at least max_len is
    # kept, and never much more; without MAXLEN the stream would hold 1,000.
    assert all(100 <= n < 300 for n in lengths), lengths
    last_id, last_fields = admin.xrevrange(pub.stream, count=1)[0]
    assert last_fields == fields(events[-1])  # the newest are kept, the oldest trimmed


def test_broker_down_fails_fast_then_reconnects(live_broker: RedisBroker) -> None:
    broker = live_broker
    timeout_s = 1.0
    pub = RedisPublisher(broker.url, stream_prefix=prefix(), timeout_s=timeout_s)
    pub.connect()
    pub.publish_batch(make_events(5))

    broker.stop()
    t0 = time.monotonic()
    with pytest.raises(PublishError) as err:
        pub.publish_batch(make_events(5, start=6))
    assert time.monotonic() - t0 < 2 * timeout_s
    assert not isinstance(err.value, redis.RedisError)
    assert f"127.0.0.1:{broker.port}" in str(err.value)

    t0 = time.monotonic()
    h = pub.health()
    assert time.monotonic() - t0 < 2 * timeout_s
    assert not h.connected and h.latency_ms is None and h.error
    with pytest.raises(PublishError):
        pub.connect()

    broker.start()  # same port, empty (no persistence)
    assert broker.url == pub.url
    pub.connect()
    pub.connect()
    pub.publish_batch(make_events(5, start=6))
    entries = broker.client().xrange(pub.stream)
    assert [f for _, f in entries] == [fields(e) for e in make_events(5, start=6)]
    assert pub.health().connected
    pub.close()


def test_broker_restart_under_a_held_connection(live_broker: RedisBroker) -> None:
    """The pooled socket is dead after a restart: at most one PublishError, then it works
    (at-least-once: the relay retries the batch)."""
    broker = live_broker
    pub = RedisPublisher(broker.url, stream_prefix=prefix(), timeout_s=1.0)
    pub.publish_batch(make_events(2))
    broker.restart()
    failures = 0
    for _ in range(2):
        try:
            pub.publish_batch(make_events(2, start=3))
            break
        except PublishError:
            failures += 1
    else:
        pytest.fail("publish did not recover after the broker restarted")
    print(f"\n[redis] publishes failed after restart before recovering: {failures}")
    assert broker.client().xlen(pub.stream) == 2
    pub.close()


def test_hung_broker_times_out_within_bound(live_broker: RedisBroker) -> None:
    """SIGSTOPped server: TCP still connects, nothing answers; the socket timeout bounds it."""
    broker = live_broker
    timeout_s = 1.0
    pub = RedisPublisher(broker.url, stream_prefix=prefix(), timeout_s=timeout_s)
    pub.publish_batch(make_events(1))
    broker.pause()
    t0 = time.monotonic()
    with pytest.raises(PublishError) as err:
        pub.publish_batch(make_events(1, start=2))
    elapsed = time.monotonic() - t0
    assert timeout_s * 0.5 <= elapsed < 2 * timeout_s, elapsed
    assert "Timeout" in str(err.value) or "timed out" in str(err.value).lower()
    t0 = time.monotonic()
    h = pub.health()
    assert not h.connected and h.error
    assert time.monotonic() - t0 < 2 * timeout_s
    broker.resume()
    pub.publish_batch(make_events(1, start=2))
    ids = [f["event_id"] for _, f in broker.client().xrange(pub.stream)]
    # The failed XADD was already in the server's socket buffer: it may have been applied
    # after all, so the retry can duplicate it. That is at-least-once; consumers dedupe.
    first, second = make_events(1)[0].event_id, make_events(1, start=2)[0].event_id
    assert ids in ([first, second], [first, second, second]), ids
    print(f"\n[redis] entries after a timed-out XADD and its retry: {len(ids) - 1} copies")
    pub.close()


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:{port}/0",
    "redis://:s3cret-pw@127.0.0.1:{port}/0",
])
def test_unreachable_url_at_connect_names_the_url(url: str) -> None:
    port = free_port()  # nothing listens there
    pub = RedisPublisher(url.format(port=port), timeout_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(PublishError) as err:
        pub.connect()
    assert time.monotonic() - t0 < 2.0
    msg = str(err.value)
    assert "redis://" in msg and f"127.0.0.1:{port}/0" in msg, msg
    assert "s3cret-pw" not in msg, msg  # the password never reaches a log line
    h = pub.health()
    assert not h.connected and h.error and f"127.0.0.1:{port}" in h.error
    pub.close()


def test_bad_url_is_a_publish_error() -> None:
    with pytest.raises(PublishError, match="bad url"):
        RedisPublisher("http://127.0.0.1:1/").connect()


def test_redis_is_not_imported_at_module_import() -> None:
    import subprocess

    code = ("import sys, bleepstore.events.redis_publisher; "
            "sys.exit(1 if 'redis' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_throughput(broker: RedisBroker) -> None:
    """Not an assertion on speed: prints events/s and per-batch p50/p99 (run with -s)."""
    pub = RedisPublisher(broker.url, stream_prefix=prefix())
    events = make_events(10_000)
    pub.connect()
    per_batch_ms = []
    t0 = time.perf_counter()
    for i in range(0, len(events), 100):
        b0 = time.perf_counter()
        pub.publish_batch(events[i:i + 100])
        per_batch_ms.append((time.perf_counter() - b0) * 1000)
    total = time.perf_counter() - t0
    pub.close()
    assert broker.client().xlen(pub.stream) == len(events)
    q = statistics.quantiles(per_batch_ms, n=100)
    body = len(events[0].body)
    print(f"\n[redis] {len(events)} events ({body} B bodies) in batches of 100: "
          f"{len(events) / total:,.0f} events/s, {total:.2f} s; per batch "
          f"p50 {q[49]:.2f} ms, p99 {q[98]:.2f} ms, max {max(per_batch_ms):.2f} ms")
