#!/usr/bin/env python3
"""Cluster benchmark (cluster.md): what Raft replication costs a write and how the cluster
behaves when nodes die, next to references measured in the same run.

1. write latency and ops/s: ``--threads`` boto3 clients PUT 1 KiB objects for ``--seconds``
   on (a) one embedded node (the reference) and (b) a 3-node cluster, all clients on the
   leader; plus pysyncobj itself in memory (3 members in this process, no journal, no
   SQLite: the library's own ceiling, what its README's "15K ops/s" measures);
2. failover: ``--failovers`` times, SIGKILL the leader and time until a fresh PUT through a
   survivor succeeds (a probe every ~0.5 s at most); the median and the spread;
3. catch-up: stop a follower, commit ``--catchup`` entries, start it: time until its
   replica applied the leader's index;
4. restart-all: ``--restarts`` rounds of SIGKILL of every node under a write load, then
   start them all: acknowledged writes missing afterwards (must be 0), time to ready.

    python bench/bench_cluster.py [--seconds 10] [--threads 8] [--failovers 10]
                                  [--catchup 10000] [--restarts 10]

Everything runs on 127.0.0.1 in one /tmp/bleepbench-cluster-* directory, removed at the
end. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))

from benchlib import timed_threads  # noqa: E402
from support.clients import boto3_client  # noqa: E402
from support.cluster import Cluster, applied, wait_converged, wait_ready  # noqa: E402
from support.server import Server, free_port  # noqa: E402


def client(server: Server, **kw: Any) -> Any:
    return boto3_client(server.endpoint, **{"max_attempts": 0, "read_timeout": 10, **kw})


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000 if ordered else 0.0


def put_load(server: Server, threads: int, seconds: float) -> dict[str, float]:
    bucket = "bench-" + uuid.uuid4().hex[:8]
    client(server).create_bucket(Bucket=bucket)
    body = b"x" * 1024

    def putter(n: int) -> Callable[[int], Any]:
        s3 = client(server)
        return lambda i: s3.put_object(Bucket=bucket, Key=f"{n}/{i}", Body=body)

    took = timed_threads(threads, seconds, putter)
    return {"ops_s": len(took) / seconds, "p50_ms": pct(took, 0.5), "p99_ms": pct(took, 0.99)}


def pysyncobj_in_memory(threads: int, seconds: float) -> float:
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class Counter(SyncObj):  # type: ignore[misc]
        def __init__(self, me: str, others: list[str]) -> None:
            super().__init__(me, others, SyncObjConf(appendEntriesUseBatch=False,
                                                     dynamicMembershipChange=True))
            self.n = 0

        @replicated  # type: ignore[untyped-decorator]
        def incr(self) -> int:
            self.n += 1
            return self.n

    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    nodes = [Counter(a, [b for b in addrs if b != a]) for a in addrs]
    try:
        deadline = time.monotonic() + 30
        while not any(n._getLeader() for n in nodes) or not all(n.isReady() for n in nodes):
            assert time.monotonic() < deadline, "pysyncobj: no leader"
            time.sleep(0.05)
        done = [0] * threads
        stop = time.monotonic() + seconds

        def run(k: int) -> None:
            node = nodes[k % 3]
            while time.monotonic() < stop:
                node.incr(sync=True, timeout=5)
                done[k] += 1

        pool = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return sum(done) / seconds
    finally:
        for n in nodes:
            n.destroy()


def failover(cluster: Cluster) -> float:
    leader = cluster.leader()
    survivors = [cluster.node(i) for i in range(3) if i != leader]
    probes = [client(s, read_timeout=0.5) for s in survivors]
    bucket = "fo-" + uuid.uuid4().hex[:8]
    probes[0].create_bucket(Bucket=bucket)
    wait_converged(cluster.servers)
    killed = time.monotonic()
    cluster.node(leader).kill9()
    n = 0
    while True:
        try:
            probes[n % 2].put_object(Bucket=bucket, Key="probe", Body=b"1")
            break
        except Exception:
            n += 1
    took = time.monotonic() - killed
    cluster.node(leader).start()
    wait_ready(cluster.node(leader))
    return took


def catch_up(cluster: Cluster, entries: int, threads: int) -> tuple[float, float]:
    leader = cluster.leader()
    follower = cluster.node((leader + 1) % 3)
    follower.stop()
    bucket = "cu-" + uuid.uuid4().hex[:8]
    lead = cluster.node(leader)
    client(lead).create_bucket(Bucket=bucket)
    per = entries // threads

    def run(k: int) -> None:
        s3 = client(lead)
        for i in range(per):
            s3.put_object(Bucket=bucket, Key=f"{k}/{i}", Body=b"c")

    began = time.monotonic()
    pool = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    written = time.monotonic() - began
    target = applied(lead)
    began = time.monotonic()
    follower.start()
    while applied(follower) < target:
        time.sleep(0.01)
    return time.monotonic() - began, written


def restart_all(cluster: Cluster, threads: int) -> tuple[int, int, float]:
    bucket = "ra-" + uuid.uuid4().hex[:8]
    client(cluster.node(0)).create_bucket(Bucket=bucket)
    acked: dict[str, str] = {}
    stop = threading.Event()

    def run(k: int) -> None:
        s3 = client(cluster.servers[k % 3], read_timeout=5)
        i = 0
        while not stop.is_set():
            key = f"{k}/{i}"
            i += 1
            try:
                acked[key] = s3.put_object(Bucket=bucket, Key=key, Body=b"r")["ETag"]
            except Exception:
                return

    pool = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(threads)]
    for t in pool:
        t.start()
    time.sleep(1.0)
    cluster.kill_all()
    stop.set()
    for t in pool:
        t.join(10)
    began = time.monotonic()
    for s in cluster.servers:
        s.start()
    for s in cluster.servers:
        wait_ready(s)
    ready = time.monotonic() - began
    content = wait_converged(cluster.servers)
    lost = sum(1 for k, e in acked.items() if content.get((bucket, k)) != e)
    return len(acked), lost, ready


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--failovers", type=int, default=10)
    ap.add_argument("--catchup", type=int, default=10000)
    ap.add_argument("--restarts", type=int, default=10)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bleepbench-cluster-"))
    try:
        single = Server(root / "single").start()
        try:
            ref = put_load(single, args.threads, args.seconds)
        finally:
            single.stop()
        print(f"1 node (embedded):   {ref['ops_s']:7.0f} PUT/s  p50 {ref['p50_ms']:.1f} ms  "
              f"p99 {ref['p99_ms']:.1f} ms", flush=True)
        cluster = Cluster(root / "c").start()
        try:
            three = put_load(cluster.node(cluster.leader()), args.threads, args.seconds)
            print(f"3 nodes (raft):      {three['ops_s']:7.0f} PUT/s  p50 "
                  f"{three['p50_ms']:.1f} ms  p99 {three['p99_ms']:.1f} ms", flush=True)
            mem = pysyncobj_in_memory(args.threads, min(args.seconds, 5))
            print(f"pysyncobj in memory: {mem:7.0f} ops/s (3 members, same machine)",
                  flush=True)
            times = [failover(cluster) for _ in range(args.failovers)]
            print(f"failover (leader SIGKILL -> next PUT ok), {len(times)} runs: median "
                  f"{statistics.median(times):.2f} s, min {min(times):.2f}, "
                  f"max {max(times):.2f}", flush=True)
            took, written = catch_up(cluster, args.catchup, args.threads)
            print(f"catch-up of {args.catchup} entries (written in {written:.1f} s): "
                  f"{took:.2f} s from the follower's start", flush=True)
            for r in range(args.restarts):
                n, lost, ready = restart_all(cluster, args.threads)
                print(f"restart-all {r + 1}: {n} acked, {lost} lost, ready in {ready:.1f} s",
                      flush=True)
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
