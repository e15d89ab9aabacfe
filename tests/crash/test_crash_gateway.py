"""Crash-only over a gateway (issue 10 item 6; storage.md §5.2, §5.5, §5.7): SIGKILL a real
BleepStore (gunicorn, every process) running as a gateway in front of each cloud emulator
while PUTs, UploadParts and Completes are in flight, restart it on the same data dir and
the same bucket, and check that nothing acknowledged was lost, nothing unacknowledged is
(partly) visible, and that the restart's orphan scan left no object under the server's
prefix that no metadata row references -- and touched nothing outside that prefix.

Where a part lives depends on the cloud (storage.md §4). GCS: each part is an object of its
own (``multipart/<id>/<n>-<attempt>``), composed into a fresh blob at Complete. AWS and
Azure ("native"): CreateMultipartUpload reserves the ref of the result
(``blobs/<id[:2]>/<id[2:4]>/<id>``, named by the upload row), parts go into the cloud's
own multipart state on it (the upstream's native upload; uncommitted blocks) and Complete
has the cloud build that ref in place. That state is not in a listing of the bucket: the
tests look at it too (``Gateway.native_parts``, ``Gateway.hidden``).

How the kills land where they must (the gateway has no fault point of its own):
- "uploaded, not committed": the test holds SQLite's write lock (shorter than the
  server's busy timeout), so every write uploads its blob (or its native part) to the
  cloud and then waits for its commit; the test watches the cloud fill with unreferenced
  blobs (or the native upload with parts), then kills.
- "mid-body": a signed request is sent with half its body and the kill waits until the
  server has spooled part of it.
- "mid-assembly": the server reaches its emulator through ``StallingProxy``, which holds
  back (never forwards, never closes) the request that builds the result (GCS's last
  compose, AWS's upstream CompleteMultipartUpload, Azure's Put Block List); the kill
  lands while that request is in flight.
- "assembled, not committed": the write lock again, once the result is in the cloud.
- "committed, not answered": the core's ``complete.after_commit`` fault point
  (``BLEEPSTORE_FAULT``) kills the worker, then the test kills the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import botocore.exceptions
import pytest
from support.clients import boto3_client
from support.server import Server
from support.signing import sigv4_headers
from support.stored import server_environ

from bleepstore.config import load
from bleepstore.datadir_lock import LOCK_NAME
from bleepstore.runtime import build_storage
from bleepstore.storage.gateway import GatewayBackend
from bleepstore.storage.localio import OBJECT_REF, PART_REF, UPLOAD_REF

pytestmark = pytest.mark.e2e  # real gunicorn + real emulators; tests/crash = kill -9 tests

MiB = 1 << 20
PART = 5 * MiB  # S3's minimum for every part but the last (core enforces it everywhere)
BUCKET = "crash"
PREFIX = "crash-gw/"  # the server's prefix; objects outside it are not the server's
BACKENDS = ["aws", "gcs", "azure"]
NATIVE = {"aws", "azure"}  # the cloud's own multipart upload builds the result in place
# The request that builds a Complete's result, per cloud: AWS completes the upstream's
# native multipart upload of the parts, Azure commits the block list of the parts' staged
# blocks (Put Block List), GCS composes (the last compose call when there are
# intermediates).
FINAL_ASSEMBLY = {"aws": b"<CompleteMultipartUpload", "azure": b"<BlockList>",
                  "gcs": b"/compose"}
DEADLINE_S = 20.0


# Writes wait for their commit while a test holds SQLite's write lock; the polls under the
# lock stay below the server's busy timeout, with room for a slow, shared CI machine.
BUSY_TIMEOUT_MS = 40_000
LOCK_HELD_S = 20.0


def poll(what: str, ready: Callable[[], Any], timeout: float = DEADLINE_S) -> Any:
    """``ready()`` until truthy (returned) or the deadline (a failure naming ``what``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def composite_etag(parts: list[bytes]) -> str:
    return f'"{md5(b"".join(hashlib.md5(p).digest() for p in parts))}-{len(parts)}"'


def reserved_ref(upload_id: str) -> str:
    """The ref a native cloud's upload builds its result at (named by the upload row)."""
    return f"blobs/{upload_id[:2]}/{upload_id[2:4]}/{upload_id}"


def attempt(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # the connection dies with the server: that is the point
        return exc


# --- the server, the cloud behind it, and the metadata that indexes the cloud ----------

class StallingProxy:
    """A TCP relay between the server and its emulator. Once ``arm(marker, nth)``-ed, the
    request carrying the ``nth`` occurrence of ``marker`` is held back: neither forwarded
    nor closed, so the server waits on it mid-assembly until the test kills the server."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.held = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._marker = b""
        self._left = 0
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="stall-proxy", daemon=True).start()

    def arm(self, marker: bytes, nth: int = 1) -> None:
        with self._lock:
            self._marker, self._left = marker, nth
            self.held.clear()

    def close(self) -> None:
        self._closed.set()
        for sock in [self.listener, *self._sockets]:
            sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue  # closed: the loop ends
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            held = threading.Event()
            for src, dst, out in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, out, held),
                                 daemon=True).start()

    def _hold(self, tail: bytes, data: bytes) -> bool:
        """Does ``data`` (read after ``tail``) carry the awaited occurrence?"""
        with self._lock:
            if not self._marker or self._left <= 0:
                return False
            # NOTE: tail + data, so a marker split across two reads is still seen; those
            # wholly inside the tail were counted with the previous read.
            self._left -= (tail + data).count(self._marker) - tail.count(self._marker)
            if self._left > 0:
                return False
            self._marker = b""
            return True

    def _pump(self, src: socket.socket, dst: socket.socket, outbound: bool,
              held: threading.Event) -> None:
        tail = b""
        try:
            while data := src.recv(1 << 16):
                if outbound and self._hold(tail, data):
                    # The cloud's side goes (a single-threaded emulator must not wait on
                    # a request that never comes); the server's side stays open and silent.
                    held.set()
                    dst.shutdown(socket.SHUT_RDWR)
                    self.held.set()
                    self._closed.wait()
                    return
                tail = data[-64:]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            src.close()
            if not held.is_set() or outbound:
                dst.close()


@dataclass
class Gateway:
    """A BleepStore gateway (gunicorn) on a fresh bucket of ``cloud``'s emulator, and an
    adapter on that same bucket to see what the cloud holds."""

    cloud: str
    server: Server
    proxy: StallingProxy | None = None
    foreign: dict[str, bytes] = field(default_factory=dict)
    _backend: GatewayBackend | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **self.server.env}

    def backend(self) -> GatewayBackend:
        if self._backend is None:
            with server_environ(self.server.env):
                backend = build_storage(load(self.server.config_path, self.env))
            assert isinstance(backend, GatewayBackend)
            self._backend = backend
        return self._backend

    def names(self, under: str = "") -> dict[str, float]:
        """Every object of the bucket whose name starts with ``under`` -> mtime."""
        with server_environ(self.server.env):
            return dict(self.backend().store.list(under))

    def refs(self) -> set[str]:
        """What the cloud holds under the server's prefix, as refs (prefix stripped)."""
        return {name[len(PREFIX):] for name in self.names(PREFIX)}

    def put_raw(self, name: str, data: bytes) -> None:
        with tempfile.NamedTemporaryFile() as f, server_environ(self.server.env):
            f.write(data)
            f.flush()
            self.backend().store.upload_file(name, f.name, len(data))

    def read_raw(self, name: str) -> bytes:
        with server_environ(self.server.env):
            return b"".join(self.backend().store.read(name, 0, len(self.foreign[name])))

    def db(self, sql: str) -> set[str]:
        """The first column of ``sql`` on the server's database (read-only)."""
        with sqlite3.connect(f"file:{self.server.db_path}?mode=ro", uri=True) as conn:
            return {r[0] for r in conn.execute(sql) if r[0] is not None}

    @property
    def native(self) -> bool:
        return self.cloud in NATIVE

    def live_refs(self) -> set[str]:
        """Refs whose object a row needs (a missing one would be lost data): objects', and
        parts' on GCS (a native cloud's part refs name no object: its bytes are in the
        native upload, see ``native_parts``)."""
        parts = "" if self.native else " UNION SELECT data_ref FROM multipart_parts"
        return self.db("SELECT data_ref FROM objects" + parts)

    def reserved_refs(self) -> set[str]:
        """The results reserved by live uploads (native clouds; none on GCS): such a ref may
        exist (built by a Complete whose commit did not happen: the next one adopts it)."""
        return self.db("SELECT data_ref FROM multipart_uploads")

    def referenced(self) -> set[str]:
        """Every ref any row names, GC intents included (the orphan scan's definition)."""
        return self.live_refs() | self.db("SELECT data_ref FROM blob_gc UNION "
                                          "SELECT data_ref FROM multipart_uploads")

    def unreferenced(self) -> set[str]:
        """Blobs in the cloud that no row names and no GC intent covers (an intent on
        ``upload:<id>`` covers that upload's whole folder): what the orphan scan is for.
        A reserved ref is named by its upload's row. Compose temporaries (GCS, not
        blob-shaped) go with their upload's folder instead."""
        pending = {m.group(1) for r in self.db("SELECT data_ref FROM blob_gc")
                   if (m := UPLOAD_REF.fullmatch(r))}
        return {r for r in self.refs() - self.referenced()
                if (OBJECT_REF.fullmatch(r) or PART_REF.fullmatch(r))
                and not (r.startswith("multipart/") and r.split("/")[1] in pending)}

    def native_parts(self, upload_id: str) -> dict[tuple[int, str], int]:
        """What the cloud holds, unlisted, for the parts of ``upload_id`` -> size. AWS: the
        parts of the upstream's native upload of the reserved ref, as (number, ETag);
        Azure: the uncommitted blocks staged on the reserved ref, as (number, attempt);
        GCS: nothing (its parts are objects)."""
        name = PREFIX + reserved_ref(upload_id)
        store: Any = self.backend().store
        found: dict[tuple[int, str], int] = {}
        with server_environ(self.server.env):
            if self.cloud == "aws":
                client = store.client()
                uploads = client.list_multipart_uploads(Bucket=store.bucket, Prefix=name)
                for upload in uploads.get("Uploads", ()):
                    if upload["Key"] != name:
                        continue
                    for part in client.list_parts(Bucket=store.bucket, Key=name,
                                                  UploadId=upload["UploadId"]).get("Parts", ()):
                        tag = (int(part["PartNumber"]), str(part["ETag"]).strip('"'))
                        found[tag] = int(part["Size"])
            elif self.cloud == "azure":
                from azure.core.exceptions import ResourceNotFoundError

                try:
                    _, uncommitted = store._blob(name).get_block_list("uncommitted")
                except ResourceNotFoundError:
                    return {}
                for block in uncommitted:  # ids <nnnnn>-<attempt>-<sub>
                    number, tag, _ = str(block.id).split("-")
                    found[(int(number), tag)] = found.get((int(number), tag), 0) + block.size
        return found

    def hidden(self) -> set[str]:
        """Refs under the prefix that the cloud holds but does not list: AWS native
        multipart uploads, Azure blobs holding only uncommitted blocks; GCS none."""
        store: Any = self.backend().store
        with server_environ(self.server.env):
            if self.cloud == "aws":
                pages = store.client().get_paginator("list_multipart_uploads").paginate(
                    Bucket=store.bucket, Prefix=PREFIX)
                return {str(u["Key"])[len(PREFIX):] for page in pages
                        for u in page.get("Uploads", ())}
            if self.cloud == "azure":
                staged = {str(b.name) for b in store._client().list_blobs(
                    name_starts_with=PREFIX, include=["uncommittedblobs"])}
                return {n[len(PREFIX):] for n in staged - set(self.names(PREFIX))}
        return set()

    def spool(self) -> list[Path]:
        root = self.server.data / "spool"
        if not root.is_dir():
            return []
        return [p for p in root.iterdir() if p.is_file() and p.name != LOCK_NAME]

    def restart(self, fault: str | None = None) -> dict[str, Any]:
        """kill -9 the whole group, start again (a recovering start); its counts."""
        self.server.kill9()
        self.server.env.pop("BLEEPSTORE_FAULT", None)
        if fault is not None:
            self.server.env["BLEEPSTORE_FAULT"] = fault
        self.server.start()
        return self.recovery()

    def recovery(self) -> dict[str, Any]:
        lines = [ln for ln in self.server.log_text().splitlines()
                 if '"recovery complete"' in ln]
        return dict(json.loads(lines[-1]))

    def s3(self, **config: Any) -> Any:
        """No retries: a retried request would hide the crash."""
        return boto3_client(self.server.endpoint, max_attempts=0, connect_timeout=5,
                            read_timeout=60, **config)

    def check_settled(self, timeout: float = 10.0) -> None:
        """The cloud under the prefix holds exactly the blobs some row needs (and at most
        the results reserved by live uploads): nothing unreferenced (orphans, released
        blobs, compose temporaries), nothing referenced missing, no unlisted native state
        (native upload, staged blocks) of an upload that is gone; and every object outside
        the prefix is still there, byte for byte."""
        deadline = time.monotonic() + timeout
        while ((extra := self.refs() - self.live_refs() - self.reserved_refs())
               and time.monotonic() < deadline):
            time.sleep(0.05)  # GC right after a commit, else the maintenance loop
        assert not extra, f"{len(extra)} unreferenced under {PREFIX}: {sorted(extra)[:5]}"
        missing = self.live_refs() - self.refs()
        assert not missing, f"rows point at blobs the cloud lost: {sorted(missing)[:5]}"
        stray = self.hidden() - self.reserved_refs()
        assert not stray, f"unlisted under {PREFIX}, of no live upload: {sorted(stray)[:5]}"
        everything = self.names()
        for name, data in self.foreign.items():
            assert name in everything, f"{name} (outside the prefix) was deleted"
            assert self.read_raw(name) == data, f"{name} (outside the prefix) was changed"


def foreign_names() -> dict[str, bytes]:
    """Objects of someone else in the same bucket, outside the prefix, named exactly like
    BleepStore's blobs and parts: a scan that ignored the prefix would delete them."""
    w, u, p = (os.urandom(16).hex() for _ in range(3))
    return {f"blobs/{w[:2]}/{w[2:4]}/{w}": os.urandom(1000),
            f"multipart/{u}/00001-{p}": os.urandom(1000),
            f"{PREFIX.rstrip('/')}-other/blobs/{w[:2]}/{w[2:4]}/{w}": os.urandom(1000)}


@pytest.fixture(params=BACKENDS)
def make_gateway(request: pytest.FixtureRequest, tmp_path: Path
                 ) -> Iterator[Callable[..., Gateway]]:
    """``make_gateway(proxied=False)``: a started gateway on a FRESH bucket of the
    session's emulator for this parameter, with foreign objects planted beside it."""
    cloud = str(request.param)
    emulator = request.getfixturevalue(f"{cloud}_emulator")
    made: list[Gateway] = []

    def make(proxied: bool = False) -> Gateway:
        storage = emulator.server_storage_config()
        storage[storage["backend"]]["prefix"] = PREFIX
        # NOTE: gc_grace_s 0 (gateways default to 900 s): released blobs go right after
        # the commit, so "settled" can be checked; the maintenance loop retries quickly.
        storage.update(gc_grace_s=0, maintenance_interval_s=1)
        env = dict(emulator.env)
        proxy = None
        if proxied:
            proxy = StallingProxy(emulator.port)
            direct, via = f"127.0.0.1:{emulator.port}", f"127.0.0.1:{proxy.port}"
            section = storage[storage["backend"]]
            for key, value in section.items():
                if isinstance(value, str):
                    section[key] = value.replace(direct, via)
            env = {k: v.replace(direct, via) for k, v in env.items()}
        server = Server(tmp_path / f"gw{len(made)}", workers=2, threads=4, env=env,
                        extra_config={"storage": storage, "metadata": {"sqlite": {
                            "busy_timeout_ms": BUSY_TIMEOUT_MS}}})
        gw = Gateway(cloud, server, proxy)
        made.append(gw)
        gw.foreign = foreign_names()
        server.write_config()  # the adapter is built from the server's own config
        for name, data in gw.foreign.items():
            gw.put_raw(name, data)
        server.start()
        gw.s3().create_bucket(Bucket=BUCKET)
        return gw

    yield make
    for gw in made:
        gw.server.kill9()
        if gw.proxy is not None:
            gw.proxy.close()


# --- half-sent requests (the kill lands in the middle of a body) -----------------------

def half_sent_put(gw: Gateway, target: str, body: bytes) -> socket.socket:
    """Send a signed PUT's headers and the first half of its body, then nothing more."""
    host = urlsplit(gw.server.endpoint).netloc
    headers = sigv4_headers("PUT", host, target, body, {"Content-Length": str(len(body))})
    sock = socket.create_connection(("127.0.0.1", gw.server.port), timeout=10)
    head = f"PUT {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(head.encode() + b"\r\n" + body[: len(body) // 2])
    return sock


def spooling(gw: Gateway, at_least: int) -> bool:
    """A body of at least ``at_least`` bytes is being spooled (or uploaded) right now."""
    sizes = []
    for path in gw.spool():
        try:
            sizes.append(path.stat().st_size)
        except FileNotFoundError:
            continue
    return any(s >= at_least for s in sizes)


@contextmanager
def metadata_write_lock(gw: Gateway) -> Iterator[None]:
    """Hold SQLite's write lock: writes upload their blob to the cloud, then wait for
    their commit. Held for less than the server's busy timeout (``BUSY_TIMEOUT_MS``, raised
    for these servers so a loaded machine has time), so none gives up."""
    conn = sqlite3.connect(gw.server.db_path, isolation_level=None, timeout=10)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.close()


# --- 1. PUTs under load ------------------------------------------------------------------

class PutLoad:
    """Client threads PUTting objects of mixed sizes (every fifth one over 4 MiB) until
    the server dies; records what each key was sent (MD5) and which PUTs were acked."""

    def __init__(self, gw: Gateway, tag: str, threads: int = 4) -> None:
        self.gw, self.tag = gw, tag
        self.sent: dict[str, str] = {}
        self.acked: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                         for n in range(threads)]

    def __enter__(self) -> PutLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _run(self, n: int) -> None:
        s3, rng = self.gw.s3(), random.Random(f"{self.tag}-{n}")
        for i in range(100_000):
            size = 4 * MiB + rng.randrange(2 * MiB) if i % 5 == 4 else rng.randrange(1, 64 << 10)
            key, body = f"{self.tag}/t{n}-{i:05d}", rng.randbytes(size)
            with self._lock:
                self.sent[key] = md5(body)
            try:
                s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            except Exception:  # the server was killed: stop
                return
            with self._lock:
                self.acked.add(key)
            if self._stop.is_set():
                return

    def acks(self) -> int:
        with self._lock:
            return len(self.acked)


def check_puts(gw: Gateway, loads: list[PutLoad]) -> tuple[int, int]:
    """Every acked PUT reads back byte-identical; every visible key was sent and reads back
    exactly what was sent (a PUT committed but not yet answered may be visible, never a
    part of one). Returns (acked checked, visible but unacknowledged)."""
    sent = {k: v for load in loads for k, v in load.sent.items()}
    acked = {k for load in loads for k in load.acked}
    s3 = gw.s3()
    listed = {o["Key"]: o["ETag"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET) for o in page.get("Contents", [])}
    assert not acked - listed.keys(), f"acknowledged PUTs lost: {sorted(acked - listed.keys())}"
    assert not listed.keys() - sent.keys(), f"never sent: {sorted(listed.keys() - sent.keys())}"
    for key, etag in listed.items():
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert (etag, md5(body)) == (f'"{sent[key]}"', sent[key]), key
    return len(acked), len(listed.keys() - acked)


def test_kill9_under_put_load(make_gateway: Callable[..., Gateway]) -> None:
    """Two kills under a PUT load: (1) while a body is being spooled, (2) while PUTs have
    uploaded their blob to the cloud and wait for their commit. A gateway that wrote the
    user's key in place, acked before its commit, or whose start did not scan the cloud
    for orphans (or scanned outside its prefix) fails check_puts / check_settled."""
    gw = make_gateway()
    loads = [PutLoad(gw, "a")]
    with loads[0] as load:
        poll("20 acknowledged PUTs", lambda: load.acks() >= 20)
        half = half_sent_put(gw, f"/{BUCKET}/a/half-sent", os.urandom(6 * MiB))
        poll("a PUT body being spooled", lambda: spooling(gw, MiB))
        gw.server.kill9()
    half.close()
    spooled = len(gw.spool())
    counts = gw.restart()
    assert gw.spool() == [] and counts["spool_files_removed"] == spooled >= 1
    first = check_puts(gw, loads)
    gw.check_settled()

    loads.append(PutLoad(gw, "b"))
    with loads[1] as load:
        poll("20 more acknowledged PUTs", lambda: load.acks() >= 20)
        with metadata_write_lock(gw):
            poll("PUTs uploaded to the cloud, waiting for their commit",
                 lambda: len(gw.unreferenced()) >= 3, timeout=LOCK_HELD_S)
            gw.server.kill9()
    orphans = gw.unreferenced()
    counts = gw.restart()
    assert counts.get("orphans_removed", 0) >= len(orphans) >= 3, counts
    assert not orphans & gw.refs()
    second = check_puts(gw, loads)
    gw.check_settled()
    print(f"\n{gw.cloud}: kill 1: {first[0]} acked checked, {first[1]} visible unacked, "
          f"{spooled} spool files removed; kill 2: {second[0]} acked checked, {second[1]} "
          f"visible unacked, {len(orphans)} orphans seen, {counts['orphans_removed']} "
          f"removed at start")


# --- 2. UploadPart in flight -------------------------------------------------------------

def parts_reached(gw: Gateway, uid: str, acked: list[bytes],
                  unacked: dict[int, bytes]) -> Callable[[], bool]:
    """Have the unacked parts reached the cloud (each now waiting for its commit)? GCS: one
    unreferenced part object each. AWS: the upstream's native upload holds parts 1-4 with
    the unacked bodies' ETags (the re-upload of part 2 REPLACED the acked one there, as on
    S3 itself). Azure: one more attempt's blocks per part beside the acked ones."""
    if not gw.native:
        return lambda: len(gw.unreferenced()) >= len(unacked)
    sent = [*enumerate(acked, 1), *unacked.items()]
    if gw.cloud == "aws":
        # One part per number upstream, the last one sent; compared by ETag, not size: the
        # re-upload of part 2 has the acked one's size.
        last = {(n, md5(b)) for n, b in dict(sent).items()}
        return lambda: gw.native_parts(uid).keys() == last
    sizes = sorted((n, len(b)) for n, b in sent)
    return lambda: sorted((n, size) for (n, _), size in gw.native_parts(uid).items()) == sizes


def test_kill9_during_upload_part(make_gateway: Callable[..., Gateway]) -> None:
    """Parts 1 and 2 acked; then a re-upload of part 2 and parts 3 and 4 reach the cloud
    but not their commit, part 5 is half sent, and a CreateMultipartUpload waits for its
    commit: kill. ListParts must show exactly the acked parts (part 2 with its FIRST ETag),
    ListMultipartUploads only the acked upload, and completing with the acked parts must
    give the acked bytes, nothing unacked. Per cloud, what the start must have kept:
    - GCS: the acked part objects survive the orphan scan, the unacked ones are gone.
    - Azure: the acked attempts' blocks survive the start (the unacked attempts' blocks
      stay uncommitted beside them until the Complete's block list drops them).
    - AWS: the native upload survives; its part 2 is the unacked re-upload (as on S3), so a
      Complete listing the acked ETag gives the acked bytes or is refused with 400
      InvalidPart (nothing visible, the upload intact), and then re-uploading part 2 with
      the acked body and completing gives the acked bytes; never other bytes. The native
      upload opened by the unacked Create is aborted by the start.
    A gateway naming part blobs or blocks by part number (overwrite before commit), listing
    uncommitted parts, writing part objects on a native cloud, sweeping a live upload's
    native state at start, leaving a dead upload's native upload behind, or completing an
    AWS upload whose upstream part 2 is not the acked one (other bytes) fails here."""
    gw = make_gateway()
    s3, rng, key = gw.s3(), random.Random(2), "mpu/parts.bin"
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    assert gw.reserved_refs() == ({reserved_ref(uid)} if gw.native else set())
    acked = [rng.randbytes(PART), rng.randbytes(PART)]
    etags = [s3.upload_part(Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=n, Body=body
                            )["ETag"] for n, body in enumerate(acked, 1)]
    half = half_sent_put(gw, f"/{BUCKET}/{key}?partNumber=5&uploadId={uid}", rng.randbytes(PART))
    poll("part 5's body being spooled", lambda: spooling(gw, MiB))
    unacked = {2: rng.randbytes(PART), 3: rng.randbytes(PART), 4: rng.randbytes(MiB)}
    reached = parts_reached(gw, uid, acked, unacked)

    def created() -> bool:  # AWS: the unacked Create opened its native upload upstream
        return gw.cloud != "aws" or bool(gw.hidden() - {reserved_ref(uid)})

    with metadata_write_lock(gw), ThreadPoolExecutor(len(unacked) + 1) as pool:
        for n, body in unacked.items():
            pool.submit(attempt, s3.upload_part, Bucket=BUCKET, Key=key, UploadId=uid,
                        PartNumber=n, Body=body)
        pool.submit(attempt, s3.create_multipart_upload, Bucket=BUCKET, Key="mpu/unacked.bin")
        poll("3 parts (and, AWS, the Create's native upload) in the cloud, waiting for "
             "their commit",
             lambda: reached() and created(), timeout=LOCK_HELD_S)
        gw.server.kill9()
    half.close()
    orphans = gw.unreferenced()
    staged = gw.native_parts(uid)
    dead = gw.hidden() - {reserved_ref(uid)}
    if gw.cloud == "aws":  # the upstream's part 2 is the unacked body now
        assert staged.keys() == {(1, md5(acked[0]))} | {
            (n, md5(b)) for n, b in unacked.items()}, staged
    counts = gw.restart()

    s3 = gw.s3()
    listed = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in listed] == list(enumerate(etags, 1))
    uploads = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [uid]
    folder = {r for r in gw.refs() if r.startswith(f"multipart/{uid}/")}
    rows = gw.db("SELECT data_ref FROM multipart_parts")
    assert len(rows) == 2, rows
    if gw.native:
        assert not folder and not orphans, (folder, orphans)  # no object per part
        kept = gw.native_parts(uid)
        mine = ({(1, md5(acked[0]))} if gw.cloud == "aws" else  # the acked attempts
                {(int(n), a) for n, a in (r.rsplit("/", 1)[1].split("-") for r in rows)})
        assert mine <= kept.keys() <= staged.keys(), (mine, kept, staged)  # acked kept
        assert gw.hidden() == {reserved_ref(uid)}, "a dead upload's native state was kept"
    else:
        assert folder == rows == gw.live_refs(), folder  # acked kept, rest gone
        assert counts.get("orphans_removed", 0) >= len(orphans) >= len(unacked), counts
    parts = [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]
    try:
        result = s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid,
                                              MultipartUpload={"Parts": parts})
        outcome = "completed with the acked ETags"
    except botocore.exceptions.ClientError as exc:
        error, status = exc.response["Error"]["Code"], exc.response["ResponseMetadata"]
        assert gw.cloud == "aws" and (error, status["HTTPStatusCode"]) == ("InvalidPart", 400), exc
        with pytest.raises(botocore.exceptions.ClientError, match="404"):
            s3.head_object(Bucket=BUCKET, Key=key)  # refused: nothing visible
        listed = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=uid)["Parts"]
        assert [(p["PartNumber"], p["ETag"]) for p in listed] == list(enumerate(etags, 1))
        assert s3.upload_part(Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=2,
                              Body=acked[1])["ETag"] == etags[1]
        result = s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid,
                                              MultipartUpload={"Parts": parts})
        outcome = "InvalidPart, then part 2 re-uploaded and completed"
    assert result["ETag"] == composite_etag(acked)
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert md5(body) == md5(b"".join(acked)), "the object is not the acked parts"
    gw.check_settled()
    assert not gw.hidden() and not gw.native_parts(uid), "the completed upload left state"
    print(f"\n{gw.cloud}: 1 kill, 2 acked parts checked, {len(orphans)} orphans seen, "
          f"{counts['orphans_removed']} removed, {len(staged)} native parts seen, "
          f"{len(dead)} dead native upload(s) aborted at start; {outcome}")


# --- 3. CompleteMultipartUpload in flight ------------------------------------------------

@dataclass
class Upload:
    uid: str
    key: str
    bodies: list[bytes]
    parts: list[dict[str, Any]]

    @property
    def etag(self) -> str:
        return composite_etag(self.bodies)

    def complete(self, s3: Any) -> Any:
        return s3.complete_multipart_upload(Bucket=BUCKET, Key=self.key, UploadId=self.uid,
                                            MultipartUpload={"Parts": self.parts})


def upload_parts(gw: Gateway, count: int) -> Upload:
    s3, rng, key = gw.s3(), random.Random(count), "mpu/complete.bin"
    bodies = [rng.randbytes(PART) for _ in range(count - 1)] + [rng.randbytes(MiB)]
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]

    def one(n: int) -> dict[str, Any]:
        etag = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=n,
                              Body=bodies[n - 1])["ETag"]
        return {"PartNumber": n, "ETag": etag}

    with ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(one, range(1, count + 1)))
    return Upload(uid, key, bodies, parts)


def check_complete_recovered(gw: Gateway, up: Upload) -> str:
    """Absent and still completable with every part, or present with the composite ETag
    and the right bytes; then Complete succeeds (or replays) and a retry replays."""
    s3 = gw.s3()
    try:
        head = s3.head_object(Bucket=BUCKET, Key=up.key)
    except botocore.exceptions.ClientError as exc:
        assert exc.response["Error"]["Code"] == "404"
        listed = s3.list_parts(Bucket=BUCKET, Key=up.key, UploadId=up.uid)["Parts"]
        assert [(p["PartNumber"], p["ETag"]) for p in listed] == [
            (p["PartNumber"], p["ETag"]) for p in up.parts]
        state = "absent"
    else:
        assert (head["ContentLength"], head["ETag"]) == (sum(map(len, up.bodies)), up.etag)
        state = "present"
    assert up.complete(s3)["ETag"] == up.etag  # completes now, or replays
    assert up.complete(s3)["ETag"] == up.etag  # and a retry replays
    body = s3.get_object(Bucket=BUCKET, Key=up.key)["Body"].read()
    assert md5(body) == md5(b"".join(up.bodies)), "the object is not its parts in order"
    return state


