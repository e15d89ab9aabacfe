"""One server per data directory (issue 9, item 5): a second start on the directories of a
running server — by gunicorn or ``bleepstore serve``, on the same port or another — exits
non-zero naming the holder's PID and the lock path, and touches nothing: the running
server's in-flight PUT still succeeds and its metrics files stay. The lock dies with the
last process of the server, so a restart after kill -9 works.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.clients import boto3_client
from support.server import REPO, Server
from support.signing import sigv4_headers

LOCK = ".bleepstore.lock"
BODY = os.urandom(1024 * 1024)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout}s")
        time.sleep(0.02)


def dirs_of(srv: Server) -> dict[str, Path]:
    """The four directories a server writes (they can be configured apart)."""
    return {"db": srv.data, "objects": srv.data / "objects", "spool": srv.data / "spool",
            "metrics": srv.data / "prometheus"}


def paths_config(dirs: dict[str, Path]) -> dict[str, Any]:
    return {"metadata": {"sqlite": {"path": str(dirs["db"] / "metadata.db")}},
            "storage": {"spool_dir": str(dirs["spool"]),
                        "local": {"root_dir": str(dirs["objects"])}},
            "observability": {"metrics_dir": str(dirs["metrics"])}}


def twin(root: Path, dirs: dict[str, Path], port: int | None = None) -> Server:
    """A second server (own root, config and log) writing into ``dirs``."""
    srv = Server(root, workers=1, threads=2, extra_config=paths_config(dirs))
    if port is not None:
        srv.port = port
    srv.write_config()
    return srv


def tree(data: Path) -> dict[str, tuple[int, int, int]]:
    """Every file and directory under ``data``: (inode, size, mtime_ns). The mtime of a
    metrics file is left out: the server's own mmap writes bump it at any time."""
    found = {}
    for path in sorted(data.rglob("*")):
        st = path.lstat()
        mmapped = path.parent.name == "prometheus" and path.suffix == ".db"
        found[str(path.relative_to(data))] = (st.st_ino, st.st_size,
                                              0 if mmapped else st.st_mtime_ns)
    return found


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def attempt_start(srv: Server, command: list[str], own_port: bool) -> tuple[int, str]:
    """Run a start to its end; with ``own_port``, fail (after killing it) once it serves."""
    out, err = srv.root / "attempt.out", srv.root / "attempt.err"
    env = {**os.environ, "BLEEPSTORE_CONFIG": str(srv.config_path)}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(command, cwd=srv.root, env=env, stdout=stdout, stderr=stderr,
                                start_new_session=True)
    deadline = time.monotonic() + 25
    try:
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the second start neither served nor exited"
            assert not (own_port and listening(srv.port)), "the second server started"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err.read_text(errors="replace")


def serve_command(srv: Server) -> list[str]:
    return [sys.executable, "-m", "bleepstore.cli", "serve", "--config", str(srv.config_path)]


def open_put(srv: Server, target: str, body: bytes) -> socket.socket:
    """A signed PUT whose head and first half of the body are sent."""
    hdrs = sigv4_headers("PUT", f"127.0.0.1:{srv.port}", target, body)
    hdrs["Content-Length"] = str(len(body))
    head = f"PUT {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    sock.sendall(head.encode() + b"\r\n" + body[: len(body) // 2])
    return sock


