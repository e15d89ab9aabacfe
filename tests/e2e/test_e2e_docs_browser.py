"""/docs in a real headless Chromium: Swagger UI renders BleepStore's OpenAPI document
from local assets and lists every operation the router knows."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bleepstore.s3.router import Op

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=20000"]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed: tests/bootstrap.sh installs it")
    return subprocess.run([exe, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


def test_docs_render_every_operation(server: Any, tmp_path: Path) -> None:
    if getattr(server, "via", None) == "nginx":
        pytest.skip("the browser check runs once, against the direct server")
    url = f"{server.endpoint}/docs"
    dom = chromium(tmp_path, "--dump-dom", url).stdout
    assert "swagger-ui" in dom
    assert "Unable to render this definition" not in dom
    missing = [op.value for op in Op if f">{op.value}<" not in dom]
    assert missing == []
    shot = tmp_path / "docs.png"
    chromium(tmp_path, "--window-size=1280,1600", f"--screenshot={shot}", url)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
