"""A PUT that runs out of disk answers an S3 error, leaves no temp file and no row, and the
server keeps serving reads. The storage root is a real 16 MiB tmpfs (needs root; CI is)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import botocore.exceptions
import pytest

from support.clients import boto3_client
from support.server import Server


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); "
                    "ENOSPC is covered by the storage unit tests' simulation")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_put_on_a_full_disk(tmp_path: Path, small_disk: Path) -> None:
    srv = Server(tmp_path / "srv", workers=1, extra_config={
        "storage": {"local": {"root_dir": str(small_disk / "objects")}}})
    srv.start()
    try:
        s3 = boto3_client(srv.endpoint)
        s3.create_bucket(Bucket="full")
        s3.put_object(Bucket="full", Key="small", Body=b"still here")
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            s3.put_object(Bucket="full", Key="huge", Body=os.urandom(24 * 1024 * 1024))
        assert exc.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert list((small_disk / "objects" / ".tmp").iterdir()) == []
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="full")["Contents"]]
        assert keys == ["small"]
        assert s3.get_object(Bucket="full", Key="small")["Body"].read() == b"still here"
        s3.put_object(Bucket="full", Key="after", Body=b"space again")
        assert s3.get_object(Bucket="full", Key="after")["Body"].read() == b"space again"
    finally:
        srv.stop()
