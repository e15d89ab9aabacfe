"""The gunicorn worker BleepStore runs: gthread, hardened against slow and idle clients.

gunicorn's gthread worker gives a connection to a pool thread as soon as it is readable
(or after 5 s of silence), and the thread then blocks until the whole request head has
arrived: a few clients sending a header line now and then held every thread of a default
server (issue 9). Here the main loop reads request heads itself, without blocking, and a
pool thread gets a connection only once its head is complete; a head not complete within
``server.header_timeout_s`` is dropped, so idle sockets cost an fd and no thread.
Connections closed with request bytes still unread linger in the main loop (FIN sent, input
discarded, bounded in time and bytes) instead of in a thread, so the client reads the
response instead of a reset. Bodies slower than the minimum rate are cut by
``BodyRateWatch``. ``100 Continue`` is sent by the app when it first reads a body (as
S3 does: once the request is authorised), never by gunicorn before the app has run;
``Expect`` values other than ``100-continue`` are ignored, as S3 does (no 417).

New connections are spread over the workers, and a worker well above its share hands
kept-alive ones back, by ``web/balance.py``'s ``BalancedThreadWorker``, which this worker
extends; a connection whose request head is still arriving does not count there.

Invariants: a pool thread only runs a request whose head is fully buffered; no main-loop
step blocks; a connection counts in ``nr_conns`` from accept until it stops serving.
"""

from __future__ import annotations

import errno
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent import futures
from functools import partial, wraps
from typing import Any, TypeVar

import gunicorn.http.wsgi
from gunicorn import util
from gunicorn.http.body import LengthReader
from gunicorn.http.message import Request
from gunicorn.workers.gthread import TConn

from bleepstore import cpus
from bleepstore.config import load
from bleepstore.gunicorn_response import GunicornResponse
from bleepstore.web.balance import BalancedThreadWorker
from bleepstore.web.bodyrate import BODY_WATCH_KEY, BodyRateWatch
from bleepstore.web.environ import CONTINUE_KEY

HEAD_END = b"\r\n\r\n"
HEAD_LIMIT = 64 * 1024  # AWS allows 8 KiB of request headers
RECV_SIZE = 64 * 1024
LINGER_S = 2.0
LINGER_LIMIT = 1024 * 1024
UNREAD_BODY_GRACE_S = 0.25  # a pool thread's drain of an unread body before keep-alive
UNREAD_BODY_LIMIT = 256 * 1024
F = TypeVar("F", bound=Callable[..., None])


def _guarded(method: F) -> F:
    """An event-loop step that fails drops its connection, never the loop: an exception
    escaping the loop would end the worker's accepting while its pool threads keep the
    process (and its listening socket) alive."""

    @wraps(method)
    def run(self: S3Worker, conn: TConn, *args: Any) -> None:
        try:
            method(self, conn, *args)
        except Exception:
            self.log.exception("event loop step %s failed; connection dropped",
                               method.__name__)
            if self._heads.pop(conn, None) is not None:
                self.nr_conns -= 1
            self._lingering.pop(conn, None)
            self._unregister(conn)
            util.close(conn.sock)

    return run  # type: ignore[return-value]


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _raise_fd_limit() -> None:
    """The soft limit on open files up to the hard one (as systemd's ``LimitNOFILE`` does):
    a GET of a completed multipart upload holds a descriptor per part (up to 10,000)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(soft, 1 << 16) if hard == resource.RLIM_INFINITY else hard
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _unread_beyond(req: Any, limit: int) -> bool:
    """The request's body still has more than ``limit`` bytes unread (known length only)."""
    reader = getattr(getattr(req, "body", None), "reader", None)
    return isinstance(reader, LengthReader) and reader.length > limit


class ContinueOnce:
    """Sends ``100 Continue`` on ``sock`` the first time it is called."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent = False

    def __call__(self) -> None:
        if not self.sent:
            self.sent = True
            self.sock.sendall(CONTINUE)


def _continue_for(req: Any, sock: socket.socket) -> ContinueOnce | None:
    """For an HTTP/1.1 request whose client waits for ``100 Continue``: the sender, left
    to the app's first body read; None when there is nothing to wait for."""
    if req.version is None or req.version < (1, 1):
        return None
    headers = {name: value for name, value in req.headers}
    if headers.get("EXPECT", "").strip().lower() != "100-continue":
        return None
    waiting = ContinueOnce(sock)
    if headers.get("CONTENT-LENGTH", "0").strip() == "0" and "TRANSFER-ENCODING" not in headers:
        # NOTE: no body to spare, so no reason to wait; and botocore, answered without a
        # 100 on a connection it keeps, parses its next response on it wrongly.
        waiting()
        return None
    return waiting


TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
             b"Content-Length: 0\r\n\r\n")


class S3Worker(BalancedThreadWorker):
    """gthread with request heads read by the main loop (see the module docstring)."""

    wsgi: Any

    def init_process(self) -> None:
        # NOTE: gunicorn would answer 100 Continue (or 417 to any other Expect value)
        # while parsing, before the app has authenticated anything; ContinueOnce instead.
        Request._policy_expect_continue = False
        self._local = threading.local()
        server = load().server
        self.header_timeout = float(server.header_timeout_s)
        self.body_watch = BodyRateWatch(server.min_body_rate_bytes_s,
                                        float(server.min_body_rate_window_s))
        self._heads: dict[TConn, float] = {}  # insertion order == deadline order
        self._lingering: dict[TConn, float] = {}
        _raise_fd_limit()
        self._pin()
        gunicorn.http.wsgi.Response = GunicornResponse
        super().init_process()

    def _pin(self) -> None:
        """Before any thread exists: this worker's threads on the CPU the master chose."""
        cpu = getattr(self, "bleepstore_cpu", None)
        if cpu is None:
            return
        try:
            cpus.pin(cpu)
        except OSError as exc:  # e.g. the CPU left this process's cpuset since the pick
            self.log.warning("not pinned to CPU %s: %s", cpu, exc)

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app: Any = self.wsgi
        watch = self.body_watch

        def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
            environ[BODY_WATCH_KEY] = watch
            waiting = getattr(self._local, "expect", None)
            req = getattr(self._local, "req", None)
            if waiting is not None:
                environ[CONTINUE_KEY] = waiting

            def start(status: str, headers: Any, exc_info: Any = None) -> Any:
                # NOTE: an answer that will end the connection must say so. A client still
                # holding back its body (Expect) may send it yet, and botocore reuses a
                # connection it was not told is closing, then misreads its next answer;
                # a body too large to drain for keep-alive (a refused upload) closes it,
                # and a proxy that pooled the connection would send the next request,
                # a PUT it cannot retry, into the closed socket (nginx: 502).
                if (waiting is not None and not waiting.sent) or _unread_beyond(
                        req, UNREAD_BODY_LIMIT) or (self._shed > 0 and self._take_shed()):
                    start_response.__self__.force_close()
                return start_response(status, headers, exc_info)

            return app(environ, start)

        self.wsgi = wsgi

    def _unserved(self) -> int:
        """Connections whose request head is still arriving do not count as served: idle
        sockets (a slow or hostile client's) get no response to close, and would only make
        this worker close honest clients' connections."""
        return len(self._heads)

    # --- request heads, read by the main loop ---------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        if self.cfg.is_ssl:
            super().accept(listener)
            return
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self._accepted()
        conn = TConn(self.cfg, sock, client, listener.getsockname())  # non-blocking
        self._await_head(conn, b"")

    @_guarded
    def on_client_socket_readable(self, conn: TConn, client: socket.socket) -> None:
        """A kept-alive connection has its next request coming."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._await_head(conn, b"", readable=True)

    def _await_head(self, conn: TConn, buffered: bytes, readable: bool = False) -> None:
        """Read the head of ``conn``'s next request, from ``buffered`` and, if ``readable``,
        the socket at once: the poller is only asked to watch a head still incomplete
        (most heads arrive whole, and go to a pool thread with no poller calls)."""
        conn.head = bytearray(buffered)
        conn.head_polled = False
        self._heads[conn] = time.monotonic() + self.header_timeout
        if readable:
            self._on_head_data(conn, conn.sock)
        elif buffered:
            self._check_head(conn)
        if conn in self._heads:
            self.poller.register(conn.sock, selectors.EVENT_READ,
                                 partial(self._on_head_data, conn))
            conn.head_polled = True

    @_guarded
    def _on_head_data(self, conn: TConn, sock: socket.socket) -> None:
        if conn not in self._heads:
            return
        try:
            data = sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._end_head(conn)
            self._close(conn)
            return
        conn.head += data
        self._check_head(conn)

    def _check_head(self, conn: TConn) -> None:
        head = conn.head
        while head.startswith(b"\r\n"):  # RFC 9112 §2.2: empty lines before a request
            del head[:2]
        if HEAD_END in head:
            self._end_head(conn)
            conn.init()  # blocking socket and a parser (kept-alive connections have one)
            conn.parser.unreader.unread(bytes(head))
            conn.head = bytearray()
            conn.data_ready = True
            self.enqueue_req(conn)
        elif len(head) > HEAD_LIMIT:
            self._end_head(conn)
            try:
                conn.sock.send(TOO_LARGE)
            except OSError:
                pass
            self.nr_conns -= 1
            self._linger(conn)

    def _unregister(self, conn: TConn) -> None:
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):  # not registered, or already closed
            pass

    def _end_head(self, conn: TConn) -> None:
        del self._heads[conn]
        if conn.head_polled:
            self._unregister(conn)

    def _close(self, conn: TConn) -> None:
        self.nr_conns -= 1
        util.close(conn.sock)

    # --- after a request ------------------------------------------------------------------

    def handle(self, conn: TConn) -> Any:
        try:
            return super().handle(conn)
        finally:
            self.body_watch.end(conn.sock)
            self._local.expect = self._local.req = None

    def handle_request(self, req: Any, conn: TConn) -> Any:
        self._local.expect = _continue_for(req, conn.sock)
        self._local.req = req
        return super().handle_request(req, conn)

    def _keepalive_after(self, conn: TConn, keepalive: bool) -> bool:
        """Keep the connection only if an unread body is gone at once (else close it:
        a pool thread must not wait for a body nobody wants). A client still waiting for
        100 Continue may send its body or not: the connection cannot be reused (botocore,
        answered without a 100, also misreads the next response on that connection)."""
        waiting = getattr(self._local, "expect", None)
        if not keepalive or (waiting is not None and not waiting.sent):
            return False
        deadline = time.monotonic() + UNREAD_BODY_GRACE_S
        return bool(conn.parser.finish_body(deadline=deadline, max_bytes=UNREAD_BODY_LIMIT))

    @_guarded
    def finish_request(self, conn: TConn, fs: futures.Future[Any]) -> None:
        """Main loop, after a pool thread served a request on ``conn``."""
        if self.cfg.is_ssl:  # TLS connections keep gunicorn's own path (accept() too)
            super().finish_request(conn, fs)
            return
        try:
            keepalive = bool(fs.result()) if not fs.cancelled() else False
        except Exception:
            keepalive = False
        if not (keepalive and self.alive):
            self.nr_conns -= 1
            self._linger(conn)
            return
        conn.sock.setblocking(False)
        pipelined = conn.parser.unreader.take_buffered()
        if pipelined:
            self._await_head(conn, pipelined)
            return
        conn.set_timeout()
        self.keepalived_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ,
                             partial(self.on_client_socket_readable, conn))

    # --- lingering close ------------------------------------------------------------------

    def _linger(self, conn: TConn) -> None:
        """Send FIN, then discard what the client still sends, briefly, then close."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
        except OSError:
            util.close(conn.sock)
            return
        conn.drained = 0
        self._lingering[conn] = time.monotonic() + LINGER_S
        self.poller.register(conn.sock, selectors.EVENT_READ,
                             partial(self._on_linger_data, conn))

    @_guarded
    def _on_linger_data(self, conn: TConn, sock: socket.socket) -> None:
        try:
            data = sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.drained += len(data)
        if not data or conn.drained > LINGER_LIMIT:
            self._end_linger(conn)

    def _end_linger(self, conn: TConn) -> None:
        self._lingering.pop(conn, None)
        self._unregister(conn)
        util.close(conn.sock)

    # --- timers (the main loop calls this at least once a second) -------------------------

    def murder_keepalived(self, force: bool = False) -> None:
        super().murder_keepalived(force)
        now = time.monotonic()
        for conn, deadline in list(self._heads.items()):
            if deadline > now and not force:
                break
            self._end_head(conn)
            self._close(conn)
        for conn, deadline in list(self._lingering.items()):
            if deadline > now and not force:
                break
            self._end_linger(conn)
        self.body_watch.sweep()
