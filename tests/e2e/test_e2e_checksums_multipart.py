"""Multipart checksums end to end (issue item 9): x-amz-checksum-type FULL_OBJECT (CRCs
combined across parts) and COMPOSITE (``<b64>-N``) through Create, UploadPart, UploadPartCopy,
ListParts, Complete, HEAD and GET; malformed (InvalidRequest / InvalidArgument) against wrong
(BadDigest / InvalidPart) values, with the codes and messages AWS S3 answers."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from awscrt import checksums as crt  # type: ignore[import-untyped,unused-ignore]
from support.clients import boto3_client
from support.raw import send

MiB = 1024 * 1024


def crc(alg: str, data: bytes) -> bytes:
    if alg == "CRC32":
        return zlib.crc32(data).to_bytes(4, "big")
    if alg == "CRC32C":
        return int(crt.crc32c(data)).to_bytes(4, "big")
    if alg == "CRC64NVME":
        return int(crt.crc64nvme(data)).to_bytes(8, "big")
    return hashlib.new(alg.lower(), data).digest()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def error_of(exc: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> tuple[str, str]:
    err = exc.value.response["Error"]
    return str(err["Code"]), str(err.get("Message", ""))


def complete(s3: Any, bucket: str, key: str, uid: str, parts: list[dict[str, Any]],
             **kw: Any) -> Any:
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid,
                                        MultipartUpload={"Parts": parts}, **kw)


def no_checksum_client(server: Any) -> Any:
    """boto3 that sends a checksum only when asked (a part without one)."""
    return boto3_client(server.endpoint, request_checksum_calculation="when_required")


# --- FULL_OBJECT ---------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["CRC32", "CRC32C", "CRC64NVME"])
def test_full_object_checksum_is_the_crc_of_the_whole_object(s3: Any, bucket: str,
                                                             alg: str) -> None:
    created = s3.create_multipart_upload(Bucket=bucket, Key="full", ChecksumAlgorithm=alg,
                                         ChecksumType="FULL_OBJECT")
    assert (created["ChecksumAlgorithm"], created["ChecksumType"]) == (alg, "FULL_OBJECT")
    uid = created["UploadId"]
    bodies = [os.urandom(5 * MiB), os.urandom(1000)]
    parts = []
    for n, body in enumerate(bodies, start=1):
        got = s3.upload_part(Bucket=bucket, Key="full", UploadId=uid, PartNumber=n, Body=body,
                             ChecksumAlgorithm=alg)
        assert got["Checksum" + alg] == b64(crc(alg, body))
        parts.append({"PartNumber": n, "ETag": got["ETag"], "Checksum" + alg: b64(crc(alg, body))})
    listing = s3.list_parts(Bucket=bucket, Key="full", UploadId=uid)
    assert (listing["ChecksumAlgorithm"], listing["ChecksumType"]) == (alg, "FULL_OBJECT")
    assert [p["Checksum" + alg] for p in listing["Parts"]] == [b64(crc(alg, b)) for b in bodies]
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert (uploads[0]["ChecksumAlgorithm"], uploads[0]["ChecksumType"]) == (alg, "FULL_OBJECT")
    whole = b"".join(bodies)
    full = b64(crc(alg, whole))
    done = complete(s3, bucket, "full", uid, parts, ChecksumType="FULL_OBJECT",
                    **{"Checksum" + alg: full})
    assert (done["Checksum" + alg], done["ChecksumType"]) == (full, "FULL_OBJECT")
    head = s3.head_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")
    assert (head["Checksum" + alg], head["ChecksumType"]) == (full, "FULL_OBJECT")
    got = s3.get_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")
    assert got["Body"].read() == whole  # botocore checks a FULL_OBJECT checksum it gets
    assert got["Checksum" + alg] == full
    assert "Checksum" + alg not in s3.head_object(Bucket=bucket, Key="full")  # mode not ENABLED


def test_complete_checks_the_stated_full_object_checksum(s3: Any, bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32",
                                     ChecksumType="FULL_OBJECT")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"hello",
                          ChecksumAlgorithm="CRC32")["ETag"]
    parts = [{"PartNumber": 1, "ETag": etag}]  # FULL_OBJECT: part checksums are optional
    cases = [
        ({"ChecksumCRC32": b64(crc("CRC32", b"other"))}, "BadDigest",
         "The CRC32 you specified did not match the calculated checksum."),
        ({"ChecksumCRC32": "AAAA"}, "InvalidRequest",
         "Value for x-amz-checksum-crc32 header is invalid."),
        ({"ChecksumCRC32C": b64(crc("CRC32C", b"hello"))}, "InvalidRequest",
         "Checksum Type mismatch occurred, expected checksum Type: crc32, actual checksum "
         "Type: crc32c"),
        ({"ChecksumType": "COMPOSITE"}, "InvalidRequest",
         "The upload was created using the FULL_OBJECT checksum mode. The complete request "
         "must use the same checksum mode."),
    ]
    for extra, code, message in cases:
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            complete(s3, bucket, "k", uid, parts, **extra)
        assert error_of(exc) == (code, message), extra
    assert s3.list_parts(Bucket=bucket, Key="k", UploadId=uid)["Parts"]  # still completable
    done = complete(s3, bucket, "k", uid, parts, ChecksumCRC32=b64(crc("CRC32", b"hello")))
    assert (done["ChecksumCRC32"], done["ChecksumType"]) == (b64(crc("CRC32", b"hello")),
                                                             "FULL_OBJECT")


def test_crc64nvme_uploads_default_to_full_object(s3: Any, bucket: str) -> None:
    created = s3.create_multipart_upload(Bucket=bucket, Key="n", ChecksumAlgorithm="CRC64NVME")
    assert created["ChecksumType"] == "FULL_OBJECT"
    uid = created["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="n", UploadId=uid, PartNumber=1, Body=b"nvme",
                          ChecksumAlgorithm="CRC64NVME")["ETag"]
    done = complete(s3, bucket, "n", uid, [{"PartNumber": 1, "ETag": etag}])
    assert (done["ChecksumCRC64NVME"], done["ChecksumType"]) == (b64(crc("CRC64NVME", b"nvme")),
                                                                 "FULL_OBJECT")


def test_a_full_object_part_sent_without_checksum_gets_one(server: Any, s3: Any,
                                                           bucket: str) -> None:
    plain = no_checksum_client(server)
    uid = plain.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32C",
                                        ChecksumType="FULL_OBJECT")["UploadId"]
    bodies = [os.urandom(5 * MiB), b"rest"]
    parts = []
    for n, body in enumerate(bodies, start=1):
        got = plain.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=n, Body=body)
        assert got["ChecksumCRC32C"] == b64(crc("CRC32C", body))  # computed by the server
        parts.append({"PartNumber": n, "ETag": got["ETag"]})
    listed = plain.list_parts(Bucket=bucket, Key="k", UploadId=uid)["Parts"]
    assert [p["ChecksumCRC32C"] for p in listed] == [b64(crc("CRC32C", b)) for b in bodies]
    done = complete(plain, bucket, "k", uid, parts)
    assert done["ChecksumCRC32C"] == b64(crc("CRC32C", b"".join(bodies)))


def test_boto3_upload_file_with_a_full_object_checksum(tmp_path: Path, s3: Any,
                                                       bucket: str) -> None:
    """s3transfer turns a precomputed ChecksumCRC32 into ChecksumType FULL_OBJECT on Create
    and the x-amz-checksum-crc32 header on Complete."""
    from boto3.s3.transfer import S3UploadFailedError, TransferConfig

    data = os.urandom(11 * MiB + 3)
    src = tmp_path / "f.bin"
    src.write_bytes(data)
    cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    full = b64(crc("CRC32", data))
    s3.upload_file(str(src), bucket, "up", Config=cfg, ExtraArgs={"ChecksumCRC32": full})
    head = s3.head_object(Bucket=bucket, Key="up", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (full, "FULL_OBJECT")
    assert head["ETag"].endswith('-3"')
    with pytest.raises(S3UploadFailedError, match="BadDigest"):
        s3.upload_file(str(src), bucket, "bad", Config=cfg,
                       ExtraArgs={"ChecksumCRC32": b64(crc("CRC32", b"not it"))})
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="bad")


# --- Create's x-amz-checksum-type ------------------------------------------------------------

@pytest.mark.parametrize("kw,message", [
    ({"ChecksumAlgorithm": "SHA256", "ChecksumType": "FULL_OBJECT"},
     "The FULL_OBJECT checksum type cannot be used with the sha256 checksum algorithm."),
    ({"ChecksumAlgorithm": "SHA1", "ChecksumType": "FULL_OBJECT"},
     "The FULL_OBJECT checksum type cannot be used with the sha1 checksum algorithm."),
    ({"ChecksumAlgorithm": "CRC64NVME", "ChecksumType": "COMPOSITE"},
     "The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm."),
    ({"ChecksumType": "FULL_OBJECT"},
     "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm "
     "header."),
])
def test_create_refuses_a_type_the_algorithm_does_not_allow(s3: Any, bucket: str,
                                                            kw: dict[str, str],
                                                            message: str) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.create_multipart_upload(Bucket=bucket, Key="k", **kw)
    assert error_of(exc) == ("InvalidRequest", message)
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_create_refuses_an_unknown_type(server: Any, s3: Any, bucket: str) -> None:
    resp = send(server.endpoint, "POST", f"/{bucket}/k?uploads",
                headers={"x-amz-checksum-algorithm": "CRC32", "x-amz-checksum-type": "PARTIAL"})
    assert resp.status == 400
    assert b"<Code>InvalidRequest</Code>" in resp.body
    assert b"Value for x-amz-checksum-type header is invalid." in resp.body


# --- COMPOSITE -----------------------------------------------------------------------------

def test_a_composite_part_needs_a_checksum_of_the_uploads_algorithm(server: Any,
                                                                    bucket: str) -> None:
    plain = no_checksum_client(server)
    created = plain.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32")
    assert created["ChecksumType"] == "COMPOSITE"  # CRC32's default
    uid = created["UploadId"]
    for extra, actual in (({}, "null"), ({"ChecksumAlgorithm": "SHA1"}, "sha1")):
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            plain.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"x",
                              **extra)
        assert error_of(exc) == ("InvalidRequest", "Checksum Type mismatch occurred, expected "
                                 f"checksum Type: crc32, actual checksum Type: {actual}")
    assert not plain.list_parts(Bucket=bucket, Key="k", UploadId=uid).get("Parts")


def test_composite_complete_part_checksum_rules(s3: Any, bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k",
                                     ChecksumAlgorithm="SHA256")["UploadId"]
    got = s3.upload_part(Bucket=bucket, Key="k", UploadId=uid, PartNumber=1, Body=b"data",
                         ChecksumAlgorithm="SHA256")
    sha = b64(crc("SHA256", b"data"))
    assert got["ChecksumSHA256"] == sha
    part = {"PartNumber": 1, "ETag": got["ETag"]}
    cases = [
        (part, "InvalidRequest",
         "The upload was created using a sha256 checksum. The complete request must include "
         "the checksum for each part. It was missing for part 1 in the request."),
        ({**part, "ChecksumSHA256": "not base64!"}, "InvalidArgument",
         "Invalid Base64 or multiple checksums present in request"),
        ({**part, "ChecksumSHA256": b64(bytes(20))}, "InvalidArgument",
         "Invalid Base64 or multiple checksums present in request"),
        ({**part, "ChecksumSHA256": sha, "ChecksumCRC32": "AAAAAA=="}, "InvalidArgument",
         "Invalid Base64 or multiple checksums present in request"),
        ({**part, "ChecksumCRC32": "AAAAAA=="}, "BadDigest",
         "The crc32 you specified for part 1 did not match what we received."),
        ({**part, "ChecksumSHA256": b64(crc("SHA256", b"other"))}, "InvalidPart", None),
    ]
    for listed, code, message in cases:
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            complete(s3, bucket, "k", uid, [listed])
        assert error_of(exc)[0] == code, listed
        if message is not None:
            assert error_of(exc)[1] == message
    expected = b64(crc("SHA256", base64.b64decode(sha))) + "-1"
    done = complete(s3, bucket, "k", uid, [{**part, "ChecksumSHA256": sha}])
    assert (done["ChecksumSHA256"], done["ChecksumType"]) == (expected, "COMPOSITE")
    again = complete(s3, bucket, "k", uid, [{**part, "ChecksumSHA256": sha}])  # a replay
    assert (again["ETag"], again["ChecksumSHA256"]) == (done["ETag"], expected)
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert (head["ChecksumSHA256"], head["ChecksumType"]) == (expected, "COMPOSITE")


# --- UploadPartCopy ------------------------------------------------------------------------

def test_upload_part_copy_parts_carry_the_uploads_checksum(s3: Any, bucket: str) -> None:
    source = os.urandom(5 * MiB + 123)
    s3.put_object(Bucket=bucket, Key="src", Body=source, ChecksumAlgorithm="CRC32")
    copy = {"Bucket": bucket, "Key": "dst", "CopySource": {"Bucket": bucket, "Key": "src"}}
    # COMPOSITE CRC32C: each copied part is hashed as it is read
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst",
                                     ChecksumAlgorithm="CRC32C")["UploadId"]
    ranges = [(0, 5 * MiB - 1), (5 * MiB, len(source) - 1)]
    parts = []
    for n, (first, last) in enumerate(ranges, start=1):
        res = s3.upload_part_copy(UploadId=uid, PartNumber=n,
                                  CopySourceRange=f"bytes={first}-{last}", **copy)
        expected = b64(crc("CRC32C", source[first:last + 1]))
        assert res["CopyPartResult"]["ChecksumCRC32C"] == expected
        parts.append({"PartNumber": n, "ETag": res["CopyPartResult"]["ETag"],
                      "ChecksumCRC32C": expected})
    listed = s3.list_parts(Bucket=bucket, Key="dst", UploadId=uid)["Parts"]
    assert [p["ChecksumCRC32C"] for p in listed] == [p["ChecksumCRC32C"] for p in parts]
    done = complete(s3, bucket, "dst", uid, parts)
    joined = b"".join(base64.b64decode(p["ChecksumCRC32C"]) for p in parts)
    assert done["ChecksumCRC32C"] == b64(crc("CRC32C", joined)) + "-2"
    # FULL_OBJECT CRC32: the whole source keeps its own CRC32, a range is hashed
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst", ChecksumAlgorithm="CRC32",
                                     ChecksumType="FULL_OBJECT")["UploadId"]
    whole = s3.upload_part_copy(UploadId=uid, PartNumber=1, **copy)["CopyPartResult"]
    assert whole["ChecksumCRC32"] == b64(crc("CRC32", source))
    tail = s3.upload_part_copy(UploadId=uid, PartNumber=2, CopySourceRange="bytes=10-99",
                               **copy)["CopyPartResult"]
    assert tail["ChecksumCRC32"] == b64(crc("CRC32", source[10:100]))
    done = complete(s3, bucket, "dst", uid, [{"PartNumber": 1, "ETag": whole["ETag"]},
                                             {"PartNumber": 2, "ETag": tail["ETag"]}])
    assert done["ChecksumCRC32"] == b64(crc("CRC32", source + source[10:100]))
    assert done["ChecksumType"] == "FULL_OBJECT"


def test_upload_part_copy_without_upload_checksum_has_none(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"0123456789", ChecksumAlgorithm="CRC32")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    res = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1,
                              CopySource={"Bucket": bucket, "Key": "src"})["CopyPartResult"]
    assert not [k for k in res if k.startswith("Checksum")]


# --- single PUT ----------------------------------------------------------------------------

def test_put_object_answers_its_checksum_type(s3: Any, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="p", Body=b"123456789", ChecksumAlgorithm="CRC32C")
    assert (put["ChecksumCRC32C"], put["ChecksumType"]) == ("4waSgw==", "FULL_OBJECT")
