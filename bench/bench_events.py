#!/usr/bin/env python3
"""Event benchmark: what write-through events (events.md §4) cost and how fast they reach
each real broker, next to a reference measured in the same run.

Per broker (redis-server, a private RabbitMQ, tansu for Kafka; each started once by its
``tests/support`` class):
1. publisher throughput: the publisher the relay uses (``build_publisher`` on a parsed
   ``queue`` section), ``connect()`` then ``publish_batch`` of 100 ``OutboxEvent``s of a
   realistic object.created envelope, ``--events`` events or ``--publish-seconds``,
   whichever comes first (RabbitMQ confirms each message: ~600/s); the count is then
   checked on the broker;
2. commit -> broker latency through a real BleepStore (gunicorn, the production way, 2
   workers) publishing to that broker: ``--threads`` boto3 clients PUT 1 KiB objects for
   ``--seconds`` while a live consumer reads the server's event channel. Reported twice:
   the server's own ``bleepstore_queue_latency_ms`` histogram (scraped from ``/metrics``
   before and after the load: commit -> confirmation, as the goal is worded, but only to
   bucket resolution) and per event from the consumer (broker arrival minus the envelope's
   ``timestamp``: exact percentiles); plus events arrived vs PUTs acknowledged;
3. what a write pays: the same PUT load on a fresh server with ``queue.enabled: false``
   (the reference) vs a fresh server with events on; ``--rounds`` pairs in the order ref,
   ev, ev, ref, ... (drift on a shared machine hits both alike), figures pooled.

    python bench/bench_events.py [--brokers redis,rabbitmq,kafka] [--events 10000]
                                 [--seconds 10] [--rounds 2] [--json out.json]

Everything runs on 127.0.0.1 and is stopped at the end, also on an error or SIGTERM; all
data lives in one ``/tmp/bleepbench-events-*`` directory, removed at the end.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(BENCH))

import yaml  # noqa: E402
from benchlib import first_200  # noqa: E402
from events.conftest import queue_config  # noqa: E402
from support.clients import boto3_client  # noqa: E402
from support.server import Server  # noqa: E402

from bleepstore import config as bs_config  # noqa: E402
from bleepstore.events.brokers import build_publisher  # noqa: E402
from bleepstore.events.catalog import EVENT_TYPES, Event  # noqa: E402
from bleepstore.events.outbox import envelope, iso_ms, new_event_id  # noqa: E402
from bleepstore.events.publisher import OutboxEvent  # noqa: E402

BROKERS = ("redis", "rabbitmq", "kafka")
BATCH = 100  # queue.outbox_batch_size default: what the relay claims per loop
BUCKET = "bench"
OBJECT_SIZE = 1024
NODE = "edge-a"  # queue_config's node_id
HIST = "bleepstore_queue_latency_ms"
GOAL_P99_MS = 200.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load1() -> float:
    return os.getloadavg()[0]


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


# ---------------------------------------------------------------- brokers

def make_broker(name: str, root: Path) -> Any:
    if name == "redis":
        from support.redis_broker import RedisBroker
        return RedisBroker(root)
    if name == "rabbitmq":
        from support.rabbitmq_broker import RabbitBroker
        return RabbitBroker(root, name="bleepbench")
    from support.kafka_broker import TansuBroker
    return TansuBroker(root)


def parsed_queue(section: dict[str, Any], work: Path) -> Any:
    """``section`` through the real config loader (defaults and validation as the server)."""
    path = work / f"queue-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump({"queue": section}))
    try:
        return bs_config.load(path, environ={}).queue
    finally:
        path.unlink()


def wait_topics(broker: Any, prefix: str, timeout: float = 20.0) -> None:
    """The relay creates the Kafka topics when it connects."""
    deadline = time.monotonic() + timeout
    while f"{prefix}.object.created" not in broker.topics():
        if time.monotonic() > deadline:
            raise TimeoutError("the relay never created the Kafka topics")
        time.sleep(0.1)


# ---------------------------------------------------------------- 1. publisher throughput

def sample_events(n: int, bucket: str = "photos") -> list[OutboxEvent]:
    """``n`` object.created rows as the recorder writes them (envelope of events.md §3)."""
    out = []
    for i in range(n):
        etag = '"' + hashlib.md5(str(i).encode()).hexdigest() + '"'
        now = iso_ms()
        data = {"bucket": bucket, "key": f"2026/03/IMG_{i:07d}.jpg",
                "size": 248_351 + i, "etag": etag, "content_type": "image/jpeg",
                "operation": "PutObject", "last_modified": now}
        eid = new_event_id()
        body = envelope(Event("object.created", bucket, data, uuid.uuid4().hex[:16].upper()),
                        eid, NODE, now)
        out.append(OutboxEvent(i + 1, eid, "object.created", bucket, body))
    return out


def count_on_broker(name: str, broker: Any, prefix: str, expected: int) -> int:
    if name == "redis":
        client = broker.client()
        try:
            n = int(client.xlen(f"{prefix}:events"))
            client.delete(f"{prefix}:events")
            return n
        finally:
            client.close()
    if name == "rabbitmq":
        with broker.channel() as ch:
            n = ch.queue_declare(f"{prefix}.events", passive=True).method.message_count
            ch.queue_delete(f"{prefix}.events")
            return int(n)
    return len(broker.read_topic(f"{prefix}.object.created", expected, timeout=30))


def publisher_throughput(name: str, broker: Any, work: Path, n_events: int,
                         cap_s: float) -> dict[str, Any]:
    prefix = "pub" + uuid.uuid4().hex[:10]
    q = parsed_queue(queue_config(name, broker, prefix), work)
    events = sample_events(n_events + BATCH)
    sizes = [len(e.body.encode()) for e in events]
    pub = build_publisher(q, NODE)
    batches_ms: list[float] = []
    sent = 0
    try:
        t0 = time.perf_counter()
        pub.connect()
        connect_ms = (time.perf_counter() - t0) * 1000
        pub.publish_batch(events[:BATCH])  # warm-up batch, not timed
        todo = events[BATCH:]
        t_start = time.perf_counter()
        while sent < len(todo):
            batch = todo[sent:sent + BATCH]
            t0 = time.perf_counter()
            pub.publish_batch(batch)
            batches_ms.append((time.perf_counter() - t0) * 1000)
            sent += len(batch)
            if time.perf_counter() - t_start > cap_s:
                break
        elapsed = time.perf_counter() - t_start
    finally:
        pub.close()
    on_broker = count_on_broker(name, broker, prefix, BATCH + sent)
    return {"events": sent, "batches": len(batches_ms), "seconds": elapsed,
            "events_s": sent / elapsed, "connect_ms": connect_ms,
            "batch_p50_ms": pct(batches_ms, 50), "batch_p99_ms": pct(batches_ms, 99),
            "batch_max_ms": max(batches_ms), "capped": sent < n_events,
            "body_bytes_mean": statistics.mean(sizes), "on_broker": on_broker,
            "on_broker_expected": BATCH + sent}


# ---------------------------------------------------------------- live consumers

class Arrivals(threading.Thread):
    """Every message on a server's event channel, with the time it reached the broker (or,
    where the broker does not stamp it, the consumer). Raw bodies, parsed afterwards."""

    clock = "consumer receive time"

    def __init__(self, broker: Any, prefix: str) -> None:
        super().__init__(daemon=True, name=f"sink-{type(self).__name__}")
        self.broker, self.prefix = broker, prefix
        self.got: list[tuple[float, bytes | str]] = []
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.error: str | None = None
        self.cpu_s = 0.0  # this thread's CPU time (librdkafka's own threads not included)

    def run(self) -> None:
        try:
            self.loop()
        except Exception as exc:  # noqa: BLE001  reported, the run goes on
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.cpu_s = time.thread_time()
            self.ready.set()

    def loop(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)

    def wait_count(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.got) < n:
            if time.monotonic() > deadline or self.error:
                return False
            time.sleep(0.01)
        return True


class RedisArrivals(Arrivals):
    """XREAD BLOCK on ``{prefix}:events``; arrival = the entry ID's millisecond time (the
    Redis server's clock at XADD)."""

    clock = "Redis entry ID (server time at XADD, ms)"

    def loop(self) -> None:
        client = self.broker.client()
        stream, last = f"{self.prefix}:events", "0-0"
        self.ready.set()
        try:
            while not self.stopping.is_set():
                for _, entries in client.xread({stream: last}, count=1000, block=100) or []:
                    for entry_id, fields in entries:
                        last = entry_id
                        self.got.append((int(entry_id.split("-")[0]) / 1000, fields["data"]))
        finally:
            client.close()


