"""Bucket versioning end to end, as AWS S3 documents it: Put/GetBucketVersioning, versions
made by PutObject / CopyObject / CompleteMultipartUpload, the null version, Suspended,
delete markers, reads and deletes by VersionId, DeleteObjects with versions,
ListObjectVersions (order, IsLatest, markers, delimiter, MaxKeys, encoding), DeleteBucket,
conditional writes on the current version, and the aws CLI's restore-by-copy.

Version ids are opaque, but BleepStore's sort lexicographically by recency (a later write
has a greater id); these tests rely on that. Runs on every server kind (gateways too):
versioning lives in the metadata, not in the blob backend.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import botocore.exceptions
import pytest
from lxml import etree
from support.clients import AwsCli, boto3_client
from support.server import Server
from support.signed import RawResponse, query_string, send

XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
NS = "{" + XMLNS + "}"
MiB = 1024 * 1024


# ------------------------------------------------------------------------------ helpers

def enable(s3: Any, bucket: str, status: str = "Enabled") -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})


def headers(resp: Any) -> dict[str, str]:
    return dict(resp["ResponseMetadata"]["HTTPHeaders"])


def http_status(resp: Any) -> int:
    return int(resp["ResponseMetadata"]["HTTPStatusCode"])


def failure(call: Any, **kwargs: Any) -> tuple[int, str, dict[str, str]]:
    """(status, error code, response headers) of a call that must fail."""
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        call(**kwargs)
    r = exc.value.response
    return (int(r["ResponseMetadata"]["HTTPStatusCode"]), str(r["Error"]["Code"]),
            dict(r["ResponseMetadata"]["HTTPHeaders"]))


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def put_versions(s3: Any, bucket: str, key: str, bodies: list[bytes]) -> list[str]:
    """PUT each body in turn; the version ids, oldest first."""
    return [s3.put_object(Bucket=bucket, Key=key, Body=b)["VersionId"] for b in bodies]


def listing(s3: Any, bucket: str, **kwargs: Any) -> tuple[list[Any], list[Any], list[str]]:
    """Every Version, DeleteMarker and CommonPrefix over all pages (boto3's paginator)."""
    versions: list[Any] = []
    markers: list[Any] = []
    prefixes: list[str] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, **kwargs):
        versions += page.get("Versions", [])
        markers += page.get("DeleteMarkers", [])
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return versions, markers, prefixes


def list_raw(server: Server, bucket: str, params: dict[str, str] | None = None) -> Any:
    query = query_string(params or {})
    resp = send(server.endpoint, "GET", f"/{bucket}?versions" + (f"&{query}" if query else ""))
    assert resp.status == 200, resp.body
    assert resp.headers["content-type"] == "application/xml"
    root = etree.fromstring(resp.body)
    assert root.tag == NS + "ListVersionsResult"
    return root


def entries(root: Any) -> list[tuple[str, str, str, bool]]:
    """(Version|DeleteMarker, key, version id, is latest) in document order."""
    out = []
    for el in root:
        tag = el.tag.replace(NS, "")
        if tag in ("Version", "DeleteMarker"):
            out.append((tag, el.findtext(NS + "Key"), el.findtext(NS + "VersionId"),
                        el.findtext(NS + "IsLatest") == "true"))
    return out


def one(root: Any, name: str) -> str | None:
    return root.findtext(NS + name)


def error_of(resp: RawResponse) -> tuple[int, str]:
    return resp.status, etree.fromstring(resp.body).findtext("Code") or ""


def versioning_xml(status: str) -> bytes:
    return (f'<VersioningConfiguration xmlns="{XMLNS}"><Status>{status}</Status>'
            "</VersioningConfiguration>").encode()


def put_versioning_raw(server: Server, bucket: str, body: bytes) -> RawResponse:
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    return send(server.endpoint, "PUT", f"/{bucket}?versioning", body=body,
                headers={"Content-MD5": md5})


@pytest.fixture
def vbucket(s3: Any, bucket: str) -> str:
    """The test's bucket with versioning Enabled."""
    enable(s3, bucket)
    return bucket


# -------------------------------------------------------------- Put/GetBucketVersioning

def test_never_versioned_bucket_reports_no_status(server: Server, s3: Any,
                                                  bucket: str) -> None:
    got = s3.get_bucket_versioning(Bucket=bucket)
    assert "Status" not in got and "MFADelete" not in got
    resp = send(server.endpoint, "GET", f"/{bucket}?versioning")
    root = etree.fromstring(resp.body)
    assert resp.status == 200 and root.tag == NS + "VersioningConfiguration"
    assert len(root) == 0


def test_enable_then_suspend_is_reported_and_never_returns_to_unversioned(
        s3: Any, bucket: str) -> None:
    put = s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert http_status(put) == 200
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    enable(s3, bucket, "Suspended")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    enable(s3, bucket, "Enabled")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_versioning_configuration_xml_round_trip(server: Server, s3: Any, bucket: str) -> None:
    assert put_versioning_raw(server, bucket, versioning_xml("Enabled")).status == 200
    resp = send(server.endpoint, "GET", f"/{bucket}?versioning")
    assert resp.status == 200 and resp.headers["content-type"] == "application/xml"
    root = etree.fromstring(resp.body)
    assert root.tag == NS + "VersioningConfiguration"
    assert [el.tag for el in root] == [NS + "Status"] and one(root, "Status") == "Enabled"


