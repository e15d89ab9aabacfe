"""Concurrent writers, deleters and readers on the same few keys (storage.md §6), across
the workers of a dedicated 3-worker server: readers always see one complete version
(the bytes hash to the ETag header), and SQLite contention never surfaces as an error.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from support.clients import boto3_client
from support.server import Server

THREADS = 24
DURATION_S = 15.0
KEYS = [f"hot/{i}" for i in range(4)]


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("concurrency"), workers=3, threads=8)
    srv.start()
    yield srv
    srv.stop()


class Hammer:
    """Shared bookkeeping of the worker threads."""

    def __init__(self, endpoint: str, bucket: str) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self.written: dict[str, str] = {}  # ETag -> sha256 of every body ever sent
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.problems: list[str] = []

    def note(self, what: str, problem: str | None = None) -> None:
        with self.lock:
            self.counts[what] += 1
            if problem is not None and len(self.problems) < 50:
                self.problems.append(problem)

    def put(self, s3: Any, rng: random.Random) -> None:
        size = rng.randrange(0, 16) if rng.random() < 0.1 else rng.randrange(16, 300 * 1024)
        body = os.urandom(size)
        etag = f'"{hashlib.md5(body).hexdigest()}"'
        with self.lock:  # registered before sending: a GET may see it before the PUT returns
            self.written[etag] = hashlib.sha256(body).hexdigest()
        resp = s3.put_object(Bucket=self.bucket, Key=rng.choice(KEYS), Body=body)
        if resp["ETag"] != etag:
            self.note("bad_put", f"PUT answered {resp['ETag']} for {etag}")
        self.note("put")

    def get(self, s3: Any, rng: random.Random) -> None:
        try:
            resp = s3.get_object(Bucket=self.bucket, Key=rng.choice(KEYS))
        except botocore.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchKey":
                raise
            self.note("get_404")
            return
        body = resp["Body"].read()
        etag = resp["ETag"]
        with self.lock:
            sha = self.written.get(etag)
        if f'"{hashlib.md5(body).hexdigest()}"' != etag:
            self.note("torn_get", f"GET body does not hash to its ETag {etag}")
        elif sha != hashlib.sha256(body).hexdigest():
            self.note("torn_get", f"GET returned bytes nobody wrote under {etag}")
        else:
            self.note("get_ok")

    def copy(self, s3: Any, rng: random.Random) -> None:
        """CopyObject from a hot key: its source blob may be unlinked mid-request."""
        try:
            resp = s3.copy_object(Bucket=self.bucket, Key=f"copies/{rng.randrange(4)}",
                                  CopySource={"Bucket": self.bucket, "Key": rng.choice(KEYS)})
        except botocore.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchKey":
                raise
            self.note("copy_404")
            return
        etag = resp["CopyObjectResult"]["ETag"]
        with self.lock:
            known = etag in self.written
        self.note("copy" if known else "bad_copy", None if known else f"copy ETag {etag}")

    def delete(self, s3: Any, rng: random.Random) -> None:
        s3.delete_object(Bucket=self.bucket, Key=rng.choice(KEYS))
        self.note("delete")

    def run(self, seed: int, deadline: float) -> None:
        rng = random.Random(seed)
        s3 = boto3_client(self.endpoint, max_attempts=0, read_timeout=30)  # see every 5xx
        ops = [self.put, self.get, self.delete, self.copy]
        while time.monotonic() < deadline:
            op = rng.choices(ops, [4, 5, 1, 1])[0]
            try:
                op(s3, rng)
            except botocore.exceptions.ClientError as exc:
                err = exc.response["Error"]
                status = exc.response["ResponseMetadata"].get("HTTPStatusCode")
                self.note(f"error_{status}", f"{op.__name__}: {status} {err}")
            except Exception as exc:  # transport errors: no server is being killed here
                self.note("exception", f"{op.__name__}: {exc!r}")


def test_overwrite_delete_read_same_keys_across_workers(busy_server: Server) -> None:
    # NOTE: a bucket of its own: a rerun on the same module server must not read the
    # first run's objects (their bodies are not in this run's ``written``).
    bucket = "contended-" + uuid.uuid4().hex[:12]
    boto3_client(busy_server.endpoint).create_bucket(Bucket=bucket)
    hammer = Hammer(busy_server.endpoint, bucket)
    deadline = time.monotonic() + DURATION_S
    threads = [threading.Thread(target=hammer.run, args=(i, deadline)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DURATION_S + 120)
    served_by = len({pid for pid in busy_server.worker_pids()})
    print(f"\nconcurrency: threads={THREADS} workers={served_by} {dict(hammer.counts)} "
          f"versions_written={len(hammer.written)}")
    assert hammer.problems == []
    assert hammer.counts["get_ok"] > 100 and hammer.counts["put"] > 100
    log = busy_server.log_text()
    assert "database is locked" not in log
    assert "Traceback" not in log
    assert '"level": "ERROR"' not in log
    _assert_consistent(busy_server.db_path)


def _assert_consistent(db: Path) -> None:
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects").fetchone()
        stats = conn.execute("SELECT object_count, total_bytes FROM stats").fetchone()
        assert tuple(rows) == tuple(stats), "stats drifted under concurrency"
