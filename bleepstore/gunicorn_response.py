"""The HTTP/1 response gunicorn writes for each worker request: gunicorn's own, with a
``Date`` header formatted once a second and ``sendfile`` of blobs made of several files."""

from __future__ import annotations

import email.utils
import errno
import os
import time
from typing import Any

from gunicorn.http.wsgi import Response

_date: tuple[int, str] = (-1, "")


def http_date_now() -> str:
    """The ``Date`` header value, formatted once a second instead of once a response."""
    global _date
    now = int(time.time())
    cached = _date
    if cached[0] != now:
        cached = _date = (now, email.utils.formatdate(now, usegmt=True))
    return cached[1]


class GunicornResponse(Response):  # type: ignore[misc]
    """gunicorn's HTTP/1 response with a cached ``Date`` and ``sendfile`` of composite
    blobs. Installed as ``gunicorn.http.wsgi.Response`` in each worker: ``wsgi.create``
    builds every HTTP/1 response from that name."""

    def default_headers(self) -> list[str]:
        if self.upgrade:
            connection = "upgrade"
        elif self.should_close():
            connection = "close"
        else:
            connection = "keep-alive"
        major, minor = self.req.version
        headers = [f"HTTP/{major}.{minor} {self.status}\r\n", f"Server: {self.version}\r\n",
                   f"Date: {http_date_now()}\r\n", f"Connection: {connection}\r\n"]
        if self.chunked:
            headers.append("Transfer-Encoding: chunked\r\n")
        return headers

    def write_file(self, respiter: Any) -> None:
        """gunicorn's ``write_file``, and ``sendfile`` span by span for a body made of
        several files (a composite blob, storage/composite.py), which gunicorn would copy
        through Python in 8 KiB reads."""
        spans = getattr(respiter.filelike, "sendfile_spans", None)
        if spans is None or self.cfg.is_ssl or not self.can_sendfile() or self.is_chunked():
            super().write_file(respiter)
            return
        self.send_headers()
        if getattr(self, "_omits_body", False):
            return
        out = self.sock.fileno()  # blocking while a pool thread serves it (gthread)
        for fd, offset, count in spans():
            while count > 0:
                sent = os.sendfile(out, fd, offset, count)
                if sent == 0:
                    raise OSError(errno.EIO, "a blob file is shorter than its name says")
                offset, count = offset + sent, count - sent
