"""The cross-process write lock (metadata/write_lock.py): exclusive across processes, and
released by the kernel when its holder is SIGKILLed."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bleepstore.metadata.write_lock import WriteLock

HOLDER = """
import sys, time
from pathlib import Path
from bleepstore.metadata.write_lock import WriteLock
with WriteLock(Path(sys.argv[1])).held():
    print("held", flush=True)
    time.sleep(60)
"""


def try_lock(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_sigkilled_holder_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "m.db.write-lock"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"held\n"
        assert not try_lock(path)  # exclusive across processes
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        started = time.monotonic()
        with WriteLock(path).held():  # granted at once, no timeout involved
            assert time.monotonic() - started < 1
    finally:
        proc.kill()
        proc.wait()


def test_the_lock_is_released_on_an_exception_and_reusable(tmp_path: Path) -> None:
    lock = WriteLock(tmp_path / "l")
    try:
        with lock.held():
            raise KeyError("x")
    except KeyError:
        pass
    assert try_lock(tmp_path / "l")
    with lock.held():
        assert not try_lock(tmp_path / "l")


def test_no_lock_file_possible_still_writes(tmp_path: Path) -> None:
    lock = WriteLock(tmp_path / "missing-dir" / "l")  # cannot be created: no lock, no error
    with lock.held():
        pass
