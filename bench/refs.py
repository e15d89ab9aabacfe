"""Reference points measured on the same machine in the same run: the disk (dd, a plain
Python write+fsync), nginx serving static files (sendfile), and moto_server as a peer S3
server. Every process runs in the foreground under Popen, on 127.0.0.1, and is stopped."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import MB, MiB, first_200

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.server import free_port  # noqa: E402

# ---------------------------------------------------------------- disk


def python_write_fsync(path: Path, size: int) -> float:
    """Write ``size`` bytes in 1 MiB blocks (distinct: block index stamped in), fsync,
    close; MB/s over the whole thing. The file is left behind (it is the source file)."""
    block = bytearray(os.urandom(MiB))
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for i in range(size // MiB):
            block[:8] = i.to_bytes(8, "big")
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
    return size / (time.perf_counter() - t0) / MB


def dd_fsync(path: Path, size_mib: int) -> float:
    """``dd if=/dev/zero of=path bs=1M count=N conv=fsync``; MB/s from dd's own count."""
    out = subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={size_mib}",
                          "conv=fsync"], capture_output=True, text=True, timeout=600)
    path.unlink(missing_ok=True)
    m = re.search(r"(\d+) bytes .* copied, ([\d.]+) s", out.stderr)
    if not m:
        raise RuntimeError(f"dd failed: {out.stderr}")
    return int(m.group(1)) / float(m.group(2)) / MB


# ---------------------------------------------------------------- nginx

@dataclass
class StaticNginx:
    """nginx serving ``root/www`` statically with sendfile, from a private prefix dir."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    start_s: float | None = None

    @property
    def www(self) -> Path:
        return self.root / "www"

    def start(self) -> StaticNginx:
        for sub in ("logs", "tmp", "www"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        conf = self.root / "nginx.conf"
        r = self.root
        conf.write_text(f"""{"user root;" if os.geteuid() == 0 else ""}
worker_processes 2;
pid {r}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path {r}/tmp/body;
  proxy_temp_path {r}/tmp/proxy;
  fastcgi_temp_path {r}/tmp/fcgi;
  uwsgi_temp_path {r}/tmp/uwsgi;
  scgi_temp_path {r}/tmp/scgi;
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{self.port};
    root {self.www};
    location / {{ }}
  }}
}}
""")
        (self.www / "healthz").write_text("ok\n")
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        log = open(self.root / "nginx.log", "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen([exe, "-p", str(r), "-c", str(conf), "-e", "stderr",
                                      "-g", "daemon off;"], stdout=log, stderr=subprocess.STDOUT)
        self.start_s = first_200(self.port, "/healthz", t0, self.proc, timeout=10)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


# ---------------------------------------------------------------- moto

@dataclass
class Moto:
    """``moto_server -H 127.0.0.1 -p P`` (auth off by default: any signature passes)."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    start_s: float | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Moto:
        self.root.mkdir(parents=True, exist_ok=True)
        exe = shutil.which("moto_server") or "moto_server"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                   AWS_DEFAULT_REGION="us-east-1")
        log = open(self.root / "moto.log", "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(self.port)], env=env,
                                     cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        # moto has no health endpoint: "/" is ListBuckets and answers 200.
        self.start_s = first_200(self.port, "/", t0, self.proc, timeout=60)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def rss(self) -> int | None:
        from benchlib import rss_bytes
        return rss_bytes(self.proc.pid) if self.proc else None


def _stop(proc: subprocess.Popen[Any] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- s3rver

S3RVER_VERSION = "3.7.1"


def ensure_s3rver(prefix: Path) -> Path:
    """``npm install s3rver@3.7.1`` into ``prefix`` (once); the path of its CLI."""
    exe = prefix / "node_modules" / ".bin" / "s3rver"
    if not exe.exists():
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix),
                        f"s3rver@{S3RVER_VERSION}"], check=True, capture_output=True,
                       timeout=600)
    return exe


@dataclass
class S3rver:
    """s3rver (Node, files on disk, no fsync) with bucket ``bench`` configured at start;
    it checks SigV4 with the fixed key pair S3RVER / S3RVER."""

    root: Path
    exe: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    start_s: float | None = None
    access_key: str = "S3RVER"
    secret_key: str = "S3RVER"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3rver:
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        # NOTE: s3rver 3.7 hashes with MD4-era OpenSSL calls Node 20 gates behind this.
        env = {**os.environ, "NODE_OPTIONS": "--openssl-legacy-provider"}
        log = open(self.root / "s3rver.log", "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [str(self.exe), "-d", str(data), "-a", "127.0.0.1", "-p", str(self.port), "-s",
             "--no-vhost-buckets", "--configure-bucket", "bench"],
            env=env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.start_s = first_200(self.port, "/", t0, self.proc, timeout=30)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None