@pytest.mark.parametrize("when", ["mid-assembly", "assembled", "committed"])
def test_kill9_during_complete(make_gateway: Callable[..., Gateway], when: str) -> None:
    """Kill while Complete runs: mid-assembly (its last cloud request held back by the
    proxy: GCS's last compose, with 33 parts so intermediates exist; AWS's upstream
    CompleteMultipartUpload; Azure's Put Block List), after the assembly with the commit
    waiting (GCS: the assembled blob is an orphan; AWS, Azure: the reserved ref is built,
    named by the upload row), after the commit before the answer. The key must be
    absent-and-completable or present-and-correct, never partial; after the upload
    settles nothing of its assembly may remain in the cloud, listed or not. A gateway that
    committed before its assembly finished shows a short or missing object; one whose
    start removes a live upload's built result or native upload, or whose next Complete
    does not adopt a built result, fails check_complete_recovered; one that leaves
    intermediates, native uploads or staged blocks behind fails check_settled / hidden."""
    gw = make_gateway(proxied=when == "mid-assembly")
    many = gw.cloud == "gcs" and when == "mid-assembly"  # 33 parts: a two-round compose
    up = upload_parts(gw, 33 if many else 3)
    reserved = reserved_ref(up.uid)
    assert gw.reserved_refs() == ({reserved} if gw.native else set())
    caller = threading.Thread(target=attempt, args=(up.complete, gw.s3()), daemon=True)
    seen = ""
    if when == "mid-assembly":
        assert gw.proxy is not None
        # GCS: round 1 composes 32 + 1 parts into two intermediates, the 3rd call is last
        gw.proxy.arm(FINAL_ASSEMBLY[gw.cloud], nth=3 if many else 1)
        caller.start()
        poll("the assembly's last request in flight", gw.proxy.held.is_set, timeout=60)
        if gw.native:  # the parts wait in the native upload; the result is not built
            native = gw.native_parts(up.uid)
            assert sorted(n for n, _ in native) == [1, 2, 3], native
            assert not gw.names(f"{PREFIX}multipart/") and reserved not in gw.refs()
            seen = f"{len(native)} parts in the native upload, result not built"
        else:
            temporaries = [n for n in gw.names(f"{PREFIX}multipart/{up.uid}/")
                           if not PART_REF.fullmatch(n[len(PREFIX):])]
            assert bool(temporaries) == many, temporaries  # GCS: the intermediates exist
            seen = f"{len(temporaries)} compose temporaries"
        gw.server.kill9()
        expected = "absent"
    elif when == "assembled":
        with metadata_write_lock(gw):
            caller.start()
            if gw.native:  # built in place, at the ref the upload row names: no orphan
                assembled = poll("the reserved ref built in the cloud, its commit waiting",
                                 lambda: {reserved} & gw.refs(), timeout=LOCK_HELD_S)
            else:
                assembled = poll("the assembled blob in the cloud, its commit waiting",
                                 lambda: {r for r in gw.unreferenced()
                                          if OBJECT_REF.fullmatch(r)}, timeout=LOCK_HELD_S)
            gw.server.kill9()
        seen = f"{len(assembled)} assembled blob"
        expected = "absent"
    else:
        gw.restart(fault="complete.after_commit")
        died = attempt(up.complete, gw.s3())
        assert isinstance(died, (botocore.exceptions.ConnectionError,
                                 botocore.exceptions.HTTPClientError)), died
        seen = "worker killed after the commit"
        expected = "present"
    if caller.ident is not None:
        caller.join(30)
    orphans = gw.unreferenced()
    counts = gw.restart()
    assert counts.get("orphans_removed", 0) >= len(orphans), counts
    if gw.native:  # the start kept a built result: named by its upload row, or an object's
        assert reserved not in orphans and (reserved in gw.refs()) == (when != "mid-assembly")
    assert check_complete_recovered(gw, up) == expected
    gw.check_settled()
    hidden = gw.hidden()
    assert not hidden and not gw.native_parts(up.uid), f"left behind, unlisted: {hidden}"
    label = {"mid-assembly": "mid-complete" if gw.native else "mid-compose"}.get(when, when)
    print(f"\n{gw.cloud} {label}: 1 kill, {len(up.parts)} parts, {seen}, {len(orphans)} "
          f"orphans seen, {counts['orphans_removed']} removed, {counts['blobs_collected']} "
          f"GC intents swept at start, state {expected}, {len(hidden)} hidden left")


