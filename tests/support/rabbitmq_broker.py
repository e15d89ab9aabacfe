"""A private RabbitMQ 3.10 on loopback ports, in the foreground under ``Popen`` (services.md,
"RabbitMQ, private instance").

The ``/usr/sbin`` wrappers switch to the ``rabbitmq`` user and fail as root, so the real
``rabbitmq-server`` script is run with its own HOME, config, Mnesia and log directories, node
name, AMQP / distribution ports and its own ``epmd`` (started first, killed by PID at
``stop()``). ``restart()`` keeps the ports and the Mnesia directory, so durable exchanges,
queues and persistent messages survive it. Start one per module: it takes seconds.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from support.server import free_port, stop_process, wait_port

RABBITMQ_SERVER = "/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server"


def _server_script() -> str:
    found = sorted(glob.glob(RABBITMQ_SERVER))
    if not found:
        raise RuntimeError(f"rabbitmq-server not found ({RABBITMQ_SERVER})")
    return found[-1]


def fixed_port() -> int:
    """A free port below the kernel's ephemeral range (so no client socket takes it)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random.randrange(10000, max(low, 10001))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


class RabbitBroker:
    """``RabbitBroker(root).start()``; ``url`` is ``amqp://guest:guest@127.0.0.1:P/%2F``."""

    def __init__(self, root: Path, name: str = "bleeptest") -> None:
        self.root = root
        # NOTE: below the ephemeral range: while the broker is stopped, an outgoing
        # connection of the test's own clients may take a free ephemeral port as its source
        # port, and Erlang's listener (no SO_REUSEADDR) then cannot bind it again.
        self.port, self.dist_port, self.epmd_port = (fixed_port() for _ in range(3))
        self.nodename = f"{name}{self.port}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None
        self.epmd: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None  # wall time of the last start(), for reports
        self.paused = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def log_path(self) -> Path:
        return self.root / "rabbitmq.out"

    def _write_files(self) -> dict[str, str]:
        home, mnesia, logs = self.root / "home", self.root / "mnesia", self.root / "log"
        for d in (home, mnesia, logs):
            d.mkdir(parents=True, exist_ok=True)
        conf_env = self.root / "rabbitmq-env.conf"
        conf_env.write_text("")
        config = self.root / "rabbitmq.conf"
        config.write_text(f"loopback_users = none\nlisteners.tcp.default = 127.0.0.1:{self.port}\n")
        plugins = self.root / "enabled_plugins"
        plugins.write_text("[].\n")
        return {
            "HOME": str(home),
            "RABBITMQ_CONF_ENV_FILE": str(conf_env),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(mnesia),
            "RABBITMQ_LOG_BASE": str(logs),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self, timeout: float = 60.0) -> RabbitBroker:
        if self.proc is not None:
            return self
        t0 = time.monotonic()
        env = {**os.environ, **self._write_files()}
        log = open(self.log_path, "ab")
        try:
            if self.epmd is None or self.epmd.poll() is not None:
                self.epmd = subprocess.Popen(
                    ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                    cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT)
                wait_port(self.epmd_port, 10, self.epmd)
            # Its own session: the script runs erl (beam.smp + helpers) as a child;
            # pause()/resume() and a last-resort kill address the whole group.
            self.proc = subprocess.Popen([_server_script()], cwd=self.root, env=env,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            log.close()
        try:
            wait_port(self.port, timeout, self.proc)
        except Exception:
            tail = self.log_tail()
            self.stop()
            if "eaddrinuse" in tail and not getattr(self, "_retried", False):
                # NOTE: the port's previous holder had not let go yet: once more, later
                self._retried = True
                time.sleep(2)
                try:
                    return self.start(timeout)
                finally:
                    self._retried = False
            raise RuntimeError(f"rabbitmq did not start; tail:\n{tail}") from None
        self.startup_s = time.monotonic() - t0
        return self

    def _stop_broker(self) -> None:
        proc, self.proc, self.paused = self.proc, None, False
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)  # in case a test left it paused
        stop_process(proc, timeout=20)
        # The script's erl child normally dies with it; never leave a broker behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Broker, then epmd; both reaped, the AMQP port closed (a start right after must
        not meet its own predecessor: eaddrinuse in CI). Safe to call twice."""
        self._stop_broker()
        self._wait_closed()
        stop_process(self.epmd)
        self.epmd = None

    def restart(self, timeout: float = 60.0) -> RabbitBroker:
        """Same ports, same node name, same Mnesia directory (durable state survives)."""
        self._stop_broker()
        self._wait_closed()
        return self.start(timeout)

    def stop_broker_only(self) -> None:
        """The broker goes away (connections see it close); epmd stays for a restart."""
        self._stop_broker()
        self._wait_closed()

    def pause(self) -> None:
        """SIGSTOP the broker: TCP stays up but nothing answers (a hung / partitioned broker)."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def _wait_closed(self, timeout: float = 20.0) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except OSError:
                return
            time.sleep(0.05)
        raise TimeoutError(f"rabbitmq port {self.port} still open after {timeout}s")

    @contextlib.contextmanager
    def channel(self) -> Iterator[Any]:
        """A fresh pika BlockingChannel on its own connection, for assertions."""
        import pika

        params = pika.URLParameters(self.url)
        params.socket_timeout = 5
        params.stack_timeout = 10
        params.blocked_connection_timeout = 10
        conn = pika.BlockingConnection(params)
        try:
            yield conn.channel()
        finally:
            if conn.is_open:
                with contextlib.suppress(Exception):
                    conn.close()

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for p in [self.log_path, *sorted((self.root / "log").glob("*.log"))]:
            if p.exists():
                parts.append(f"== {p.name}\n" + "\n".join(
                    p.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(parts)
