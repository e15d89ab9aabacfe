"""Real BleepStore clusters on loopback: N gunicorn masters, each with its Raft sidecar,
sharing one blob directory (``data_placement: shared``), from the shipped example config.

``Cluster.node(i)`` is a ``support.server.Server``: ``kill9()`` kills the node's whole
process group (master, workers, sidecar), ``start()`` brings it back on its data.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from support.server import REPO, Server, free_port
from support.tcp_proxy import TcpProxy

EXAMPLE = REPO / "deploy" / "cluster" / "node.example.yaml"
ADMIN_TOKEN = "cluster-admin-token"


def example_cluster_settings() -> dict[str, Any]:
    """The shipped example's cluster timings (what a user starts from)."""
    loaded: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return dict(loaded["cluster"])


@dataclass
class Node:
    """``addr`` is what the other members know this node by: its Raft port, or (proxied)
    a TCP proxy in front of it. pysyncobj keeps one connection per pair, opened by the
    member with the greater address, so every connection to the lowest-addressed node
    passes through that node's proxy: cutting it isolates that node, and only it."""

    node_id: str
    raft_port: int = field(default_factory=free_port)
    server: Server | None = None
    proxy: TcpProxy | None = None

    @property
    def addr(self) -> str:
        port = self.proxy.port if self.proxy is not None else self.raft_port
        return f"127.0.0.1:{port}"


class Cluster:
    def __init__(self, root: Path, size: int = 3, *, proxied: bool = False,
                 sections: dict[str, Any] | None = None, **cluster_overrides: Any) -> None:
        """``data_placement="owner"`` among the overrides: each node keeps its own blob
        directory (``server.data / "objects"``) instead of sharing node 0's. ``sections``:
        more configuration for every node (``{"queue": {...}}``)."""
        self.root, self.proxied = root, proxied
        self.sections = sections or {}
        # The blob directory every node shares: node 0's own, so a test looking at
        # ``server.data / "objects"`` of node 0 sees the real tree.
        self.shared = root / "n1" / "data" / "objects"
        self.overrides = cluster_overrides
        self.nodes = [self._node(f"n{i + 1}") for i in range(size)]
        for node in self.nodes:
            node.server = self._server(node)

    def _node(self, node_id: str) -> Node:
        node = Node(node_id)
        if self.proxied:
            node.proxy = TcpProxy(("127.0.0.1", node.raft_port)).start()
        return node

    def _server(self, node: Node, peers: list[Node] | None = None) -> Server:
        admin = free_port()
        server = Server(self.root / node.node_id)
        members = peers if peers is not None else self.nodes
        settings = {**example_cluster_settings(), **self.overrides}
        settings.update(
            node_id=node.node_id, bind_addr=f"127.0.0.1:{node.raft_port}",
            advertise_addr=node.addr,
            api_addr=f"127.0.0.1:{server.port}", data_dir=str(server.data / "raft"),
            peers=[{"id": p.node_id, "addr": p.addr} for p in members if p is not node])
        server.extra_config = {
            "metadata": {"engine": "raft"},
            "cluster": settings,
            "server": {"admin_port": admin, "admin_token": ADMIN_TOKEN},
        }
        if settings.get("data_placement") != "owner":
            server.extra_config["storage"] = {"local": {"root_dir": str(self.shared)}}
        server.extra_config.update(self.sections)
        return server

    def node(self, i: int) -> Server:
        server = self.nodes[i].server
        assert server is not None
        return server

    @property
    def servers(self) -> list[Server]:
        return [self.node(i) for i in range(len(self.nodes))]

    def start(self) -> Cluster:
        for server in self.servers:
            server.write_config()
        for server in self.servers:
            server.start()
        for server in self.servers:
            wait_ready(server)
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        for node in self.nodes:
            if node.proxy is not None:
                node.proxy.close()

    def kill_all(self) -> None:
        for server in self.servers:
            server.kill9()

    def leader(self, timeout: float = 15.0) -> int:
        """Index of the node every live node names as leader."""
        deadline = time.monotonic() + timeout
        while True:
            seen = set()
            for server in self.servers:
                if server.proc is None:
                    continue
                try:
                    seen.add(admin(server, "GET", "/admin/cluster/status")[1]["leader_id"])
                except (OSError, KeyError, urllib.error.URLError):
                    seen.add(None)
            if len(seen) == 1 and None not in seen:
                leader_id = seen.pop()
                return [n.node_id for n in self.nodes].index(leader_id)
            assert time.monotonic() < deadline, f"no agreed leader: {seen}"
            time.sleep(0.05)

    def add_node(self, node_id: str) -> Node:
        """A new node started with every current member as peer (cluster.md §7.2)."""
        node = self._node(node_id)
        node.server = self._server(node, self.nodes + [node])
        self.nodes.append(node)
        return node


def admin(server: Server, method: str, path: str,
          body: dict[str, Any] | None = None, timeout: float = 40.0) -> tuple[int, Any]:
    port = server.extra_config["server"]["admin_port"]
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def wait_ready(server: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(server.endpoint + "/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        if server.proc is not None and server.proc.poll() is not None:
            raise RuntimeError(f"{server.root.name} exited: {server.log_text()[-3000:]}")
        assert time.monotonic() < deadline, \
            f"{server.root.name} not ready: {server.log_text()[-3000:]}"
        time.sleep(0.05)


def replica(server: Server) -> dict[tuple[str, str], str]:
    """(bucket, key) -> ETag, read straight from the node's SQLite replica."""
    with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True, timeout=10) as conn:
        return {(b, k): e for b, k, e in conn.execute("SELECT bucket, key, etag FROM objects")}


def applied(server: Server) -> int:
    with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True, timeout=10) as conn:
        return int(conn.execute("SELECT applied_index FROM raft_applied").fetchone()[0])


def wait_converged(servers: list[Server], timeout: float = 30.0) -> dict[tuple[str, str], str]:
    """Until every live node applied the same index; -> the (identical) replica content."""
    deadline = time.monotonic() + timeout
    while True:
        live = [s for s in servers if s.proc is not None]
        indexes = {applied(s) for s in live}
        if len(indexes) == 1:
            contents = [replica(s) for s in live]
            if all(c == contents[0] for c in contents):
                return contents[0]
        assert time.monotonic() < deadline, f"replicas did not converge: indexes {indexes}"
        time.sleep(0.05)
