"""Hostile numbers, dates, transfer codings, chunked framing and response overrides
(issue 9 item 7): each case is its S3 4xx (or 501), never a 500, stores nothing, and the
server keeps serving. ``HUGE`` has more digits than Python's ``int()`` accepts (4,300).

Through nginx some of these never reach BleepStore: nginx answers them itself (its own
HTML 4xx/501, no request id); ``by_proxy`` accepts exactly that and nothing else.
"""

from __future__ import annotations

import http.client
import socket
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from support.chunked_signer import Signer
from support.clients import boto3_client
from support.signed import RawResponse, send

HUGE = "9" * 5000
UNSIGNED = "UNSIGNED-PAYLOAD"
MSG_PART = "Part number must be an integer between 1 and 10000, inclusive"
MSG_DATE = "AWS authentication requires a valid Date or x-amz-date header"


def code_of(resp: RawResponse) -> str:
    body = resp.body.decode(errors="replace")
    return body.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in body else ""


def by_proxy(server: Any, resp: RawResponse) -> bool:
    """nginx refused the request itself: BleepStore never saw it."""
    return (getattr(server, "via", None) == "nginx" and resp.status in (400, 411, 413, 501)
            and "x-amz-request-id" not in resp.headers)


def expect(resp: RawResponse, status: int, code: str, *fragments: str) -> None:
    assert (resp.status, code_of(resp)) == (status, code), (resp.status, resp.body[:600])
    assert resp.headers.get("x-amz-request-id"), resp.headers
    for fragment in fragments:
        assert fragment.encode() in resp.body, (fragment, resp.body[:600])


def assert_serving(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="after", Body=b"still serving")
    assert s3.get_object(Bucket=bucket, Key="after")["Body"].read() == b"still serving"


def keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


# --- numbers in the query -----------------------------------------------------------------

@pytest.mark.parametrize("query,name", [
    ("max-keys=H", "max-keys"), ("list-type=2&max-keys=H", "max-keys"),
    ("max-keys=-H", "max-keys"), ("uploads&max-uploads=H", "max-uploads"),
    ("uploadId=U&max-parts=H", "max-parts"),
    ("uploadId=U&part-number-marker=H", "part-number-marker"),
    ("max-buckets=H", "max-buckets"),
], ids=["v1", "v2", "negative", "uploads", "parts", "part-marker", "buckets"])
def test_huge_listing_numbers(server: Any, s3: Any, bucket: str, query: str,
                              name: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="u")["UploadId"]
    path = "/" if name == "max-buckets" else f"/{bucket}/u" if "uploadId" in query \
        else f"/{bucket}"
    target = f"{path}?{query.replace('=H', '=' + HUGE).replace('=U', '=' + uid)}"
    resp = send(server.endpoint, "GET", target)
    expect(resp, 400, "InvalidArgument", f"<ArgumentName>{name}</ArgumentName>")
    assert_serving(s3, bucket)


@pytest.mark.parametrize("value", [HUGE, "1" + "0" * 4400, "0" * 5000 + "1" + "0" * 5],
                         ids=["9s", "1e4400", "zero-padded"])
def test_huge_part_numbers(server: Any, s3: Any, bucket: str, value: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="p")["UploadId"]
    get = send(server.endpoint, "GET", f"/{bucket}/src?partNumber={value}")
    expect(get, 400, "InvalidArgument", MSG_PART, "<ArgumentName>partNumber</ArgumentName>")
    head = send(server.endpoint, "HEAD", f"/{bucket}/src?partNumber={value}")
    assert head.status == 400 and head.headers.get("x-amz-request-id")
    part = send(server.endpoint, "PUT", f"/{bucket}/p?partNumber={value}&uploadId={uid}",
                body=b"data")
    expect(part, 400, "InvalidArgument", MSG_PART)
    copy = send(server.endpoint, "PUT", f"/{bucket}/p?partNumber={value}&uploadId={uid}",
                headers={"x-amz-copy-source": f"/{bucket}/src"})
    expect(copy, 400, "InvalidArgument", MSG_PART)
    assert s3.list_parts(Bucket=bucket, Key="p", UploadId=uid).get("Parts", []) == []
    assert_serving(s3, bucket)


# --- numbers in headers ---------------------------------------------------------------------

