"""The Unix-socket link between a worker and its node's Raft sidecar (cluster.md §1).

Frames are a 4-byte big-endian length and a JSON object; one request, one answer, on a
connection a worker thread keeps (a thread never shares its socket, so answers cannot
cross). Invariants: every call is bounded by its timeout; any failure of the link closes
the thread's socket (the next call reconnects) and surfaces as ``SidecarUnavailable``,
after which the caller cannot know whether a submitted command was committed.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
from typing import Any

MAX_FRAME = 64 * 1024 * 1024  # a DeleteObjects of 1,000 long keys is ~1 MiB
_LENGTH = struct.Struct(">I")


class SidecarUnavailable(Exception):
    """No answer from the sidecar (not running, restarting, or too slow)."""


class FrameError(Exception):
    """A frame that is not a length-prefixed JSON object within MAX_FRAME."""


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(min(size - got, 1 << 20))
        if not chunk:
            raise ConnectionError("connection closed mid-frame" if got else "closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket) -> dict[str, Any]:
    (size,) = _LENGTH.unpack(_recv_exactly(sock, _LENGTH.size))
    if size > MAX_FRAME:
        raise FrameError(f"frame of {size} bytes")
    try:
        value = json.loads(_recv_exactly(sock, size))
    except ValueError as exc:
        raise FrameError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FrameError("not a JSON object")
    return value


def write_frame(sock: socket.socket, value: dict[str, Any]) -> None:
    body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes")
    sock.sendall(_LENGTH.pack(len(body)) + body)


class SidecarLink:
    """A worker's client: ``call(request, timeout)`` -> the sidecar's answer."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()

    def _socket(self, timeout: float) -> socket.socket:
        sock: socket.socket | None = getattr(self._local, "sock", None)
        if sock is None or getattr(self._local, "pid", None) != os.getpid():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(self.path)
            except OSError:
                sock.close()
                raise
            self._local.sock, self._local.pid = sock, os.getpid()
        sock.settimeout(timeout)
        return sock

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        try:
            sock = self._socket(timeout)
        except OSError as exc:
            raise SidecarUnavailable(f"cannot reach the raft sidecar at {self.path}: {exc}") \
                from None
        try:
            write_frame(sock, request)
            return read_frame(sock)
        except (OSError, FrameError, struct.error) as exc:
            self.close()
            raise SidecarUnavailable(f"raft sidecar link failed: {exc}") from None

    def close(self) -> None:
        sock = getattr(self._local, "sock", None)
        self._local.sock = None
        if sock is not None:
            sock.close()
