"""Cluster mode in the HTTP layer (cluster.md §5, §10.1): the read-consistency barrier,
the ``x-bleepstore-node`` / ``x-bleepstore-leader`` headers, and the admin cluster API.

Invariants: everything here asks the node's sidecar through ``ReplicatedStore``; in
embedded mode the admin cluster endpoints answer 404 ``not_found``. The barrier runs after
authentication (the front middleware comes first), for S3 reads only.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Iterator
from typing import Any

import falcon
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from bleepstore import errors
from bleepstore.core.services import Services
from bleepstore.metadata.replicated import READ_CONSISTENCY, ReplicatedStore
from bleepstore.storage.backend import BlobMissing
from bleepstore.storage.owner import SIZE_HEADER, TOKEN_HEADER, OwnerPlacement
from bleepstore.web.admin import AdminAuth, AdminError, json_body, send

CONSISTENCY_HEADER = "x-bleepstore-read-consistency"
NODE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
ADDR = re.compile(r"^[A-Za-z0-9.\-\[\]:]{1,255}:\d{1,5}$")
STATUS_FOR = {"conflict": falcon.HTTP_409, "not_found": falcon.HTTP_404,
              "bad_request": falcon.HTTP_400, "internal_error": falcon.HTTP_500}


class ClusterFront:
    """Falcon middleware placed after ``S3Front``."""

    def __init__(self, store: ReplicatedStore, node_id: str) -> None:
        self.store, self.node_id = store, node_id

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        ctx = req.context
        if ctx.service or ctx.op is None or req.method not in ("GET", "HEAD"):
            return
        wanted = ctx.header(CONSISTENCY_HEADER)
        if wanted is not None and wanted not in READ_CONSISTENCY:
            raise errors.InvalidArgument(
                f"{CONSISTENCY_HEADER} must be one of {', '.join(READ_CONSISTENCY)}",
                ArgumentName=CONSISTENCY_HEADER, ArgumentValue=wanted)
        self.store.read_barrier(wanted)

    def process_response(self, req: falcon.Request, resp: falcon.Response,
                         resource: Any, req_succeeded: bool) -> None:
        resp.set_header("x-bleepstore-node", self.node_id)
        try:
            leader = self.store.cluster_state().get("leader_id")
        except Exception:  # a header is never worth a failed response
            leader = None
        if leader:
            resp.set_header("x-bleepstore-leader", str(leader))


class RaftCollector:
    """Raft gauges and counters at scrape time, from what the sidecar last published
    (cluster.md §10: term, commit/applied index, leader changes, apply latency)."""

    def __init__(self, store: ReplicatedStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        st = self.store.cluster_state()
        if not st:
            return
        for name, doc, key in (
                ("bleepstore_raft_term", "Current Raft term", "term"),
                ("bleepstore_raft_commit_index", "Raft commit index", "commit_index"),
                ("bleepstore_raft_applied_index", "Raft index applied to this replica",
                 "applied_index")):
            yield GaugeMetricFamily(name, doc, value=float(st.get(key) or 0))
        yield GaugeMetricFamily("bleepstore_raft_is_leader", "1 on the leader",
                                value=1.0 if st.get("state") == "leader" else 0.0)
        for name, doc, key in (
                ("bleepstore_raft_leader_changes", "Leader changes this sidecar saw",
                 "leader_changes"),
                ("bleepstore_raft_applied_entries", "Entries applied to this replica by "
                 "this sidecar", "applied_entries"),
                ("bleepstore_raft_apply_seconds", "Time spent applying those entries",
                 "apply_seconds")):
            yield CounterMetricFamily(name, doc, value=float(st.get(key) or 0))


def cluster_check(store: ReplicatedStore) -> dict[str, Any]:
    """``checks.cluster`` of /health: ok once a leader is known, this node has quorum
    contact and has caught up (pysyncobj's readiness); a minority node is "error" (the
    top level degraded: local reads go on) and not ready."""
    began = time.monotonic()
    try:
        st = store.call({"op": "status"}, timeout=2.0)
    except errors.S3Error as exc:
        return {"status": "error", "error": exc.msg,
                "latency_ms": int((time.monotonic() - began) * 1000)}
    ok = bool(st.get("ok") and st.get("leader_id") and st.get("has_quorum") and st.get("ready"))
    out = {"status": "ok" if ok else "error", "node_id": st.get("node_id"),
           "state": st.get("state"), "leader_id": st.get("leader_id"), "term": st.get("term"),
           "commit_index": st.get("commit_index"), "applied_index": st.get("applied_index"),
           "latency_ms": int((time.monotonic() - began) * 1000)}
    if not ok:
        out["error"] = "no quorum or not caught up"
    return out


def _ask(store: ReplicatedStore, request: dict[str, Any], timeout: float = 15.0) -> Any:
    answer = store.call(request, timeout)
    if answer.get("ok"):
        return answer
    if "raft_error" in answer:
        raise AdminError(falcon.HTTP_503, "service_unavailable",
                         f"The cluster did not confirm the change ({answer['raft_error']}).")
    code = str(answer.get("code", "internal_error"))
    raise AdminError(STATUS_FOR.get(code, falcon.HTTP_500), code,
                     str(answer.get("message", "cluster operation failed")))


def _cluster_store(svc: Services) -> ReplicatedStore:
    if not isinstance(svc.store, ReplicatedStore):
        raise AdminError(falcon.HTTP_404, "not_found", "cluster mode is not enabled")
    return svc.store


def _node(n: dict[str, Any]) -> dict[str, Any]:
    return {"id": n["id"], "addr": n["addr"], "api_addr": n.get("api_addr", ""),
            "state": n.get("state", "unknown"), "healthy": bool(n.get("healthy")),
            "last_contact": "0s" if n.get("healthy") else "unknown"}


class _Base:
    def __init__(self, svc: Services, auth: AdminAuth) -> None:
        self.svc, self.auth = svc, auth

    def _status(self, req: falcon.Request) -> dict[str, Any]:
        self.auth.check(req)
        try:
            return dict(_ask(_cluster_store(self.svc), {"op": "status"}))
        except errors.ServiceUnavailable:
            raise AdminError(falcon.HTTP_503, "service_unavailable",
                             "The raft sidecar is not running.") from None


class ClusterStatus(_Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        st = self._status(req)
        send(resp, falcon.HTTP_200, {
            "healthy": bool(st["leader_id"] and st["has_quorum"]), "leader_id": st["leader_id"],
            "term": st["term"], "nodes": [_node(n) for n in st["nodes"] if n["in_raft"]],
            "cluster_id": st["cluster_id"], "node_id": st["node_id"], "state": st["state"],
            "leader_addr": st["leader_addr"], "commit_index": st["commit_index"],
            "applied_index": st["applied_index"], "ready": st["ready"]})


class RaftStats(_Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        st = self._status(req)
        snap = st.get("snapshot") or {}
        send(resp, falcon.HTTP_200, {
            "state": st["state"], "term": st["term"],
            # NOTE: pysyncobj keeps the last log index private: the commit index stands in.
            "last_log_index": st["commit_index"], "last_log_term": st["term"],
            "commit_index": st["commit_index"], "applied_index": st["applied_index"],
            "fsm_pending": max(0, st["commit_index"] - st["applied_index"]),
            "last_snapshot_index": snap.get("index", 0), "last_snapshot_term": snap.get("term", 0),
            "num_peers": len(st["partners"]), "log_len": st["log_len"],
            "last_contact": "0s" if st["leader_addr"] else "unknown"})


class ClusterNodes(_Base):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        st = self._status(req)
        send(resp, falcon.HTTP_200, {"nodes": [_node(n) for n in st["nodes"]]})

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auth.check(req)
        store = _cluster_store(self.svc)
        body = json_body(req)
        node_id, addr, api = body.get("id"), body.get("addr"), body.get("api_addr") or ""
        if not isinstance(node_id, str) or not NODE_ID.match(node_id):
            raise AdminError(falcon.HTTP_400, "bad_request", "id: 1-64 of A-Z a-z 0-9 . _ -")
        for name, value in (("addr", addr), ("api_addr", api or "x:1")):
            if not isinstance(value, str) or not ADDR.match(value):
                raise AdminError(falcon.HTTP_400, "bad_request", f"{name}: host:port")
        answer = _ask(store, {"op": "add_node", "id": node_id, "addr": addr, "api_addr": api},
                      timeout=30.0)
        send(resp, falcon.HTTP_201, {**answer["node"], "state": "follower", "healthy": False,
                                     "last_contact": "unknown"})


class ClusterNode(_Base):
    def on_delete(self, req: falcon.Request, resp: falcon.Response, node_id: str) -> None:
        self.auth.check(req)
        _ask(_cluster_store(self.svc), {"op": "remove_node", "id": node_id}, timeout=30.0)
        resp.status = falcon.HTTP_204


class ClusterLeader(_Base):
    """``POST /admin/cluster/leader`` ``{"id": "node-2"}`` (``id`` optional: the most
    caught-up follower): hand leadership over; sent to the leader, answered once another
    node leads."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auth.check(req)
        store = _cluster_store(self.svc)
        body = json_body(req)
        node_id = body.get("id")
        if node_id is not None and (not isinstance(node_id, str) or not NODE_ID.match(node_id)):
            raise AdminError(falcon.HTTP_400, "bad_request", "id: 1-64 of A-Z a-z 0-9 . _ -")
        answer = _ask(store, {"op": "transfer_leader", "id": node_id}, timeout=30.0)
        send(resp, falcon.HTTP_200, {"leader_id": answer["leader_id"],
                                     "previous_leader_id": answer["previous_leader_id"]})


