"""A private gcp-storage-emulator (services.md: GCS) for the GCS gateway's tests.

One process per test session, in the foreground under ``Popen`` (readiness judged by its
port), in memory (``--in-memory``; ``-d`` points at a private directory anyway, so nothing
can ever land in the working directory). Every test gets a FRESH bucket with a unique name,
so tests never see each other's objects and the fixture is safe under ``pytest -n``
(each xdist worker has its own session, hence its own emulator on its own port).

What the emulator does not do (tests must not rely on it): it ignores ``maxResults``
(one page holds everything), generation preconditions (``ifGenerationMatch``), the
32-source limit of compose, and never throttles (429) or fails (5xx). It serves one request
at a time (``http.server.HTTPServer``, HTTP/1.0).

NOTE: the emulator re-serialises its whole metadata table (pure-Python ``json.dumps`` with
``indent``) after EVERY write, even in memory mode where nothing ever reads it back (the
table is read once, at start, from an empty store): a write costs ~50 us per object held,
so 1,100 part uploads took a minute and 10,000 would take hours. ``LAUNCHER`` starts the
emulator's own ``main()`` with that one persistence step skipped in memory mode, which
changes no answer the emulator gives (``fast=False`` runs the stock command instead).
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bleepstore.config import GcpStorageConfig
from bleepstore.storage.gcs import GcsCloud
from support.server import free_port, stop_process, wait_port

PROJECT = "bleepstore-test"
LAUNCHER = """
import sys
from gcp_storage_emulator.__main__ import main
from gcp_storage_emulator.storage import Storage

stock = Storage._write_config_to_file

def write_config(self):
    if not self._use_memory_fs:
        stock(self)

Storage._write_config_to_file = write_config
main(sys.argv[1:])
"""


class GcsEmulator:
    """``start()`` / ``stop()`` one emulator; ``new_store()`` hands out fresh buckets."""

    def __init__(self, root: Path, fast: bool = True) -> None:
        self.root = root
        self.fast = fast
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env: dict[str, str] = {"STORAGE_EMULATOR_HOST": self.endpoint}
        self.proc: subprocess.Popen[bytes] | None = None
        self._admin: Any = None

    def start(self) -> GcsEmulator:
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "emulator.log", "ab")
        try:
            run = ["-c", LAUNCHER] if self.fast else ["-m", "gcp_storage_emulator"]
            self.proc = subprocess.Popen(
                [sys.executable, *run, "-d", str(data), "start", "--host", "127.0.0.1",
                 "--port", str(self.port), "--in-memory", "--quiet"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        finally:
            log.close()
        wait_port(self.port, 20, self.proc)
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def reset(self) -> None:
        """Drop every bucket and object (the emulator's own ``/wipe``)."""
        with urllib.request.urlopen(self.endpoint + "/wipe", timeout=30) as resp:
            resp.read()

    def new_bucket(self) -> str:
        """Create a bucket with a unique name and return the name."""
        name = "bs-" + uuid.uuid4().hex[:20]
        self._client().create_bucket(name)
        return name

    def new_store(self, prefix: str = "", **options: Any) -> GcsCloud:
        """A ``GcsCloud`` on a fresh bucket; ``options`` go to ``GcsCloud`` as they are."""
        cfg = GcpStorageConfig(bucket=self.new_bucket(), project=PROJECT, prefix=prefix)
        return GcsCloud(cfg, endpoint=self.endpoint, **options)

    def server_storage_config(self) -> dict[str, Any]:
        """``storage:`` settings for a BleepStore server on a fresh bucket; the server also
        needs ``env`` in its environment (the emulator is reached via STORAGE_EMULATOR_HOST)."""
        return {"backend": "gcp",
                "gcp": {"bucket": self.new_bucket(), "project": PROJECT, "prefix": "bs/"}}

    def _client(self) -> Any:
        """The fixture's own client (bucket creation), built once."""
        if self._admin is None:
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import storage

            anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
            self._admin = storage.Client(project=PROJECT, credentials=anonymous,
                                         client_options={"api_endpoint": self.endpoint})
        return self._admin
