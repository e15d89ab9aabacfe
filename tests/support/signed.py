"""Signed (or anonymous) raw S3 requests for the bucket/object API e2e suites.

boto3 hides the raw XML and refuses some inputs (negative max-keys, bodies without any
checksum); these helpers send exactly the bytes given, SigV4-signed by botocore.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from support.server import ACCESS_KEY, SECRET_KEY
from support.signing import sigv4_headers


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def query_string(params: dict[str, str]) -> str:
    """``k=v&...`` with both sides percent-encoded (nothing left literal but unreserved)."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())


def send(endpoint: str, method: str, target: str, *, body: bytes = b"",
         headers: dict[str, str] | None = None, sign: bool = True,
         access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY,
         timeout: float = 60) -> RawResponse:
    """Send ``method target`` (raw path + query, sent verbatim) over a fresh connection."""
    netloc = urlsplit(endpoint).netloc
    hdrs = {"Host": netloc, **(headers or {})}
    if sign:
        hdrs = sigv4_headers(method, netloc, target, body, hdrs, access_key, secret_key)
    conn = http.client.HTTPConnection(netloc, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in hdrs.items():
            conn.putheader(name, value)
        if method in ("PUT", "POST") or body:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()},
                           resp.read())
    finally:
        conn.close()
