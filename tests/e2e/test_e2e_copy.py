"""CopyObject end to end (s3-api.md §8.6): source encoding, directives, conditionals,
self-copy, multipart sources, cross-bucket copies, ACLs not copied."""

from __future__ import annotations

import hashlib
import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

import botocore.exceptions
import pytest
from lxml import etree
from support.server import Server
from support.signed import send

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def error_code(exc: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def status(exc: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> int:
    return int(exc.value.response["ResponseMetadata"]["HTTPStatusCode"])


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def raw_copy(server: Server, bucket: str, key: str, source: str,
             **headers: str) -> tuple[int, Any]:
    hdrs = {"x-amz-copy-source": source, **{k.replace("_", "-"): v for k, v in headers.items()}}
    resp = send(server.endpoint, "PUT", f"/{bucket}/{quote(key)}", headers=hdrs)
    return resp.status, etree.fromstring(resp.body) if resp.body else None


@pytest.mark.parametrize("key", ["plain.txt", "with space/and+plus", "ünï/ключ 日本",
                                 "pct%20literal", "q?versionId=x"])
def test_copy_keys_needing_encoding(s3: Any, bucket: str, key: str) -> None:
    body = f"body of {key}".encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/x-src",
                  Metadata={"origin": "src"})
    out = s3.copy_object(Bucket=bucket, Key=key + ".copy", CopySource={"Bucket": bucket,
                                                                       "Key": key})
    assert out["CopyObjectResult"]["ETag"] == md5_etag(body)
    got = s3.get_object(Bucket=bucket, Key=key + ".copy")
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/x-src" and got["Metadata"] == {"origin": "src"}
    assert got["ETag"] == md5_etag(body)


def test_copy_source_forms_and_raw_result_xml(server: Server, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="ü b+c", Body=b"hello")
    unencoded_utf8 = f"/{bucket}/ü b+c".encode().decode("latin-1")  # raw UTF-8 on the wire
    for source in (f"/{bucket}/%C3%BC%20b%2Bc", f"{bucket}/%C3%BC%20b%2Bc",
                   f"{bucket}/%C3%BC%20b+c", f"/{bucket}/%C3%BC%20b%2Bc?versionId=null",
                   unencoded_utf8):
        code, root = raw_copy(server, bucket, "dst", source)
        assert code == 200, (source, etree.tostring(root))
        assert root.tag == NS + "CopyObjectResult"
        assert [el.tag.replace(NS, "") for el in root] == ["LastModified", "ETag"]
        assert root.findtext(NS + "ETag") == md5_etag(b"hello")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                            root.findtext(NS + "LastModified") or "")
        assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"hello"


@pytest.mark.parametrize("source,code,status_", [
    ("{b}/src?versionId=3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", "NoSuchVersion", 404),
    ("{b}", "InvalidArgument", 400),
    ("/{b}/", "InvalidArgument", 400),
    ("/", "InvalidArgument", 400),
    ("{b}/missing", "NoSuchKey", 404),
    ("no-such-bucket-zz/src", "NoSuchBucket", 404),
    ("{b}/%ff%fe", "InvalidArgument", 400),
])
def test_bad_copy_sources(server: Server, s3: Any, bucket: str, source: str, code: str,
                          status_: int) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    got, root = raw_copy(server, bucket, "dst", source.format(b=bucket))
    assert (got, root.findtext("Code")) == (status_, code)
    if code == "NoSuchVersion":
        assert root.findtext("Key") == "src"
        assert root.findtext("VersionId") == "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="dst")


def test_metadata_directive_copy_and_replace(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="s", Body=b"data", ContentType="text/plain",
                  ContentLanguage="de", CacheControl="no-cache", Metadata={"a": "1"})
    s3.copy_object(Bucket=bucket, Key="c", CopySource=f"{bucket}/s",
                   ContentType="ignored/type", Metadata={"ignored": "yes"})
    copied = s3.head_object(Bucket=bucket, Key="c")
    assert copied["ContentType"] == "text/plain" and copied["Metadata"] == {"a": "1"}
    assert copied["ContentLanguage"] == "de" and copied["CacheControl"] == "no-cache"
    s3.copy_object(Bucket=bucket, Key="r", CopySource=f"{bucket}/s",
                   MetadataDirective="REPLACE", Metadata={"b": "2"})
    replaced = s3.head_object(Bucket=bucket, Key="r")
    assert replaced["Metadata"] == {"b": "2"}
    assert replaced["ContentType"] == "application/octet-stream"
    assert "ContentLanguage" not in replaced and "CacheControl" not in replaced
    assert replaced["ETag"] == md5_etag(b"data")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="x", CopySource=f"{bucket}/s",
                       MetadataDirective="MERGE")
    assert error_code(exc) == "InvalidArgument"


