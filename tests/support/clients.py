"""Real S3 clients pointed at a test server: boto3, the aws CLI, s3cmd."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from support.server import ACCESS_KEY, SECRET_KEY


def boto3_client(endpoint: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY,
                 **config: Any) -> Any:
    cfg = Config(s3={"addressing_style": config.pop("addressing_style", "path")},
                 retries={"max_attempts": config.pop("max_attempts", 1)},
                 signature_version="s3v4", **config)
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key, region_name="us-east-1", config=cfg)


def boto3_resource(endpoint: str, access_key: str = ACCESS_KEY,
                   secret_key: str = SECRET_KEY) -> Any:
    return boto3.resource("s3", endpoint_url=endpoint, aws_access_key_id=access_key,
                          aws_secret_access_key=secret_key, region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))


class AwsCli:
    """Runs the real ``aws`` command with a private config (never ~/.aws)."""

    def __init__(self, endpoint: str, home: Path, access_key: str = ACCESS_KEY,
                 secret_key: str = SECRET_KEY, **s3_settings: str) -> None:
        self.endpoint = endpoint
        home.mkdir(parents=True, exist_ok=True)
        s3 = {"addressing_style": "path", **s3_settings}
        (home / "config").write_text("[default]\nregion = us-east-1\ns3 =\n" + "".join(
            f"  {name} = {value}\n" for name, value in s3.items()))
        (home / "credentials").write_text(f"[default]\naws_access_key_id = {access_key}\n"
                                          f"aws_secret_access_key = {secret_key}\n")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.env.update(AWS_CONFIG_FILE=str(home / "config"),
                        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
                        AWS_EC2_METADATA_DISABLED="true")

    def __call__(self, *args: str, check: bool = True, timeout: float = 600,
                 cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
        exe = shutil.which("aws") or "aws"
        proc = subprocess.run([exe, "--endpoint-url", self.endpoint, *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, cwd=cwd)
        if check and proc.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc


class S3Cmd:
    """Runs the real ``s3cmd`` with a private config file."""

    def __init__(self, endpoint: str, home: Path, access_key: str = ACCESS_KEY,
                 secret_key: str = SECRET_KEY) -> None:
        host = endpoint.split("://", 1)[1]
        home.mkdir(parents=True, exist_ok=True)
        self.config = home / "s3cfg"
        self.config.write_text(
            f"[default]\naccess_key = {access_key}\nsecret_key = {secret_key}\n"
            f"host_base = {host}\nhost_bucket = {host}\nuse_https = False\n"
            "signature_v2 = False\nbucket_location = us-east-1\ncheck_ssl_certificate = False\n")

    def __call__(self, *args: str, check: bool = True,
                 timeout: float = 600) -> subprocess.CompletedProcess[str]:
        exe = shutil.which("s3cmd") or "s3cmd"
        proc = subprocess.run([exe, "-c", str(self.config), *args], capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"s3cmd {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc
