"""Raw HTTP requests to the test server, SigV4-signed unless ``sign=False``: for inputs an
SDK will not send (virtual-host ``Host`` headers, unknown sub-resources, odd bodies)."""

from __future__ import annotations

import hashlib
import http.client
import urllib.parse
from dataclasses import dataclass

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from support.server import ACCESS_KEY, SECRET_KEY


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def send(endpoint: str, method: str, path: str, *, host: str | None = None,
         sign: bool = True, body: bytes = b"", headers: dict[str, str] | None = None,
         access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> Response:
    """One request over a fresh connection; ``path`` is sent exactly as given."""
    netloc = urllib.parse.urlsplit(endpoint).netloc
    hdrs = {"Host": host or netloc, **(headers or {})}
    if sign:
        hdrs.setdefault("x-amz-content-sha256", hashlib.sha256(body).hexdigest())
        aws = AWSRequest(method=method, url=f"http://{hdrs['Host']}{path}", data=body,
                         headers=hdrs)
        S3SigV4Auth(Credentials(access_key, secret_key), "s3", "us-east-1").add_auth(aws)
        hdrs = dict(aws.headers.items())
    conn = http.client.HTTPConnection(netloc, timeout=60)
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
