"""AWS Signature Version 2 end to end: boto3 with ``signature_version="s3"`` (header auth and
presigned URLs), the aws CLI v1's default ``aws s3 presign``, ``s3cmd signurl`` and s3cmd
with ``signature_v2``, against the real server; and each refusal with AWS's code, never a
500, leaving nothing behind. SigV4 stays the default everywhere else in the suite."""

from __future__ import annotations

import hashlib
import io
import os
import time
import urllib.error
import urllib.request
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.exceptions
import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from support.clients import AwsCli, S3Cmd
from support.server import ACCESS_KEY, SECRET_KEY, Server
from support.signed import RawResponse, send

MiB = 1024 * 1024
KEYS = ["plain.txt", "dir/a b.txt", "dir/ünï+code.txt", "tilde~(1)!.bin"]


def v2_client(server: Any, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> Any:
    """boto3 signing with SigV2 (HmacV1Auth); it fails the test if any request it sends is
    signed another way."""
    client = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=access_key,
                          aws_secret_access_key=secret_key, region_name="us-east-1",
                          config=Config(signature_version="s3", retries={"max_attempts": 1},
                                        s3={"addressing_style": "path"}))

    def only_v2(request: Any, **_: Any) -> None:
        value = request.headers.get("Authorization", "")
        value = value.decode() if isinstance(value, bytes) else value
        assert value.startswith("AWS "), value

    client.meta.events.register("before-send.s3", only_v2)
    return client


def direct_only(server: Any) -> None:
    """The CLI tools: slow to start, and their proxy or gateway runs add no coverage."""
    if getattr(server, "via", None) == "nginx" or server.backend != "local":
        pytest.skip("CLI SigV2 checks run once, against the direct server")


def fetch(url: str, method: str = "GET", data: bytes | None = None,
          headers: dict[str, str] | None = None) -> RawResponse:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()},
                               resp.read())
    except urllib.error.HTTPError as err:
        return RawResponse(err.code, {k.lower(): v for k, v in err.headers.items()},
                           err.read())


def raw(url: str, method: str, body: bytes = b"",
        headers: dict[str, str] | None = None) -> RawResponse:
    """``method url`` over http.client, with no header beyond ``headers`` (urllib adds a
    Content-Type to a PUT, which a SigV2 signature covers)."""
    parts = urlsplit(url)
    target = parts.path + ("?" + parts.query if parts.query else "")
    return send(f"http://{parts.netloc}", method, target, body=body, headers=headers,
                sign=False)


def element(resp: RawResponse, name: str) -> str | None:
    body = resp.body.decode()
    if f"<{name}>" not in body:
        return None
    return body.split(f"<{name}>", 1)[1].split(f"</{name}>", 1)[0]


def expect(resp: RawResponse, status: int, code: str) -> None:
    assert (resp.status, element(resp, "Code")) == (status, code), resp.body[:600]
    assert element(resp, "RequestId") == resp.headers["x-amz-request-id"]


def v2_headers(server: Any, method: str, target: str, *, headers: dict[str, str] | None = None,
               secret: str = SECRET_KEY, access_key: str = ACCESS_KEY, host: str | None = None,
               auth_path: str | None = None, date_offset: float = 0) -> dict[str, str]:
    """Headers of ``method target`` signed by botocore's HmacV1Auth (SigV2)."""
    netloc = host or urlsplit(server.endpoint).netloc

    class Signer(HmacV1Auth):
        def _get_date(self) -> str:
            return formatdate(time.time() + date_offset, usegmt=True)

    req = AWSRequest(method=method, url=f"http://{netloc}{target}",
                     headers={"Host": netloc, **(headers or {})})
    req.auth_path = auth_path
    Signer(Credentials(access_key, secret)).add_auth(req)
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in req.headers.items()}


def v2_presign(server: Any, method: str, target: str, expires: int,
               headers: dict[str, str] | None = None) -> str:
    """A SigV2 query-auth URL from botocore's HmacV1QueryAuth (``expires`` may be < 0)."""
    req = AWSRequest(method=method, url=server.endpoint + target, headers=headers or {})
    HmacV1QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), expires=expires).add_auth(req)
    return str(req.url)


# --- boto3, signature_version="s3" -------------------------------------------------------------

