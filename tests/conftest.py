"""Session fixtures: one real gunicorn BleepStore for the whole run, reset per test."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.clients import AwsCli, S3Cmd, boto3_client, boto3_resource
from support.nginx import Nginx, ViaProxy
from support.server import Server


@pytest.fixture(scope="session")
def direct_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("bleepstore"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session", params=["direct", "nginx"])
def server(request: pytest.FixtureRequest, direct_server: Server,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The session server, reached directly and then through the shipped nginx site:
    every end-to-end test that uses it runs both ways."""
    if request.param == "direct":
        yield direct_server
        return
    proxy = Nginx(tmp_path_factory.mktemp("nginx"), direct_server.port).start()
    yield ViaProxy(direct_server, proxy)
    proxy.stop()


def _credentials(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT access_key_id, secret_key FROM credentials"))


def reset_server(server: Server) -> None:
    """Empty every bucket of every user through the S3 API (servers stay up)."""
    for access_key, secret in _credentials(server.db_path):
        client = boto3_client(server.endpoint, access_key, secret)
        for bucket in client.list_buckets().get("Buckets", []):
            name = bucket["Name"]
            for up in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
                client.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
            paginator = client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=name):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
            client.delete_bucket(Bucket=name)


@pytest.fixture
def s3(server: Server) -> Iterator[Any]:
    yield boto3_client(server.endpoint)
    reset_server(server)


@pytest.fixture
def s3_resource(server: Server, s3: Any) -> Any:
    return boto3_resource(server.endpoint)


@pytest.fixture
def bucket(s3: Any, request: pytest.FixtureRequest) -> str:
    name = "test-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    name = "".join(c for c in name if c.isalnum() or c == "-").rstrip("-")
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def aws(server: Server, tmp_path: Path, s3: Any) -> AwsCli:
    return AwsCli(server.endpoint, tmp_path / "aws")


@pytest.fixture
def s3cmd(server: Server, tmp_path: Path, s3: Any) -> S3Cmd:
    return S3Cmd(server.endpoint, tmp_path / "s3cmd")
