"""A real ``redis-server`` on a loopback port for tests (services.md): in the foreground under
``Popen``, with a private directory and log, no persistence, always reaped.

``restart()`` comes back on the same port (a publisher's URL stays valid); the data is gone
(``--save "" --appendonly no``). ``pause()`` / ``resume()`` SIGSTOP / SIGCONT the server: the
kernel still accepts connections but nothing answers, which is how a hung broker looks.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import redis

from support.rabbitmq_broker import fixed_port
from support.server import stop_process, wait_port


class RedisBroker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = fixed_port()  # below the ephemeral range: see rabbitmq_broker.py
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.root / "redis.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> RedisBroker:
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        cmd = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(data),
               "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=self.root, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            wait_port(self.port, 20, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None and self.paused:
            self.resume()  # a stopped process would hold SIGTERM until SIGKILL
        stop_process(self.proc)
        self.proc = None

    def restart(self) -> RedisBroker:
        self.stop()
        return self.start()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def client(self) -> redis.Redis:
        """A plain client for assertions (str replies)."""
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=5,
                                    socket_connect_timeout=5)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