@pytest.mark.parametrize("status", ["Disabled", "enabled", ""])
def test_status_other_than_enabled_or_suspended_is_malformed_xml(
        server: Server, s3: Any, bucket: str, status: str) -> None:
    assert error_of(put_versioning_raw(server, bucket, versioning_xml(status))) == (
        400, "MalformedXML")
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)


@pytest.mark.parametrize("body", [
    b"not xml at all",
    f'<VersioningConfiguration xmlns="{XMLNS}"><Status>Enabled</Status>'.encode(),
    b'<!DOCTYPE v [<!ENTITY e "Enabled">]><VersioningConfiguration><Status>&e;</Status>'
    b"</VersioningConfiguration>",
], ids=["garbage", "unclosed", "entity"])
def test_broken_versioning_xml_is_malformed_xml(server: Server, s3: Any, bucket: str,
                                                body: bytes) -> None:
    assert error_of(put_versioning_raw(server, bucket, body)) == (400, "MalformedXML")
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)


class User:
    def __init__(self, access_key: str, secret_key: str, endpoint: str) -> None:
        self.access_key = access_key
        self.client = boto3_client(endpoint, access_key, secret_key)


@pytest.fixture
def bob(server: Server, s3: Any) -> Iterator[User]:
    """A second real user, made with ``bleepstore user add`` (and dropped afterwards)."""
    access = "AKVBOB" + secrets.token_hex(6).upper()
    secret = secrets.token_urlsafe(30)
    exe = shutil.which("bleepstore")
    cmd = [exe] if exe else [sys.executable, "-m", "bleepstore.cli"]
    env = {**os.environ, "BLEEPSTORE_CONFIG": str(server.config_path)}
    subprocess.run([*cmd, "user", "add", f"--access-key={access}", f"--secret-key={secret}",
                    "--display-name=bob"], env=env, check=True, capture_output=True)
    yield User(access, secret, server.endpoint)
    with sqlite3.connect(server.db_path) as conn:
        conn.execute("DELETE FROM credentials WHERE access_key_id = ?", (access,))


def test_only_the_bucket_owner_may_put_or_get_versioning(s3: Any, bucket: str,
                                                         bob: User) -> None:
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")  # grants are not ownership
    status, code, _ = failure(bob.client.put_bucket_versioning, Bucket=bucket,
                              VersioningConfiguration={"Status": "Enabled"})
    assert (status, code) == (403, "AccessDenied")
    assert failure(bob.client.get_bucket_versioning, Bucket=bucket)[:2] == (403, "AccessDenied")
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)


# ------------------------------------------------------------ never-versioned buckets

def test_never_versioned_bucket_sends_no_version_headers(s3: Any, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"one")
    assert "x-amz-version-id" not in headers(put) and "VersionId" not in put
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"two")
    assert "x-amz-version-id" not in headers(put)
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"two" and "x-amz-version-id" not in headers(got)
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ETag"] == md5_etag(b"two") and "x-amz-version-id" not in headers(head)
    copy = s3.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "k"})
    assert "x-amz-version-id" not in headers(copy)
    gone = s3.delete_object(Bucket=bucket, Key="k")
    assert http_status(gone) == 204
    assert "x-amz-delete-marker" not in headers(gone)
    assert "x-amz-version-id" not in headers(gone)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["c"]
    assert failure(s3.get_object, Bucket=bucket, Key="k")[:2] == (404, "NoSuchKey")


def test_never_versioned_bucket_lists_each_object_once_as_null_version(s3: Any,
                                                                       bucket: str) -> None:
    for body in (b"1", b"22", b"333"):
        s3.put_object(Bucket=bucket, Key="one", Body=body)
    s3.put_object(Bucket=bucket, Key="two", Body=b"x")
    versions, markers, _ = listing(s3, bucket)
    assert markers == []
    assert [(v["Key"], v["VersionId"], v["IsLatest"], v["Size"], v["ETag"]) for v in versions] \
        == [("one", "null", True, 3, md5_etag(b"333")), ("two", "null", True, 1, md5_etag(b"x"))]


def test_never_versioned_bucket_reads_the_null_version(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"plain")
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"plain"


# ---------------------------------------------------------------- versioning Enabled

def test_each_put_creates_a_new_increasing_version(s3: Any, vbucket: str) -> None:
    bodies = [b"first", b"second!", b"third!!!"]
    ids = put_versions(s3, vbucket, "doc", bodies)
    assert len(set(ids)) == 3 and ids == sorted(ids)  # later write, greater id
    assert "null" not in ids
    for vid, body in zip(ids, bodies, strict=True):
        got = s3.get_object(Bucket=vbucket, Key="doc", VersionId=vid)
        assert got["Body"].read() == body
        assert (got["VersionId"], got["ETag"], got["ContentLength"]) == (
            vid, md5_etag(body), len(body))
    latest = s3.get_object(Bucket=vbucket, Key="doc")
    assert latest["Body"].read() == bodies[-1] and latest["VersionId"] == ids[-1]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=vbucket)["Contents"]] == ["doc"]


