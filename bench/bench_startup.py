#!/usr/bin/env python3
"""Startup benchmark: wall time from ``Popen`` of gunicorn to the first 200 from /healthz,
with a data directory holding N objects (product.md §6.1 target: < 1 s in embedded mode).

The data dir is filled directly, not through S3: one bucket, N ``objects`` rows written
with ``executemany`` in batches (stats kept in step) and N tiny blob files in the
``blobs/ab/cd/<w>`` fan-out, so recovery walks a realistic tree. Each run SIGKILLs the
whole server afterwards, so every start is a crash recovery. Prints a table and one JSON
line. Not part of the test suite.

    python bench/bench_startup.py [--objects 100000] [--runs 5] [--workers 2] [--reconcile]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.server import Server  # noqa: E402

from bleepstore.metadata.commands import CreateBucket  # noqa: E402
from bleepstore.metadata.rows import OBJECT_COLS, cols, placeholders  # noqa: E402
from bleepstore.metadata.sqlite import SqliteStore  # noqa: E402
from bleepstore.model import Bucket  # noqa: E402
from bleepstore.s3.acl import owner_id_for  # noqa: E402
from bleepstore.s3.headers import now_iso  # noqa: E402

BATCH = 10_000


def _object_row(key: str, ref: str, now: str) -> tuple[Any, ...]:
    values: dict[str, Any] = {
        "bucket": "bench", "key": key, "size": 5, "etag": '"5a105e8b9d40e1329780d62ea2265d8a"',
        "content_type": "application/octet-stream", "storage_class": "STANDARD", "acl": "{}",
        "user_metadata": "{}", "last_modified": now, "delete_marker": 0, "data_ref": ref}
    return tuple(values.get(c) for c in OBJECT_COLS)


def fill(server: Server, count: int) -> float:
    """Metadata rows + blob files for ``count`` objects; returns seconds spent."""
    start = time.perf_counter()
    store = SqliteStore(server.db_path)
    store.migrate()
    owner = owner_id_for("bleepstore")
    store.apply(CreateBucket(Bucket("bench", "us-east-1", owner, "bleepstore", "{}", now_iso()),
                             max_buckets=100, allow_existing_own=True))
    blobs = server.data / "objects" / "blobs"
    now = now_iso()
    sql = f"INSERT INTO objects ({cols(OBJECT_COLS)}) VALUES ({placeholders(OBJECT_COLS)})"
    conn = store.conn()
    for first in range(0, count, BATCH):
        rows = []
        for i in range(first, min(count, first + BATCH)):
            w = secrets.token_hex(16)
            folder = blobs / w[:2] / w[2:4]
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            (folder / w).write_bytes(b"hello")
            rows.append(_object_row(f"dir{i % 100:02d}/obj{i:07d}", f"blobs/{w[:2]}/{w[2:4]}/{w}",
                                    now))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows)
        conn.execute("UPDATE stats SET object_count = object_count + ?, "
                     "total_bytes = total_bytes + ? WHERE id = 1", (len(rows), 5 * len(rows)))
        conn.execute("COMMIT")
    store.checkpoint()
    store.close()
    return time.perf_counter() - start


def time_to_healthz(server: Server, timeout: float = 60.0) -> float:
    """Popen of gunicorn -> first 200 from /healthz, in seconds; then SIGKILL everything."""
    server.write_config()
    env = {**os.environ, "BLEEPSTORE_CONFIG": str(server.config_path), **server.env}
    url = f"{server.endpoint}/healthz"
    with open(server.log_path, "ab") as log:
        start = time.perf_counter()
        server.proc = subprocess.Popen(server.command(), cwd=server.root, env=env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while True:
                if time.perf_counter() - start > timeout or server.proc.poll() is not None:
                    raise SystemExit(f"server did not become healthy; see {server.log_path}")
                try:
                    with urllib.request.urlopen(url, timeout=2) as resp:
                        if resp.status == 200:
                            return time.perf_counter() - start
                except OSError:
                    time.sleep(0.005)
        finally:
            server.kill9()


def recovery_seconds(server: Server) -> list[float]:
    """Time between the master's first log line and its 'recovery complete' line, per run."""
    out, first = [], None
    for line in server.log_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        ts = time.mktime(time.strptime(rec["ts"][:19], "%Y-%m-%dT%H:%M:%S")) + float(
            "0." + rec["ts"][20:23])
        if rec.get("logger") == "gunicorn.error" and "Starting gunicorn" in rec.get("msg", ""):
            first = ts
        if rec.get("msg") == "recovery complete" and first is not None:
            out.append(round(ts - first, 3))
            first = None
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bleepbench-startup-") as tmp:
        extra = {"storage": {"reconcile_on_startup": True}} if args.reconcile else {}
        server = Server(Path(tmp) / "server", workers=args.workers, extra_config=extra)
        server.write_config()
        fill_s = fill(server, args.objects)
        times = [time_to_healthz(server) for _ in range(args.runs)]
        recovery = recovery_seconds(server)
    return {"objects": args.objects, "workers": args.workers, "runs": args.runs,
            "reconcile_on_startup": args.reconcile, "fill_s": round(fill_s, 1),
            "min_s": round(min(times), 3), "median_s": round(statistics.median(times), 3),
            "max_s": round(max(times), 3), "all_s": [round(t, 3) for t in times],
            "gunicorn_start_to_recovery_complete_s": recovery}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reconcile", action="store_true",
                        help="start with storage.reconcile_on_startup: true")
    result = run(parser.parse_args())
    print(f"BleepStore startup, {result['objects']} objects, {result['workers']} workers, "
          f"reconcile_on_startup={result['reconcile_on_startup']} "
          f"(filled in {result['fill_s']} s)")
    print(f"  Popen -> first 200 /healthz: min {result['min_s']} s, median "
          f"{result['median_s']} s, max {result['max_s']} s  ({result['runs']} runs)")
    print(f"  gunicorn start -> 'recovery complete': "
          f"{result['gunicorn_start_to_recovery_complete_s']} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
