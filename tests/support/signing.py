"""The one test-side header signer: botocore's S3 SigV4 over a raw request target."""

from __future__ import annotations

import hashlib

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from support.server import ACCESS_KEY, SECRET_KEY


def as_signed(value: str) -> str:
    """The text a client signs for a header ``value`` that http.client sends as latin-1
    bytes (a test writes raw UTF-8 that way): the UTF-8 reading of those bytes, which is
    what AWS and BleepStore canonicalise; other values as they are."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def sigv4_headers(method: str, host: str, target: str, body: bytes = b"",
                  headers: dict[str, str] | None = None, access_key: str = ACCESS_KEY,
                  secret_key: str = SECRET_KEY) -> dict[str, str]:
    """``headers`` (with ``Host``) plus the SigV4 ones for ``method target``; the payload
    hash is declared unless the caller already set ``x-amz-content-sha256``."""
    hdrs = {"Host": host, **(headers or {})}
    hdrs.setdefault("x-amz-content-sha256", hashlib.sha256(body).hexdigest())
    aws = AWSRequest(method=method, url=f"http://{host}{target}", data=body,
                     headers={k: as_signed(v) for k, v in hdrs.items()})
    S3SigV4Auth(Credentials(access_key, secret_key), "s3", "us-east-1").add_auth(aws)
    sent = {k.lower(): v for k, v in hdrs.items()}  # the values as they go on the wire
    return {k: sent.get(k.lower(), v.decode() if isinstance(v, bytes) else v)
            for k, v in aws.headers.items()}
