"""boto3 with both checksum settings, and the aws CLI (mb, cp up and down, ls, head-object,
presign + curl, rm, rb) against the real gunicorn: bytes, ETags and checksums compared."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import zlib
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from support.clients import AwsCli, boto3_client
from support.server import Server


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


@pytest.mark.parametrize("calculation", ["when_supported", "when_required"])
def test_boto3_put_get_with_checksum_setting(server: Server, s3: Any, bucket: str,
                                             calculation: str) -> None:
    client = boto3_client(server.endpoint, request_checksum_calculation=calculation,
                          response_checksum_validation=calculation)
    body = os.urandom(1024 * 1024 + 3)
    put = client.put_object(Bucket=bucket, Key="obj", Body=body)
    assert put["ETag"] == md5_etag(body)
    if calculation == "when_supported":  # botocore >= 1.36 sends CRC32 by default
        assert put["ChecksumCRC32"] == crc32_b64(body)
    else:
        assert "ChecksumCRC32" not in put
    got = client.get_object(Bucket=bucket, Key="obj", ChecksumMode="ENABLED")
    assert got["Body"].read() == body  # botocore validates any checksum header it gets
    assert got["ETag"] == md5_etag(body)
    if calculation == "when_supported":
        assert got["ChecksumCRC32"] == crc32_b64(body)
        assert got["ResponseMetadata"]["HTTPHeaders"]["x-amz-checksum-type"] == "FULL_OBJECT"
    ranged = client.get_object(Bucket=bucket, Key="obj", Range="bytes=5-9",
                               ChecksumMode="ENABLED")
    assert ranged["Body"].read() == body[5:10]
    assert "ChecksumCRC32" not in ranged  # a whole-object checksum never rides a range


def test_boto3_file_object_and_empty_body(server: Server, s3: Any, bucket: str,
                                          tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024))
    with src.open("rb") as fh:
        s3.put_object(Bucket=bucket, Key="file", Body=fh)
    assert s3.get_object(Bucket=bucket, Key="file")["Body"].read() == src.read_bytes()
    put = s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert put["ETag"] == md5_etag(b"")
    assert put["ChecksumCRC32"] == "AAAAAA=="
    assert s3.get_object(Bucket=bucket, Key="empty")["Body"].read() == b""


def test_aws_cli_lifecycle(server: Server, aws: AwsCli, s3: Any, tmp_path: Path) -> None:
    name, key = "cli-lifecycle", "dir/file name.bin"
    src = tmp_path / "upload.bin"
    data = os.urandom(2 * 1024 * 1024 + 11)
    src.write_bytes(data)
    aws("s3", "mb", f"s3://{name}")
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    aws("s3", "cp", str(src), f"s3://{name}/{key}")
    assert f"{len(data)} file name.bin" in aws("s3", "ls", f"s3://{name}/dir/").stdout
    down = tmp_path / "download.bin"
    aws("s3", "cp", f"s3://{name}/{key}", str(down))
    assert down.read_bytes() == data
    head = json.loads(aws("s3api", "head-object", "--bucket", name, "--key", key).stdout)
    assert (head["ContentLength"], head["ETag"]) == (len(data), md5_etag(data))
    _check_presign(aws, f"s3://{name}/{key}", data, tmp_path)
    aws("s3", "rm", f"s3://{name}/{key}")
    assert "Contents" not in s3.list_objects_v2(Bucket=name)
    aws("s3", "rb", f"s3://{name}")
    with pytest.raises(botocore.exceptions.ClientError):
        s3.head_bucket(Bucket=name)


def curl(url: str) -> tuple[int, bytes]:
    out = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", url],
                         capture_output=True, timeout=60, check=True).stdout
    body, _, status = out.rpartition(b"\n")
    return int(status), body


def _check_presign(aws: AwsCli, uri: str, data: bytes, tmp_path: Path) -> None:
    """aws CLI v1 presigns with SigV2 unless told otherwise; with s3v4 too, the URL fetches
    the exact bytes."""
    default = aws("s3", "presign", uri, "--expires-in", "120").stdout.strip()
    assert curl(default) == (200, data)
    if "X-Amz-Algorithm" not in default:
        with (tmp_path / "aws" / "config").open("a") as cfg:  # the s3 section is last
            cfg.write("  signature_version = s3v4\n")
    url = aws("s3", "presign", uri, "--expires-in", "120").stdout.strip()
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url
    assert curl(url) == (200, data)
    status, body = curl(url.replace("X-Amz-Expires=120", "X-Amz-Expires=121"))
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
