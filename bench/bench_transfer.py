#!/usr/bin/env python3
"""Transfer benchmark: BleepStore started the production way (gunicorn, repo config).

Measures, against a fresh server on a private temp dir:
- ``aws s3 cp`` of a 1 GiB file up and down (MB/s, wall clock of the CLI process);
- CompleteMultipartUpload of 1 GiB in 8 MiB parts (boto3 low-level calls; only the
  complete call is timed).
Prints a table and one JSON line. Not part of the test suite.

    python bench/bench_transfer.py [--size-mib 1024] [--part-mib 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.clients import AwsCli, boto3_client  # noqa: E402
from support.server import Server  # noqa: E402

MiB = 1024 * 1024


def make_file(path: Path, size: int) -> str:
    h = hashlib.sha256()
    block = os.urandom(8 * MiB)
    with path.open("wb") as f:
        for i in range(0, size, len(block)):
            chunk = block[: min(len(block), size - i)]
            chunk = i.to_bytes(8, "big") + chunk[8:]  # every block differs
            f.write(chunk)
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


def timed_cli(aws: AwsCli, *args: str) -> float:
    start = time.perf_counter()
    aws("s3", "cp", "--no-progress", *args, timeout=1800)
    return time.perf_counter() - start


def complete_time(s3: Any, bucket: str, src: Path, part: int) -> tuple[float, int]:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="assembled")["UploadId"]
    parts = []
    with src.open("rb") as f:
        number = 1
        while body := f.read(part):
            etag = s3.upload_part(Bucket=bucket, Key="assembled", UploadId=uid,
                                  PartNumber=number, Body=body)["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
            number += 1
    start = time.perf_counter()
    s3.complete_multipart_upload(Bucket=bucket, Key="assembled", UploadId=uid,
                                 MultipartUpload={"Parts": parts})
    return time.perf_counter() - start, len(parts)


def run(args: argparse.Namespace) -> dict[str, Any]:
    size = args.size_mib * MiB
    with tempfile.TemporaryDirectory(prefix="bleepbench-") as tmp:
        root = Path(tmp)
        server = Server(root / "server", workers=args.workers)
        server.start()
        try:
            s3 = boto3_client(server.endpoint, read_timeout=600)
            s3.create_bucket(Bucket="bench")
            aws = AwsCli(server.endpoint, root / "aws")
            src, back = root / "src.bin", root / "back.bin"
            digest = make_file(src, size)
            up = timed_cli(aws, str(src), "s3://bench/big.bin")
            down = timed_cli(aws, "s3://bench/big.bin", str(back))
            if sha256_file(back) != digest:
                raise SystemExit("downloaded bytes differ from the upload")
            back.unlink()
            seconds, count = complete_time(s3, "bench", src, args.part_mib * MiB)
        finally:
            server.stop()
    return {"size_mib": args.size_mib, "workers": args.workers,
            "aws_cp_up_mb_s": round(size / 1e6 / up, 1), "aws_cp_up_s": round(up, 2),
            "aws_cp_down_mb_s": round(size / 1e6 / down, 1), "aws_cp_down_s": round(down, 2),
            "complete_parts": count, "complete_part_mib": args.part_mib,
            "complete_s": round(seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--part-mib", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    result = run(parser.parse_args())
    rows = [("aws s3 cp up", f"{result['aws_cp_up_mb_s']} MB/s ({result['aws_cp_up_s']} s)"),
            ("aws s3 cp down",
             f"{result['aws_cp_down_mb_s']} MB/s ({result['aws_cp_down_s']} s)"),
            (f"CompleteMultipartUpload ({result['complete_parts']} x "
             f"{result['complete_part_mib']} MiB)", f"{result['complete_s']} s")]
    width = max(len(name) for name, _ in rows)
    print(f"BleepStore transfer benchmark, {result['size_mib']} MiB, "
          f"{result['workers']} workers")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
