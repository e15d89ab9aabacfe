#!/usr/bin/env python3
"""Small objects (4 KiB) side by side: BleepStore, moto_server and s3rver, one at a time,
each started fresh, driven by the same wrk runs over presigned URLs. Prints ops/s, p50/p99
and **server CPU per operation** (user + system time of the server's whole process tree,
read from /proc before and after each run), plus, for BleepStore, how the load spread
over the workers (CPU per worker and wrk's keep-alive connections per worker, from ss).

    python bench/bench_small.py [--secs 8] [--only bleepstore,moto,s3rver] [--json F]
                                [--config-json '{"server": {"threads": 4}}'] [--profile]

``--profile`` adds, for BleepStore, one PUT and one GET run at 16 connections with py-spy
sampling both workers (on-CPU threads, 250 Hz) and prints where the samples fall by area
(bench/profile_put.py's grouping); those runs' throughput is not reported (py-spy costs CPU).

A 2-core machine runs wrk and the server on the same cores: read ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))

from benchlib import MB, children, parallel, pss_bytes, rss_bytes, wrk  # noqa: E402
from presign import Presigner  # noqa: E402
from refs import Moto, S3rver, ensure_s3rver  # noqa: E402
from support.clients import boto3_client  # noqa: E402
from support.server import ACCESS_KEY, SECRET_KEY, Server  # noqa: E402

SMALL = 4096
GET_KEYS = 1000
TICK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_s(pid: int) -> float:
    """user + system seconds of one process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def tree(pid: int) -> list[int]:
    out = [pid]
    for c in children(pid):
        out.extend(tree(c))
    return out


