"""Revocation reaches every worker on its next request, and removing a user never orphans
their buckets (issue 9, item 8).

The server runs 2 workers with an hour-long credential cache TTL, so nothing here can pass
by waiting: keep-alive connections are pinned to the worker that accepted them (gthread),
and each test first proves, from the access log, that the key was served by both workers.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import botocore.exceptions
import pytest
from support.access_log import access_records
from support.clients import boto3_client
from support.server import ACCESS_KEY, Server, free_port
from support.signing import sigv4_headers

TOKEN = "revocation-admin-token"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("revocation"), workers=2, extra_config={
        "server": {"admin_port": free_port(), "admin_token": TOKEN, "keepalive_s": 300},
        "auth": {"credential_cache_ttl_s": 3600}})
    server.start()
    yield server
    server.stop()


def admin(srv: Server, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    port = srv.extra_config["server"]["admin_port"]
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
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


def add_user(srv: Server, key: str) -> str:
    secret = f"{key}-secret-0123456789"
    out = cli(srv, "user", "add", "--access-key", key, "--secret-key", secret)
    assert out.returncode == 0, out.stderr
    return secret


class Pinned:
    """One keep-alive connection, served by one worker for its whole life."""

    opened: list[Pinned] = []

    def __init__(self, srv: Server) -> None:
        self.netloc = srv.endpoint.removeprefix("http://")
        self.http = http.client.HTTPConnection(self.netloc, timeout=30)
        self.opened.append(self)

    def list_buckets(self, key: str, secret: str) -> tuple[int, str, bytes]:
        """(status, x-amz-request-id, body) of a signed ListBuckets."""
        hdrs = sigv4_headers("GET", self.netloc, "/", b"", {}, key, secret)
        self.http.putrequest("GET", "/", skip_host=True, skip_accept_encoding=True)
        for name, value in hdrs.items():
            self.http.putheader(name, value)
        self.http.endheaders()
        resp = self.http.getresponse()
        body = resp.read()
        # http.client would silently reconnect (maybe to the other worker) after a close
        assert resp.status != 200 or not resp.will_close, "keep-alive connection closed"
        return resp.status, resp.getheader("x-amz-request-id") or "", body


@pytest.fixture(autouse=True)
def close_connections() -> Iterator[None]:
    yield
    while Pinned.opened:
        Pinned.opened.pop().http.close()


def worker_pids(srv: Server, request_ids: set[str]) -> dict[str, int]:
    """request id -> pid of the worker that served it, from the JSON access log."""
    return {rid: rec["pid"] for rid, rec in access_records(srv, request_ids).items()}


def warm_both_workers(srv: Server, key: str, secret: str) -> list[Pinned]:
    """Keep-alive connections on which ``key`` succeeded, covering both workers (so each
    worker's credential cache holds it)."""
    conns: list[Pinned] = []
    by_pid: dict[int, Pinned] = {}
    for _ in range(8):
        batch = [Pinned(srv) for _ in range(8)]
        ids = {}
        for conn in batch:
            status, request_id, body = conn.list_buckets(key, secret)
            assert status == 200, body
            conn.list_buckets(key, secret)  # a cache hit in that worker
            ids[request_id] = conn
        for request_id, pid in worker_pids(srv, set(ids)).items():
            by_pid.setdefault(pid, ids[request_id])
        conns += batch
        if len(by_pid) >= 2:
            break
    assert len(by_pid) == 2, f"could not reach both workers: {by_pid}"
    return conns


def assert_refused_everywhere(conns: list[Pinned], key: str, secret: str) -> None:
    for conn in conns:
        status, _, body = conn.list_buckets(key, secret)
        assert status == 403, body
        assert b"<Code>InvalidAccessKeyId</Code>" in body


def remove_by_cli(srv: Server, key: str) -> None:
    out = cli(srv, "user", "remove", key)
    assert out.returncode == 0, out.stderr


def remove_by_admin(srv: Server, key: str) -> None:
    assert admin(srv, "DELETE", f"/admin/credentials/{key}")[0] == 204


def disable_by_admin(srv: Server, key: str) -> None:
    status, body = admin(srv, "PUT", f"/admin/credentials/{key}/status",
                         {"status": "disabled"})
    assert status == 200 and body["status"] == "disabled"


@pytest.mark.parametrize(("key", "revoke"), [("AKBSREVOKE0000000001", remove_by_cli),
                                             ("AKBSREVOKE0000000002", remove_by_admin),
                                             ("AKBSREVOKE0000000003", disable_by_admin)],
                         ids=["cli-remove", "admin-delete", "admin-disable"])
def test_revocation_takes_effect_on_the_next_request_in_every_worker(
        srv: Server, key: str, revoke: Callable[[Server, str], None]) -> None:
    secret = add_user(srv, key)
    conns = warm_both_workers(srv, key, secret)
    revoke(srv, key)
    assert_refused_everywhere(conns, key, secret)


def test_reenabling_takes_effect_on_the_next_request_in_every_worker(srv: Server) -> None:
    key = "AKBSREENABLE00000001"
    secret = add_user(srv, key)
    conns = warm_both_workers(srv, key, secret)
    disable_by_admin(srv, key)
    assert_refused_everywhere(conns, key, secret)
    assert admin(srv, "PUT", f"/admin/credentials/{key}/status", {"status": "active"})[0] == 200
    fresh = [Pinned(srv) for _ in range(8)]
    assert all(c.list_buckets(key, secret)[0] == 200 for c in fresh)


def test_remove_refuses_while_the_user_owns_buckets(srv: Server) -> None:
    key = "AKBSOWNER00000000001"
    secret = add_user(srv, key)
    owner = boto3_client(srv.endpoint, key, secret)
    for name in ("owned-zeta", "owned-alpha"):
        owner.create_bucket(Bucket=name)
    out = cli(srv, "user", "remove", key)
    assert out.returncode == 1
    assert "owned-alpha" in out.stderr and "owned-zeta" in out.stderr
    assert "--reassign-to" in out.stderr
    status, body = admin(srv, "DELETE", f"/admin/credentials/{key}")
    assert status == 409
    assert body["error"] == "user_owns_buckets"
    assert body["buckets"] == ["owned-alpha", "owned-zeta"]
    assert sorted(b["Name"] for b in owner.list_buckets()["Buckets"]) == [
        "owned-alpha", "owned-zeta"]


def test_reassign_hands_the_buckets_over(srv: Server) -> None:
    old_key, new_key = "AKBSLEAVER0000000001", "AKBSHEIR000000000001"
    old = boto3_client(srv.endpoint, old_key, add_user(srv, old_key))
    new = boto3_client(srv.endpoint, new_key, add_user(srv, new_key))
    old.create_bucket(Bucket="inherited-data")
    old.put_object(Bucket="inherited-data", Key="report.txt", Body=b"quarterly numbers")
    upload = old.create_multipart_upload(Bucket="inherited-data", Key="big")["UploadId"]
    old.create_bucket(Bucket="inherited-empty")
    assert cli(srv, "user", "remove", old_key, "--reassign-to", "AKBSNOSUCHUSER000001"
               ).returncode == 1
    out = cli(srv, "user", "remove", old_key, "--reassign-to", new_key)
    assert out.returncode == 0, out.stderr

    with pytest.raises(botocore.exceptions.ClientError) as exc:
        old.list_buckets()
    assert exc.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    names = sorted(b["Name"] for b in new.list_buckets()["Buckets"])
    assert names == ["inherited-data", "inherited-empty"]
    got = new.get_object(Bucket="inherited-data", Key="report.txt")["Body"].read()
    assert got == b"quarterly numbers"
    acl = new.get_bucket_acl(Bucket="inherited-data")
    new_id = new.list_buckets()["Owner"]["ID"]
    assert acl["Owner"]["ID"] == new_id
    assert new.get_object_acl(Bucket="inherited-data", Key="report.txt")["Owner"]["ID"] == new_id
    new.abort_multipart_upload(Bucket="inherited-data", Key="big", UploadId=upload)
    new.delete_object(Bucket="inherited-data", Key="report.txt")
    new.delete_bucket(Bucket="inherited-data")
    new.delete_bucket(Bucket="inherited-empty")
    boto3_client(srv.endpoint).create_bucket(Bucket="inherited-empty")  # the name is free


def test_admin_reassign_and_its_errors(srv: Server) -> None:
    old_key, new_key = "AKBSLEAVER0000000002", "AKBSHEIR000000000002"
    old = boto3_client(srv.endpoint, old_key, add_user(srv, old_key))
    new = boto3_client(srv.endpoint, new_key, add_user(srv, new_key))
    old.create_bucket(Bucket="admin-handover")
    base = f"/admin/credentials/{old_key}"
    status, body = admin(srv, "DELETE", f"{base}?reassign_to=AKBSNOSUCHUSER000001")
    assert status == 400 and body["error"] == "bad_request"
    assert admin(srv, "DELETE", f"{base}?reassign_to={old_key}")[0] == 400
    assert admin(srv, "DELETE", f"{base}?reassign_to={new_key}")[0] == 204
    assert [b["Name"] for b in new.list_buckets()["Buckets"]] == ["admin-handover"]
    new.delete_bucket(Bucket="admin-handover")


def test_the_bootstrap_credential_cannot_be_removed_or_disabled(srv: Server) -> None:
    out = cli(srv, "user", "remove", ACCESS_KEY)
    assert out.returncode == 1 and "bootstrap" in out.stderr
    status, body = admin(srv, "DELETE", f"/admin/credentials/{ACCESS_KEY}")
    assert status == 409 and body["error"] == "bootstrap_credential"
    status, body = admin(srv, "PUT", f"/admin/credentials/{ACCESS_KEY}/status",
                         {"status": "disabled"})
    assert status == 409 and body["error"] == "bootstrap_credential"
    assert boto3_client(srv.endpoint).list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
