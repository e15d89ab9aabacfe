"""RedisTaskQueue against a real redis-server (events.md §5, §6.1, §7, §8, §9; tasks.py).

The session ``redis_broker``; every test uses its own stream prefix, so tests never see each
other's entries. A test that stops or pauses the broker brings it back in a ``finally``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from support.redis_broker import RedisBroker
from support.server import free_port

from bleepstore.events.publisher import PublishError
from bleepstore.events.redis_tasks import RedisTaskQueue
from bleepstore.events.tasks import Delivery, TaskChannelHealth, TaskMessage


def prefix() -> str:
    return "tq-" + uuid.uuid4().hex[:12]


def task(n: int, node: str = "edge-a") -> TaskMessage:
    task_id = f"task_{uuid.uuid4().hex[:8]}_{n:04d}"
    body = json.dumps({
        "attempts": 0, "created_at": "2026-03-14T09:30:00.002Z", "max_retries": 3,
        "node_id": node, "operation": "PutObject",
        "payload": {"bucket": "reports", "key": f"2026/räksmörgås-{n}.pdf",
                    "data_ref": task_id, "content_length": n},
        "request_id": "9F03B2C8E1A47D65", "task_id": task_id,
    }, sort_keys=True, ensure_ascii=False)
    return TaskMessage(task_id=task_id, body=body, key=f"reports/2026/räksmörgås-{n}.pdf")


def wait_for(check: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def restore(broker: RedisBroker) -> None:
    if broker.paused:
        broker.resume()
    if not broker.running:
        broker.start()


def test_in_order_exact_fields_ack_and_empty_timeout(redis_broker: RedisBroker) -> None:
    pfx = prefix()
    admin = redis_broker.client()
    producer = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a")
    # claim_idle_ms=0: reclaim() would take any pending entry at once.
    consumer = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a",
                              claim_idle_ms=0)
    msgs = [task(i) for i in range(3)]
    try:
        producer.connect()
        producer.connect()  # idempotent (BUSYGROUP ignored)
        for m in msgs:
            producer.enqueue(m)
        stream = f"{pfx}:tasks:edge-a"
        assert producer.stream == stream
        assert [f for _, f in admin.xrange(stream)] == [
            {"task_id": m.task_id, "task": m.body} for m in msgs]
        assert [g["name"] for g in admin.xinfo_groups(stream)] == ["bleepstore-workers"]
        h = consumer.health()
        assert (h.connected, h.pending_tasks, h.dead_letter_count, h.error) == (True, 3, 0, None)

        got: list[Delivery] = []
        for _ in msgs:
            d = consumer.dequeue(2.0)
            assert d is not None
            got.append(d)
        assert [(d.task_id, d.body) for d in got] == [(m.task_id, m.body) for m in msgs]
        assert [d.handle for d in got] == [entry_id for entry_id, _ in admin.xrange(stream)]
        assert consumer.health().pending_tasks == 3  # delivered, not yet acknowledged
        for d in got:
            consumer.ack(d)
        assert consumer.health().pending_tasks == 0
        assert admin.xpending(stream, "bleepstore-workers")["pending"] == 0
        assert admin.xlen(stream) == 0  # ack deletes: the stream holds only unfinished tasks

        # Acknowledged ones never come back: not by reading, not by reclaiming.
        assert consumer.reclaim() == 0
        t0 = time.monotonic()
        assert consumer.dequeue(0.5) is None
        elapsed = time.monotonic() - t0
        assert 0.45 <= elapsed < 1.5, elapsed
        other = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a",
                               consumer="edge-a:other")
        assert other.dequeue(0.2) is None
        other.close()
        t0 = time.monotonic()
        assert consumer.dequeue(0) is None  # a zero timeout looks once, never blocks forever
        assert time.monotonic() - t0 < 0.5
    finally:
        producer.close()
        consumer.close()


def test_nodes_have_separate_channels(redis_broker: RedisBroker) -> None:
    pfx = prefix()
    qa = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a")
    qb = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-b")
    a_msgs, b_msgs = [task(1), task(2)], [task(3, node="edge-b")]
    try:
        for m in a_msgs:
            qa.enqueue(m)
        qb.enqueue(b_msgs[0])
        assert (qa.stream, qb.stream) == (f"{pfx}:tasks:edge-a", f"{pfx}:tasks:edge-b")
        d = qb.dequeue(1.0)
        assert d is not None and (d.task_id, d.body) == (b_msgs[0].task_id, b_msgs[0].body)
        qb.ack(d)
        assert qb.dequeue(0.3) is None  # edge-a's tasks never reach edge-b
        assert qb.health().pending_tasks == 0
        assert qa.health().pending_tasks == 2
        got = [qa.dequeue(1.0) for _ in a_msgs]
        assert [(d.task_id if d else None) for d in got] == [m.task_id for m in a_msgs]
        assert qa.dequeue(0.2) is None
    finally:
        qa.close()
        qb.close()


def test_a_dead_consumers_delivery_is_reclaimed(redis_broker: RedisBroker) -> None:
    pfx = prefix()
    admin = redis_broker.client()
    idle_ms = 300
    dead = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a",
                          consumer="edge-a:1111:1", claim_idle_ms=idle_ms)
    alive = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a",
                           consumer="edge-a:2222:1", claim_idle_ms=idle_ms)
    m1, m2 = task(1), task(2)
    try:
        dead.enqueue(m1)
        dead.enqueue(m2)
        taken = dead.dequeue(1.0)
        delivered_at = time.monotonic()
        assert taken is not None and taken.task_id == m1.task_id
        dead.close()  # it "dies" without acknowledging

        h = alive.health()
        assert (h.pending_tasks, h.dead_letter_count) == (2, 0)  # 1 in flight + 1 waiting
        early = alive.reclaim()
        if time.monotonic() - delivered_at < idle_ms / 1000 * 0.8:
            assert early == 0  # not idle long enough yet: a live consumer keeps it

        claimed = wait_for(alive.reclaim, timeout=5, what="XAUTOCLAIM to take the entry")
        assert claimed == 1
        again = alive.dequeue(1.0)
        assert again is not None
        assert (again.task_id, again.body, again.handle) == (m1.task_id, m1.body, taken.handle)
        [entry] = admin.xpending_range(alive.stream, "bleepstore-workers", "-", "+", 10)
        assert entry["consumer"] == "edge-a:2222:1" and entry["times_delivered"] == 2
        assert alive.health().pending_tasks == 2  # now in flight to "alive"
        alive.ack(again)
        assert alive.health().pending_tasks == 1

        rest = alive.dequeue(1.0)  # the reclaimed one came first, then the new one
        assert rest is not None and rest.task_id == m2.task_id
        alive.ack(rest)
        assert alive.health().pending_tasks == 0

        dead.ack(taken)  # the "dead" one acknowledging late is harmless (XACK answers 0)
        eager = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a",
                               consumer="edge-a:3333:1", claim_idle_ms=0)
        assert eager.reclaim() == 0  # nothing left pending for anyone
        eager.close()
        assert alive.dequeue(0.2) is None
    finally:
        dead.close()
        alive.close()


def test_dead_letter(redis_broker: RedisBroker) -> None:
    pfx = prefix()
    admin = redis_broker.client()
    q = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a", claim_idle_ms=0)
    m = task(1)
    try:
        q.enqueue(m)
        d = q.dequeue(1.0)
        assert d is not None
        error = "InternalError: backend answered 503 (räksmörgås)"
        q.dead_letter(d, error, 4)
        assert [f for _, f in admin.xrange(f"{pfx}:dead-letter")] == [
            {"task": m.body, "error": error, "attempts": "4"}]
        h = q.health()
        assert (h.connected, h.pending_tasks, h.dead_letter_count) == (True, 0, 1)
        assert admin.xpending(q.stream, "bleepstore-workers")["pending"] == 0
        assert admin.xlen(q.stream) == 0
        assert q.reclaim() == 0  # claim_idle_ms=0: it would take anything still pending
        assert q.dequeue(0.2) is None
    finally:
        q.close()


def test_pending_count_when_the_group_lag_is_unknown(redis_broker: RedisBroker) -> None:
    """An entry acked (and deleted) after an older one still in flight leaves a tombstone
    Redis cannot count across: XINFO GROUPS says lag = nil. health() then counts
    undelivered = XLEN - XPENDING (the stream holds only unfinished tasks)."""
    pfx = prefix()
    admin = redis_broker.client()
    q = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a")
    msgs = [task(i) for i in range(3)]
    try:
        for m in msgs:
            q.enqueue(m)
        first, second = q.dequeue(1.0), q.dequeue(1.0)
        assert first is not None and second is not None
        q.ack(second)  # first stays in flight, the third is not delivered yet
        [group] = admin.xinfo_groups(q.stream)
        print(f"\n[redis] XINFO GROUPS lag with a tombstone behind a pending entry: "
              f"{group.get('lag')!r}")
        assert q.health().pending_tasks == 2
        q.ack(first)
        assert q.health().pending_tasks == 1
        third = q.dequeue(1.0)
        assert third is not None and third.task_id == msgs[2].task_id
        assert q.health().pending_tasks == 1
        q.ack(third)
        assert q.health().pending_tasks == 0
    finally:
        q.close()


def test_blocking_reads_longer_than_the_socket_timeout(redis_broker: RedisBroker) -> None:
    """timeout_s (the socket timeout) is 1 s; a 2.5 s dequeue is cut into shorter BLOCKs,
    so it neither times out the socket nor returns early, and still wakes at once."""
    pfx = prefix()
    q = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a", timeout_s=1.0)
    producer = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a")
    m = task(1)
    timer = threading.Timer(1.2, producer.enqueue, args=(m,))
    try:
        q.connect()
        t0 = time.monotonic()
        assert q.dequeue(2.5) is None
        assert 2.4 <= time.monotonic() - t0 < 3.5
        timer.start()
        t0 = time.monotonic()
        d = q.dequeue(4.0)
        elapsed = time.monotonic() - t0
        assert d is not None and d.task_id == m.task_id
        assert 1.0 <= elapsed < 2.5, elapsed
    finally:
        timer.cancel()
        timer.join()
        q.close()
        producer.close()


def test_stream_deleted_under_a_live_consumer(redis_broker: RedisBroker) -> None:
    """NOGROUP while the connection is fine (the key was deleted): the group is re-created
    from 0 and what was added meanwhile is delivered, without an error."""
    pfx = prefix()
    q = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a")
    m = task(1)
    try:
        q.connect()
        assert q.dequeue(0.1) is None
        redis_broker.client().delete(q.stream)
        q.enqueue(m)  # XADD re-creates the stream, without the group
        d = q.dequeue(1.0)
        assert d is not None and d.task_id == m.task_id
        q.ack(d)
        assert q.health().pending_tasks == 0
    finally:
        q.close()


def test_broker_stopped_fails_fast_then_recovers(redis_broker: RedisBroker) -> None:
    pfx = prefix()
    q = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a", timeout_s=1.0)
    q.connect()
    q.enqueue(task(0))
    d0 = q.dequeue(1.0)
    assert d0 is not None
    q.ack(d0)
    try:
        redis_broker.stop()
        t0 = time.monotonic()
        with pytest.raises(PublishError) as err:
            q.enqueue(task(1))
        assert time.monotonic() - t0 < 3.0
        assert not isinstance(err.value, redis.RedisError)
        assert f"127.0.0.1:{redis_broker.port}" in str(err.value)

        # A down broker is an error, not "no task": None would let a consumer loop spin
        # on an outage instead of backing off.
        t0 = time.monotonic()
        with pytest.raises(PublishError):
            q.dequeue(5.0)
        assert time.monotonic() - t0 < 3.0
        with pytest.raises(PublishError):
            q.reclaim()
        with pytest.raises(PublishError):
            q.ack(d0)
        with pytest.raises(PublishError):
            q.connect()
        t0 = time.monotonic()
        h = q.health()
        assert time.monotonic() - t0 < 3.0
        assert not h.connected and h.pending_tasks is None and h.error

        redis_broker.start()  # same port, empty: the stream and the group are gone
        admin = redis_broker.client()
        assert admin.exists(q.stream) == 0
        q.connect()
        assert [g["name"] for g in admin.xinfo_groups(q.stream)] == ["bleepstore-workers"]
        m = task(2)
        q.enqueue(m)
        d = q.dequeue(1.0)
        assert d is not None and (d.task_id, d.body) == (m.task_id, m.body)
        q.ack(d)
        assert q.health() == TaskChannelHealth(True, 0, 0, None)
    finally:
        restore(redis_broker)
        q.close()


def test_broker_restart_under_held_connections(redis_broker: RedisBroker) -> None:
    """Both the producer's and the consumer's pooled sockets die in a restart: at most one
    PublishError each, then the consumer re-creates the group and gets the task."""
    pfx = prefix()
    producer = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a",
                              timeout_s=1.0)
    consumer = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a",
                              timeout_s=1.0)
    producer.connect()
    consumer.connect()
    assert consumer.dequeue(0.1) is None
    m = task(1)
    failures = 0
    try:
        redis_broker.restart()

        def attempt(call: Callable[[], Any]) -> Any:
            nonlocal failures
            try:
                return call()
            except PublishError:
                failures += 1
                return call()

        attempt(lambda: producer.enqueue(m))
        d = attempt(lambda: consumer.dequeue(1.0))
        assert d is not None and d.task_id == m.task_id
        consumer.ack(d)
        print(f"\n[redis] task-channel calls failed after a restart before recovering: "
              f"{failures}")
        assert failures <= 2
    finally:
        restore(redis_broker)
        producer.close()
        consumer.close()


def test_hung_broker_is_bounded_and_nothing_is_lost(redis_broker: RedisBroker) -> None:
    """SIGSTOPped server: TCP connects, nothing answers. Every call gives up within about
    timeout_s. The requests already sent on open connections run when it resumes: the late
    XADD lands, and depending on the order the server reads the two sockets it may be handed
    to the abandoned XREADGROUP, i.e. into this consumer's pending list with nobody to
    receive it. Either way the next dequeue gets it at once (claim_idle_ms is a minute): the
    first dequeue on a new connection re-reads the consumer's own pending entries."""
    pfx = prefix()
    timeout_s = 1.0
    q = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a",
                       timeout_s=timeout_s, claim_idle_ms=60000)
    producer = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a",
                              timeout_s=timeout_s)
    late = task(9)
    q.connect()
    assert q.dequeue(0.05) is None  # past the first read, so the next one is a blocking ">"
    producer.connect()  # both hold an open connection when the broker hangs
    try:
        redis_broker.pause()
        t0 = time.monotonic()
        with pytest.raises(PublishError) as err:
            q.dequeue(5.0)
        elapsed = time.monotonic() - t0
        assert elapsed < 2.5 * timeout_s, elapsed
        assert "Timeout" in str(err.value) or "timed out" in str(err.value).lower()
        t0 = time.monotonic()
        with pytest.raises(PublishError):
            producer.enqueue(late)
        assert time.monotonic() - t0 < 2.5 * timeout_s
        t0 = time.monotonic()
        h = q.health()
        assert not h.connected and h.error
        assert time.monotonic() - t0 < 2.5 * timeout_s
    finally:
        restore(redis_broker)
        producer.close()
    try:
        admin = redis_broker.client()
        state = wait_for(lambda: admin.xlen(q.stream) and [
            admin.xlen(q.stream), admin.xpending(q.stream, "bleepstore-workers")["pending"]],
            what="the late XADD to land")
        print(f"\n[redis] after the hang: [XLEN, XPENDING] = {state} (XPENDING 1: the entry "
              f"went to the abandoned read)")
        t0 = time.monotonic()
        d = q.dequeue(1.0)
        assert d is not None and d.task_id == late.task_id
        assert time.monotonic() - t0 < 0.5
        q.ack(d)
        assert admin.xlen(q.stream) == 0
        assert admin.xpending(q.stream, "bleepstore-workers")["pending"] == 0
        assert q.health() == TaskChannelHealth(True, 0, 0, None)
    finally:
        q.close()


def test_a_lost_reply_comes_back_on_the_next_connection(redis_broker: RedisBroker) -> None:
    """Delivered on the server but never seen (or never acked) by this consumer, then the
    connection is replaced: the next dequeue gives this consumer's own pending entries back
    first, long before claim_idle_ms; another consumer's pending entries are not touched."""
    pfx = prefix()
    q = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a",
                       consumer="edge-a:4444:1", claim_idle_ms=60000)
    other = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a",
                           consumer="edge-a:5555:1", claim_idle_ms=60000)
    msgs = [task(i) for i in range(3)]
    try:
        for m in msgs:
            q.enqueue(m)
        d0 = q.dequeue(1.0)
        d1 = other.dequeue(1.0)
        assert d0 is not None and d1 is not None
        q.close()  # the connection is gone (a PublishError does the same)
        again = q.dequeue(1.0)
        assert again is not None and (again.task_id, again.handle) == (d0.task_id, d0.handle)
        nxt = q.dequeue(1.0)  # then new entries; other's in-flight d1 stays with other
        assert nxt is not None and nxt.task_id == msgs[2].task_id
        q.ack(again)
        q.ack(nxt)
        assert q.dequeue(0.1) is None
        assert q.health().pending_tasks == 1
        other.ack(d1)
        assert q.health().pending_tasks == 0
    finally:
        q.close()
        other.close()


def test_two_consumer_threads_share_the_group(redis_broker: RedisBroker) -> None:
    pfx = prefix()
    admin = redis_broker.client()
    n_tasks = 200
    msgs = [task(i) for i in range(n_tasks)]
    producer = RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a")
    producer.connect()
    # Built here, used in the threads: each default consumer name is fixed by its thread.
    queues = [RedisTaskQueue(redis_broker.url, stream_prefix=pfx, node_id="edge-a")
              for _ in range(2)]
    got: list[list[str]] = [[], []]
    tids: list[int] = [0, 0]
    errors: list[BaseException] = []
    lock = threading.Lock()
    total = [0]
    ready = threading.Barrier(3, timeout=10)
    stop = threading.Event()

    def consume(i: int) -> None:
        q = queues[i]
        try:
            tids[i] = threading.get_native_id()
            q.connect()
            ready.wait()
            while not stop.is_set():
                d = q.dequeue(0.2)
                if d is None:
                    continue
                got[i].append(d.task_id)
                q.ack(d)
                with lock:
                    total[0] += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            q.close()

    threads = [threading.Thread(target=consume, args=(i,), daemon=True) for i in range(2)]
    for t in threads:
        t.start()
    try:
        ready.wait()

        def both_blocked() -> bool:
            blocked = [c for c in admin.client_list()
                       if "b" in c["flags"] and c["cmd"] == "xreadgroup"]
            return len(blocked) >= 2

        wait_for(both_blocked, timeout=5, what="both consumers to block in XREADGROUP")
        for m in msgs:
            producer.enqueue(m)
        wait_for(lambda: total[0] >= n_tasks or errors, timeout=30, what="200 deliveries")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
        producer.close()
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    delivered = got[0] + got[1]
    assert len(delivered) == len(set(delivered)) == n_tasks  # each exactly once
    assert set(delivered) == {m.task_id for m in msgs}
    assert got[0] and got[1], (len(got[0]), len(got[1]))
    print(f"\n[redis] 200 tasks split between two consumer threads: "
          f"{len(got[0])} / {len(got[1])}")
    consumers = {c["name"]: c for c in admin.xinfo_consumers(producer.stream,
                                                             "bleepstore-workers")}
    assert set(consumers) == {f"edge-a:{os.getpid()}:{tid}" for tid in tids}
    assert all(c["pending"] == 0 for c in consumers.values())
    assert admin.xlen(producer.stream) == 0


