"""Bucket lifecycle end to end: a real gunicorn whose "day" lasts one second
(``lifecycle.day_seconds: 1``, a pass every second), driven by boto3 and the aws CLI.

Expirations are awaited by polling, never by sleeping; "nothing else happened" is checked
after a whole lifecycle pass that started once everything was due has finished (the pass
records its start and end in ``node_meta``).
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
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import botocore.exceptions
import pytest
from support.clients import AwsCli, boto3_client
from support.raw import send
from support.server import Server

from bleepstore.s3.headers import now_iso

pytestmark = pytest.mark.e2e

ONE_SECOND_DAYS = {"lifecycle": {"day_seconds": 1, "interval_s": 1},
                   "storage": {"maintenance_interval_s": 1}}
T = TypeVar("T")


@pytest.fixture(scope="module")
def lc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("lifecycle"), extra_config=ONE_SECOND_DAYS)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def client(lc_server: Server) -> Any:
    return boto3_client(lc_server.endpoint)


@pytest.fixture
def new_bucket(client: Any, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """Makes uniquely named buckets; their lifecycle configurations go at teardown."""
    made: list[str] = []

    def make(versioned: bool = False) -> str:
        name = f"lc-{len(made)}-{request.node.name[5:30].replace('_', '-')}-" \
               f"{secrets.token_hex(3)}"
        client.create_bucket(Bucket=name)
        if versioned:
            client.put_bucket_versioning(Bucket=name,
                                         VersioningConfiguration={"Status": "Enabled"})
        made.append(name)
        return name

    yield make
    for name in made:
        client.delete_bucket_lifecycle(Bucket=name)


def poll(check: Callable[[], T], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def node_state(server: Server) -> dict[str, Any]:
    with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT value FROM node_meta WHERE key = 'lifecycle'").fetchone()
    return json.loads(row[0]) if row else {}


def wait_full_pass(server: Server) -> dict[str, Any]:
    """Until a lifecycle pass that started after this call has finished."""
    since = now_iso()
    return poll(lambda: (node_state(server).get("last_pass") or {}).get("started", "") >= since
                and node_state(server)["last_pass"], "a whole lifecycle pass")


def keys(client: Any, bucket: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for p in pages for o in p.get("Contents", [])}


def history(client: Any, bucket: str, key: str) -> list[tuple[str, bool, bool]]:
    """(version id, is a delete marker, is latest) of ``key``, newest first."""
    out = client.list_object_versions(Bucket=bucket, Prefix=key)
    entries = [(v["VersionId"], False, v["IsLatest"], v["LastModified"])
               for v in out.get("Versions", []) if v["Key"] == key]
    entries += [(m["VersionId"], True, m["IsLatest"], m["LastModified"])
                for m in out.get("DeleteMarkers", []) if m["Key"] == key]
    entries.sort(key=lambda e: e[0], reverse=True)  # our ids sort by recency
    return [(vid, marker, latest) for vid, marker, latest, _ in entries]


def rules(*items: dict[str, Any]) -> dict[str, Any]:
    return {"Rules": list(items)}


def expire(rule_id: str, flt: dict[str, Any], days: int = 1, **extra: Any) -> dict[str, Any]:
    return {"ID": rule_id, "Filter": flt, "Status": "Enabled", "Expiration": {"Days": days},
            **extra}


def error_of(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        call()
    return {**exc.value.response["Error"],
            "Status": exc.value.response["ResponseMetadata"]["HTTPStatusCode"]}


def add_user(server: Server, name: str) -> Any:
    """A second user, made with the real ``bleepstore user add``."""
    access, secret = "AK" + name.upper() + secrets.token_hex(6).upper(), secrets.token_hex(20)
    exe = shutil.which("bleepstore")
    cmd = [exe] if exe else [sys.executable, "-m", "bleepstore.cli"]
    subprocess.run([*cmd, "user", "add", f"--access-key={access}", f"--secret-key={secret}",
                    f"--display-name={name}"], check=True, capture_output=True,
                   env={**os.environ, "BLEEPSTORE_CONFIG": str(server.config_path)})
    return boto3_client(server.endpoint, access, secret)


# --- the configuration API ----------------------------------------------------------------


def test_configuration_put_get_delete(client: Any, lc_server: Server,
                                      new_bucket: Callable[..., str]) -> None:
    bucket = new_bucket()
    missing = error_of(lambda: client.get_bucket_lifecycle_configuration(Bucket=bucket))
    assert (missing["Code"], missing["Status"]) == ("NoSuchLifecycleConfiguration", 404)
    assert missing["Message"] == "The lifecycle configuration does not exist"
    sent = rules(
        expire("logs", {"Prefix": "logs/"}, 30),
        {"Filter": {"And": {"Prefix": "tmp/", "Tags": [{"Key": "a", "Value": "1"},
                                                      {"Key": "b", "Value": "2"}],
                            "ObjectSizeGreaterThan": 10, "ObjectSizeLessThan": 1000}},
         "Status": "Disabled", "NoncurrentVersionExpiration": {
             "NoncurrentDays": 7, "NewerNoncurrentVersions": 3}},
        {"ID": "uploads", "Filter": {}, "Status": "Enabled",
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2},
         "Expiration": {"Date": "2031-01-01T00:00:00Z"}},
        {"ID": "markers", "Filter": {"Prefix": ""}, "Status": "Enabled",
         "Expiration": {"ExpiredObjectDeleteMarker": True}},
    )
    put = client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=sent)
    assert put["TransitionDefaultMinimumObjectSize"] == "all_storage_classes_128K"
    got = client.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert got["TransitionDefaultMinimumObjectSize"] == "all_storage_classes_128K"
    made_id = got["Rules"][1].pop("ID")
    assert len(made_id) == 48 and base64.b64decode(made_id).count(b"-") == 4
    date = got["Rules"][2]["Expiration"].pop("Date")
    assert (date.year, date.month, date.day, date.hour, date.utcoffset().total_seconds()) == (
        2031, 1, 1, 0, 0)
    del sent["Rules"][2]["Expiration"]["Date"]
    assert got["Rules"] == sent["Rules"]
    # the deprecated PutBucketLifecycle writes a rule-level Prefix; it is given back as such
    client.put_bucket_lifecycle(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "v1", "Prefix": "old/", "Status": "Enabled", "Expiration": {"Days": 5}}]})
    assert client.get_bucket_lifecycle(Bucket=bucket)["Rules"] == [
        {"ID": "v1", "Prefix": "old/", "Status": "Enabled", "Expiration": {"Days": 5}}]
    assert client.delete_bucket_lifecycle(Bucket=bucket)["ResponseMetadata"][
        "HTTPStatusCode"] == 204
    assert error_of(lambda: client.get_bucket_lifecycle_configuration(Bucket=bucket))[
        "Code"] == "NoSuchLifecycleConfiguration"
    client.delete_bucket_lifecycle(Bucket=bucket)  # 204 again, as AWS


def test_configuration_refusals(client: Any, lc_server: Server,
                                new_bucket: Callable[..., str]) -> None:
    bucket = new_bucket()

    def put(*items: dict[str, Any]) -> dict[str, Any]:
        return error_of(lambda: client.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration=rules(*items)))

    err = put(expire("zero", {"Prefix": ""}, 0))
    assert (err["Code"], err["Status"], err["Message"]) == (
        "InvalidArgument", 400, "'Days' for Expiration action must be a positive integer")
    err = put({"ID": "t", "Filter": {}, "Status": "Enabled",
               "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]})
    assert (err["Code"], err["Status"], err["StorageClassRequested"]) == (
        "InvalidStorageClass", 400, "GLACIER")
    err = put({"ID": "m", "Filter": {"Tag": {"Key": "k", "Value": "v"}}, "Status": "Enabled",
               "Expiration": {"ExpiredObjectDeleteMarker": True}})
    assert (err["Code"], err["Message"]) == (
        "InvalidRequest", "ExpiredObjectDeleteMarker cannot be specified with Tags.")
    err = put(expire("a", {"Prefix": ""}), expire("a", {"Prefix": "x"}))
    assert err["Code"] == "InvalidArgument"
    err = put({"ID": "none", "Filter": {}, "Status": "Enabled"})
    assert (err["Code"], err["Message"]) == (
        "InvalidRequest", "At least one action needs to be specified in a rule")
    # the body must carry an integrity check, as on AWS
    body = (b'<LifecycleConfiguration><Rule><ID>r</ID><Filter/><Status>Enabled</Status>'
            b'<Expiration><Days>9</Days></Expiration></Rule></LifecycleConfiguration>')
    bare = send(lc_server.endpoint, "PUT", f"/{bucket}?lifecycle", body=body)
    assert bare.status == 400 and b"<Code>InvalidRequest</Code>" in bare.body
    assert b"Missing required header for this request: Content-MD5" in bare.body
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    wrong = send(lc_server.endpoint, "PUT", f"/{bucket}?lifecycle", body=body + b" ",
                 headers={"Content-MD5": md5})
    assert wrong.status == 400 and b"<Code>BadDigest</Code>" in wrong.body
    good = send(lc_server.endpoint, "PUT", f"/{bucket}?lifecycle", body=body,
                headers={"Content-MD5": md5})
    assert good.status == 200
    # the bucket owner's alone, even for a user allowed to write the bucket
    bob = add_user(lc_server, "bob")
    client.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    for call in (lambda: bob.get_bucket_lifecycle_configuration(Bucket=bucket),
                 lambda: bob.delete_bucket_lifecycle(Bucket=bucket),
                 lambda: bob.put_bucket_lifecycle_configuration(
                     Bucket=bucket, LifecycleConfiguration=rules(expire("b", {})))):
        assert error_of(call)["Code"] == "AccessDenied"
    assert client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"][0]["ID"] == "r"


def test_aws_cli_configures_expiration(lc_server: Server, client: Any, tmp_path: Path,
                                       new_bucket: Callable[..., str]) -> None:
    aws = AwsCli(lc_server.endpoint, tmp_path / "aws")
    bucket = new_bucket()
    for key in ("cli/a", "cli/b", "other/c"):
        client.put_object(Bucket=bucket, Key=key, Body=b"data")
    config = tmp_path / "lifecycle.json"
    config.write_text(json.dumps(rules(expire("cli-rule", {"Prefix": "cli/"}))))
    aws("s3api", "put-bucket-lifecycle-configuration", "--bucket", bucket,
        "--lifecycle-configuration", f"file://{config}")
    got = json.loads(aws("s3api", "get-bucket-lifecycle-configuration", "--bucket",
                         bucket).stdout)
    assert got["Rules"] == [{"ID": "cli-rule", "Filter": {"Prefix": "cli/"},
                             "Status": "Enabled", "Expiration": {"Days": 1}}]
    poll(lambda: keys(client, bucket) == {"other/c"}, "cli/ to expire")
    aws("s3api", "delete-bucket-lifecycle", "--bucket", bucket)
    missing = aws("s3api", "get-bucket-lifecycle-configuration", "--bucket", bucket,
                  check=False)
    assert missing.returncode != 0 and "NoSuchLifecycleConfiguration" in missing.stderr


# --- expiration -------------------------------------------------------------------------


def test_days_expire_unversioned_objects_filters_respected(
        client: Any, lc_server: Server, new_bucket: Callable[..., str]) -> None:
    bucket = new_bucket()
    bodies = {"slow/1": b"w", "logs/1": b"l", "data/1": b"d", "t/dev": b"td", "t/prod": b"tp",
              "s/big": b"B" * 100, "s/small": b"s" * 10, "off/1": b"o"}
    tagged = {"t/dev": "env=dev", "t/prod": "env=prod"}
    written = time.time()  # slow/1 first: its Last-Modified is at or after this
    for key, body in bodies.items():
        client.put_object(Bucket=bucket, Key=key, Body=body, Tagging=tagged.get(key, ""))
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rules(
        expire("logs", {"Prefix": "logs/"}),
        expire("dev", {"Tag": {"Key": "env", "Value": "dev"}}),
        expire("big", {"And": {"Prefix": "s/", "ObjectSizeGreaterThan": 50}}),
        {**expire("off", {"Prefix": "off/"}), "Status": "Disabled"},
        expire("slow", {"Prefix": "slow/"}, days=4)))
    gone = {"logs/1", "t/dev", "s/big"}
    poll(lambda: not keys(client, bucket) & gone, "the matching objects to expire")
    # Days=4 is four one-second days after the write, rounded up: never earlier
    while time.time() < written + 3.9:
        assert "slow/1" in keys(client, bucket)
        time.sleep(0.05)
    poll(lambda: "slow/1" not in keys(client, bucket), "slow/1 to expire")
    wait_full_pass(lc_server)
    assert keys(client, bucket) == {"data/1", "t/prod", "s/small", "off/1"}
    for key in keys(client, bucket):
        assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == bodies[key]


def test_date_rules(client: Any, lc_server: Server, new_bucket: Callable[..., str]) -> None:
    bucket = new_bucket()
    for key in ("past/1", "past/2", "future/1"):
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rules(
        {"ID": "past", "Filter": {"Prefix": "past/"}, "Status": "Enabled",
         "Expiration": {"Date": "2020-01-01T00:00:00Z"}},
        {"ID": "future", "Filter": {"Prefix": "future/"}, "Status": "Enabled",
         "Expiration": {"Date": "2099-01-01T00:00:00Z"}}))
    poll(lambda: keys(client, bucket) == {"future/1"}, "past/ to expire")
    client.put_object(Bucket=bucket, Key="past/3", Body=b"written after the date")
    poll(lambda: keys(client, bucket) == {"future/1"}, "an object written after the date")
    wait_full_pass(lc_server)
    assert keys(client, bucket) == {"future/1"}


def test_versioned_expiration_adds_one_delete_marker(
        client: Any, lc_server: Server, new_bucket: Callable[..., str]) -> None:
    bucket = new_bucket(versioned=True)
    put = client.put_object(Bucket=bucket, Key="v/1", Body=b"keep my bytes")
    client.put_object(Bucket=bucket, Key="w/1", Body=b"unmatched")
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rules(
        expire("v", {"Prefix": "v/"})))
    poll(lambda: "v/1" not in keys(client, bucket), "v/1 to expire")
    head = error_of(lambda: client.head_object(Bucket=bucket, Key="v/1"))
    assert head["Status"] == 404
    wait_full_pass(lc_server)
    wait_full_pass(lc_server)
    entries = history(client, bucket, "v/1")
    assert [(marker, latest) for _, marker, latest in entries] == [(True, True), (False, False)]
    assert entries[1][0] == put["VersionId"]
    old = client.get_object(Bucket=bucket, Key="v/1", VersionId=put["VersionId"])
    assert old["Body"].read() == b"keep my bytes"
    assert keys(client, bucket) == {"w/1"}


def test_noncurrent_versions_expire_and_newer_noncurrent_versions_kept(
        client: Any, lc_server: Server, new_bucket: Callable[..., str]) -> None:
    bucket = new_bucket(versioned=True)
    ids: dict[str, list[str]] = {"keep2/k": [], "all/k": [], "none/k": []}
    for n in range(5):
        for key in ids:
            ids[key].append(client.put_object(Bucket=bucket, Key=key,
                                              Body=f"{key} {n}".encode())["VersionId"])
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rules(
        {"ID": "keep2", "Filter": {"Prefix": "keep2/"}, "Status": "Enabled",
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 2}},
        {"ID": "all", "Filter": {"Prefix": "all/"}, "Status": "Enabled",
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}))

    def version_ids(key: str) -> list[str]:
        return [vid for vid, _, _ in history(client, bucket, key)]

    poll(lambda: version_ids("all/k") == [ids["all/k"][-1]], "all/ noncurrent versions to go")
    poll(lambda: version_ids("keep2/k") == ids["keep2/k"][:1:-1], "keep2/ to keep 2")
    wait_full_pass(lc_server)
    assert version_ids("keep2/k") == ids["keep2/k"][:1:-1]  # current + the 2 newest
    assert version_ids("none/k") == ids["none/k"][::-1]
    body = client.get_object(Bucket=bucket, Key="keep2/k", VersionId=ids["keep2/k"][2])
    assert body["Body"].read() == b"keep2/k 2"


def test_expired_delete_markers_are_removed(client: Any, lc_server: Server,
                                            new_bucket: Callable[..., str]) -> None:
    bucket = new_bucket(versioned=True)
    lone = client.put_object(Bucket=bucket, Key="m/lone", Body=b"1")["VersionId"]
    client.delete_object(Bucket=bucket, Key="m/lone")
    client.delete_object(Bucket=bucket, Key="m/lone", VersionId=lone)  # marker alone
    client.put_object(Bucket=bucket, Key="m/covering", Body=b"2")
    client.delete_object(Bucket=bucket, Key="m/covering")  # marker over a version
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rules(
        {"ID": "markers", "Filter": {"Prefix": "m/"}, "Status": "Enabled",
         "Expiration": {"ExpiredObjectDeleteMarker": True}}))
    poll(lambda: history(client, bucket, "m/lone") == [], "the lone marker to go")
    wait_full_pass(lc_server)
    assert [(m, latest) for _, m, latest in history(client, bucket, "m/covering")] == [
        (True, True), (False, False)]


def test_days_rule_runs_a_versioned_key_to_nothing(
        client: Any, lc_server: Server, new_bucket: Callable[..., str]) -> None:
    """Expiration Days adds a marker, NoncurrentDays removes the old version, and Days then
    removes the marker left alone (AWS's cleanup of expired markers under a Days rule)."""
    bucket = new_bucket(versioned=True)
    client.put_object(Bucket=bucket, Key="c/1", Body=b"x")
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rules(
        expire("cycle", {"Prefix": "c/"}, NoncurrentVersionExpiration={"NoncurrentDays": 1})))
    poll(lambda: [m for _, m, _ in history(client, bucket, "c/1")] == [True, False],
         "a delete marker")
    poll(lambda: history(client, bucket, "c/1") == [], "the whole history to go")