@pytest.mark.parametrize("header,status,window", [
    (f"bytes={HUGE}-", 416, None),  # first byte past the end
    (f"bytes=0-{HUGE}", 206, (0, 9)),  # last byte clamped to the end
    (f"bytes=5-{HUGE}", 206, (5, 9)),
    (f"bytes=-{HUGE}", 206, (0, 9)),  # a suffix longer than the object: all of it
    (f"bytes={HUGE}-0", 200, None),  # first > last: the Range is ignored
    (f"bytes={HUGE}-{HUGE}", 416, None),
], ids=["huge-", "0-huge", "5-huge", "-huge", "huge-0", "huge-huge"])
def test_huge_ranges(server: Any, s3: Any, bucket: str, header: str, status: int,
                     window: tuple[int, int] | None) -> None:
    s3.put_object(Bucket=bucket, Key="r", Body=b"0123456789")
    resp = send(server.endpoint, "GET", f"/{bucket}/r", headers={"Range": header})
    assert resp.status == status, resp.body[:300]
    if status == 416:
        expect(resp, 416, "InvalidRange")
        assert resp.headers["content-range"] == "bytes */10"
    else:
        first, last = window or (0, 9)
        assert resp.body == b"0123456789"[first:last + 1]
    assert_serving(s3, bucket)


@pytest.mark.parametrize("value", [f"bytes=0-{HUGE}", f"bytes={HUGE}-{HUGE}",
                                   f"bytes={HUGE}-1", "bytes=0-99999999999999999999999"],
                         ids=["0-huge", "huge-huge", "huge-1", "0-2^76"])
def test_huge_copy_source_range(server: Any, s3: Any, bucket: str, value: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="p")["UploadId"]
    resp = send(server.endpoint, "PUT", f"/{bucket}/p?partNumber=1&uploadId={uid}",
                headers={"x-amz-copy-source": f"/{bucket}/src",
                         "x-amz-copy-source-range": value})
    expect(resp, 400, "InvalidArgument",
           "<ArgumentName>x-amz-copy-source-range</ArgumentName>")
    assert s3.list_parts(Bucket=bucket, Key="p", UploadId=uid).get("Parts", []) == []
    assert_serving(s3, bucket)


@pytest.mark.parametrize("who", ["user", "unknown key"])
def test_huge_presigned_expires(server: Any, s3: Any, bucket: str, who: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"secret")
    signer = s3 if who == "user" else boto3_client(server.endpoint, "AKIDNOTAUSER", "x" * 40)
    url = signer.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"},
                                        ExpiresIn=60)
    netloc = urlsplit(url).netloc
    target = url.split(netloc, 1)[1].replace("X-Amz-Expires=60", f"X-Amz-Expires={HUGE}")
    assert HUGE in target
    resp = send(server.endpoint, "GET", target, sign=False)
    expect(resp, 400, "AuthorizationQueryParametersError", "X-Amz-Expires should be a number")
    assert b"secret" not in resp.body
    assert_serving(s3, bucket)


def signed_put(server: Any, target: str, extra: dict[str, str],
               sha256: str = UNSIGNED) -> dict[str, str]:
    hdrs = {"Host": urlsplit(server.endpoint).netloc, "x-amz-content-sha256": sha256, **extra}
    Signer().sign("PUT", target, hdrs)
    return hdrs


def test_huge_decoded_content_length(server: Any, s3: Any, bucket: str) -> None:
    for value in (HUGE, "9" * 30):
        hdrs = signed_put(server, f"/{bucket}/dec", {
            "x-amz-decoded-content-length": value, "Content-Encoding": "aws-chunked"},
            sha256="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        resp = send(server.endpoint, "PUT", f"/{bucket}/dec", body=b"0\r\n\r\n", headers=hdrs,
                    sign=False)
        expect(resp, 400, "InvalidArgument",
               "<ArgumentName>x-amz-decoded-content-length</ArgumentName>")
    assert keys(s3, bucket) == []
    assert_serving(s3, bucket)


def raw_request(server: Any, head: str, body: bytes = b"", *,
                half_close: bool = False) -> RawResponse | None:
    """Send bytes as given; the response, or None when the server closed without one."""
    host, port = urlsplit(server.endpoint).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        try:
            sock.sendall(head.encode("latin-1") + body)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = http.client.HTTPResponse(sock, method=head.split(" ", 1)[0])
        try:
            resp.begin()
            data = resp.read()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return None
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)


def request_head(method: str, target: str, hdrs: dict[str, str]) -> str:
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in hdrs.items())]
    return "\r\n".join(lines) + "\r\n\r\n"


