"""Authentication failures end to end (auth.md §1-§5, §11): each bad request gets its S3
error code and status, never a 500, and leaves nothing behind. Requests are signed by
botocore (header auth and presigned URLs), with its clock patched where the test needs a
request from the past or the future, and then altered by hand."""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from support.chunked_signer import Signer
from support.server import ACCESS_KEY, SECRET_KEY, Server
from support.signed import RawResponse, send


def code_of(resp: RawResponse) -> str:
    body = resp.body.decode()
    return body.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in body else ""


def element(resp: RawResponse, name: str) -> str | None:
    body = resp.body.decode()
    if f"<{name}>" not in body:
        return None
    return body.split(f"<{name}>", 1)[1].split(f"</{name}>", 1)[0]


def expect(resp: RawResponse, status: int, code: str) -> None:
    assert (resp.status, code_of(resp)) == (status, code), resp.body[:600]
    assert resp.headers["content-type"] == "application/xml"
    assert element(resp, "RequestId") == resp.headers["x-amz-request-id"]


@contextmanager
def clock(offset: timedelta) -> Iterator[None]:
    """botocore signs as if its clock were ``offset`` away from now (its Python signers and
    the awscrt-based ones it picks for presigning when awscrt is installed)."""
    when = datetime.now(UTC) + offset

    def fake_now(remove_tzinfo: bool = True) -> datetime:
        return when.replace(tzinfo=None) if remove_tzinfo else when

    with mock.patch("botocore.auth.get_current_datetime", fake_now), \
            mock.patch("botocore.crt.auth.get_current_datetime", fake_now):
        yield


def signed(server: Server, method: str, target: str, *, body: bytes = b"",
           headers: dict[str, str] | None = None, secret: str = SECRET_KEY,
           access_key: str = ACCESS_KEY, generic: bool = False) -> dict[str, str]:
    """Headers of ``method target`` signed by botocore (S3 signer; ``generic`` = the plain
    SigV4 signer, which leaves out x-amz-content-sha256)."""
    netloc = urlsplit(server.endpoint).netloc
    req = AWSRequest(method=method, url=f"http://{netloc}{target}", data=body,
                     headers={"Host": netloc, **(headers or {})})
    signer = SigV4Auth if generic else S3SigV4Auth
    signer(Credentials(access_key, secret), "s3", "us-east-1").add_auth(req)
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in req.headers.items()}


def assert_empty(s3: Any, bucket: str) -> None:
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_wrong_secret_put_is_rejected_and_nothing_stored(server: Server, s3: Any,
                                                         bucket: str) -> None:
    hdrs = signed(server, "PUT", f"/{bucket}/k", body=b"data", secret="not-the-secret")
    resp = send(server.endpoint, "PUT", f"/{bucket}/k", body=b"data", headers=hdrs, sign=False)
    expect(resp, 403, "SignatureDoesNotMatch")
    assert element(resp, "AWSAccessKeyId") == ACCESS_KEY
    assert element(resp, "SignatureProvided") == hdrs["Authorization"].rsplit("=", 1)[1]
    assert "AWS4-HMAC-SHA256" in (element(resp, "StringToSign") or "")
    assert element(resp, "CanonicalRequest") is not None
    assert_empty(s3, bucket)


def test_unknown_access_key(server: Server, s3: Any, bucket: str) -> None:
    resp = send(server.endpoint, "PUT", f"/{bucket}/k", body=b"x", access_key="AKNOBODY")
    expect(resp, 403, "InvalidAccessKeyId")
    assert element(resp, "AWSAccessKeyId") == "AKNOBODY"
    assert_empty(s3, bucket)


@pytest.mark.parametrize("minutes", [20, -20])
def test_skewed_clock_is_request_time_too_skewed(server: Server, s3: Any, bucket: str,
                                                 minutes: int) -> None:
    with clock(timedelta(minutes=minutes)):
        hdrs = signed(server, "PUT", f"/{bucket}/k", body=b"x")
    resp = send(server.endpoint, "PUT", f"/{bucket}/k", body=b"x", headers=hdrs, sign=False)
    expect(resp, 403, "RequestTimeTooSkewed")
    assert element(resp, "MaxAllowedSkewMilliseconds") == "900000"
    assert element(resp, "RequestTime") == hdrs["X-Amz-Date"]
    assert element(resp, "ServerTime") is not None
    assert_empty(s3, bucket)


def test_skew_within_limit_is_accepted(server: Server, s3: Any, bucket: str) -> None:
    with clock(timedelta(minutes=-10)):
        hdrs = signed(server, "PUT", f"/{bucket}/k", body=b"x")
    resp = send(server.endpoint, "PUT", f"/{bucket}/k", body=b"x", headers=hdrs, sign=False)
    assert resp.status == 200, resp.body


