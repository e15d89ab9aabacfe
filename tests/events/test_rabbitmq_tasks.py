"""RabbitTaskQueue against a real RabbitMQ 3.10 (events.md §5, §6.2, §7; tasks.py invariants).

The session broker (``rabbitmq_broker``); every test uses its own exchange, queue prefix and
node id, so tests never see each other's tasks. Tests that stop or pause the broker bring it
back in a ``finally``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.rabbitmq_broker import RabbitBroker

from bleepstore.events.publisher import PublishError
from bleepstore.events.rabbitmq_tasks import RabbitTaskQueue
from bleepstore.events.tasks import Delivery, TaskMessage

REPO = Path(__file__).resolve().parents[2]


def names() -> tuple[str, str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"ex-{tag}", f"pfx-{tag}", f"node-{tag}"


def task(n: int, node: str = "edge-a") -> TaskMessage:
    task_id = f"task_{uuid.uuid4().hex[:16]}_{n:04d}"
    body = json.dumps({
        "attempts": 0, "created_at": "2026-03-14T09:30:00.002Z", "max_retries": 3,
        "node_id": node, "operation": "PutObject", "request_id": "9F03B2C8E1A47D65",
        "payload": {"bucket": "reports", "key": f"2026/räksmörgås-{n}.pdf", "data_ref": task_id},
        "task_id": task_id,
    }, sort_keys=True, ensure_ascii=False)
    return TaskMessage(task_id=task_id, body=body, key=f"reports/2026/räksmörgås-{n}.pdf")


@pytest.fixture
def make_queue(rabbitmq_broker: RabbitBroker) -> Iterator[Any]:
    """``make_queue(**kw)``: a RabbitTaskQueue on the session broker, closed afterwards."""
    made: list[RabbitTaskQueue] = []

    def make(**kw: Any) -> RabbitTaskQueue:
        q = RabbitTaskQueue(rabbitmq_broker.url, **kw)
        made.append(q)
        return q

    yield make
    for q in made:
        q.close()


def drain(q: RabbitTaskQueue, n: int, timeout: float = 10.0, ack: bool = True
          ) -> list[Delivery]:
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        d = q.dequeue(0.5)
        if d is not None:
            got.append(d)
            if ack:
                q.ack(d)
    return got


def test_enqueue_dequeue_in_order_then_empty(make_queue: Any,
                                              rabbitmq_broker: RabbitBroker) -> None:
    ex, pfx, node = names()
    q = make_queue(exchange=ex, queue_prefix=pfx, node_id=node)
    q.connect()
    q.connect()  # idempotent
    tasks = [task(i) for i in range(3)]
    before = int(time.time())
    for t in tasks:
        q.enqueue(t)
    h = q.health()
    assert h.connected and h.pending_tasks == 3 and h.dead_letter_count == 0 and h.error is None

    # What the broker holds: persistent JSON on the task exchange, routed by node id.
    with rabbitmq_broker.channel() as ch:
        method, props, body = ch.basic_get(f"{pfx}.tasks.{node}", auto_ack=False)
        assert method.exchange == f"{ex}.tasks" and method.routing_key == node
        assert props.delivery_mode == 2 and props.content_type == "application/json"
        assert props.message_id == tasks[0].task_id and before <= props.timestamp
        assert body.decode("utf-8") == tasks[0].body
        ch.basic_nack(method.delivery_tag, requeue=True)  # back at the head

    got = []
    for _ in tasks:
        d = q.dequeue(5.0)
        assert d is not None
        got.append(d)
        q.ack(d)
    assert [(d.task_id, d.body) for d in got] == [(t.task_id, t.body) for t in tasks]
    assert all(isinstance(d.handle, int) for d in got)

    t0 = time.monotonic()
    assert q.dequeue(1.0) is None
    assert 0.9 <= time.monotonic() - t0 < 3.0
    t0 = time.monotonic()
    assert q.dequeue(0) is None
    assert time.monotonic() - t0 < 1.0
    q.close()
    q.close()  # idempotent
    # Acked ones do not come back, not even to a new connection.
    other = make_queue(exchange=ex, queue_prefix=pfx, node_id=node)
    assert other.dequeue(1.0) is None
    h = other.health()
    assert h.connected and h.pending_tasks == 0 and h.dead_letter_count == 0


def test_node_channels_are_separate(make_queue: Any) -> None:
    ex, pfx, _ = names()
    a = make_queue(exchange=ex, queue_prefix=pfx, node_id="edge-a")
    b = make_queue(exchange=ex, queue_prefix=pfx, node_id="edge-b")
    for_a, for_b = [task(i, "edge-a") for i in range(2)], [task(i, "edge-b") for i in range(3)]
    for t in for_a:
        a.enqueue(t)
    for t in for_b:
        b.enqueue(t)
    assert a.health().pending_tasks == 2 and b.health().pending_tasks == 3
    assert [d.task_id for d in drain(b, 3)] == [t.task_id for t in for_b]
    assert b.dequeue(0.5) is None
    assert [d.task_id for d in drain(a, 2)] == [t.task_id for t in for_a]
    assert a.dequeue(0.5) is None


CHILD = """
import sys
sys.path.insert(0, {repo!r})
from bleepstore.events.rabbitmq_tasks import RabbitTaskQueue
q = RabbitTaskQueue({url!r}, exchange={ex!r}, queue_prefix={pfx!r}, node_id={node!r},
                    prefetch_count=1)
