"""Real transfer clients against a real gunicorn: aws s3 cp/sync, rclone, s3cmd.

Big files live in tmp_path and are compared by streaming sha256 (never held in memory).
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support.clients import AwsCli, S3Cmd
from support.server import ACCESS_KEY, SECRET_KEY
from support.stored import part_blobs

MiB = 1024 * 1024
CLI_PART = 8 * MiB  # aws CLI default multipart_chunksize (and threshold)


def make_file(path: Path, size: int, part: int = CLI_PART, seed: int = 0) -> list[bytes]:
    """Write ``size`` pseudo-random bytes; return the MD5 digest of each ``part``-sized slice."""
    rng = random.Random(seed)
    digests: list[bytes] = []
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        left = size
        while left:
            n = min(part, left)
            block = rng.randbytes(n)
            f.write(block)
            digests.append(hashlib.md5(block).digest())
            left -= n
    return digests


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


def multipart_etag(digests: list[bytes]) -> str:
    return f'"{hashlib.md5(b"".join(digests)).hexdigest()}-{len(digests)}"'


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file()}


def lines_with(output: str, verb: str) -> list[str]:
    return sorted(line for line in output.splitlines() if line.startswith(verb + ":"))


def worker_peak_rss_mib(server: Any) -> float:
    peaks = []
    for pid in server.worker_pids():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks)


@pytest.mark.slow
def test_aws_cp_one_gib_up_and_down(server: Any, aws: AwsCli, s3: Any, bucket: str,
                                    tmp_path: Path) -> None:
    src, back = tmp_path / "big.bin", tmp_path / "back.bin"
    digests = make_file(src, 1024 * MiB)
    aws("s3", "cp", "--no-progress", str(src), f"s3://{bucket}/dir/big.bin")
    head = s3.head_object(Bucket=bucket, Key="dir/big.bin")
    assert head["ContentLength"] == 1024 * MiB
    assert head["ETag"] == multipart_etag(digests)  # 128 parts of 8 MiB
    assert s3.head_object(Bucket=bucket, Key="dir/big.bin", PartNumber=128)["PartsCount"] == 128
    assert part_blobs(server) == []
    if server.backend == "aws":
        # NOTE: over moto, one streamed GET: each of the CLI's 128 ranged GETs makes moto
        # read the whole object (moto alone: 125 s for the ranges, 14 s for the upload),
        # which times moto, not the gateway's streaming (GCS and Azure emulators: no gain).
        aws = AwsCli(server.endpoint, tmp_path / "aws-one-get", multipart_threshold="2GB")
    aws("s3", "cp", "--no-progress", f"s3://{bucket}/dir/big.bin", str(back))
    assert back.stat().st_size == 1024 * MiB
    assert sha256_file(back) == sha256_file(src)
    assert worker_peak_rss_mib(server) < 400  # streamed both ways, never buffered


def make_tree(root: Path) -> list[str]:
    """200 files, mostly small, three above the CLI's 8 MiB multipart threshold."""
    rng = random.Random(7)
    names = []
    for i in range(200):
        name = f"d{i % 7}/sub{i % 3}/file-{i:03d}.bin" if i % 4 else f"top-{i:03d}.txt"
        size = (9 * MiB + i * 4099) if i in (5, 77, 150) else rng.randrange(0, 64 * 1024)
        make_file(root / name, size, seed=i)
        names.append(name)
    return names