def test_missing_date_is_access_denied(server: Server, s3: Any, bucket: str) -> None:
    hdrs = signed(server, "GET", f"/{bucket}")
    del hdrs["X-Amz-Date"]
    resp = send(server.endpoint, "GET", f"/{bucket}", headers=hdrs, sign=False)
    expect(resp, 403, "AccessDenied")
    assert "Date" in (element(resp, "Message") or "")


def test_date_header_instead_of_x_amz_date(server: Server, s3: Any, bucket: str) -> None:
    signer = Signer()
    hdrs = {"Host": urlsplit(server.endpoint).netloc,
            "x-amz-content-sha256": hashlib.sha256(b"dated").hexdigest(),
            "Date": signer.now.strftime("%a, %d %b %Y %H:%M:%S GMT")}
    signer.sign("PUT", f"/{bucket}/d", hdrs)
    assert "x-amz-date" not in hdrs
    resp = send(server.endpoint, "PUT", f"/{bucket}/d", body=b"dated", headers=hdrs, sign=False)
    assert resp.status == 200, resp.body
    assert s3.get_object(Bucket=bucket, Key="d")["Body"].read() == b"dated"


def test_forged_sigv2_header_is_refused(server: Server, s3: Any, bucket: str) -> None:
    resp = send(server.endpoint, "GET", f"/{bucket}", sign=False,
                headers={"Authorization": f"AWS {ACCESS_KEY}:c2lnbmF0dXJl",
                         "Date": formatdate(usegmt=True)})
    expect(resp, 403, "SignatureDoesNotMatch")


def test_header_and_query_auth_together(server: Server, s3: Any, bucket: str) -> None:
    url = s3.generate_presigned_url("list_objects", Params={"Bucket": bucket}, ExpiresIn=60)
    target = url.split(urlsplit(url).netloc, 1)[1]
    hdrs = signed(server, "GET", f"/{bucket}")
    resp = send(server.endpoint, "GET", target, headers={"Authorization": hdrs["Authorization"]},
                sign=False)
    expect(resp, 400, "InvalidArgument")
    assert "Only one auth mechanism allowed" in (element(resp, "Message") or "")


def test_malformed_authorization(server: Server, s3: Any, bucket: str) -> None:
    hdrs = signed(server, "GET", f"/{bucket}")
    hdrs["Authorization"] = hdrs["Authorization"].replace("/s3/", "/ec2/")
    resp = send(server.endpoint, "GET", f"/{bucket}", headers=hdrs, sign=False)
    expect(resp, 400, "AuthorizationHeaderMalformed")


def test_signed_header_missing_from_request(server: Server, s3: Any, bucket: str) -> None:
    hdrs = signed(server, "PUT", f"/{bucket}/k", body=b"x", headers={"x-amz-meta-a": "1"})
    del hdrs["x-amz-meta-a"]
    resp = send(server.endpoint, "PUT", f"/{bucket}/k", body=b"x", headers=hdrs, sign=False)
    expect(resp, 403, "SignatureDoesNotMatch")
    assert_empty(s3, bucket)


def test_content_sha256_mismatch(server: Server, s3: Any, bucket: str) -> None:
    hdrs = signed(server, "PUT", f"/{bucket}/k", body=b"the signed body")
    resp = send(server.endpoint, "PUT", f"/{bucket}/k", body=b"another sent body",
                headers=hdrs, sign=False)
    expect(resp, 400, "XAmzContentSHA256Mismatch")
    assert element(resp, "ClientComputedContentSHA256") == hashlib.sha256(
        b"the signed body").hexdigest()
    assert element(resp, "S3ComputedContentSHA256") == hashlib.sha256(
        b"another sent body").hexdigest()
    assert_empty(s3, bucket)


@pytest.mark.parametrize("value,status,code", [
    ("not-a-hash", 400, "InvalidArgument"),
    ("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", 400, "InvalidArgument"),
    ("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", 501, "NotImplemented"),
])
def test_bad_content_sha256_value(server: Server, s3: Any, bucket: str, value: str,
                                  status: int, code: str) -> None:
    hdrs = signed(server, "PUT", f"/{bucket}/k")
    hdrs["X-Amz-Content-SHA256"] = value  # after signing: botocore would replace it
    resp = send(server.endpoint, "PUT", f"/{bucket}/k", headers=hdrs, sign=False)
    expect(resp, status, code)
    assert_empty(s3, bucket)


