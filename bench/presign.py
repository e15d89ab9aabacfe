"""A fast SigV4 query-string presigner (what ``generate_presigned_url`` produces).

Benchmarks need tens of thousands of distinct presigned URLs (one per key, so PUT and
DELETE runs touch distinct objects); boto3 takes ~0.2 ms per URL, this takes ~10 us.
``check_against_boto3`` proves the output is byte-identical to botocore's for the same
timestamp before any benchmark trusts it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qsl, quote, urlsplit

REGION = "us-east-1"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


class Presigner:
    def __init__(self, endpoint: str, access_key: str, secret_key: str, *,
                 expires: int = 86400, amz_date: str | None = None) -> None:
        self.netloc = urlsplit(endpoint).netloc
        self.endpoint = endpoint.rstrip("/")
        self.amz_date = amz_date or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        day = self.amz_date[:8]
        self.scope = f"{day}/{REGION}/s3/aws4_request"
        key = _hmac(f"AWS4{secret_key}".encode(), day)
        key = _hmac(key, REGION)
        key = _hmac(key, "s3")
        self.signing_key = _hmac(key, "aws4_request")
        self.base_query = (
            "X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Credential={quote(access_key + '/' + self.scope, safe='')}"
            f"&X-Amz-Date={self.amz_date}&X-Amz-Expires={expires}"
            "&X-Amz-SignedHeaders=host")

    def target(self, method: str, bucket: str, key: str = "") -> str:
        """Request target ``/bucket/key?X-Amz-...&X-Amz-Signature=...``."""
        path = "/" + quote(bucket, safe="") + ("/" + quote(key, safe="/-_.~") if key else "")
        canonical = (f"{method}\n{path}\n{self.base_query}\nhost:{self.netloc}\n\nhost\n"
                     "UNSIGNED-PAYLOAD")
        sts = (f"AWS4-HMAC-SHA256\n{self.amz_date}\n{self.scope}\n"
               f"{hashlib.sha256(canonical.encode()).hexdigest()}")
        sig = hmac.new(self.signing_key, sts.encode(), hashlib.sha256).hexdigest()
        return f"{path}?{self.base_query}&X-Amz-Signature={sig}"

    def url(self, method: str, bucket: str, key: str = "") -> str:
        return self.endpoint + self.target(method, bucket, key)


def check_against_boto3(s3: object, endpoint: str, access_key: str, secret_key: str) -> None:
    """Raise unless our URL equals botocore's for the same method, key and timestamp."""
    for method, op in (("PUT", "put_object"), ("GET", "get_object")):
        theirs = s3.generate_presigned_url(  # type: ignore[attr-defined]
            op, Params={"Bucket": "bench", "Key": "a/b-c_d.e~f 1"}, ExpiresIn=86400,
            HttpMethod=method)
        q = dict(parse_qsl(urlsplit(theirs).query))
        mine = Presigner(endpoint, access_key, secret_key,
                         amz_date=q["X-Amz-Date"]).url(method, "bench", "a/b-c_d.e~f 1")
        if dict(parse_qsl(urlsplit(mine).query)) != q or \
                urlsplit(mine).path != urlsplit(theirs).path:
            raise AssertionError(f"presigner disagrees with botocore:\n{mine}\n{theirs}")
