"""Shared pieces of ``bench/run.py``: load generators (wrk, ab), raw HTTP helpers, the
per-worker RSS sampler and start-to-first-200 timing. Loopback only."""

from __future__ import annotations

import csv
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
WRK_SCRIPT = BENCH / "wrk_urls.lua"
MiB = 1024 * 1024
MB = 1_000_000


def ensure_tool(exe: str, apt_package: str | None = None, pip_spec: str | None = None) -> str:
    """Path of ``exe``, installing it with apt-get or pip (ordinary clients) if missing."""
    found = shutil.which(exe)
    if found:
        return found
    if apt_package:
        subprocess.run(["apt-get", "install", "-y", apt_package], check=False,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    elif pip_spec:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", pip_spec], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    found = shutil.which(exe)
    if not found:
        raise SystemExit(f"bench: {exe} is missing and could not be installed")
    return found


# ---------------------------------------------------------------- start to first 200

def first_200(port: int, path: str, t0: float, proc: subprocess.Popen[Any] | None,
              timeout: float = 30.0) -> float:
    """Poll ``GET path`` every ~2 ms until it answers 200; seconds since ``t0``."""
    deadline = t0 + timeout
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before answering")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(req)
                head = s.recv(64)
                if head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.002)
    raise TimeoutError(f"no 200 from :{port}{path} within {timeout}s")


# ---------------------------------------------------------------- raw HTTP

class ConnPool:
    """Thread-local keep-alive connections to one loopback port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()

    def request(self, method: str, target: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        for attempt in (0, 1):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                                    timeout=60)
            try:
                hdrs = dict(headers or {})
                if body is not None:
                    hdrs["Content-Length"] = str(len(body))
                conn.request(method, target, body=body, headers=hdrs)
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def parallel(port: int, requests: Sequence[tuple[str, str, bytes | None]], threads: int = 16
             ) -> dict[int, int]:
    """Send ``(method, target, body)`` requests over ``threads`` keep-alive connections;
    returns a histogram of status codes."""
    pool = ConnPool(port)
    counts: dict[int, int] = {}
    lock = threading.Lock()

    def one(r: tuple[str, str, bytes | None]) -> None:
        status, _ = pool.request(*r)
        with lock:
            counts[status] = counts.get(status, 0) + 1

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, requests))
    return counts


def stream_put(port: int, target: str, path: Path) -> float:
    """PUT a file with http.client (1 MiB send blocks); MB/s over the whole request."""
    size = path.stat().st_size
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600, blocksize=MiB)
    try:
        with path.open("rb") as f:
            t0 = time.perf_counter()
            conn.request("PUT", target, body=f, headers={"Content-Length": str(size)})
            resp = conn.getresponse()
            resp.read()
            dt = time.perf_counter() - t0
        if resp.status != 200:
            raise RuntimeError(f"PUT {size} bytes -> {resp.status}")
        return size / dt / MB
    finally:
        conn.close()


def stream_get(port: int, target: str, expect: int) -> float:
    """GET and discard in 1 MiB chunks; MB/s from request to last byte."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    buf = bytearray(MiB)
    view = memoryview(buf)
    try:
        t0 = time.perf_counter()
        conn.request("GET", target)
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"GET -> {resp.status}")
        got = 0
        while n := resp.readinto(view):
            got += n
        dt = time.perf_counter() - t0
        if got != expect:
            raise RuntimeError(f"GET returned {got} bytes, expected {expect}")
        return got / dt / MB
    finally:
        conn.close()


# ---------------------------------------------------------------- load generators

def wrk(base_url: str, targets: list[str], method: str, body_size: int, conns: int,
        seconds: float, workdir: Path, threads: int = 2) -> dict[str, Any]:
    """One wrk run cycling over ``targets``; ops/s and latency percentiles (ms)."""
    return wrk_requests(base_url, [(t, {}) for t in targets], method, body_size, conns,
                        seconds, workdir, threads)


def wrk_requests(base_url: str, requests: list[tuple[str, dict[str, str]]], method: str,
                 body_size: int, conns: int, seconds: float, workdir: Path, threads: int = 2
                 ) -> dict[str, Any]:
    """One wrk run replaying complete requests (target + headers, e.g. header-signed as
    boto3 signs them) round-robin; every body is ``body_size`` bytes of ``b``."""
    if len(requests) < threads:
        requests = requests * threads
    lines = workdir / f"wrk-{method}-{conns}.txt"
    lines.write_text("".join(
        "\t".join([target, *(f"{k}: {v}" for k, v in headers.items())]) + "\n"
        for target, headers in requests))
    try:
        return _run_wrk(base_url, lines, method, body_size, conns, seconds, threads)
    finally:
        lines.unlink()


