"""A 1 GiB PUT and GET through a real gunicorn worker keep its RSS flat (design.md: bodies are
streams end to end). The figures are printed (run with ``-s``) for the closing note:

    python -m pytest -s -m slow tests/e2e/test_e2e_memory.py
"""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.chunked_signer import Signer
from support.server import Server

GIB = 1024 ** 3
BLOCK = 1024 * 1024
MAX_GROWTH = 64 * 1024 * 1024


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class Sampler(threading.Thread):
    """Samples the worker's RSS every 20 ms; ``peak`` is the largest value seen."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.samples = pid, rss(pid), 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, rss(self.pid))
            self.samples += 1
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


class PatternBody:
    """``size`` bytes made of one repeated random block, produced on demand (never held)."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = os.urandom(BLOCK)
        self.md5 = hashlib.md5()

    def read(self, size: int = BLOCK) -> bytes:
        data = self.block[: min(size, BLOCK, self.left)]
        self.left -= len(data)
        self.md5.update(data)
        return data


@contextmanager
def connection(server: Server) -> Iterator[http.client.HTTPConnection]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300,
                                      blocksize=BLOCK)
    try:
        yield conn
    finally:
        conn.close()


def put_stream(server: Server, target: str, size: int) -> tuple[int, str, str]:
    headers = {"Host": f"127.0.0.1:{server.port}", "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
               "Content-Length": str(size)}
    Signer().sign("PUT", target, headers)
    body = PatternBody(size)
    with connection(server) as conn:
        conn.request("PUT", target, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
    return resp.status, resp.getheader("ETag") or "", body.md5.hexdigest()


def get_stream(server: Server, target: str) -> tuple[int, int, str]:
    headers = {"Host": f"127.0.0.1:{server.port}", "x-amz-content-sha256":
               hashlib.sha256(b"").hexdigest()}
    Signer().sign("GET", target, headers)
    md5, total = hashlib.md5(), 0
    with connection(server) as conn:
        conn.request("GET", target, headers=headers)
        resp = conn.getresponse()
        while chunk := resp.read(BLOCK):
            md5.update(chunk)
            total += len(chunk)
    return resp.status, total, md5.hexdigest()


@pytest.fixture
def one_worker(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "mem", workers=1, threads=4)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.slow
def test_one_gib_put_and_get_keep_worker_rss_flat(one_worker: Server) -> None:
    import boto3  # noqa: F401  (warm-up below uses the same raw path as the big transfer)

    headers = {"Host": f"127.0.0.1:{one_worker.port}",
               "x-amz-content-sha256": hashlib.sha256(b"").hexdigest()}
    Signer().sign("PUT", "/mem", headers)
    with connection(one_worker) as conn:
        conn.request("PUT", "/mem", headers={**headers, "Content-Length": "0"})
        assert conn.getresponse().status == 200
    assert put_stream(one_worker, "/mem/warm", 8 * BLOCK)[0] == 200  # load every code path
    assert get_stream(one_worker, "/mem/warm")[0] == 200
    (pid,) = one_worker.worker_pids()
    baseline = rss(pid)
    sampler = Sampler(pid)
    sampler.start()
    try:
        t0 = time.monotonic()
        status, etag, md5_sent = put_stream(one_worker, "/mem/big", GIB)
        t_put = time.monotonic() - t0
        assert status == 200
        assert etag == f'"{md5_sent}"'
        t0 = time.monotonic()
        status, size, md5_got = get_stream(one_worker, "/mem/big")
        t_get = time.monotonic() - t0
    finally:
        sampler.stop()
    after = rss(pid)
    assert (status, size, md5_got) == (200, GIB, md5_sent)
    mib = 1024 * 1024
    print(f"\n1 GiB PUT {GIB / mib / t_put:.0f} MB/s ({t_put:.1f} s), "
          f"GET {GIB / mib / t_get:.0f} MB/s ({t_get:.1f} s); worker RSS baseline "
          f"{baseline / mib:.1f} MiB, peak {sampler.peak / mib:.1f} MiB, after "
          f"{after / mib:.1f} MiB ({sampler.samples} samples)")
    assert sampler.samples > 10
    assert sampler.peak - baseline < MAX_GROWTH
    assert after - baseline < MAX_GROWTH
