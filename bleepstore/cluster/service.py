"""What the sidecar does for a worker's frame (cluster.md §2, §5, §7, §10): propose a
command, a read barrier, status, membership changes, a snapshot.

Invariants:
- A proposal is answered only after its entry committed and was applied HERE (pysyncobj's
  sync call returns from this node's apply), so the worker's next read sees it.
- A raft failure is answered as ``{"ok": false, "raft_error": reason}``; the worker maps it
  (timeout and leader loss: the outcome is unknown and the command may still commit).
- One membership change at a time.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pysyncobj import FAIL_REASON, SyncObjException

from bleepstore.cluster.applier import SNAPSHOT_KEY
from bleepstore.cluster.node import MetadataStateMachine, Peer, status
from bleepstore.metadata.sqlite import SqliteStore
from bleepstore.s3.headers import now_iso

REASONS = {FAIL_REASON.QUEUE_FULL: "queue_full", FAIL_REASON.MISSING_LEADER: "missing_leader",
           FAIL_REASON.DISCARDED: "discarded", FAIL_REASON.NOT_LEADER: "not_leader",
           FAIL_REASON.LEADER_CHANGED: "leader_changed",
           FAIL_REASON.REQUEST_DENIED: "request_denied",
           FAIL_REASON.UNKNOWN_OUTCOME: "unknown_outcome"}
MEMBERSHIP_TIMEOUT_S = 10.0
SNAPSHOT_TIMEOUT_S = 30.0
TRANSFER_RETRY_S = 1.0  # > raftMaxTimeout: an election the target started has ended


def _reason(exc: SyncObjException) -> str:
    arg = exc.args[0] if exc.args else None
    if arg == "Timeout":
        return "timeout"
    return REASONS.get(arg, str(arg)) if isinstance(arg, int) else str(arg)


class Service:
    def __init__(self, node: MetadataStateMachine, store: SqliteStore, node_id: str,
                 cluster_id: str, peers: list[Peer], write_timeout_s: float,
                 dump_path: Path) -> None:
        self.node, self.store, self.node_id = node, store, node_id
        self.cluster_id, self.peers = cluster_id, peers
        self.write_timeout_s, self.dump_path = write_timeout_s, dump_path
        self._membership = threading.Lock()
        # Set by the sidecar once its bootstrap proposals (its own cluster_nodes row) are
        # applied: until then peers cannot reach its blobs, so it does not report ready.
        self.registered = False
        self._ops: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "apply": self._apply, "barrier": self._barrier, "status": self._status,
            "add_node": self._add_node, "remove_node": self._remove_node,
            "snapshot": self._snapshot, "transfer_leader": self._transfer_leader}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = self._ops.get(str(request.get("op")))
        if op is None:
            return {"ok": False, "code": "bad_request", "message": "unknown op"}
        return op(request)

    # --- proposals ------------------------------------------------------------------------

    def propose(self, entry: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        entry = {**entry, "v": 1, "origin": self.node_id, "ts": now_iso()}
        text = json.dumps(entry, separators=(",", ":"), ensure_ascii=False)
        try:
            answer = self.node.apply(text, sync=True, timeout=timeout or self.write_timeout_s)
        except SyncObjException as exc:
            return {"ok": False, "raft_error": _reason(exc)}
        result: dict[str, Any] = json.loads(answer)
        return result

    def _apply(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.propose({"type": "Command", "request_id": request.get("request_id", ""),
                             "cmd": request["cmd"]})

    def _barrier(self, request: dict[str, Any]) -> dict[str, Any]:
        """``linearizable``: an entry through the log (a quorum confirms this node's view
        of the leader's commit, and it is applied here once it returns). ``leader``: catch
        up with the commit index the leader last told us of, no quorum round."""
        if request.get("mode") == "linearizable":
            return self.propose({"type": "Barrier"})
        deadline = time.monotonic() + self.write_timeout_s
        while True:
            st = status(self.node)
            if st["state"] == "leader":
                return {"ok": True}
            target = st["leader_commit_index"]
            if st["leader_addr"] is not None and target is not None \
                    and st["applied_index"] >= target:
                return {"ok": True}
            if time.monotonic() >= deadline:
                return {"ok": False, "raft_error": "missing_leader"
                        if st["leader_addr"] is None else "timeout"}
            time.sleep(0.005)

    # --- status ---------------------------------------------------------------------------

    def nodes(self) -> list[dict[str, Any]]:
        rows = self.store.conn().execute(
            "SELECT node_id, raft_addr, api_addr FROM cluster_nodes ORDER BY node_id")
        known = {r[1]: Peer(r[0], r[1], r[2]) for r in rows}
        for peer in self.peers:
            known.setdefault(peer.addr, peer)
        return [{"id": p.node_id, "addr": p.addr, "api_addr": p.api_addr}
                for p in sorted(known.values(), key=lambda p: p.node_id)]

    def node_id_of(self, addr: str | None) -> str | None:
        if addr is None:
            return None
        for n in self.nodes():
            if n["addr"] == addr:
                return str(n["id"])
        return addr

    def _status(self, request: dict[str, Any]) -> dict[str, Any]:
        st = status(self.node)
        leader = st["leader_addr"]
        members = []
        for n in self.nodes():
            me = n["addr"] == st["self_addr"]
            in_raft = me or n["addr"] in st["partners"]
            state = st["state"] if me else ("leader" if n["addr"] == leader else
                                             "follower" if in_raft else "shutdown")
            healthy = me or bool(st["partners"].get(n["addr"]))
            members.append({**n, "state": state,
                            "healthy": healthy, "in_raft": in_raft})
        snap = self.store.node_meta(SNAPSHOT_KEY)
        return {"ok": True, "node_id": self.node_id, "cluster_id": self.cluster_id,
                "leader_id": self.node_id_of(leader),
                "ready": bool(self.node.isReady()) and self.registered,
                "snapshot": json.loads(snap) if snap else None, "nodes": members, **st}

    # --- membership (§7.2) ----------------------------------------------------------------

    def _wait_callback(self, start: Callable[[Callable[[Any, Any], None]], None]) -> str:
        done = threading.Event()
        outcome: list[Any] = []

        def callback(result: Any, error: Any) -> None:
            outcome.append(error)
            done.set()

        start(callback)
        if not done.wait(MEMBERSHIP_TIMEOUT_S):
            return "timeout"
        return "ok" if outcome[0] == FAIL_REASON.SUCCESS else REASONS.get(outcome[0], "failed")

    def _add_node(self, request: dict[str, Any]) -> dict[str, Any]:
        if not self._membership.acquire(blocking=False):
            return {"ok": False, "code": "conflict", "message": "membership change in progress"}
        try:
            node_id, addr = str(request["id"]), str(request["addr"])
            st = status(self.node)
            if addr == st["self_addr"] or addr in st["partners"]:
                return {"ok": False, "code": "conflict", "message": f"{addr} is a member"}
            entry = {"type": "AddNode", "node_id": node_id, "raft_addr": addr,
                     "api_addr": request.get("api_addr") or ""}
            answer = self.propose(entry)
            if not answer.get("ok"):
                return answer
            outcome = self._wait_callback(
                lambda cb: self.node.addNodeToCluster(addr, callback=cb))
            if outcome != "ok":
                return {"ok": False, "raft_error": outcome}
            return {"ok": True, "node": {"id": node_id, "addr": addr,
                                         "api_addr": entry["api_addr"]}}
        finally:
            self._membership.release()

    def _remove_node(self, request: dict[str, Any]) -> dict[str, Any]:
        if not self._membership.acquire(blocking=False):
            return {"ok": False, "code": "conflict", "message": "membership change in progress"}
        try:
            node_id = str(request["id"])
            found = [n for n in self.nodes() if n["id"] == node_id]
            if not found:
                return {"ok": False, "code": "not_found", "message": f"no node {node_id}"}
            addr = found[0]["addr"]
            st = status(self.node)
            if addr == st["leader_addr"]:
                return {"ok": False, "code": "conflict",
                        "message": "the node is the leader: transfer leadership first"}
            if addr in st["partners"]:
                outcome = self._wait_callback(
                    lambda cb: self.node.removeNodeFromCluster(addr, callback=cb))
                if outcome != "ok":
                    return {"ok": False, "raft_error": outcome}
            return self.propose({"type": "RemoveNode", "node_id": node_id})
        finally:
            self._membership.release()

    # --- leadership transfer -------------------------------------------------------------

    def _transfer_leader(self, request: dict[str, Any]) -> dict[str, Any]:
        """Hand leadership to ``id`` (or the most caught-up follower): before removing
        the leader (§7.2) or taking its machine down, without a failover's write gap.

        pysyncobj keeps accepting writes while the target runs its election, so a write
        that lands meanwhile makes this node's log longer than the target's and its vote
        is refused; the hand-over is asked again (once an election could have ended)
        until another node leads or the time is up."""
        st = status(self.node)
        me = st["self_addr"]
        if st["state"] != "leader":
            return {"ok": False, "code": "conflict", "message": "this node is not the leader "
                    f"(the leader is {self.node_id_of(st['leader_addr']) or 'unknown'})"}
        target: str | None = None
        if request.get("id"):
            found = [n["addr"] for n in self.nodes() if n["id"] == str(request["id"])]
            if not found or (found[0] != me and found[0] not in st["partners"]):
                return {"ok": False, "code": "not_found",
                        "message": f"no member {request['id']}"}
            if found[0] == me:
                return {"ok": True, "leader_id": self.node_id, "previous_leader_id": self.node_id}
            target = found[0]
        deadline, asked = time.monotonic() + 2 * self.write_timeout_s, float("-inf")
        while time.monotonic() < deadline:
            st = status(self.node)
            leader = st["leader_addr"]
            if leader is not None and leader != me:
                if target is not None and leader != target:
                    return {"ok": False, "code": "conflict", "message": f"{self.node_id_of(leader)}"
                            " took over instead (a write raced the hand-over): ask it"}
                return {"ok": True, "leader_id": self.node_id_of(leader),
                        "previous_leader_id": self.node_id}
            if st["state"] == "leader" and time.monotonic() - asked > TRANSFER_RETRY_S:
                outcome = self._wait_callback(lambda cb: self.node.call_on_tick(
                    lambda: self.node.transferLeadership(target, callback=cb)))
                if outcome == "ok":
                    asked = time.monotonic()
                elif outcome != "request_denied":  # denied: the target is not caught up yet
                    return {"ok": False, "raft_error": outcome}
            time.sleep(0.01)
        return {"ok": False, "raft_error": "timeout"}

    # --- snapshots (§6) -------------------------------------------------------------------

    def _snapshot(self, request: dict[str, Any]) -> dict[str, Any]:
        before = _mtime(self.dump_path)
        self.node.forceLogCompaction()
        deadline = time.monotonic() + SNAPSHOT_TIMEOUT_S
        while _mtime(self.dump_path) == before:
            if time.monotonic() >= deadline:
                return {"ok": False, "code": "internal_error",
                        "message": "the snapshot did not complete within 30 s"}
            time.sleep(0.1)
        snap = json.loads(self.store.node_meta(SNAPSHOT_KEY) or "{}")
        return {"ok": True, "success": True, "snapshot_index": snap.get("index"),
                "snapshot_term": snap.get("term"), "created_at": snap.get("at"),
                "size_bytes": os.path.getsize(self.dump_path)}


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