@pytest.mark.parametrize("length", ["9" * 30, HUGE], ids=["30-digits", "5000-digits"])
def test_huge_content_length(server: Any, s3: Any, bucket: str, length: str) -> None:
    hdrs = signed_put(server, f"/{bucket}/cl", {})
    hdrs["Content-Length"] = length
    resp = raw_request(server, request_head("PUT", f"/{bucket}/cl", hdrs))
    assert resp is not None
    if not by_proxy(server, resp):
        if length == HUGE:  # gunicorn's own parser refuses it before the application runs
            assert resp.status == 400 and "x-amz-request-id" not in resp.headers
        else:
            expect(resp, 400, "InvalidArgument", "<ArgumentName>Content-Length</ArgumentName>")
    assert keys(s3, bucket) == []
    assert_serving(s3, bucket)


# --- the Date header ------------------------------------------------------------------------

@pytest.mark.parametrize("date", ["Fri, 31 Dec 9999 23:59:59 -2359",
                                  "Fri, 31 Dec 9999 12:00:00 -1300",
                                  f"Fri, 31 Dec {HUGE} 23:59:59 GMT"],
                         ids=["9999-2359", "9999-1300", "huge-year"])
def test_date_out_of_datetime_range(server: Any, s3: Any, bucket: str, date: str) -> None:
    hdrs = {"Host": urlsplit(server.endpoint).netloc, "x-amz-content-sha256": UNSIGNED,
            "Date": date}
    Signer().sign("GET", f"/{bucket}", hdrs)
    resp = send(server.endpoint, "GET", f"/{bucket}", headers=hdrs, sign=False)
    expect(resp, 403, "AccessDenied", MSG_DATE)
    assert_serving(s3, bucket)


# --- chunked transfer coding ----------------------------------------------------------------

BROKEN_CHUNKED = [  # (case, body, client half-closes after it, S3 error code)
    ("bad size", b"zz\r\nhello\r\n0\r\n\r\n", False, "InvalidRequest"),
    ("negative size", b"-5\r\nhello\r\n0\r\n\r\n", False, "InvalidRequest"),
    ("missing terminator", b"5\r\nhelloXY0\r\n\r\n", False, "InvalidRequest"),
    ("bad extension", b"5;=\r\nhello\r\n0\r\n\r\n", False, "InvalidRequest"),
    ("truncated data", b"a\r\nhello", True, "IncompleteBody"),
    ("truncated size line", b"5\r\nhello\r\n", True, "IncompleteBody"),
    ("no final CRLF", b"5\r\nhello\r\n0\r\n", True, "IncompleteBody"),
]


def chunked_target(s3: Any, bucket: str, op: str) -> str:
    if op == "part":
        uid = s3.create_multipart_upload(Bucket=bucket, Key="obj")["UploadId"]
        return f"/{bucket}/obj?partNumber=1&uploadId={uid}"
    if op == "acl":
        s3.put_object(Bucket=bucket, Key="obj", Body=b"kept")
        return f"/{bucket}/obj?acl"
    return f"/{bucket}/obj"


def chunked_put(server: Any, target: str, body: bytes, *, coding: str = "chunked",
                half_close: bool = False) -> RawResponse | None:
    hdrs = signed_put(server, target, {})
    hdrs["Transfer-Encoding"] = coding  # not signed, as SDKs do
    return raw_request(server, request_head("PUT", target, hdrs), body, half_close=half_close)


def assert_nothing_stored(s3: Any, bucket: str, op: str) -> None:
    if op == "part":
        uid = s3.list_multipart_uploads(Bucket=bucket)["Uploads"][0]["UploadId"]
        assert s3.list_parts(Bucket=bucket, Key="obj", UploadId=uid).get("Parts", []) == []
    elif op == "acl":
        assert s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == b"kept"
        assert len(s3.get_object_acl(Bucket=bucket, Key="obj")["Grants"]) == 1
    else:
        assert keys(s3, bucket) == []


@pytest.mark.parametrize("op", ["put", "part", "acl"])
@pytest.mark.parametrize("case,body,half_close,code", BROKEN_CHUNKED,
                         ids=[c[0] for c in BROKEN_CHUNKED])
def test_broken_chunked_bodies(server: Any, s3: Any, bucket: str, op: str, case: str,
                               body: bytes, half_close: bool, code: str) -> None:
    resp = chunked_put(server, chunked_target(s3, bucket, op), body, half_close=half_close)
    proxied = getattr(server, "via", None) == "nginx"
    if proxied and case == "bad extension":  # nginx drops chunk extensions: a valid body
        assert resp is not None and resp.status in (200, 400), resp
        assert_serving(s3, bucket)
        return
    if resp is None:  # only nginx may drop a client that half-closed mid-body
        assert proxied and half_close, case
    elif not by_proxy(server, resp):
        expect(resp, 400, code)
    assert_nothing_stored(s3, bucket, op)
    assert_serving(s3, bucket)


