"""The backend contract: one suite, every backend (local disk and each gateway on its real
emulator). Emulators start once per session (tests/conftest.py); each test gets a fresh
bucket/container, so tests stay parallel-safe."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from support.gateways import GATEWAYS

from bleepstore.storage.gateway import ComposeGateway, NativeGateway
from bleepstore.storage.local import LocalBackend

BACKENDS = ["local", *GATEWAYS]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "local":
        local = LocalBackend(tmp_path / "root")
        local.recover(lambda _uid: True)
        return local
    emulator = request.getfixturevalue(f"{request.param}_emulator")
    prefix = f"t{uuid.uuid4().hex[:8]}/"
    kind = ComposeGateway if request.param == "gcs" else NativeGateway
    return kind(emulator.new_store(prefix), prefix, str(tmp_path / "spool"))
