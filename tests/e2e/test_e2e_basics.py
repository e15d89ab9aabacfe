"""Buckets and objects end to end: real gunicorn, real boto3 (issue: foundation)."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import botocore.exceptions
import pytest


def error_code(exc: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_bucket_lifecycle(s3: Any) -> None:
    s3.create_bucket(Bucket="alpha")
    s3.create_bucket(Bucket="alpha")  # us-east-1: re-creating your own bucket is 200
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert names == ["alpha"]
    head = s3.head_bucket(Bucket="alpha")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    assert s3.get_bucket_location(Bucket="alpha")["LocationConstraint"] is None
    s3.delete_bucket(Bucket="alpha")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.head_bucket(Bucket="alpha")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_create_bucket_rules(s3: Any) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.create_bucket(Bucket="Bad_Name")
    assert error_code(exc) == "InvalidBucketName"
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.create_bucket(Bucket="elsewhere",
                         CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert error_code(exc) == "IllegalLocationConstraintException"


def test_put_get_head_delete_roundtrip(s3: Any, bucket: str) -> None:
    body = os.urandom(3 * 1024 * 1024 + 17)
    put = s3.put_object(Bucket=bucket, Key="dir/file.bin", Body=body, ContentType="image/png",
                        Metadata={"Author": "Ann", "x": "1"}, CacheControl="max-age=60",
                        ContentDisposition='attachment; filename="f.bin"')
    etag = '"' + hashlib.md5(body).hexdigest() + '"'
    assert put["ETag"] == etag
    got = s3.get_object(Bucket=bucket, Key="dir/file.bin")
    assert got["Body"].read() == body
    assert got["ETag"] == etag
    assert got["ContentType"] == "image/png"
    assert got["Metadata"] == {"author": "Ann", "x": "1"}
    assert got["CacheControl"] == "max-age=60"
    assert got["ContentDisposition"] == 'attachment; filename="f.bin"'
    head = s3.head_object(Bucket=bucket, Key="dir/file.bin")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == etag
    s3.delete_object(Bucket=bucket, Key="dir/file.bin")
    s3.delete_object(Bucket=bucket, Key="dir/file.bin")  # idempotent 204
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="dir/file.bin")
    assert error_code(exc) == "NoSuchKey"


@pytest.mark.parametrize("key", ["a b+c", "ünïcödé/ключ", "../up/../x", "a//b/", "%2e%2e%2f",
                                 "x?y#z&w=1", "~tilde*star'quote"])
def test_awkward_keys_are_stored_verbatim(s3: Any, bucket: str, key: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [key]


@pytest.mark.parametrize("header,expected", [
    ("bytes=0-9", (0, 9)), ("bytes=10-", (10, 99)), ("bytes=-5", (95, 99)),
    ("bytes=90-500", (90, 99)),
])
def test_ranges(s3: Any, bucket: str, header: str, expected: tuple[int, int]) -> None:
    body = bytes(range(100))
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    got = s3.get_object(Bucket=bucket, Key="r", Range=header)
    first, last = expected
    assert got["Body"].read() == body[first:last + 1]
    assert got["ContentRange"] == f"bytes {first}-{last}/100"
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206


def test_unsatisfiable_range(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="r", Body=b"0123456789")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="r", Range="bytes=10-20")
    assert error_code(exc) == "InvalidRange"
    headers = exc.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["content-range"] == "bytes */10"


def test_conditional_get(s3: Any, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"data")
    etag = put["ETag"]
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"data"
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert error_code(exc) == "PreconditionFailed"
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304


def test_response_overrides(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ContentType="text/plain")
    got = s3.get_object(Bucket=bucket, Key="o", ResponseContentType="application/json",
                        ResponseContentDisposition="inline")
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == "inline"


def test_checksums_are_verified_and_returned(s3: Any, bucket: str) -> None:
    for alg in ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"):
        put = s3.put_object(Bucket=bucket, Key=alg, Body=b"123456789", ChecksumAlgorithm=alg)
        assert f"Checksum{alg}" in put
        got = s3.get_object(Bucket=bucket, Key=alg, ChecksumMode="ENABLED")
        assert got["Body"].read() == b"123456789"
        assert got[f"Checksum{alg}"] == put[f"Checksum{alg}"]


def test_bad_content_md5_is_rejected_and_nothing_stored(s3: Any, bucket: str) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="m", Body=b"abc", ContentMD5="1B2M2Y8AsgTpgAmY7PhCfg==")
    assert error_code(exc) == "BadDigest"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_wrong_secret_is_signature_mismatch(server: Any, s3: Any) -> None:
    from support.clients import boto3_client

    bad = boto3_client(server.endpoint, secret_key="wrong")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        bad.list_buckets()
    assert error_code(exc) == "SignatureDoesNotMatch"
    unknown = boto3_client(server.endpoint, access_key="nobody")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        unknown.list_buckets()
    assert error_code(exc) == "InvalidAccessKeyId"


def test_presigned_get_and_put(server: Any, s3: Any, bucket: str) -> None:
    import urllib.request

    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p"},
                                        ExpiresIn=60)
    req = urllib.request.Request(put_url, data=b"presigned body", method="PUT")
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"},
                                        ExpiresIn=60)
    with urllib.request.urlopen(get_url) as resp:
        assert resp.read() == b"presigned body"
