"""A minimum request-body rate, enforced from outside the thread that reads the body.

Invariants: a body read blocked in ``recv()`` cannot time itself out while the client keeps
dribbling bytes (gunicorn's readers loop until the size asked for has arrived, and every
byte resets a socket timeout), so the worker's main loop calls ``sweep()`` about once a
second. It samples the kernel's count of bytes received on each socket whose body is being
read (``TCP_INFO``); when a whole window brought less than the minimum rate while nothing
sat unread in the socket (the server, not the client, being the slow side), it shuts the
socket's read side. The blocked read then returns at once and the request answers
``400 RequestTimeout``. Without ``TCP_INFO`` (a Unix socket) only the idle timeout applies.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# Set in every WSGI environ by BleepStore's gunicorn worker.
BODY_WATCH_KEY = "bleepstore.body_watch"
_TCPI_BYTES_RECEIVED = 128  # offset of the u64 tcpi_bytes_received in struct tcp_info


def tcp_bytes_received(sock: socket.socket) -> int | None:
    """Bytes the kernel has received on ``sock`` so far (Linux >= 4.1), else None."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except (OSError, AttributeError):
        return None
    if len(info) < _TCPI_BYTES_RECEIVED + 8:
        return None
    return int(struct.unpack_from("=Q", info, _TCPI_BYTES_RECEIVED)[0])


def unread_bytes(sock: socket.socket) -> int:
    """Bytes waiting in ``sock``'s receive queue (FIONREAD)."""
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int(struct.unpack("=i", raw)[0])


@dataclass
class _Window:
    sock: socket.socket
    started: float
    received: int
    tripped: bool = False


class BodyRateWatch:
    """Watches sockets between ``begin`` and ``end``; thread-safe."""

    def __init__(self, min_bytes_s: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.min_bytes_s = min_bytes_s
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[int, _Window] = {}

    def begin(self, sock: socket.socket) -> None:
        if self.min_bytes_s <= 0:
            return
        received = tcp_bytes_received(sock)
        if received is None:
            return
        with self._lock:
            self._windows[id(sock)] = _Window(sock, self._clock(), received)

    def end(self, sock: socket.socket) -> None:
        with self._lock:
            self._windows.pop(id(sock), None)

    def tripped(self, sock: socket.socket) -> bool:
        with self._lock:
            window = self._windows.get(id(sock))
        return window is not None and window.tripped

    def sweep(self) -> int:
        """Cut every body slower than the minimum over a full window; -> how many."""
        now = self._clock()
        with self._lock:
            windows = [w for w in self._windows.values() if not w.tripped]
        cut = 0
        for w in windows:
            elapsed = now - w.started
            if elapsed < self.window_s:
                continue
            received = tcp_bytes_received(w.sock)
            if received is None:
                continue
            if received - w.received < self.min_bytes_s * elapsed and unread_bytes(w.sock) == 0:
                w.tripped = True
                cut += 1
                try:
                    w.sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
            else:
                w.started, w.received = now, received
        return cut