def test_generic_sigv4_signer_without_content_sha256(server: Server, s3: Any,
                                                     bucket: str) -> None:
    """[S3] header auth must declare x-amz-content-sha256 (auth.md §3.1 as amended, issue 9):
    without it the signature cannot be checked before the body, so nothing runs."""
    s3.put_object(Bucket=bucket, Key="g", Body=b"kept")
    for method, secret in (("PUT", SECRET_KEY), ("PUT", "wrong"), ("GET", "wrong"),
                           ("DELETE", SECRET_KEY)):
        hdrs = signed(server, method, f"/{bucket}/g", body=b"generic" if method == "PUT" else b"",
                      secret=secret, generic=True)
        assert "X-Amz-Content-SHA256" not in hdrs
        resp = send(server.endpoint, method, f"/{bucket}/g",
                    body=b"generic" if method == "PUT" else b"", headers=hdrs, sign=False)
        expect(resp, 400, "InvalidRequest")
        assert b"Missing required header for this request: x-amz-content-sha256" in resp.body
    assert s3.get_object(Bucket=bucket, Key="g")["Body"].read() == b"kept"


def test_security_token_is_ignored(server: Server, s3: Any, bucket: str) -> None:
    resp = send(server.endpoint, "PUT", f"/{bucket}/t", body=b"tok",
                headers={"x-amz-security-token": "FwoGZXIvYXdzEXAMPLE"})
    assert resp.status == 200, resp.body


def test_anonymous_is_denied_on_private_resources(server: Server, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"secret")
    expect(send(server.endpoint, "GET", f"/{bucket}/k", sign=False), 403, "AccessDenied")
    expect(send(server.endpoint, "GET", "/", sign=False), 403, "AccessDenied")
    expect(send(server.endpoint, "PUT", f"/{bucket}/new", body=b"x", sign=False), 403,
           "AccessDenied")
    expect(send(server.endpoint, "GET", "/no-such-bucket-anon/k", sign=False), 404,
           "NoSuchBucket")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]


# --- presigned URLs (§4) -------------------------------------------------------------------

def fetch(url: str, method: str = "GET", data: bytes | None = None) -> RawResponse:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()},
                               resp.read())
    except urllib.error.HTTPError as err:
        return RawResponse(err.code, {k.lower(): v for k, v in err.headers.items()},
                           err.read())


def presign(s3: Any, op: str, bucket: str, key: str, expires: int = 60,
            offset: timedelta = timedelta()) -> str:
    with clock(offset):
        return str(s3.generate_presigned_url(op, Params={"Bucket": bucket, "Key": key},
                                             ExpiresIn=expires))


def test_presigned_url_works_then_expires(server: Server, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="p", Body=b"presigned")
    assert fetch(presign(s3, "get_object", bucket, "p")).body == b"presigned"
    expired = fetch(presign(s3, "get_object", bucket, "p", 5, timedelta(minutes=-10)))
    expect(expired, 403, "AccessDenied")
    assert element(expired, "Message") == "Request has expired"
    assert element(expired, "X-Amz-Expires") == "5"
    assert element(expired, "Expires") is not None
    assert element(expired, "ServerTime") is not None


def test_presigned_url_not_yet_valid(server: Server, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="p", Body=b"x")
    resp = fetch(presign(s3, "get_object", bucket, "p", 60, timedelta(hours=1)))
    expect(resp, 403, "AccessDenied")
    assert element(resp, "Message") == "Request is not valid yet"


def test_presigned_put_expired_stores_nothing(server: Server, s3: Any, bucket: str) -> None:
    url = presign(s3, "put_object", bucket, "late", 1, timedelta(minutes=-5))
    expired = fetch(url, "PUT", b"too late")
    expect(expired, 403, "AccessDenied")  # as a GET: S3's body, elements in S3's order
    assert element(expired, "Message") == "Request has expired"
    assert element(expired, "X-Amz-Expires") == "1"
    body = expired.body.decode()
    assert (body.index("<X-Amz-Expires>") < body.index("<Expires>")
            < body.index("<ServerTime>") < body.index("<RequestId>"))
    assert_empty(s3, bucket)


@pytest.mark.parametrize("tamper", ["key", "expires", "signature", "credential-date"])
def test_tampered_presigned_url(server: Server, s3: Any, bucket: str, tamper: str) -> None:
    s3.put_object(Bucket=bucket, Key="p", Body=b"x")
    s3.put_object(Bucket=bucket, Key="q", Body=b"y")
    url = presign(s3, "get_object", bucket, "p", 60)
    if tamper == "key":
        url = url.replace(f"/{bucket}/p?", f"/{bucket}/q?")
        want = (403, "SignatureDoesNotMatch")
    elif tamper == "expires":
        url = url.replace("X-Amz-Expires=60", "X-Amz-Expires=61")
        want = (403, "SignatureDoesNotMatch")
    elif tamper == "signature":
        sig = url.rsplit("X-Amz-Signature=", 1)[1][:64]
        url = url.replace(sig, sig[:-1] + ("0" if sig[-1] != "0" else "1"))
        want = (403, "SignatureDoesNotMatch")
    else:
        url = url.replace("X-Amz-Credential=bleepstore%2F", "X-Amz-Credential=bleepstore%2F1")
        want = (400, "AuthorizationQueryParametersError")
    expect(fetch(url), *want)


