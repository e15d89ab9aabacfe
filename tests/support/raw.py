"""Raw HTTP requests to the test server, SigV4-signed unless ``sign=False``: for inputs an
SDK will not send (virtual-host ``Host`` headers, unknown sub-resources, odd bodies)."""

from __future__ import annotations

import http.client
import urllib.parse
from dataclasses import dataclass

from support.server import ACCESS_KEY, SECRET_KEY
from support.signing import sigv4_headers


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def send(endpoint: str, method: str, path: str, *, host: str | None = None,
         sign: bool = True, body: bytes = b"", headers: dict[str, str] | None = None,
         access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY,
         unsigned: dict[str, str] | None = None, source: str | None = None) -> Response:
    """One request over a fresh connection; ``path`` is sent exactly as given.
    ``unsigned``: headers added after signing (a proxy may rewrite them); ``source``:
    the local address to connect from."""
    netloc = urllib.parse.urlsplit(endpoint).netloc
    hdrs = {"Host": host or netloc, **(headers or {})}
    if sign:
        hdrs = sigv4_headers(method, hdrs["Host"], path, body, hdrs, access_key, secret_key)
    hdrs.update(unsigned or {})
    conn = http.client.HTTPConnection(netloc, timeout=60,
                                      source_address=(source, 0) if source else None)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in hdrs.items():
            conn.putheader(name, value)
        if body or method in ("PUT", "POST"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()
