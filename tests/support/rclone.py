"""The real ``rclone`` (1.60, Debian) with a private config pointing at a test server.

rclone refuses to run with ``AWS_CA_BUNDLE`` set (services.md), so it is removed from the
child's environment; the remote is ``provider = Other`` with path-style addressing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from support.server import ACCESS_KEY, SECRET_KEY


class Rclone:
    """``rclone --config <private> ...``; the remote is called ``bs``."""

    def __init__(self, endpoint: str, home: Path, access_key: str = ACCESS_KEY,
                 secret_key: str = SECRET_KEY) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.config = home / "rclone.conf"
        self.config.write_text(
            f"[bs]\ntype = s3\nprovider = Other\naccess_key_id = {access_key}\n"
            f"secret_access_key = {secret_key}\nendpoint = {endpoint}\n"
            "region = us-east-1\nforce_path_style = true\n")
        self.env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        self.env["RCLONE_CONFIG"] = str(self.config)

    def __call__(self, *args: str, check: bool = True,
                 timeout: float = 300) -> subprocess.CompletedProcess[str]:
        exe = shutil.which("rclone") or "rclone"
        proc = subprocess.run([exe, "--config", str(self.config), *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"rclone {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc
