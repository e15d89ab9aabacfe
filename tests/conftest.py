"""Session fixtures: one real gunicorn BleepStore for the whole run, reset per test."""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.clients import AwsCli, S3Cmd, boto3_client, boto3_resource
from support.gateways import GATEWAYS
from support.nginx import Nginx, ViaProxy
from support.server import Server


@pytest.fixture(scope="session")
def direct_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("bleepstore"))
    srv.start()
    yield srv
    srv.stop()


# Every way the session server is reached; BLEEPSTORE_TEST_SERVERS=aws,gcs (say) narrows a
# local run to some of them.
SERVERS = [s for s in os.environ.get("BLEEPSTORE_TEST_SERVERS", "").split(",") if s] or [
    "direct", "nginx", *GATEWAYS, "cluster"]


@pytest.fixture(scope="session", params=SERVERS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Any]:
    """The session server, reached directly, through the shipped nginx site, and as a
    gateway in front of each cloud's emulator: every end-to-end test runs each way."""
    direct: Server = request.getfixturevalue("direct_server")
    if request.param == "direct":
        yield direct
        return
    if request.param == "cluster":  # a node of a 3-node Raft cluster (cluster.md)
        from support.cluster import Cluster

        cluster = Cluster(tmp_path_factory.mktemp("cluster-e2e")).start()
        yield cluster.node(0)
        cluster.stop()
        return
    if request.param == "nginx":
        proxy = Nginx(tmp_path_factory.mktemp("nginx"), direct.port).start()
        yield ViaProxy(direct, proxy)
        proxy.stop()
        return
    emulator = request.getfixturevalue(f"{request.param}_emulator")
    # NOTE: gc_grace_s 0 (gateways default to 900 s, for reads still streaming a replaced
    # blob) so the suite can check that released blobs really go.
    storage = {**emulator.server_storage_config(), "gc_grace_s": 0}
    srv = Server(tmp_path_factory.mktemp(f"gw-{request.param}"), env=dict(emulator.env),
                 extra_config={"storage": storage})
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def local_storage(server: Any) -> None:
    """For tests that look at the blob files themselves: the local backend only."""
    if server.backend != "local":
        pytest.skip("inspects the local blob tree; the gateway suite covers the cloud side")


@pytest.fixture
def metadata_feature(server: Any) -> None:
    """For modules whose feature lives in the metadata and the web layer only (policies,
    CORS, tagging): the gateway kinds would run the same code again over another blob
    store, so they are skipped there (the cluster kind still replicates the metadata)."""
    if server.backend != "local":
        pytest.skip("metadata-only feature: covered by the direct, nginx and cluster kinds")


def _credentials(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT access_key_id, secret_key FROM credentials"))


@functools.lru_cache(maxsize=64)
def _reset_client(endpoint: str, access_key: str, secret: str) -> Any:
    # NOTE: kept for the session: building a boto3 client costs ~11 ms, and every e2e test
    # resets. Retries cover a kept-alive connection the server closed between two tests.
    return boto3_client(endpoint, access_key, secret, max_attempts=3)


def reset_server(server: Server) -> None:
    """Empty every bucket of every user through the S3 API (servers stay up)."""
    for access_key, secret in _credentials(server.db_path):
        client = _reset_client(server.endpoint, access_key, secret)
        for bucket in client.list_buckets().get("Buckets", []):
            name = bucket["Name"]
            for up in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
                client.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
            # NOTE: by version: in a versioned bucket a delete by key only adds a marker
            paginator = client.get_paginator("list_object_versions")
            for page in paginator.paginate(Bucket=name):
                entries = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                           for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
                if entries:
                    client.delete_objects(Bucket=name, Delete={"Objects": entries,
                                                               "Quiet": True})
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


# --- the gateways' real upstreams, once per session (tests/contract, e2e over gateways) -----

@pytest.fixture(scope="session")
def aws_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from support.moto_upstream import MotoUpstream

    upstream = MotoUpstream(tmp_path_factory.mktemp("moto")).start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from support.gcs_emulator import GcsEmulator

    emulator = GcsEmulator(tmp_path_factory.mktemp("gcs")).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def azure_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from support.azurite import Azurite

    emulator = Azurite(tmp_path_factory.mktemp("azurite")).start()
    yield emulator
    emulator.stop()
