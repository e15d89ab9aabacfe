"""Hostile input end to end ("crash-only for real"): stalled bodies, lying lengths, XML
bombs on every XML-taking operation, oversized request lines and headers, out-of-range
query values, path traversal in every form, replayed presigned URLs, and rows whose blob
vanished. Each case gets its S3 error (never a 500 unless the spec says so), leaves
nothing behind, and the server keeps serving. What other e2e files already cover (short
bodies, awkward keys, max-keys, partNumber on PUT, tampered presigned GET) is not redone.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from support.chunked_signer import Signer
from support.clients import boto3_client
from support.layout import ALLOWED
from support.server import ACCESS_KEY, SECRET_KEY, Server
from support.signed import RawResponse, send

BODY_TIMEOUT_S = 2
MIB = 1024 * 1024


def code_of(resp: RawResponse) -> str:
    body = resp.body.decode(errors="replace")
    return body.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in body else ""


def by_nginx(server: Any, status: int, headers: dict[str, str]) -> bool:
    """nginx answers some hostile targets itself (HTML 4xx, no request id)."""
    return (getattr(server, "via", None) == "nginx" and 400 <= status < 500
            and "x-amz-request-id" not in headers)


def expect(resp: RawResponse, status: int, code: str) -> None:
    assert (resp.status, code_of(resp)) == (status, code), resp.body[:600]
    assert resp.headers.get("x-amz-request-id"), resp.headers


def unsigned_put_head(endpoint: str, target: str, length: int) -> bytes:
    """Request head of an UNSIGNED-PAYLOAD PUT declaring ``length`` body bytes."""
    hdrs = {"Host": urlsplit(endpoint).netloc, "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
    Signer().sign("PUT", target, hdrs)
    hdrs["Content-Length"] = str(length)
    lines = [f"PUT {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in hdrs.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    out = b""
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return out
        if not data:
            return out
        out += data


def read_responses(sock: socket.socket, count: int, timeout: float = 10) -> bytes:
    """Read until ``count`` response heads arrived (or the server closed / went quiet)."""
    sock.settimeout(timeout)
    out = b""
    while out.count(b"HTTP/1.1 ") < count or b"\r\n\r\n" not in out.rsplit(b"HTTP/1.1 ", 1)[1]:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return out
        if not data:
            return out
        out += data
    return out


def data_files(root: Path) -> list[str]:
    """Every file under the server root, checked to be a data file with a blob-id name."""
    found = []
    for path in root.rglob("*"):
        if not (path.is_file() or path.is_symlink()):
            continue
        assert path.resolve().is_relative_to(root.resolve()), path
        rel = path.relative_to(root).as_posix()
        if rel in ("bleepstore.yaml", "server.log"):
            continue
        assert rel.startswith("data/") and any(p.fullmatch(rel[5:]) for p in ALLOWED), rel
        found.append(rel)
    return found


# --- a dedicated small server: 2 threads, 2 s body timeout, 1 s maintenance ---------------

@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("hostile"), workers=1, threads=2, extra_config={
        "server": {"body_read_timeout_s": BODY_TIMEOUT_S},
        "storage": {"maintenance_interval_s": 1}})
    srv.start()
    yield srv
    srv.stop()


def test_stalled_bodies_time_out_and_free_the_threads(tight: Server) -> None:
    s3 = boto3_client(tight.endpoint)
    s3.create_bucket(Bucket="stall")
    netloc = urlsplit(tight.endpoint).netloc.split(":")
    stalled = []
    for i in range(2):  # as many stalled clients as the worker has threads
        sock = socket.create_connection((netloc[0], int(netloc[1])), timeout=10)
        sock.sendall(unsigned_put_head(tight.endpoint, f"/stall/s{i}", 10 * MIB))
        sock.sendall(b"x" * MIB)  # then silence, without closing
        stalled.append(sock)
    tmp = tight.data / "objects" / ".tmp"
    deadline = time.monotonic() + BODY_TIMEOUT_S
    while not any(tmp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(tmp.iterdir()), "the stalled uploads were never staged"
    start = time.monotonic()
    s3.put_object(Bucket="stall", Key="third", Body=b"served")  # needs a freed thread
    assert time.monotonic() - start < BODY_TIMEOUT_S + 4
    for sock in stalled:
        answer = read_until_closed(sock, BODY_TIMEOUT_S + 5)  # must end: closed by server
        sock.close()
        assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
        assert b"<Code>RequestTimeout</Code>" in answer
        assert (b"not read from or written to within the timeout period") in answer
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="stall")["Contents"]] == ["third"]
    assert list(tmp.iterdir()) == []
    data_files(tight.root)


def test_missing_blob_is_reported_and_reads_fail_fast(tight: Server) -> None:
    s3 = boto3_client(tight.endpoint)
    s3.create_bucket(Bucket="rot")
    s3.put_object(Bucket="rot", Key="gone", Body=b"soon missing" * 8000)  # a file: > inline
    s3.put_object(Bucket="rot", Key="fine", Body=b"still here")
    with sqlite3.connect(tight.db_path) as conn:
        (ref,) = conn.execute("SELECT data_ref FROM objects WHERE key = 'gone'").fetchone()
    (tight.data / "objects" / ref).unlink()  # behind the server's back
    report: dict[str, Any] = {}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        report = json.loads(send(tight.endpoint, "GET", "/health", sign=False).body)
        if report["checks"]["storage"].get("missing_blobs"):
            break
        time.sleep(0.2)
    storage = report["checks"]["storage"]
    assert (storage["status"], storage.get("missing_blobs")) == ("ok", 1), report
    with sqlite3.connect(tight.db_path) as conn:
        (meta,) = conn.execute("SELECT value FROM node_meta WHERE key = 'missing_blobs'"
                               ).fetchone()
    assert json.loads(meta)["refs"] == [ref]
    errors_logged = [line for line in tight.log_text().splitlines()
                     if ref in line and '"ERROR"' in line]
    assert len(errors_logged) == 1, tight.log_text()[-2000:]  # once, not every pass
    start = time.monotonic()
    resp = send(tight.endpoint, "GET", "/rot/gone", timeout=10)
    assert time.monotonic() - start < 5
    expect(resp, 500, "InternalError")
    assert b"soon missing" not in resp.body
    assert s3.get_object(Bucket="rot", Key="fine")["Body"].read() == b"still here"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="rot")["Contents"]]
    assert keys == ["fine", "gone"]  # the corrupt row is reported, never silently dropped


# --- lying Content-Length -------------------------------------------------------------------

def test_content_length_shorter_than_sent_bytes(server: Any, s3: Any, bucket: str) -> None:
    """The bytes past Content-Length are the next request on the connection, never part of
    the object; here they form an unsigned DELETE that must be judged on its own."""
    s3.put_object(Bucket=bucket, Key="victim", Body=b"keep me")
    netloc = urlsplit(server.endpoint).netloc
    head = unsigned_put_head(server.endpoint, f"/{bucket}/liar", 5)
    smuggled = f"DELETE /{bucket}/victim HTTP/1.1\r\nHost: {netloc}\r\n\r\n".encode()
    host, port = netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + b"hello" + smuggled)
        answer = read_responses(sock, 2)
    first, _, rest = answer.partition(b"HTTP/1.1 ")[2].partition(b"HTTP/1.1 ")
    assert first.startswith(b"200"), answer[:500]
    assert rest[:3] in (b"403", b"400"), answer[:1000]  # anonymous DELETE, or refused
    got = s3.get_object(Bucket=bucket, Key="liar")
    assert got["Body"].read() == b"hello"
    assert got["ETag"] == '"' + hashlib.md5(b"hello").hexdigest() + '"'
    assert s3.get_object(Bucket=bucket, Key="victim")["Body"].read() == b"keep me"


# --- XML bombs and caps on every XML-taking operation -----------------------------------------

LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;")
                                                 * 10) for i in range(1, 10))
          + b"]>")
XXE = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'


def bombs(root: str, inner: bytes) -> list[tuple[str, bytes]]:
    """(name, body) pairs of hostile documents shaped like ``<root>inner</root>``."""
    r = root.encode()
    return [
        ("laughs", LAUGHS + b"<%s>&lol9;%s</%s>" % (r, inner, r)),
        ("xxe", XXE + b"<%s>&xxe;%s</%s>" % (r, inner, r)),
        ("nested", b"<%s>" % r + b"<a>" * 50_000 + b"</a>" * 50_000 + b"</%s>" % r),
        ("truncated", b"<%s>%s" % (r, inner[: len(inner) // 2])),
        ("binary", b"\x00\xff\xfe<" + os.urandom(64)),
    ]


def xml_send(server: Any, target: str, body: bytes, md5: bool = False,
             method: str = "PUT") -> RawResponse:
    headers = {"Content-MD5": base64.b64encode(hashlib.md5(body).digest())
               .decode()} if md5 else {}
    return send(server.endpoint, method, target, body=body, headers=headers)


def assert_xml_case(resp: RawResponse, name: str, code: str) -> None:
    assert b"root:" not in resp.body and b"/bin/" not in resp.body, resp.body[:600]
    assert resp.status != 500, (name, resp.body[:600])
    assert (resp.status, code_of(resp)) == (400, code), (name, resp.body[:600])


def policy(me: str) -> bytes:
    return (f'<AccessControlPolicy><Owner><ID>{me}</ID></Owner><AccessControlList>'
            '</AccessControlList></AccessControlPolicy>').encode()


@pytest.mark.parametrize("op", ["create_bucket", "bucket_acl", "object_acl", "delete_objects"])
def test_xml_bombs_and_the_2_mib_cap(server: Any, s3: Any, bucket: str, op: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    me = s3.list_buckets()["Owner"]["ID"]
    target, root, inner, code, md5 = {
        "create_bucket": ("/hostile-new-bucket", "CreateBucketConfiguration",
                          b"<LocationConstraint>us-east-1</LocationConstraint>", "MalformedXML",
                          False),
        "bucket_acl": (f"/{bucket}?acl", "AccessControlPolicy", policy(me),
                       "MalformedACLError", False),
        "object_acl": (f"/{bucket}/k?acl", "AccessControlPolicy", policy(me),
                       "MalformedACLError", False),
        "delete_objects": (f"/{bucket}?delete", "Delete", b"<Object><Key>k</Key></Object>",
                           "MalformedXML", True),
    }[op]
    method = "POST" if op == "delete_objects" else "PUT"
    for name, body in bombs(root, inner):
        assert_xml_case(xml_send(server, target, body, md5, method), name, code)
    over = b"<%s>" % root.encode() + b" " * (2 * MIB) + b"</%s>" % root.encode()
    assert_xml_case(xml_send(server, target, over, md5, method), "over", "MaxMessageLengthExceeded")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert names == [bucket]  # no bucket was created by a hostile CreateBucket
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    grants = s3.get_object_acl(Bucket=bucket, Key="k")["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]


def test_complete_multipart_xml_bombs_and_the_8_mib_cap(server: Any, s3: Any,
                                                        bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="m", UploadId=uid, PartNumber=1,
                          Body=b"part")["ETag"]
    target = f"/{bucket}/m?uploadId={uid}"
    inner = f"<Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part>".encode()
    for name, body in bombs("CompleteMultipartUpload", inner):
        assert_xml_case(xml_send(server, target, body, method="POST"), name, "MalformedXML")
    spaced = b"<CompleteMultipartUpload>" + b" " * (3 * MIB) + inner + \
        b"</CompleteMultipartUpload>"  # over 2 MiB but within Complete's 8 MiB
    done = xml_send(server, target, spaced, method="POST")
    assert done.status == 200 and b"<ETag>" in done.body, done.body[:600]
    uid = s3.create_multipart_upload(Bucket=bucket, Key="n")["UploadId"]
    over = b"<CompleteMultipartUpload>" + b" " * (8 * MIB) + b"</CompleteMultipartUpload>"
    assert_xml_case(xml_send(server, f"/{bucket}/n?uploadId={uid}", over, method="POST"),
                    "over", "MaxMessageLengthExceeded")
    assert s3.list_multipart_uploads(Bucket=bucket)["Uploads"][0]["UploadId"] == uid
    assert s3.get_object(Bucket=bucket, Key="m")["Body"].read() == b"part"


# --- query values and ranges ---------------------------------------------------------------

def test_bad_multipart_listing_values(server: Any, s3: Any, bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="u")["UploadId"]
    for value in ("-1", "abc", "1.5", "", "99999999999999999999999x"):
        resp = send(server.endpoint, "GET", f"/{bucket}?uploads&max-uploads={quote(value)}")
        expect(resp, 400, "InvalidArgument")
        assert b"<ArgumentName>max-uploads</ArgumentName>" in resp.body
    for params in ("max-parts=-1", "max-parts=x", "part-number-marker=-1",
                   "part-number-marker=abc", "part-number-marker=1e3",
                   "part-number-marker=%C2%B2",  # "²": str.isdigit() but not int() (a 500)
                   "part-number-marker=99999999999999999999"):  # past SQLite's int64 (a 500)
        resp = send(server.endpoint, "GET", f"/{bucket}/u?uploadId={uid}&{params}")
        expect(resp, 400, "InvalidArgument")
        assert f"<ArgumentName>{params.split('=')[0]}</ArgumentName>".encode() in resp.body
    expect(send(server.endpoint, "GET", f"/{bucket}?uploads&max-uploads=2147483648"), 400,
           "InvalidArgument")  # [S3] beyond the integer range, as for max-keys
    capped = send(server.endpoint, "GET", f"/{bucket}?uploads&max-uploads=2147483647")
    assert capped.status == 200 and b"<MaxUploads>1000</MaxUploads>" in capped.body
    parts = send(server.endpoint, "GET", f"/{bucket}/u?uploadId={uid}&max-parts=100000"
                 "&part-number-marker=2147483647")
    assert parts.status == 200 and b"<MaxParts>1000</MaxParts>" in parts.body, parts.body


@pytest.mark.parametrize("header,status,window", [
    ("bytes=abc", 200, None), ("bytes=5-1", 200, None), ("items=0-1", 200, None),
    ("bytes=0-1,5-6", 200, None), ("bytes=--1", 200, None),
    ("bytes=0-99999999999999999999999999", 206, (0, 9)),
    ("bytes=99999999999999999999999999-", 416, None), ("bytes=-99999999999999999999", 206,
                                                       (0, 9)),
    ("bytes=-0", 416, None),
])
def test_hostile_ranges(server: Any, s3: Any, bucket: str, header: str, status: int,
                        window: tuple[int, int] | None) -> None:
    s3.put_object(Bucket=bucket, Key="r", Body=b"0123456789")
    resp = send(server.endpoint, "GET", f"/{bucket}/r", headers={"Range": header})
    assert resp.status == status, (header, resp.body[:300])
    if status == 200:
        assert resp.body == b"0123456789"
    elif status == 206:
        assert window is not None
        assert resp.body == b"0123456789"[window[0]:window[1] + 1]
    else:
        assert code_of(resp) == "InvalidRange" and resp.headers["content-range"] == "bytes */10"


@pytest.mark.parametrize("value", ["abc", "0", "10001", "-1", "1.5", "99999999999999999999",
                                   "%C2%B2"])
def test_bad_part_number_on_get_and_put(server: Any, s3: Any, bucket: str, value: str) -> None:
    s3.put_object(Bucket=bucket, Key="p", Body=b"x")
    resp = send(server.endpoint, "GET", f"/{bucket}/p?partNumber={value}")
    assert resp.status == 400 and code_of(resp) in ("InvalidArgument", "InvalidPartNumber"), \
        resp.body[:300]
    uid = s3.create_multipart_upload(Bucket=bucket, Key="p")["UploadId"]
    put = send(server.endpoint, "PUT", f"/{bucket}/p?partNumber={value}&uploadId={uid}",
               body=b"x")
    expect(put, 400, "InvalidArgument")


def test_non_ascii_digits_in_numeric_inputs(server: Any, s3: Any, bucket: str) -> None:
    """"²" and "٣" pass str.isdigit() but not int(): each used to escape as a 500."""
    expect(send(server.endpoint, "GET", "/?max-buckets=%D9%A3"), 400, "InvalidArgument")
    target = f"/{bucket}/dec"
    hdrs = {"Host": urlsplit(server.endpoint).netloc,
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "x-amz-decoded-content-length": "\u00b2".encode().decode("latin-1"),
            "Content-Encoding": "aws-chunked"}
    Signer().sign("PUT", target, hdrs)
    resp = send(server.endpoint, "PUT", target, body=b"0\r\n\r\n", headers=hdrs, sign=False)
    expect(resp, 400, "InvalidArgument")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


# --- oversized request line and headers (gunicorn's limits) ----------------------------------

def raw_exchange(server: Any, head: bytes) -> tuple[int, dict[str, str]]:
    host, port = urlsplit(server.endpoint).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        try:
            sock.sendall(head)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_responses(sock, 1)
    status_line, _, rest = answer.partition(b"\r\n")
    headers = {}
    for line in rest.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


@pytest.mark.parametrize("shape", ["line", "field", "fields"])
def test_oversized_request_heads_get_a_clean_4xx(server: Any, s3: Any, bucket: str,
                                                 shape: str) -> None:
    host = urlsplit(server.endpoint).netloc
    if shape == "line":
        head = f"GET /{bucket}/{'a' * 8200} HTTP/1.1\r\nHost: {host}\r\n\r\n"
    elif shape == "field":
        head = f"GET /{bucket} HTTP/1.1\r\nHost: {host}\r\nx-big: {'v' * 16400}\r\n\r\n"
    else:
        many = "".join(f"x-h{i}: v\r\n" for i in range(205))
        head = f"GET /{bucket} HTTP/1.1\r\nHost: {host}\r\n{many}\r\n"
    status, _ = raw_exchange(server, head.encode())
    assert status in (400, 413, 414, 431, 494), status
    s3.put_object(Bucket=bucket, Key="after", Body=b"still serving")
    assert s3.get_object(Bucket=bucket, Key="after")["Body"].read() == b"still serving"


# --- path traversal in every form ------------------------------------------------------------

TAG = "bleepstore-hostile-" + uuid.uuid4().hex[:12]
UP = "../../../../../../../../tmp/" + TAG


def test_traversal_in_bucket_names_copy_sources_upload_ids(server: Any, s3: Any,
                                                           bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    for raw in ("..", "%2e%2e", "..%2f..%2ftmp", "%2e%2e%2f" + TAG, "..%5c..%5c" + TAG,
                "%00" + TAG, "%E2%80%A4%E2%80%A4", "%EF%BC%8E%EF%BC%8E",  # dot lookalikes
                quote("\uff0e\uff0e/") + TAG):
        resp = send(server.endpoint, "PUT", f"/{raw}")
        if not by_nginx(server, resp.status, resp.headers):
            assert resp.status in (400, 404), (raw, resp.status, resp.body[:300])
            assert code_of(resp) in ("InvalidBucketName", "NoSuchBucket", "InvalidURI",
                                     "InvalidArgument", "MethodNotAllowed"), resp.body[:300]
    for source in (f"/{bucket}/../../../../etc/passwd", "/../../../../etc/passwd",
                   f"{bucket}/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/etc/passwd",
                   f"{bucket}/..%5c..%5cwindows", f"{bucket}/{quote(UP)}"):
        resp = send(server.endpoint, "PUT", f"/{bucket}/copied",
                    headers={"x-amz-copy-source": source})
        assert resp.status in (400, 404), (source, resp.body[:300])
        assert b"root:" not in resp.body
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    # (percent-encoded as SigV4 canonicalises them: botocore signs a query verbatim)
    for bad in (quote(UP, safe=""), quote("../../x", safe=""), "..%2F..%2F" + TAG,
                quote(uid + "/../" + uid, safe=""), "%00", "..%5C..%5C" + TAG):
        q = f"uploadId={bad}"
        for method, target, body in (("PUT", f"/{bucket}/mp?partNumber=1&{q}", b"part"),
                                     ("GET", f"/{bucket}/mp?{q}", b""),
                                     ("POST", f"/{bucket}/mp?{q}", b"<CompleteMultipartUpload>"
                                      b"<Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>"
                                      b"</CompleteMultipartUpload>"),
                                     ("DELETE", f"/{bucket}/mp?{q}", b"")):
            resp = send(server.endpoint, method, target, body=body)
            if by_nginx(server, resp.status, resp.headers):
                continue
            expect(resp, 404, "NoSuchUpload")
    presigned = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": UP},
                                          ExpiresIn=60)
    put = http.client.HTTPConnection(urlsplit(presigned).netloc, timeout=10)
    put.request("PUT", presigned.split(urlsplit(presigned).netloc, 1)[1], body=b"presigned")
    presp = put.getresponse()
    presp.read()
    put.close()
    if not by_nginx(server, presp.status, {k.lower(): v for k, v in presp.getheaders()}):
        assert presp.status == 200
        assert s3.get_object(Bucket=bucket, Key=UP)["Body"].read() == b"presigned"
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == b"source"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys <= {"src", UP}
    assert not any(Path(p, TAG).exists() for p in ("/tmp", "/", "/etc", str(server.root.parent)))
    data_files(Path(server.root))


# --- auth: presigned replay and scopes (what test_e2e_auth.py lacks) ---------------------------

def test_presigned_put_replayed_to_another_key(server: Any, s3: Any, bucket: str) -> None:
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "granted"},
                                    ExpiresIn=60)
    netloc = urlsplit(url).netloc
    target = url.split(netloc, 1)[1]
    for replay in (target.replace("/granted?", "/other?"),
                   target.replace("/granted?", "/granted/../other?"),
                   target.replace(f"/{bucket}/", "/another-bucket-zz/")):
        resp = send(server.endpoint, "PUT", replay, body=b"stolen", sign=False)
        if by_nginx(server, resp.status, resp.headers):
            continue
        expect(resp, 403, "SignatureDoesNotMatch")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    ok = send(server.endpoint, "PUT", target, body=b"granted", sign=False)
    assert ok.status == 200
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["granted"]


def signed_headers(server: Any, method: str, target: str, region: str) -> dict[str, str]:
    netloc = urlsplit(server.endpoint).netloc
    req = AWSRequest(method=method, url=f"http://{netloc}{target}", data=b"",
                     headers={"Host": netloc})
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", region).add_auth(req)
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in req.headers.items()}


def test_credential_scopes(server: Any, s3: Any, bucket: str) -> None:
    other_region = signed_headers(server, "GET", f"/{bucket}", "eu-west-3")
    resp = send(server.endpoint, "GET", f"/{bucket}", headers=other_region, sign=False)
    assert resp.status == 200, resp.body[:300]  # enforce_region is false by default
    s3x = signed_headers(server, "GET", f"/{bucket}", "us-east-1")
    s3x["Authorization"] = s3x["Authorization"].replace("/s3/aws4_request", "/s3x/aws4_request")
    expect(send(server.endpoint, "GET", f"/{bucket}", headers=s3x, sign=False), 400,
           "AuthorizationHeaderMalformed")
    dated = signed_headers(server, "GET", f"/{bucket}", "us-east-1")
    day = dated["X-Amz-Date"][:8]
    other_day = "20200101" if day != "20200101" else "20200102"
    dated["Authorization"] = dated["Authorization"].replace(f"/{day}/", f"/{other_day}/")
    expect(send(server.endpoint, "GET", f"/{bucket}", headers=dated, sign=False), 400,
           "AuthorizationHeaderMalformed")