def _run_wrk(base_url: str, lines: Path, method: str, body_size: int, conns: int,
             seconds: float, threads: int) -> dict[str, Any]:
    env = {**os.environ, "BENCH_URLS": str(lines), "BENCH_METHOD": method,
           "BENCH_BODY": str(body_size), "BENCH_THREADS": str(threads)}
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds:g}s", "--latency", "--timeout", "10s",
           "-s", str(WRK_SCRIPT), base_url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    r = json.loads(line[len("BENCHJSON "):])
    errors = sum(v for k, v in r.items() if k.startswith("err_"))
    return {"tool": "wrk", "method": method, "conns": conns,
            "ops_s": r["requests"] / (r["duration_us"] / 1e6),
            "p50_ms": r["p50_us"] / 1000, "p90_ms": r["p90_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000, "max_ms": r["max_us"] / 1000,
            "requests": r["requests"], "errors": errors,
            "errors_detail": {k: v for k, v in r.items() if k.startswith("err_") and v}}


def ab(url: str, method: str, conns: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """ApacheBench keep-alive run (used for HEAD: wrk 4.1 waits for a body after a HEAD
    response that carries Content-Length and stalls)."""
    pct = workdir / f"ab-{method}-{conns}.csv"
    cmd = ["ab", "-k", "-q", "-c", str(conns), "-t", str(seconds), "-n", "10000000",
           "-s", "10", "-e", str(pct)]
    if method == "HEAD":
        cmd.append("-i")
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 60)
    text = out.stdout
    m = re.search(r"Requests per second:\s+([\d.]+)", text)
    if not m:
        raise RuntimeError(f"ab failed: {text}\n{out.stderr}")
    done = int(re.search(r"Complete requests:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
    failed = int(re.search(r"Failed requests:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", text)
    percent: dict[int, float] = {}
    with pct.open() as f:
        for row in csv.reader(f):
            if row and row[0].isdigit():
                percent[int(row[0])] = float(row[1])
    pct.unlink()
    return {"tool": "ab", "method": method, "conns": conns, "ops_s": float(m.group(1)),
            "p50_ms": percent.get(50), "p90_ms": percent.get(90), "p99_ms": percent.get(99),
            "max_ms": percent.get(100), "requests": done,
            "errors": failed + (int(non2xx.group(1)) if non2xx else 0)}


# ---------------------------------------------------------------- RSS

def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(p) for p in text.split()]
    except OSError:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]


def _proc_kib(path: str, field: str) -> int | None:
    """A ``Name:  N kB`` line of a /proc file, in bytes; None if absent or gone."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def rss_bytes(pid: int) -> int | None:
    return _proc_kib(f"/proc/{pid}/status", "VmRSS:")


def pss_bytes(pid: int) -> int | None:
    """Proportional set size: shared pages divided among the processes that map them (a
    pre-forked server's honest total; RSS counts the shared pages once per process)."""
    return _proc_kib(f"/proc/{pid}/smaps_rollup", "Pss:")


def timed_threads(threads: int, seconds: float,
                  make_call: Callable[[int], Callable[[int], Any]]) -> list[float]:
    """``threads`` threads, each calling ``make_call(thread_no)(i)`` for i = 0, 1, ...
    until ``seconds`` pass; every call's latency in seconds."""
    took: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run(n: int) -> None:
        call, mine, i = make_call(n), [], 0
        while time.monotonic() < stop:
            began = time.perf_counter()
            call(i)
            mine.append(time.perf_counter() - began)
            i += 1
        with lock:
            took.extend(mine)

    pool = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return took


class RssSampler(threading.Thread):
    """Samples VmRSS of the master's children every ``interval`` s; peaks per phase."""

    def __init__(self, master_pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.master_pid = master_pid
        self.interval = interval
        self.stop_event = threading.Event()
        self.phase = "idle"
        self.peak: dict[int, int] = {}
        self.phase_peak: dict[str, int] = {}
        self.samples = 0

    def sample(self) -> dict[int, int]:
        now = {}
        for pid in children(self.master_pid):
            rss = rss_bytes(pid)
            if rss is not None:
                now[pid] = rss
                self.peak[pid] = max(self.peak.get(pid, 0), rss)
                self.phase_peak[self.phase] = max(self.phase_peak.get(self.phase, 0), rss)
        self.samples += 1
        return now

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)


def client_put_ceiling(path: Path) -> float:
    """The PUT client itself (``stream_put``) into a loopback socket that discards: an
    upper bound for any server's single-stream PUT figure on this machine."""
    size = path.stat().st_size
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]

    def sink() -> None:
        conn, _ = lsock.accept()
        with conn:
            buf = bytearray(MiB)
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            got = len(head.split(b"\r\n\r\n", 1)[1])
            while got < size:
                n = conn.recv_into(buf)
                if not n:
                    return
                got += n
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    t = threading.Thread(target=sink, daemon=True)
    t.start()
    try:
        return stream_put(port, "/sink", path)
    finally:
        t.join(timeout=30)
        lsock.close()
