"""The partition proxy (tests/support/tcp_proxy.py) on real loopback sockets: forwarding,
cut, blackhole, heal and a clean close, against a threaded echo server."""

from __future__ import annotations

import gc
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import pytest
from support.server import free_port
from support.tcp_proxy import ProxyMode, TcpProxy

LINUX = sys.platform.startswith("linux")


class EchoServer:
    """Echoes every connection until EOF (then half-closes back); one thread each."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.accepted = 0
        self.resets = 0
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._serve, daemon=True, name="echo-accept")
        self._acceptor.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._echo, args=(conn,), daemon=True,
                                      name="echo-conn")
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
                self._threads.append(thread)
            thread.start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            except ConnectionResetError:
                with self._lock:
                    self.resets += 1
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RD)  # wakes accept() on Linux
        except OSError:
            pass
        self.listener.close()
        self._acceptor.join(5)
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(5)
        assert not self._acceptor.is_alive()
        assert not any(t.is_alive() for t in threads)


def eventually(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=2)


def round_trip(port: int, payload: bytes = b"hello, raft") -> None:
    with connect(port) as sock:
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = sock.recv(65536)
            assert chunk, "closed before the echo came back"
            got += chunk
        assert got == payload


def assert_dead_at_once(port: int) -> None:
    """A new connect through a cut proxy fails (refused on Linux) or is closed at once."""
    started = time.monotonic()
    if LINUX:
        with pytest.raises(ConnectionRefusedError):
            connect(port).close()
    else:
        try:
            sock = connect(port)
        except OSError:
            pass
        else:
            with sock:
                try:
                    assert sock.recv(1) == b""
                except OSError:
                    pass
    assert time.monotonic() - started < 0.5


def assert_reset(sock: socket.socket, within: float = 1.0) -> None:
    sock.settimeout(within)
    started = time.monotonic()
    with pytest.raises(ConnectionResetError):
        sock.recv(1)
    assert time.monotonic() - started < within


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[TcpProxy]:
    with TcpProxy(("127.0.0.1", echo.port)) as prox:
        yield prox


def test_forwards_and_counts(proxy: TcpProxy, echo: EchoServer) -> None:
    assert proxy.port and proxy.port != echo.port
    assert proxy.address == ("127.0.0.1", proxy.port)
    assert proxy.mode is ProxyMode.FORWARD
    round_trip(proxy.port, b"x" * 1000)
    round_trip(proxy.port, b"y" * 10)
    eventually(lambda: proxy.stats.active == 0)
    stats = proxy.stats
    assert (stats.accepted, stats.bytes_to_target, stats.bytes_to_client) == (2, 1010, 1010)
    assert (stats.aborted, stats.refused, stats.upstream_failures, stats.bytes_dropped) == (
        0, 0, 0, 0)
    assert echo.accepted == 2


def test_five_mib_both_ways_with_half_close(proxy: TcpProxy) -> None:
    payload = os.urandom(5 * 1024 * 1024)
    with connect(proxy.port) as sock:
        sock.settimeout(10)

        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)  # the echo server answers EOF with EOF

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        received = bytearray()
        while chunk := sock.recv(1 << 20):
            received += chunk
        sender.join(10)
        assert not sender.is_alive()
    assert received == payload
    eventually(lambda: proxy.stats.active == 0)
    stats = proxy.stats
    assert stats.bytes_to_target == stats.bytes_to_client == len(payload)


def test_explicit_listen_port_and_unstarted_proxy_refuses(echo: EchoServer) -> None:
    port = free_port()
    prox = TcpProxy(("127.0.0.1", echo.port), port)
    try:
        assert prox.port == port
        with pytest.raises(ConnectionRefusedError):  # bound, not yet listening
            connect(port).close()
        prox.start()
        round_trip(port)
    finally:
        prox.close()
    with pytest.raises(ConnectionRefusedError):
        connect(port).close()


def test_mode_set_before_start_applies_on_start(echo: EchoServer) -> None:
    prox = TcpProxy(("127.0.0.1", echo.port))
    prox.cut()
    with prox:
        assert prox.mode is ProxyMode.CUT
        assert_dead_at_once(prox.port)
        prox.heal()
        round_trip(prox.port)


def test_cut_resets_established_refuses_new_and_heal_restores(
        proxy: TcpProxy, echo: EchoServer) -> None:
    for cycle in range(3):  # partitions come and go during a cluster test
        sock = connect(proxy.port)
        with sock:
            sock.sendall(b"ping")
            assert sock.recv(4) == b"ping"
            failure: list[BaseException] = []
            failed_at: list[float] = []

            def blocked_read(s: socket.socket = sock, f: list[BaseException] = failure,
                             t: list[float] = failed_at) -> None:
                try:
                    s.recv(1)
                except OSError as exc:
                    f.append(exc)
                t.append(time.monotonic())

            sock.settimeout(3)
            reader = threading.Thread(target=blocked_read, daemon=True)
            reader.start()
            cut_at = time.monotonic()
            proxy.cut()
            reader.join(2)
            assert not reader.is_alive()
            assert failure and isinstance(failure[0], ConnectionResetError)
            assert failed_at[0] - cut_at < 1.0
        assert proxy.mode is ProxyMode.CUT
        eventually(lambda c=cycle: echo.resets == c + 1)  # the target side was reset too
        assert proxy.stats.active == 0
        assert_dead_at_once(proxy.port)
        assert_dead_at_once(proxy.port)
        if LINUX:  # the port stays reserved while cut, so heal() gets it back
            with socket.socket() as thief, pytest.raises(OSError):
                thief.bind(("127.0.0.1", proxy.port))
        proxy.heal()
        assert proxy.mode is ProxyMode.FORWARD
        round_trip(proxy.port)
        eventually(lambda: proxy.stats.active == 0)  # not left for the next cut()
    stats = proxy.stats
    assert stats.aborted == 3
    assert stats.accepted - stats.refused == 6  # 3 cut connections + 3 after heal


def test_blackhole_stalls_then_heal_resets_old_and_forwards_new(
        proxy: TcpProxy, echo: EchoServer) -> None:
    old = connect(proxy.port)
    with old:
        old.sendall(b"before")
        assert old.recv(6) == b"before"
        eventually(lambda: proxy.stats.bytes_to_client == 6)
        proxy.blackhole()
        assert proxy.mode is ProxyMode.BLACKHOLE

        old.sendall(b"lost")
        old.settimeout(0.5)
        with pytest.raises(TimeoutError):
            old.recv(1)
        newer = connect(proxy.port)  # still accepted: the peer only sees silence
        with newer:
            newer.sendall(b"also lost")
            newer.settimeout(0.5)
            with pytest.raises(TimeoutError):
                newer.recv(1)
            eventually(lambda: proxy.stats.bytes_dropped == len(b"lost") + len(b"also lost"))
            stats = proxy.stats
            assert stats.bytes_to_target == 6 and stats.bytes_to_client == 6
            assert stats.active == 2
            assert echo.accepted == 1  # the target never heard of the new connection
            assert echo.resets == 0  # nor of anything else

            proxy.heal()
            assert_reset(old)  # their streams lost bytes: reset, never resumed
            assert_reset(newer)
    round_trip(proxy.port)
    assert proxy.stats.aborted == 2


def test_unreachable_target_resets_client() -> None:
    with TcpProxy(("127.0.0.1", free_port())) as prox:
        try:
            sock = connect(prox.port)
        except ConnectionResetError:
            pass  # the reset can beat connect() home on loopback
        else:
            with sock:
                assert_reset(sock)
        eventually(lambda: (prox.stats.upstream_failures, prox.stats.active) == (1, 0))


def test_many_proxies_close_without_threads_or_resource_warnings() -> None:
    gc.collect()
    before = set(threading.enumerate())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        echo = EchoServer()
        chain: list[TcpProxy] = []
        target = echo.port
        for _ in range(8):  # proxy -> proxy -> ... -> echo
            chain.append(TcpProxy(("127.0.0.1", target)).start())
            target = chain[-1].port
        unstarted = TcpProxy(("127.0.0.1", echo.port))
        round_trip(chain[-1].port, os.urandom(256 * 1024))
        held = [connect(p.port) for p in chain]  # left open across close()
        for sock in held:
            sock.sendall(b"hi")
            assert sock.recv(2) == b"hi"
        chain[2].cut()
        chain[3].blackhole()
        ports = [p.port for p in chain]
        for prox in [*chain, unstarted]:
            prox.close()
            prox.close()  # idempotent
        with pytest.raises(RuntimeError):
            chain[0].heal()
        for port in ports:
            with pytest.raises(ConnectionRefusedError):
                connect(port).close()
        for sock in held:
            with sock:
                sock.settimeout(1)
                with pytest.raises(OSError):  # reset (or already reset by cut())
                    if sock.recv(1) == b"":
                        raise ConnectionResetError
        echo.close()
        del chain, unstarted, held, echo
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    leaked = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert not leaked
