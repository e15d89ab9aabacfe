"""The pysyncobj member of this node (cluster.md §2, §11) and an adapter over what
pysyncobj exposes about itself (§10.1 RaftStats): every access to its status lives here.

Invariants: created in the sidecar process only (after any fork: a SyncObj from before a
fork is dead in the child); the durable journal is installed before it exists; its one
replicated method takes and returns JSON text, so pickling only ever sees strings.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pysyncobj import SyncObjConf, replicated

from bleepstore.cluster import journal, pysyncobj_fixes
from bleepstore.cluster.applier import EXIT_UNTRUSTED, Applier
from bleepstore.config import ClusterConfig

log = logging.getLogger("bleepstore.cluster")

STATES = {0: "follower", 1: "candidate", 2: "leader"}


@dataclass(frozen=True)
class Peer:
    node_id: str
    addr: str
    api_addr: str = ""


def peers_of(cfg: ClusterConfig) -> list[Peer]:
    """``cluster.peers``: "host:port" strings (the address doubles as the id) or mappings."""
    out = []
    for item in cfg.peers:
        if isinstance(item, str):
            out.append(Peer(item, item))
        else:
            out.append(Peer(str(item["id"]), str(item["addr"]), str(item.get("api_addr", ""))))
    return out


def self_addr(cfg: ClusterConfig) -> str:
    return cfg.advertise_addr or cfg.bind_addr


def build_conf(cfg: ClusterConfig, applier: Applier, **hooks: Any) -> SyncObjConf:
    election = cfg.election_timeout_ms / 1000
    data_dir = Path(cfg.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return SyncObjConf(
        bindAddress=cfg.bind_addr,
        journalFile=str(data_dir / "raft.journal"),
        fullDumpFile=str(data_dir / "raft.dump"),
        serializer=applier.serialize, deserializer=applier.deserialize,
        dynamicMembershipChange=True, commandsWaitLeader=True, autoTick=True,
        # NOTE: batching holds every sync call for ~0.1 s; unbatched, an entry goes out as
        # soon as it is in the (fsync'd) journal.
        appendEntriesUseBatch=False,
        raftMinTimeout=election, raftMaxTimeout=2 * election,
        appendEntriesPeriod=cfg.heartbeat_interval_ms / 1000,
        leaderFallbackTimeout=5 * election,
        connectionTimeout=max(3.5, 3 * 2 * election),
        # NOTE: pysyncobj waits 5 s by default before redialling a peer that refused: a
        # member started before its peer then hears no leader for up to 5 s and, with no
        # PreVote in pysyncobj, keeps calling elections that depose healthy leaders.
        connectionRetryTime=election / 2,
        logCompactionMinEntries=cfg.snapshot_interval,
        logCompactionMinTime=cfg.snapshot_min_interval_s,
        password=cfg.secret or None,
        maxBindRetries=10, bindRetryTime=0.5,
        **hooks)


class MetadataStateMachine(pysyncobj_fixes.PysyncobjFixes):
    def __init__(self, addr: str, partners: list[str], conf: SyncObjConf,
                 applier: Applier) -> None:
        self._applier = applier  # before SyncObj starts ticking (it replays at once)
        self._tick_calls: deque[Callable[[], None]] = deque()
        # NOTE: pysyncobj's tick thread logs and retries a failing journal forever (writes
        # would just time out): a journal that cannot write ends the member instead.
        journal.install(on_failure=lambda exc: _untrusted(exc))
        super().__init__(addr, partners, conf)
        pysyncobj_fixes.check(self)

    def call_on_tick(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on pysyncobj's tick thread (within one autoTickPeriod): its
        state and transport are not thread-safe, and only some public calls queue."""
        self._tick_calls.append(fn)

    def _onTick(self, timeToWait: float = 0.0) -> None:  # noqa: N802, N803
        while self._tick_calls:
            fn = self._tick_calls.popleft()
            try:
                fn()
            except Exception:  # one caller's failure must not stop the tick
                log.exception("a call on the raft tick thread failed")
        super()._onTick(timeToWait)

    @replicated  # type: ignore[untyped-decorator]
    def apply(self, text: str) -> str:
        # pysyncobj bumps raftLastApplied only after this returns (pinned by a unit test).
        return self._applier.apply(self.raftLastApplied + 1, text)


def _untrusted(exc: BaseException) -> None:
    log.critical("raft journal write failed, exiting: %s", exc)
    os._exit(EXIT_UNTRUSTED)


def status(node: MetadataStateMachine) -> dict[str, Any]:
    """getStatus(), read from another thread than the tick's: a dict it changes while we
    copy it is simply read again."""
    for _ in range(20):
        try:
            raw: dict[str, Any] = node.getStatus()
            break
        except RuntimeError:  # dictionary changed size during iteration
            time.sleep(0.001)
    else:
        raise RuntimeError("raft status unavailable")
    leader = raw.get("leader")
    partners = {k.removeprefix("partner_node_status_server_"): v == 2
                for k, v in raw.items() if k.startswith("partner_node_status_server_")}
    return {"state": STATES.get(int(raw["state"]), "unknown"),
            "term": int(raw["raft_term"]), "commit_index": int(raw["commit_idx"]),
            "applied_index": int(raw["last_applied"]),
            "leader_commit_index": raw.get("leader_commit_idx"),
            "leader_addr": leader.id if leader is not None else None,
            "has_quorum": bool(raw["has_quorum"]), "log_len": int(raw["log_len"]),
            "partners": partners, "self_addr": raw["self"].id}
