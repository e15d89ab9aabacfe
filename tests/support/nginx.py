"""A private nginx in front of a test server, built from the shipped deploy/nginx site
with only ports and paths adapted (services.md: nginx in front of gunicorn)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.server import REPO, free_port, stop_process, wait_port

SITE = REPO / "deploy" / "nginx" / "bleepstore.conf"


def adapt_site(upstream_port: int, listen_port: int) -> str:
    """The shipped site with its upstream and listen ports replaced, TLS example dropped."""
    text = SITE.read_text()
    text = text.split("# TLS example", 1)[0]
    text = text.replace("server 127.0.0.1:9010;", f"server 127.0.0.1:{upstream_port};")
    text, n = re.subn(r"listen 80( default_server)?;", rf"listen 127.0.0.1:{listen_port}\1;",
                      text)
    assert n == 1, "deploy/nginx/bleepstore.conf changed shape: update the test adapter"
    # IPv6 may be missing on a test machine: the loopback IPv4 listener is enough here.
    text, n = re.subn(r"\n *listen \[::\]:80 default_server;", "", text)
    assert n == 1, "deploy/nginx/bleepstore.conf changed shape: update the test adapter"
    return text


def nginx_conf(root: Path, site: str) -> str:
    """A whole nginx.conf: private pid, logs and temp dirs under ``root``, ``site`` in http."""
    return (f"worker_processes 2;\npid {root}/nginx.pid;\nerror_log stderr warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n  access_log off;\n"
            f"  client_body_temp_path {root}/tmp/body;\n  proxy_temp_path {root}/tmp/proxy;\n"
            f"  fastcgi_temp_path {root}/tmp/fcgi;\n  uwsgi_temp_path {root}/tmp/uwsgi;\n"
            f"  scgi_temp_path {root}/tmp/scgi;\n{site}\n}}\n")


@dataclass
class Nginx:
    root: Path
    upstream_port: int
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    site: str | None = None  # the http-level text; default: the shipped site, adapted

    def start(self) -> Nginx:
        for sub in ("logs", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        conf = self.root / "nginx.conf"
        site = self.site if self.site is not None else adapt_site(self.upstream_port,
                                                                  self.port)
        conf.write_text(nginx_conf(self.root, site))
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        log = open(self.root / "nginx.log", "ab")
        self.proc = subprocess.Popen([exe, "-p", str(self.root), "-c", str(conf), "-e", "stderr",
                                      "-g", "daemon off;"], stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port, 10, self.proc)
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def temp_files(self) -> list[Path]:
        return [p for p in (self.root / "tmp").rglob("*") if p.is_file()]


class ViaProxy:
    """A Server seen through a proxy: same data and logs, the proxy's endpoint."""

    def __init__(self, server: Any, proxy: Nginx) -> None:
        self._server = server
        self.proxy = proxy
        self.via = "nginx"

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)