@pytest.mark.parametrize("url", ["redis://127.0.0.1:{port}/0",
                                 "redis://:s3cret-pw@127.0.0.1:{port}/0"])
def test_unreachable_url_is_a_fast_publish_error_naming_the_url(url: str) -> None:
    port = free_port()  # nothing listens there
    q = RedisTaskQueue(url.format(port=port), timeout_s=1.0)
    for call in (q.connect, lambda: q.enqueue(task(1)), lambda: q.dequeue(1.0), q.reclaim):
        t0 = time.monotonic()
        with pytest.raises(PublishError) as err:
            call()
        assert time.monotonic() - t0 < 2.0
        msg = str(err.value)
        assert f"127.0.0.1:{port}/0" in msg and "s3cret-pw" not in msg, msg
    h = q.health()
    assert not h.connected and h.error and "s3cret-pw" not in h.error
    q.close()
    q.close()


def test_bad_url_is_a_publish_error() -> None:
    with pytest.raises(PublishError, match="bad url"):
        RedisTaskQueue("http://127.0.0.1:1/").connect()
    assert RedisTaskQueue("http://127.0.0.1:1/").health().connected is False


def test_redis_is_not_imported_at_module_import() -> None:
    code = ("import sys, bleepstore.events.redis_tasks; "
            "sys.exit(1 if 'redis' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
