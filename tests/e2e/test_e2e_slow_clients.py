"""Slow and idle clients cannot take the server offline (issue 9, item 3).

The attack that stopped every honest request of an earlier build, straight to gunicorn and
through the shipped nginx site: 200 idle sockets, 100 clients dribbling header lines and
40 anonymous clients sending a PUT body a byte at a time, all at once, from another source
address (127.0.0.2, so nginx's per-address limits apply to the attacker, not to the honest
client on 127.0.0.1). Honest signed PUTs and GETs on fresh connections must all succeed
with p99 < 1 s. Then the limits themselves: a head that never completes is dropped, a body
slower than the minimum rate is cut with 400 RequestTimeout, a slow but honest one is not.
"""

from __future__ import annotations

import http.client
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.clients import boto3_client
from support.nginx import Nginx
from support.server import Server
from support.signing import sigv4_headers

ATTACKER = "127.0.0.2"
IDLE, SLOW_HEADERS, SLOW_BODIES = 200, 100, 40
MEASURE_S = 8.0


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("slowclients"))  # the shipped defaults: 2 x 8
    srv.start()
    yield srv
    srv.stop()


class Attack:
    """Holds the hostile connections open and keeps them dribbling until stopped."""

    def __init__(self, port: int, bucket: str) -> None:
        self.port = port
        self.bucket = bucket
        self.stop = threading.Event()
        self.reopened = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _connect(self) -> socket.socket | None:
        sock = socket.socket()
        sock.bind((ATTACKER, 0))
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", self.port))
        except OSError:
            sock.close()
            return None
        sock.setblocking(False)
        return sock

    def _open_slow_body(self, i: int) -> socket.socket | None:
        sock = self._connect()
        if sock is not None:
            head = (f"PUT /{self.bucket}/slow-{i} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Content-Length: 100000\r\n\r\n")
            try:
                sock.send(head.encode())
            except OSError:
                pass
        return sock

    def __enter__(self) -> Attack:
        self.idle = [self._connect() for _ in range(IDLE)]
        self.slow_headers = [self._connect() for _ in range(SLOW_HEADERS)]
        for sock in self.slow_headers:
            if sock is not None:
                sock.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        self.slow_bodies = [self._open_slow_body(i) for i in range(SLOW_BODIES)]
        self._thread.start()
        return self

    def _dribble(self, sock: socket.socket | None, data: bytes) -> bool:
        if sock is None:
            return False
        try:
            if sock.recv(65536) == b"":
                return False
        except BlockingIOError:
            pass
        except OSError:
            return False
        try:
            sock.send(data)
        except BlockingIOError:
            pass
        except OSError:
            return False
        return True

    def _run(self) -> None:
        tick = 0
        while not self.stop.wait(0.5):
            tick += 1
            for i, sock in enumerate(self.slow_headers):
                if not self._dribble(sock, f"X-Slow-{tick}: x\r\n".encode()):
                    self._close(sock)
                    self.slow_headers[i] = self._connect()
                    self.reopened += 1
            if tick % 4:
                continue
            for i, sock in enumerate(self.slow_bodies):
                if not self._dribble(sock, b"x"):
                    self._close(sock)
                    self.slow_bodies[i] = self._open_slow_body(i)
                    self.reopened += 1

    @staticmethod
    def _close(sock: socket.socket | None) -> None:
        if sock is not None:
            sock.close()

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self._thread.join(10)
        for sock in self.idle + self.slow_headers + self.slow_bodies:
            self._close(sock)


