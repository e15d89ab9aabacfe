"""gunicorn lifecycle: graceful reload (HUP) and a worker killed with SIGKILL lose no
acknowledged write, and the server keeps answering; one Server header; fast start."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
import urllib.request
from pathlib import Path

import botocore.exceptions
from support.clients import boto3_client
from support.raw import send
from support.server import Server


def _writer(endpoint: str, name: str, stop: threading.Event, acked: dict[str, str],
            failures: list[str]) -> None:
    s3 = boto3_client(endpoint, max_attempts=1)
    i = 0
    while not stop.is_set():
        key, body = f"{name}/k{i}", os.urandom(2048 + i % 4096)
        try:
            put = s3.put_object(Bucket="lifecycle", Key=key, Body=body)
            assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
            acked[key] = put["ETag"]
        except (botocore.exceptions.ClientError, botocore.exceptions.ConnectionError,
                botocore.exceptions.HTTPClientError) as exc:
            failures.append(repr(exc))  # unknown outcome: a connection cut by a kill
        i += 1


def test_hup_and_worker_kill_lose_no_acknowledged_write(tmp_path: Path) -> None:
    srv = Server(tmp_path / "srv", workers=2)
    started = time.monotonic()
    srv.start()
    ready = None
    while ready is None:
        try:
            with urllib.request.urlopen(f"{srv.endpoint}/healthz") as resp:
                ready = time.monotonic() - started if resp.status == 200 else None
        except OSError:
            time.sleep(0.01)
    print(f"start to first 200 from /healthz: {ready * 1000:.0f} ms")
    try:
        s3 = boto3_client(srv.endpoint)
        s3.create_bucket(Bucket="lifecycle")
        stop, acked, failures = threading.Event(), {}, []
        threads = [threading.Thread(target=_writer,
                                    args=(srv.endpoint, f"w{n}", stop, acked, failures))
                   for n in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        assert srv.proc is not None
        os.kill(srv.proc.pid, signal.SIGHUP)  # graceful reload: new workers, old drained
        time.sleep(2.0)
        victim = srv.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        time.sleep(2.0)
        stop.set()
        for t in threads:
            t.join()
        assert len(acked) > 50
        for key, etag in acked.items():
            assert s3.head_object(Bucket="lifecycle", Key=key)["ETag"] == etag
        assert len(srv.worker_pids()) == 2 and victim not in srv.worker_pids()
        listed = {o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(
            Bucket="lifecycle") for o in p.get("Contents", [])}
        assert set(acked) <= listed
        print(f"acknowledged writes verified: {len(acked)}, unknown outcomes: {len(failures)}")
        resp = send(srv.endpoint, "GET", "/healthz", sign=False)
        assert resp.status == 200
    finally:
        srv.stop()


def test_one_server_header(server: Server) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    conn.request("GET", "/healthz")
    resp = conn.getresponse()
    resp.read()
    servers = [v for k, v in resp.getheaders() if k.lower() == "server"]
    dates = [v for k, v in resp.getheaders() if k.lower() == "date"]
    conn.close()
    assert len(servers) == 1 and len(dates) == 1
    if getattr(server, "via", None) != "nginx":
        assert servers == ["BleepStore"]
