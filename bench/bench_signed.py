#!/usr/bin/env python3
"""Header-signed (boto3) 4 KiB PUT / GET / HEAD: BleepStore and moto_server, one at a
time, each started fresh, driven by the same boto3 clients (``--procs`` processes with
``--threads`` threads each, one client per thread, SigV4 ``Authorization`` headers as
boto3 sends them over http: a signed payload hash on PUT). Prints ops/s, p50/p99 and the
server's CPU per operation (its whole process tree, from /proc).

    python bench/bench_signed.py [--secs 6] [--procs 2] [--threads 4] [--only bleepstore,moto]

boto3 itself costs ~1-2 ms of CPU per call, so on a 2-core machine the clients, not the
server, bound ops/s: the server CPU per operation is the figure to compare.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))

from bench_small import cpu_s, log, tree  # noqa: E402
from benchlib import timed_threads  # noqa: E402
from refs import Moto  # noqa: E402
from support.clients import boto3_client  # noqa: E402
from support.server import Server  # noqa: E402

SMALL = 4096
KEYS = 200


def client_proc(endpoint: str, op: str, threads: int, secs: float, seed: int,
                out: Any) -> None:
    """One process: ``threads`` boto3 clients looping ``op`` until ``secs`` pass."""
    body = b"s" * SMALL

    def caller(n: int) -> Callable[[int], Any]:
        s3 = boto3_client(endpoint)

        def call(i: int) -> None:
            key = f"k{(seed * 97 + n * 31 + i) % KEYS:04d}"
            if op == "PUT":
                s3.put_object(Bucket="bench", Key=f"put/{seed}/{n}/{i}", Body=body)
            elif op == "GET":
                s3.get_object(Bucket="bench", Key=key)["Body"].read()
            else:
                s3.head_object(Bucket="bench", Key=key)
        return call

    latencies = timed_threads(threads, secs, caller)
    out.put(latencies)


def run(name: str, endpoint: str, root_pid: int, op: str, procs: int, threads: int,
        secs: float) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    children = [ctx.Process(target=client_proc, args=(endpoint, op, threads, secs, i, out))
                for i in range(procs)]
    pids = tree(root_pid)
    before = {pid: cpu_s(pid) for pid in pids}
    t0 = time.perf_counter()
    for c in children:
        c.start()
    latencies: list[float] = []
    for _ in children:
        latencies.extend(out.get(timeout=secs + 120))
    elapsed = time.perf_counter() - t0
    for c in children:
        c.join()
    used = sum(cpu_s(pid) - before[pid] for pid in pids)
    latencies.sort()
    n = len(latencies)
    res = {"server": name, "op": op, "ops_s": n / secs, "requests": n,
           "p50_ms": 1000 * statistics.median(latencies),
           "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))],
           "cpu_ms_per_op": 1000 * used / max(n, 1), "wall_s": elapsed}
    log(f"  {name:10s} {op:4s} {res['ops_s']:7.1f} ops/s  p50 {res['p50_ms']:6.2f} ms  "
        f"p99 {res['p99_ms']:7.2f} ms  server cpu {res['cpu_ms_per_op']:.2f} ms/op")
    return res


def measure(name: str, endpoint: str, root_pid: int, args: argparse.Namespace
            ) -> list[dict[str, Any]]:
    s3 = boto3_client(endpoint)
    s3.create_bucket(Bucket="bench")
    for i in range(KEYS):
        s3.put_object(Bucket="bench", Key=f"k{i:04d}", Body=b"g" * SMALL)
    return [run(name, endpoint, root_pid, op, args.procs, args.threads, args.secs)
            for op in ("PUT", "GET", "HEAD")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--secs", type=float, default=6)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--only", default="bleepstore,moto")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bleepsigned-"))
    results: list[dict[str, Any]] = []
    for name in args.only.split(","):
        log(f"{name}: start fresh")
        if name == "bleepstore":
            srv = Server(tmp / "bleepstore")
            srv.start()
            try:
                assert srv.proc is not None
                results += measure(name, srv.endpoint, srv.proc.pid, args)
            finally:
                srv.stop()
        elif name == "moto":
            moto = Moto(tmp / "moto").start()
            try:
                assert moto.proc is not None
                results += measure(name, moto.endpoint, moto.proc.pid, args)
            finally:
                moto.stop()
    print(f"boto3 clients: {args.procs} processes x {args.threads} threads, "
          f"{args.secs:g} s per op, 4 KiB bodies, header-signed")
    print("| server | op | ops/s | p50 ms | p99 ms | server CPU ms/op |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['server']} | {r['op']} | {r['ops_s']:,.0f} | {r['p50_ms']:.2f} "
              f"| {r['p99_ms']:.2f} | {r['cpu_ms_per_op']:.2f} |")


if __name__ == "__main__":
    main()