def test_incomplete_multipart_uploads_are_aborted(client: Any, lc_server: Server,
                                                  new_bucket: Callable[..., str]) -> None:
    bucket = new_bucket()
    stale = client.create_multipart_upload(Bucket=bucket, Key="up/1")["UploadId"]
    client.upload_part(Bucket=bucket, Key="up/1", UploadId=stale, PartNumber=1, Body=b"p" * 10)
    kept = client.create_multipart_upload(Bucket=bucket, Key="keep/1")["UploadId"]
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rules(
        {"ID": "mpu", "Filter": {"Prefix": "up/"}, "Status": "Enabled",
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}))

    def upload_ids() -> set[str]:
        return {u["UploadId"] for u in client.list_multipart_uploads(Bucket=bucket).get(
            "Uploads", [])}

    poll(lambda: upload_ids() == {kept}, "up/1 to be aborted")
    err = error_of(lambda: client.list_parts(Bucket=bucket, Key="up/1", UploadId=stale))
    assert err["Code"] == "NoSuchUpload"
    wait_full_pass(lc_server)
    assert upload_ids() == {kept}


# --- crash-only ---------------------------------------------------------------------------


def _blobs(server: Server) -> int:
    """Blob files plus inline blobs (small objects live in the database)."""
    files = sum(len(names) for _, _, names in os.walk(server.data / "objects" / "blobs"))
    with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True) as conn:
        return files + int(conn.execute("SELECT COUNT(*) FROM inline_blobs").fetchone()[0])