def honest_request(port: int, method: str, target: str, body: bytes = b"") -> tuple[int, float]:
    netloc = f"127.0.0.1:{port}"
    headers = sigv4_headers(method, netloc, target, body)
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                      source_address=("127.0.0.1", 0))
    try:
        conn.request(method, target, body=body or None, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.monotonic() - start
    except OSError:
        return 0, time.monotonic() - start
    finally:
        conn.close()


@pytest.mark.parametrize("via", ["direct", "nginx"])
def test_honest_clients_are_served_during_a_slow_client_attack(
        target: Server, tmp_path: Path, via: str) -> None:
    bucket = f"attacked-{via}"
    s3 = boto3_client(target.endpoint)
    s3.create_bucket(Bucket=bucket)
    proxy = Nginx(tmp_path / "nginx", target.port).start() if via == "nginx" else None
    port = proxy.port if proxy is not None else target.port
    latencies: list[float] = []
    failures: list[tuple[str, int]] = []
    try:
        with Attack(port, bucket) as attack:
            end = time.monotonic() + MEASURE_S
            i = 0
            while time.monotonic() < end:
                i += 1
                for method, body in (("PUT", b"honest %d" % i), ("GET", b"")):
                    status, took = honest_request(port, method, f"/{bucket}/k{i}", body)
                    latencies.append(took)
                    if status != 200:
                        failures.append((method, status))
        reopened = attack.reopened
    finally:
        if proxy is not None:
            proxy.stop()
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"\n[{via}] under attack ({IDLE} idle, {SLOW_HEADERS} slow-header, {SLOW_BODIES} "
          f"slow-body; {reopened} attacker reconnects): {len(latencies)} honest requests, "
          f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms, "
          f"failures {len(failures)}")
    assert failures == []
    assert len(latencies) >= 20
    assert p99 < 1.0
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert not [k for k in keys if k.startswith("slow-")]


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("strict"), workers=1, threads=2, extra_config={
        "server": {"header_timeout_s": 2, "min_body_rate_bytes_s": 1024,
                   "min_body_rate_window_s": 2}})
    srv.start()
    yield srv
    srv.stop()


def _closed_within(sock: socket.socket, seconds: float, dribble: bytes = b"") -> float:
    """Seconds until the server closed ``sock`` (sending ``dribble`` every 0.2 s)."""
    start = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < seconds:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - start
        except TimeoutError:
            pass
        except ConnectionResetError:
            return time.monotonic() - start
        if dribble:
            try:
                sock.send(dribble)
            except OSError:
                return time.monotonic() - start
    pytest.fail(f"connection still open after {seconds} s")


def test_idle_and_slow_heads_are_dropped_at_the_header_deadline(strict: Server) -> None:
    with socket.create_connection(("127.0.0.1", strict.port)) as idle, \
            socket.create_connection(("127.0.0.1", strict.port)) as slow:
        slow.send(b"GET / HTTP/1.1\r\n")
        took = _closed_within(idle, 6)
        assert 1.5 < took < 4.5
        assert _closed_within(slow, 6, dribble=b"X-A: b\r\n") < 4.5
    # the two threads were never taken: requests still go through at once
    status, _ = honest_request(strict.port, "GET", "/")
    assert status == 200


def test_a_body_below_the_minimum_rate_is_cut(strict: Server) -> None:
    s3 = boto3_client(strict.endpoint)
    s3.create_bucket(Bucket="rate")
    url = s3.generate_presigned_url("put_object", Params={"Bucket": "rate", "Key": "trickle"})
    path = url.split(f"127.0.0.1:{strict.port}", 1)[1]
    with socket.create_connection(("127.0.0.1", strict.port)) as sock:
        sock.send(f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{strict.port}\r\n"
                  "Content-Length: 100000\r\n\r\n".encode())
        start = time.monotonic()
        sock.settimeout(0.25)
        answer = b""
        while b"\r\n\r\n" not in answer and time.monotonic() - start < 15:
            try:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
            except TimeoutError:
                sock.send(b"x" * 64)  # 256 B/s: a quarter of the minimum
        took = time.monotonic() - start
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        sock.settimeout(5)
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"<Code>RequestTimeout</Code>" in body, body
    assert 1.5 < took < 6
    assert "Contents" not in s3.list_objects_v2(Bucket="rate")


def test_a_slow_but_honest_body_is_not_cut(strict: Server) -> None:
    s3 = boto3_client(strict.endpoint)
    s3.create_bucket(Bucket="steady")
    body = b"s" * 16384
    url = s3.generate_presigned_url("put_object", Params={"Bucket": "steady", "Key": "k"})
    path = url.split(f"127.0.0.1:{strict.port}", 1)[1]
    conn = http.client.HTTPConnection("127.0.0.1", strict.port, timeout=30)
    conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", f"127.0.0.1:{strict.port}")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    for i in range(0, len(body), 1024):  # 4 KiB/s for 4 s: above the minimum
        conn.send(body[i:i + 1024])
        time.sleep(0.25)  # pacing the client, not waiting for the server
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    conn.close()
    assert s3.get_object(Bucket="steady", Key="k")["Body"].read() == body