def read_to_close(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    out = b""
    try:
        while data := sock.recv(65536):
            out += data
    except ConnectionResetError:  # closed with our unread bytes: the kernel sent a reset
        pass
    return out


def test_bytes_after_broken_framing_are_never_a_request(server: Any, s3: Any,
                                                       bucket: str) -> None:
    """Where the next request would start is unknown: one answer, then the server closes."""
    s3.put_object(Bucket=bucket, Key="victim", Body=b"keep me")
    netloc = urlsplit(server.endpoint).netloc
    hdrs = signed_put(server, f"/{bucket}/obj", {})
    hdrs["Transfer-Encoding"] = "chunked"
    smuggled = f"DELETE /{bucket}/victim HTTP/1.1\r\nHost: {netloc}\r\n\r\n".encode()
    host, port = netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request_head("PUT", f"/{bucket}/obj", hdrs).encode() + b"5\r\nhelloXY")
        sock.recv(1)  # the error response has started: the framing error was seen
        try:
            sock.sendall(smuggled)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_to_close(sock)
    assert b"HTTP/1.1 " not in answer  # recv(1) took the "H" of the only response
    assert answer.startswith(b"TTP/1.1 400") or answer == b"", answer[:300]  # b"": a reset
    assert s3.get_object(Bucket=bucket, Key="victim")["Body"].read() == b"keep me"
    assert keys(s3, bucket) == ["victim"]


@pytest.mark.parametrize("op", ["put", "part", "acl"])
@pytest.mark.parametrize("coding", ["gzip, chunked", "identity, chunked", "deflate, chunked",
                                    "compress,chunked"])
def test_transfer_codings_other_than_chunked(server: Any, s3: Any, bucket: str, op: str,
                                             coding: str) -> None:
    payload = b"\x1f\x8b\x08\x00 not really gzip"
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
    resp = chunked_put(server, chunked_target(s3, bucket, op), body, coding=coding)
    assert resp is not None
    if not by_proxy(server, resp):
        expect(resp, 501, "NotImplemented", "<Header>Transfer-Encoding</Header>",
               "A header you provided implies functionality that is not implemented")
    assert_nothing_stored(s3, bucket, op)
    assert_serving(s3, bucket)


def test_plain_chunked_still_works(server: Any, s3: Any, bucket: str) -> None:
    body = b"6\r\nhello \r\n7;ext=1\r\nchunked\r\n0\r\n\r\n"
    resp = chunked_put(server, f"/{bucket}/ok", body, coding="Chunked")
    assert resp is not None and resp.status == 200, resp
    assert s3.get_object(Bucket=bucket, Key="ok")["Body"].read() == b"hello chunked"


# --- response-* overrides -------------------------------------------------------------------

OVERRIDES = ["response-content-type", "response-content-language", "response-expires",
             "response-cache-control", "response-content-disposition",
             "response-content-encoding"]


@pytest.mark.parametrize("param", OVERRIDES)
@pytest.mark.parametrize("value", ["text/plain\r\nX-Injected: 1", "a\nb", "a\rb", "nul\x00",
                                   "esc\x1b[0m", "del\x7f"],
                         ids=["crlf", "lf", "cr", "nul", "esc", "del"])
def test_control_characters_in_response_overrides(server: Any, s3: Any, bucket: str,
                                                  param: str, value: str) -> None:
    s3.put_object(Bucket=bucket, Key="o", Body=b"body")
    target = f"/{bucket}/o?{param}={quote(value, safe='')}"
    resp = send(server.endpoint, "GET", target)
    expect(resp, 400, "InvalidArgument", f"<ArgumentName>{param}</ArgumentName>")
    assert "x-injected" not in resp.headers
    head = send(server.endpoint, "HEAD", target)
    assert head.status == 400 and "x-injected" not in head.headers
    assert_serving(s3, bucket)


def test_non_latin1_response_override_is_sent_as_utf8(server: Any, s3: Any,
                                                       bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="o", Body=b"body")
    value = 'attachment; filename="\u20ac-caf\u00e9.txt"'
    resp = send(server.endpoint, "GET",
                f"/{bucket}/o?response-content-disposition={quote(value, safe='')}"
                "&response-content-type=text%2Fplain%09charset")
    assert resp.status == 200 and resp.body == b"body", resp.body[:300]
    raw = resp.headers["content-disposition"].encode("latin-1")
    assert raw == value.encode("utf-8")
    assert resp.headers["content-type"] == "text/plain\tcharset"
