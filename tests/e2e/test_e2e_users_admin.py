"""More than one user: the `bleepstore user` CLI and the admin API manage the
credentials table of a running server (issue: complete API, item 6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from support.clients import boto3_client
from support.server import Server, free_port

TOKEN = "test-admin-token-123"


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("admin"), workers=2, extra_config={
        "server": {"admin_port": free_port(), "admin_token": TOKEN},
        "auth": {"credential_cache_ttl_s": 3600}})  # revocation must not wait for it
    srv.start()
    yield srv
    srv.stop()


def admin(srv: Server, method: str, path: str, body: Any = None,
          token: str | None = TOKEN) -> tuple[int, Any]:
    port = srv.extra_config["server"]["admin_port"]
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw else None


def cli(srv: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BLEEPSTORE_CONFIG": str(srv.config_path)}
    return subprocess.run([sys.executable, "-m", "bleepstore.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60, cwd=srv.root)


def code(exc: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_cli_user_add_list_remove(admin_server: Server) -> None:
    out = cli(admin_server, "user", "add", "--access-key", "AKBSCLIUSER000001",
              "--secret-key", "cli-user-secret-0123456789", "--display-name", "carol")
    assert out.returncode == 0, out.stderr
    assert "cli-user-secret-0123456789" in out.stdout
    carol = boto3_client(admin_server.endpoint, "AKBSCLIUSER000001", "cli-user-secret-0123456789")
    carol.create_bucket(Bucket="carols-bucket")
    assert [b["Name"] for b in carol.list_buckets()["Buckets"]] == ["carols-bucket"]
    admin_view = boto3_client(admin_server.endpoint)
    assert "carols-bucket" not in [b["Name"] for b in admin_view.list_buckets()["Buckets"]]
    listed = cli(admin_server, "user", "list")
    assert "AKBSCLIUSER000001" in listed.stdout
    assert "cli-user-secret" not in listed.stdout
    carol.delete_bucket(Bucket="carols-bucket")
    assert cli(admin_server, "user", "remove", "AKBSCLIUSER000001").returncode == 0
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        carol.list_buckets()
    assert code(exc) == "InvalidAccessKeyId"
    assert "cli-user-secret-0123456789" not in admin_server.log_text()


def test_admin_requires_bearer_token(admin_server: Server) -> None:
    status, body = admin(admin_server, "GET", "/admin/credentials", token=None)
    assert status == 401 and body["error"] == "unauthorized"
    status, body = admin(admin_server, "GET", "/admin/credentials", token="wrong")
    assert status == 401


def test_admin_credentials_lifecycle(admin_server: Server) -> None:
    status, created = admin(admin_server, "POST", "/admin/credentials",
                            {"description": "ci robot"})
    assert status == 201
    key, secret = created["access_key_id"], created["secret_access_key"]
    assert key.startswith("AKBS") and len(key) == 20 and len(secret) == 40
    robot = boto3_client(admin_server.endpoint, key, secret)
    assert robot.list_buckets()["Buckets"] == []
    status, listing = admin(admin_server, "GET", "/admin/credentials")
    entry = next(c for c in listing["credentials"] if c["access_key_id"] == key)
    assert entry == {"access_key_id": key, "status": "active", "description": "ci robot",
                     "created_at": entry["created_at"]}
    assert all("secret_access_key" not in c for c in listing["credentials"])
    status, _ = admin(admin_server, "PUT", f"/admin/credentials/{key}/status",
                      {"status": "disabled"})
    assert status == 200
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        robot.list_buckets()
    assert code(exc) == "InvalidAccessKeyId"
    assert admin(admin_server, "PUT", f"/admin/credentials/{key}/status",
                 {"status": "maybe"})[0] == 400
    assert admin(admin_server, "DELETE", f"/admin/credentials/{key}")[0] == 204
    assert admin(admin_server, "DELETE", f"/admin/credentials/{key}")[0] == 404
    assert secret not in admin_server.log_text()


def test_admin_port_and_s3_port_are_separate(admin_server: Server) -> None:
    status, body = admin(admin_server, "GET", "/")
    assert status == 404 and body["error"] == "not_found"
    req = urllib.request.Request(f"{admin_server.endpoint}/admin/credentials")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req)
    # on the S3 port this is an anonymous S3 request for a bucket named "admin"
    assert exc.value.code == 404
    assert b"<Code>NoSuchBucket</Code>" in exc.value.read()
    status, stats = admin(admin_server, "GET", "/admin/storage/stats")
    assert status == 200 and set(stats) == {"total_objects", "total_size_bytes",
                                            "total_buckets", "total_multipart_uploads"}
    status, result = admin(admin_server, "POST", "/admin/storage/reconcile")
    assert status == 200 and set(result) == {"scanned", "deleted", "errors"}
    assert result["deleted"] == 0  # nothing older than the minimum age is unreferenced
    status, storage = admin(admin_server, "GET", "/admin/storage/status")
    assert storage["state"] == "healthy" and storage["backend"] == "filesystem"
    status, cfg = admin(admin_server, "GET", "/admin/config")
    assert cfg["server"]["admin_token"] == "**REDACTED**"
    assert cfg["auth"]["secret_key"] == "**REDACTED**"


def test_check_config_and_version(admin_server: Server, tmp_path: Path) -> None:
    out = cli(admin_server, "check-config")
    assert out.returncode == 0
    assert "**REDACTED**" in out.stdout and TOKEN not in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: nope\n")
    env = {**os.environ, "BLEEPSTORE_CONFIG": str(bad)}
    res = subprocess.run([sys.executable, "-m", "bleepstore.cli", "check-config"], env=env,
                         capture_output=True, text=True)
    assert res.returncode == 2 and "server.port" in res.stderr
    assert cli(admin_server, "version").stdout.startswith("bleepstore ")