class RaftSnapshot(_Base):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auth.check(req)
        answer = _ask(_cluster_store(self.svc), {"op": "snapshot"}, timeout=40.0)
        send(resp, falcon.HTTP_200, {k: answer.get(k) for k in (
            "success", "snapshot_index", "snapshot_term", "size_bytes", "created_at")})


class InternalBlob:
    """``GET /_bleepstore/internal/blob?ref=&offset=&length=`` (cluster.md §9): a peer
    streams one of this node's blobs. Only with the cluster secret; refs are this node's
    local refs, checked against the local backend's grammar before any I/O."""

    def __init__(self, storage: OwnerPlacement, secret: str) -> None:
        self.storage, self.secret = storage, secret.encode()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = (req.get_header(TOKEN_HEADER) or "").encode()
        if not self.secret or not hmac.compare_digest(given, self.secret):
            raise errors.AccessDenied()
        try:
            ref = req.get_param("ref", required=True)
            offset = int(req.get_param("offset") or 0)
            raw_length = req.get_param("length")
            length = None if raw_length is None else int(raw_length)
            size = self.storage.local.size(ref)
            if offset < 0 or (length is not None and length < 0):
                raise ValueError("negative offset or length")
        except BlobMissing:
            raise errors.NoSuchKey() from None
        except (ValueError, falcon.HTTPBadRequest) as exc:
            raise errors.InvalidArgument(f"internal blob fetch: {exc}") from None
        count = max(0, min(size - offset, size if length is None else length))
        resp.stream = self.storage.local.open_read(ref, offset, count)
        resp.content_length = count
        resp.set_header(SIZE_HEADER, str(size))


def add_cluster_routes(app: falcon.App[Any, Any], svc: Services, auth: AdminAuth) -> None:
    app.add_route("/admin/cluster/status", ClusterStatus(svc, auth))
    app.add_route("/admin/cluster/raft/stats", RaftStats(svc, auth))
    app.add_route("/admin/cluster/raft/snapshot", RaftSnapshot(svc, auth))
    app.add_route("/admin/cluster/leader", ClusterLeader(svc, auth))
    app.add_route("/admin/cluster/nodes", ClusterNodes(svc, auth))
    app.add_route("/admin/cluster/nodes/{node_id}", ClusterNode(svc, auth))
