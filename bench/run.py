#!/usr/bin/env python3
"""BleepStore benchmark runner: one command, the figures of product.md §6.1 next to
references measured on the same machine in the same run (see bench/README.md).

    python bench/run.py [--quick] [--json out.json] [--no-profile]

Starts BleepStore the production way (gunicorn + the repo's gunicorn.conf.py, 2 workers x
8 threads, data dir in a temp dir under /tmp), nginx (static, sendfile) and moto_server,
all on 127.0.0.1, and stops them all. Outputs go to bench/out/ (gitignored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(BENCH))

from benchlib import (  # noqa: E402
    MB,
    MiB,
    RssSampler,
    ab,
    children,
    client_put_ceiling,
    ensure_tool,
    first_200,
    parallel,
    rss_bytes,
    stream_get,
    stream_put,
    wrk,
)
from presign import Presigner, check_against_boto3  # noqa: E402
from refs import Moto, StaticNginx, dd_fsync, python_write_fsync  # noqa: E402
from support.clients import boto3_client  # noqa: E402
from support.server import ACCESS_KEY, SECRET_KEY, Server  # noqa: E402
from support.signed import query_string, send  # noqa: E402

EATMYDATA = Path("/usr/lib/x86_64-linux-gnu/libeatmydata.so")
SMALL = 4096
LIST_KEYS = 10_000
GET_KEYS = 1000


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchServer(Server):
    """tests/support Server, with the Popen instant recorded for start-to-first-200."""

    start_s: float | None = None

    def start(self, timeout: float = 30.0) -> BenchServer:
        self.write_config()
        env = {**os.environ, "BLEEPSTORE_CONFIG": str(self.config_path), **self.env}
        logf = open(self.log_path, "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.command(), cwd=self.root, env=env, stdout=logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.start_s = first_200(self.port, "/healthz", t0, self.proc, timeout)
        return self


def worker_rss_after_settle(srv: Server, settle: float = 1.0) -> dict[int, int]:
    """Idle RSS of every worker once both have booted (first_200 hit only one)."""
    deadline = time.monotonic() + 10
    while len(children(srv.proc.pid)) < srv.workers and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(settle)
    return {pid: rss_bytes(pid) or 0 for pid in children(srv.proc.pid)}


def fmt(v: float | None, nd: int = 1) -> str:
    if v is None:
        return "-"
    return f"{v:,.{nd}f}"


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.secs = 2 if self.quick else 8
        self.big = (256 if self.quick else 1024) * MiB
        self.moto_big = (64 if self.quick else 256) * MiB
        self.repeats = 1 if self.quick else 2
        self.tmp = Path(tempfile.mkdtemp(prefix="bleepbench-", dir="/tmp"))
        self.work = self.tmp / "work"
        self.work.mkdir()
        self.procs: list[Any] = []
        self.r: dict[str, Any] = {"small": [], "big": {}, "refs": {}, "start_s": {},
                                  "rss_mb": {}, "listing": {}, "notes": []}

    # ------------------------------------------------------------ setup / refs
    def tools(self) -> None:
        ensure_tool("wrk", apt_package="wrk")
        ensure_tool("ab", apt_package="apache2-utils")
        ensure_tool("nginx", apt_package="nginx")
        ensure_tool("moto_server", pip_spec="moto[server]")
        if not EATMYDATA.exists():
            ensure_tool("eatmydata", apt_package="eatmydata")
        if not self.args.no_profile:
            try:
                ensure_tool("py-spy", pip_spec="py-spy")
            except SystemExit:
                self.r["notes"].append("py-spy unavailable: live profile skipped")

    def disk_refs(self) -> None:
        size = self.big
        log(f"disk references: Python write+fsync and dd conv=fsync, {size // MiB} MiB")
        self.src = self.tmp / "src.bin"
        py = [python_write_fsync(self.src, size)]
        for _ in range(self.repeats - 1):
            scratch = self.tmp / "scratch.bin"
            py.append(python_write_fsync(scratch, size))
            scratch.unlink()
        ddv = [dd_fsync(self.tmp / "dd.bin", size // MiB) for _ in range(self.repeats)]
        self.r["refs"]["python_write_fsync_MBps"] = {"best": max(py), "samples": py}
        self.r["refs"]["dd_fsync_MBps"] = {"best": max(ddv), "samples": ddv}
        ceiling = client_put_ceiling(self.src)
        self.r["refs"]["client_put_ceiling_MBps"] = {"best": ceiling, "samples": [ceiling]}
        self.moto_src = self.tmp / "moto-src.bin"
        python_write_fsync(self.moto_src, self.moto_big)

    # ------------------------------------------------------------ BleepStore
    def fresh_start(self) -> None:
        n = 3
        log(f"BleepStore: {n} fresh starts on empty data dirs (start-to-first-200, idle RSS)")
        starts, idle_first = [], None
        for i in range(n):
            srv = BenchServer(self.tmp / f"fresh-{i}")
            try:
                srv.start()
                if idle_first is None:
                    idle_first = worker_rss_after_settle(srv)
            finally:
                srv.stop()
            starts.append(srv.start_s)
            shutil.rmtree(srv.root, ignore_errors=True)
        self.r["start_s"]["bleepstore_fresh"] = statistics.median(starts)
        self.r["start_s"]["bleepstore_fresh_samples"] = starts
        self.r["rss_mb"]["idle_fresh_per_worker"] = [v / MB for v in (idle_first or {}).values()]

    def populate(self, root: Path) -> None:
        """Pre-create what GET/HEAD and the listing need, on a throwaway instance with
        fsync disabled (LD_PRELOAD libeatmydata): setup only, nothing timed here."""
        env = {"LD_PRELOAD": str(EATMYDATA)} if EATMYDATA.exists() else {
            "BLEEPSTORE_METADATA__SQLITE__SYNCHRONOUS": "NORMAL"}
        srv = BenchServer(root, env=env)
        log(f"populate: {LIST_KEYS} listing keys + {GET_KEYS} GET/HEAD objects "
            f"({'fsync off via eatmydata' if 'LD_PRELOAD' in env else 'sqlite NORMAL'})")
        try:
            srv.start()
            s3 = boto3_client(srv.endpoint)
            check_against_boto3(s3, srv.endpoint, ACCESS_KEY, SECRET_KEY)
            s3.create_bucket(Bucket="bench")
            s3.create_bucket(Bucket="list")
            p = Presigner(srv.endpoint, ACCESS_KEY, SECRET_KEY)
            body = b"g" * SMALL
            reqs = [("PUT", p.target("PUT", "list", f"dir{i % 10}/obj-{i:06d}"), b"l" * 64)
                    for i in range(LIST_KEYS)]
            reqs += [("PUT", p.target("PUT", "bench", f"get/{i:05d}"), body)
                     for i in range(GET_KEYS)]
            t0 = time.perf_counter()
            counts = parallel(srv.port, reqs, threads=16)
            if set(counts) != {200}:
                raise RuntimeError(f"populate PUT statuses: {counts}")
            log(f"populate: {len(reqs)} PUTs in {time.perf_counter() - t0:.1f} s")
        finally:
            srv.stop()
        os.sync()

    def bleepstore(self) -> None:
        root = self.tmp / "bleepstore"
        self.populate(root)
        srv = BenchServer(root)
        self.procs.append(srv)
        log("BleepStore: production start on the populated data dir")
        srv.start()
        self.r["start_s"]["bleepstore_restart_with_data"] = srv.start_s
        idle = worker_rss_after_settle(srv, settle=0.5)
        self.r["rss_mb"]["idle_bench_server_per_worker"] = [v / MB for v in idle.values()]
        sampler = RssSampler(srv.proc.pid)
        sampler.start()
        try:
            self._bleepstore_runs(srv, sampler)
            sampler.phase = "idle-after"
            time.sleep(1.0)
            after = {pid: rss_bytes(pid) or 0 for pid in children(srv.proc.pid)}
            self.r["rss_mb"]["idle_after_load_per_worker"] = [v / MB for v in after.values()]
        finally:
            sampler.stop()
            self.r["rss_mb"]["peak_per_worker"] = [v / MB for v in sampler.peak.values()]
            self.r["rss_mb"]["peak_by_phase"] = {k: v / MB for k, v in
                                                sampler.phase_peak.items()}
            self.r["rss_mb"]["samples"] = sampler.samples
            srv.stop()
            self.procs.remove(srv)

    def _small(self, server: str, base: str, p: Presigner, sampler: RssSampler | None
               ) -> None:
        def rec(res: dict[str, Any], **extra: Any) -> None:
            res.update(server=server, **extra)
            self.r["small"].append(res)
            log(f"  {server:10s} {res['method']:6s} {res['tool']:3s} c={res['conns']:<3d} "
                f"{res['ops_s']:9.1f} ops/s  p50 {fmt(res['p50_ms'], 2)} ms  "
                f"p99 {fmt(res['p99_ms'], 2)} ms  errors {res['errors']}")

        n_urls = 20_000 if self.quick else 60_000
        put_keys: dict[int, list[str]] = {}
        for c in (16, 64):
            if sampler:
                sampler.phase = f"PUT c{c}"
            put_keys[c] = [f"put{c}/{i:06d}" for i in range(n_urls)]
            res = wrk(base, [p.target("PUT", "bench", k) for k in put_keys[c]], "PUT", SMALL,
                      c, self.secs, self.work)
            res["distinct_keys_written"] = min(res["requests"], n_urls)
            rec(res)
        get_targets = [f"get/{i:05d}" for i in range(GET_KEYS)]
        for c in (16, 64):
            if sampler:
                sampler.phase = f"GET c{c}"
            rec(wrk(base, [p.target("GET", "bench", k) for k in get_targets], "GET", 0, c,
                    self.secs, self.work))
        for c in (16, 64):
            if sampler:
                sampler.phase = f"HEAD c{c}"
            rec(ab(p.url("HEAD", "bench", get_targets[0]), "HEAD", c, self.secs, self.work))
            if not self.quick:
                rec(ab(p.url("GET", "bench", get_targets[0]), "GET", c, self.secs, self.work),
                    note="ab calibration: same tool as HEAD")
        for c in (16, 64):
            if sampler:
                sampler.phase = f"DELETE c{c}"
            res = wrk(base, [p.target("DELETE", "bench", k) for k in put_keys[c]], "DELETE", 0,
                      c, self.secs, self.work)
            written = next(x["distinct_keys_written"] for x in self.r["small"]
                           if x["server"] == server and x["method"] == "PUT"
                           and x["conns"] == c)
            res["deletes_of_existing_objects"] = min(res["requests"], written)
            rec(res)

    def _bleepstore_runs(self, srv: Server, sampler: RssSampler) -> None:
        base = srv.endpoint
        p = Presigner(base, ACCESS_KEY, SECRET_KEY)
        log(f"BleepStore small objects: wrk {self.secs} s per run")
        self._small("bleepstore", base, p, sampler)

        if not self.args.no_profile and shutil.which("py-spy"):
            sampler.phase = "PUT c16 (profiled)"
            self._pyspy_put(srv, p)

        big = self.big
        label = f"{big // MiB} MiB"
        log(f"BleepStore large objects: {label} single-stream PUT/GET, multipart PUT")
        sampler.phase = "big PUT"
        puts = [stream_put(srv.port, p.target("PUT", "bench", f"big-{i}"), self.src)
                for i in range(self.repeats)]
        sampler.phase = "big GET"
        gets = [stream_get(srv.port, p.target("GET", "bench", f"big-{i % self.repeats}"), big)
                for i in range(self.repeats)]
        sampler.phase = "multipart PUT"
        from boto3.s3.transfer import TransferConfig
        s3 = boto3_client(base, max_pool_connections=16)
        tc = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=64 * MiB,
                            max_concurrency=8, use_threads=True)
        mps = []
        for i in range(self.repeats):
            t0 = time.perf_counter()
            s3.upload_file(str(self.src), "bench", f"multi-{i}", Config=tc)
            mps.append(big / (time.perf_counter() - t0) / MB)
        head = s3.head_object(Bucket="bench", Key="multi-0")
        if head["ContentLength"] != big:
            raise RuntimeError("multipart object has the wrong size")
        self.r["big"].update({
            "size_bytes": big,
            "single_put_MBps": {"best": max(puts), "samples": puts},
            "single_get_MBps": {"best": max(gets), "samples": gets},
            "multipart_put_MBps": {"best": max(mps), "samples": mps,
                                   "etag": head["ETag"]},
        })
        for key in [f"big-{i}" for i in range(self.repeats)] + \
                [f"multi-{i}" for i in range(self.repeats)]:
            s3.delete_object(Bucket="bench", Key=key)
        log(f"  PUT {fmt(max(puts))} MB/s  GET {fmt(max(gets))} MB/s  "
            f"multipart {fmt(max(mps))} MB/s")

        sampler.phase = "listing"
        self._listing(srv, s3)

    def _listing(self, srv: Server, s3: Any) -> None:
        log(f"ListObjectsV2 walk of {LIST_KEYS} keys, 1000 per page")
        walks = 5 if not self.quick else 3
        b3, raw, pages = [], [], 0
        pag = s3.get_paginator("list_objects_v2")
        for _ in range(walks):
            t0 = time.perf_counter()
            n = pages = 0
            for page in pag.paginate(Bucket="list", PaginationConfig={"PageSize": 1000}):
                n += page["KeyCount"]
                pages += 1
            b3.append((time.perf_counter() - t0) * 1000)
            if n != LIST_KEYS:
                raise RuntimeError(f"listing walked {n} keys, expected {LIST_KEYS}")
        for _ in range(walks):
            t0 = time.perf_counter()
            token, n = None, 0
            while True:
                q = {"list-type": "2", "max-keys": "1000"}
                if token:
                    q["continuation-token"] = token
                resp = send(srv.endpoint, "GET", "/list?" + query_string(q))
                if resp.status != 200:
                    raise RuntimeError(f"raw list -> {resp.status}")
                n += resp.body.count(b"<Key>")
                m = re.search(rb"<NextContinuationToken>([^<]+)<", resp.body)
                if not m:
                    break
                token = m.group(1).decode()
            raw.append((time.perf_counter() - t0) * 1000)
            if n != LIST_KEYS:
                raise RuntimeError(f"raw listing walked {n} keys")
        self.r["listing"] = {"keys": LIST_KEYS, "pages": pages,
                             "boto3_walk_ms": {"median": statistics.median(b3), "min": min(b3),
                                               "samples": b3},
                             "raw_http_walk_ms": {"median": statistics.median(raw),
                                                  "min": min(raw), "samples": raw}}
        log(f"  boto3 walk median {statistics.median(b3):.1f} ms, raw HTTP walk median "
            f"{statistics.median(raw):.1f} ms")

    def _pyspy_put(self, srv: Server, p: Presigner) -> None:
        """Extra PUT c16 run with py-spy attached to both workers (not used for targets):
        an SVG flame graph of one worker and raw collapsed stacks of the other."""
        workers = children(srv.proc.pid)
        if not workers:
            return
        dur = max(self.secs, 4)
        OUT.mkdir(parents=True, exist_ok=True)
        svg, raw = OUT / "profile-put.svg", OUT / "profile-put-raw.txt"
        spies = []
        for pid, out, fmt_ in ((workers[0], svg, "flamegraph"),
                               (workers[-1], raw, "raw")):
            spies.append(subprocess.Popen(
                ["py-spy", "record", "--pid", str(pid), "--duration", str(dur + 1),
                 "--rate", "200", "--nonblocking", "--format", fmt_, "--full-filenames",
                 "-o", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            if len(workers) == 1:
                break
        time.sleep(1.0)  # py-spy attach
        log("BleepStore PUT c16 under py-spy (profile only)")
        keys = [p.target("PUT", "bench", f"prof/{i:06d}") for i in range(40_000)]
        res = wrk(srv.endpoint, keys, "PUT", SMALL, 16, dur, self.work)
        errs = []
        for s in spies:
            try:
                _, err = s.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                s.kill()
                _, err = s.communicate()
            if s.returncode:
                errs.append(err.decode(errors="replace")[-300:])
        prof: dict[str, Any] = {"put_c16_under_pyspy_ops_s": res["ops_s"],
                                "svg": str(svg) if svg.exists() else None,
                                "raw": str(raw) if raw.exists() else None}
        if errs:
            prof["pyspy_errors"] = errs
        if raw.exists():
            from profile_put import summarize_pyspy
            text, data = summarize_pyspy(raw)
            prof.update(data)
            prof["text"] = text
        self.r["profile_pyspy"] = prof

    # ------------------------------------------------------------ references
    def nginx(self) -> None:
        log("nginx static reference")
        ng = StaticNginx(self.tmp / "nginx")
        self.procs.append(ng)
        try:
            ng.start()
            self.r["start_s"]["nginx"] = ng.start_s
            os.link(self.src, ng.www / "big.bin")
            (ng.www / "small.bin").write_bytes(b"s" * SMALL)
            gets = [stream_get(ng.port, "/big.bin", self.big) for _ in range(self.repeats)]
            self.r["refs"]["nginx_get_MBps"] = {"best": max(gets), "samples": gets}
            log(f"  nginx GET {fmt(max(gets))} MB/s")
            base = f"http://127.0.0.1:{ng.port}"
            for c in (16, 64):
                res = wrk(base, ["/small.bin"], "GET", 0, c, self.secs, self.work)
                res["server"] = "nginx"
                self.r["small"].append(res)
                log(f"  nginx      GET    wrk c={c:<3d} {res['ops_s']:9.1f} ops/s")
        finally:
            ng.stop()
            self.procs.remove(ng)

    def moto(self) -> None:
        log("moto_server peer reference")
        mo = Moto(self.tmp / "moto")
        self.procs.append(mo)
        try:
            mo.start()
            self.r["start_s"]["moto"] = mo.start_s
            p = Presigner(mo.endpoint, "bench", "bench")
            s3 = boto3_client(mo.endpoint, access_key="bench", secret_key="bench")
            s3.create_bucket(Bucket="bench")
            counts = parallel(mo.port, [("PUT", p.target("PUT", "bench", f"get/{i:05d}"),
                                         b"g" * SMALL) for i in range(GET_KEYS)], threads=16)
            if set(counts) != {200}:
                raise RuntimeError(f"moto populate statuses: {counts}")
            self._small("moto", mo.endpoint, p, None)
            self.r["refs"]["moto_rss_mb_after_small"] = (mo.rss() or 0) / MB
            size = self.moto_big
            puts = [stream_put(mo.port, p.target("PUT", "bench", f"big-{i}"), self.moto_src)
                    for i in range(self.repeats)]
            gets = [stream_get(mo.port, p.target("GET", "bench", f"big-{i}"), size)
                    for i in range(self.repeats)]
            self.r["refs"]["moto_big"] = {"size_bytes": size,
                                          "put_MBps": {"best": max(puts), "samples": puts},
                                          "get_MBps": {"best": max(gets), "samples": gets},
                                          "rss_mb_after": (mo.rss() or 0) / MB}
            log(f"  moto {size // MiB} MiB PUT {fmt(max(puts))} MB/s GET {fmt(max(gets))} MB/s")
        finally:
            mo.stop()
            self.procs.remove(mo)

    def cprofile(self) -> None:
        n = 300 if self.quick else 2000
        log(f"cProfile harness: {n} in-process presigned 4 KiB PUTs")
        out = subprocess.run([sys.executable, str(BENCH / "profile_put.py"), "--n", str(n),
                              "--out", str(OUT)], capture_output=True, text=True,
                             timeout=600, cwd=REPO)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("PROFJSON ")), None)
        if line is None:
            self.r["notes"].append(f"cProfile harness failed: {out.stderr[-500:]}")
            return
        data = json.loads(line[len("PROFJSON "):])
        data["text"] = out.stdout.split("\n", 1)[1]
        self.r["profile_cprofile"] = data

    # ------------------------------------------------------------ report
    def small(self, server: str, method: str, conns: int, tool: str | None = None
              ) -> dict[str, Any] | None:
        for x in self.r["small"]:
            if x["server"] == server and x["method"] == method and x["conns"] == conns and \
                    (tool is None or x["tool"] == tool) and "note" not in x:
                return x
        return None

    def targets(self) -> list[dict[str, Any]]:
        r, rows = self.r, []

        def add(name: str, measured: float | None, ref: float | None, goal: str,
                ok: bool | None, unit: str = "") -> None:
            rows.append({"target": name, "measured": measured, "reference": ref,
                         "goal": goal, "pass": ok, "unit": unit})

        for c in (16, 64):
            for method, factor in (("GET", 8), ("PUT", 3)):
                b, m = self.small("bleepstore", method, c), self.small("moto", method, c)
                if b and m:
                    ratio = b["ops_s"] / m["ops_s"]
                    add(f"4 KiB {method} c{c} vs moto", ratio, None, f">= {factor}x",
                        ratio >= factor, "x")
        big, refs = r["big"], r["refs"]
        if big and "nginx_get_MBps" in refs:
            ratio = big["single_get_MBps"]["best"] / refs["nginx_get_MBps"]["best"]
            add("1 GiB GET vs nginx sendfile", 100 * ratio, None, ">= 80%", ratio >= 0.8, "%")
        if big:
            ratio = big["single_put_MBps"]["best"] / refs["python_write_fsync_MBps"]["best"]
            add("1 GiB single PUT vs Python write+fsync", 100 * ratio, None, ">= 90%",
                ratio >= 0.9, "%")
            mp = big["multipart_put_MBps"]["best"]
            add("multipart 1 GiB PUT", mp, None, ">= 300 MB/s", mp >= 300, "MB/s")
        if r["listing"]:
            for kind in ("boto3_walk_ms", "raw_http_walk_ms"):
                v = r["listing"][kind]["median"]
                add(f"10k-key ListObjectsV2 walk ({kind.split('_walk')[0]}, median)", v, None,
                    "<= 150 ms", v <= 150, "ms")
        for kind in ("bleepstore_fresh", "bleepstore_restart_with_data"):
            v = r["start_s"].get(kind)
            if v is not None:
                add(f"start to first 200 ({kind.split('_', 1)[1]})", v, None, "<= 0.5 s",
                    v <= 0.5, "s")
        idle = r["rss_mb"].get("idle_fresh_per_worker")
        if idle:
            add("idle RSS per worker (max of workers, fresh)", max(idle), None, "<= 50 MB",
                max(idle) <= 50, "MB")
        return rows

    def report(self) -> str:
        r, L = self.r, []
        meta = r["meta"]
        L.append(f"BleepStore benchmark  {meta['when']}  mode={meta['mode']}  "
                 f"commit {meta['commit']}"
                 + ("  (+dirty: uncommitted changes under bleepstore/ were measured)"
                    if meta["commit"].endswith("+dirty") else ""))
        L.append(f"machine: {meta['cpus']} CPUs, {meta['mem_gb']:.0f} GB RAM, "
                 f"{meta['python']}; server: gunicorn gthread {meta['workers']} workers x "
                 f"{meta['threads']} threads; data dir on {meta['data_fs']}")
        L.append("client and servers share the machine's CPUs; MB = 10^6 bytes")
        la = meta.get("loadavg_1m", {})
        if la:
            L.append("1-min load average before/after each phase (other work on the machine "
                     "skews results): " + ", ".join(f"{k} {a:.1f}/{b:.1f}"
                                                     for k, (a, b) in la.items()))
        L.append("")
        L.append(f"Small objects (4 KiB), {self.secs} s per run; latency in ms")
        L.append(f"  {'server':10s} {'op':6s} {'tool':4s} {'conns':>5s} {'ops/s':>10s} "
                 f"{'p50':>8s} {'p99':>8s} {'errors':>7s}  note")
        for x in r["small"]:
            note = x.get("note", "")
            if "deletes_of_existing_objects" in x:
                note = f"{x['deletes_of_existing_objects']} of them deleted an existing object"
            L.append(f"  {x['server']:10s} {x['method']:6s} {x['tool']:4s} {x['conns']:5d} "
                     f"{x['ops_s']:10,.1f} {fmt(x['p50_ms'], 2):>8s} {fmt(x['p99_ms'], 2):>8s} "
                     f"{x['errors']:7d}  {note}")
        L.append("")
        big, refs = r["big"], r["refs"]
        L.append("Large objects, MB/s (best of samples; all samples in the JSON)")
        if big:
            sz = f"{big['size_bytes'] // MiB} MiB"
            for k, label in (("single_put_MBps", f"bleepstore {sz} single-stream PUT "
                              "(http.client, presigned)"),
                             ("single_get_MBps", f"bleepstore {sz} GET (1 MiB reads)"),
                             ("multipart_put_MBps", f"bleepstore {sz} multipart PUT "
                              "(boto3 64 MiB x 8)")):
                L.append(f"  {label:58s} {fmt(big[k]['best']):>9s}   "
                         f"[{', '.join(fmt(v) for v in big[k]['samples'])}]")
        sz = f"{self.big // MiB} MiB"
        for k, label in (("python_write_fsync_MBps", f"ref: Python write+fsync {sz}"),
                         ("dd_fsync_MBps", f"ref: dd bs=1M conv=fsync {sz}"),
                         ("nginx_get_MBps", f"ref: nginx static GET {sz} (sendfile)"),
                         ("client_put_ceiling_MBps",
                          f"ref: the PUT client into a discard socket {sz}")):
            if k in refs:
                L.append(f"  {label:58s} {fmt(refs[k]['best']):>9s}   "
                         f"[{', '.join(fmt(v) for v in refs[k]['samples'])}]")
        if "moto_big" in refs:
            mb = refs["moto_big"]
            msz = f"{mb['size_bytes'] // MiB} MiB"
            L.append(f"  {'ref: moto ' + msz + ' PUT (in-memory server; smaller size)':58s} "
                     f"{fmt(mb['put_MBps']['best']):>9s}")
            L.append(f"  {'ref: moto ' + msz + ' GET':58s} {fmt(mb['get_MBps']['best']):>9s}"
                     f"   (moto RSS after: {mb['rss_mb_after']:.0f} MB)")
        L.append("")
        if r["listing"]:
            li = r["listing"]
            L.append(f"ListObjectsV2, {li['keys']} keys, {li['pages']} pages of 1000, ms")
            for k, label in (("boto3_walk_ms", "boto3 paginator (incl. client XML parsing)"),
                             ("raw_http_walk_ms", "raw signed HTTP (server + transfer only)")):
                L.append(f"  {label:44s} median {li[k]['median']:8.1f}   min {li[k]['min']:8.1f}")
            L.append("")
        L.append("Start (Popen) to first 200, s")
        fresh = r["start_s"].get("bleepstore_fresh_samples") or []
        for k, label in (("bleepstore_fresh", "bleepstore, empty data dir (/healthz), median"
                          + (f" of {len(fresh)}: " + " ".join(f"{v:.3f}" for v in fresh)
                             if fresh else "")),
                         ("bleepstore_restart_with_data",
                          f"bleepstore, {LIST_KEYS + GET_KEYS} objects (/healthz)"),
                         ("moto", "moto_server (GET /)"), ("nginx", "nginx (static file)")):
            if r["start_s"].get(k) is not None:
                L.append(f"  {label:60s} {r['start_s'][k]:8.3f}")
        L.append("")
        rs = r["rss_mb"]
        L.append("RSS per gunicorn worker, MB (VmRSS)")

        def ws(v: list[float] | None) -> str:
            return ", ".join(f"{x:.1f}" for x in v) if v else "-"
        L.append(f"  idle after fresh start          {ws(rs.get('idle_fresh_per_worker'))}")
        L.append(f"  idle, bench server (pre-load)   {ws(rs.get('idle_bench_server_per_worker'))}")
        L.append(f"  peak during all runs            {ws(rs.get('peak_per_worker'))}")
        L.append(f"  idle after load                 {ws(rs.get('idle_after_load_per_worker'))}")
        if rs.get("peak_by_phase"):
            L.append("  peak by phase (max of workers): " + ", ".join(
                f"{k} {v:.0f}" for k, v in rs["peak_by_phase"].items()))
        if "moto_rss_mb_after_small" in refs:
            L.append(f"  ref: moto_server process after 4 KiB runs  "
                     f"{refs['moto_rss_mb_after_small']:.1f}")
        L.append("")
        L.append("Targets (product.md §6.1 / brief)")
        for t in r["targets"]:
            mark = "PASS" if t["pass"] else "FAIL"
            L.append(f"  {t['target']:52s} {fmt(t['measured'], 2):>10s} {t['unit']:5s} "
                     f"goal {t['goal']:12s} {mark}")
        for key, title in (("profile_pyspy", "Live profile (py-spy)"),
                           ("profile_cprofile", "In-process profile (cProfile)")):
            prof = r.get(key)
            if prof and prof.get("text"):
                L.append("")
                L.append(f"{title}:")
                if key == "profile_pyspy":
                    L.append(f"  (PUT c16 under py-spy: {prof['put_c16_under_pyspy_ops_s']:.1f}"
                             f" ops/s; flame graph {prof.get('svg')})")
                text = prof["text"]
                L.extend("  " + ln if not ln.startswith("  ") else ln
                         for ln in text.splitlines())
        if r["notes"]:
            L.append("")
            L.extend("note: " + n for n in r["notes"])
        return "\n".join(L)

    def meta(self) -> dict[str, Any]:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "bleepstore"],
                               capture_output=True, text=True).stdout.strip()
        fs = subprocess.run(["df", "--output=source,fstype", str(self.tmp)],
                            capture_output=True, text=True).stdout.split("\n")[1:2]
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
        return {"when": dt.datetime.now().isoformat(timespec="seconds"),
                "mode": "quick" if self.quick else "full", "commit": rev + ("+dirty" if dirty
                                                                          else ""),
                "cpus": os.cpu_count(), "mem_gb": mem, "python": platform.python_version(),
                "workers": 2, "threads": 8, "data_fs": " ".join(fs).strip(),
                "wrk_seconds": self.secs, "tmp": str(self.tmp), "loadavg_1m": {}}

    def run(self) -> None:
        t0 = time.monotonic()
        self.r["meta"] = self.meta()
        phases = [self.tools, self.disk_refs, self.fresh_start, self.bleepstore, self.nginx,
                  self.moto] + ([] if self.args.no_profile else [self.cprofile])
        try:
            for phase in phases:
                load_before = os.getloadavg()[0]
                try:
                    phase()
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # keep going: report what was measured
                    import traceback
                    log(f"phase {phase.__name__} failed: {exc!r}")
                    self.r["notes"].append(f"phase {phase.__name__} failed: {exc!r}\n"
                                           + traceback.format_exc(limit=3))
                    if phase in (self.tools, self.disk_refs):
                        raise
                self.r["meta"]["loadavg_1m"][phase.__name__] = [load_before,
                                                                os.getloadavg()[0]]
        finally:
            for p in list(self.procs):
                try:
                    p.stop()
                except Exception:
                    pass
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.r["targets"] = self.targets()
        self.r["meta"]["elapsed_s"] = time.monotonic() - t0
        text = self.report()
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "results.txt").write_text(text + "\n")
        payload = json.dumps(self.r, indent=2, default=str)
        (OUT / "results.json").write_text(payload + "\n")
        if self.args.json:
            Path(self.args.json).write_text(payload + "\n")
        print(text)
        print(f"\n(elapsed {self.r['meta']['elapsed_s']:.0f} s; JSON in "
              f"{self.args.json or OUT / 'results.json'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="2 s wrk runs, 256 MiB instead of 1 GiB, one sample each")
    ap.add_argument("--json", help="also write the JSON results here")
    ap.add_argument("--no-profile", action="store_true", help="skip py-spy and cProfile")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    Runner(args).run()


if __name__ == "__main__":
    main()
