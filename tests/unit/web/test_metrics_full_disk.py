"""prometheus_client's mmap files on a full disk: an OSError, never a SIGBUS (issue 9).

Runs in a child process on a real 1 MiB tmpfs (root, as in CI): without the allocating
files, the child dies of SIGBUS on its first metric."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.tmpfs import tmpfs

CHILD = r"""
import os, sys
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
from bleepstore.web.metrics import Metrics
with open(os.path.join(sys.argv[1], "filler"), "wb", buffering=0) as f:
    try:
        while True:
            f.write(b"x" * 4096)
    except OSError:
        pass
m = Metrics(lambda: {})
m.observe(method="PUT", path="/b/k", status=503, duration=0.1, bytes_in=1, bytes_out=2,
          operation="PutObject", error_code="SlowDown")
m.publish()  # the first write to the files (observe() alone may only sum in memory)
print("survived")
"""


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "tiny", "1m") as mount:
        yield mount


def test_metrics_on_a_full_disk_do_not_kill_the_process(tiny_disk: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tiny_disk)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "survived" in proc.stdout