def test_put_response_carries_version_header(s3: Any, vbucket: str) -> None:
    put = s3.put_object(Bucket=vbucket, Key="k", Body=b"x")
    assert headers(put)["x-amz-version-id"] == put["VersionId"] != ""


def test_head_and_get_object_acl_read_a_given_version(s3: Any, vbucket: str) -> None:
    old, new = put_versions(s3, vbucket, "k", [b"old bytes", b"new"])
    head = s3.head_object(Bucket=vbucket, Key="k", VersionId=old)
    assert (head["VersionId"], head["ETag"], head["ContentLength"]) == (
        old, md5_etag(b"old bytes"), 9)
    assert s3.head_object(Bucket=vbucket, Key="k")["VersionId"] == new
    acl = s3.get_object_acl(Bucket=vbucket, Key="k", VersionId=old)
    assert http_status(acl) == 200 and acl["Owner"]["ID"]
    assert any(g["Permission"] == "FULL_CONTROL" for g in acl["Grants"])


def test_concurrent_overwrites_each_get_their_own_version(server: Server, s3: Any,
                                                          vbucket: str) -> None:
    threads, per_thread = 16, 5
    client = boto3_client(server.endpoint, max_pool_connections=threads)
    made: dict[int, list[tuple[str, bytes]]] = {}
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        mine = []
        try:
            for i in range(per_thread):
                body = f"writer {t} write {i} ".encode() * (t + 1)
                put = client.put_object(Bucket=vbucket, Key="hot", Body=body)
                mine.append((put["VersionId"], body))
        except Exception as exc:  # reported below, with the others
            errors.append(exc)
        made[t] = mine

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert errors == [] and sorted(made) == list(range(threads))
    for mine in made.values():  # one writer's later PUT is a later write
        assert [v for v, _ in mine] == sorted(v for v, _ in mine)
    sent = {vid: body for mine in made.values() for vid, body in mine}
    assert len(sent) == threads * per_thread  # every id distinct: none lost, none shared
    versions, markers, _ = listing(s3, vbucket)
    assert markers == []
    listed = [v["VersionId"] for v in versions]
    assert listed == sorted(sent, reverse=True)  # all of them, newest first
    assert [v["IsLatest"] for v in versions] == [True] + [False] * (len(sent) - 1)
    for v in versions:
        assert (v["Size"], v["ETag"]) == (len(sent[v["VersionId"]]),
                                          md5_etag(sent[v["VersionId"]]))
    for vid in listed[::7]:
        got = s3.get_object(Bucket=vbucket, Key="hot", VersionId=vid)["Body"].read()
        assert got == sent[vid]
    assert s3.get_object(Bucket=vbucket, Key="hot")["Body"].read() == sent[listed[0]]


def test_object_written_before_enabling_keeps_the_null_version(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"before")
    enable(s3, bucket)
    after = s3.put_object(Bucket=bucket, Key="k", Body=b"after")["VersionId"]
    assert after != "null"
    versions, _, _ = listing(s3, bucket)
    assert [(v["VersionId"], v["IsLatest"]) for v in versions] == [(after, True),
                                                                    ("null", False)]
    old = s3.get_object(Bucket=bucket, Key="k", VersionId="null")
    assert old["Body"].read() == b"before" and old["VersionId"] == "null"
    assert s3.head_object(Bucket=bucket, Key="k", VersionId="null")["ETag"] == md5_etag(
        b"before")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"after"


def test_copy_of_an_old_version_onto_its_key_restores_it(s3: Any, vbucket: str) -> None:
    v1, v2 = put_versions(s3, vbucket, "k", [b"version one", b"version two"])
    out = s3.copy_object(Bucket=vbucket, Key="k",
                         CopySource={"Bucket": vbucket, "Key": "k", "VersionId": v1})
    assert out["CopySourceVersionId"] == v1
    assert headers(out)["x-amz-copy-source-version-id"] == v1
    v3 = out["VersionId"]
    assert v3 > v2 and out["CopyObjectResult"]["ETag"] == md5_etag(b"version one")
    got = s3.get_object(Bucket=vbucket, Key="k")
    assert (got["Body"].read(), got["VersionId"]) == (b"version one", v3)
    versions, _, _ = listing(s3, vbucket)
    assert [v["VersionId"] for v in versions] == [v3, v2, v1]


def test_copy_across_buckets_names_source_version_and_makes_target_version(
        s3: Any, vbucket: str) -> None:
    src = vbucket[:50] + "-src"
    s3.create_bucket(Bucket=src)
    enable(s3, src)
    s1, _ = put_versions(s3, src, "s", [b"wanted", b"newer"])
    out = s3.copy_object(Bucket=vbucket, Key="t", CopySource={"Bucket": src, "Key": "s",
                                                              "VersionId": s1})
    assert out["CopySourceVersionId"] == s1 and out["VersionId"] not in ("", "null")
    got = s3.get_object(Bucket=vbucket, Key="t", VersionId=out["VersionId"])
    assert got["Body"].read() == b"wanted"


