"""Object requests in process (webtest): bodies, lengths, integrity headers and aws-chunked
payloads through the real app, without a server."""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
import zlib

from support.chunked_signer import SIGNED_TRAILER, UNSIGNED_TRAILER, Signer, streaming_put
from support.wsgiapp import ACCESS_KEY, HOST, SECRET_KEY, S3App


def code(resp: object) -> str:
    body = getattr(resp, "body", b"").decode()
    return body.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in body else ""


def test_put_get_head_delete_lengths(s3app: S3App) -> None:
    s3app.call("PUT", "/alpha")
    body = bytes(range(256)) * 1000
    put = s3app.call("PUT", "/alpha/k", body=body, headers={"Content-Type": "image/png",
                                                            "x-amz-meta-Who": "Ann"})
    assert put.status_int == 200
    assert put.body == b"" and put.headers["Content-Length"] == "0"
    assert put.headers["ETag"] == '"' + hashlib.md5(body).hexdigest() + '"'
    got = s3app.call("GET", "/alpha/k")
    assert got.body == body
    assert got.headers["Content-Length"] == str(len(body))
    assert got.headers["Content-Type"] == "image/png"
    assert got.headers["x-amz-meta-who"] == "Ann"
    assert got.headers["Accept-Ranges"] == "bytes"
    head = s3app.call("HEAD", "/alpha/k")
    assert head.status_int == 200 and head.body == b""
    assert head.headers["Content-Length"] == str(len(body))
    part = s3app.call("GET", "/alpha/k", headers={"Range": "bytes=10-19"})
    assert (part.status_int, part.body) == (206, body[10:20])
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(body)}"
    deleted = s3app.call("DELETE", "/alpha/k")
    assert deleted.status_int == 204 and "Content-Length" not in deleted.headers
    assert code(s3app.call("GET", "/alpha/k")) == "NoSuchKey"


def test_integrity_headers(s3app: S3App) -> None:
    s3app.call("PUT", "/alpha")
    good = base64.b64encode(hashlib.md5(b"abc").digest()).decode()
    assert s3app.call("PUT", "/alpha/m", body=b"abc",
                      headers={"Content-MD5": good}).status_int == 200
    bad = s3app.call("PUT", "/alpha/n", body=b"abd", headers={"Content-MD5": good})
    assert (bad.status_int, code(bad)) == (400, "BadDigest")
    crc = base64.b64encode(zlib.crc32(b"abc").to_bytes(4, "big")).decode()
    ok = s3app.call("PUT", "/alpha/c", body=b"abc", headers={
        "x-amz-checksum-crc32": crc, "x-amz-sdk-checksum-algorithm": "crc32"})
    assert ok.headers["x-amz-checksum-crc32"] == crc
    wrong = s3app.call("PUT", "/alpha/d", body=b"abd", headers={"x-amz-checksum-crc32": crc})
    assert (wrong.status_int, code(wrong)) == (400, "BadDigest")
    listing = s3app.call("GET", "/alpha?list-type=2").body
    assert b"<Key>m</Key>" in listing and b"<Key>c</Key>" in listing
    assert b"<Key>n</Key>" not in listing and b"<Key>d</Key>" not in listing


def test_aws_chunked_in_process(s3app: S3App) -> None:
    s3app.call("PUT", "/alpha")
    payload = b"0123456789abcdef" * 5000
    for mode, key in ((SIGNED_TRAILER, "s"), (UNSIGNED_TRAILER, "u")):
        req = streaming_put(HOST, f"/alpha/{key}", payload, mode, chunk_size=8192,
                            trailer="x-amz-checksum-crc32",
                            signer=Signer(ACCESS_KEY, SECRET_KEY))
        resp = s3app.call("PUT", req.target, body=req.body, headers=req.headers, sign=False)
        assert resp.status_int == 200, resp.body
        assert s3app.call("GET", f"/alpha/{key}").body == payload


