"""BodyRateWatch on real loopback TCP sockets, with a fake clock for the window."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import pytest

from bleepstore.web.bodyrate import BodyRateWatch, tcp_bytes_received, unread_bytes


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    try:
        yield client, server
    finally:
        client.close()
        server.close()


def _settle(server: socket.socket, count: int) -> None:
    """Wait (bounded) until the kernel has ``count`` more bytes on ``server``."""
    deadline = time.monotonic() + 5
    while unread_bytes(server) < count:
        assert time.monotonic() < deadline, "bytes did not arrive"
        select.select([server], [], [], 0.05)


def test_kernel_counters(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    before = tcp_bytes_received(server)
    assert before is not None
    client.sendall(b"x" * 1000)
    _settle(server, 1000)
    assert unread_bytes(server) == 1000
    assert tcp_bytes_received(server) == before + 1000


def test_a_slow_body_is_cut_after_a_full_window(pair: tuple[socket.socket, socket.socket]
                                                ) -> None:
    client, server = pair
    clock = Clock()
    watch = BodyRateWatch(1024, 10, clock=clock)
    watch.begin(server)
    client.sendall(b"x" * 100)
    _settle(server, 100)
    server.recv(100)
    clock.now += 5
    assert watch.sweep() == 0  # the window is not over yet
    clock.now += 5
    assert watch.sweep() == 1
    assert watch.tripped(server)
    assert server.recv(10) == b""  # the read side is shut: a blocked read returns
    watch.end(server)
    assert not watch.tripped(server)


def test_a_body_at_the_rate_is_kept(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    clock = Clock()
    watch = BodyRateWatch(1024, 10, clock=clock)
    watch.begin(server)
    for _ in range(3):
        client.sendall(b"x" * 11 * 1024)
        _settle(server, 11 * 1024)
        server.recv(11 * 1024)
        clock.now += 10
        assert watch.sweep() == 0
    assert not watch.tripped(server)


def test_unread_input_means_the_server_is_the_slow_side(
        pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    clock = Clock()
    watch = BodyRateWatch(1024 * 1024, 10, clock=clock)
    watch.begin(server)
    client.sendall(b"x" * 10)
    _settle(server, 10)
    clock.now += 20
    assert watch.sweep() == 0  # bytes wait in the socket: nothing to blame the client for


def test_off_when_the_minimum_is_zero(pair: tuple[socket.socket, socket.socket]) -> None:
    _, server = pair
    clock = Clock()
    watch = BodyRateWatch(0, 10, clock=clock)
    watch.begin(server)
    clock.now += 100
    assert watch.sweep() == 0
