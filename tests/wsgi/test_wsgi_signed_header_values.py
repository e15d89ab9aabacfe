"""Signed header values in process (webtest): a signed empty Content-Type, and non-ASCII
x-amz-meta-* values checked over the bytes the client sent (SigV4 and SigV2), stored and
returned as S3 returns them (RFC 2047)."""

from __future__ import annotations

import base64
from email.utils import formatdate

from botocore.auth import HmacV1Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from support.signing import sigv4_headers
from support.wsgiapp import ACCESS_KEY, HOST, SECRET_KEY, S3App

from bleepstore.web.environ import header_getter, signing_header_getter, wire_text

VALUE = "héllo à Å 中"  # à and Å hold bytes A0 and 85: Unicode spaces in latin-1


def latin1_view(text: str) -> str:
    """What a WSGI server hands over for a header whose bytes are ``text`` in UTF-8."""
    return text.encode().decode("latin-1")


def code(resp: object) -> str:
    body = getattr(resp, "body", b"").decode()
    return body.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in body else ""


def test_wire_text() -> None:
    assert wire_text("ascii") == "ascii"
    assert wire_text(latin1_view(VALUE)) == VALUE
    assert wire_text("caf\xe9").encode("utf-8", "surrogateescape") == b"caf\xe9"
    assert wire_text("中") == "中"  # not a latin-1 string: already text


def test_empty_content_type_is_a_header_that_was_sent() -> None:
    get = header_getter({"CONTENT_TYPE": "", "CONTENT_LENGTH": ""})
    assert get("content-type") == "" and get("content-length") is None
    assert header_getter({})("content-type") is None
    signed = signing_header_getter(header_getter({"HTTP_X_AMZ_META_M": latin1_view(VALUE)}))
    assert signed("x-amz-meta-m") == VALUE and signed("x-amz-meta-n") is None


def test_signed_empty_content_type(s3app: S3App) -> None:
    s3app.call("PUT", "/alpha")
    hdrs = sigv4_headers("PUT", HOST, "/alpha/k", b"x", {"Content-Type": ""},
                         ACCESS_KEY, SECRET_KEY)
    assert "content-type" in hdrs["Authorization"]
    put = s3app.call("PUT", "/alpha/k", body=b"x", headers=hdrs, sign=False)
    assert put.status_int == 200, put.body


def put_signed_meta(s3app: S3App, key: str, auth: str) -> object:
    """PUT with x-amz-meta-m signed over the value's UTF-8 (as botocore signs and sends
    it); the app sees the environ's latin-1 view of those bytes."""
    hdrs = {"Host": HOST, "x-amz-meta-m": VALUE}
    if auth == "v4":
        hdrs = sigv4_headers("PUT", HOST, f"/alpha/{key}", b"x", hdrs, ACCESS_KEY, SECRET_KEY)
    else:
        req = AWSRequest(method="PUT", url=f"http://{HOST}/alpha/{key}", data=b"x",
                         headers={**hdrs, "Date": formatdate(usegmt=True)})
        HmacV1Auth(Credentials(ACCESS_KEY, SECRET_KEY)).add_auth(req)
        hdrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in req.headers.items()}
    hdrs["x-amz-meta-m"] = latin1_view(VALUE)
    return s3app.call("PUT", f"/alpha/{key}", body=b"x", headers=hdrs, sign=False)


def test_non_ascii_metadata_signed_over_its_bytes(s3app: S3App) -> None:
    s3app.call("PUT", "/alpha")
    for auth in ("v4", "v2"):
        put = put_signed_meta(s3app, auth, auth)
        assert getattr(put, "status_int", 0) == 200, (auth, code(put), getattr(put, "body", b""))
        head = s3app.call("HEAD", f"/alpha/{auth}")
        returned = head.headers["x-amz-meta-m"]
        # [S3] RFC 2047, over S3's ISO-8859-1 reading of the bytes (docs/decisions.md)
        assert returned == "=?UTF-8?B?" + base64.b64encode(
            latin1_view(VALUE).encode()).decode() + "?="
        assert s3app.call("GET", f"/alpha/{auth}").headers["x-amz-meta-m"] == returned


def test_non_ascii_metadata_signed_over_other_bytes_is_refused(s3app: S3App) -> None:
    s3app.call("PUT", "/alpha")
    hdrs = sigv4_headers("PUT", HOST, "/alpha/k", b"x", {"x-amz-meta-m": VALUE},
                         ACCESS_KEY, SECRET_KEY)
    hdrs["x-amz-meta-m"] = latin1_view("hèllo 中")
    put = s3app.call("PUT", "/alpha/k", body=b"x", headers=hdrs, sign=False)
    assert (put.status_int, code(put)) == (403, "SignatureDoesNotMatch")
