#!/usr/bin/env python3
"""Header-signed (boto3) 4 KiB PUT / GET / HEAD: BleepStore and moto_server, one at a
time, each started fresh, driven by the same boto3 clients (``--procs`` processes with
``--threads`` threads each, one client per thread, SigV4 ``Authorization`` headers as
boto3 sends them over http: a signed payload hash on PUT). Prints ops/s, p50/p99 and the
server's CPU per operation (its whole process tree, from /proc).

    python bench/bench_signed.py [--secs 6] [--procs 2] [--threads 4] [--only bleepstore,moto]

boto3 itself costs ~1-2 ms of CPU per call, so on a 2-core machine the clients, not the
server, bound ops/s: the server CPU per operation is the figure to compare. A second
phase measures what the server itself can take: the same requests signed once by
botocore's signer (``Authorization`` header, signed payload hash, ``x-amz-date``) and
replayed by wrk (16 connections) — S3 accepts a header-signed request again for 15
minutes. PUT and GET only: wrk reads a HEAD answer's Content-Length as a body to wait for.
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
from benchlib import timed_threads, wrk_requests  # noqa: E402
from refs import Moto  # noqa: E402
from support.clients import boto3_client  # noqa: E402
from support.server import Server  # noqa: E402
from support.signing import sigv4_headers  # noqa: E402

SMALL = 4096
KEYS = 200
REPLAY_PUTS = 2000
REPLAY_CONNS = 16


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
    res = {"server": name, "op": op, "client": "boto3", "ops_s": n / secs, "requests": n,
           "p50_ms": 1000 * statistics.median(latencies),
           "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))],
           "cpu_ms_per_op": 1000 * used / max(n, 1), "wall_s": elapsed}
    log(f"  {name:10s} {op:4s} {res['ops_s']:7.1f} ops/s  p50 {res['p50_ms']:6.2f} ms  "
        f"p99 {res['p99_ms']:7.2f} ms  server cpu {res['cpu_ms_per_op']:.2f} ms/op")
    return res


def replay(name: str, endpoint: str, root_pid: int, op: str, secs: float, work: Path
           ) -> dict[str, Any]:
    """wrk replaying header-signed requests: the server's capacity, not boto3's."""
    host = endpoint.split("://", 1)[1]
    body = b"b" * SMALL if op == "PUT" else b""
    targets = ([f"/bench/replay/{i:05d}" for i in range(REPLAY_PUTS)] if op == "PUT"
               else [f"/bench/k{i:04d}" for i in range(KEYS)])
    requests = [(t, sigv4_headers(op, host, t, body)) for t in targets]
    pids = tree(root_pid)
    before = {pid: cpu_s(pid) for pid in pids}
    res = wrk_requests(endpoint, requests, op, len(body), REPLAY_CONNS, secs, work)
    used = sum(cpu_s(pid) - before[pid] for pid in pids)
    if res["errors"]:
        raise RuntimeError(f"{name} {op} replay errors: {res['errors_detail']}")
    res.update(server=name, op=op, client="wrk replay",
               cpu_ms_per_op=1000 * used / max(res["requests"], 1))
    log(f"  {name:10s} {op:4s} {res['ops_s']:7.1f} ops/s  p50 {res['p50_ms']:6.2f} ms  "
        f"p99 {res['p99_ms']:7.2f} ms  server cpu {res['cpu_ms_per_op']:.2f} ms/op (replay)")
    return res


def measure(name: str, endpoint: str, root_pid: int, args: argparse.Namespace, work: Path
            ) -> list[dict[str, Any]]:
    s3 = boto3_client(endpoint)
    s3.create_bucket(Bucket="bench")
    for i in range(KEYS):
        s3.put_object(Bucket="bench", Key=f"k{i:04d}", Body=b"g" * SMALL)
    ops = ("PUT", "GET", "HEAD")
    return ([run(name, endpoint, root_pid, op, args.procs, args.threads, args.secs)
             for op in ops]
            + [replay(name, endpoint, root_pid, op, args.secs, work) for op in ("PUT", "GET")])


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
                results += measure(name, srv.endpoint, srv.proc.pid, args, tmp)
            finally:
                srv.stop()
        elif name == "moto":
            moto = Moto(tmp / "moto").start()
            try:
                assert moto.proc is not None
                results += measure(name, moto.endpoint, moto.proc.pid, args, tmp)
            finally:
                moto.stop()
    print(f"boto3 clients: {args.procs} processes x {args.threads} threads; wrk replay: "
          f"{REPLAY_CONNS} connections; {args.secs:g} s per op, 4 KiB bodies, header-signed")
    print("| server | client | op | ops/s | p50 ms | p99 ms | server CPU ms/op |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['server']} | {r['client']} | {r['op']} | {r['ops_s']:,.0f} "
              f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['cpu_ms_per_op']:.2f} |")


if __name__ == "__main__":
    main()
