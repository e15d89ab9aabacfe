"""A gateway whose bucket/container does not exist refuses to start, naming the setting to
fix (issue 10 item 5), and one that starts reports its backend in /health."""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.server import Server

SECTION = {"aws": ("aws", "bucket"), "gcs": ("gcp", "bucket"), "azure": ("azure", "container")}


@pytest.mark.parametrize("cloud", sorted(SECTION))
def test_a_missing_bucket_fails_the_start_with_the_key_named(
        request: pytest.FixtureRequest, tmp_path: Path, cloud: str) -> None:
    emulator = request.getfixturevalue(f"{cloud}_emulator")
    storage: dict[str, Any] = emulator.server_storage_config()
    section, key = SECTION[cloud]
    storage[section] = {**storage[section], key: "no-such-bucket-" + uuid.uuid4().hex[:8]}
    srv = Server(tmp_path / "srv", workers=1, env=dict(emulator.env),
                 extra_config={"storage": storage})
    with pytest.raises(RuntimeError, match="server exited"):
        srv.start(timeout=60)
    log = srv.log_text()
    assert f"storage.{section}.{key}" in log, log[-2000:]
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.parametrize("cloud", sorted(SECTION))
def test_health_reports_the_gateway(request: pytest.FixtureRequest, tmp_path: Path,
                                    cloud: str) -> None:
    emulator = request.getfixturevalue(f"{cloud}_emulator")
    srv = Server(tmp_path / "srv", workers=1, env=dict(emulator.env),
                 extra_config={"storage": emulator.server_storage_config()})
    srv.start(timeout=60)
    try:
        with urllib.request.urlopen(f"{srv.endpoint}/health", timeout=30) as resp:
            health = json.loads(resp.read())
        storage = health["checks"]["storage"]
        assert (storage["status"], storage["backend"]) == ("ok", SECTION[cloud][0]), health
        assert isinstance(storage["latency_ms"], int)
    finally:
        srv.stop()
