"""Every operation BleepStore implements, driven through the real aws CLI's ``aws s3api``
with the JSON output parsed and checked: ETags, sizes, keys, grants, parts and the bytes
read back. It runs directly, through nginx and on a cluster node, not over the gateways:
the scenario is ~90 CLI processes (about a second each, nearly all of it the CLI's own
start-up), and every operation it names already runs over each gateway through boto3 in
the other e2e modules.

Completeness is proven twice: the set of ``s3api`` subcommands the scenario ran equals
the set of ``bleepstore.s3.router.Op`` values mapped to CLI names (``PutObject`` ->
``put-object``), and the server's own ``bleepstore_s3_operations_total{status="success"}``
counters (scraped directly) grew for every ``Op`` during the scenario, i.e. each CLI
command really reached the operation it is named after.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path
from typing import Any

import botocore
import pytest
import requests
from support.clients import AwsCli
from support.raw import send

from bleepstore.s3.router import Op

MiB = 1024 * 1024
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def composite_etag(parts: list[bytes]) -> str:
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'


def op_counts(server: Any) -> dict[str, float]:
    with urllib.request.urlopen(f"{server.endpoint}/metrics") as resp:
        text = resp.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("bleepstore_s3_operations_total{") and 'status="success"' in line:
            op = line.split('operation="', 1)[1].split('"', 1)[0]
            counts[op] = counts.get(op, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


class S3Api:
    """``aws s3api <cmd> ...`` returning parsed JSON; remembers every subcommand run."""

    def __init__(self, aws: AwsCli) -> None:
        self.aws = aws
        self.used: set[str] = set()

    def __call__(self, cmd: str, *args: str, check: bool = True) -> Any:
        self.used.add(cmd)
        proc = self.aws("s3api", cmd, *args, check=check)
        if not check:
            return proc
        return json.loads(proc.stdout) if proc.stdout.strip() else {}


def grants_of(acl: dict[str, Any]) -> set[tuple[str, str]]:
    return {(g["Grantee"].get("URI") or g["Grantee"]["ID"], g["Permission"])
            for g in acl["Grants"]}


def test_every_operation_through_aws_s3api(server: Any, aws: AwsCli,
                                           s3: Any, tmp_path: Path) -> None:
    if server.backend != "local":
        pytest.skip("CLI start-up bound; each operation runs over the gateways via boto3")
    api = S3Api(aws)
    before = op_counts(server)
    b, other = "s3api-all", "s3api-other"
    key, key2 = "dir/ünï code+1.txt", "dir/second.bin"

    # ---- buckets
    assert "Location" in api("create-bucket", "--bucket", b)
    api("create-bucket", "--bucket", other)
    listed = api("list-buckets")
    assert [x["Name"] for x in listed["Buckets"]] == sorted([b, other])
    me = listed["Owner"]["ID"]
    assert me
    assert api("head-bucket", "--bucket", b).get("BucketRegion", "us-east-1") == "us-east-1"
    assert api("get-bucket-location", "--bucket", b).get("LocationConstraint") in (None, "")
    assert "Status" not in api("get-bucket-versioning", "--bucket", b)  # never enabled
    acl = api("get-bucket-acl", "--bucket", other)
    assert acl["Owner"]["ID"] == me and grants_of(acl) == {(me, "FULL_CONTROL")}
    api("put-bucket-acl", "--bucket", other, "--acl", "public-read")
    acl = api("get-bucket-acl", "--bucket", other)
    assert grants_of(acl) == {(me, "FULL_CONTROL"), (ALL_USERS, "READ")}
    assert send(server.endpoint, "GET", f"/{other}", sign=False).status == 200  # anon list
    api("delete-bucket", "--bucket", other)
    gone = api("head-bucket", "--bucket", other, check=False)
    assert gone.returncode != 0 and "404" in gone.stderr

    # ---- objects
    small = b"small object through the aws cli\n" * 100
    (tmp_path / "small").write_bytes(small)
    put = api("put-object", "--bucket", b, "--key", key, "--body", str(tmp_path / "small"),
              "--content-type", "text/plain", "--metadata", "colour=blue")
    assert put["ETag"] == md5_etag(small)
    head = api("head-object", "--bucket", b, "--key", key)
    assert (head["ContentLength"], head["ETag"], head["ContentType"], head["Metadata"]) == \
        (len(small), md5_etag(small), "text/plain", {"colour": "blue"})
    got = api("get-object", "--bucket", b, "--key", key, "--range", "bytes=6-11",
              str(tmp_path / "ranged"))
    assert (tmp_path / "ranged").read_bytes() == small[6:12] == b"object"
    assert got["ContentRange"] == f"bytes 6-11/{len(small)}"
    got = api("get-object", "--bucket", b, "--key", key, str(tmp_path / "whole"))
    assert (tmp_path / "whole").read_bytes() == small and got["ETag"] == md5_etag(small)
    copied = api("copy-object", "--bucket", b, "--key", key2, "--copy-source", f"{b}/{key}")
    assert copied["CopyObjectResult"]["ETag"] == md5_etag(small)
    head2 = api("head-object", "--bucket", b, "--key", key2)
    assert head2["Metadata"] == {"colour": "blue"} and head2["ContentLength"] == len(small)

    v1 = api("list-objects", "--bucket", b)
    assert [(o["Key"], o["Size"], o["ETag"]) for o in v1["Contents"]] == \
        [(key2, len(small), md5_etag(small)), (key, len(small), md5_etag(small))]
    assert all(o["Owner"]["ID"] == me for o in v1["Contents"])
    v2 = api("list-objects-v2", "--bucket", b, "--delimiter", "/")
    assert v2["CommonPrefixes"] == [{"Prefix": "dir/"}] and "Contents" not in v2
    v2 = api("list-objects-v2", "--bucket", b, "--prefix", "dir/s", "--no-paginate")
    assert [o["Key"] for o in v2["Contents"]] == [key2] and v2["KeyCount"] == 1

    policy = {"Owner": {"ID": me}, "Grants": [
        {"Grantee": {"Type": "CanonicalUser", "ID": me}, "Permission": "FULL_CONTROL"},
        {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"}]}
    assert grants_of(api("get-object-acl", "--bucket", b, "--key", key2)) == \
        {(me, "FULL_CONTROL")}
    api("put-object-acl", "--bucket", b, "--key", key2,
        "--access-control-policy", json.dumps(policy))
    assert grants_of(api("get-object-acl", "--bucket", b, "--key", key2)) == \
        {(me, "FULL_CONTROL"), (ALL_USERS, "READ")}
    anon = send(server.endpoint, "GET", f"/{b}/dir/second.bin", sign=False)
    assert (anon.status, anon.body) == (200, small)
    assert api("get-object-tagging", "--bucket", b, "--key", key)["TagSet"] == []

    # ---- multipart: one uploaded part, one copied range, one aborted upload
    part1 = bytes(range(256)) * (5 * MiB // 256) + b"tail"
    (tmp_path / "part1").write_bytes(part1)
    up = api("create-multipart-upload", "--bucket", b, "--key", "mp/big.bin",
             "--content-type", "application/x-test")
    assert (up["Bucket"], up["Key"]) == (b, "mp/big.bin")
    doomed = api("create-multipart-upload", "--bucket", b, "--key", "mp/doomed")
    uploads = api("list-multipart-uploads", "--bucket", b)
    assert sorted((u["Key"], u["UploadId"]) for u in uploads["Uploads"]) == \
        [("mp/big.bin", up["UploadId"]), ("mp/doomed", doomed["UploadId"])]
    p1 = api("upload-part", "--bucket", b, "--key", "mp/big.bin", "--upload-id",
             up["UploadId"], "--part-number", "1", "--body", str(tmp_path / "part1"))
    assert p1["ETag"] == md5_etag(part1)
    p2 = api("upload-part-copy", "--bucket", b, "--key", "mp/big.bin", "--upload-id",
             up["UploadId"], "--part-number", "2", "--copy-source", f"{b}/{key}",
             "--copy-source-range", "bytes=0-99")
    assert p2["CopyPartResult"]["ETag"] == md5_etag(small[:100])
    parts = api("list-parts", "--bucket", b, "--key", "mp/big.bin", "--upload-id",
                up["UploadId"])
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts["Parts"]] == \
        [(1, len(part1), md5_etag(part1)), (2, 100, md5_etag(small[:100]))]
    layout = {"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]},
                        {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]}
    done = api("complete-multipart-upload", "--bucket", b, "--key", "mp/big.bin",
               "--upload-id", up["UploadId"], "--multipart-upload", json.dumps(layout))
    assert done["ETag"] == composite_etag([part1, small[:100]])
    assert (done["Bucket"], done["Key"]) == (b, "mp/big.bin")
    api("abort-multipart-upload", "--bucket", b, "--key", "mp/doomed", "--upload-id",
        doomed["UploadId"])
    assert "Uploads" not in api("list-multipart-uploads", "--bucket", b)
    got = api("get-object", "--bucket", b, "--key", "mp/big.bin", str(tmp_path / "mp"))
    assert (tmp_path / "mp").read_bytes() == part1 + small[:100]
    assert got["ETag"] == done["ETag"] and got["ContentType"] == "application/x-test"
    assert got["ContentLength"] == len(part1) + 100
    attrs = api("get-object-attributes", "--bucket", b, "--key", "mp/big.bin",
                "--object-attributes", "ETag", "ObjectSize", "ObjectParts")
    assert (attrs["ETag"], attrs["ObjectSize"]) == (done["ETag"].strip('"'), len(part1) + 100)
    assert attrs["ObjectParts"]["TotalPartsCount"] == 2

    # ---- versions, tags and the bucket's configuration documents (issues 14-15)
    conf = "s3api-conf"
    api("create-bucket", "--bucket", conf)
    api("put-bucket-versioning", "--bucket", conf, "--versioning-configuration",
        "Status=Enabled")
    v1_id = api("put-object", "--bucket", conf, "--key", "v", "--tagging", "a=1")["VersionId"]
    v2_id = api("put-object", "--bucket", conf, "--key", "v")["VersionId"]
    versions = api("list-object-versions", "--bucket", conf)["Versions"]
    assert [x["VersionId"] for x in versions] == [v2_id, v1_id]
    tag_set = json.dumps({"TagSet": [{"Key": "k", "Value": "v"}]})
    api("put-object-tagging", "--bucket", conf, "--key", "v", "--tagging", tag_set)
    assert api("get-object-tagging", "--bucket", conf, "--key", "v",
               "--version-id", v1_id)["TagSet"] == [{"Key": "a", "Value": "1"}]
    api("delete-object-tagging", "--bucket", conf, "--key", "v")
    api("put-bucket-tagging", "--bucket", conf, "--tagging", tag_set)
    assert api("get-bucket-tagging", "--bucket", conf)["TagSet"] == [{"Key": "k", "Value": "v"}]
    api("delete-bucket-tagging", "--bucket", conf)
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{conf}/public/*"}]}
    api("put-bucket-policy", "--bucket", conf, "--policy", json.dumps(policy))
    assert json.loads(api("get-bucket-policy", "--bucket", conf)["Policy"]) == policy
    assert api("get-bucket-policy-status", "--bucket", conf)["PolicyStatus"]["IsPublic"]
    api("delete-bucket-policy", "--bucket", conf)
    block = "BlockPublicAcls=true,IgnorePublicAcls=false,BlockPublicPolicy=true," \
            "RestrictPublicBuckets=false"
    api("put-public-access-block", "--bucket", conf, "--public-access-block-configuration",
        block)
    assert api("get-public-access-block", "--bucket", conf)[
        "PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    api("delete-public-access-block", "--bucket", conf)
    cors = {"CORSRules": [{"AllowedOrigins": ["https://app.example"],
                           "AllowedMethods": ["GET", "PUT"]}]}
    api("put-bucket-cors", "--bucket", conf, "--cors-configuration", json.dumps(cors))
    assert api("get-bucket-cors", "--bucket", conf)["CORSRules"][0]["AllowedMethods"] == \
        ["GET", "PUT"]
    api("delete-bucket-cors", "--bucket", conf)
    rules = {"Rules": [{"ID": "old", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
                        "Expiration": {"Days": 30}}]}
    api("put-bucket-lifecycle-configuration", "--bucket", conf, "--lifecycle-configuration",
        json.dumps(rules))
    assert api("get-bucket-lifecycle-configuration", "--bucket", conf)["Rules"][0]["ID"] == "old"
    api("delete-bucket-lifecycle", "--bucket", conf)
    # PostObject is a browser form upload: no aws s3api command sends one
    form = s3.generate_presigned_post(conf, "posted.txt", ExpiresIn=300)
    posted = requests.post(form["url"], data=form["fields"],
                           files={"file": ("posted.txt", b"from a form")}, timeout=60)
    assert posted.status_code == 204, posted.text
    everything = api("list-object-versions", "--bucket", conf)
    doomed = [{"Key": x["Key"], "VersionId": x["VersionId"]}
              for x in everything.get("Versions", []) + everything.get("DeleteMarkers", [])]
    api("delete-objects", "--bucket", conf, "--delete", json.dumps({"Objects": doomed}))
    api("delete-bucket", "--bucket", conf)

    # ---- deletes
    assert api("delete-object", "--bucket", b, "--key", key) == {}
    deleted = api("delete-objects", "--bucket", b, "--delete", json.dumps(
        {"Objects": [{"Key": key2}, {"Key": "mp/big.bin"}, {"Key": "never-existed"}]}))
    assert sorted(d["Key"] for d in deleted["Deleted"]) == \
        ["dir/second.bin", "mp/big.bin", "never-existed"]
    assert "Errors" not in deleted
    assert "Contents" not in api("list-objects-v2", "--bucket", b)
    api("delete-bucket", "--bucket", b)
    assert b not in [x["Name"] for x in api("list-buckets").get("Buckets", [])]

    # ---- completeness: every Op exercised, by CLI name and by the server's own counters
    expected = {botocore.xform_name(op.value, "-") for op in Op if op is not Op.POST_OBJECT}
    assert api.used == expected, (sorted(expected - api.used), sorted(api.used - expected))
    after = op_counts(server)
    missing = sorted(op.value for op in Op
                     if after.get(op.value, 0.0) <= before.get(op.value, 0.0))
    assert missing == []
