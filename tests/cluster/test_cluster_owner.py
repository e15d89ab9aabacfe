"""Owner placement (cluster.md §9): each node keeps the blobs it received on its own disk;
every other node streams them from the owner over the authenticated internal endpoint; an
owner that is down makes a read 503 SlowDown, never wrong bytes; only the owner collects."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from support.clients import boto3_client
from support.cluster import Cluster, example_cluster_settings, wait_converged, wait_ready
from support.server import Server

MiB = 1 << 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("owner"), data_placement="owner").start()
    yield c
    c.stop()


def client(server: Server) -> Any:
    return boto3_client(server.endpoint, max_attempts=0, read_timeout=20)


def new_bucket(cluster: Cluster) -> str:
    name = "own-" + uuid.uuid4().hex[:12]
    client(cluster.node(0)).create_bucket(Bucket=name)
    return name


def blob_files(server: Server) -> set[str]:
    root = server.data / "objects" / "blobs"
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def ref_of(server: Server, bucket: str, key: str) -> str:
    with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True) as conn:
        return str(conn.execute("SELECT data_ref FROM objects WHERE bucket = ? AND key = ?",
                                (bucket, key)).fetchone()[0])


def test_a_blob_lives_on_its_owner_and_streams_to_the_others(cluster: Cluster) -> None:
    bucket = new_bucket(cluster)
    body = random.Random(1).randbytes(3 * MiB + 17)
    client(cluster.node(0)).put_object(Bucket=bucket, Key="big", Body=body)
    wait_converged(cluster.servers)
    ref = ref_of(cluster.node(1), bucket, "big")
    assert ref.startswith("node/n1/")
    blob_id = ref.rsplit("/", 1)[1]
    assert blob_id in blob_files(cluster.node(0))
    assert all(blob_id not in blob_files(cluster.node(i)) for i in (1, 2))
    for i in (1, 2):
        s3 = client(cluster.node(i))
        assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == body
        part = s3.get_object(Bucket=bucket, Key="big", Range="bytes=1048570-2097160")
        assert part["Body"].read() == body[1048570:2097161]
        assert part["ContentRange"] == f"bytes 1048570-2097160/{len(body)}"


def test_multipart_parts_on_three_nodes_complete_elsewhere(cluster: Cluster) -> None:
    bucket = new_bucket(cluster)
    rng = random.Random(2)
    parts = [rng.randbytes(5 * MiB), rng.randbytes(5 * MiB), rng.randbytes(MiB + 3)]
    uid = client(cluster.node(0)).create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    wait_converged(cluster.servers)
    done = []
    for n, body in enumerate(parts, 1):
        s3 = client(cluster.node(n - 1))
        etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=n,
                              Body=body)["ETag"]
        done.append({"PartNumber": n, "ETag": etag})
    wait_converged(cluster.servers)
    client(cluster.node(1)).complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": done})
    wait_converged(cluster.servers)
    assert ref_of(cluster.node(2), bucket, "mp").startswith("node/n2/")
    got = client(cluster.node(2)).get_object(Bucket=bucket, Key="mp")["Body"].read()
    assert hashlib.md5(got).digest() == hashlib.md5(b"".join(parts)).digest()
    second = client(cluster.node(0)).get_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert second["Body"].read() == parts[1]


def test_a_multipart_object_of_one_node_streams_to_the_others(cluster: Cluster) -> None:
    """Parts and Complete on one node: its object is a composite blob there (the part files
    linked, storage/composite.py), which the other nodes read whole and by range."""
    bucket = new_bucket(cluster)
    rng = random.Random(3)
    parts = [rng.randbytes(5 * MiB), rng.randbytes(5 * MiB), rng.randbytes(777)]
    whole = b"".join(parts)
    s3 = client(cluster.node(0))
    uid = s3.create_multipart_upload(Bucket=bucket, Key="local-mp")["UploadId"]
    done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key="local-mp",
                                                     UploadId=uid, PartNumber=n,
                                                     Body=body)["ETag"]}
            for n, body in enumerate(parts, 1)]
    s3.complete_multipart_upload(Bucket=bucket, Key="local-mp", UploadId=uid,
                                 MultipartUpload={"Parts": done})
    wait_converged(cluster.servers)
    ref = ref_of(cluster.node(0), bucket, "local-mp")
    assert (cluster.node(0).data / "objects" / ref.split("/", 2)[2]).is_dir()
    reader = client(cluster.node(2))
    got = reader.get_object(Bucket=bucket, Key="local-mp")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(whole).digest()
    edge = reader.get_object(Bucket=bucket, Key="local-mp", Range="bytes=5242870-10485770")
    assert edge["Body"].read() == whole[5242870:10485771]
    last = reader.get_object(Bucket=bucket, Key="local-mp", PartNumber=3)
    assert last["Body"].read() == parts[2]


def test_copy_of_a_remote_object_lands_on_the_copying_node(cluster: Cluster) -> None:
    bucket = new_bucket(cluster)
    body = random.Random(3).randbytes(MiB)
    client(cluster.node(0)).put_object(Bucket=bucket, Key="src", Body=body)
    wait_converged(cluster.servers)
    client(cluster.node(2)).copy_object(Bucket=bucket, Key="dst",
                                        CopySource={"Bucket": bucket, "Key": "src"})
    wait_converged(cluster.servers)
    assert ref_of(cluster.node(0), bucket, "dst").startswith("node/n3/")
    assert client(cluster.node(0)).get_object(Bucket=bucket, Key="dst")["Body"].read() == body


def test_an_overwrite_elsewhere_is_collected_by_the_owner(cluster: Cluster) -> None:
    bucket = new_bucket(cluster)
    client(cluster.node(0)).put_object(Bucket=bucket, Key="k", Body=b"first")
    wait_converged(cluster.servers)
    old = ref_of(cluster.node(0), bucket, "k")
    client(cluster.node(1)).put_object(Bucket=bucket, Key="k", Body=b"second")
    wait_converged(cluster.servers)

    def intents(server: Server) -> set[str]:
        with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True) as conn:
            return {r[0] for r in conn.execute("SELECT data_ref FROM blob_gc")}

    # n1 holds the old blob: its intent (or, gc_grace 0, already collected: no file)
    assert old in intents(cluster.node(0)) or old.rsplit("/", 1)[1] not in blob_files(
        cluster.node(0))
    assert old not in intents(cluster.node(1)) and old not in intents(cluster.node(2))


def test_an_owner_that_is_down_makes_reads_503_slowdown(cluster: Cluster) -> None:
    bucket = new_bucket(cluster)
    leader = cluster.leader()
    owner, reader = [i for i in range(3) if i != leader]  # the leader stays: no election
    client(cluster.node(owner)).put_object(Bucket=bucket, Key="owned", Body=b"owner bytes")
    wait_converged(cluster.servers)
    cluster.node(owner).kill9()
    try:
        with pytest.raises(botocore.exceptions.ClientError) as info:
            client(cluster.node(reader)).get_object(Bucket=bucket, Key="owned")
        assert info.value.response["Error"]["Code"] == "SlowDown"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        # writes go on with two of three, and what they own reads everywhere still up
        client(cluster.node(reader)).put_object(Bucket=bucket, Key="while-down", Body=b"ok")
        assert client(cluster.node(leader)).get_object(
            Bucket=bucket, Key="while-down")["Body"].read() == b"ok"
    finally:
        cluster.node(owner).start()
        wait_ready(cluster.node(owner))
    assert client(cluster.node(reader)).get_object(Bucket=bucket, Key="owned")["Body"].read() \
        == b"owner bytes"


def _internal(server: Server, query: str, token: str | None) -> int:
    req = urllib.request.Request(f"{server.endpoint}/_bleepstore/internal/blob?{query}")
    if token is not None:
        req.add_header("X-BleepStore-Cluster-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_the_internal_endpoint_wants_the_secret_and_a_well_formed_ref(
        cluster: Cluster) -> None:
    bucket = new_bucket(cluster)
    client(cluster.node(0)).put_object(Bucket=bucket, Key="k", Body=b"v")
    ref = ref_of(cluster.node(0), bucket, "k").split("/", 2)[2]
    secret = str(example_cluster_settings()["secret"])
    server = cluster.node(0)
    assert _internal(server, f"ref={ref}", secret) == 200
    assert _internal(server, f"ref={ref}", None) == 403
    assert _internal(server, f"ref={ref}", secret + "x") == 403
    for bad in ("../../bleepstore.yaml", "/etc/passwd", "blobs/../metadata.db", ""):
        assert _internal(server, f"ref={bad}", secret) == 400, bad
    assert _internal(server, "ref=blobs/00/00/" + "0" * 32, secret) == 404
    assert _internal(server, f"ref={ref}&offset=-1", secret) == 400
    assert not Path(server.data / "objects" / "bleepstore.yaml").exists()