def test_boto3_sigv2_objects_listing_acl_copy_delete(server: Any, s3: Any, bucket: str) -> None:
    v2 = v2_client(server)
    data = {k: f"body of {k}".encode() * (i + 2) for i, k in enumerate(KEYS)}
    for key, body in data.items():
        out = v2.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/plain",
                            Metadata={"who": "v2"})
        assert out["ETag"] == '"' + hashlib.md5(body).hexdigest() + '"'
    for key, body in data.items():
        got = v2.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == body
        assert (got["ContentType"], got["Metadata"]) == ("text/plain", {"who": "v2"})
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body  # SigV4 agrees
    ranged = v2.get_object(Bucket=bucket, Key="plain.txt", Range="bytes=0-3",
                           ResponseContentType="application/x-v2")
    assert (ranged["Body"].read(), ranged["ContentType"]) == (b"body", "application/x-v2")
    assert v2.head_object(Bucket=bucket, Key="dir/a b.txt")["ContentLength"] == \
        len(data["dir/a b.txt"])
    listed = v2.list_objects(Bucket=bucket, Prefix="dir/", Delimiter="/")
    assert [o["Key"] for o in listed["Contents"]] == ["dir/a b.txt", "dir/ünï+code.txt"]
    v2list = v2.list_objects_v2(Bucket=bucket, MaxKeys=1)
    assert v2list["KeyCount"] == 1 and v2list["IsTruncated"]
    assert bucket in [b["Name"] for b in v2.list_buckets()["Buckets"]]
    assert v2.get_bucket_location(Bucket=bucket)["LocationConstraint"] in (None, "us-east-1")
    v2.put_object_acl(Bucket=bucket, Key="plain.txt", ACL="public-read")
    grants = v2.get_object_acl(Bucket=bucket, Key="plain.txt")["Grants"]
    assert {g["Permission"] for g in grants} == {"FULL_CONTROL", "READ"}
    v2.copy_object(Bucket=bucket, Key="copied/ü.txt",
                   CopySource={"Bucket": bucket, "Key": "dir/ünï+code.txt"})
    assert s3.get_object(Bucket=bucket, Key="copied/ü.txt")["Body"].read() == \
        data["dir/ünï+code.txt"]
    v2.delete_object(Bucket=bucket, Key="plain.txt")
    gone = v2.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in KEYS[1:]]})
    assert sorted(d["Key"] for d in gone["Deleted"]) == sorted(KEYS[1:])
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["copied/ü.txt"]


def test_boto3_sigv2_bucket_lifecycle_and_multipart(server: Any, s3: Any) -> None:
    v2 = v2_client(server)
    v2.create_bucket(Bucket="sigv2-mpu")
    v2.head_bucket(Bucket="sigv2-mpu")
    body = os.urandom(5 * MiB) + b"tail"
    up = v2.create_multipart_upload(Bucket="sigv2-mpu", Key="big/ü.bin")
    uid = up["UploadId"]
    parts = [v2.upload_part(Bucket="sigv2-mpu", Key="big/ü.bin", UploadId=uid, PartNumber=n,
                            Body=chunk)["ETag"]
             for n, chunk in ((1, body[:5 * MiB]), (2, body[5 * MiB:]))]
    assert [p["PartNumber"] for p in
            v2.list_parts(Bucket="sigv2-mpu", Key="big/ü.bin", UploadId=uid)["Parts"]] == [1, 2]
    assert [u["UploadId"] for u in
            v2.list_multipart_uploads(Bucket="sigv2-mpu")["Uploads"]] == [uid]
    v2.complete_multipart_upload(
        Bucket="sigv2-mpu", Key="big/ü.bin", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                   for n, e in enumerate(parts, 1)]})
    assert s3.get_object(Bucket="sigv2-mpu", Key="big/ü.bin")["Body"].read() == body
    aborted = v2.create_multipart_upload(Bucket="sigv2-mpu", Key="never")["UploadId"]
    v2.abort_multipart_upload(Bucket="sigv2-mpu", Key="never", UploadId=aborted)
    v2.delete_object(Bucket="sigv2-mpu", Key="big/ü.bin")
    v2.delete_bucket(Bucket="sigv2-mpu")
    assert "sigv2-mpu" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_boto3_sigv2_upload_file_and_download(server: Any, s3: Any, bucket: str,
                                              tmp_path: Path) -> None:
    """s3transfer (managed multipart, parallel parts) over SigV2 header auth."""
    v2 = v2_client(server)
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(6 * MiB + 7))
    from boto3.s3.transfer import TransferConfig
    cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    v2.upload_file(str(src), bucket, "managed.bin", Config=cfg)
    buf = io.BytesIO()
    v2.download_fileobj(bucket, "managed.bin", buf, Config=cfg)
    assert buf.getvalue() == src.read_bytes()


def test_boto3_sigv2_presigned_get_and_put(server: Any, s3: Any, bucket: str) -> None:
    v2 = v2_client(server)
    put_url = v2.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p q"},
                                        ExpiresIn=120)
    assert "AWSAccessKeyId=" in put_url and "X-Amz-" not in put_url
    resp = raw(put_url, "PUT", b"presigned v2 body")
    assert resp.status == 200, resp.body
    assert resp.headers["etag"] == '"' + hashlib.md5(b"presigned v2 body").hexdigest() + '"'
    get_url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p q"},
                                        ExpiresIn=120)
    assert fetch(get_url).body == b"presigned v2 body"
    # a signed Content-Type must be sent as signed (urllib sends its own otherwise)
    typed = v2.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "typed", "ContentType": "text/csv"},
        ExpiresIn=120)
    resp = fetch(typed, "PUT", b"a,b\n", headers={"Content-Type": "text/csv"})
    assert resp.status == 200, resp.body
    assert s3.head_object(Bucket=bucket, Key="typed")["ContentType"] == "text/csv"
    wrong = fetch(typed, "PUT", b"x", headers={"Content-Type": "text/html"})
    expect(wrong, 403, "SignatureDoesNotMatch")
    assert s3.get_object(Bucket=bucket, Key="typed")["Body"].read() == b"a,b\n"


def test_default_boto3_presign_with_endpoint_is_sigv2_and_works(server: Any, s3: Any,
                                                                bucket: str) -> None:
    """The README's client shape: a custom endpoint and no signature_version presigns with
    SigV2 (botocore's default for S3 there), which now just works."""
    s3.put_object(Bucket=bucket, Key="readme.txt", Body=b"readme")
    client = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY, region_name="us-east-1")
    url = client.generate_presigned_url("get_object",
                                        Params={"Bucket": bucket, "Key": "readme.txt"})
    assert "Signature=" in url and "X-Amz-Signature=" not in url
    resp = fetch(url)
    assert (resp.status, resp.body) == (200, b"readme")


# --- refusals --------------------------------------------------------------------------------

def test_tampered_signature_is_signature_does_not_match(server: Any, s3: Any,
                                                        bucket: str) -> None:
    hdrs = v2_headers(server, "PUT", f"/{bucket}/k")
    hdrs["Authorization"] = hdrs["Authorization"][:-6] + "AAAAA="
    resp = send(server.endpoint, "PUT", f"/{bucket}/k", body=b"data", headers=hdrs, sign=False)
    expect(resp, 403, "SignatureDoesNotMatch")
    assert element(resp, "AWSAccessKeyId") == ACCESS_KEY
    assert element(resp, "SignatureProvided") == hdrs["Authorization"].split(":", 1)[1]
    sts = element(resp, "StringToSign")
    assert sts is not None and sts.endswith(f"\n/{bucket}/k")
    assert element(resp, "StringToSignBytes") == " ".join(f"{b:02x}" for b in sts.encode())
    body = resp.body.decode()
    assert (body.index("<AWSAccessKeyId>") < body.index("<StringToSign>")
            < body.index("<SignatureProvided>") < body.index("<StringToSignBytes>"))
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_wrong_secret_unknown_key_and_skew(server: Any, s3: Any, bucket: str) -> None:
    target = f"/{bucket}"
    bad = send(server.endpoint, "GET", target, sign=False,
               headers=v2_headers(server, "GET", target, secret="not-the-secret"))
    expect(bad, 403, "SignatureDoesNotMatch")
    unknown = send(server.endpoint, "GET", target, sign=False,
                   headers=v2_headers(server, "GET", target, access_key="AKNOBODY"))
    expect(unknown, 403, "InvalidAccessKeyId")
    assert element(unknown, "AWSAccessKeyId") == "AKNOBODY"
    hdrs = v2_headers(server, "GET", target, date_offset=-20 * 60)
    skewed = send(server.endpoint, "GET", target, headers=hdrs, sign=False)
    expect(skewed, 403, "RequestTimeTooSkewed")
    assert element(skewed, "RequestTime") == hdrs["Date"]
    assert element(skewed, "MaxAllowedSkewMilliseconds") == "900000"
    # the auth-first invariant: a forged request learns nothing about a missing bucket
    forged = v2_headers(server, "GET", "/no-such-bucket-v2/k", secret="nope")
    resp = send(server.endpoint, "GET", "/no-such-bucket-v2/k", headers=forged, sign=False)
    expect(resp, 403, "SignatureDoesNotMatch")


def test_added_x_amz_header_breaks_the_signature(server: Any, s3: Any, bucket: str) -> None:
    """No x-amz-* header escapes a V2 signature: added to a header-signed request or to a
    presigned URL's request, it is 403 and nothing happens."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    hdrs = v2_headers(server, "PUT", f"/{bucket}/dst")
    hdrs["x-amz-copy-source"] = f"/{bucket}/src"
    resp = send(server.endpoint, "PUT", f"/{bucket}/dst", headers=hdrs, sign=False)
    expect(resp, 403, "SignatureDoesNotMatch")
    url = v2_presign(server, "PUT", f"/{bucket}/dst", 120)
    for extra in ({"x-amz-copy-source": f"/{bucket}/src"}, {"x-amz-acl": "public-read"}):
        expect(raw(url, "PUT", b"", headers=extra), 403, "SignatureDoesNotMatch")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["src"]
    assert raw(url, "PUT", b"fine").status == 200


def test_presigned_expired_tampered_unknown(server: Any, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="p", Body=b"secret")
    s3.put_object(Bucket=bucket, Key="q", Body=b"other")
    expired = fetch(v2_presign(server, "GET", f"/{bucket}/p", -60))
    expect(expired, 403, "AccessDenied")
    assert element(expired, "Message") == "Request has expired"
    body = expired.body.decode()
    assert body.index("<Expires>") < body.index("<ServerTime>") < body.index("<RequestId>")
    assert b"secret" not in expired.body
    late_put = raw(v2_presign(server, "PUT", f"/{bucket}/late", -1), "PUT", b"too late")
    expect(late_put, 403, "AccessDenied")
    url = v2_presign(server, "GET", f"/{bucket}/p", 120)
    expires = url.split("Expires=", 1)[1].split("&", 1)[0]
    for tampered in (url.replace(f"/{bucket}/p?", f"/{bucket}/q?"),
                     url.replace(f"Expires={expires}", f"Expires={int(expires) + 1}"),
                     url.replace("Signature=", "Signature=A"),
                     url + "&acl"):
        expect(fetch(tampered), 403, "SignatureDoesNotMatch")
    nobody = url.replace(f"AWSAccessKeyId={ACCESS_KEY}", "AWSAccessKeyId=AKNOBODY")
    expect(fetch(nobody), 403, "InvalidAccessKeyId")
    missing = fetch(url.replace("Expires=", "Expired="))
    expect(missing, 403, "AccessDenied")
    assert element(missing, "Message") == ("Query-string authentication requires the "
                                           "Signature, Expires and AWSAccessKeyId parameters")
    both = send(server.endpoint, "GET", url.split(urlsplit(url).netloc, 1)[1], sign=True)
    expect(both, 400, "InvalidArgument")
    assert fetch(url).body == b"secret"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="late")


def test_content_md5_still_verified(server: Any, s3: Any, bucket: str) -> None:
    md5 = "1B2M2Y8AsgTpgAmY7PhCfg=="  # of the empty body, not of this one
    hdrs = v2_headers(server, "PUT", f"/{bucket}/m", headers={"Content-MD5": md5})
    resp = send(server.endpoint, "PUT", f"/{bucket}/m", body=b"not empty", headers=hdrs,
                sign=False)
    expect(resp, 400, "BadDigest")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_virtual_hosted_sigv2(server: Any, s3: Any, bucket: str) -> None:
    """Virtual-hosted: the bucket from the Host is the start of the signed resource."""
    s3.put_object(Bucket=bucket, Key="v/k.txt", Body=b"vhost v2")
    host = f"{bucket}.localhost:{server.port}"
    hdrs = v2_headers(server, "GET", "/v/k.txt", host=host, auth_path=f"/{bucket}/v/k.txt")
    resp = send(server.endpoint, "GET", "/v/k.txt", headers=hdrs, sign=False)
    assert (resp.status, resp.body) == (200, b"vhost v2"), resp.body
    hdrs = v2_headers(server, "GET", "/?list-type=2", host=host, auth_path=f"/{bucket}/")
    listing = send(server.endpoint, "GET", "/?list-type=2", headers=hdrs, sign=False)
    assert listing.status == 200 and b"<Key>v/k.txt</Key>" in listing.body
    wrong = v2_headers(server, "GET", "/v/k.txt", host=host, auth_path="/v/k.txt")
    expect(send(server.endpoint, "GET", "/v/k.txt", headers=wrong, sign=False), 403,
           "SignatureDoesNotMatch")


def test_sigv2_client_errors_are_client_errors(server: Any, s3: Any, bucket: str) -> None:
    """boto3 surfaces the 403s as ClientError with AWS's codes."""
    with pytest.raises(botocore.exceptions.ClientError) as info:
        v2_client(server, secret_key="wrong").list_objects(Bucket=bucket)
    assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    with pytest.raises(botocore.exceptions.ClientError) as info:
        v2_client(server, access_key="AKNOBODY").list_objects(Bucket=bucket)
    assert info.value.response["Error"]["Code"] == "InvalidAccessKeyId"


# --- the aws CLI v1 and s3cmd (direct server only) ------------------------------------------

def test_aws_cli_v1_default_presign_is_sigv2_and_works(server: Server, aws: AwsCli, s3: Any,
                                                       bucket: str) -> None:
    direct_only(server)
    s3.put_object(Bucket=bucket, Key="cli/a b+c.txt", Body=b"from the cli")
    url = aws("s3", "presign", f"s3://{bucket}/cli/a b+c.txt", "--expires-in", "120"
              ).stdout.strip()
    assert "AWSAccessKeyId=" in url and "X-Amz-Algorithm" not in url  # CLI v1's default
    assert fetch(url).body == b"from the cli"
    expect(fetch(url.replace("Signature=", "Signature=x")), 403, "SignatureDoesNotMatch")


def test_s3cmd_signurl_and_signature_v2(server: Server, s3cmd: S3Cmd, s3: Any, bucket: str,
                                        tmp_path: Path) -> None:
    direct_only(server)
    s3.put_object(Bucket=bucket, Key="s/small.txt", Body=b"s3cmd body")
    url = s3cmd("signurl", f"s3://{bucket}/s/small.txt", "+120").stdout.strip()
    assert "AWSAccessKeyId=" in url and "Signature=" in url  # s3cmd signs URLs with V2 only
    assert fetch(url).body == b"s3cmd body"
    # s3cmd's own header signing in V2 (x-amz-date, an empty Date line)
    s3cmd.config.write_text(s3cmd.config.read_text().replace("signature_v2 = False",
                                                             "signature_v2 = True"))
    src = tmp_path / "up ü.bin"
    src.write_bytes(os.urandom(200_000))
    debug = s3cmd("--debug", "put", str(src), f"s3://{bucket}/s/up ü.bin").stderr
    assert "Using signature v2" in debug and "Using signature v4" not in debug
    s3cmd("setacl", "--acl-public", f"s3://{bucket}/s/up ü.bin")
    dest = tmp_path / "down.bin"
    s3cmd("get", f"s3://{bucket}/s/up ü.bin", str(dest))
    assert dest.read_bytes() == src.read_bytes()
    listed = s3cmd("ls", f"s3://{bucket}/s/").stdout
    assert f"s3://{bucket}/s/up ü.bin" in listed and f"s3://{bucket}/s/small.txt" in listed
    s3cmd("del", f"s3://{bucket}/s/up ü.bin")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["s/small.txt"]


def test_sigv2_reaches_the_same_principal(server: Any, s3: Any, bucket: str) -> None:
    """A SigV2 request acts as the key's owner: same Owner as SigV4, same ACL checks."""
    v2 = v2_client(server)
    assert v2.list_buckets()["Owner"] == s3.list_buckets()["Owner"]
    v2.put_object(Bucket=bucket, Key="owned", Body=b"x")
    acl = s3.get_object_acl(Bucket=bucket, Key="owned")
    assert acl["Owner"] == s3.list_buckets()["Owner"]