def test_complete_multipart_upload_creates_a_version(s3: Any, vbucket: str) -> None:
    small = s3.put_object(Bucket=vbucket, Key="big", Body=b"small")["VersionId"]
    part1, part2 = os.urandom(5 * MiB), os.urandom(1000)
    uid = s3.create_multipart_upload(Bucket=vbucket, Key="big")["UploadId"]
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=vbucket, Key="big", UploadId=uid,
                                                      PartNumber=n, Body=body)["ETag"]}
             for n, body in ((1, part1), (2, part2))]
    done = s3.complete_multipart_upload(Bucket=vbucket, Key="big", UploadId=uid,
                                        MultipartUpload={"Parts": parts})
    big = done["VersionId"]
    assert big > small and headers(done)["x-amz-version-id"] == big
    assert s3.get_object(Bucket=vbucket, Key="big", VersionId=small)["Body"].read() == b"small"
    got = s3.get_object(Bucket=vbucket, Key="big", VersionId=big)
    assert got["Body"].read() == part1 + part2 and got["ETag"] == done["ETag"]
    assert s3.head_object(Bucket=vbucket, Key="big")["VersionId"] == big


def test_upload_part_copy_reads_the_given_source_version(s3: Any, vbucket: str) -> None:
    old, _ = put_versions(s3, vbucket, "src", [b"old tail", b"new tail"])
    head = os.urandom(5 * MiB)
    uid = s3.create_multipart_upload(Bucket=vbucket, Key="joined")["UploadId"]
    e1 = s3.upload_part(Bucket=vbucket, Key="joined", UploadId=uid, PartNumber=1,
                        Body=head)["ETag"]
    copied = s3.upload_part_copy(Bucket=vbucket, Key="joined", UploadId=uid, PartNumber=2,
                                 CopySource={"Bucket": vbucket, "Key": "src", "VersionId": old})
    assert copied["CopySourceVersionId"] == old
    assert copied["CopyPartResult"]["ETag"] == md5_etag(b"old tail")
    s3.complete_multipart_upload(Bucket=vbucket, Key="joined", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1},
                  {"PartNumber": 2, "ETag": copied["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=vbucket, Key="joined")["Body"].read() == head + b"old tail"


# ------------------------------------------------------------------ versioning Suspended

def test_suspended_put_writes_the_null_version_and_keeps_real_versions(s3: Any,
                                                                       vbucket: str) -> None:
    real = s3.put_object(Bucket=vbucket, Key="k", Body=b"real")["VersionId"]
    enable(s3, vbucket, "Suspended")
    put = s3.put_object(Bucket=vbucket, Key="k", Body=b"suspended")
    # NOTE: AWS seems to send no x-amz-version-id here (Scality's AWS-checked suite
    # asserts none); "null" is accepted too. The listing below is what matters.
    assert put.get("VersionId", "null") == "null"
    versions, _, _ = listing(s3, vbucket)
    assert [(v["VersionId"], v["IsLatest"]) for v in versions] == [("null", True),
                                                                    (real, False)]
    assert s3.get_object(Bucket=vbucket, Key="k")["Body"].read() == b"suspended"
    assert s3.get_object(Bucket=vbucket, Key="k", VersionId=real)["Body"].read() == b"real"


def test_suspended_put_replaces_the_existing_null_version(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"pre-versioning")
    enable(s3, bucket)
    real = s3.put_object(Bucket=bucket, Key="k", Body=b"real")["VersionId"]
    enable(s3, bucket, "Suspended")
    for body in (b"null one", b"null two"):
        assert s3.put_object(Bucket=bucket, Key="k", Body=body).get("VersionId",
                                                                    "null") == "null"
    versions, _, _ = listing(s3, bucket)
    assert [(v["VersionId"], v["Size"]) for v in versions] == [("null", 8), (real, 4)]
    got = s3.get_object(Bucket=bucket, Key="k", VersionId="null")
    assert (got["Body"].read(), got["VersionId"]) == (b"null two", "null")


def test_suspended_delete_makes_a_null_delete_marker(s3: Any, vbucket: str) -> None:
    real = s3.put_object(Bucket=vbucket, Key="k", Body=b"real")["VersionId"]
    enable(s3, vbucket, "Suspended")
    s3.put_object(Bucket=vbucket, Key="k", Body=b"null version")
    gone = s3.delete_object(Bucket=vbucket, Key="k")
    assert http_status(gone) == 204 and gone["DeleteMarker"] is True
    assert gone["VersionId"] == "null"
    versions, markers, _ = listing(s3, vbucket)
    assert [(m["Key"], m["VersionId"], m["IsLatest"]) for m in markers] == [("k", "null", True)]
    assert [v["VersionId"] for v in versions] == [real]  # the null version was replaced
    assert failure(s3.get_object, Bucket=vbucket, Key="k")[:2] == (404, "NoSuchKey")
    assert s3.get_object(Bucket=vbucket, Key="k", VersionId=real)["Body"].read() == b"real"


# ------------------------------------------------------------------------ delete markers

def test_delete_without_version_adds_a_delete_marker(s3: Any, vbucket: str) -> None:
    (v1,) = put_versions(s3, vbucket, "k", [b"kept"])
    (other,) = put_versions(s3, vbucket, "other", [b"o"])
    gone = s3.delete_object(Bucket=vbucket, Key="k")
    assert http_status(gone) == 204
    assert gone["DeleteMarker"] is True and headers(gone)["x-amz-delete-marker"] == "true"
    marker = gone["VersionId"]
    assert headers(gone)["x-amz-version-id"] == marker and marker > v1
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=vbucket)["Contents"]] == ["other"]
    assert [o["Key"] for o in s3.list_objects(Bucket=vbucket)["Contents"]] == ["other"]
    versions, markers, _ = listing(s3, vbucket)
    assert [(m["Key"], m["VersionId"], m["IsLatest"]) for m in markers] == [("k", marker, True)]
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in versions] == [
        ("k", v1, False), ("other", other, True)]
    assert s3.get_object(Bucket=vbucket, Key="k", VersionId=v1)["Body"].read() == b"kept"


