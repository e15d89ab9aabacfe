#!/usr/bin/env python3
"""Where a small GET's CPU goes, layer by layer (docs/performance.md, "a ladder of request
costs"). Two measurements, each printed as a table:

1. **Server ladder**: the same wrk load (16 keep-alive connections, 2 workers x 8
   threads) sent to targets that stop at different depths — a 10-line WSGI app under the
   same gunicorn worker (the floor of the HTTP server), ``GET /healthz``, a presigned GET
   with a wrong signature, an anonymous GET of a private object, a presigned GET of a
   4 KiB object — with the access log on and off. Server CPU per request as in
   bench_small.py (user + system of the whole process tree / requests).
2. **In process**: the real ``create_app()`` called directly (no server, no socket) with
   presigned GET environs, from 1, 2 and 8 threads: CPU µs per GET
   (``time.process_time``). The gap between 1 thread and the server's figure is what
   running Python on several threads of one process costs (GIL hand-offs, switches).
   Run once on every CPU and once with the process pinned to one CPU, as a worker is
   with ``server.cpu_affinity: auto``.

    python bench/bench_ladder.py [--secs 6] [--threads 1,2,8] [--in-process-only]

A 2-core machine runs wrk and the server on the same cores: read ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))

from bench_small import cpu_s, log, tree  # noqa: E402
from benchlib import parallel, wrk  # noqa: E402
from presign import Presigner  # noqa: E402
from support.clients import boto3_client  # noqa: E402
from support.server import ACCESS_KEY, REPO, SECRET_KEY, Server  # noqa: E402

KEYS = [f"get/{i:04d}" for i in range(200)]
BODY = b"g" * 4096
TRIVIAL_APP = '''BODY = b"g" * 4096


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", "4096"), ("ETag", '"e"')])
    return [BODY]
'''


class TrivialServer(Server):
    """The same gunicorn settings and worker class, serving a 10-line WSGI app."""

    def command(self) -> list[str]:
        app_dir = self.root / "trivial"
        app_dir.mkdir(parents=True, exist_ok=True)
        (app_dir / "trivial_app.py").write_text(TRIVIAL_APP)
        return [sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py"),
                "--pythonpath", f"{REPO},{app_dir}", "trivial_app:app"]


def cpu_per_request(srv: Server, targets: list[str], secs: float, work: Path,
                    refused: bool = False) -> tuple[float, float]:
    """ops/s and server CPU ms per request; every answer must be a 2xx unless ``refused``
    (then every one is an error status, which wrk counts)."""
    assert srv.proc is not None
    deadline = time.monotonic() + 30
    while len(pids := tree(srv.proc.pid)) < 1 + srv.workers:  # every worker's CPU counts
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers never all started: {pids}")
        time.sleep(0.1)
    wrk(srv.endpoint, targets, "GET", 0, 16, 1, work)  # warm: every worker booted, spread
    before = {pid: cpu_s(pid) for pid in pids}
    res = wrk(srv.endpoint, targets, "GET", 0, 16, secs, work)
    used = sum(cpu_s(pid) - before[pid] for pid in pids)
    expected = res["requests"] if refused else 0
    if res["errors"] != expected or res["errors_detail"].get("err_status", 0) != expected:
        raise RuntimeError(f"wrk errors: {res['errors_detail']} of {res['requests']}")
    return res["ops_s"], 1000 * used / max(res["requests"], 1)


def populated(root: Path, extra: dict[str, Any]) -> tuple[Server, Presigner]:
    srv = Server(root, extra_config=extra).start()
    boto3_client(srv.endpoint).create_bucket(Bucket="bench")
    p = Presigner(srv.endpoint, ACCESS_KEY, SECRET_KEY)
    statuses = parallel(srv.port, [("PUT", p.target("PUT", "bench", k), BODY) for k in KEYS])
    if set(statuses) != {200}:
        raise RuntimeError(f"populate statuses: {statuses}")
    return srv, p


def server_ladder(work: Path, secs: float) -> list[tuple[str, float, float, float]]:
    rows: dict[str, list[float]] = {}
    trivial = TrivialServer(work / "trivial").start()
    try:
        rows["trivial WSGI app, same gunicorn worker"] = list(
            cpu_per_request(trivial, ["/x"], secs, work))
    finally:
        trivial.stop()
    for access_log in (True, False):
        srv, p = populated(work / f"log-{access_log}", {"logging": {"access_log": access_log}})
        try:
            targets = {
                "GET /healthz": ["/healthz"],
                "presigned GET, wrong signature (403)": [
                    p.target("GET", "bench", k)[:-4] + "0000" for k in KEYS],
                "anonymous GET, private object (403)": [f"/bench/{k}" for k in KEYS],
                "presigned GET, 4 KiB object": [p.target("GET", "bench", k) for k in KEYS],
            }
            for name, urls in targets.items():
                ops, cpu = cpu_per_request(srv, urls, secs, work, refused="403" in name)
                log(f"  {name} (access log {access_log}): {ops:.0f} ops/s, {cpu:.3f} ms")
                if access_log:
                    rows[name] = [ops, cpu]
                else:
                    rows[name].append(cpu)
        finally:
            srv.stop()
    return [(name, v[0], v[1], v[2] if len(v) > 2 else float("nan")) for name, v in
            rows.items()]


def in_process(work: Path, thread_counts: list[int], n: int = 2000
               ) -> list[tuple[int, float, float]]:
    """(threads, CPU µs per GET on every CPU, the same with the process on one CPU)."""
    from support.wsgiapp import ACCESS_KEY as KEY
    from support.wsgiapp import SECRET_KEY as SECRET
    from support.wsgiapp import make_config

    from bleepstore.app import create_app
    from bleepstore.logs import setup_logging
    from bleepstore.recovery import run_recovery

    cfg = make_config(work / "inproc")
    run_recovery(cfg)
    saved = sys.stderr
    sys.stderr = open("/dev/null", "w")  # the access log, as a server writes it to a file
    try:
        setup_logging(cfg)
        app = create_app(cfg, background=False)
        p = Presigner("http://localhost:9000", KEY, SECRET)

        def call(method: str, target: str, body: bytes = b"") -> str:
            path, _, query = target.partition("?")
            environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
                       "RAW_URI": target, "SERVER_NAME": "localhost", "SERVER_PORT": "9000",
                       "HTTP_HOST": "localhost:9000", "wsgi.input": io.BytesIO(body),
                       "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1",
                       "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.errors": sys.stderr,
                       "wsgi.version": (1, 0), "wsgi.multithread": True,
                       "wsgi.multiprocess": True, "wsgi.run_once": False}
            if body:
                environ["CONTENT_LENGTH"] = str(len(body))
            status: list[str] = []
            result = app(environ, lambda s, h, exc=None: status.append(s))
            for _ in result:
                pass
            result.close()
            return status[0]

        call("PUT", p.target("PUT", "bench"))
        for key in KEYS:
            assert call("PUT", p.target("PUT", "bench", key), BODY).startswith("200")
        gets = [p.target("GET", "bench", KEYS[i % len(KEYS)]) for i in range(n)]

        def run() -> None:
            for target in gets:
                call("GET", target)

        run()  # warm

        def per_get(count: int) -> float:
            threads = [threading.Thread(target=run) for _ in range(count)]
            started = time.process_time()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return (time.process_time() - started) / (n * count) * 1e6

        spread = [per_get(count) for count in thread_counts]
        cpus = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(cpus)})  # this thread's set: the new threads inherit it
        try:
            pinned = [per_get(count) for count in thread_counts]
        finally:
            os.sched_setaffinity(0, cpus)
        return list(zip(thread_counts, spread, pinned, strict=True))
    finally:
        sys.stderr.close()
        sys.stderr = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--secs", type=float, default=6)
    ap.add_argument("--threads", default="1,2,8")
    ap.add_argument("--in-process-only", action="store_true", help="skip the server ladder")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bleepbench-ladder-", dir="/tmp"))
    counts = [int(x) for x in args.threads.split(",")]
    if not args.in_process_only:
        ladder = server_ladder(work, args.secs)
        print("wrk -t2 -c16, 2 workers x 8 threads; server CPU per request")
        print("| target | ops/s | CPU ms/request | access log off |")
        print("|---|---|---|---|")
        for name, ops, cpu, off in ladder:
            print(f"| {name} | {ops:,.0f} | {cpu:.3f} | {off:.3f} |")
        print()
    print("In process (create_app called directly), presigned 4 KiB GET, CPU µs per GET")
    print("| threads | on every CPU | pinned to one CPU |")
    print("|---|---|---|")
    for count, spread, pinned in in_process(work, counts):
        print(f"| {count} | {spread:.0f} | {pinned:.0f} |")


if __name__ == "__main__":
    main()
