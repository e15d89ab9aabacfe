"""Every real client x every everyday action, direct and through nginx (the ``server``
fixture runs each test twice). Bytes, ETags and listings are compared, never just exit
codes. This module fills the cells other modules left open ("here:" = this module).

boto3 client
  put/get/list/delete  test_e2e_basics::test_put_get_head_delete_roundtrip, test_e2e_listing
  multipart            test_e2e_multipart (every test)
  presigned GET        test_e2e_basics::test_presigned_get_and_put (s3v4 client config)
boto3 resource
  put/get/list/delete  here: test_boto3_resource_api (Object.put/get/load/copy_from/delete,
                       objects.filter().page_size(1), objects.filter().delete(), Bucket)
  multipart            here: test_boto3_resource_api (initiate_multipart_upload, Part.upload,
                       parts.all, multipart_uploads.all, complete)
  presigned GET        here: test_boto3_resource_api (default config presigns SigV2, and an
                       s3v4 URL: both fetched with urllib)
boto3 managed transfers (s3transfer)
  upload/download      test_e2e_multipart::test_boto3_managed_upload_with_crc32_parts
                       (upload_file/download_file, 5 MiB threshold); here:
                       test_boto3_managed_transfers (upload_fileobj, ranged download_fileobj,
                       managed copy via UploadPartCopy, Bucket.upload_file below threshold,
                       Object.download_file)
aws CLI (aws s3)
  put/get/list/delete  test_e2e_awscli::test_aws_cli_lifecycle (mb, cp, ls, rm, rb),
                       test_e2e_cli_tools::test_aws_s3_ls; here:
                       test_aws_cli_cp_recursive_both_ways (cp --recursive up and down,
                       rm --recursive)
  multipart            test_e2e_transfers::test_aws_sync_tree_up_again_changed_and_down
                       (9 MiB files); here: test_aws_cli_cp_recursive_both_ways (5 MB threshold)
  sync                 test_e2e_transfers::test_aws_sync_tree_up_again_changed_and_down
  presigned GET        test_e2e_awscli::test_aws_cli_lifecycle (aws s3 presign: SigV2 default
                       refused, s3v4 fetched with curl)
aws CLI (aws s3api)    test_e2e_s3api_all: every Op BleepStore implements, incl. multipart
s3cmd
  put/get/list/delete  test_e2e_cli_tools::test_s3cmd_put_get_ls_info, ..._del_recursive;
                       here: test_s3cmd_everyday_actions (put, get, ls, del of one key)
  multipart            test_e2e_transfers::test_s3cmd_put_get_multipart (15 MB chunks);
                       here: test_s3cmd_everyday_actions (--multipart-chunk-size-mb=5)
  presigned GET        here: test_s3cmd_everyday_actions (s3cmd 2.4 ``signurl`` signs SigV2)
rclone 1.60
  put/get/list/delete  test_e2e_transfers::test_rclone_copy_and_sync_multipart (copy, sync,
                       check); here: test_rclone_everyday_actions (copyto both ways, cat,
                       ranged cat, lsf, lsjson, deletefile)
  multipart            test_e2e_transfers (50 MiB); here: 6 MiB with --s3-upload-cutoff 5M
                       --s3-chunk-size 5M
  presigned GET        here: test_rclone_everyday_actions (``rclone link`` on S3 = a SigV4
                       presigned GET URL, fetched with urllib)
JS SDK v3              test_e2e_js_sdk::test_js_sdk_v3_round_trips (put, streamed put, get,
                       head, list, delete, DeleteObjects, lib-storage multipart, presigned GET)
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from support.clients import AwsCli, S3Cmd
from support.rclone import Rclone
from support.server import ACCESS_KEY, SECRET_KEY

MiB = 1024 * 1024
FIVE = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB,
                      max_concurrency=2)


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def composite_etag(data: bytes, part: int = 5 * MiB) -> str:
    chunks = [data[i:i + part] for i in range(0, len(data), part)]
    joined = b"".join(hashlib.md5(c).digest() for c in chunks)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(chunks)}"'


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def listing(s3: Any, bucket: str, prefix: str = "") -> dict[str, tuple[int, str]]:
    out = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: (o["Size"], o["ETag"]) for o in out.get("Contents", [])}


# ------------------------------------------------------------------------------- boto3

def test_boto3_resource_api(s3_resource: Any, s3: Any) -> None:
    bucket = s3_resource.Bucket("matrix-resource")
    bucket.create()
    assert "matrix-resource" in [b.name for b in s3_resource.buckets.all()]
    small = b"resource api body"
    obj = bucket.Object("r/ünï code.txt")
    put = obj.put(Body=small, ContentType="text/plain", Metadata={"k": "v"})
    assert put["ETag"] == md5_etag(small)
    obj.load()
    assert (obj.content_length, obj.e_tag, obj.content_type, obj.metadata) == \
        (len(small), md5_etag(small), "text/plain", {"k": "v"})
    assert obj.get(Range="bytes=0-7")["Body"].read() == small[:8]
    copy = bucket.Object("r/copy.txt")
    copy.copy_from(CopySource={"Bucket": bucket.name, "Key": obj.key})
    assert copy.get()["Body"].read() == small

    big = blob(5 * MiB + 4321, seed=11)
    mp_obj = bucket.Object("r/multipart.bin")
    mpu = mp_obj.initiate_multipart_upload(ContentType="application/x-mp")
    assert [u.id for u in bucket.multipart_uploads.all()] == [mpu.id]
    etags = [mpu.Part(n).upload(Body=chunk)["ETag"]
             for n, chunk in ((1, big[:5 * MiB]), (2, big[5 * MiB:]))]
    assert [(p.part_number, p.size, p.e_tag) for p in mpu.parts.all()] == \
        [(1, 5 * MiB, etags[0]), (2, 4321, etags[1])]
    done = mpu.complete(MultipartUpload={"Parts": [
        {"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
    assert done.e_tag == composite_etag(big)
    assert list(bucket.multipart_uploads.all()) == []
    assert mp_obj.get()["Body"].read() == big

    # listing through the resource collection, one key per page (pagination followed)
    listed = [(o.key, o.size, o.e_tag) for o in bucket.objects.filter(Prefix="r/").page_size(1)]
    assert listed == [("r/copy.txt", len(small), md5_etag(small)),
                      ("r/multipart.bin", len(big), composite_etag(big)),
                      ("r/ünï code.txt", len(small), md5_etag(small))]

    # With a custom endpoint and no signature_version, botocore presigns with SigV2; an
    # s3v4 resource's URL works too.
    params = {"Bucket": bucket.name, "Key": obj.key}
    url = s3_resource.meta.client.generate_presigned_url("get_object", Params=params)
    assert fetch(url) == (200, small)
    v4 = boto3.resource("s3", endpoint_url=s3_resource.meta.client.meta.endpoint_url,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        region_name="us-east-1",
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    url = v4.meta.client.generate_presigned_url("get_object", Params=params, ExpiresIn=60)
    assert "X-Amz-Signature=" in url and fetch(url) == (200, small)

    obj.delete()
    with pytest.raises(botocore.exceptions.ClientError):
        obj.load()
    deleted = bucket.objects.filter(Prefix="r/").delete()  # one DeleteObjects batch
    assert sorted(d["Key"] for r in deleted for d in r["Deleted"]) == \
        ["r/copy.txt", "r/multipart.bin"]
    assert list(bucket.objects.all()) == []
    bucket.delete()
    assert "matrix-resource" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_boto3_managed_transfers(s3: Any, s3_resource: Any, bucket: str,
                                 tmp_path: Path) -> None:
    """s3transfer both ways through the client and the resource, above and below the
    5 MiB threshold: multipart upload, ranged parallel download, UploadPartCopy copy."""
    big = blob(11 * MiB + 77, seed=21)
    s3.upload_fileobj(io.BytesIO(big), bucket, "t/big.bin", Config=FIVE)
    assert listing(s3, bucket, "t/") == {"t/big.bin": (len(big), composite_etag(big))}
    sink = io.BytesIO()
    s3.download_fileobj(bucket, "t/big.bin", sink, Config=FIVE)  # three ranged GETs
    assert sink.getvalue() == big
    s3.copy({"Bucket": bucket, "Key": "t/big.bin"}, bucket, "t/big-copy.bin", Config=FIVE)
    head = s3.head_object(Bucket=bucket, Key="t/big-copy.bin")
    assert head["ETag"] == composite_etag(big)  # copied part by part, same 5 MiB layout
    assert s3.get_object(Bucket=bucket, Key="t/big-copy.bin")["Body"].read() == big

    small = tmp_path / "small.bin"
    small.write_bytes(blob(300_000, seed=22))
    s3_resource.Bucket(bucket).upload_file(str(small), "t/small.bin", Config=FIVE)
    assert listing(s3, bucket, "t/small")["t/small.bin"] == \
        (300_000, md5_etag(small.read_bytes()))  # below the threshold: one PutObject
    back = tmp_path / "back.bin"
    s3_resource.Object(bucket, "t/big-copy.bin").download_file(str(back), Config=FIVE)
    assert back.read_bytes() == big


# ------------------------------------------------------------------------------ aws CLI

def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_aws_cli_cp_recursive_both_ways(aws: AwsCli, s3: Any, bucket: str,
                                        tmp_path: Path) -> None:
    with (tmp_path / "aws" / "config").open("a") as cfg:  # the s3 section is last
        cfg.write("  multipart_threshold = 5MB\n  multipart_chunksize = 5MB\n")
    files = {"top.txt": b"top\n", "sub/a b.bin": blob(100_000, 1), "sub/ü/ñ.txt": b"\xc3\xbc",
             "sub/empty": b"", "big.bin": blob(6 * MiB + 1, 2)}
    src, down = tmp_path / "src", tmp_path / "down"
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    out = aws("s3", "cp", "--recursive", "--no-progress", str(src), f"s3://{bucket}/up")
    assert out.stdout.count("upload:") == len(files)
    assert listing(s3, bucket) == {
        f"up/{k}": (len(v), composite_etag(v) if k == "big.bin" else md5_etag(v))
        for k, v in files.items()}
    assert listing(s3, bucket)["up/big.bin"][1].endswith('-2"')  # really multipart
    out = aws("s3", "cp", "--recursive", "--no-progress", f"s3://{bucket}/up", str(down))
    assert out.stdout.count("download:") == len(files)
    assert tree_bytes(down) == files
    aws("s3", "rm", "--recursive", f"s3://{bucket}/up/sub")
    assert sorted(listing(s3, bucket)) == ["up/big.bin", "up/top.txt"]


# -------------------------------------------------------------------------------- s3cmd

def test_s3cmd_everyday_actions(s3cmd: S3Cmd, s3: Any, bucket: str, tmp_path: Path) -> None:
    small, big = tmp_path / "small.txt", tmp_path / "big.bin"
    small.write_bytes(b"s3cmd small body\n" * 50)
    big.write_bytes(blob(11 * MiB + 3, seed=31))
    s3cmd("put", str(small), f"s3://{bucket}/c/small.txt")
    s3cmd("put", "--multipart-chunk-size-mb=5", str(big), f"s3://{bucket}/c/big.bin")
    assert listing(s3, bucket) == {
        "c/small.txt": (small.stat().st_size, md5_etag(small.read_bytes())),
        "c/big.bin": (big.stat().st_size, composite_etag(big.read_bytes()))}  # 3 parts
    rows = [line.split() for line in s3cmd("ls", f"s3://{bucket}/c/").stdout.splitlines()]
    assert [(r[2], r[3]) for r in rows] == [(str(big.stat().st_size), f"s3://{bucket}/c/big.bin"),
                                            (str(small.stat().st_size),
                                             f"s3://{bucket}/c/small.txt")]
    back = tmp_path / "back.bin"
    s3cmd("get", f"s3://{bucket}/c/big.bin", str(back))
    assert back.read_bytes() == big.read_bytes()
    # s3cmd 2.4 ``signurl`` always signs with SigV2 (cmd_signurl -> sign_url_v2)
    url = s3cmd("signurl", f"s3://{bucket}/c/small.txt", "+120").stdout.strip()
    assert "AWSAccessKeyId=" in url and "Signature=" in url
    assert fetch(url) == (200, small.read_bytes())
    s3cmd("del", f"s3://{bucket}/c/small.txt")
    assert sorted(listing(s3, bucket)) == ["c/big.bin"]
    assert s3cmd("ls", f"s3://{bucket}/c/small.txt").stdout.strip() == ""


# ------------------------------------------------------------------------------- rclone

def test_rclone_everyday_actions(server: Any, s3: Any, bucket: str, tmp_path: Path) -> None:
    rclone = Rclone(server.endpoint, tmp_path / "rclone")
    small, big = tmp_path / "small.txt", tmp_path / "big.bin"
    small.write_bytes(b"rclone small body\n" * 40)
    big.write_bytes(blob(6 * MiB + 5, seed=41))
    chunking = ("--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M")
    rclone("copyto", str(small), f"bs:{bucket}/rc/small renamed.txt")
    rclone("copyto", *chunking, str(big), f"bs:{bucket}/rc/deep/big.bin")
    objects = listing(s3, bucket)
    assert objects["rc/small renamed.txt"] == (small.stat().st_size,
                                                md5_etag(small.read_bytes()))
    assert objects["rc/deep/big.bin"] == (big.stat().st_size, composite_etag(big.read_bytes()))
    assert rclone("cat", f"bs:{bucket}/rc/small renamed.txt").stdout.encode() == \
        small.read_bytes()
    cat = rclone("cat", "--offset", "7", "--count", "11", f"bs:{bucket}/rc/small renamed.txt")
    assert cat.stdout.encode() == small.read_bytes()[7:18]  # a ranged GET
    assert sorted(rclone("lsf", "-R", f"bs:{bucket}/rc").stdout.splitlines()) == \
        ["deep/", "deep/big.bin", "small renamed.txt"]
    entries = json.loads(rclone("lsjson", "-R", "--files-only", f"bs:{bucket}/rc").stdout)
    assert sorted((e["Path"], e["Size"]) for e in entries) == \
        [("deep/big.bin", big.stat().st_size), ("small renamed.txt", small.stat().st_size)]
    back = tmp_path / "back.bin"
    rclone("copyto", f"bs:{bucket}/rc/deep/big.bin", str(back))
    assert back.read_bytes() == big.read_bytes()
    # rclone link on an S3 remote returns a presigned GET URL
    url = rclone("link", "--expire", "1h", f"bs:{bucket}/rc/small renamed.txt")
    url_text = url.stdout.strip().splitlines()[-1]
    assert "X-Amz-Signature=" in url_text
    assert fetch(url_text) == (200, small.read_bytes())
    rclone("deletefile", f"bs:{bucket}/rc/small renamed.txt")
    assert sorted(listing(s3, bucket)) == ["rc/deep/big.bin"]
    assert sorted(rclone("lsf", "-R", f"bs:{bucket}/rc").stdout.splitlines()) == \
        ["deep/", "deep/big.bin"]