def test_aws_sync_tree_up_again_changed_and_down(aws: AwsCli, s3: Any, bucket: str,
                                                 tmp_path: Path) -> None:
    src, down = tmp_path / "src", tmp_path / "down"
    names = make_tree(src)
    first = aws("s3", "sync", "--no-progress", str(src), f"s3://{bucket}/tree")
    assert len(lines_with(first.stdout, "upload")) == 200
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="tree/")
    listed = {o["Key"]: o for pg in pages for o in pg["Contents"]}
    assert sorted(listed) == sorted(f"tree/{n}" for n in names)
    assert listed["tree/d5/sub2/file-005.bin"]["ETag"].endswith('-2"')  # went multipart
    again = aws("s3", "sync", "--no-progress", str(src), f"s3://{bucket}/tree")
    assert lines_with(again.stdout, "upload") == [], again.stdout
    changed = ["top-000.txt", "d5/sub2/file-005.bin", "d1/sub1/file-001.bin"]
    make_file(src / changed[0], 70 * 1024, seed=1000)          # new size
    make_file(src / changed[1], 10 * MiB + 1, seed=1001)       # new size, multipart
    old = (src / changed[2]).stat()
    make_file(src / changed[2], old.st_size, seed=1002)        # same size, newer mtime
    os.utime(src / changed[2], (old.st_atime + 3600, old.st_mtime + 3600))
    third = aws("s3", "sync", "--no-progress", str(src), f"s3://{bucket}/tree")
    uploaded = lines_with(third.stdout, "upload")
    assert len(uploaded) == 3, third.stdout
    assert all(any(c in line for line in uploaded) for c in changed), uploaded
    got = aws("s3", "sync", "--no-progress", f"s3://{bucket}/tree", str(down))
    assert len(lines_with(got.stdout, "download")) == 200
    assert tree_digest(down) == tree_digest(src)
    assert lines_with(aws("s3", "sync", "--no-progress", f"s3://{bucket}/tree",
                          str(down)).stdout, "download") == []


def rclone(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    proc = subprocess.run(["rclone", "--config", str(conf), *args], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"rclone {args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_rclone_copy_and_sync_multipart(server: Any, s3: Any, bucket: str,
                                        tmp_path: Path) -> None:
    conf = tmp_path / "rclone.conf"
    conf.write_text(f"[bs]\ntype = s3\nprovider = Other\naccess_key_id = {ACCESS_KEY}\n"
                    f"secret_access_key = {SECRET_KEY}\nendpoint = {server.endpoint}\n"
                    "region = us-east-1\nforce_path_style = true\n")
    src = tmp_path / "src"
    make_file(src / "big.bin", 50 * MiB + 3, seed=1)
    make_file(src / "a" / "small.txt", 1234, seed=2)
    chunking = ("--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M")
    rclone(conf, "copy", *chunking, str(src / "big.bin"), f"bs:{bucket}/one")
    head = s3.head_object(Bucket=bucket, Key="one/big.bin")
    assert head["ContentLength"] == 50 * MiB + 3 and head["ETag"].endswith('-11"')
    rclone(conf, "copy", f"bs:{bucket}/one/big.bin", str(tmp_path / "back"))
    assert sha256_file(tmp_path / "back" / "big.bin") == sha256_file(src / "big.bin")
    rclone(conf, "sync", *chunking, str(src), f"bs:{bucket}/tree")
    rclone(conf, "check", str(src), f"bs:{bucket}/tree")
    (src / "a" / "small.txt").unlink()
    rclone(conf, "sync", *chunking, str(src), f"bs:{bucket}/tree")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="tree/")["Contents"]]
    assert keys == ["tree/big.bin"]
    rclone(conf, "sync", f"bs:{bucket}/tree", str(tmp_path / "down"))
    assert tree_digest(tmp_path / "down") == tree_digest(src)


def test_s3cmd_put_get_multipart(s3cmd: S3Cmd, s3: Any, bucket: str, tmp_path: Path) -> None:
    src, back = tmp_path / "fifty.bin", tmp_path / "fifty.back"
    digests = make_file(src, 50 * MiB, part=15 * MiB, seed=3)
    s3cmd("put", "--multipart-chunk-size-mb=15", str(src), f"s3://{bucket}/fifty.bin")
    head = s3.head_object(Bucket=bucket, Key="fifty.bin")
    assert head["ETag"] == multipart_etag(digests) and head["ContentLength"] == 50 * MiB
    listed = s3cmd("ls", f"s3://{bucket}/").stdout
    assert f"s3://{bucket}/fifty.bin" in listed
    s3cmd("get", f"s3://{bucket}/fifty.bin", str(back))
    assert sha256_file(back) == sha256_file(src)