def test_presigned_expiry_over_a_week(server: Server, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="p", Body=b"x")
    resp = fetch(presign(s3, "get_object", bucket, "p", 604801))
    expect(resp, 400, "AuthorizationQueryParametersError")
    assert "604800" in (element(resp, "Message") or "")
    assert fetch(presign(s3, "get_object", bucket, "p", 604800)).status == 200


# S3 refuses an X-Amz-Expires outside 0..604800 as a malformed parameter: 400
# AuthorizationQueryParametersError with its own message, not 403 AccessDenied; 0 is valid
# and already expired (docs/decisions.md).
@pytest.mark.parametrize("op,expires,message", [
    ("get_object", 604801, "X-Amz-Expires must be less than a week (in seconds); that is, "
                           "the given X-Amz-Expires must be less than 604800 seconds"),
    ("get_object", 609901, "X-Amz-Expires must be less than a week (in seconds); that is, "
                           "the given X-Amz-Expires must be less than 604800 seconds"),
    ("get_object", -7, "X-Amz-Expires must be non-negative"),
    ("put_object", -1000, "X-Amz-Expires must be non-negative"),
])
def test_presigned_expires_out_of_range_is_400(server: Server, s3: Any, bucket: str, op: str,
                                               expires: int, message: str) -> None:
    s3.put_object(Bucket=bucket, Key="p", Body=b"kept")
    url = presign(s3, op, bucket, "p", max(expires, 60))
    # botocore's CRT signer will not presign a value below 1: edit it in (the range is
    # checked before the signature, so the edit is not what is refused)
    url = url.replace("X-Amz-Expires=60&", f"X-Amz-Expires={expires}&")
    assert f"X-Amz-Expires={expires}&" in url
    resp = fetch(url, "PUT" if op == "put_object" else "GET",
                 b"overwrite" if op == "put_object" else None)
    expect(resp, 400, "AuthorizationQueryParametersError")
    assert element(resp, "Message") == message
    assert s3.get_object(Bucket=bucket, Key="p")["Body"].read() == b"kept"


def test_presigned_expires_zero_is_expired(server: Server, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="p", Body=b"x")
    url = presign(s3, "get_object", bucket, "p", 60, timedelta(seconds=-2))
    resp = fetch(url.replace("X-Amz-Expires=60&", "X-Amz-Expires=0&"))  # expiry before signature
    expect(resp, 403, "AccessDenied")
    assert element(resp, "Message") == "Request has expired"
    assert element(resp, "X-Amz-Expires") == "0"


def options(url: str, headers: dict[str, str]) -> RawResponse:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=30)
    try:
        conn.request("OPTIONS", f"{parts.path}?{parts.query}", headers=headers)
        resp = conn.getresponse()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()},
                           resp.read())
    finally:
        conn.close()


@pytest.mark.parametrize("op", ["get_object", "put_object"])
def test_options_on_presigned_url_is_a_refused_preflight(server: Server, s3: Any, bucket: str,
                                                         op: str) -> None:
    """OPTIONS is S3's CORS preflight, answered before the query signature is looked at:
    400 BadRequest without an Origin, 403 AccessForbidden with one (no CORS is
    configured). The URL itself keeps working (docs/decisions.md)."""
    s3.put_object(Bucket=bucket, Key="p", Body=b"presigned")
    url = presign(s3, op, bucket, "p", 600)
    resp = options(url, {})
    expect(resp, 400, "BadRequest")
    assert element(resp, "Message") == "Insufficient information. Origin request header needed."
    method = "PUT" if op == "put_object" else "GET"
    resp = options(url, {"Origin": "https://app.example", "Access-Control-Request-Method": method})
    expect(resp, 403, "AccessForbidden")
    assert element(resp, "Message") == "CORSResponse: CORS is not enabled for this bucket."
    assert (element(resp, "Method"), element(resp, "ResourceType")) == (method, "BUCKET")
    if op == "get_object":
        assert fetch(url).body == b"presigned"
    else:
        assert fetch(url, "PUT", b"new").status == 200
        assert s3.get_object(Bucket=bucket, Key="p")["Body"].read() == b"new"


def test_presigned_missing_parameter(server: Server, s3: Any, bucket: str) -> None:
    url = presign(s3, "get_object", bucket, "p", 60)
    url = "&".join(p for p in url.split("&") if not p.startswith("X-Amz-SignedHeaders="))
    expect(fetch(url), 400, "AuthorizationQueryParametersError")

