"""A TCP proxy for network-partition tests: one real listening socket on loopback that
forwards every accepted connection to a target, and can cut, blackhole and heal the link.

Placed between each pair of cluster nodes (node A is told that node B lives at the proxy's
port), it makes partitions out of real sockets::

    with TcpProxy(("127.0.0.1", node_b_port)) as proxy:
        ...                      # give proxy.port to node A as B's address
        proxy.cut()              # A and B see resets; A's reconnects are refused
        proxy.heal()             # A's next connect goes through again
        proxy.blackhole()        # connections stay open, every byte is dropped
        proxy.heal()             # blackholed connections are reset, new ones forward

One daemon thread per proxy runs a ``selectors`` loop that owns every socket; ``cut()``,
``blackhole()``, ``heal()`` and ``close()`` are run by that thread and return once done, so
a test can act on the new state at once. Stdlib only.

Partition semantics, chosen for pysyncobj's TCP transport (a non-blocking connect, and a
node reported connected as soon as its outgoing connect completes):

* ``cut()`` closes both sides of every connection abortively (``SO_LINGER`` 0: the peers
  get a RST, not a FIN or silence) and stops listening while keeping the port bound, so a
  new connect is refused at once (RST to the SYN). A refused connect is the fastest dead
  peer pysyncobj can see, and unlike accept-then-reset it never reports the peer as
  connected for a moment. Where the platform cannot stop a listener and keep its port
  (Linux can), connections accepted while cut are reset on arrival instead.
* ``blackhole()`` keeps every connection open and keeps accepting, but reads and drops
  every byte either way (nothing, not even a FIN or RST, reaches the other side): peers
  only notice through their own timeouts. Bytes were lost, so ``heal()`` resets the
  connections that lived through the blackhole rather than resuming corrupt streams.
* A connection whose upstream connect fails (target down) is reset, as the target would.
"""

from __future__ import annotations

import enum
import errno
import selectors
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from types import TracebackType

__all__ = ["ProxyMode", "ProxyStats", "TcpProxy"]

_CHUNK = 64 * 1024
_HIGH_WATER = 1024 * 1024  # per direction: stop reading a side while this much is unsent
_BACKLOG = 128
_ACCEPTS_PER_WAKE = 64
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_LINGER_0 = struct.pack("ii", 1, 0)
_CONNECT_PENDING = {0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, errno.EINTR}
_WAKE = object()
_LISTENER = object()


class ProxyMode(enum.StrEnum):
    FORWARD = "forward"
    CUT = "cut"
    BLACKHOLE = "blackhole"


@dataclass(frozen=True)
class ProxyStats:
    """A snapshot of a proxy's counters since it was made."""

    bytes_to_target: int = 0  # client -> target, delivered to the upstream socket
    bytes_to_client: int = 0  # target -> client, delivered to the client socket
    bytes_dropped: int = 0  # read during a blackhole (or pending when it began) and dropped
    accepted: int = 0  # connections accepted from clients
    active: int = 0  # connections open now
    refused: int = 0  # accepted while cut and reset at once (platform fallback only)
    aborted: int = 0  # connections reset by cut(), by heal() after a blackhole, or close()
    upstream_failures: int = 0  # connects to the target that failed (client then reset)


