"""Start and stop a real BleepStore (gunicorn) on a loopback port for tests.

Used by session-scoped fixtures: one server per session, state reset between tests.
``kill9()`` / ``start()`` make crash tests possible against the same data directory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ACCESS_KEY = "bleepstore"
SECRET_KEY = "bleepstore-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; always reaped."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} not ready after {timeout}s")


def wait_port_closed(port: int, timeout: float = 20.0) -> None:
    """Until nothing listens on ``port``: SIGKILLed workers may keep the listening socket
    (which still completes TCP handshakes) open for a moment after the master is reaped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except OSError:
            return
        time.sleep(0.02)
    raise TimeoutError(f"port {port} still open after {timeout}s")


@dataclass
class Server:
    """A gunicorn running ``wsgi:app`` from the repository, the production way."""

    root: Path
    port: int = field(default_factory=free_port)
    workers: int = 2
    threads: int = 8
    extra_config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def backend(self) -> str:
        return str(self.extra_config.get("storage", {}).get("backend", "local"))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def db_path(self) -> Path:
        return self.data / "metadata.db"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    @property
    def config_path(self) -> Path:
        return self.root / "bleepstore.yaml"

    def write_config(self) -> None:
        cfg: dict[str, Any] = {
            "server": {"host": "127.0.0.1", "port": self.port, "workers": self.workers,
                       "threads": self.threads},
            "metadata": {"sqlite": {"path": str(self.db_path)}},
            "storage": {"spool_dir": str(self.data / "spool"),
                        "local": {"root_dir": str(self.data / "objects")}},
            "observability": {"metrics_dir": str(self.data / "prometheus")},
            "logging": {"level": "info", "format": "json"},
        }
        for section, values in self.extra_config.items():
            cfg.setdefault(section, {}).update(values)
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(cfg))

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py"),
                "--pythonpath", str(REPO), "wsgi:app"]

    def start(self, timeout: float = 30.0) -> Server:
        self.write_config()
        env = {**os.environ, "BLEEPSTORE_CONFIG": str(self.config_path), **self.env}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), cwd=self.root, env=env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(self.port, timeout, self.proc)
        return self

    def kill9(self) -> None:
        """SIGKILL the master and every worker (the whole process group)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc = None
        wait_port_closed(self.port)

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            self.kill9()
        self.proc = None

    def worker_pids(self) -> list[int]:
        if self.proc is None:
            return []
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
