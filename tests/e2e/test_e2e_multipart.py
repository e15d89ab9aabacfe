"""Multipart uploads end to end (s3-api.md §14): real gunicorn, real boto3, raw requests
for bodies no SDK sends. Values are checked against what AWS S3 returns."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from support.raw import send
from support.stored import part_blobs

MiB = 1024 * 1024
A5 = b"a" * (5 * MiB)


def code_of(exc: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def md5q(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def composite(parts: list[bytes]) -> str:
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'


def upload_parts(s3: Any, bucket: str, key: str, parts: list[bytes],
                 **create: Any) -> tuple[str, list[dict[str, Any]]]:
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    listed = []
    for n, body in enumerate(parts, start=1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=n,
                              Body=body)["ETag"]
        listed.append({"PartNumber": n, "ETag": etag})
    return uid, listed


def complete(s3: Any, bucket: str, key: str, uid: str, parts: list[dict[str, Any]],
             **kw: Any) -> Any:
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid,
                                        MultipartUpload={"Parts": parts}, **kw)


def test_composite_etag_known_value_and_result_document(server: Any, s3: Any,
                                                        bucket: str) -> None:
    uid, parts = upload_parts(s3, bucket, "dir/big file", [A5, b"b"])
    assert parts[0]["ETag"] == md5q(A5)
    assert len(part_blobs(server, uid)) == 2
    done = complete(s3, bucket, "dir/big file", uid, parts)
    assert done["ETag"] == '"e5a8c5272b26fc10581a21089559b006-2"'
    assert done["Bucket"] == bucket and done["Key"] == "dir/big file"
    assert done["Location"] == f"{server.endpoint}/{bucket}/dir/big%20file"
    assert part_blobs(server, uid) == []  # parts released after the commit
    got = s3.get_object(Bucket=bucket, Key="dir/big file")
    assert got["ETag"] == done["ETag"] and got["ContentLength"] == len(A5) + 1
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(A5 + b"b").digest()
    head = s3.head_object(Bucket=bucket, Key="dir/big file")
    assert head["ETag"] == done["ETag"]
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["ETag"], o["Size"]) for o in listed] == [
        ("dir/big file", done["ETag"], len(A5) + 1)]
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key="dir/big file", UploadId=uid)
    assert code_of(exc) == "NoSuchUpload"


def test_create_headers_metadata_acl_are_applied_to_the_object(s3: Any, bucket: str) -> None:
    uid, parts = upload_parts(
        s3, bucket, "meta", [A5, b"tail"], ContentType="text/csv", CacheControl="no-cache",
        ContentDisposition="attachment", ContentLanguage="fr", Metadata={"Owner": "Zoe"},
        ACL="public-read", StorageClass="STANDARD_IA")
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"], u["StorageClass"]) for u in uploads] == [
        ("meta", uid, "STANDARD_IA")]
    complete(s3, bucket, "meta", uid, parts)
    head = s3.head_object(Bucket=bucket, Key="meta")
    assert head["ContentType"] == "text/csv"
    assert head["CacheControl"] == "no-cache"
    assert head["ContentDisposition"] == "attachment"
    assert head["ContentLanguage"] == "fr"
    assert head["Metadata"] == {"owner": "Zoe"}
    assert head["StorageClass"] == "STANDARD_IA"
    assert "PartsCount" not in head  # S3 returns it only for partNumber requests
    grants = s3.get_object_acl(Bucket=bucket, Key="meta")["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/"
                        "AllUsers"}, "Permission": "READ"} in grants


def test_checksum_algorithm_is_echoed_listed_and_carried(s3: Any, bucket: str) -> None:
    created = s3.create_multipart_upload(Bucket=bucket, Key="ck", ChecksumAlgorithm="CRC32")
    assert created["ChecksumAlgorithm"] == "CRC32"
    uid = created["UploadId"]
    crcs, parts = [], []
    for n, body in enumerate([A5, b"end"], start=1):
        crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
        got = s3.upload_part(Bucket=bucket, Key="ck", UploadId=uid, PartNumber=n, Body=body,
                             ChecksumAlgorithm="CRC32")
        assert got["ChecksumCRC32"] == crc
        crcs.append(crc)
        parts.append({"PartNumber": n, "ETag": got["ETag"], "ChecksumCRC32": crc})
    listing = s3.list_parts(Bucket=bucket, Key="ck", UploadId=uid)
    assert listing["ChecksumAlgorithm"] == "CRC32"
    assert [p["ChecksumCRC32"] for p in listing["Parts"]] == crcs
    wrong = [parts[0], {**parts[1], "ChecksumCRC32": "AAAAAA=="}]
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        complete(s3, bucket, "ck", uid, wrong)
    assert code_of(exc) == "InvalidPart"
    done = complete(s3, bucket, "ck", uid, parts)
    joined = b"".join(base64.b64decode(c) for c in crcs)
    expected = base64.b64encode(zlib.crc32(joined).to_bytes(4, "big")).decode() + "-2"
    head = s3.head_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == expected
    assert head["ChecksumType"] == "COMPOSITE"
    got = s3.get_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == expected and got["Body"].read() == A5 + b"end"
    assert done["ETag"] == composite([A5, b"end"])


def test_create_rejects_unknown_checksum_algorithm(server: Any, s3: Any, bucket: str) -> None:
    resp = send(server.endpoint, "POST", f"/{bucket}/k?uploads",
                headers={"x-amz-checksum-algorithm": "MD5"})
    assert resp.status == 400
    assert b"<Code>InvalidRequest</Code>" in resp.body


@pytest.mark.parametrize("number", ["0", "10001", "abc", "-1", "1.5"])
def test_part_number_out_of_range(server: Any, s3: Any, bucket: str, number: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    resp = send(server.endpoint, "PUT", f"/{bucket}/k?partNumber={number}&uploadId={uid}",
                body=b"x")
    assert resp.status == 400
    assert b"<Code>InvalidArgument</Code>" in resp.body
    assert b"<ArgumentName>partNumber</ArgumentName>" in resp.body
    assert b"Part number must be an integer between 1 and 10000, inclusive" in resp.body
    ok = send(server.endpoint, "PUT", f"/{bucket}/k?partNumber=10000&uploadId={uid}",
              body=b"x")
    assert ok.status == 200 and ok.headers["etag"] == md5q(b"x")


def test_resent_part_replaces_the_earlier_one(server: Any, s3: Any, bucket: str) -> None:
    uid, parts = upload_parts(s3, bucket, "re", [A5, b"first"])
    second = s3.upload_part(Bucket=bucket, Key="re", UploadId=uid, PartNumber=2,
                            Body=b"second!")["ETag"]
    listed = s3.list_parts(Bucket=bucket, Key="re", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [
        (1, md5q(A5), len(A5)), (2, second, 7)]
    assert len([p for p in part_blobs(server, uid) if p.startswith("00002-")]) == 1
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        complete(s3, bucket, "re", uid, parts)  # the replaced ETag is no longer valid
    assert code_of(exc) == "InvalidPart"
    complete(s3, bucket, "re", uid, [parts[0], {"PartNumber": 2, "ETag": second}])
    assert s3.get_object(Bucket=bucket, Key="re")["Body"].read()[-7:] == b"second!"


def test_upload_part_content_md5_and_checksum_mismatch(s3: Any, bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="d")["UploadId"]
    good = base64.b64encode(hashlib.md5(b"data").digest()).decode()
    got = s3.upload_part(Bucket=bucket, Key="d", UploadId=uid, PartNumber=1, Body=b"data",
                         ContentMD5=good)
    assert got["ETag"] == md5q(b"data")
    for extra in ({"ContentMD5": "1B2M2Y8AsgTpgAmY7PhCfg=="}, {"ChecksumCRC32": "AAAAAA=="}):
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            s3.upload_part(Bucket=bucket, Key="d", UploadId=uid, PartNumber=2, Body=b"data",
                           **extra)
        assert code_of(exc) == "BadDigest"
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key="d",
                                                    UploadId=uid)["Parts"]] == [1]


def test_upload_part_copy_ranges_and_conditionals(s3: Any, bucket: str) -> None:
    source = os.urandom(6 * MiB + 123)
    src_etag = s3.put_object(Bucket=bucket, Key="src", Body=source)["ETag"]
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    copy = {"Bucket": bucket, "Key": "dst", "UploadId": uid,
            "CopySource": {"Bucket": bucket, "Key": "src"}}
    p1 = s3.upload_part_copy(PartNumber=1, CopySourceRange=f"bytes=0-{5 * MiB - 1}",
                             CopySourceIfMatch=src_etag, **copy)["CopyPartResult"]
    assert p1["ETag"] == md5q(source[:5 * MiB]) and "LastModified" in p1
    p2 = s3.upload_part_copy(PartNumber=2, **copy)["CopyPartResult"]  # whole source
    assert p2["ETag"] == md5q(source)
    p3 = s3.upload_part_copy(PartNumber=3, CopySourceRange=f"bytes={5 * MiB}-{len(source) - 1}",
                             **copy)["CopyPartResult"]
    for rng in ("bytes=5-1", "bytes=0-", "bytes=-5", "0-5"):
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            s3.upload_part_copy(PartNumber=4, CopySourceRange=rng, **copy)
        assert code_of(exc) == "InvalidArgument"
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.upload_part_copy(PartNumber=4, CopySourceRange=f"bytes=0-{len(source)}", **copy)
    assert code_of(exc) == "InvalidArgument"
    assert f"source object of size: {len(source)}" in exc.value.response["Error"]["Message"]
    for cond in ({"CopySourceIfMatch": '"00"'}, {"CopySourceIfNoneMatch": src_etag}):
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            s3.upload_part_copy(PartNumber=4, **copy, **cond)
        assert code_of(exc) == "PreconditionFailed"
    parts = [{"PartNumber": n, "ETag": p["ETag"]} for n, p in enumerate((p1, p2, p3), 1)]
    done = complete(s3, bucket, "dst", uid, parts)
    pieces = [source[:5 * MiB], source, source[5 * MiB:]]
    assert done["ETag"] == composite(pieces)
    body = s3.get_object(Bucket=bucket, Key="dst")["Body"].read()
    assert body == b"".join(pieces)


def test_complete_validation_errors(s3: Any, bucket: str) -> None:
    uid, parts = upload_parts(s3, bucket, "v", [b"x" * 100, b"y" * 100, b"z"])
    cases = [
        ([{"PartNumber": 1, "ETag": md5q(b"other")}], "InvalidPart"),
        ([{"PartNumber": 9, "ETag": parts[0]["ETag"]}], "InvalidPart"),
        ([parts[1], parts[0]], "InvalidPartOrder"),
        ([parts[0], parts[0]], "InvalidPartOrder"),
    ]
    for listed, code in cases:
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            complete(s3, bucket, "v", uid, listed)
        assert code_of(exc) == code, listed
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        complete(s3, bucket, "v", uid, parts)
    err = exc.value.response["Error"]
    assert err["Code"] == "EntityTooSmall"
    assert (err["ProposedSize"], err["MinSizeAllowed"]) == ("100", "5242880")
    assert err["PartNumber"] == "1" and err["ETag"].strip('"') == parts[0]["ETag"].strip('"')
    done = complete(s3, bucket, "v", uid, [parts[2]])  # a lone small last part is fine
    assert done["ETag"] == composite([b"z"])
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"z"


def test_complete_bodies_and_unknown_uploads(server: Any, s3: Any, bucket: str) -> None:
    uid, _ = upload_parts(s3, bucket, "b", [b"x"])
    other, _ = upload_parts(s3, bucket, "other-key", [b"x"])
    path = f"/{bucket}/b?uploadId={uid}"
    # [S3] an empty body is MalformedXML, not MissingRequestBodyError (docs/decisions.md)
    for body, code in ((b"", b"MalformedXML"), (b"<not xml", b"MalformedXML"),
                       (b"<CompleteMultipartUpload/>", b"MalformedXML"),
                       (b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber>"
                        b"<ETag>\"a\"</ETag></Part></CompleteMultipartUpload>", b"MalformedXML")):
        resp = send(server.endpoint, "POST", path, body=body)
        assert resp.status == 400 and b"<Code>" + code + b"</Code>" in resp.body, body
    for upload_id in ("0" * 32, "nothex", other):
        resp = send(server.endpoint, "POST", f"/{bucket}/b?uploadId={upload_id}",
                    body=b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
                         b"<ETag>x</ETag></Part></CompleteMultipartUpload>")
        assert resp.status == 404 and b"<Code>NoSuchUpload</Code>" in resp.body, upload_id


def test_complete_replay_and_if_none_match(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"existing")
    uid, parts = upload_parts(s3, bucket, "k", [A5, b"z"])
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        complete(s3, bucket, "k", uid, parts, IfNoneMatch="*")
    assert code_of(exc) == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"existing"
    first = complete(s3, bucket, "k", uid, parts)  # the upload survived the 412
    again = complete(s3, bucket, "k", uid, parts)
    assert (again["ETag"], again["Location"], again["Key"]) == (
        first["ETag"], first["Location"], first["Key"])
    s3.put_object(Bucket=bucket, Key="k", Body=b"newer")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        complete(s3, bucket, "k", uid, parts)  # the completed object is gone: no replay
    assert code_of(exc) == "NoSuchUpload"
    fresh, fparts = upload_parts(s3, bucket, "new-key", [b"q"])
    assert complete(s3, bucket, "new-key", fresh, fparts, IfNoneMatch="*")["ETag"] == composite(
        [b"q"])


def test_complete_if_match(s3: Any, bucket: str) -> None:
    """CompleteMultipartUpload's If-Match is PutObject's: 404 NoSuchKey without an object,
    412 on another ETag (a list or a weak ETag never matches), the upload left completable;
    If-None-Match with an ETag is 501 (docs/decisions.md)."""
    uid, parts = upload_parts(s3, bucket, "cas", [b"new"])
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        complete(s3, bucket, "cas", uid, parts, IfMatch=md5q(b"anything"))
    assert (code_of(exc), exc.value.response["Error"].get("Key")) == ("NoSuchKey", "cas")
    old = s3.put_object(Bucket=bucket, Key="cas", Body=b"old")["ETag"]
    for stale in (md5q(b"other"), f'"{"0" * 32}", {old}', "W/" + old):
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            complete(s3, bucket, "cas", uid, parts, IfMatch=stale)
        assert code_of(exc) == "PreconditionFailed", stale
        assert exc.value.response["Error"].get("Condition") == "If-Match"
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        complete(s3, bucket, "cas", uid, parts, IfNoneMatch=old)
    assert code_of(exc) == "NotImplemented"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
    assert s3.get_object(Bucket=bucket, Key="cas")["Body"].read() == b"old"
    done = complete(s3, bucket, "cas", uid, parts, IfMatch=old)  # the upload survived
    assert done["ETag"] == composite([b"new"])
    assert s3.get_object(Bucket=bucket, Key="cas")["Body"].read() == b"new"


def test_abort_twice_and_files_released(server: Any, s3: Any, bucket: str) -> None:
    uid, _ = upload_parts(s3, bucket, "ab", [b"x", b"y"])
    assert len(part_blobs(server, uid)) == 2
    resp = s3.abort_multipart_upload(Bucket=bucket, Key="ab", UploadId=uid)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert part_blobs(server, uid) == []
    for call in (s3.abort_multipart_upload, s3.list_parts):
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            call(Bucket=bucket, Key="ab", UploadId=uid)
        assert code_of(exc) == "NoSuchUpload"
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="ab", UploadId=uid, PartNumber=1, Body=b"late")
    assert code_of(exc) == "NoSuchUpload"
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_list_parts_paging(s3: Any, bucket: str) -> None:
    uid, parts = upload_parts(s3, bucket, "lp", [bytes([n]) * n for n in range(1, 6)],
                              StorageClass="STANDARD")
    page = s3.list_parts(Bucket=bucket, Key="lp", UploadId=uid, MaxParts=2)
    assert [p["PartNumber"] for p in page["Parts"]] == [1, 2]
    assert (page["IsTruncated"], page["NextPartNumberMarker"], page["MaxParts"]) == (True, 2, 2)
    assert page["PartNumberMarker"] == 0 and page["StorageClass"] == "STANDARD"
    assert page["Initiator"]["ID"] == page["Owner"]["ID"] != ""
    page = s3.list_parts(Bucket=bucket, Key="lp", UploadId=uid, MaxParts=2, PartNumberMarker=2)
    assert [p["PartNumber"] for p in page["Parts"]] == [3, 4]
    assert (page["IsTruncated"], page["NextPartNumberMarker"]) == (True, 4)
    page = s3.list_parts(Bucket=bucket, Key="lp", UploadId=uid, MaxParts=2, PartNumberMarker=4)
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in page["Parts"]] == [
        (5, 5, parts[4]["ETag"])]
    assert (page["IsTruncated"], page["NextPartNumberMarker"]) == (False, 5)
    pages = s3.get_paginator("list_parts").paginate(Bucket=bucket, Key="lp", UploadId=uid,
                                                    PaginationConfig={"PageSize": 2})
    assert [p["PartNumber"] for pg in pages for p in pg["Parts"]] == [1, 2, 3, 4, 5]


def test_list_multipart_uploads_prefix_delimiter_paging(s3: Any, bucket: str) -> None:
    ids: dict[str, list[str]] = {}
    for key in ("a/1", "a/2", "b/x/1", "c", "c", "d"):
        ids.setdefault(key, []).append(
            s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"])
    full = s3.list_multipart_uploads(Bucket=bucket)
    order = [(u["Key"], u["UploadId"]) for u in full["Uploads"]]
    assert [k for k, _ in order] == ["a/1", "a/2", "b/x/1", "c", "c", "d"]
    assert sorted(i for k, i in order if k == "c") == sorted(ids["c"])
    assert full["IsTruncated"] is False and full["MaxUploads"] == 1000
    grouped = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["a/", "b/"]
    assert [u["Key"] for u in grouped["Uploads"]] == ["c", "c", "d"]
    sub = s3.list_multipart_uploads(Bucket=bucket, Prefix="b/", Delimiter="/")
    assert [p["Prefix"] for p in sub["CommonPrefixes"]] == ["b/x/"] and "Uploads" not in sub
    assert [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")[
        "Uploads"]] == ["a/1", "a/2"]
    page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=4)
    assert page["IsTruncated"] is True
    assert (page["NextKeyMarker"], page["NextUploadIdMarker"]) == order[3]
    rest = s3.list_multipart_uploads(Bucket=bucket, KeyMarker=page["NextKeyMarker"],
                                     UploadIdMarker=page["NextUploadIdMarker"])
    assert [(u["Key"], u["UploadId"]) for u in rest["Uploads"]] == order[4:]
    assert (rest["KeyMarker"], rest["UploadIdMarker"]) == order[3]
    after_c = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="c")
    assert [u["Key"] for u in after_c["Uploads"]] == ["d"]
    pages = s3.get_paginator("list_multipart_uploads").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 2})
    assert [(u["Key"], u["UploadId"]) for pg in pages for u in pg["Uploads"]] == order
    empty = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=0)
    assert "Uploads" not in empty and empty["MaxUploads"] == 0


def test_get_and_head_part_number(s3: Any, bucket: str) -> None:
    pieces = [A5, b"b" * (5 * MiB), b"c"]
    uid, parts = upload_parts(s3, bucket, "pn", pieces)
    etag = complete(s3, bucket, "pn", uid, parts)["ETag"]
    total = sum(map(len, pieces))
    offset = 0
    for n, piece in enumerate(pieces, start=1):
        got = s3.get_object(Bucket=bucket, Key="pn", PartNumber=n)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"] == f"bytes {offset}-{offset + len(piece) - 1}/{total}"
        assert got["PartsCount"] == 3 and got["ETag"] == etag
        assert got["ContentLength"] == len(piece) and got["Body"].read() == piece
        head = s3.head_object(Bucket=bucket, Key="pn", PartNumber=n)
        assert head["ContentLength"] == len(piece) and head["PartsCount"] == 3
        assert head["ContentRange"] == got["ContentRange"]
        offset += len(piece)
    # Past the parts S3 answers 416 InvalidPartNumber with both counts, not 400 InvalidPart
    # (docs/decisions.md); HEAD gets the status alone.
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="pn", PartNumber=4)
    assert code_of(exc) == "InvalidPartNumber"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    assert exc.value.response["Error"]["Message"] == "The requested partnumber is not satisfiable"
    assert exc.value.response["Error"]["PartNumberRequested"] == "4"
    assert exc.value.response["Error"]["ActualPartCount"] == "3"
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="pn", PartNumber=10000)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="pn", PartNumber=10001)  # not a part number: 400
    assert code_of(exc) == "InvalidArgument"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="pn", PartNumber=1, Range="bytes=0-1")
    assert code_of(exc) == "InvalidRequest"
    s3.put_object(Bucket=bucket, Key="single", Body=b"0123456789")
    single = s3.get_object(Bucket=bucket, Key="single", PartNumber=1)
    assert single["Body"].read() == b"0123456789" and "PartsCount" not in single
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="single", PartNumber=2)
    assert code_of(exc) == "InvalidPartNumber"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    assert exc.value.response["Error"]["PartNumberRequested"] == "2"
    assert exc.value.response["Error"]["ActualPartCount"] == "1"
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="single", PartNumber=2)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416


def test_boto3_managed_upload_with_crc32_parts(tmp_path: Path, s3: Any, bucket: str) -> None:
    """s3transfer sends x-amz-checksum-crc32 on every part and lists ChecksumCRC32 in the
    Complete body: the exact shape of a modern SDK upload."""
    from boto3.s3.transfer import TransferConfig

    src = tmp_path / "f.bin"
    data = os.urandom(13 * MiB + 5)
    src.write_bytes(data)
    cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_file(str(src), bucket, "managed", Config=cfg)
    head = s3.head_object(Bucket=bucket, Key="managed")
    chunks = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    assert head["ETag"] == composite(chunks) and head["ContentLength"] == len(data)
    dst = tmp_path / "back.bin"
    s3.download_file(bucket, "managed", str(dst), Config=cfg)
    assert dst.read_bytes() == data


def test_reads_and_copies_across_part_boundaries(s3: Any, bucket: str) -> None:
    """A completed upload is stored as its parts (a composite blob on the local backend):
    whole GETs, ranges over a boundary and copies must give the bytes in order."""
    pieces = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1000)]
    whole = b"".join(pieces)
    uid, parts = upload_parts(s3, bucket, "across", pieces)
    complete(s3, bucket, "across", uid, parts)
    got = s3.get_object(Bucket=bucket, Key="across")
    assert got["ContentLength"] == len(whole)
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(whole).digest()
    for first, last in ((5 * MiB - 7, 5 * MiB + 6), (0, 10 * MiB + 5), (10 * MiB - 1, None),
                        (3, 3)):
        spec = f"bytes={first}-{'' if last is None else last}"
        body = s3.get_object(Bucket=bucket, Key="across", Range=spec)["Body"].read()
        assert body == whole[first:None if last is None else last + 1], spec
    s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "across"})
    s3.delete_object(Bucket=bucket, Key="across")
    copied = s3.get_object(Bucket=bucket, Key="copied")["Body"].read()
    assert hashlib.sha256(copied).digest() == hashlib.sha256(whole).digest()
