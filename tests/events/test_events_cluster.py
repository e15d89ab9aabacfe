"""Events in cluster mode (cluster.md §4.3): every node applies every command, but only
the node that proposed a change writes its event to its outbox, so each change is
published once, by its own node (``source``), also across a kill -9 of every node."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from support.clients import boto3_client
from support.cluster import Cluster, wait_converged, wait_ready
from support.redis_broker import RedisBroker

from tests.events.conftest import queue_config, sink_for


def test_each_change_is_published_once_by_the_node_that_made_it(
        tmp_path: Path, redis_broker: RedisBroker) -> None:
    prefix = "cl" + uuid.uuid4().hex[:10]
    cluster = Cluster(tmp_path, sections={"queue": queue_config("redis", redis_broker,
                                                                 prefix)}).start()
    sink = sink_for("redis", redis_broker, prefix)
    try:
        bucket = "ev-" + uuid.uuid4().hex[:8]
        clients = [boto3_client(s.endpoint) for s in cluster.servers]
        clients[0].create_bucket(Bucket=bucket)
        for i, s3 in enumerate(clients):
            s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")
        clients[1].delete_object(Bucket=bucket, Key="k0")
        acked: dict[str, str] = {}
        stop = threading.Event()

        def load(n: int) -> None:
            s3 = boto3_client(cluster.servers[n].endpoint, max_attempts=0, read_timeout=5)
            i = 0
            while not stop.is_set():
                key = f"load/{n}-{i}"
                i += 1
                try:
                    s3.put_object(Bucket=bucket, Key=key, Body=b"l")
                except Exception:
                    return
                acked[key] = cluster.nodes[n].node_id

        threads = [threading.Thread(target=load, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        sink.wait_for(lambda _: sum(1 for e in sink.of_bucket(bucket)
                                    if e["data"].get("key", "").startswith("load/")) >= 60,
                      what="events under load")
        cluster.kill_all()
        stop.set()
        for t in threads:
            t.join(10)
        for server in cluster.servers:
            server.start()
        for server in cluster.servers:
            wait_ready(server)
        wait_converged(cluster.servers)
        expected = {f"k{i}" for i in range(3)} | set(acked)

        def arrived(_: list[dict[str, Any]]) -> bool:
            return {e["data"].get("key", "") for e in sink.of_bucket(bucket)
                    if e["type"] == "object.created"} >= expected

        sink.wait_for(arrived, timeout=60, what="every acknowledged write's event")
        # at least once: a relay killed between publish and delete sends a row again,
        # under the same id (consumers dedupe by id); one event per change, not per node
        created = list({e["id"]: e for e in sink.of_bucket(bucket)
                        if e["type"] == "object.created"}.values())
        keys = Counter(e["data"].get("key", "") for e in created)
        assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1][:5]
        for e in created:
            k = e["data"].get("key", "")
            if k in acked:
                assert e["source"] == acked[k], e
        sources = {e["data"]["key"]: e["source"] for e in created if e["data"]["key"] < "l"}
        assert sources == {"k0": "n1", "k1": "n2", "k2": "n3"}
        deleted = [e for e in sink.of_bucket(bucket) if e["type"] == "object.deleted"]
        assert [(e["data"].get("key", ""), e["source"]) for e in deleted] == [("k0", "n2")]
    finally:
        sink.close()
        cluster.stop()