class RabbitArrivals(Arrivals):
    """A push consumer (basic_consume, auto-ack) on ``{prefix}.events`` (the topic queue
    the publisher binds with ``#``); AMQP's timestamp property only has whole seconds."""

    def loop(self) -> None:
        with self.broker.channel() as ch:
            queue = f"{self.prefix}.events"
            ch.queue_declare(queue, durable=True)  # as the publisher declares it

            def on_message(_ch: Any, _method: Any, _props: Any, body: bytes) -> None:
                self.got.append((time.time(), body))

            ch.basic_consume(queue, on_message, auto_ack=True)
            self.ready.set()
            while not self.stopping.is_set():
                ch.connection.process_data_events(time_limit=0.1)


class KafkaArrivals(Arrivals):
    """Every event topic, every partition, from the beginning, fetch wait <= 10 ms. tansu
    keeps the producer's CreateTime even with ``message.timestamp.type=LogAppendTime``, so
    the consumer's receive time stands for the broker arrival."""

    def loop(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.broker.bootstrap, "log_level": 2,
                             "group.id": "bench-" + uuid.uuid4().hex,  # never joined
                             "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        try:
            meta = consumer.list_topics(timeout=10).topics
            consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING)
                             for t in (f"{self.prefix}.{e}" for e in EVENT_TYPES) if t in meta
                             for p in meta[t].partitions])
            self.ready.set()
            while not self.stopping.is_set():
                # poll() returns at the first message; consume() would wait out its timeout
                # to fill the batch, stamping arrivals up to that late
                first = consumer.poll(0.1)
                if first is None:
                    continue
                now = time.time()
                batch = [first, *consumer.consume(num_messages=1000, timeout=0)]
                self.got.extend((now, m.value()) for m in batch if m.error() is None)
        finally:
            consumer.close()