def test_get_and_head_when_latest_is_a_delete_marker_are_no_such_key(s3: Any,
                                                                     vbucket: str) -> None:
    s3.put_object(Bucket=vbucket, Key="k", Body=b"x")
    s3.delete_object(Bucket=vbucket, Key="k")
    status, code, hdrs = failure(s3.get_object, Bucket=vbucket, Key="k")
    assert (status, code, hdrs.get("x-amz-delete-marker")) == (404, "NoSuchKey", "true")
    status, _, hdrs = failure(s3.head_object, Bucket=vbucket, Key="k")
    assert (status, hdrs.get("x-amz-delete-marker")) == (404, "true")


def test_get_and_head_of_a_delete_marker_version_are_method_not_allowed(
        server: Server, s3: Any, vbucket: str) -> None:
    s3.put_object(Bucket=vbucket, Key="k", Body=b"x")
    marker = s3.delete_object(Bucket=vbucket, Key="k")["VersionId"]
    status, code, hdrs = failure(s3.get_object, Bucket=vbucket, Key="k", VersionId=marker)
    assert (status, code, hdrs.get("x-amz-delete-marker")) == (405, "MethodNotAllowed", "true")
    status, _, hdrs = failure(s3.head_object, Bucket=vbucket, Key="k", VersionId=marker)
    assert (status, hdrs.get("x-amz-delete-marker")) == (405, "true")
    raw = send(server.endpoint, "GET", f"/{vbucket}/k?versionId={quote(marker, safe='')}")
    assert error_of(raw) == (405, "MethodNotAllowed")


def test_deleting_the_current_version_makes_the_previous_one_current(s3: Any,
                                                                     vbucket: str) -> None:
    v1, v2 = put_versions(s3, vbucket, "k", [b"one", b"two"])
    gone = s3.delete_object(Bucket=vbucket, Key="k", VersionId=v2)
    assert http_status(gone) == 204 and gone["VersionId"] == v2
    assert headers(gone)["x-amz-version-id"] == v2 and not gone.get("DeleteMarker")
    got = s3.get_object(Bucket=vbucket, Key="k")
    assert (got["Body"].read(), got["VersionId"]) == (b"one", v1)
    versions, markers, _ = listing(s3, vbucket)
    assert [(v["VersionId"], v["IsLatest"]) for v in versions] == [(v1, True)]
    assert markers == []


def test_deleting_the_latest_delete_marker_restores_the_object(s3: Any, vbucket: str) -> None:
    (v1,) = put_versions(s3, vbucket, "k", [b"back again"])
    marker = s3.delete_object(Bucket=vbucket, Key="k")["VersionId"]
    gone = s3.delete_object(Bucket=vbucket, Key="k", VersionId=marker)
    assert http_status(gone) == 204 and gone["VersionId"] == marker
    assert gone["DeleteMarker"] is True
    got = s3.get_object(Bucket=vbucket, Key="k")
    assert (got["Body"].read(), got["VersionId"]) == (b"back again", v1)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=vbucket)["Contents"]] == ["k"]
    assert listing(s3, vbucket)[1] == []


def test_a_deleted_version_id_is_no_such_version(s3: Any, vbucket: str) -> None:
    v1, _ = put_versions(s3, vbucket, "k", [b"one", b"two"])
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=v1)
    status, code, _ = failure(s3.get_object, Bucket=vbucket, Key="k", VersionId=v1)
    assert (status, code) == (404, "NoSuchVersion")
    assert failure(s3.head_object, Bucket=vbucket, Key="k", VersionId=v1)[0] == 404


@pytest.mark.parametrize("op", ["get_object", "head_object"])
def test_a_malformed_version_id_is_invalid_argument(s3: Any, vbucket: str, op: str) -> None:
    s3.put_object(Bucket=vbucket, Key="k", Body=b"x")
    status, code, _ = failure(getattr(s3, op), Bucket=vbucket, Key="k",
                              VersionId="not-a-version")
    assert status == 400
    if op == "get_object":  # HEAD has no body, so no code to read
        assert code == "InvalidArgument"


def test_copy_from_a_delete_marker_fails(s3: Any, vbucket: str) -> None:
    s3.put_object(Bucket=vbucket, Key="k", Body=b"x")
    marker = s3.delete_object(Bucket=vbucket, Key="k")["VersionId"]
    status, _, _ = failure(s3.copy_object, Bucket=vbucket, Key="c",
                           CopySource={"Bucket": vbucket, "Key": "k", "VersionId": marker})
    assert 400 <= status < 500
    status, code, _ = failure(s3.copy_object, Bucket=vbucket, Key="c",
                              CopySource={"Bucket": vbucket, "Key": "k"})
    assert (status, code) == (404, "NoSuchKey")
    assert "Contents" not in s3.list_objects_v2(Bucket=vbucket)