d = q.dequeue(10.0)
print(d.task_id if d else "none", flush=True)
sys.stdin.read()  # until killed
"""


def test_unacked_delivery_comes_back_when_consumer_dies(make_queue: Any,
                                                        rabbitmq_broker: RabbitBroker) -> None:
    ex, pfx, node = names()
    producer = make_queue(exchange=ex, queue_prefix=pfx, node_id=node)
    tasks = [task(i) for i in range(3)]
    for t in tasks:
        producer.enqueue(t)

    # A worker process takes the first task and is SIGKILLed before acking it.
    code = CHILD.format(repo=str(REPO), url=rabbitmq_broker.url, ex=ex, pfx=pfx, node=node)
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == tasks[0].task_id
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)

    # A consumer closing its connection without acking: same outcome.
    a = make_queue(exchange=ex, queue_prefix=pfx, node_id=node)
    taken = drain(a, 3, ack=False)
    assert {d.task_id for d in taken} == {t.task_id for t in tasks}
    a.close()
    with pytest.raises(PublishError, match="not from the current connection"):
        a.ack(taken[0])  # its channel is gone: the broker has requeued it
    a.connect()
    with pytest.raises(PublishError, match="not from the current connection"):
        a.dead_letter(taken[1], "late", 1)  # a new channel: old tags mean nothing there

    b = make_queue(exchange=ex, queue_prefix=pfx, node_id=node)
    back = drain(b, 3)
    assert sorted(d.task_id for d in back) == sorted(t.task_id for t in tasks)
    assert {d.task_id: d.body for d in back} == {t.task_id: t.body for t in tasks}
    assert b.dequeue(0.5) is None and a.dequeue(0.5) is None


def test_dead_letter_keeps_error_and_attempts(make_queue: Any,
                                              rabbitmq_broker: RabbitBroker) -> None:
    ex, pfx, node = names()
    q = make_queue(exchange=ex, queue_prefix=pfx, node_id=node)
    doomed, fine = task(1), task(2)
    q.enqueue(doomed)
    q.enqueue(fine)
    d = q.dequeue(5.0)
    assert d is not None and d.task_id == doomed.task_id
    error = "InternalError: backend answered 503 Slow Down — 4 tries"
    q.dead_letter(d, error, 4)
    h = q.health()
    assert h.connected and h.dead_letter_count == 1
    with pytest.raises(PublishError):
        q.ack(d)  # done with: no second ack

    q.close()  # anything left unacked would now go back to the queue
    fresh = make_queue(exchange=ex, queue_prefix=pfx, node_id=node)
    rest = drain(fresh, 2, timeout=1.5)
    assert [x.task_id for x in rest] == [fine.task_id]  # the dead one is not redelivered
    with rabbitmq_broker.channel() as ch:
        method, props, body = ch.basic_get(f"{pfx}.dead-letter", auto_ack=True)
        assert method is not None, "nothing in the dead-letter queue"
        assert ch.basic_get(f"{pfx}.dead-letter", auto_ack=True)[0] is None  # exactly one
    assert body.decode("utf-8") == doomed.body and props.message_id == doomed.task_id
    assert props.delivery_mode == 2 and props.content_type == "application/json"
    assert props.headers["x-error"] == error
    assert props.headers["x-attempts"] == 4
    assert "x-death" not in props.headers  # published once by us, not also via the DLX
    h = fresh.health()
    assert h.pending_tasks == 0 and h.dead_letter_count == 0  # we just drained it


def test_long_wait_outlasts_the_watchdog(make_queue: Any,
                                         rabbitmq_broker: RabbitBroker) -> None:
    """A dequeue longer than timeout_s on an idle queue is not a hung broker: the connection
    survives it, and a task arriving mid-wait is returned at once."""
    ex, pfx, node = names()
    q = make_queue(exchange=ex, queue_prefix=pfx, node_id=node, timeout_s=1)
    assert q.dequeue(0.1) is None
    t0 = time.monotonic()
    assert q.dequeue(2.5) is None
    assert 2.4 <= time.monotonic() - t0 < 4
    late = task(1)

    def produce() -> None:  # its own connection, in its own thread
        p = RabbitTaskQueue(rabbitmq_broker.url, exchange=ex, queue_prefix=pfx, node_id=node)
        try:
            p.enqueue(late)
        finally:
            p.close()

    timer = threading.Timer(1.8, produce)
    timer.start()
    try:
        t0 = time.monotonic()
        d = q.dequeue(5.0)
        waited = time.monotonic() - t0
    finally:
        timer.join(10)
    assert d is not None and d.task_id == late.task_id
    assert 1.5 < waited < 4
    q.ack(d)
    assert q.health().connected


def test_broker_stopped_then_restarted(make_queue: Any, rabbitmq_broker: RabbitBroker) -> None:
    broker = rabbitmq_broker
    ex, pfx, node = names()
    q = make_queue(exchange=ex, queue_prefix=pfx, node_id=node, timeout_s=2)
    durable = [task(i) for i in range(3)]
    try:
        for t in durable:
            q.enqueue(t)
        taken = q.dequeue(5.0)  # in progress, unacked, when the broker goes
        assert taken is not None and taken.task_id == durable[0].task_id

        broker.stop_broker_only()
        t0 = time.monotonic()
        with pytest.raises(PublishError) as info:
            q.enqueue(task(9))
        assert time.monotonic() - t0 < 10 and "127.0.0.1" in str(info.value)
        h = q.health()
        assert not h.connected and h.pending_tasks is None and h.error
        t0 = time.monotonic()
        with pytest.raises(PublishError, match=rf"127\.0\.0\.1:{broker.port}"):
            q.dequeue(1.0)  # reconnect attempt: refused at once
        assert time.monotonic() - t0 < 10
        with pytest.raises(PublishError):
            q.ack(taken)
        t0 = time.monotonic()
        with pytest.raises(PublishError):
            q.connect()
        assert time.monotonic() - t0 < 10
    finally:
        if not broker.running:
            broker.start()

    q.connect()
    after = task(10)
    q.enqueue(after)
    got = drain(q, 4)
    # The durable queue and its persistent tasks survived; the unacked one came back.
    assert sorted(d.task_id for d in got) == sorted(t.task_id for t in [*durable, after])
    assert got[-1].task_id == after.task_id
    assert q.dequeue(0.5) is None
    h = q.health()
    assert h.connected and h.pending_tasks == 0


def test_hung_broker_is_bounded(make_queue: Any, rabbitmq_broker: RabbitBroker) -> None:
    """SIGSTOPped broker: TCP stays up, nothing answers. Every call returns within about
    timeout_s (pika alone would wait for the heartbeat)."""
    broker = rabbitmq_broker
    ex, pfx, node = names()
    q = make_queue(exchange=ex, queue_prefix=pfx, node_id=node, timeout_s=2)
    try:
        assert q.dequeue(0.2) is None  # consuming
        broker.pause()
        t0 = time.monotonic()
        assert q.dequeue(1.0) is None  # an idle wait cannot tell; it is bounded all the same
        assert time.monotonic() - t0 < 3
        t0 = time.monotonic()
        with pytest.raises(PublishError, match="no reply from broker within 2s"):
            q.enqueue(task(1))
        assert 1.5 < time.monotonic() - t0 < 10
        assert not q.health().connected
        t0 = time.monotonic()
        with pytest.raises(PublishError):
            q.dequeue(1.0)  # reconnect: TCP accepted, the AMQP handshake never ends
        assert time.monotonic() - t0 < 10
        t0 = time.monotonic()
        q.close()
        assert time.monotonic() - t0 < 5
    finally:
        broker.resume()
    last = task(2)
    q.enqueue(last)
    got = drain(q, 2, timeout=5)
    # The task in flight at the pause may or may not have been enqueued (at-least-once).
    assert got and got[-1].task_id == last.task_id


def test_two_consumers_each_task_once(make_queue: Any, rabbitmq_broker: RabbitBroker) -> None:
    ex, pfx, node = names()
    producer = make_queue(exchange=ex, queue_prefix=pfx, node_id=node)
    producer.connect()
    tasks = [task(i) for i in range(200)]
    seen: list[list[str]] = [[], []]
    errors: list[BaseException] = []
    ready = threading.Barrier(3, timeout=20)
    done = threading.Event()

    def consume(slot: int) -> None:
        q = RabbitTaskQueue(rabbitmq_broker.url, exchange=ex, queue_prefix=pfx, node_id=node)
        try:
            assert q.dequeue(0.05) is None  # consuming before the tasks arrive
            ready.wait()
            deadline = time.monotonic() + 30
            while not done.is_set() and time.monotonic() < deadline:
                d = q.dequeue(0.2)
                if d is not None:
                    seen[slot].append(d.task_id)
                    q.ack(d)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            ready.abort()
        finally:
            q.close()

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    try:
        ready.wait()
        for t in tasks:
            producer.enqueue(t)
        deadline = time.monotonic() + 30
        while len(seen[0]) + len(seen[1]) < len(tasks) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # a duplicate would show up now
    finally:
        done.set()
        for th in threads:
            th.join(15)
    assert not errors, errors
    both = seen[0] + seen[1]
    assert len(both) == len(tasks) and set(both) == {t.task_id for t in tasks}
    assert seen[0] and seen[1], "one consumer took everything"
    assert producer.health().pending_tasks == 0
