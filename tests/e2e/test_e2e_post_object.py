"""POST Object (browser form uploads) against a real server, every server kind: boto3's
generate_presigned_post sent by ``requests`` and by ``curl -F``, the policy's rules and
AWS's answers, and the guarantee that a refused form stores nothing."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from support.server import ACCESS_KEY, SECRET_KEY, Server
from support.signing import sigv4_headers

KEY = "uploads/${filename}"


def presign(s3: Any, bucket: str, key: str = KEY, fields: dict[str, str] | None = None,
            conditions: list[Any] | None = None, expires: int = 600) -> dict[str, Any]:
    post: dict[str, Any] = s3.generate_presigned_post(
        bucket, key, Fields=fields or {}, Conditions=conditions or [], ExpiresIn=expires)
    return post


def submit(post: dict[str, Any], data: bytes = b"hello world", filename: str = "hello.txt",
           **extra: Any) -> requests.Response:
    return requests.post(post["url"], data=post["fields"], files={"file": (filename, data)},
                         allow_redirects=False, timeout=60, **extra)


def error(resp: requests.Response, status: int, code: str) -> dict[str, str]:
    assert resp.status_code == status, resp.text[:600]
    got = {el.tag: el.text or "" for el in ElementTree.fromstring(resp.content)}
    assert got["Code"] == code, got
    return got


def keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


# --- uploads that work -------------------------------------------------------------------

def test_presigned_post_from_requests(server: Server, s3: Any, bucket: str) -> None:
    resp = submit(presign(s3, bucket))
    assert resp.status_code == 204, resp.text
    assert resp.content == b""
    assert resp.headers["ETag"] == etag(b"hello world")
    assert resp.headers["Location"] == f"{server.endpoint}/{bucket}/uploads%2Fhello.txt"
    got = s3.get_object(Bucket=bucket, Key="uploads/hello.txt")
    assert got["Body"].read() == b"hello world"
    assert got["ETag"] == etag(b"hello world")


def test_presigned_post_from_curl(server: Server, s3: Any, bucket: str, tmp_path: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is not installed")
    post = presign(s3, bucket, "curl/${filename}")
    path = tmp_path / "from curl.bin"
    path.write_bytes(os.urandom(70_000))
    args = [curl, "-sS", "-o", str(tmp_path / "body"), "-w", "%{http_code}"]
    for name, value in post["fields"].items():
        args += ["--form-string", f"{name}={value}"]
    args += ["-F", f"file=@{path}", post["url"]]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout == "204", (tmp_path / "body").read_bytes()
    stored = s3.get_object(Bucket=bucket, Key="curl/from curl.bin")["Body"].read()
    assert stored == path.read_bytes()


@pytest.mark.parametrize("status,expected", [("201", 201), ("200", 200), ("404", 204)])
def test_success_action_status(server: Server, s3: Any, bucket: str, status: str,
                               expected: int) -> None:
    post = presign(s3, bucket, fields={"success_action_status": status},
                   conditions=[{"success_action_status": status}])
    resp = submit(post, b"body", filename="a b.txt")
    assert resp.status_code == expected, resp.text
    assert resp.headers["ETag"] == etag(b"body")
    location = f"{server.endpoint}/{bucket}/uploads%2Fa%20b.txt"
    if expected != 201:
        assert resp.content == b""
        return
    assert resp.headers["Content-Type"] == "application/xml"
    root = ElementTree.fromstring(resp.content)
    assert root.tag == "PostResponse"  # no namespace, as S3
    assert [(el.tag, el.text) for el in root] == [
        ("Location", location), ("Bucket", bucket), ("Key", "uploads/a b.txt"),
        ("ETag", etag(b"body"))]


def test_success_action_redirect(server: Server, s3: Any, bucket: str) -> None:
    target = "https://app.example/done?from=form"
    post = presign(s3, bucket, fields={"success_action_redirect": target},
                   conditions=[["starts-with", "$success_action_redirect", "https://app."]])
    resp = submit(post, b"redirected", filename="a b.txt")
    assert resp.status_code == 303, resp.text
    assert resp.headers["Location"] == (
        f"{target}&bucket={bucket}&key=uploads%2Fa+b.txt&etag=%22"
        f"{hashlib.md5(b'redirected').hexdigest()}%22")
    assert s3.get_object(Bucket=bucket, Key="uploads/a b.txt")["Body"].read() == b"redirected"
    relative = presign(s3, bucket, fields={"redirect": "/relative/page"},
                       conditions=[{"redirect": "/relative/page"}])
    assert submit(relative).status_code == 204  # S3 ignores a URL it cannot use


def test_form_fields_become_the_object(server: Server, s3: Any, bucket: str) -> None:
    tagging = ("<Tagging><TagSet><Tag><Key>team</Key><Value>web</Value></Tag></TagSet>"
               "</Tagging>")
    fields = {"Content-Type": "text/plain", "Cache-Control": "max-age=60",
              "Content-Disposition": "inline; filename=\"${filename}\"",
              "x-amz-meta-color": "blue", "acl": "public-read", "tagging": tagging,
              "x-amz-storage-class": "STANDARD_IA", "x-ignore-widget": "anything"}
    conditions: list[Any] = [
        ["starts-with", "$Content-Type", "text/"], {"Cache-Control": "max-age=60"},
        ["starts-with", "$Content-Disposition", "inline"], ["eq", "$x-amz-meta-color", "blue"],
        {"acl": "public-read"}, {"tagging": tagging}, {"x-amz-storage-class": "STANDARD_IA"}]
    resp = submit(presign(s3, bucket, fields=fields, conditions=conditions), b"text",
                  filename="note.txt")
    assert resp.status_code == 204, resp.text
    head = s3.head_object(Bucket=bucket, Key="uploads/note.txt")
    assert (head["ContentType"], head["CacheControl"], head["ContentDisposition"]) == (
        "text/plain", "max-age=60", 'inline; filename="note.txt"')
    assert head["Metadata"] == {"color": "blue"}
    assert head["StorageClass"] == "STANDARD_IA"
    tags = s3.get_object_tagging(Bucket=bucket, Key="uploads/note.txt")["TagSet"]
    assert tags == [{"Key": "team", "Value": "web"}]
    public = requests.get(f"{server.endpoint}/{bucket}/uploads/note.txt", timeout=30)
    assert (public.status_code, public.content) == (200, b"text")


def test_five_mib_file_is_streamed(server: Server, s3: Any, bucket: str) -> None:
    data = os.urandom(5 * 1024 * 1024 + 17)
    post = presign(s3, bucket, conditions=[["content-length-range", 1, 10 * 1024 * 1024]])
    resp = submit(post, data, filename="big.bin")
    assert resp.status_code == 204, resp.text
    assert resp.headers["ETag"] == etag(data)
    got = s3.get_object(Bucket=bucket, Key="uploads/big.bin")
    assert got["ContentLength"] == len(data)
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(data).digest()


def test_sigv2_form(server: Server, s3: Any, bucket: str) -> None:
    v2 = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY,
                      aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                      config=Config(signature_version="s3", s3={"addressing_style": "path"}))
    post = v2.generate_presigned_post(bucket, KEY, ExpiresIn=300)
    assert {"AWSAccessKeyId", "signature", "policy"} <= set(post["fields"])
    assert submit(post).status_code == 204
    assert keys(s3, bucket) == ["uploads/hello.txt"]


def test_anonymous_form_needs_a_public_write_bucket(server: Server, s3: Any,
                                                    bucket: str) -> None:
    post = {"url": f"{server.endpoint}/{bucket}", "fields": {"key": "anon.txt"}}
    error(submit(post), 403, "AccessDenied")
    assert keys(s3, bucket) == []
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    resp = submit(post, b"from anyone")
    assert resp.status_code == 204, resp.text
    assert s3.get_object(Bucket=bucket, Key="anon.txt")["Body"].read() == b"from anyone"


# --- refusals: nothing is stored ---------------------------------------------------------

def test_forged_forms_store_nothing(server: Server, s3: Any, bucket: str) -> None:
    post = presign(s3, bucket)
    # NOTE: under 256 KiB, which the worker drains to keep the connection: with more left
    # unread it closes the connection after the answer, and nginx may already have put it
    # back in its upstream keep-alive pool (the next POST through it would get a 502).
    big = os.urandom(200 * 1024)
    forged = {**post, "fields": {**post["fields"],
                                 "x-amz-signature": post["fields"]["x-amz-signature"][::-1]}}
    got = error(submit(forged, big), 403, "SignatureDoesNotMatch")
    assert got["StringToSign"] == post["fields"]["policy"]
    assert got["SignatureProvided"] == forged["fields"]["x-amz-signature"]
    policy = json.loads(base64.b64decode(post["fields"]["policy"]))
    policy["conditions"][1] = ["starts-with", "$key", ""]  # widen the key, keep the signature
    widened = {**post, "fields": {**post["fields"], "key": "anything",
                                  "policy": base64.b64encode(json.dumps(policy).encode())
                                  .decode()}}
    error(submit(widened), 403, "SignatureDoesNotMatch")
    credential = post["fields"]["x-amz-credential"].replace(ACCESS_KEY, "AKBSNOBODY", 1)
    stranger = {**post, "fields": {**post["fields"], "x-amz-credential": credential}}
    error(submit(stranger), 403, "InvalidAccessKeyId")
    assert keys(s3, bucket) == []


def test_expired_policy(server: Server, s3: Any, bucket: str) -> None:
    got = error(submit(presign(s3, bucket, expires=-60)), 403, "AccessDenied")
    assert got["Message"] == "Invalid according to Policy: Policy expired."
    assert keys(s3, bucket) == []


@pytest.mark.parametrize("size,code,extra", [
    (12, "EntityTooLarge", {"ProposedSize": "12", "MaxSizeAllowed": "10"}),
    (1, "EntityTooSmall", {"ProposedSize": "1", "MinSizeAllowed": "5"}),
])
def test_content_length_range(server: Server, s3: Any, bucket: str, size: int, code: str,
                              extra: dict[str, str]) -> None:
    post = presign(s3, bucket, conditions=[["content-length-range", 5, 10]])
    got = error(submit(post, b"x" * size), 400, code)
    assert {k: got[k] for k in extra} == extra
    assert keys(s3, bucket) == []
    for ok in (5, 10):  # the bounds are inclusive
        assert submit(post, b"y" * ok, filename=f"{ok}.bin").status_code == 204
    assert keys(s3, bucket) == ["uploads/10.bin", "uploads/5.bin"]


def test_policy_conditions_and_coverage(server: Server, s3: Any, bucket: str) -> None:
    post = presign(s3, bucket, fields={"x-amz-meta-color": "red"},
                   conditions=[["eq", "$x-amz-meta-color", "blue"]])
    got = error(submit(post), 403, "AccessDenied")
    assert got["Message"] == ('Invalid according to Policy: Policy Condition failed: '
                              '["eq", "$x-amz-meta-color", "blue"]')
    uncovered = presign(s3, bucket, fields={"X-Amz-Meta-Extra": "1"})
    got = error(submit(uncovered), 403, "AccessDenied")
    assert got["Message"] == "Invalid according to Policy: Extra input fields: X-Amz-Meta-Extra"
    key_pinned = presign(s3, bucket, "exact.txt")
    moved = {**key_pinned, "fields": {**key_pinned["fields"], "key": "elsewhere.txt"}}
    got = error(submit(moved), 403, "AccessDenied")
    assert got["Message"] == ('Invalid according to Policy: Policy Condition failed: '
                              '["eq", "$key", "exact.txt"]')
    assert keys(s3, bucket) == []


def test_no_such_bucket(server: Server, s3: Any, bucket: str) -> None:
    missing = f"{bucket}-gone"
    error(submit(presign(s3, missing)), 404, "NoSuchBucket")


def multipart(parts: list[tuple[str, bytes]], boundary: str = "XyZzY") -> bytes:
    out = b""
    for name, value in parts:
        disposition = f'form-data; name="{name}"'
        if name == "file":
            disposition += '; filename="f.txt"'
        out += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value
                + b"\r\n")
    return out + f"--{boundary}--\r\n".encode()


def raw_post(server: Server, bucket: str, body: bytes, content_type: str = (
        "multipart/form-data; boundary=XyZzY")) -> requests.Response:
    return requests.post(f"{server.endpoint}/{bucket}", data=body, timeout=60,
                         headers={"Content-Type": content_type})


def test_unsigned_form_in_a_header_signed_request(server: Server, s3: Any, bucket: str) -> None:
    """Without form credentials the request's own signature decides, and its payload hash
    binds the whole body: a body swapped under a captured signature stores nothing."""
    body = multipart([("key", b"signed.txt"), ("file", b"by header")])
    netloc = server.endpoint.split("//", 1)[1]
    headers = sigv4_headers("POST", netloc, f"/{bucket}", body,
                            {"Content-Type": "multipart/form-data; boundary=XyZzY"})

    def post(data: bytes) -> requests.Response:
        return requests.post(f"{server.endpoint}/{bucket}", data=data, headers=headers,
                             timeout=60)

    swapped = body.replace(b"by header", b"by forger")
    error(post(swapped), 400, "XAmzContentSHA256Mismatch")
    assert keys(s3, bucket) == []
    assert post(body).status_code == 204
    assert s3.get_object(Bucket=bucket, Key="signed.txt")["Body"].read() == b"by header"


def test_fields_after_the_file_are_ignored(server: Server, s3: Any, bucket: str) -> None:
    post = presign(s3, bucket, "after.txt")
    parts = [(k, v.encode()) for k, v in post["fields"].items()]
    body = multipart([*parts, ("file", b"first"), ("x-amz-meta-late", b"1"),
                      ("submit", b"Upload")])
    assert raw_post(server, bucket, body).status_code == 204
    assert s3.head_object(Bucket=bucket, Key="after.txt")["Metadata"] == {}


def test_malformed_requests(server: Server, s3: Any, bucket: str) -> None:
    post = presign(s3, bucket, "k.txt")
    parts = [(k, v.encode()) for k, v in post["fields"].items()]
    got = error(raw_post(server, bucket, multipart([*parts, ("file", b"x")]), "text/plain"),
                412, "PreconditionFailed")
    assert got["Condition"] == "Bucket POST must be of the enclosure-type multipart/form-data"
    got = error(raw_post(server, bucket, multipart(parts)), 400, "InvalidArgument")
    assert (got["Message"], got["ArgumentName"]) == (
        "POST requires exactly one file upload per request.", "file")
    no_key = [(k, v) for k, v in parts if k != "key"]
    got = error(raw_post(server, bucket, multipart([*no_key, ("file", b"x")])), 400,
                "InvalidArgument")
    assert got["ArgumentName"] == "key"
    no_sig = [(k, v) for k, v in parts if k != "x-amz-signature"]
    got = error(raw_post(server, bucket, multipart([*no_sig, ("file", b"x")])), 400,
                "InvalidArgument")
    assert got["ArgumentName"] == "X-Amz-Signature"
    huge = [("x-ignore-pad", b"p" * 30_000), *parts, ("file", b"x")]
    got = error(raw_post(server, bucket, multipart(huge)), 400, "MaxPostPreDataLengthExceeded")
    assert got["MaxPostPreDataLengthBytes"] == "20480"
    md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    checked = presign(s3, bucket, "k.txt", fields={"Content-MD5": md5},
                      conditions=[{"Content-MD5": md5}])
    error(submit(checked, b"not other"), 400, "BadDigest")
    error(raw_post(server, bucket, b"--XyZzY\r\ngarbage"), 400, "MalformedPOSTRequest")
    assert keys(s3, bucket) == []


def test_post_answers_carry_cors_headers(server: Server, s3: Any, bucket: str) -> None:
    origin = "https://app.example"
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": [origin], "AllowedMethods": ["POST"], "ExposeHeaders": ["ETag"]}]})
    resp = submit(presign(s3, bucket), headers={"Origin": origin})
    assert resp.status_code == 204
    assert resp.headers["Access-Control-Allow-Origin"] == origin
    assert resp.headers["Access-Control-Expose-Headers"] == "ETag"
    refused = submit(presign(s3, bucket, expires=-5), headers={"Origin": origin})
    assert refused.status_code == 403
    assert refused.headers["Access-Control-Allow-Origin"] == origin


def test_unicode_key_and_location(server: Server, s3: Any, bucket: str) -> None:
    name = f"président {uuid.uuid4().hex[:6]}.jpg"
    resp = submit(presign(s3, bucket, fields={"success_action_status": "201"},
                          conditions=[{"success_action_status": "201"}]), filename=name)
    assert resp.status_code == 201, resp.text
    root = ElementTree.fromstring(resp.content)
    assert root.findtext("Key") == f"uploads/{name}"
    assert root.findtext("Location") == (
        f"{server.endpoint}/{bucket}/{quote('uploads/' + name, safe='')}")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="uploads/${filename}")
    assert s3.head_object(Bucket=bucket, Key=f"uploads/{name}")["ContentLength"] == 11
