"""Object requests in process (webtest): bodies, lengths, integrity headers and aws-chunked
payloads through the real app, without a server."""

from __future__ import annotations

import base64
import hashlib
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


def test_header_auth_without_content_sha256_in_process(s3app: S3App) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    def generic(key: str, body: bytes) -> dict[str, str]:
        req = AWSRequest(method="PUT", url=f"http://{HOST}/alpha/{key}", data=body,
                         headers={"Host": HOST})
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(req)
        assert "X-Amz-Content-SHA256" not in req.headers
        return dict(req.headers.items())

    s3app.call("PUT", "/alpha")
    ok = s3app.call("PUT", "/alpha/g", body=b"generic", headers=generic("g", b"generic"),
                    sign=False)
    assert ok.status_int == 200, ok.body
    bad = s3app.call("PUT", "/alpha/h", body=b"GENERIC", headers=generic("h", b"generic"),
                     sign=False)
    assert (bad.status_int, code(bad)) == (403, "SignatureDoesNotMatch")
    assert code(s3app.call("HEAD", "/alpha/h")) == ""  # HEAD: no body
    assert s3app.call("HEAD", "/alpha/h").status_int == 404


def test_unverified_generic_signature_never_runs_an_operation(s3app: S3App) -> None:
    """Header auth without x-amz-content-sha256 waits for the body hash; operations that
    have no body must still be refused before they run (a wrong secret used to read, list
    and delete everything)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    s3app.call("PUT", "/alpha")
    s3app.call("PUT", "/alpha/k", body=b"secret data")
    for method, target, extra in [
        ("GET", "/alpha/k", {}), ("HEAD", "/alpha/k", {}), ("GET", "/", {}),
        ("GET", "/alpha?list-type=2", {}), ("GET", "/alpha/k?acl", {}),
        ("DELETE", "/alpha/k", {}), ("DELETE", "/alpha", {}), ("POST", "/alpha/u?uploads", {}),
        ("PUT", "/alpha/copy", {"x-amz-copy-source": "/alpha/k"}), ("PUT", "/beta", {}),
    ]:
        req = AWSRequest(method=method, url=f"http://{HOST}{target}",
                         headers={"Host": HOST, **extra})
        SigV4Auth(Credentials(ACCESS_KEY, "not-the-secret"), "s3", "us-east-1").add_auth(req)
        resp = s3app.call(method, target, headers=dict(req.headers.items()), sign=False)
        assert resp.status_int == 403, (method, target, resp.body)
        assert method == "HEAD" or code(resp) == "SignatureDoesNotMatch", (method, target)
    assert s3app.call("GET", "/alpha/k").body == b"secret data"
    listing = s3app.call("GET", "/alpha?list-type=2").body
    assert b"<Key>copy</Key>" not in listing
    assert b"<Upload>" not in s3app.call("GET", "/alpha?uploads").body
    assert b"<Name>beta</Name>" not in s3app.call("GET", "/").body
