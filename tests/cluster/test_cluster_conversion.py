"""An embedded node becomes a one-node cluster and grows (cluster.md §7.3): its existing
buckets and objects reach every joiner (through the snapshot the converted leader takes),
and the grown cluster serves and takes writes through every node."""

from __future__ import annotations

from pathlib import Path

from support.clients import boto3_client
from support.cluster import Cluster, admin, wait_converged, wait_ready
from support.server import Server


def test_an_embedded_node_is_converted_then_grown_to_three(tmp_path: Path) -> None:
    embedded = Server(tmp_path / "n1").start()
    s3 = boto3_client(embedded.endpoint)
    s3.create_bucket(Bucket="legacy")
    for i in range(50):
        s3.put_object(Bucket="legacy", Key=f"old/{i:03d}", Body=b"%d" % i)
    embedded.stop()

    cluster = Cluster(tmp_path, size=1)  # the same root: n1 keeps its data directory
    try:
        cluster.start()
        first = cluster.node(0)
        assert boto3_client(first.endpoint).get_object(
            Bucket="legacy", Key="old/049")["Body"].read() == b"49"
        for node_id in ("n2", "n3"):
            node = cluster.add_node(node_id)
            assert node.server is not None
            node.server.start()
            status, body = admin(first, "POST", "/admin/cluster/nodes",
                                 {"id": node_id, "addr": node.addr})
            assert status == 201, body
            wait_ready(node.server)
        content = wait_converged(cluster.servers)
        assert sum(1 for b, _ in content if b == "legacy") == 50
        third = boto3_client(cluster.node(2).endpoint)
        assert third.get_object(Bucket="legacy", Key="old/007")["Body"].read() == b"7"
        third.put_object(Bucket="legacy", Key="new/from-n3", Body=b"n3")
        assert wait_converged(cluster.servers)[("legacy", "new/from-n3")]
        status, st = admin(first, "GET", "/admin/cluster/status")
        assert status == 200 and len(st["nodes"]) == 3 and st["healthy"]
    finally:
        cluster.stop()
