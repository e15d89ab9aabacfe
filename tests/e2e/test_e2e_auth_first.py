"""Authentication decides before anything observable happens (issue 9, items 1-2).

Each test is an attack that worked against an earlier build: unsigned ``x-amz-*`` headers
added to presigned URLs or to a replayed header-signed request, and forged signatures that
answered differently depending on what exists (an existence/content oracle), or that
streamed a body into staging before their 403.
"""

from __future__ import annotations

import hashlib
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from support.server import Server
from support.signed import RawResponse, send
from support.signing import sigv4_headers

FORGED = ("AWS4-HMAC-SHA256 Credential=bleepstore/{date}/us-east-1/s3/aws4_request, "
          "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)


def presigned_target(s3: Any, method: str, params: dict[str, Any]) -> str:
    url = s3.generate_presigned_url(method, Params=params, ExpiresIn=600)
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def expect(resp: RawResponse, status: int, code: str) -> None:
    assert resp.status == status, (resp.status, resp.body)
    assert f"<Code>{code}</Code>".encode() in resp.body, resp.body


@pytest.mark.parametrize("added", [
    {"x-amz-copy-source": "{bucket}/secret.txt"},
    {"x-amz-acl": "public-read"},
    {"x-amz-grant-read": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'},
    {"x-amz-metadata-directive": "REPLACE"},
    {"x-amz-meta-injected": "1"},
    {"x-amz-tagging": "a=b"},
    {"x-amz-storage-class": "STANDARD"},
    {"x-amz-checksum-crc32": "AAAAAA=="},
    {"x-amz-server-side-encryption": "AES256"},
])
def test_presigned_put_refuses_unsigned_x_amz_headers(server: Server, s3: Any, bucket: str,
                                                      added: dict[str, str]) -> None:
    s3.put_object(Bucket=bucket, Key="secret.txt", Body=b"private data")
    target = presigned_target(s3, "put_object", {"Bucket": bucket, "Key": "upload"})
    headers = {k: v.format(bucket=bucket) for k, v in added.items()}
    resp = send(server.endpoint, "PUT", target, body=b"", headers=headers, sign=False)
    expect(resp, 403, "AccessDenied")
    assert b"There were headers present in the request which were not signed" in resp.body
    assert f"<HeadersNotSigned>{next(iter(added))}</HeadersNotSigned>".encode() in resp.body
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["secret.txt"]
    grants = s3.get_object_acl(Bucket=bucket, Key="secret.txt")["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]
    ok = send(server.endpoint, "PUT", target, body=b"as signed", sign=False)
    assert ok.status == 200, ok.body  # the URL itself still works as signed


def test_presigned_upload_part_refuses_copy_source(server: Server, s3: Any,
                                                   bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="secret.txt", Body=b"private data" * 1000)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    target = presigned_target(s3, "upload_part", {"Bucket": bucket, "Key": "big",
                                                  "UploadId": upload, "PartNumber": 1})
    resp = send(server.endpoint, "PUT", target, sign=False,
                headers={"x-amz-copy-source": f"{bucket}/secret.txt"})
    expect(resp, 403, "AccessDenied")
    assert "Parts" not in s3.list_parts(Bucket=bucket, Key="big", UploadId=upload)


def test_replayed_header_signed_put_refuses_added_acl(server: Server, s3: Any,
                                                      bucket: str) -> None:
    netloc = urlsplit(server.endpoint).netloc
    captured = sigv4_headers("PUT", netloc, f"/{bucket}/doc", b"v1")
    replay = {**captured, "x-amz-acl": "public-read"}
    resp = send(server.endpoint, "PUT", f"/{bucket}/doc", body=b"v1", headers=replay, sign=False)
    expect(resp, 403, "AccessDenied")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    ok = send(server.endpoint, "PUT", f"/{bucket}/doc", body=b"v1", headers=captured, sign=False)
    assert ok.status == 200


def _forged(extra: dict[str, str], sha256: str | None) -> dict[str, str]:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    hdrs = {"Authorization": FORGED.format(date=stamp[:8]), "x-amz-date": stamp, **extra}
    if sha256 is not None:
        hdrs["x-amz-content-sha256"] = sha256
    return hdrs


@pytest.mark.parametrize("sha256", [None, "UNSIGNED-PAYLOAD", hashlib.sha256(b"x").hexdigest()])
def test_forged_signature_is_no_oracle(server: Server, s3: Any, bucket: str,
                                       sha256: str | None) -> None:
    """The same answer whether the key / bucket exists and whatever the condition."""
    etag = s3.put_object(Bucket=bucket, Key="exists", Body=b"x")["ETag"]
    answers = set()
    for target, extra in [
        (f"/{bucket}/exists", {"If-None-Match": "*"}),
        (f"/{bucket}/missing", {"If-None-Match": "*"}),
        (f"/{bucket}/exists", {"If-Match": etag}),
        (f"/{bucket}/exists", {"If-Match": '"00000000000000000000000000000000"'}),
        (f"/{bucket}/exists?acl", {"x-amz-acl": "public-read"}),
        ("/no-such-bucket-xyz/k?acl", {"x-amz-acl": "public-read"}),
        ("/no-such-bucket-xyz/k", {}),
    ]:
        resp = send(server.endpoint, "PUT", target, body=b"x", headers=_forged(extra, sha256),
                    sign=False)
        answers.add((resp.status, resp.body.split(b"<Message>")[0].split(b"<Code>")[-1]))
    expected = 400 if sha256 is None else 403
    assert {status for status, _ in answers} == {expected}, answers
    assert len(answers) == 1, answers
    assert s3.get_object(Bucket=bucket, Key="exists")["Body"].read() == b"x"
    assert [g["Permission"] for g in s3.get_object_acl(Bucket=bucket, Key="exists")["Grants"]] \
        == ["FULL_CONTROL"]


def _read_response(sock: socket.socket, deadline: float) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("sha256", [None, "UNSIGNED-PAYLOAD"])
def test_forged_put_is_answered_before_its_body(server: Server, s3: Any, bucket: str,
                                                sha256: str | None) -> None:
    """A rejected request reads no body: the 403 comes with only the headers sent, nothing
    reaches staging, and an honest PUT right after succeeds."""
    netloc = urlsplit(server.endpoint).netloc
    hdrs = {"Host": netloc, **_forged({}, sha256), "Content-Length": str(26 * 1024 * 1024)}
    head = "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"PUT /{bucket}/big HTTP/1.1\r\n{head}\r\n".encode())
        sock.sendall(b"x" * 65536)  # a little of the body, then nothing more
        answer = _read_response(sock, time.monotonic() + 5)
        assert answer.split(b"\r\n")[0] in (b"HTTP/1.1 400 Bad Request",
                                            b"HTTP/1.1 403 Forbidden"), answer[:200]
        deadline = time.monotonic() + 5  # then the connection closes: no body is awaited
        while time.monotonic() < deadline:
            try:
                if not sock.recv(65536):
                    break
            except ConnectionResetError:
                break
        else:
            pytest.fail("the server kept a rejected request's connection open for its body")
    staging = server.data / "objects" / ".tmp"
    assert not staging.exists() or not any(p.is_file() for p in staging.rglob("*"))
    s3.put_object(Bucket=bucket, Key="honest", Body=b"y" * 1024 * 1024)
    assert s3.head_object(Bucket=bucket, Key="honest")["ContentLength"] == 1024 * 1024


def test_a_refused_large_body_ends_its_connection_and_says_so(server: Server, s3: Any,
                                                              bucket: str) -> None:
    """A 403 answered while more of the body is unread than the worker drains for keep-alive
    carries ``Connection: close``: a proxy that pooled the connection (nginx) would
    otherwise send the next PUT, which it cannot retry, into a closed socket (502)."""
    body = b"z" * (1024 * 1024)
    resp = send(server.endpoint, "PUT", f"/{bucket}/forged", body=body,
                headers=_forged({}, "UNSIGNED-PAYLOAD"), sign=False)
    assert resp.status == 403
    if getattr(server, "via", None) != "nginx":
        assert resp.headers.get("connection") == "close"
    for i in range(12):  # more than the upstream pool holds: one would be the dead one
        ok = send(server.endpoint, "PUT", f"/{bucket}/honest-{i}", body=b"y" * 1024)
        assert ok.status == 200, (i, ok.status, ok.body[:200])
