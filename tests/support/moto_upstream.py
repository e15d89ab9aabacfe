"""A real S3 upstream for the AWS gateway: ``moto_server`` (PyPI ``moto[server]``) on a
loopback port, in the foreground under ``Popen`` (services.md).

Start one per session; every ``new_store()`` / ``server_storage_config()`` gets a fresh
bucket, so tests never see each other's objects and need no reset (``reset()`` empties
everything, for a caller that wants it). moto accepts any credentials.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from bleepstore.config import AwsStorageConfig
from bleepstore.storage.aws import AwsCloud
from support.server import free_port, stop_process, wait_port

ACCESS_KEY = "moto-access"
SECRET_KEY = "moto-secret"
REGION = "us-east-1"


class MotoUpstream:
    """``moto_server`` with a private port and log. ``min_part_size`` lowers moto's
    enforcement of S3's 5 MiB minimum for every part but the last (moto's
    ``S3_UPLOAD_PART_MIN_SIZE``), so a many-part compose stays small; None keeps S3's rule.
    ``max_keys`` shrinks moto's default listing page (1000), so paging is exercised."""

    def __init__(self, root: Path, min_part_size: int | None = None,
                 max_keys: int | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.min_part_size = min_part_size
        self.max_keys = max_keys
        self.proc: subprocess.Popen[bytes] | None = None
        # For a process that reaches this upstream through boto3's default credential
        # chain (the config's keys left empty), e.g. ``Server(env=upstream.env)``.
        self.env: dict[str, str] = {"AWS_ACCESS_KEY_ID": ACCESS_KEY,
                                    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                                    "AWS_DEFAULT_REGION": REGION,
                                    "AWS_EC2_METADATA_DISABLED": "true"}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoUpstream:
        self.root.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.min_part_size is not None:
            env["S3_UPLOAD_PART_MIN_SIZE"] = str(self.min_part_size)
        if self.max_keys is not None:
            env["MOTO_S3_DEFAULT_MAX_KEYS"] = str(self.max_keys)
        exe = Path(sys.executable).with_name("moto_server")
        cmd = [str(exe) if exe.exists() else "moto_server", "-H", "127.0.0.1",
               "-p", str(self.port)]
        log = open(self.root / "moto.log", "ab")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        wait_port(self.port, 30, self.proc)
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def reset(self) -> None:
        """Drop every bucket and object (moto's ``POST /moto-api/reset``)."""
        import urllib.request

        req = urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def client(self) -> Any:
        """A plain boto3 client on the upstream (for tests to look behind the gateway)."""
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            config=Config(s3={"addressing_style": "path"},
                                          retries={"max_attempts": 1}))

    def new_bucket(self) -> str:
        name = "bs-" + uuid.uuid4().hex[:20]
        self.client().create_bucket(Bucket=name)
        return name

    def aws_config(self, bucket: str, prefix: str = "") -> AwsStorageConfig:
        return AwsStorageConfig(bucket=bucket, region=REGION, prefix=prefix,
                                endpoint_url=self.endpoint, use_path_style=True,
                                access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)

    def new_store(self, prefix: str = "") -> AwsCloud:
        """An adapter on a fresh bucket (``prefix`` is for the caller's GatewayBackend)."""
        return AwsCloud(self.aws_config(self.new_bucket(), prefix))

    def server_storage_config(self) -> dict[str, Any]:
        """The ``storage`` section of a BleepStore config using a fresh bucket here."""
        cfg = self.aws_config(self.new_bucket())
        return {"backend": "aws", "aws": {
            "bucket": cfg.bucket, "region": cfg.region, "prefix": cfg.prefix,
            "endpoint_url": cfg.endpoint_url, "use_path_style": cfg.use_path_style,
            "access_key_id": cfg.access_key_id, "secret_access_key": cfg.secret_access_key}}