def test_header_auth_without_content_sha256_never_runs_an_operation(s3app: S3App) -> None:
    """[S3] header auth without x-amz-content-sha256 is refused before anything runs, with
    the right secret or a wrong one (a wrong secret used to read, list and delete)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    s3app.call("PUT", "/alpha")
    s3app.call("PUT", "/alpha/k", body=b"secret data")
    for secret in (SECRET_KEY, "not-the-secret"):
        for method, target, extra in [
            ("GET", "/alpha/k", {}), ("HEAD", "/alpha/k", {}), ("GET", "/", {}),
            ("GET", "/alpha?list-type=2", {}), ("GET", "/alpha/k?acl", {}),
            ("DELETE", "/alpha/k", {}), ("DELETE", "/alpha", {}),
            ("POST", "/alpha/u?uploads", {}), ("PUT", "/alpha/p", {}),
            ("PUT", "/alpha/copy", {"x-amz-copy-source": "/alpha/k"}), ("PUT", "/beta", {}),
        ]:
            req = AWSRequest(method=method, url=f"http://{HOST}{target}",
                             headers={"Host": HOST, **extra})
            SigV4Auth(Credentials(ACCESS_KEY, secret), "s3", "us-east-1").add_auth(req)
            resp = s3app.call(method, target, headers=dict(req.headers.items()), sign=False)
            assert resp.status_int == 400, (method, target, resp.body)
            assert method == "HEAD" or code(resp) == "InvalidRequest", (method, target)
    assert s3app.call("GET", "/alpha/k").body == b"secret data"
    listing = s3app.call("GET", "/alpha?list-type=2").body
    assert b"<Key>copy</Key>" not in listing and b"<Key>p</Key>" not in listing
    assert b"<Upload>" not in s3app.call("GET", "/alpha?uploads").body
    assert b"<Name>beta</Name>" not in s3app.call("GET", "/").body


def error_fields(resp: object) -> dict[str, str]:
    root = ET.fromstring(getattr(resp, "body", b""))
    return {child.tag: child.text or "" for child in root}


def test_part_number_past_the_parts_is_416_with_the_counts(s3app: S3App) -> None:
    """S3 answers 416 InvalidPartNumber with PartNumberRequested and ActualPartCount, not
    400 InvalidPart (docs/decisions.md); HEAD gets the status without a body."""
    s3app.call("PUT", "/alpha")
    s3app.call("PUT", "/alpha/plain", body=b"0123456789")
    uid = s3app.call("POST", "/alpha/mp?uploads").body.decode().split(
        "<UploadId>", 1)[1].split("</UploadId>", 1)[0]
    first, last = b"a" * (5 * 1024 * 1024), b"b"
    etags = [s3app.call("PUT", f"/alpha/mp?partNumber={n}&uploadId={uid}",
                        body=body).headers["ETag"] for n, body in ((1, first), (2, last))]
    done = s3app.call("POST", f"/alpha/mp?uploadId={uid}", body=(
        "<CompleteMultipartUpload>" + "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"
            for n, e in enumerate(etags, start=1)) + "</CompleteMultipartUpload>").encode())
    assert done.status_int == 200, done.body
    assert s3app.call("GET", "/alpha/mp?partNumber=2").body == last
    assert s3app.call("GET", "/alpha/plain?partNumber=1").status_int == 206
    for key, number, count in (("plain", 2, 1), ("mp", 3, 2), ("mp", 10000, 2)):
        resp = s3app.call("GET", f"/alpha/{key}?partNumber={number}")
        assert resp.status_int == 416, resp.body
        fields = error_fields(resp)
        assert list(fields)[:4] == ["Code", "Message", "PartNumberRequested", "ActualPartCount"]
        assert fields["Code"] == "InvalidPartNumber"
        assert fields["Message"] == "The requested partnumber is not satisfiable"
        assert (fields["PartNumberRequested"], fields["ActualPartCount"]) == (str(number),
                                                                             str(count))
        head = s3app.call("HEAD", f"/alpha/{key}?partNumber={number}")
        assert (head.status_int, head.body) == (416, b"")
    for value in ("0", "10001", "abc"):  # not a part number at all: 400, as S3
        resp = s3app.call("GET", f"/alpha/mp?partNumber={value}")
        assert (resp.status_int, code(resp)) == (400, "InvalidArgument")
        assert error_fields(resp)["Message"] == ("Part number must be an integer between 1 "
                                                 "and 10000, inclusive")


def test_conditional_get_and_head(s3app: S3App) -> None:
    """Conditional headers are read whatever the case the code names them in (a lookup by
    "If-Match" once found nothing, and every conditional GET answered 200)."""
    s3app.call("PUT", "/alpha")
    etag = s3app.call("PUT", "/alpha/c", body=b"data").headers["ETag"]
    assert s3app.call("GET", "/alpha/c", headers={"If-Match": etag}).status_int == 200
    failed = s3app.call("GET", "/alpha/c", headers={"If-Match": '"0000"'})
    assert (failed.status_int, code(failed)) == (412, "PreconditionFailed")
    assert s3app.call("GET", "/alpha/c", headers={"If-None-Match": etag}).status_int == 304
    assert s3app.call("HEAD", "/alpha/c", headers={"If-None-Match": etag}).status_int == 304
    later = "Fri, 01 Jan 2100 00:00:00 GMT"
    assert s3app.call("GET", "/alpha/c", headers={"If-Modified-Since": later}).status_int == 304
    early = "Fri, 01 Jan 1999 00:00:00 GMT"
    assert s3app.call("GET", "/alpha/c", headers={"If-Unmodified-Since": early}).status_int == 412