def test_complete_after_assembled_crash_with_another_list(
        make_gateway: Callable[..., Gateway]) -> None:
    """Parts 1-4 (5 MiB each) acked; a Complete of [1, 2, 3] builds its result, its commit
    waits: kill. The upload is still live (ListParts), so a Complete of [1, 2, 4] (same total
    size) must give the bytes of 1, 2, 4 -- or be refused with InvalidPart, and then
    re-uploading part 4 and completing must -- or, on AWS, whose native upload that first
    Complete consumed, NoSuchUpload (the client starts over). A gateway that adopts the
    built result of another list (matched by size only) serves the bytes of 1, 2, 3 under
    [1, 2, 4]'s ETag."""
    gw = make_gateway()
    s3, rng, key = gw.s3(), random.Random(7), "mpu/other.bin"
    uid = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    bodies = {n: rng.randbytes(PART) for n in range(1, 5)}
    etags = {n: s3.upload_part(Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=n,
                               Body=b)["ETag"] for n, b in bodies.items()}

    def complete(s3: Any, numbers: list[int]) -> Any:
        return s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid,
                                            MultipartUpload={"Parts": [
                                                {"PartNumber": n, "ETag": etags[n]}
                                                for n in numbers]})
    caller = threading.Thread(target=attempt, args=(complete, s3, [1, 2, 3]), daemon=True)
    with metadata_write_lock(gw):
        caller.start()
        poll("the result of [1, 2, 3] built, its commit waiting",
             lambda: {reserved_ref(uid)} & gw.refs() if gw.native else
             {r for r in gw.unreferenced() if OBJECT_REF.fullmatch(r)}, timeout=LOCK_HELD_S)
        gw.server.kill9()
    caller.join(30)
    gw.restart()
    s3, want = gw.s3(), [bodies[1], bodies[2], bodies[4]]
    try:
        result = complete(s3, [1, 2, 4])
    except botocore.exceptions.ClientError as exc:
        code = exc.response["Error"]["Code"]
        if gw.cloud == "aws" and code == "NoSuchUpload":
            with pytest.raises(botocore.exceptions.ClientError, match="404"):
                s3.head_object(Bucket=BUCKET, Key=key)  # nothing served under any ETag
            s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid)
            return
        assert code == "InvalidPart", exc
        etags[4] = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=4,
                                  Body=bodies[4])["ETag"]
        result = complete(s3, [1, 2, 4])
    assert result["ETag"] == composite_etag(want)
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert md5(body) == md5(b"".join(want)), "served other parts' bytes under this ETag"
