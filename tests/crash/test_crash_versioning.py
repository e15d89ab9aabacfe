"""Crash-only versioning: SIGKILL the whole gunicorn group while threads overwrite a few
keys of a versioning-enabled bucket, add delete markers and delete their own versions
permanently; restart on the same data dir and check that

- every acknowledged version (200 + x-amz-version-id) is listed by ListObjectVersions and
  GetObject(VersionId) returns exactly its bytes, unless its permanent delete was attempted;
- every acknowledged permanent delete stays done; every acknowledged delete marker is listed;
- nothing is half-visible: every listed version reads back whole (length = Size,
  MD5 = ETag) with bytes some PUT of that key really sent; each key has one IsLatest,
  the greatest id, and a plain GET answers from it;
- version ids stay unique and keep sorting by recency across the restart.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import botocore.exceptions
from support.clients import boto3_client
from support.server import Server

BUCKET = "crash-versions"
KEYS = ["doc", "dir/a", "dir/b", "z"]
THREADS = 8


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


class VersionedLoad:
    """Threads writing until the server dies; a ledger of what was sent and acknowledged."""

    def __init__(self, endpoint: str, threads: int = THREADS) -> None:
        self.lock = threading.Lock()
        self.killing = threading.Event()
        self.sent: dict[str, set[str]] = defaultdict(set)  # key -> sha256 of every PUT body
        self.versions: dict[str, tuple[str, str, int, str]] = {}  # id -> key, sha, size, etag
        self.markers: dict[str, str] = {}  # acknowledged delete marker id -> key
        self.purge_tried: set[str] = set()  # permanent deletes sent (maybe not applied)
        self.purged: set[str] = set()  # permanent deletes acknowledged
        self.unexpected: list[str] = []  # failures before the kill
        self._threads = [threading.Thread(target=self._run, args=(endpoint, n), daemon=True)
                         for n in range(threads)]

    def __enter__(self) -> VersionedLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for t in self._threads:
            t.join(30)

    def counts(self) -> tuple[int, int, int]:
        with self.lock:
            return len(self.versions), len(self.markers), len(self.purged)

    def _run(self, endpoint: str, n: int) -> None:
        s3 = boto3_client(endpoint, max_attempts=0, connect_timeout=2, read_timeout=10)
        rng = random.Random(n)
        mine: list[tuple[str, str]] = []  # (key, id) of this thread's live versions
        for step in range(1_000_000):
            try:
                roll = rng.random()
                if roll < 0.1 and mine:
                    self._purge(s3, mine.pop(rng.randrange(len(mine))))
                elif roll < 0.3:
                    self._mark(s3, rng.choice(KEYS))
                else:
                    mine.append(self._put(s3, rng.choice(KEYS), rng, n, step))
            except Exception as exc:  # the server was killed: stop
                if isinstance(exc, AssertionError) or not self.killing.is_set():
                    with self.lock:
                        self.unexpected.append(f"thread {n} step {step}: {exc!r}")
                return

    def _put(self, s3: Any, key: str, rng: random.Random, n: int,
             step: int) -> tuple[str, str]:
        body = f"{n}:{step}:".encode() + rng.randbytes(rng.choice([0, 100, 5000, 70_000]))
        sha = hashlib.sha256(body).hexdigest()
        with self.lock:
            self.sent[key].add(sha)
        put = s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        vid = put["VersionId"]
        assert vid and vid != "null" and put["ETag"] == md5_etag(body), put
        with self.lock:
            assert vid not in self.versions and vid not in self.markers, vid
            self.versions[vid] = (key, sha, len(body), md5_etag(body))
        return key, vid

    def _mark(self, s3: Any, key: str) -> None:
        gone = s3.delete_object(Bucket=BUCKET, Key=key)
        vid = gone["VersionId"]
        assert gone["DeleteMarker"] is True and vid and vid != "null", gone
        with self.lock:
            assert vid not in self.versions and vid not in self.markers, vid
            self.markers[vid] = key

    def _purge(self, s3: Any, target: tuple[str, str]) -> None:
        key, vid = target
        with self.lock:
            self.purge_tried.add(vid)
        gone = s3.delete_object(Bucket=BUCKET, Key=key, VersionId=vid)
        assert gone["VersionId"] == vid and not gone.get("DeleteMarker"), gone
        with self.lock:
            self.purged.add(vid)


def wait_for(load: VersionedLoad, versions: int, markers: int, purged: int,
             timeout: float = 25.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = load.counts()
        if got[0] >= versions and got[1] >= markers and got[2] >= purged:
            return
        assert not load.unexpected, load.unexpected[:5]
        assert time.monotonic() < deadline, f"only {got} acknowledged"
        time.sleep(0.01)


def list_everything(s3: Any) -> tuple[list[Any], list[Any]]:
    versions: list[Any] = []
    markers: list[Any] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
        versions += page.get("Versions", [])
        markers += page.get("DeleteMarkers", [])
    return versions, markers


def check_acknowledged(load: VersionedLoad, versions: list[Any], markers: list[Any]) -> None:
    listed = {v["VersionId"]: v for v in versions}
    for vid, (key, _, size, etag) in load.versions.items():
        if vid in load.purged:
            assert vid not in listed, f"acknowledged permanent delete of {vid} undone"
        elif vid not in listed:
            assert vid in load.purge_tried, f"acknowledged version {key}@{vid} lost"
        else:
            v = listed[vid]
            assert (v["Key"], v["Size"], v["ETag"]) == (key, size, etag), (vid, v)
    listed_markers = {m["VersionId"]: m["Key"] for m in markers}
    for vid, key in load.markers.items():
        assert listed_markers.get(vid) == key, f"acknowledged delete marker {key}@{vid} lost"


def check_readable(s3: Any, load: VersionedLoad, versions: list[Any]) -> None:
    """Every listed version reads back whole, with bytes a PUT of that key sent."""
    for v in versions:
        got = s3.get_object(Bucket=BUCKET, Key=v["Key"], VersionId=v["VersionId"])
        body = got["Body"].read()
        assert got["VersionId"] == v["VersionId"]
        assert (len(body), md5_etag(body)) == (v["Size"], v["ETag"]), v
        sha = hashlib.sha256(body).hexdigest()
        assert sha in load.sent[v["Key"]], f"{v['Key']}@{v['VersionId']}: bytes never sent"
        acked = load.versions.get(v["VersionId"])
        assert acked is None or acked[1] == sha, v


def check_latest(s3: Any, versions: list[Any], markers: list[Any]) -> None:
    """Per key: newest first, one IsLatest (the greatest id), and plain GET follows it."""
    per_key: dict[str, list[tuple[str, bool, bool]]] = defaultdict(list)
    for v in versions:
        per_key[v["Key"]].append((v["VersionId"], v["IsLatest"], False))
    for m in markers:
        per_key[m["Key"]].append((m["VersionId"], m["IsLatest"], True))
    for kind in (versions, markers):
        for key in per_key:
            ids = [e["VersionId"] for e in kind if e["Key"] == key]
            assert ids == sorted(ids, reverse=True), f"{key}: not newest first"
    for key, found in per_key.items():
        newest = max(found)
        assert [e for e in found if e[1]] == [newest], f"{key}: IsLatest is not the newest"
        if newest[2]:  # a delete marker is current
            try:
                s3.head_object(Bucket=BUCKET, Key=key)
            except botocore.exceptions.ClientError as exc:
                assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404
            else:
                raise AssertionError(f"{key}: readable although its latest is a marker")
        else:
            assert s3.head_object(Bucket=BUCKET, Key=key)["VersionId"] == newest[0]
    current = {k for k, found in per_key.items() if not max(found)[2]}
    listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    assert {o["Key"] for o in listed} == current


def test_kill9_during_versioned_writes_keeps_every_acknowledged_version(tmp_path: Path) -> None:
    srv = Server(tmp_path, workers=2, threads=8)
    srv.start()
    try:
        s3 = boto3_client(srv.endpoint)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        with VersionedLoad(srv.endpoint) as load:
            wait_for(load, versions=400, markers=80, purged=25)
            load.killing.set()
            srv.kill9()  # mid-load: requests are in flight in both workers
        assert not load.unexpected, load.unexpected[:5]

        srv.start()
        s3 = boto3_client(srv.endpoint)
        assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
        versions, markers = list_everything(s3)
        ids = [e["VersionId"] for e in versions + markers]
        assert len(ids) == len(set(ids)), "a version id is listed twice"
        check_acknowledged(load, versions, markers)
        check_readable(s3, load, versions)
        check_latest(s3, versions, markers)

        after = s3.put_object(Bucket=BUCKET, Key="doc", Body=b"after the crash")["VersionId"]
        assert after > max(ids), "a version id after the restart sorts before older ones"
        again = s3.get_object(Bucket=BUCKET, Key="doc")
        assert (again["VersionId"], again["Body"].read()) == (after, b"after the crash")
    finally:
        srv.kill9()