def test_self_copy_needs_replace(s3: Any, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="self", Body=b"same", Metadata={"v": "1"})
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="self", CopySource=f"{bucket}/self")
    assert error_code(exc) == "InvalidRequest"
    assert "copy an object to itself" in exc.value.response["Error"]["Message"]
    before = s3.head_object(Bucket=bucket, Key="self")["LastModified"]
    time.sleep(1.05)
    s3.copy_object(Bucket=bucket, Key="self", CopySource=f"{bucket}/self",
                   MetadataDirective="REPLACE", Metadata={"v": "2"}, ContentType="text/new")
    after = s3.get_object(Bucket=bucket, Key="self")
    assert after["Body"].read() == b"same" and after["ETag"] == put["ETag"]
    assert after["Metadata"] == {"v": "2"} and after["ContentType"] == "text/new"
    assert after["LastModified"] > before
    s3.copy_object(Bucket=bucket, Key="self", CopySource=f"{bucket}/self",
                   StorageClass="STANDARD_IA")  # a new storage class also allows it
    head = s3.head_object(Bucket=bucket, Key="self")
    assert head["StorageClass"] == "STANDARD_IA" and head["Metadata"] == {"v": "2"}


def _http_date(dt: datetime) -> str:
    return format_datetime(dt.astimezone(UTC), usegmt=True)


def test_copy_source_conditionals_fail_with_412_never_304(s3: Any, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="s", Body=b"cond")
    etag = put["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="s")["LastModified"]
    past, future = _http_date(modified - timedelta(days=1)), _http_date(
        modified + timedelta(days=1))
    src = f"{bucket}/s"
    failing = [
        {"CopySourceIfMatch": '"0123456789abcdef0123456789abcdef"'},
        {"CopySourceIfNoneMatch": etag},
        {"CopySourceIfNoneMatch": "*"},
        {"CopySourceIfModifiedSince": future},
        {"CopySourceIfUnmodifiedSince": past},
        {"CopySourceIfMatch": etag, "CopySourceIfNoneMatch": etag},
    ]
    for cond in failing:
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            s3.copy_object(Bucket=bucket, Key="d", CopySource=src, **cond)
        assert (status(exc), error_code(exc)) == (412, "PreconditionFailed"), cond
    passing = [
        {"CopySourceIfMatch": etag},
        {"CopySourceIfMatch": etag.strip('"').upper()},
        {"CopySourceIfMatch": etag, "CopySourceIfUnmodifiedSince": past},  # match wins
        {"CopySourceIfNoneMatch": '"ffff"', "CopySourceIfModifiedSince": future},
        {"CopySourceIfModifiedSince": past},
        {"CopySourceIfUnmodifiedSince": future},
    ]
    for cond in passing:
        out = s3.copy_object(Bucket=bucket, Key="d", CopySource=src, **cond)
        assert out["CopyObjectResult"]["ETag"] == etag, cond
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 2


def test_copy_multipart_source_gets_plain_md5_etag(s3: Any, bucket: str) -> None:
    part1, part2 = b"a" * (5 * 1024 * 1024), b"tail bytes"
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    etags = [s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=n,
                            Body=body)["ETag"] for n, body in ((1, part1), (2, part2))]
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                   for n, e in enumerate(etags, 1)]})
    assert done["ETag"].endswith('-2"')
    out = s3.copy_object(Bucket=bucket, Key="flat", CopySource=f"{bucket}/mp")
    whole = part1 + part2
    assert out["CopyObjectResult"]["ETag"] == md5_etag(whole)
    got = s3.get_object(Bucket=bucket, Key="flat")
    assert got["ETag"] == md5_etag(whole) and got["ContentLength"] == len(whole)
    assert hashlib.md5(got["Body"].read()).hexdigest() == hashlib.md5(whole).hexdigest()
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="flat")["Contents"][0]
    assert listed["ETag"] == md5_etag(whole)


def test_copy_across_buckets_and_missing_destination(s3: Any, bucket: str) -> None:
    s3.create_bucket(Bucket="copy-target-bucket")
    s3.put_object(Bucket=bucket, Key="k", Body=b"cross", ContentType="a/b")
    s3.copy_object(Bucket="copy-target-bucket", Key="deep/k2", CopySource=f"{bucket}/k")
    got = s3.get_object(Bucket="copy-target-bucket", Key="deep/k2")
    assert got["Body"].read() == b"cross" and got["ContentType"] == "a/b"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"cross"  # source kept
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.copy_object(Bucket="no-such-dest-bucket", Key="k", CopySource=f"{bucket}/k")
    assert error_code(exc) == "NoSuchBucket"


def test_acl_is_not_copied_but_request_acl_applies(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="pub", Body=b"p", ACL="public-read")
    assert any(g["Grantee"].get("URI") == ALL_USERS
               for g in s3.get_object_acl(Bucket=bucket, Key="pub")["Grants"])
    s3.copy_object(Bucket=bucket, Key="priv", CopySource=f"{bucket}/pub")
    grants = s3.get_object_acl(Bucket=bucket, Key="priv")["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]
    assert grants[0]["Grantee"]["Type"] == "CanonicalUser"
    s3.copy_object(Bucket=bucket, Key="pub2", CopySource=f"{bucket}/priv", ACL="public-read")
    grants = s3.get_object_acl(Bucket=bucket, Key="pub2")["Grants"]
    assert {(g["Grantee"].get("URI"), g["Permission"]) for g in grants} >= {
        (ALL_USERS, "READ")}


def test_copy_overwrites_existing_destination(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"new bytes")
    s3.put_object(Bucket=bucket, Key="dst", Body=b"old", Metadata={"old": "1"})
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src")
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == b"new bytes" and got["Metadata"] == {}
