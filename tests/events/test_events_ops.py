"""Operating the event queue: ``bleepstore events tail`` on each broker, the outbox-full
policies, ``/admin/queue/status`` and the queue metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import botocore.exceptions
import pytest
from support.clients import boto3_client
from support.event_sinks import Sink
from support.server import Server, free_port

from tests.events.conftest import BROKERS

TOKEN = "queue-admin-token"


def _cli(server: Server, *args: str, timeout: float = 60) -> subprocess.Popen[str]:
    env = {**os.environ, "BLEEPSTORE_CONFIG": str(server.config_path)}
    return subprocess.Popen([sys.executable, "-m", "bleepstore.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=server.root)


@pytest.mark.parametrize("backend", BROKERS)
def test_events_tail_prints_what_is_published(
        event_server: Callable[..., tuple[Server, Sink]], backend: str) -> None:
    server, _ = event_server(backend)
    tail = _cli(server, "events", "tail", "--limit", "3", "--seconds", "60")
    try:
        assert tail.stderr is not None and "following" in tail.stderr.readline()
        s3 = boto3_client(server.endpoint)
        bucket = "tail-" + uuid.uuid4().hex[:8]
        s3.create_bucket(Bucket=bucket)
        for key in ("one", "two"):
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        out, err = tail.communicate(timeout=60)
    finally:
        tail.kill()
    lines = out.splitlines()
    assert tail.returncode == 0, err
    assert [line.split()[1] for line in lines] == [
        "bucket.created", "object.created", "object.created"] or backend == "kafka"
    assert {f"{bucket}/one", f"{bucket}/two"} <= {line.split()[2] for line in lines}


def test_events_tail_without_a_queue_says_so(tmp_path: Any) -> None:
    server = Server(tmp_path / "s")
    server.write_config()
    tail = _cli(server, "events", "tail", "--seconds", "1")
    _, err = tail.communicate(timeout=60)
    assert tail.returncode == 2 and "queue.enabled is false" in err


def test_events_tail_with_the_broker_unreachable_fails_cleanly(tmp_path: Any) -> None:
    server = Server(tmp_path / "s", extra_config={"queue": {
        "enabled": True, "backend": "redis", "redis": {"url": f"redis://127.0.0.1:{free_port()}"}}})
    server.write_config()
    tail = _cli(server, "events", "tail", "--seconds", "5")
    _, err = tail.communicate(timeout=60)
    assert tail.returncode == 1 and "cannot follow redis events" in err
    assert "Traceback" not in err


def _admin(server: Server, path: str) -> tuple[int, Any]:
    port = server.extra_config["server"]["admin_port"]
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    req.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


def _metric(server: Server, name: str) -> float:
    with urllib.request.urlopen(server.endpoint + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def test_outbox_full_drop_keeps_writes_and_counts(
        event_server: Callable[..., tuple[Server, Sink]], request: pytest.FixtureRequest
        ) -> None:
    """``drop`` (the default): with the broker down and the outbox at its cap, writes still
    succeed; the events beyond the cap are dropped, counted and reported."""
    broker = request.getfixturevalue("redis_broker")
    server, sink = event_server("redis", outbox_max_rows=20)
    s3 = boto3_client(server.endpoint)
    bucket = "drop-" + uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=bucket)
    sink.wait_for(lambda _: len(sink.of_bucket(bucket)) == 1, what="bucket.created")
    broker.stop()
    try:
        for i in range(40):
            s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")
        assert _metric(server, 'bleepstore_queue_failed_total{reason="outbox_full"}') >= 20
    finally:
        broker.start()
    sink.wait_for(lambda _: len(sink.of_bucket(bucket)) >= 21, timeout=60, what="20 kept")
    keys = [e["data"]["key"] for e in sink.of_bucket(bucket) if e["type"] == "object.created"]
    assert keys == [f"k{i}" for i in range(20)]  # the first 20 kept, in order; the rest gone
    assert len(s3.list_objects_v2(Bucket=bucket)["Contents"]) == 40


def test_outbox_full_reject_answers_slowdown_and_keeps_nothing_half_done(
        event_server: Callable[..., tuple[Server, Sink]], request: pytest.FixtureRequest
        ) -> None:
    """``reject``: with the outbox at its cap, writes answer 503 SlowDown and change
    nothing (no object without its event); once the broker drains it, writes succeed."""
    broker = request.getfixturevalue("redis_broker")
    server, sink = event_server("redis", outbox_max_rows=10, outbox_full_policy="reject")
    s3 = boto3_client(server.endpoint)
    bucket = "rej-" + uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=bucket)
    sink.wait_for(lambda _: len(sink.of_bucket(bucket)) == 1, what="bucket.created")
    broker.stop()
    try:
        for i in range(10):
            s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            s3.put_object(Bucket=bucket, Key="refused", Body=b"x")
        assert exc.value.response["Error"]["Code"] == "SlowDown"
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        with pytest.raises(botocore.exceptions.ClientError):
            s3.head_object(Bucket=bucket, Key="refused")
    finally:
        broker.start()
    sink.wait_for(lambda _: len(sink.of_bucket(bucket)) >= 11, timeout=60, what="the 10")
    s3.put_object(Bucket=bucket, Key="accepted", Body=b"x")
    sink.wait_for(lambda _: any(e["data"].get("key") == "accepted"
                                for e in sink.of_bucket(bucket)), what="the write after")


def test_admin_queue_status_and_metrics(event_server: Callable[..., tuple[Server, Sink]],
                                        request: pytest.FixtureRequest) -> None:
    broker = request.getfixturevalue("redis_broker")
    server, sink = event_server("redis")
    server.stop()
    server.extra_config["server"] = {"admin_port": free_port(), "admin_token": TOKEN}
    server.start()
    s3 = boto3_client(server.endpoint)
    bucket = "adm-" + uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=bucket)
    sink.wait_for(lambda _: len(sink.of_bucket(bucket)) == 1, what="bucket.created")
    status, body = _admin(server, "/admin/queue/status")
    assert status == 200 and body["status"] == "ok" and body["backend"] == "redis"
    assert body["connected"] is True and body["outbox_depth"] == 0
    assert _metric(server, 'bleepstore_queue_published_total{kind="event"}') >= 1
    assert _metric(server, 'bleepstore_queue_latency_ms_count{kind="event"}') >= 1
    broker.stop()
    try:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
        deadline = time.monotonic() + 20
        while _admin(server, "/admin/queue/status")[1]["connected"]:
            assert time.monotonic() < deadline, "the relay never noticed the broker is gone"
            time.sleep(0.1)
        _, down = _admin(server, "/admin/queue/status")
        assert down["status"] == "error" and down["error"] and down["outbox_depth"] >= 1
        assert "password" not in json.dumps(down)
    finally:
        broker.start()