# ------------------------------------------------------------------------ DeleteObjects

def test_delete_objects_by_version_removes_those_versions(s3: Any, vbucket: str) -> None:
    a1, a2 = put_versions(s3, vbucket, "a", [b"a1", b"a2"])
    (b1,) = put_versions(s3, vbucket, "b", [b"b1"])
    out = s3.delete_objects(Bucket=vbucket, Delete={"Objects": [
        {"Key": "a", "VersionId": a2}, {"Key": "b", "VersionId": b1}]})
    assert "Errors" not in out
    assert [(d["Key"], d["VersionId"], d.get("DeleteMarker", False)) for d in out["Deleted"]] \
        == [("a", a2, False), ("b", b1, False)]
    versions, markers, _ = listing(s3, vbucket)
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in versions] == [("a", a1, True)]
    assert markers == []


def test_delete_objects_of_a_marker_by_id_reports_the_marker(s3: Any, vbucket: str) -> None:
    s3.put_object(Bucket=vbucket, Key="k", Body=b"x")
    marker = s3.delete_object(Bucket=vbucket, Key="k")["VersionId"]
    out = s3.delete_objects(Bucket=vbucket, Delete={"Objects": [
        {"Key": "k", "VersionId": marker}]})
    assert out["Deleted"] == [{"Key": "k", "VersionId": marker, "DeleteMarker": True,
                               "DeleteMarkerVersionId": marker}]
    assert s3.get_object(Bucket=vbucket, Key="k")["Body"].read() == b"x"


def test_delete_objects_without_version_adds_delete_markers(s3: Any, vbucket: str) -> None:
    (v1,) = put_versions(s3, vbucket, "k", [b"x"])
    out = s3.delete_objects(Bucket=vbucket, Delete={"Objects": [{"Key": "k"},
                                                                {"Key": "never"}]})
    assert [(d["Key"], d["DeleteMarker"]) for d in out["Deleted"]] == [("k", True),
                                                                       ("never", True)]
    made = {d["Key"]: d["DeleteMarkerVersionId"] for d in out["Deleted"]}
    assert made["k"] > v1 and made["k"] != made["never"]
    _, markers, _ = listing(s3, vbucket)
    assert {(m["Key"], m["VersionId"]) for m in markers} == set(made.items())
    assert "Contents" not in s3.list_objects_v2(Bucket=vbucket)


# -------------------------------------------------------------------- ListObjectVersions

def test_versions_listed_by_key_then_newest_first_with_one_latest_each(
        server: Server, s3: Any, vbucket: str) -> None:
    a1, a2 = put_versions(s3, vbucket, "a", [b"a1", b"a2"])
    am = s3.delete_object(Bucket=vbucket, Key="a")["VersionId"]
    (b1,) = put_versions(s3, vbucket, "b", [b"b1"])
    (c1,) = put_versions(s3, vbucket, "c", [b"c1"])
    cm = s3.delete_object(Bucket=vbucket, Key="c")["VersionId"]
    (c2,) = put_versions(s3, vbucket, "c", [b"c2"])
    assert entries(list_raw(server, vbucket)) == [
        ("DeleteMarker", "a", am, True), ("Version", "a", a2, False),
        ("Version", "a", a1, False), ("Version", "b", b1, True),
        ("Version", "c", c2, True), ("DeleteMarker", "c", cm, False),
        ("Version", "c", c1, False)]


def test_list_versions_xml_fields(server: Server, s3: Any, vbucket: str) -> None:
    (v1,) = put_versions(s3, vbucket, "k", [b"hello"])
    marker = s3.delete_object(Bucket=vbucket, Key="k")["VersionId"]
    root = list_raw(server, vbucket)
    assert (one(root, "Name"), one(root, "Prefix"), one(root, "KeyMarker"),
            one(root, "VersionIdMarker"), one(root, "MaxKeys"), one(root, "IsTruncated")) == (
        vbucket, "", "", "", "1000", "false")
    assert one(root, "NextKeyMarker") is None and one(root, "NextVersionIdMarker") is None
    version = root.find(NS + "Version")
    tags = [el.tag.replace(NS, "") for el in version]
    assert tags[:6] == ["Key", "VersionId", "IsLatest", "LastModified", "ETag", "Size"]
    assert "Owner" in tags and "StorageClass" in tags
    assert (one(version, "VersionId"), one(version, "ETag"), one(version, "Size"),
            one(version, "StorageClass")) == (v1, md5_etag(b"hello"), "5", "STANDARD")
    dm = root.find(NS + "DeleteMarker")
    known = ["Key", "VersionId", "IsLatest", "LastModified", "Owner"]
    assert [t for t in (el.tag.replace(NS, "") for el in dm) if t in known] == known
    assert (one(dm, "VersionId"), one(dm, "IsLatest")) == (marker, "true")
    assert dm.find(f"{NS}Owner/{NS}ID").text == version.find(f"{NS}Owner/{NS}ID").text


