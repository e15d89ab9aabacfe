"""A real Azurite blob service (npm, pinned in tests/emulators/azurite) on a loopback port.

Started once per session (``start()``/``stop()``); every test gets a FRESH container from
``new_store()`` / ``server_storage_config()``, so tests never share state and can run in
parallel. Readiness is Azurite's own "listens" line (no polling loop); its output goes
to ``root/azurite.log``. ``node_modules`` is installed on first use (``npm ci``, under a
file lock) when the project's bootstrap has not done it yet.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import threading
import uuid
from pathlib import Path
from typing import IO, Any

from bleepstore.config import AzureStorageConfig
from bleepstore.storage.azure import AzureCloud
from support.server import free_port, stop_process

EMULATOR_DIR = Path(__file__).resolve().parents[1] / "emulators" / "azurite"
MAIN_JS = EMULATOR_DIR / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
ACCOUNT = "devstoreaccount1"
# The well-known development account key (public, documented by Microsoft).
ACCOUNT_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr"
               "/KBHBeksoGMGw==")
READY_TIMEOUT_S = 30.0


def connection_string(port: int) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};")


def install_azurite() -> None:
    """``npm ci`` from the pinned lock file, once, even with parallel test processes."""
    if MAIN_JS.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to install Azurite (tests/emulators/azurite)")
    with open(EMULATOR_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not MAIN_JS.exists():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=EMULATOR_DIR, check=True)


class Azurite:
    """One Azurite process; containers are the unit of isolation."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        self._ready = threading.Event()
        self._pump: threading.Thread | None = None

    @property
    def connection_string(self) -> str:
        return connection_string(self.port)

    def start(self) -> Azurite:
        install_azurite()
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is needed to run Azurite")
        for _ in range(3):  # a free port can be taken by someone else before we bind it
            self.port = free_port()
            if self._launch(node):
                self.env = {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}
                return self
        raise RuntimeError(f"Azurite did not start; see {self.root / 'azurite.log'}")

    def _launch(self, node: str) -> bool:
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        self._ready.clear()
        self.proc = subprocess.Popen(
            [node, str(MAIN_JS), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
             "--location", str(data), "--silent", "--disableTelemetry",
             "--skipApiVersionCheck", "--loose"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        log = open(self.root / "azurite.log", "ab")  # noqa: SIM115  closed by the pump
        self._pump = threading.Thread(target=self._copy_output, args=(self.proc.stdout, log),
                                      name="azurite-log", daemon=True)
        self._pump.start()
        self._ready.wait(READY_TIMEOUT_S)
        if self.proc.poll() is None and self._ready.is_set():
            return True
        self.stop()
        return False

    def _copy_output(self, out: IO[bytes], log: IO[bytes]) -> None:
        """Drain Azurite's output into the log (a full pipe would block it); the
        "listens" line, or the end of the output, releases ``start()``."""
        with log:
            for line in out:
                log.write(line)
                log.flush()
                if b"successfully listens" in line:
                    self._ready.set()
        self._ready.set()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        stop_process(proc)
        if self._pump is not None:
            self._pump.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()

    def new_container(self) -> str:
        """Create and return a fresh container name."""
        from azure.storage.blob import BlobServiceClient

        name = "t" + uuid.uuid4().hex[:24]
        service = BlobServiceClient.from_connection_string(self.connection_string)
        with service:
            service.create_container(name)
        return name

    def store_config(self, container: str, prefix: str = "") -> AzureStorageConfig:
        return AzureStorageConfig(container=container, prefix=prefix,
                                  connection_string=self.connection_string)

    def new_store(self, prefix: str = "", **options: Any) -> AzureCloud:
        """An adapter on a FRESH container; ``options`` go to ``AzureCloud`` (e.g. a small
        ``block_limit``)."""
        return AzureCloud(self.store_config(self.new_container(), prefix), **options)

    def server_storage_config(self) -> dict[str, Any]:
        """The ``storage:`` section of a BleepStore config on a FRESH container."""
        return {"backend": "azure",
                "azure": {"container": self.new_container(), "prefix": "",
                          "connection_string": self.connection_string}}
