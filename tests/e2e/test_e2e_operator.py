"""What an operator meets first (issue 16 part 2): the installed package serves from any
directory, the CLI finds (and never silently creates) the store, the default secret is
never served beyond loopback, a terminal gets a banner, and Ctrl-C twice ends quietly.

Every test starts its own real gunicorn from an empty temporary working directory."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from support.clients import boto3_client
from support.server import REPO, free_port

pytestmark = pytest.mark.e2e

INSTALLED_FORM = ["-c", "python:bleepstore.gunicorn_conf", "bleepstore.wsgi:app"]


def exe(name: str) -> str:
    """The console script installed next to this interpreter (what a venv user runs)."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    assert found, f"{name} is not installed"
    return found


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BLEEPSTORE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    return {**env, **extra}


def wait_healthz(port: int, proc: subprocess.Popen[Any], log: Path, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"no /healthz after {timeout}s: {log.read_text()[-3000:]}")


def signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    """As a terminal does: to the whole process group (master, workers, sidecar)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


@contextmanager
def started(argv: list[str], cwd: Path, env: dict[str, str], port: int,
            log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthz(port, proc, log)
        yield proc
    finally:
        if proc.poll() is None:
            signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                signal_group(proc, signal.SIGKILL)
                proc.wait()


def log_lines(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([exe("bleepstore"), *args], cwd=cwd, env=clean_env(**env),
                          capture_output=True, text=True, timeout=60)


def test_the_installed_package_serves_from_any_directory(tmp_path: Path) -> None:
    cwd, store, other = tmp_path / "cwd", tmp_path / "store", tmp_path / "other"
    cwd.mkdir()
    other.mkdir()
    port, log = free_port(), tmp_path / "server.log"
    env = clean_env(BLEEPSTORE_PORT=str(port), BLEEPSTORE_WORKERS="1",
                    BLEEPSTORE_DATA_DIR=str(store))
    with started([exe("gunicorn"), *INSTALLED_FORM], cwd, env, port, log):
        s3 = boto3_client(f"http://127.0.0.1:{port}")
        s3.create_bucket(Bucket="anywhere")
        s3.put_object(Bucket="anywhere", Key="k", Body=b"served from any directory")
        got = s3.get_object(Bucket="anywhere", Key="k")["Body"].read()
        assert got == b"served from any directory"
    assert list(cwd.iterdir()) == []  # nothing in the working directory
    assert (store / "metadata.db").is_file() and (store / "objects").is_dir()
    start = [r for r in log_lines(log) if r.get("logger") == "bleepstore.serve"]
    assert len(start) == 1, log.read_text()[-3000:]
    assert start[0]["config"] == "(built-in defaults)"
    assert {"BLEEPSTORE_DATA_DIR", "BLEEPSTORE_PORT"} <= set(start[0]["env_overrides"])
    assert start[0]["data_paths"]["metadata.sqlite.path"] == str(store / "metadata.db")
    assert start[0]["data_paths"]["storage.local.root_dir"] == str(store / "objects")
    assert "is ready" not in log.read_text()  # stderr is no terminal: JSON lines only

    # the user CLI from another directory: refuses rather than creating ./data ...
    refused = cli(other, "user", "list")
    assert refused.returncode == 2
    assert f"no BleepStore data at {other / 'data' / 'metadata.db'}" in refused.stderr
    assert "--config/--data-dir" in refused.stderr and list(other.iterdir()) == []
    # ... and finds the server's store when told where it is
    for args, env_extra in ((["user", "list", "--data-dir", str(store)], {}),
                            (["user", "list"], {"BLEEPSTORE_DATA_DIR": str(store)})):
        found = cli(other, *args, **env_extra)
        assert found.returncode == 0, found.stderr
        assert found.stdout.startswith("bleepstore\t")  # the bootstrap user
    assert list(other.iterdir()) == []


@pytest.mark.parametrize("form", ["installed", "checkout", "serve"])
def test_the_default_secret_is_not_served_beyond_loopback(tmp_path: Path, form: str) -> None:
    store = tmp_path / "store"
    argv = {"installed": [exe("gunicorn"), *INSTALLED_FORM],
            "checkout": [exe("gunicorn"), "-c", str(REPO / "gunicorn.conf.py"),
                         "--pythonpath", str(REPO), "wsgi:app"],
            "serve": [exe("bleepstore"), "serve"]}[form]
    env = clean_env(BLEEPSTORE_HOST="0.0.0.0", BLEEPSTORE_PORT=str(free_port()),
                    BLEEPSTORE_DATA_DIR=str(store))
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "auth.secret_key" in proc.stderr and "BLEEPSTORE_AUTH__SECRET_KEY" in proc.stderr
    assert "auth.allow_default_credentials: true" in proc.stderr
    assert "Traceback" not in proc.stderr and not store.exists()


def slow_uploads(port: int, count: int) -> list[socket.socket]:
    """Signed PUTs that announced 100 MB and sent 64 KiB: each holds a worker thread."""
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3_client(endpoint)
    s3.create_bucket(Bucket="ctrl-c")
    socks = []
    for i in range(count):
        url = s3.generate_presigned_url("put_object", Params={"Bucket": "ctrl-c", "Key": f"{i}"})
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(f"PUT {url[len(endpoint):]} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     "Content-Length: 100000000\r\n\r\n".encode() + b"x" * 65536)
        socks.append(sock)
    return socks


def test_a_second_ctrl_c_ends_serve_without_a_traceback(tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "server.log"
    argv = [exe("bleepstore"), "serve", "--data-dir", str(tmp_path / "store"),
            "--port", str(port), "--workers", "2"]
    with started(argv, tmp_path, clean_env(), port, log) as proc:
        socks = slow_uploads(port, 4)
        try:
            time.sleep(0.5)  # the uploads are in their threads
            signal_group(proc, signal.SIGINT)
            time.sleep(0.3)  # the workers are exiting, the master stopping
            signal_group(proc, signal.SIGINT)
            began = time.monotonic()
            code = proc.wait(timeout=60)
            took = time.monotonic() - began
        finally:
            for sock in socks:
                sock.close()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "race condition" not in text, text[-4000:]
    assert code == 0, text[-3000:]
    # stalled clients do not hold Ctrl-C until graceful_timeout_s (30 s) and SIGKILL
    assert took < 15, text[-3000:]
    assert "was sent SIGKILL" not in text


def read_pty(fd: int, until: list[str], timeout: float) -> str:
    seen, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(u in seen.decode(errors="replace") for u in until):
            break
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: every writer is gone
                break
            if not chunk:
                break
            seen += chunk
    return seen.decode(errors="replace")


def test_a_terminal_gets_a_banner(tmp_path: Path) -> None:
    port, store = free_port(), tmp_path / "store"
    master, slave = pty.openpty()
    proc = subprocess.Popen([exe("bleepstore"), "serve", "--data-dir", str(store), "--port",
                             str(port), "--workers", "1"], cwd=tmp_path, env=clean_env(),
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    try:
        text = read_pty(master, ["web console", "WARNING: the default credentials"], 40)
        signal_group(proc, signal.SIGTERM)
        text += read_pty(master, ["Shutting down"], 30)  # keep draining while it stops
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            signal_group(proc, signal.SIGKILL)
            proc.wait()
        os.close(master)
    assert f"S3 endpoint   http://127.0.0.1:{port}" in text, text[-3000:]
    assert f"web console   http://127.0.0.1:{port}/console/" in text
    assert f"data dir      {store}" in text
    assert f"{store / 'metadata.db'}" in text and f"{store / 'objects'}" in text
    assert "WARNING: the default credentials are in use (bleepstore / bleepstore-secret)" \
        in text