def test_paginating_returns_each_version_exactly_once_in_order(s3: Any, vbucket: str) -> None:
    expected = []
    for k in range(7):
        key = f"key-{k}"
        ids = put_versions(s3, vbucket, key, [f"{key} v{n}".encode() for n in range(3)])
        expected += [(key, vid) for vid in reversed(ids)]
    pages = list(s3.get_paginator("list_object_versions").paginate(
        Bucket=vbucket, PaginationConfig={"PageSize": 4}))
    got = [(v["Key"], v["VersionId"]) for p in pages for v in p.get("Versions", [])]
    assert got == expected
    assert [len(p.get("Versions", [])) for p in pages] == [4, 4, 4, 4, 4, 1]
    assert [p["IsTruncated"] for p in pages] == [True] * 5 + [False]


def test_first_page_names_the_next_key_and_version_markers(server: Server, s3: Any,
                                                           vbucket: str) -> None:
    k0 = put_versions(s3, vbucket, "k0", [b"1", b"2", b"3"])
    k1 = put_versions(s3, vbucket, "k1", [b"1", b"2", b"3"])
    root = list_raw(server, vbucket, {"max-keys": "4"})
    assert [e[2] for e in entries(root)] == k0[::-1] + [k1[2]]
    assert (one(root, "IsTruncated"), one(root, "MaxKeys")) == ("true", "4")
    assert (one(root, "NextKeyMarker"), one(root, "NextVersionIdMarker")) == ("k1", k1[2])


def test_key_marker_with_version_id_marker_continues_after_that_version(
        server: Server, s3: Any, vbucket: str) -> None:
    k0 = put_versions(s3, vbucket, "k0", [b"1", b"2", b"3"])
    k1 = put_versions(s3, vbucket, "k1", [b"1", b"2"])
    root = list_raw(server, vbucket, {"key-marker": "k0", "version-id-marker": k0[1]})
    assert (one(root, "KeyMarker"), one(root, "VersionIdMarker")) == ("k0", k0[1])
    assert [(e[1], e[2]) for e in entries(root)] == [("k0", k0[0]), ("k1", k1[1]),
                                                     ("k1", k1[0])]
    got = s3.list_object_versions(Bucket=vbucket, KeyMarker="k0", VersionIdMarker=k0[2])
    assert [v["VersionId"] for v in got["Versions"]] == [k0[1], k0[0], k1[1], k1[0]]


def test_key_marker_alone_skips_every_version_of_that_key(s3: Any, vbucket: str) -> None:
    put_versions(s3, vbucket, "k0", [b"1", b"2"])
    put_versions(s3, vbucket, "k1", [b"1", b"2"])
    k2 = put_versions(s3, vbucket, "k2", [b"1", b"2"])
    got = s3.list_object_versions(Bucket=vbucket, KeyMarker="k1")
    assert [(v["Key"], v["VersionId"]) for v in got["Versions"]] == [("k2", k2[1]),
                                                                     ("k2", k2[0])]


def test_prefix_and_delimiter_group_versions_into_common_prefixes(s3: Any,
                                                                  vbucket: str) -> None:
    for key in ("photos/2024/a", "photos/2024/b", "photos/2025/c", "photos/top", "other"):
        put_versions(s3, vbucket, key, [b"1", b"2"])
    s3.delete_object(Bucket=vbucket, Key="photos/2025/c")
    got = s3.list_object_versions(Bucket=vbucket, Prefix="photos/", Delimiter="/")
    assert (got["Prefix"], got["Delimiter"]) == ("photos/", "/")
    assert [p["Prefix"] for p in got["CommonPrefixes"]] == ["photos/2024/", "photos/2025/"]
    assert [v["Key"] for v in got["Versions"]] == ["photos/top", "photos/top"]
    assert "DeleteMarkers" not in got


def test_max_keys_counts_versions_markers_and_common_prefixes(server: Server, s3: Any,
                                                              vbucket: str) -> None:
    for key in ("d/1", "e/1", "x"):
        put_versions(s3, vbucket, key, [b"1"])
    xm = s3.delete_object(Bucket=vbucket, Key="x")["VersionId"]
    root = list_raw(server, vbucket, {"delimiter": "/", "max-keys": "3"})
    prefixes = [el.text for el in root.iterfind(f"{NS}CommonPrefixes/{NS}Prefix")]
    assert prefixes == ["d/", "e/"]
    assert [(e[0], e[2]) for e in entries(root)] == [("DeleteMarker", xm)]
    assert one(root, "IsTruncated") == "true"
    versions, markers, prefixes = listing(s3, vbucket, Delimiter="/",
                                          PaginationConfig={"PageSize": 1})
    assert prefixes == ["d/", "e/"]
    assert [m["VersionId"] for m in markers] == [xm]
    assert [v["Key"] for v in versions] == ["x"]


def test_encoding_type_url_encodes_keys_and_markers(server: Server, s3: Any,
                                                    vbucket: str) -> None:
    key = "a b/ü+c"
    put_versions(s3, vbucket, key, [b"1", b"2"])
    root = list_raw(server, vbucket, {"encoding-type": "url", "prefix": "a b/",
                                      "max-keys": "1"})
    assert one(root, "EncodingType") == "url"
    assert one(root, "Prefix") == "a%20b/"
    assert [e[1] for e in entries(root)] == ["a%20b/%C3%BC%2Bc"]
    assert unquote(one(root, "NextKeyMarker") or "") == key
    plain = list_raw(server, vbucket)
    assert [e[1] for e in entries(plain)] == [key, key] and one(plain, "EncodingType") is None
    versions, _, _ = listing(s3, vbucket, PaginationConfig={"PageSize": 1})  # boto3 decodes
    assert [v["Key"] for v in versions] == [key, key]


