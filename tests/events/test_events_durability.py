"""Nothing acknowledged loses its event, nothing uncommitted gets one, and the broker never
slows or fails a write (events.md §4, §9): the broker stopped under writes, and the server
SIGKILLed under a write load, on each real broker."""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from support.clients import boto3_client
from support.event_sinks import Sink
from support.server import Server

from bleepstore.events.brokers import TIMEOUT_S
from tests.events.conftest import BROKERS, sink_for


def _timed_puts(s3: Any, bucket: str, start: int, count: int) -> list[float]:
    took = []
    for i in range(start, start + count):
        began = time.perf_counter()
        s3.put_object(Bucket=bucket, Key=f"k{i:05d}", Body=b"%d" % i)
        took.append(time.perf_counter() - began)
    return took


def _health(server: Server) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(server.endpoint + "/health", timeout=10) as resp:
        return dict(json.loads(resp.read()))


def _health_when(server: Server, status: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (health := _health(server))["status"] != status:
        assert time.monotonic() < deadline, f"/health not {status} within {timeout}s: {health}"
        time.sleep(0.1)
    return health


@pytest.mark.parametrize("backend", BROKERS)
def test_broker_down_writes_go_on_and_every_event_arrives_in_order(
        event_server: Callable[..., tuple[Server, Sink]], request: pytest.FixtureRequest,
        backend: str) -> None:
    """1,000 PUTs with the broker stopped answer at the latency they have with it up; once
    it is back, all 1,000 events arrive, in commit order for the bucket."""
    server, sink = event_server(backend)
    broker = request.getfixturevalue(f"{backend}_broker")
    s3 = boto3_client(server.endpoint)
    bucket = "down-" + uuid.uuid4().hex[:10]
    s3.create_bucket(Bucket=bucket)
    up = _timed_puts(s3, bucket, 0, 100)
    sink.wait_for(lambda _: len(sink.of_bucket(bucket)) >= 101, what="the first events")
    broker.stop()
    try:
        down = _timed_puts(s3, bucket, 100, 1000)
        # The relay learns of the outage from its next publish: at once on a closed
        # connection (Redis, RabbitMQ), after the unconfirmed batch's timeout on Kafka
        # (brokers.TIMEOUT_S), which 1,000 quick PUTs may outrun.
        health = _health_when(server, "degraded", timeout=3 * TIMEOUT_S)
        assert health["checks"]["queue"]["status"] == "error"
        assert health["checks"]["queue"]["outbox_depth"] > 0
    finally:
        broker.start()
    if backend == "kafka":  # a memory broker: the topics come back with the relay
        sink.close()
        sink = sink_for(backend, broker, sink.prefix)  # type: ignore[attr-defined]
    keys = [f"k{i:05d}" for i in range(100, 1100)]

    def arrived(_: list[dict[str, Any]]) -> bool:
        return {e["data"]["key"] for e in sink.of_bucket(bucket)
                if e["type"] == "object.created"} >= set(keys)
    sink.wait_for(arrived, timeout=90, what="the 1,000 events held back")
    order = [e["data"]["key"] for e in sink.of_bucket(bucket) if e["type"] == "object.created"
             and e["data"]["key"] in set(keys)]
    assert order == sorted(order), "events of one bucket out of commit order"
    assert len(set(order)) == 1000
    p50_up, p50_down = statistics.median(up), statistics.median(down)
    print(f"\n{backend}: PUT p50 {p50_up * 1000:.1f} ms broker up, "
          f"{p50_down * 1000:.1f} ms broker down; {len(order)} held events delivered")
    assert p50_down < 3 * p50_up + 0.02, "a stopped broker slowed the writes"
    sink.wait_for(lambda _: _health(server)["checks"]["queue"]["status"] == "ok",
                  what="the queue check back to ok")


class Load:
    """Threads PUTting unique keys until the server dies; which were acknowledged."""

    def __init__(self, server: Server, bucket: str, tag: str) -> None:
        self.server, self.bucket, self.tag = server, bucket, tag
        self.acked: dict[str, str] = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(n,), daemon=True)
                        for n in range(4)]

    def run(self, n: int) -> None:
        s3 = boto3_client(self.server.endpoint, connect_timeout=3, read_timeout=10)
        for i in range(100_000):
            key = f"{self.tag}/{n}-{i:05d}"
            try:
                etag = s3.put_object(Bucket=self.bucket, Key=key, Body=key.encode())["ETag"]
            except Exception:
                return
            with self.lock:
                self.acked[key] = etag

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for t in self.threads:
            t.join(30)


@pytest.mark.parametrize("backend", BROKERS)
def test_sigkill_under_load_loses_no_event_and_invents_none(
        event_server: Callable[..., tuple[Server, Sink]], backend: str) -> None:
    """Three SIGKILLs of the whole server under a PUT load: every acknowledged PUT has its
    object.created event (deduplicated by id), and every event names a PUT that committed
    (its key is visible with that ETag)."""
    server, sink = event_server(backend)
    s3 = boto3_client(server.endpoint)
    bucket = "kill-" + uuid.uuid4().hex[:10]
    s3.create_bucket(Bucket=bucket)
    acked: dict[str, str] = {}
    for round_ in range(3):
        with Load(server, bucket, f"r{round_}") as load:
            deadline = time.monotonic() + 20
            while len(load.acked) < 50 and time.monotonic() < deadline:
                time.sleep(0.02)
            server.kill9()
        acked.update(load.acked)
        server.start()
    listed = {o["Key"]: o["ETag"] for page in boto3_client(server.endpoint).get_paginator(
        "list_objects_v2").paginate(Bucket=bucket) for o in page.get("Contents", [])}
    assert set(acked) <= set(listed), "an acknowledged PUT was lost"

    def complete(_: list[dict[str, Any]]) -> bool:
        return {e["data"]["key"] for e in sink.of_bucket(bucket)
                if e["type"] == "object.created"} >= set(acked)
    sink.wait_for(complete, timeout=60, what="an event for every acknowledged PUT")
    created = {}
    for event in sink.of_bucket(bucket):
        if event["type"] == "object.created":
            created.setdefault(event["id"], event["data"])
    for data in created.values():
        assert listed.get(data["key"]) == data["etag"], f"an event for an uncommitted PUT {data}"
    print(f"\n{backend}: 3 kills, {len(acked)} acked PUTs, {len(listed)} committed, "
          f"{len(created)} distinct object.created events, "
          f"{len(sink.of_bucket(bucket)) - len(created) - 1} duplicates")