def conns_per_pid(port: int) -> dict[int, int]:
    """Established connections on the server port, by the pid that owns each socket."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    counts: dict[int, int] = {}
    for pid in re.findall(r"pid=(\d+)", out):
        counts[int(pid)] = counts.get(int(pid), 0) + 1
    return counts


def run_load(name: str, port: int, root_pid: int, base: str, p: Presigner, method: str,
             keys: list[str], conns: int, secs: float, work: Path) -> dict[str, Any]:
    pids = tree(root_pid)
    before = {pid: cpu_s(pid) for pid in pids}
    placement: dict[int, int] = {}

    def sample_placement() -> None:  # mid-run, while wrk holds its connections open
        time.sleep(secs / 2)
        placement.update(conns_per_pid(port))

    import threading
    t = threading.Thread(target=sample_placement, daemon=True)
    t.start()
    res = wrk(base, [p.target(method, "bench", k) for k in keys], method,
              SMALL if method == "PUT" else 0, conns, secs, work)
    t.join()
    used = {pid: cpu_s(pid) - before[pid] for pid in pids}
    total = sum(used.values())
    res.update(server=name, cpu_ms_per_op=1000 * total / max(res["requests"], 1),
               cpu_s_by_pid=[round(used[pid], 2) for pid in pids],
               conns_by_pid=[placement.get(pid, 0) for pid in pids])
    log(f"  {name:10s} {method:4s} c={conns:<3d} {res['ops_s']:8.1f} ops/s  "
        f"p50 {res['p50_ms']:6.2f} ms  p99 {res['p99_ms']:7.2f} ms  "
        f"cpu {res['cpu_ms_per_op']:.2f} ms/op  errors {res['errors']}  "
        f"cpu by pid {res['cpu_s_by_pid']}  conns by pid {res['conns_by_pid']}")
    return res


def whole_rss_mb(root_pid: int) -> float:
    return sum(rss_bytes(pid) or 0 for pid in tree(root_pid)) / MB


def whole_pss_mb(root_pid: int) -> float:
    return sum(pss_bytes(pid) or 0 for pid in tree(root_pid)) / MB


def measure(name: str, port: int, root_pid: int, base: str, p: Presigner, secs: float,
            work: Path) -> dict[str, Any]:
    time.sleep(1.0)  # let workers finish booting before reading idle RSS
    out: dict[str, Any] = {"server": name, "idle_rss_mb": whole_rss_mb(root_pid),
                           "idle_rss_mb_by_pid": [round((rss_bytes(x) or 0) / MB, 1)
                                                  for x in tree(root_pid)],
                           "idle_pss_mb": whole_pss_mb(root_pid), "runs": []}
    log(f"{name}: idle RSS {out['idle_rss_mb']:.1f} MB {out['idle_rss_mb_by_pid']}, "
        f"PSS {out['idle_pss_mb']:.1f} MB")
    get_keys = [f"get/{i:05d}" for i in range(GET_KEYS)]
    statuses = parallel(port, [("PUT", p.target("PUT", "bench", k), b"g" * SMALL)
                               for k in get_keys], threads=16)
    if set(statuses) != {200}:
        raise RuntimeError(f"{name} populate statuses: {statuses}")
    for conns in (16, 64):
        keys = [f"put{conns}/{i:06d}" for i in range(60_000)]
        out["runs"].append(run_load(name, port, root_pid, base, p, "PUT", keys, conns, secs,
                                    work))
    for conns in (16, 64):
        out["runs"].append(run_load(name, port, root_pid, base, p, "GET", get_keys, conns,
                                    secs, work))
    out["rss_mb_after"] = whole_rss_mb(root_pid)
    return out


def profiled(srv: Server, p: Presigner, method: str, keys: list[str], secs: float,
             work: Path) -> str:
    """One wrk run at 16 connections with py-spy on every worker; the area summary."""
    from profile_put import summarize_pyspy

    raws = [work / f"spy-{method}-{pid}.txt" for pid in children(srv.proc.pid)]
    spies = [subprocess.Popen(["py-spy", "record", "--pid", raw.stem.rsplit("-", 1)[1],
                               "--duration", str(int(secs) + 1), "--rate", "250",
                               "--nonblocking", "--format", "raw", "--full-filenames",
                               "-o", str(raw)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for raw in raws]
    time.sleep(1.0)  # attach
    wrk(srv.endpoint, [p.target(method, "bench", k) for k in keys], method,
        SMALL if method == "PUT" else 0, 16, secs, work)
    for spy in spies:
        spy.wait(timeout=60)
    merged = work / f"spy-{method}.txt"
    merged.write_text("".join(r.read_text() for r in raws if r.exists()))
    text, _ = summarize_pyspy(merged)
    return text.replace("one gunicorn worker's threads", "both workers' threads") \
        .replace("during a 4 KiB PUT run", f"during a 4 KiB {method} run")


def bleepstore(tmp: Path, secs: float, extra: dict[str, Any], profile: bool
               ) -> dict[str, Any]:
    srv = Server(tmp / "bleepstore", extra_config=extra)
    srv.start()
    try:
        s3 = boto3_client(srv.endpoint)
        s3.create_bucket(Bucket="bench")
        p = Presigner(srv.endpoint, ACCESS_KEY, SECRET_KEY)
        out = measure("bleepstore", srv.port, srv.proc.pid, srv.endpoint, p, secs, tmp)
        if profile:
            out["profile"] = [
                profiled(srv, p, "PUT", [f"prof/{i:06d}" for i in range(60_000)], secs, tmp),
                profiled(srv, p, "GET", [f"get/{i:05d}" for i in range(GET_KEYS)], secs, tmp)]
        return out
    finally:
        srv.stop()


def moto(tmp: Path, secs: float) -> dict[str, Any]:
    mo = Moto(tmp / "moto").start()
    try:
        boto3_client(mo.endpoint, access_key="bench", secret_key="bench").create_bucket(
            Bucket="bench")
        p = Presigner(mo.endpoint, "bench", "bench")
        return measure("moto", mo.port, mo.proc.pid, mo.endpoint, p, secs, tmp)
    finally:
        mo.stop()


def s3rver(tmp: Path, secs: float) -> dict[str, Any]:
    srv = S3rver(tmp / "s3rver", ensure_s3rver(BENCH / "out" / "node")).start()
    try:
        p = Presigner(srv.endpoint, srv.access_key, srv.secret_key)
        return measure("s3rver", srv.port, srv.proc.pid, srv.endpoint, p, secs, tmp)
    finally:
        srv.stop()


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| server | op | conns | ops/s | p50 ms | p99 ms | server CPU ms/op | errors |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for x in r["runs"]:
            lines.append(f"| {r['server']} | {x['method']} | {x['conns']} | {x['ops_s']:,.0f} "
                         f"| {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['cpu_ms_per_op']:.2f} "
                         f"| {x['errors']} |")
    lines.append("")
    lines.append("| server | idle RSS, whole server (MB) | per process | idle PSS (MB) "
                 "| RSS after load |")
    lines.append("|---|---|---|---|---|")
    for r in results:
        lines.append(f"| {r['server']} | {r['idle_rss_mb']:.1f} | {r['idle_rss_mb_by_pid']} "
                     f"| {r['idle_pss_mb']:.1f} | {r['rss_mb_after']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--secs", type=float, default=8)
    ap.add_argument("--only", default="bleepstore,moto,s3rver")
    ap.add_argument("--json")
    ap.add_argument("--profile", action="store_true",
                    help="also profile BleepStore's workers with py-spy (PUT and GET)")
    ap.add_argument("--config-json", default="{}",
                    help="extra BleepStore config sections (JSON), e.g. worker/thread counts")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bleepbench-small-", dir="/tmp"))
    results = []
    for name in args.only.split(","):
        log(f"{name}: start fresh")
        if name == "bleepstore":
            results.append(bleepstore(tmp, args.secs, json.loads(args.config_json),
                                      args.profile))
        elif name == "moto":
            results.append(moto(tmp, args.secs))
        elif name == "s3rver":
            results.append(s3rver(tmp, args.secs))
        else:
            raise SystemExit(f"unknown server {name}")
    subprocess.run(["rm", "-rf", str(tmp)])
    print(f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs; wrk -t2 "
          f"{args.secs:g} s per run; 4 KiB bodies; presigned URLs")
    print(table(results))
    for r in results:
        for text in r.get("profile", []):
            print("\n" + text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