# --------------------------------------------------------------------- DeleteBucket

def test_delete_bucket_refuses_while_any_version_or_marker_remains(s3: Any,
                                                                  vbucket: str) -> None:
    (v1,) = put_versions(s3, vbucket, "k", [b"x"])
    marker = s3.delete_object(Bucket=vbucket, Key="k")["VersionId"]
    assert "Contents" not in s3.list_objects_v2(Bucket=vbucket)
    assert failure(s3.delete_bucket, Bucket=vbucket)[:2] == (409, "BucketNotEmpty")
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=v1)
    assert failure(s3.delete_bucket, Bucket=vbucket)[:2] == (409, "BucketNotEmpty")
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=marker)
    assert http_status(s3.delete_bucket(Bucket=vbucket)) == 204
    assert vbucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


# --------------------------------------------------------------- conditional writes

def test_if_none_match_star_succeeds_when_latest_is_a_delete_marker(s3: Any,
                                                                    vbucket: str) -> None:
    s3.put_object(Bucket=vbucket, Key="k", Body=b"old")
    s3.delete_object(Bucket=vbucket, Key="k")
    put = s3.put_object(Bucket=vbucket, Key="k", Body=b"new", IfNoneMatch="*")
    assert put["VersionId"] not in ("", "null")
    assert s3.get_object(Bucket=vbucket, Key="k")["Body"].read() == b"new"
    status, code, _ = failure(s3.put_object, Bucket=vbucket, Key="k", Body=b"again",
                              IfNoneMatch="*")
    assert (status, code) == (412, "PreconditionFailed")


def test_if_match_is_compared_with_the_current_version_only(s3: Any, vbucket: str) -> None:
    e1 = s3.put_object(Bucket=vbucket, Key="k", Body=b"one")["ETag"]
    e2 = s3.put_object(Bucket=vbucket, Key="k", Body=b"two")["ETag"]
    status, code, _ = failure(s3.put_object, Bucket=vbucket, Key="k", Body=b"x", IfMatch=e1)
    assert (status, code) == (412, "PreconditionFailed")
    e3 = s3.put_object(Bucket=vbucket, Key="k", Body=b"three", IfMatch=e2)["ETag"]
    s3.delete_object(Bucket=vbucket, Key="k")
    status, code, _ = failure(s3.put_object, Bucket=vbucket, Key="k", Body=b"x", IfMatch=e3)
    assert (status, code) == (404, "NoSuchKey")
    assert len(listing(s3, vbucket)[0]) == 3


# ------------------------------------------------------------------------------ aws CLI

def test_aws_cli_rm_then_restore_an_old_version_by_copy(aws: AwsCli, s3: Any, bucket: str,
                                                        tmp_path: Path) -> None:
    aws("s3api", "put-bucket-versioning", "--bucket", bucket,
        "--versioning-configuration", "Status=Enabled")
    status = json.loads(aws("s3api", "get-bucket-versioning", "--bucket", bucket).stdout)
    assert status["Status"] == "Enabled"
    src = tmp_path / "doc.txt"
    for text in (b"first draft\n", b"second draft\n"):
        src.write_bytes(text)
        aws("s3", "cp", str(src), f"s3://{bucket}/doc.txt")
    listed = json.loads(aws("s3api", "list-object-versions", "--bucket", bucket).stdout)
    (old,) = [v["VersionId"] for v in listed["Versions"] if not v["IsLatest"]]
    out = tmp_path / "old.txt"
    meta = json.loads(aws("s3api", "get-object", "--bucket", bucket, "--key", "doc.txt",
                          "--version-id", old, str(out)).stdout)
    assert meta["VersionId"] == old and out.read_bytes() == b"first draft\n"

    aws("s3", "rm", f"s3://{bucket}/doc.txt")
    assert "doc.txt" not in aws("s3", "ls", f"s3://{bucket}/", check=False).stdout
    listed = json.loads(aws("s3api", "list-object-versions", "--bucket", bucket).stdout)
    assert [(m["Key"], m["IsLatest"]) for m in listed["DeleteMarkers"]] == [("doc.txt", True)]
    assert len(listed["Versions"]) == 2

    copied = json.loads(aws("s3api", "copy-object", "--bucket", bucket, "--key", "doc.txt",
                            "--copy-source", f"{bucket}/doc.txt?versionId={old}").stdout)
    assert copied["CopySourceVersionId"] == old
    restored = tmp_path / "restored.txt"
    aws("s3", "cp", f"s3://{bucket}/doc.txt", str(restored))
    assert restored.read_bytes() == b"first draft\n"
    listed = json.loads(aws("s3api", "list-object-versions", "--bucket", bucket).stdout)
    latest = [v for v in listed["Versions"] if v["IsLatest"]]
    assert [v["VersionId"] for v in latest] == [copied["VersionId"]]
    assert len(listed["Versions"]) == 3 and len(listed["DeleteMarkers"]) == 1