SINKS = {"redis": RedisArrivals, "rabbitmq": RabbitArrivals, "kafka": KafkaArrivals}


def epoch_ms(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def analyse(got: list[tuple[float, bytes | str]], prefix: str) -> dict[str, Any]:
    """Latency per object.created event of the load (keys under ``prefix``/)."""
    seen: set[str] = set()
    lat: list[float] = []
    dups = other = 0
    for arrival, raw in got:
        ev = json.loads(raw)
        if ev.get("type") != "object.created" or not ev["data"]["key"].startswith(prefix + "/"):
            other += 1
            continue
        if ev["id"] in seen:
            dups += 1
            continue
        seen.add(ev["id"])
        lat.append(arrival * 1000 - epoch_ms(ev["timestamp"]))
    return {"arrived": len(seen), "duplicates": dups, "other_events": other, "_lat": lat}


# ---------------------------------------------------------------- /metrics

def scrape(port: int) -> dict[str, Any]:
    """The queue metrics of events.md §11 from ``/metrics`` (all workers)."""
    from prometheus_client.parser import text_string_to_metric_families

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        text = resp.read().decode()
        if resp.status != 200:
            raise RuntimeError(f"/metrics -> {resp.status}")
    finally:
        conn.close()
    out: dict[str, Any] = {"buckets": {}, "count": 0.0, "sum": 0.0, "published": 0.0,
                           "failed": {}, "depth": None}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            kind = s.labels.get("kind")
            if s.name == f"{HIST}_bucket" and kind == "event":
                le = float(s.labels["le"])
                out["buckets"][le] = out["buckets"].get(le, 0.0) + s.value
            elif s.name == f"{HIST}_count" and kind == "event":
                out["count"] += s.value
            elif s.name == f"{HIST}_sum" and kind == "event":
                out["sum"] += s.value
            elif s.name == "bleepstore_queue_published_total" and kind == "event":
                out["published"] += s.value
            elif s.name == "bleepstore_queue_failed_total":
                reason = s.labels.get("reason", "")
                out["failed"][reason] = out["failed"].get(reason, 0.0) + s.value
            elif s.name == "bleepstore_queue_outbox_depth":
                out["depth"] = s.value
    return out


def hist_quantile(buckets: dict[float, float], q: float) -> tuple[float | None, float | None]:
    """(estimate, upper bound) of quantile ``q`` from cumulative buckets, with Prometheus'
    ``histogram_quantile`` linear interpolation inside the bucket."""
    les = sorted(buckets)
    total = buckets.get(float("inf"), 0.0)
    if total <= 0:
        return None, None
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le in les:
        c = buckets[le]
        if c >= rank:
            if le == float("inf"):
                return prev_le, le
            frac = (rank - prev_c) / (c - prev_c) if c > prev_c else 1.0
            return prev_le + (le - prev_le) * frac, le
        prev_le, prev_c = le, c
    return None, None


def hist_diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the load added to the queue metrics."""
    failed = {k: v - before["failed"].get(k, 0.0) for k, v in after["failed"].items()}
    return {"buckets": {le: after["buckets"][le] - before["buckets"].get(le, 0.0)
                        for le in after["buckets"]},
            "count": after["count"] - before["count"], "sum": after["sum"] - before["sum"],
            "published": after["published"] - before["published"],
            "failed": {k: v for k, v in failed.items() if v},
            "outbox_depth_after": after["depth"]}


def pooled_hist(diffs: list[dict[str, Any]]) -> dict[str, Any]:
    buckets: dict[float, float] = {}
    failed: dict[str, float] = {}
    for d in diffs:
        for le, v in d["buckets"].items():
            buckets[le] = buckets.get(le, 0.0) + v
        for k, v in d["failed"].items():
            failed[k] = failed.get(k, 0.0) + v
    count = sum(d["count"] for d in diffs)
    p50, p50_le = hist_quantile(buckets, 0.50)
    p99, p99_le = hist_quantile(buckets, 0.99)
    return {"count": int(count), "mean_ms": sum(d["sum"] for d in diffs) / count
            if count else None, "p50_ms": p50, "p50_le": p50_le, "p99_ms": p99,
            "p99_le": p99_le, "published": int(sum(d["published"] for d in diffs)),
            "failed": {k: int(v) for k, v in failed.items()},
            "buckets": {f"{le:g}": int(v) for le, v in sorted(buckets.items())},
            "outbox_depth_after": [d["outbox_depth_after"] for d in diffs]}


def pooled_load(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """PUT figures over the rounds: ops/s = all PUTs / all seconds, percentiles pooled."""
    lat = [x for r in runs for x in r["load"]["_lat"]]
    ok = sum(r["load"]["ok"] for r in runs)
    errs = [e for r in runs for e in r["load"]["error_sample"]]
    return {"ok": ok, "errors": sum(r["load"]["errors"] for r in runs), "error_sample": errs,
            "ops_s": ok / sum(r["load"]["seconds"] for r in runs),
            "ops_s_runs": [r["load"]["ops_s"] for r in runs],
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": max(lat) if lat else None}


def pooled_events(runs: list[dict[str, Any]]) -> dict[str, Any]:
    lat = [x for r in runs for x in r["sink"]["_lat"]]
    return {"puts_ok": sum(r["load"]["ok"] for r in runs),
            "arrived": sum(r["sink"]["arrived"] for r in runs),
            "duplicates": sum(r["sink"]["duplicates"] for r in runs),
            "drain_s": max(r["drain_s"] for r in runs),
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": max(lat) if lat else None,
            "mean_ms": statistics.mean(lat) if lat else None,
            "clock": runs[0]["sink"]["clock"],
            "consumer_cpu_s": sum(r.get("consumer_cpu_s", 0.0) for r in runs),
            "histogram": pooled_hist([r["histogram"] for r in runs])}


# ---------------------------------------------------------------- PUT load

def put_load(s3: Any, seconds: float, threads: int, prefix: str,
             stop_all: threading.Event) -> dict[str, Any]:
    """``threads`` threads PUT 1 KiB objects (one shared boto3 client) for ``seconds``."""
    body = os.urandom(OBJECT_SIZE)
    lat: list[list[float]] = [[] for _ in range(threads)]
    errors: list[list[str]] = [[] for _ in range(threads)]
    stop = threading.Event()
    go = threading.Barrier(threads + 1)

    def worker(i: int) -> None:
        go.wait()
        n = 0
        while not stop.is_set() and not stop_all.is_set():
            t0 = time.perf_counter()
            try:
                s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{i}/{n:06d}", Body=body)
            except Exception as exc:  # noqa: BLE001  counted, the load goes on
                errors[i].append(f"{type(exc).__name__}: {exc}")
            else:
                lat[i].append((time.perf_counter() - t0) * 1000)
            n += 1

    ts = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    go.wait()
    t0 = time.perf_counter()
    stop_all.wait(seconds)
    stop.set()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    all_lat = [x for part in lat for x in part]
    errs = [e for part in errors for e in part]
    return {"ok": len(all_lat), "errors": len(errs), "error_sample": errs[:3],
            "seconds": elapsed, "ops_s": len(all_lat) / elapsed, "_lat": all_lat}


# ---------------------------------------------------------------- the bench

class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="bleepbench-events-", dir="/tmp"))
        self.running: list[Any] = []  # brokers, servers, consumers: stopped in finally
        self.abort = threading.Event()

    def stop_all(self) -> None:
        self.abort.set()
        for thing in reversed(self.running):
            try:
                thing.stop()
            except Exception as exc:  # noqa: BLE001  keep stopping the others
                log(f"stop {type(thing).__name__}: {exc!r}")
        self.running.clear()
        self.abort.clear()

    def server_run(self, name: str, broker: Any | None, root: Path) -> dict[str, Any]:
        """A fresh server (events on ``broker``, or off), warm-up, then the PUT load."""
        a = self.args
        res: dict[str, Any] = {"load1_before": load1(), "notes": []}
        prefix = "bs" + uuid.uuid4().hex[:10]
        queue = queue_config(name, broker, prefix) if broker is not None else {"enabled": False}
        srv = Server(root, workers=a.workers, extra_config={"queue": queue})
        sink: Arrivals | None = None
        try:
            srv.start()
            self.running.append(srv)
            first_200(srv.port, "/healthz", time.monotonic(), srv.proc, 30)
            if broker is not None:
                if name == "kafka":
                    wait_topics(broker, prefix)
                sink = SINKS[name](broker, prefix)
                sink.start()
                self.running.append(sink)
                if not sink.ready.wait(15) or sink.error:
                    raise RuntimeError(f"consumer not ready: {sink.error}")
            s3 = boto3_client(srv.endpoint, max_pool_connections=2 * a.threads)
            s3.create_bucket(Bucket=BUCKET)
            warm = put_load(s3, 1.0, a.threads, "warm", self.abort)
            before = None
            if sink is not None:  # the warm-up's events out of the way, then the baseline
                if not sink.wait_count(1 + warm["ok"], 30):
                    res["notes"].append(f"warm-up: {len(sink.got)} of {1 + warm['ok']} "
                                        "events after 30 s")
                deadline = time.monotonic() + 10  # and in the histogram (after the DELETE)
                while (before := scrape(srv.port))["count"] < 1 + warm["ok"] and \
                        time.monotonic() < deadline:
                    time.sleep(0.05)
            base = len(sink.got) if sink is not None else 0
            res["load"] = put_load(s3, a.seconds, a.threads, "load", self.abort)
            t_end = time.monotonic()
            if sink is not None and before is not None:
                complete = sink.wait_count(base + res["load"]["ok"], 30)
                res["drain_s"] = time.monotonic() - t_end
                if not complete:
                    res["notes"].append("not every event arrived within 30 s of the load")
                time.sleep(0.3)  # a late duplicate or an event of a failed PUT shows up too
                deadline = time.monotonic() + 5  # the relay observes after its DELETE
                while True:
                    after = scrape(srv.port)
                    if after["count"] - before["count"] >= res["load"]["ok"] or \
                            time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                res["histogram"] = hist_diff(before, after)
                res["sink"] = analyse(sink.got, "load")
                res["sink"]["clock"] = sink.clock
                if sink.error:
                    res["notes"].append(f"consumer: {sink.error}")
        except Exception:
            if srv.log_path.exists():
                log("server log tail:\n" + "\n".join(srv.log_text().splitlines()[-15:]))
            raise
        finally:
            if sink is not None:
                sink.stop()
                self.running.remove(sink)
                res["consumer_cpu_s"] = sink.cpu_s
            if srv in self.running:
                t0 = time.monotonic()
                srv.stop()
                res["stop_s"] = time.monotonic() - t0
                self.running.remove(srv)
        res["load1_after"] = load1()
        return res

    def broker(self, name: str) -> dict[str, Any]:
        a = self.args
        res: dict[str, Any] = {"broker": name, "notes": [], "load1_before": load1()}
        root = self.tmp / name
        root.mkdir()
        t_start = time.monotonic()
        try:
            broker = make_broker(name, root / "broker")
            log(f"{name}: starting {type(broker).__name__}")
            t0 = time.monotonic()
            broker.start()
            self.running.append(broker)
            res["broker_start_s"] = time.monotonic() - t0
            log(f"{name}: publisher throughput ({a.events:,} events in batches of {BATCH}, "
                f"cap {a.publish_seconds:g} s)")
            res["publisher"] = publisher_throughput(name, broker, root, a.events,
                                                    a.publish_seconds)
            runs: dict[str, list[dict[str, Any]]] = {"reference": [], "events": []}
            for rnd in range(a.rounds):  # ref, ev, ev, ref, ...: drift hits both alike
                for kind in ("reference", "events")[::1 if rnd % 2 == 0 else -1]:
                    what = "queue off" if kind == "reference" else f"events on {name}"
                    log(f"{name}: round {rnd + 1}/{a.rounds}: fresh server, {what}, "
                        f"{a.threads} threads x {a.seconds:g} s")
                    runs[kind].append(self.server_run(name, broker if kind == "events"
                                                      else None, root / f"{kind}{rnd}"))
            res["runs"] = runs
            res["reference"] = pooled_load(runs["reference"])
            res["events"] = pooled_load(runs["events"])
            res["latency"] = pooled_events(runs["events"])
        except Exception as exc:  # keep going with the other brokers
            res["error"] = f"{type(exc).__name__}: {exc}"
            log(f"{name} failed: {exc!r}\n{traceback.format_exc(limit=8)}")
        finally:
            self.stop_all()
            shutil.rmtree(root, ignore_errors=True)
        res["load1_after"] = load1()
        res["elapsed_s"] = time.monotonic() - t_start
        log(f"{name}: done in {res['elapsed_s']:.0f} s")
        return res

    def run(self) -> list[dict[str, Any]]:
        try:
            return [self.broker(name) for name in self.args.brokers]
        finally:
            self.stop_all()
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------- report

def fmt(v: float | None, nd: int = 1) -> str:
    return "-" if v is None else f"{v:,.{nd}f}"


def public(obj: Any) -> Any:
    """``obj`` without the raw sample lists (keys starting with ``_``), for JSON."""
    if isinstance(obj, dict):
        return {k: public(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list):
        return [public(v) for v in obj]
    return obj


def rel(ref: float | None, ev: float | None) -> str:
    return "-" if not ref or ev is None else f"{(ev / ref - 1) * 100:+.0f}%"


def report(args: argparse.Namespace, results: list[dict[str, Any]], elapsed: float) -> str:
    L = [f"BleepStore events: {os.cpu_count()} CPUs; brokers on loopback (redis-server, "
         f"RabbitMQ 3.10 private node, tansu with memory storage for Kafka)", ""]
    L.append(f"1. Publisher throughput: build_publisher() (the relay's), batches of {BATCH} "
             f"object.created envelopes, up to {args.events:,} events or "
             f"{args.publish_seconds:g} s, after 1 warm-up batch")
    head = (f"{'broker':9s} {'events':>7s} {'events/s':>10s} {'batch p50 ms':>13s} "
            f"{'batch p99 ms':>13s} {'batch max ms':>13s} {'connect ms':>11s} "
            f"{'on broker':>10s}")
    L += [head, "-" * len(head)]
    for r in results:
        p = r.get("publisher")
        if not p:
            L.append(f"{r['broker']:9s} ERROR")
            continue
        onb = f"{p['on_broker']:,}" + ("" if p["on_broker"] == p["on_broker_expected"]
                                       else f" (!= {p['on_broker_expected']:,})")
        L.append(f"{r['broker']:9s} {p['events']:>7,} {fmt(p['events_s'], 0):>10s} "
                 f"{fmt(p['batch_p50_ms'], 2):>13s} {fmt(p['batch_p99_ms'], 2):>13s} "
                 f"{fmt(p['batch_max_ms'], 2):>13s} {fmt(p['connect_ms']):>11s} {onb:>10s}"
                 + ("  (time cap)" if p["capped"] else ""))
    sizes = [r["publisher"]["body_bytes_mean"] for r in results if r.get("publisher")]
    if sizes:
        L.append(f"  envelope {sizes[0]:.0f} B; 'on broker' = messages counted on the broker "
                 "afterwards (warm-up batch included)")
    L.append("")
    L.append(f"2. Commit -> broker through BleepStore ({args.workers} gunicorn workers x 8 "
             f"threads, write-through): {args.threads} boto3 threads PUT 1 KiB, "
             f"{args.rounds} x {args.seconds:g} s on fresh servers, pooled; "
             f"goal p99 < {GOAL_P99_MS:.0f} ms")
    head = (f"{'broker':9s} {'PUTs ok':>8s} {'arrived':>8s} {'dup':>4s} {'drain s':>8s} "
            f"{'hist p50 ms':>14s} {'hist p99 ms':>15s} {'event p50':>10s} {'event p99':>10s} "
            f"{'event max':>10s} {'p99 goal':>9s}")
    L += [head, "-" * len(head)]
    for r in results:
        e = r.get("latency")
        if not e:
            L.append(f"{r['broker']:9s} ERROR")
            continue
        h = e["histogram"]
        hp50 = f"{fmt(h['p50_ms'])} (<={h['p50_le']:g})" if h["p50_le"] else "-"
        hp99 = f"{fmt(h['p99_ms'])} (<={h['p99_le']:g})" if h["p99_le"] else "-"
        votes = {v < GOAL_P99_MS for v in (h["p99_ms"], e["p99_ms"]) if v is not None}
        goal = "-" if not votes else "unclear" if len(votes) > 1 else \
            "met" if votes.pop() else "MISSED"
        L.append(f"{r['broker']:9s} {e['puts_ok']:>8,} {e['arrived']:>8,} {e['duplicates']:>4} "
                 f"{fmt(e['drain_s'], 2):>8s} {hp50:>14s} {hp99:>15s} "
                 f"{fmt(e['p50_ms']):>10s} {fmt(e['p99_ms']):>10s} {fmt(e['max_ms']):>10s} "
                 f"{goal:>9s}")
    L.append("  hist: the server's own bleepstore_queue_latency_ms{kind=event} (envelope "
             "timestamp -> confirmation, observed by the relay after its outbox DELETE), "
             "/metrics before/after each load, summed; interpolated inside the bucket "
             "(Prometheus histogram_quantile), (<=le) = the bucket's upper bound")
    L.append("  event: per event, broker arrival minus the envelope timestamp (ms, truncated); "
             "arrival = " + "; ".join(f"{r['broker']}: {r['latency']['clock']}"
                                      for r in results if r.get("latency")))
    L.append("  drain s: after the last PUT returned, until the consumer had every event "
             "(worst round); arrived = distinct load events seen (object.created, load/ keys)")
    L.append(f"  p99 goal: met / MISSED when both p99 figures are below / above "
             f"{GOAL_P99_MS:.0f} ms, else unclear")
    for r in results:
        e = r.get("latency")
        if e:
            h = e["histogram"]
            L.append(f"  {r['broker']}: histogram count {h['count']:,}, published "
                     f"{h['published']:,}, mean {fmt(h['mean_ms'])} ms, failed "
                     f"{h['failed'] or 0}, outbox depth after "
                     f"{', '.join(fmt(d, 0) for d in h['outbox_depth_after'])}; cumulative "
                     + " ".join(f"<={k}:{v}" for k, v in h["buckets"].items() if k != "inf")
                     + f"; event mean {fmt(e['mean_ms'])} ms; the bench's consumer thread "
                     f"used {e['consumer_cpu_s']:.2f} s CPU")
    L.append("")
    L.append("3. What a write pays: the same PUT load on a fresh server with queue.enabled: "
             "false (reference) vs events on, rounds in order ref, ev, ev, ref, ...; "
             "latency in ms, pooled; last three columns: events vs reference")
    head = (f"{'broker':9s} {'ref ops/s':>10s} {'ref p50':>8s} {'ref p99':>8s} "
            f"{'ev ops/s':>9s} {'ev p50':>8s} {'ev p99':>8s} {'ops/s':>7s} {'p50':>7s} "
            f"{'p99':>7s}  ops/s per round (ref | ev)")
    L += [head, "-" * len(head)]
    for r in results:
        ref, ev = r.get("reference"), r.get("events")
        if not ref or not ev:
            L.append(f"{r['broker']:9s} ERROR")
            continue
        L.append(f"{r['broker']:9s} {fmt(ref['ops_s'], 0):>10s} {fmt(ref['p50_ms']):>8s} "
                 f"{fmt(ref['p99_ms']):>8s} {fmt(ev['ops_s'], 0):>9s} {fmt(ev['p50_ms']):>8s} "
                 f"{fmt(ev['p99_ms']):>8s} {rel(ref['ops_s'], ev['ops_s']):>7s} "
                 f"{rel(ref['p50_ms'], ev['p50_ms']):>7s} {rel(ref['p99_ms'], ev['p99_ms']):>7s}"
                 f"  {' '.join(fmt(x, 0) for x in ref['ops_s_runs'])} | "
                 f"{' '.join(fmt(x, 0) for x in ev['ops_s_runs'])}")
    L.append("")
    L.append("1-minute load average (2 CPUs: > 2 = contended), start -> end of each broker's "
             "runs, and per server run")
    for r in results:
        line = f"  {r['broker']}: {r['load1_before']:.2f} -> {r['load1_after']:.2f} " \
               f"({r['elapsed_s']:.0f} s)"
        if "broker_start_s" in r:
            line += f", broker start {r['broker_start_s']:.1f} s"
        for kind, runs in r.get("runs", {}).items():
            line += f"; {kind} " + ", ".join(f"{x['load1_before']:.1f}->{x['load1_after']:.1f}"
                                             for x in runs)
        L.append(line)
    for r in results:
        for kind, runs in r.get("runs", {}).items():
            for i, x in enumerate(runs):
                for note in x.get("notes", []):
                    L.append(f"note: {r['broker']} {kind} {i + 1}: {note}")
        for kind in ("reference", "events"):
            ld = r.get(kind)
            if ld and ld["errors"]:
                L.append(f"note: {r['broker']} {kind}: {ld['errors']} PUT errors, e.g. "
                         f"{ld['error_sample'][0]}")
        if "error" in r:
            L.append(f"error: {r['broker']}: {r['error']}")
    L.append("")
    L.append(f"(elapsed {elapsed:.0f} s)")
    return "\n".join(L)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", default=",".join(BROKERS),
                    help="comma-separated subset of " + ",".join(BROKERS))
    ap.add_argument("--events", type=int, default=10_000,
                    help="events for the publisher throughput run (default 10000)")
    ap.add_argument("--publish-seconds", type=float, default=10.0,
                    help="time cap of the publisher run (default 10; RabbitMQ hits it)")
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="PUT load duration per server (default 10)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="reference + events server pairs per broker (default 2)")
    ap.add_argument("--threads", type=int, default=4, help="PUT client threads (default 4)")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = ap.parse_args()
    args.brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    unknown = set(args.brokers) - set(BROKERS)
    if unknown or not args.brokers:
        ap.error(f"unknown broker(s) {sorted(unknown)}; choose from {','.join(BROKERS)}")
    if args.events < BATCH or args.seconds <= 0 or args.threads < 1 or args.rounds < 1:
        ap.error(f"--events must be >= {BATCH}, --seconds > 0, --threads and --rounds >= 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.monotonic()
    results = Bench(args).run()
    print(report(args, results, time.monotonic() - t0))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": public(results)},
                                              indent=1, default=str))


if __name__ == "__main__":
    main()