def finish_put(sock: socket.socket, body: bytes) -> bytes:
    """Send the second half; return the status line."""
    with sock:
        sock.sendall(body[len(body) // 2:])
        return sock.makefile("rb").readline()


def staged(srv: Server) -> list[Path]:
    tmp = srv.data / "objects" / ".tmp"
    return [p for p in tmp.iterdir() if p.is_file()] if tmp.is_dir() else []


def metrics_files(srv: Server) -> list[str]:
    return sorted(p.name for p in (srv.data / "prometheus").glob("*.db"))


def cli(srv: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BLEEPSTORE_CONFIG": str(srv.config_path)}
    return subprocess.run([sys.executable, "-m", "bleepstore.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=30)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Server]:
    # a staged file marks the in-flight PUT: no inline buffering of its first bytes
    srv = Server(tmp_path / "first", workers=1, threads=4,
                 extra_config={"storage": {"inline_max_bytes": 0}})
    srv.start()
    s3 = boto3_client(srv.endpoint)
    s3.create_bucket(Bucket="locked")
    s3.put_object(Bucket="locked", Key="before", Body=b"metrics need one request")
    wait_for("metrics files", lambda: bool(metrics_files(srv)))
    yield srv
    srv.kill9()


def test_second_server_on_the_same_dirs_touches_nothing(running: Server,
                                                        tmp_path: Path) -> None:
    sock = open_put(running, "/locked/in-flight", BODY)
    wait_for("the in-flight PUT staged", lambda: bool(staged(running)))
    before, metrics = tree(running.data), metrics_files(running)
    # the case: same directories, same (busy) port
    second = twin(tmp_path / "second", dirs_of(running), port=running.port)
    code, stderr = attempt_start(second, second.command(), own_port=False)
    assert code != 0
    assert f"pid {running.proc.pid}" in stderr and str(running.data / LOCK) in stderr, stderr
    assert tree(running.data) == before  # no sweep, no wipe, no migration
    assert finish_put(sock, BODY).startswith(b"HTTP/1.1 200"), running.log_text()[-3000:]
    s3 = boto3_client(running.endpoint)
    assert s3.get_object(Bucket="locked", Key="in-flight")["Body"].read() == BODY
    assert set(metrics) <= set(metrics_files(running))
    # the CLI neither takes nor needs the lock
    assert cli(running, "check-config").returncode == 0
    added = cli(running, "user", "add", "--access-key", "lockeduser")
    assert added.returncode == 0, added.stderr
    assert "lockeduser" in cli(running, "user", "list").stdout
    # kill -9 drops the lock with the processes: the second server now starts
    running.kill9()
    second.start()
    try:
        got = boto3_client(second.endpoint).get_object(Bucket="locked", Key="in-flight")
        assert got["Body"].read() == BODY
    finally:
        second.kill9()


@pytest.mark.parametrize("shared", ["db", "objects", "spool", "metrics"])
def test_every_written_directory_is_locked(running: Server, tmp_path: Path,
                                           shared: str) -> None:
    dirs = {name: tmp_path / "own" / name for name in ("db", "objects", "spool", "metrics")}
    dirs[shared] = dirs_of(running)[shared]
    before = tree(running.data)
    second = twin(tmp_path / "second", dirs)
    code, stderr = attempt_start(second, serve_command(second), own_port=True)
    assert code != 0
    assert f"pid {running.proc.pid}" in stderr and str(dirs[shared] / LOCK) in stderr, stderr
    assert tree(running.data) == before


def test_orphaned_workers_keep_the_lock_until_they_exit(running: Server,
                                                        tmp_path: Path) -> None:
    sock = open_put(running, "/locked/orphaned", BODY)
    wait_for("the in-flight PUT staged", lambda: bool(staged(running)))
    workers = running.worker_pids()
    assert running.proc is not None and workers
    master = running.proc.pid
    os.kill(master, signal.SIGKILL)  # the master alone; its workers drain
    running.proc.wait()
    running.proc = None
    try:
        second = twin(tmp_path / "second", dirs_of(running))
        code, stderr = attempt_start(second, second.command(), own_port=True)
        assert code != 0
        assert f"pid {master}" in stderr and str(running.data / LOCK) in stderr, stderr
        assert finish_put(sock, BODY).startswith(b"HTTP/1.1 200")
        wait_for("orphaned workers gone", lambda: not any(_alive(p) for p in workers), 35)
        second.start()
        try:
            got = boto3_client(second.endpoint).get_object(Bucket="locked", Key="orphaned")
            assert got["Body"].read() == BODY
        finally:
            second.kill9()
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
