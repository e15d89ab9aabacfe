"""Orphaned blobs are collected by every start, with the default configuration (issue 9,
item 6; storage.md §5.5): a blob renamed into place whose commit never happened is
referenced by no row; the start holds the data-dir lock, so it deletes every such blob
whatever its age, and nothing else: referenced blobs keep their inode and bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support.clients import boto3_client
from support.server import Server

BUCKET = "orphans"


def blob_files(srv: Server) -> dict[str, tuple[int, str]]:
    """Every blob and part file: ref -> (inode, sha256)."""
    root = srv.data / "objects"
    found = {}
    for sub in ("blobs", "multipart"):
        for path in (root / sub).rglob("*"):
            if path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[str(path.relative_to(root))] = (path.stat().st_ino, digest)
    return found


def referenced(srv: Server) -> set[str]:
    """Refs named by a row (the server is down: read the database directly)."""
    with sqlite3.connect(f"file:{srv.db_path}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT data_ref FROM objects UNION SELECT data_ref FROM "
                            "multipart_parts UNION SELECT data_ref FROM blob_gc")
        return {r[0] for r in rows}


def last_recovery(srv: Server) -> dict[str, Any]:
    lines = [line for line in srv.log_text().splitlines() if '"recovery complete"' in line]
    return dict(json.loads(lines[-1]))


def plant(srv: Server, ref: str, age_s: float) -> None:
    """A blob file where a crash between rename and commit leaves one."""
    path = srv.data / "objects" / ref
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(4096))
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))


def test_every_start_collects_orphans_of_any_age_and_nothing_else(tmp_path: Path) -> None:
    srv = Server(tmp_path, workers=1, threads=2)
    srv.start()
    try:
        s3 = boto3_client(srv.endpoint)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="plain", Body=b"plain bytes")
        s3.copy_object(Bucket=BUCKET, Key="copy", CopySource=f"{BUCKET}/plain")
        uid = s3.create_multipart_upload(Bucket=BUCKET, Key="mpu")["UploadId"]
        part = os.urandom(5 * 1024 * 1024)
        etag = s3.upload_part(Bucket=BUCKET, Key="mpu", UploadId=uid, PartNumber=1,
                              Body=part)["ETag"]
        srv.kill9()
        kept = blob_files(srv)
        orphans = [f"blobs/{w[:2]}/{w[2:4]}/{w}" for w in
                   (secrets.token_hex(16) for _ in range(3))]
        plant(srv, orphans[0], 0)  # just renamed: younger than the run-time age guard
        plant(srv, orphans[1], 2 * 86400)
        plant(srv, orphans[2], -86400)  # the clock was stepped back since
        part_orphan = f"multipart/{uid}/00002-{secrets.token_hex(16)}"
        plant(srv, part_orphan, 0)  # a part of a live upload, never committed
        srv.start()  # the default configuration

        assert blob_files(srv) == kept
        counts = last_recovery(srv)
        assert (counts["orphans_removed"], counts["orphans_failed"]) == (4, 0), counts
        s3 = boto3_client(srv.endpoint)
        assert s3.get_object(Bucket=BUCKET, Key="copy")["Body"].read() == b"plain bytes"
        s3.complete_multipart_upload(Bucket=BUCKET, Key="mpu", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": etag}]})
        assert s3.get_object(Bucket=BUCKET, Key="mpu")["Body"].read() == part
    finally:
        srv.kill9()


class PutLoad:
    """Threads PUTting small objects until the server dies; records what was acked."""

    def __init__(self, endpoint: str, threads: int = 8) -> None:
        self.acked: dict[str, str] = {}
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(endpoint, i), daemon=True)
                         for i in range(threads)]

    def __enter__(self) -> PutLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for t in self._threads:
            t.join(30)

    def _run(self, endpoint: str, n: int) -> None:
        s3 = boto3_client(endpoint, max_attempts=0, connect_timeout=2, read_timeout=10)
        for i in range(100_000):
            key, body = f"t{n}-{i}-{secrets.token_hex(4)}", os.urandom(1024 + 97 * i % 8192)
            try:
                s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            except Exception:  # the server was killed: stop
                return
            with self._lock:
                self.acked[key] = hashlib.sha256(body).hexdigest()

    def count(self) -> int:
        with self._lock:
            return len(self.acked)


def wait_acks(load: PutLoad, at_least: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while load.count() < at_least:
        assert time.monotonic() < deadline, f"only {load.count()} PUTs acknowledged"
        time.sleep(0.01)


@contextmanager
def metadata_write_lock(db: Path) -> Iterator[None]:
    """Hold SQLite's write lock: every PUT then waits for its commit after its rename."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=10)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.close()


def test_kill9_under_put_load_then_restart_leaves_no_orphan(tmp_path: Path) -> None:
    # blob files only: the orphans this test makes are files renamed before their commit
    srv = Server(tmp_path, workers=2, threads=8,
                 extra_config={"storage": {"inline_max_bytes": 0}})
    srv.start()
    try:
        boto3_client(srv.endpoint).create_bucket(Bucket=BUCKET)
        with PutLoad(srv.endpoint) as load:
            wait_acks(load, 20)
            # NOTE: the lock only widens the rename-to-commit window (the kill would land
            # in it by chance otherwise): the kill and the orphans it leaves are real.
            with metadata_write_lock(srv.db_path):
                deadline = time.monotonic() + 4  # < busy_timeout: the PUTs still wait
                while len(set(blob_files(srv)) - referenced(srv)) < 4:
                    assert time.monotonic() < deadline, "no PUT reached its commit"
                    time.sleep(0.01)
                srv.kill9()
        before = blob_files(srv)
        orphans = set(before) - referenced(srv)
        srv.start()  # the default configuration

        assert blob_files(srv) == {r: v for r, v in before.items() if r not in orphans}
        assert last_recovery(srv)["orphans_removed"] == len(orphans)
        s3 = boto3_client(srv.endpoint)
        for key, digest in load.acked.items():  # no acknowledged write lost or damaged
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == digest, key
    finally:
        srv.kill9()


def inline_state(srv: Server) -> tuple[set[str], list[str]]:
    """(refs of the inline blobs, inline refs of object rows)."""
    with sqlite3.connect(srv.db_path) as db:
        blobs = {r[0] for r in db.execute("SELECT data_ref FROM inline_blobs")}
        rows = [r[0] for r in db.execute("SELECT data_ref FROM objects "
                                         "WHERE data_ref LIKE 'inline:%'")]
    return blobs, rows


def test_kill9_under_small_put_load_loses_nothing_and_strands_no_inline_blob(
        tmp_path: Path) -> None:
    """Small objects live in the database (storage/inline.py): the whole server is killed
    while 16 clients PUT, three times; every acknowledged object reads back intact, and
    every inline blob belongs to exactly one row (they commit or vanish together)."""
    srv = Server(tmp_path, workers=2, threads=8).start()
    try:
        boto3_client(srv.endpoint).create_bucket(Bucket=BUCKET)
        acked: dict[str, str] = {}
        for _ in range(3):
            with PutLoad(srv.endpoint) as load:
                wait_acks(load, 200)
                srv.kill9()
            acked.update(load.acked)
            srv.start()
        blobs, rows = inline_state(srv)
        assert len(rows) == len(set(rows)) and blobs == set(rows) and len(rows) >= 600
        assert blob_files(srv) == {}  # every body was small: not one file
        s3 = boto3_client(srv.endpoint)
        for key, digest in acked.items():
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == digest, key
    finally:
        srv.kill9()
