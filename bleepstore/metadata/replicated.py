"""ReplicatedStore: a worker's metadata store in cluster mode (cluster.md §1, §2, §5).

Reads are SqliteStore's, on this node's replica. Replicated commands go to the node's Raft
sidecar and come back with the outcome of this node's apply; node-local commands (GC
bookkeeping, node facts) are applied here directly, like every node-local table.

Invariants: a command is answered only after its entry committed on a majority and was
applied to this replica; a lost or timed-out answer raises ``OutcomeUnknown`` (the command
may still commit: what it staged must not be deleted at once); no sidecar -> 503.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from bleepstore import errors
from bleepstore.metadata import commands as c
from bleepstore.metadata.codec import decode_outcome, encode_command
from bleepstore.metadata.commands import Command
from bleepstore.metadata.sidecar_link import SidecarLink, SidecarUnavailable
from bleepstore.metadata.sqlite import SqliteStore

NODE_LOCAL: tuple[type, ...] = (c.AddGcIntent, c.GcSwept, c.PutNodeMeta)
READ_CONSISTENCY = ("local", "leader", "linearizable")
STATE_KEY = "raft_state"  # written by the sidecar (cluster/sidecar.py)
STATE_TTL_S = 0.5
# Definitely not committed: the entry was replaced, or never accepted.
REFUSED = {"queue_full": errors.SlowDown, "discarded": errors.ServiceUnavailable,
           "request_denied": errors.InternalError}


def raft_failure(reason: str) -> errors.S3Error:
    refused = REFUSED.get(reason)
    if refused is not None:
        return refused()
    return errors.OutcomeUnknown(f"The cluster did not confirm the write in time ({reason}); "
                                 "it may still be applied. Retry the request.")


class ReplicatedStore(SqliteStore):
    def __init__(self, path: str, *, socket_path: str, write_timeout_s: float,
                 read_consistency: str = "local", **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.link = SidecarLink(socket_path)
        self.write_timeout_s = write_timeout_s
        self.read_consistency = read_consistency
        self._state: tuple[float, dict[str, Any]] = (0.0, {})
        # Set by the composition root: may refuse a command before it is proposed (the
        # outbox-full "reject" policy: a refusal inside the apply would diverge replicas).
        self.admit: Callable[[Command], None] | None = None

    def apply(self, cmd: Command) -> Any:
        if isinstance(cmd, NODE_LOCAL):
            return super().apply(cmd)
        if self.admit is not None:
            self.admit(cmd)
        answer = self.call({"op": "apply", "cmd": encode_command(cmd),
                            "request_id": getattr(getattr(cmd, "origin", None),
                                                  "request_id", "")})
        if "raft_error" in answer:
            raise raft_failure(str(answer["raft_error"]))
        if answer.get("replayed"):
            return None
        result = decode_outcome(answer)
        if self.notify is not None:
            self.notify()
        return result

    def call(self, request: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """One frame to the sidecar; SidecarUnavailable -> OutcomeUnknown for a command
        (it may have been proposed), ServiceUnavailable for anything else."""
        try:
            return self.link.call(request, (timeout or self.write_timeout_s) + 2.0)
        except SidecarUnavailable as exc:
            if request.get("op") == "apply":
                raise errors.OutcomeUnknown(str(exc)) from None
            raise errors.ServiceUnavailable(str(exc)) from None

    def read_barrier(self, mode: str | None = None) -> None:
        """Make this replica at least as fresh as ``mode`` asks before a read."""
        mode = mode or self.read_consistency
        if mode == "local":
            return
        answer = self.call({"op": "barrier", "mode": mode})
        if "raft_error" in answer:
            raise errors.ServiceUnavailable(
                f"read consistency {mode}: no confirmation from the cluster "
                f"({answer['raft_error']})")

    def cluster_state(self) -> dict[str, Any]:
        """What the sidecar last published (leader, term, readiness), cached briefly."""
        at, state = self._state
        now = time.monotonic()
        if now - at > STATE_TTL_S:
            raw = self.node_meta(STATE_KEY)
            state = json.loads(raw) if raw else {}
            self._state = (now, state)
        return state
