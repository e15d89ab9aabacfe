"""GetObjectAttributes (``GET /b/k?attributes``) with boto3 against the real server:
single-part and multipart objects, CRC32 FULL_OBJECT and COMPOSITE checksums, ObjectParts
paging, and the errors S3 answers."""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Any

import botocore.exceptions
import pytest
from support.raw import send

MiB = 1024 * 1024
ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]


def crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_single_part_object(s3: Any, bucket: str) -> None:
    body = b"hello attributes"
    s3.put_object(Bucket=bucket, Key="k", Body=body, ChecksumAlgorithm="CRC32")
    head = s3.head_object(Bucket=bucket, Key="k")
    got = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=ALL)
    assert got["ETag"] == hashlib.md5(body).hexdigest()  # no quotes
    assert got["ObjectSize"] == len(body)
    assert got["StorageClass"] == "STANDARD"
    assert got["Checksum"] == {"ChecksumCRC32": b64(crc32(body)),
                               "ChecksumType": "FULL_OBJECT"}
    assert "ObjectParts" not in got
    assert got["LastModified"] == head["LastModified"]


def test_only_the_requested_attributes(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    got = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"],
                                   VersionId="null")
    assert got["ObjectSize"] == 1
    assert not {"ETag", "Checksum", "StorageClass", "ObjectParts"} & set(got)


def _multipart(s3: Any, bucket: str, kind: str | None) -> tuple[list[bytes], dict[str, Any]]:
    parts_data = [b"a" * (5 * MiB), b"b" * 1024]
    kw = {"ChecksumAlgorithm": "CRC32", "ChecksumType": kind} if kind else {}
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mp", **kw)["UploadId"]
    parts = []
    for number, data in enumerate(parts_data, start=1):
        extra = {"ChecksumCRC32": b64(crc32(data))} if kind else {}
        resp = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=number,
                              Body=data, **extra)
        parts.append({"PartNumber": number, "ETag": resp["ETag"], **extra})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid,
                                        MultipartUpload={"Parts": parts})
    return parts_data, done


@pytest.mark.parametrize("kind", ["FULL_OBJECT", "COMPOSITE"])
def test_multipart_with_checksum(s3: Any, bucket: str, kind: str) -> None:
    data, done = _multipart(s3, bucket, kind)
    got = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=ALL)
    assert got["ETag"] == done["ETag"].strip('"') and got["ETag"].endswith("-2")
    assert got["ObjectSize"] == sum(len(d) for d in data)
    expected = (b64(crc32(b"".join(data))) if kind == "FULL_OBJECT"
                else b64(crc32(b"".join(crc32(d) for d in data))) + "-2")
    assert got["Checksum"] == {"ChecksumCRC32": expected, "ChecksumType": kind}
    parts = got["ObjectParts"]
    assert parts["TotalPartsCount"] == 2 and parts["IsTruncated"] is False
    assert parts["PartNumberMarker"] == 0 and parts["NextPartNumberMarker"] == 2
    assert parts["MaxParts"] == 1000
    assert parts["Parts"] == [{"PartNumber": 1, "Size": 5 * MiB},
                              {"PartNumber": 2, "Size": 1024}]

    first = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"],
                                     MaxParts=1)["ObjectParts"]
    assert first["IsTruncated"] is True and first["NextPartNumberMarker"] == 1
    assert [p["PartNumber"] for p in first["Parts"]] == [1]
    rest = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"],
                                    MaxParts=1, PartNumberMarker=1)["ObjectParts"]
    assert rest["IsTruncated"] is False and rest["PartNumberMarker"] == 1
    assert [p["PartNumber"] for p in rest["Parts"]] == [2]


def test_multipart_without_checksum_lists_no_parts(s3: Any, bucket: str) -> None:
    _multipart(s3, bucket, None)
    got = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=ALL)
    assert "Checksum" not in got
    assert got["ObjectParts"]["TotalPartsCount"] == 2
    assert "Parts" not in got["ObjectParts"]  # [S3] no additional checksum, no Part


def _error(exc: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> tuple[str, str]:
    err = exc.value.response["Error"]
    return str(err["Code"]), str(err.get("Message", ""))


def test_errors(s3: Any, bucket: str, server: Any) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.get_object_attributes(Bucket=bucket, Key="nope", ObjectAttributes=["ETag"])
    assert _error(exc)[0] == "NoSuchKey"
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ETag", "Bogus"])
    assert _error(exc) == ("InvalidArgument", "Invalid attribute name specified.")
    for headers in ({}, {"x-amz-object-attributes": ""}, {"x-amz-object-attributes": " , "}):
        resp = send(server.endpoint, "GET", f"/{bucket}/k?attributes", headers=headers)
        assert resp.status == 400 and b"<Code>InvalidArgument</Code>" in resp.body
        assert b"either missing or empty" in resp.body
    anon = send(server.endpoint, "GET", f"/{bucket}/k?attributes", sign=False,
                headers={"x-amz-object-attributes": "ETag"})
    assert anon.status == 403 and b"<Code>AccessDenied</Code>" in anon.body
