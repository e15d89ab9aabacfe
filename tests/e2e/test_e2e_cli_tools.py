"""The real aws CLI and s3cmd against the bucket/object API: listings, server-side
copies, recursive deletes, ACLs, uploads and downloads, compared byte for byte."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from support.clients import AwsCli, S3Cmd
from support.server import Server
from support.signed import send

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
KEYS = ["top.txt", "docs/a b.txt", "docs/ünï+code.txt", "docs/sub/deep.bin", "logs/1.log"]


def seed(s3: Any, bucket: str) -> dict[str, bytes]:
    data = {k: f"content of {k}".encode() * (3 + i) for i, k in enumerate(KEYS)}
    for key, body in data.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return data


def ls_keys(out: str) -> list[tuple[int, str]]:
    """``aws s3 ls`` object lines: 'date time size key' -> (size, key)."""
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[2].isdigit():
            rows.append((int(parts[2]), parts[3]))
    return rows


def test_aws_s3_ls(aws: AwsCli, s3: Any, bucket: str) -> None:
    data = seed(s3, bucket)
    s3.create_bucket(Bucket="second-bucket")
    buckets = [line.split()[-1] for line in aws("s3", "ls").stdout.splitlines()]
    assert buckets == sorted([bucket, "second-bucket"])
    listed = ls_keys(aws("s3", "ls", "--recursive", f"s3://{bucket}").stdout)
    assert listed == sorted(((len(v), k) for k, v in data.items()), key=lambda r: r[1])
    out = aws("s3", "ls", f"s3://{bucket}/docs/").stdout.splitlines()
    assert [line.split()[-1] for line in out if "PRE" in line] == ["sub/"]
    assert ls_keys("\n".join(out)) == [(len(data["docs/a b.txt"]), "a b.txt"),
                                       (len(data["docs/ünï+code.txt"]), "ünï+code.txt")]
    top = aws("s3", "ls", f"s3://{bucket}").stdout.splitlines()
    assert sorted(line.split()[-1] for line in top if "PRE" in line) == ["docs/", "logs/"]
    assert ls_keys("\n".join(top)) == [(len(data["top.txt"]), "top.txt")]


def test_aws_s3_cp_server_side_and_rm_recursive(server: Server, aws: AwsCli, s3: Any,
                                               bucket: str, tmp_path: Path) -> None:
    if getattr(server, "via", None) == "nginx":
        pytest.skip("slowest CLI test: the direct run covers it")
    data = seed(s3, bucket)
    aws("s3", "cp", f"s3://{bucket}/docs/ünï+code.txt", f"s3://{bucket}/copied/ü 2.txt")
    got = s3.get_object(Bucket=bucket, Key="copied/ü 2.txt")
    assert got["Body"].read() == data["docs/ünï+code.txt"]
    assert got["ETag"] == '"' + hashlib.md5(data["docs/ünï+code.txt"]).hexdigest() + '"'
    aws("s3", "cp", "--recursive", f"s3://{bucket}/docs/", f"s3://{bucket}/backup/")
    backup = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="backup/")["Contents"]}
    assert backup == {"backup/a b.txt", "backup/ünï+code.txt", "backup/sub/deep.bin"}
    aws("s3", "rm", "--recursive", f"s3://{bucket}/docs")
    left = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert left == sorted(["top.txt", "logs/1.log", "copied/ü 2.txt", *backup])
    dest = tmp_path / "down.txt"
    aws("s3", "cp", f"s3://{bucket}/backup/a b.txt", str(dest))
    assert dest.read_bytes() == data["docs/a b.txt"]
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(9 * 1024 * 1024))  # multipart upload by the CLI
    aws("s3", "cp", str(big), f"s3://{bucket}/big.bin")
    aws("s3", "cp", f"s3://{bucket}/big.bin", f"s3://{bucket}/big-copy.bin")
    body = s3.get_object(Bucket=bucket, Key="big-copy.bin")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(big.read_bytes()).digest()


def test_aws_s3api_list_objects_v2_encoding_type_url(aws: AwsCli, s3: Any,
                                                     bucket: str) -> None:
    seed(s3, bucket)
    raw = json.loads(aws("s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "docs/",
                         "--delimiter", "/", "--encoding-type", "url",
                         "--no-paginate").stdout)
    assert [c["Key"] for c in raw["Contents"]] == ["docs/a%20b.txt",
                                                   "docs/%C3%BCn%C3%AF%2Bcode.txt"]
    assert [p["Prefix"] for p in raw["CommonPrefixes"]] == ["docs/sub/"]
    assert raw["EncodingType"] == "url" and raw["KeyCount"] == 3
    plain = json.loads(aws("s3api", "list-objects-v2", "--bucket", bucket,
                           "--prefix", "docs/", "--max-items", "1").stdout)
    assert [c["Key"] for c in plain["Contents"]] == ["docs/a b.txt"]
    assert "NextToken" in plain
    rest = json.loads(aws("s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "docs/",
                          "--starting-token", plain["NextToken"]).stdout)
    assert [c["Key"] for c in rest["Contents"]] == ["docs/sub/deep.bin", "docs/ünï+code.txt"]


def test_aws_s3api_object_acl(server: Server, aws: AwsCli, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="shared file", Body=b"to share")
    assert send(server.endpoint, "GET", f"/{bucket}/shared%20file", sign=False).status == 403
    aws("s3api", "put-object-acl", "--bucket", bucket, "--key", "shared file",
        "--acl", "public-read")
    acl = json.loads(aws("s3api", "get-object-acl", "--bucket", bucket,
                         "--key", "shared file").stdout)
    me = s3.list_buckets()["Owner"]
    assert acl["Owner"]["ID"] == me["ID"]
    assert {(g["Grantee"].get("URI") or g["Grantee"]["ID"], g["Permission"])
            for g in acl["Grants"]} == {(me["ID"], "FULL_CONTROL"), (ALL_USERS, "READ")}
    anon = send(server.endpoint, "GET", f"/{bucket}/shared%20file", sign=False)
    assert (anon.status, anon.body) == (200, b"to share")


def test_s3cmd_put_get_ls_info(s3cmd: S3Cmd, s3: Any, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "upload.bin"
    src.write_bytes(os.urandom(200_000))
    s3cmd("put", str(src), f"s3://{bucket}/dir/upload.bin")
    s3cmd("put", str(src), f"s3://{bucket}/dir/sp ace+plus.bin")
    assert s3.get_object(Bucket=bucket, Key="dir/upload.bin")["Body"].read() == \
        src.read_bytes()
    dest = tmp_path / "download.bin"
    s3cmd("get", f"s3://{bucket}/dir/sp ace+plus.bin", str(dest))
    assert dest.read_bytes() == src.read_bytes()
    lines = s3cmd("ls", f"s3://{bucket}/dir/").stdout.splitlines()
    assert [line.split(None, 3)[3] for line in lines] == [
        f"s3://{bucket}/dir/sp ace+plus.bin", f"s3://{bucket}/dir/upload.bin"]
    assert [line.split()[2] for line in lines] == ["200000", "200000"]
    assert "DIR" in s3cmd("ls", f"s3://{bucket}").stdout
    info = s3cmd("info", f"s3://{bucket}/dir/upload.bin").stdout
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    assert md5 in info and "200000" in info
    assert "ACL:" in info and "FULL_CONTROL" in info


def test_s3cmd_setacl_public_and_del_recursive(server: Server, s3cmd: S3Cmd, s3: Any,
                                               bucket: str) -> None:
    seed(s3, bucket)
    target = f"/{bucket}/docs/a%20b.txt"
    assert send(server.endpoint, "GET", target, sign=False).status == 403
    s3cmd("setacl", "--acl-public", f"s3://{bucket}/docs/a b.txt")
    assert send(server.endpoint, "GET", target, sign=False).status == 200
    grants = s3.get_object_acl(Bucket=bucket, Key="docs/a b.txt")["Grants"]
    assert (ALL_USERS, "READ") in {(g["Grantee"].get("URI"), g["Permission"]) for g in grants}
    s3cmd("setacl", "--acl-private", f"s3://{bucket}/docs/a b.txt")
    assert send(server.endpoint, "GET", target, sign=False).status == 403
    s3cmd("del", "--recursive", f"s3://{bucket}/docs/")
    left = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert left == ["logs/1.log", "top.txt"]
    s3cmd("del", "--recursive", "--force", f"s3://{bucket}")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