def _abort(sock: socket.socket) -> None:
    """Close with a RST (SO_LINGER 0), so the peer sees a reset at once."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
    except OSError:
        pass
    sock.close()


def _nodelay(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


class _Flow:
    """One direction of a connection: bytes read from one side, not yet sent to the other."""

    __slots__ = ("buf", "eof", "shut")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.eof = False  # the source side sent FIN (or failed): read no more
        self.shut = False  # the FIN was passed on (shutdown(SHUT_WR) on the destination)


class _Link:
    __slots__ = ("client", "upstream", "connecting", "blackholed", "up", "down", "masks",
                 "closed")

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.connecting = False
        self.blackholed = False
        self.up = _Flow()  # client -> upstream
        self.down = _Flow()  # upstream -> client
        self.masks: dict[socket.socket, int] = {}
        self.closed = False


class _Command:
    __slots__ = ("fn", "done", "error")

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.error: BaseException | None = None


class TcpProxy:
    """Forward ``host:listen_port`` (0 picks a free port, see ``.port``) to ``target``.

    The port is bound at construction (so it can be handed out before ``start()``; until
    then connects are refused). ``close()`` (or leaving the ``with`` block) resets every
    connection, releases the port and joins the thread within ``timeout`` seconds.
    """

    def __init__(self, target: tuple[str, int], listen_port: int = 0, *,
                 host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.target = (target[0], int(target[1]))
        self.host = host
        self.timeout = timeout
        family, _, _, _, addr = socket.getaddrinfo(
            self.target[0], self.target[1], type=socket.SOCK_STREAM)[0]
        self._target_family = family
        self._target_addr = addr
        self._listen_family = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][0]

        # Guards start/stop, the command queue and the counters; re-entrant because a
        # command run inline (before start) updates counters.
        self._lock = threading.RLock()
        self._counts = dict.fromkeys((f.name for f in fields(ProxyStats)), 0)
        self._mode = ProxyMode.FORWARD
        self._links: set[_Link] = set()
        self._commands: deque[_Command] = deque()
        self._thread: threading.Thread | None = None
        self._started = False
        self._stopping = False
        self._closed = False
        self._error: BaseException | None = None
        self._listening = False

        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        try:
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._sel.register(self._wake_r, _READ, _WAKE)
            self._listener = self._bind(listen_port)
        except BaseException:
            self._sel.close()
            self._wake_r.close()
            self._wake_w.close()
            raise
        self.port: int = self._listener.getsockname()[1]

    # -- public API -------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def mode(self) -> ProxyMode:
        return self._mode

    @property
    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(**self._counts)

    def start(self) -> TcpProxy:
        with self._lock:
            if self._closed:
                raise RuntimeError("TcpProxy is closed")
            if self._started:
                raise RuntimeError("TcpProxy already started")
            self._started = True
            if self._mode is not ProxyMode.CUT:
                self._start_listening()
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"tcp-proxy-{self.port}")
            self._thread.start()
        return self

    def cut(self) -> None:
        """Partition: reset every connection (both sides) and refuse new ones until heal()."""
        self._submit(lambda: self._apply_mode(ProxyMode.CUT))

    def blackhole(self) -> None:
        """Partition: keep connections (and accepting), silently drop every byte."""
        self._submit(lambda: self._apply_mode(ProxyMode.BLACKHOLE))

    def heal(self) -> None:
        """Forward new connections again; connections that saw a blackhole are reset."""
        self._submit(lambda: self._apply_mode(ProxyMode.FORWARD))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stopping = True
            thread = self._thread
        if thread is None:
            self._teardown()
        else:
            self._wake()
            thread.join(self.timeout)
            if thread.is_alive():
                raise RuntimeError(f"{thread.name} did not stop within {self.timeout}s")
        if self._error is not None:
            raise RuntimeError(f"tcp proxy on port {self.port} failed") from self._error

    def __enter__(self) -> TcpProxy:
        if not self._started:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"TcpProxy({self.host}:{self.port} -> {self.target[0]}:{self.target[1]}, "
                f"{self._mode.value})")

    # -- control plumbing -------------------------------------------------------------

    def _bind(self, port: int) -> socket.socket:
        """A bound, non-listening socket. Bound to an explicit port so that it keeps the
        port while not listening (Linux frees an auto-bound port when listening stops):
        a port-0 socket finds a free port and a second one binds it explicitly (both with
        SO_REUSEADDR, neither listening, which Linux allows) before the first is closed."""
        finder: socket.socket | None = None
        if port == 0:
            finder = socket.socket(self._listen_family, socket.SOCK_STREAM)
            try:
                finder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                finder.bind((self.host, 0))
                port = finder.getsockname()[1]
            except BaseException:
                finder.close()
                raise
        sock = socket.socket(self._listen_family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, port))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        finally:
            if finder is not None:
                finder.close()
        return sock

    def _submit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop thread (inline when it is not running) and wait for it."""
        with self._lock:
            if self._closed:
                raise RuntimeError("TcpProxy is closed")
            if self._stopping:  # the loop thread ended on an error
                raise RuntimeError(f"tcp proxy on port {self.port} failed") from self._error
            if self._thread is None:  # not started: nothing runs concurrently
                fn()
                return
            command = _Command(fn)
            self._commands.append(command)
        self._wake()
        if not command.done.wait(self.timeout):
            raise TimeoutError(f"tcp proxy on port {self.port} did not answer")
        if command.error is not None:
            raise command.error

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # a wake-up is already pending
        except OSError:
            pass  # torn down

    def _run_commands(self) -> None:
        while True:
            with self._lock:
                if not self._commands:
                    return
                command = self._commands.popleft()
            try:
                command.fn()
            except BaseException as exc:  # handed to the caller
                command.error = exc
            finally:
                command.done.set()

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                self._counts[name] += delta

    # -- the loop (everything below runs on the loop thread, or before it starts) -----

    def _run(self) -> None:
        try:
            while not self._stopping:
                for key, events in self._sel.select():
                    data = key.data
                    if data is _WAKE:
                        self._drain_wake()
                        self._run_commands()
                    elif data is _LISTENER:
                        self._accept()
                    else:
                        assert isinstance(data, _Link) and isinstance(key.fileobj, socket.socket)
                        self._on_event(data, key.fileobj, events)
        except BaseException as exc:
            self._error = exc
        finally:
            with self._lock:
                self._stopping = True  # no new commands: _submit runs them inline now
            self._run_commands()
            self._teardown()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _teardown(self) -> None:
        for link in list(self._links):
            self._close_link(link, abortive=True, count_abort=True)
        if self._listening:
            self._sel.unregister(self._listener)
            self._listening = False
        self._listener.close()
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def _apply_mode(self, mode: ProxyMode) -> None:
        self._mode = mode
        if mode is ProxyMode.CUT:
            for link in list(self._links):
                self._close_link(link, abortive=True, count_abort=True)
            self._stop_listening()
            return
        if mode is ProxyMode.BLACKHOLE:
            for link in list(self._links):
                if not link.blackholed:
                    link.blackholed = True
                    dropped = len(link.up.buf) + len(link.down.buf)
                    link.up.buf.clear()
                    link.down.buf.clear()
                    self._count(bytes_dropped=dropped)
                    self._settle(link)
        else:
            for link in list(self._links):
                if link.blackholed:
                    self._close_link(link, abortive=True, count_abort=True)
        if self._started:
            self._start_listening()

    def _start_listening(self) -> None:
        if self._listening:
            return
        try:
            self._listener.listen(_BACKLOG)
        except OSError:  # cannot listen again after shutdown here: rebind the same port
            self._listener.close()
            self._listener = self._bind(self.port)
            self._listener.listen(_BACKLOG)
        self._sel.register(self._listener, _READ, _LISTENER)
        self._listening = True

    def _stop_listening(self) -> None:
        """Stop listening but keep the port: on Linux shutdown() on a listening socket
        resets its accept queue and leaves it bound; listen() works again afterwards."""
        if not self._listening:
            return
        try:
            self._listener.shutdown(socket.SHUT_RD)
        except OSError:
            pass
        try:
            still = bool(self._listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        except (OSError, AttributeError):
            still = True
        if still:
            return  # fallback: keep accepting, and _accept() resets what arrives
        self._sel.unregister(self._listener)
        self._listening = False

    def _accept(self) -> None:
        for _ in range(_ACCEPTS_PER_WAKE):
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # out of fds, or the listener just stopped
            self._count(accepted=1)
            if self._mode is ProxyMode.CUT:
                _abort(conn)
                self._count(refused=1)
                continue
            conn.setblocking(False)
            _nodelay(conn)
            link = _Link(conn)
            self._links.add(link)
            self._count(active=1)
            if self._mode is ProxyMode.BLACKHOLE:
                link.blackholed = True
                link.down.eof = True  # no upstream: the target never hears of it
            elif not self._connect_upstream(link):
                continue
            self._settle(link)

    def _connect_upstream(self, link: _Link) -> bool:
        try:
            up = socket.socket(self._target_family, socket.SOCK_STREAM)
        except OSError:
            self._count(upstream_failures=1)
            self._close_link(link, abortive=True)
            return False
        up.setblocking(False)
        err = up.connect_ex(self._target_addr)
        if err not in _CONNECT_PENDING:
            up.close()
            self._count(upstream_failures=1)
            self._close_link(link, abortive=True)
            return False
        link.upstream = up
        link.connecting = True
        return True

    def _finish_connect(self, link: _Link) -> None:
        up = link.upstream
        assert up is not None
        if up.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self._count(upstream_failures=1)
            if link.blackholed:  # nothing reaches the client during a blackhole
                self._set_mask(link, up, 0)
                up.close()
                link.upstream = None
                link.connecting = False
                link.down.eof = True
            else:
                self._close_link(link, abortive=True)
            return
        link.connecting = False
        _nodelay(up)

    def _on_event(self, link: _Link, sock: socket.socket, events: int) -> None:
        if link.closed or (sock is not link.client and sock is not link.upstream):
            return  # a stale event for a socket closed earlier in this batch
        if sock is link.upstream and link.connecting:
            if events & (_WRITE | _READ):
                self._finish_connect(link)
        else:
            if events & _READ:
                self._read(link, sock)
            if events & _WRITE and not link.closed:
                self._flush(link, link.down if sock is link.client else link.up)
        if not link.closed:
            self._settle(link)

    def _read(self, link: _Link, sock: socket.socket) -> None:
        flow = link.up if sock is link.client else link.down
        try:
            data = sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset by the peer
            if link.blackholed:
                flow.eof = True  # nothing is passed on during a blackhole
            else:
                self._close_link(link, abortive=True)  # pass the reset on
            return
        if not data:
            flow.eof = True
            if not link.blackholed:
                self._flush(link, flow)
            return
        if link.blackholed:
            self._count(bytes_dropped=len(data))
            return
        flow.buf += data
        self._flush(link, flow)

    def _flush(self, link: _Link, flow: _Flow) -> None:
        """Send what ``flow`` holds; pass its FIN on once everything is sent."""
        if link.blackholed:
            return
        if flow is link.up:
            dst, counter = link.upstream, "bytes_to_target"
            if link.connecting:
                return
        else:
            dst, counter = link.client, "bytes_to_client"
        assert dst is not None
        sent = 0
        while flow.buf:
            try:
                n = dst.send(flow.buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close_link(link, abortive=True)
                if sent:
                    self._count(**{counter: sent})
                return
            del flow.buf[:n]
            sent += n
        if sent:
            self._count(**{counter: sent})
        if flow.eof and not flow.buf and not flow.shut:
            flow.shut = True
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _settle(self, link: _Link) -> None:
        """Close a finished link, or register exactly the events its sockets wait for."""
        up, down = link.up, link.down
        if link.blackholed:
            if up.eof and down.eof:  # both peers gone: nothing left to hold open
                self._close_link(link, abortive=True)
                return
        elif up.eof and up.shut and down.eof and down.shut:
            self._close_link(link, abortive=False)
            return
        mask = 0
        if not up.eof and (link.blackholed or (not link.connecting and len(up.buf) < _HIGH_WATER)):
            mask |= _READ
        if not link.blackholed and down.buf:
            mask |= _WRITE
        self._set_mask(link, link.client, mask)
        if link.upstream is not None:
            if link.connecting:
                mask = _WRITE
            else:
                mask = 0
                if not down.eof and (link.blackholed or len(down.buf) < _HIGH_WATER):
                    mask |= _READ
                if not link.blackholed and up.buf:
                    mask |= _WRITE
            self._set_mask(link, link.upstream, mask)

    def _set_mask(self, link: _Link, sock: socket.socket, mask: int) -> None:
        current = link.masks.get(sock, 0)
        if mask == current:
            return
        if current == 0:
            self._sel.register(sock, mask, link)
        elif mask == 0:
            self._sel.unregister(sock)
        else:
            self._sel.modify(sock, mask, link)
        if mask:
            link.masks[sock] = mask
        else:
            link.masks.pop(sock, None)

    def _close_link(self, link: _Link, *, abortive: bool, count_abort: bool = False) -> None:
        if link.closed:
            return
        link.closed = True
        for sock in (link.client, link.upstream):
            if sock is None:
                continue
            if sock in link.masks:
                self._sel.unregister(sock)
            if abortive:
                _abort(sock)
            else:
                sock.close()
        link.masks.clear()
        link.upstream = None
        self._links.discard(link)
        self._count(active=-1, aborted=1 if count_abort else 0)