def _object_count(server: Server) -> int:
    with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT object_count FROM stats WHERE id = 1").fetchone()[0])


def test_kill9_mid_pass_loses_nothing_and_the_next_start_finishes(
        tmp_path: Path) -> None:
    config = {**ONE_SECOND_DAYS,
              "lifecycle": {**ONE_SECOND_DAYS["lifecycle"], "batch_size": 20}}
    srv = Server(tmp_path / "crash", extra_config=config).start()
    try:
        s3 = boto3_client(srv.endpoint, max_pool_connections=16)
        s3.create_bucket(Bucket="crash")
        doomed = [f"old/{i:05d}" for i in range(1500)]
        kept = {f"keep/{i:05d}": f"body {i}".encode() for i in range(150)}
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: s3.put_object(Bucket="crash", Key=k, Body=b"x"), doomed))
            list(pool.map(lambda k: s3.put_object(Bucket="crash", Key=k, Body=kept[k]), kept))
        total = len(doomed) + len(kept)
        s3.put_bucket_lifecycle_configuration(Bucket="crash", LifecycleConfiguration=rules(
            expire("old", {"Prefix": "old/"})))
        # SIGKILL the whole server as soon as the pass has deleted some, not all
        # (after its second batch: the first batch's cursor is saved by then)
        poll(lambda: 20 < total - _object_count(srv) < len(doomed) - 100,
             "the pass to be under way", timeout=60)
        srv.kill9()
        left = _object_count(srv)
        assert len(kept) < left < total
        cursors = node_state(srv)["cursors"]
        assert cursors["crash"][0] == "current" and cursors["crash"][1].startswith("old/")
        srv.start()
        s3 = boto3_client(srv.endpoint)
        poll(lambda: keys(s3, "crash") == set(kept), "the next start to finish the job")
        for key, body in kept.items():
            assert s3.get_object(Bucket="crash", Key=key)["Body"].read() == body
        poll(lambda: _blobs(srv) == len(kept), "the expired objects' blobs to go")
        last = wait_full_pass(srv)
        assert node_state(srv)["cursors"] == {} and _object_count(srv) == len(kept)
        assert last["seconds"] >= 0
    finally:
        srv.stop()
