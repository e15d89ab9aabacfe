"""The fix to pysyncobj's log backtracking (bleepstore/cluster/pysyncobj_fixes.py); the
livelock itself is reproduced on real processes by
tests/cluster/test_cluster.py::test_a_partitioned_leader_rejoins_without_divergence."""

from __future__ import annotations

import socket

import pytest
from pysyncobj import SyncObj, SyncObjConf

from bleepstore.cluster import pysyncobj_fixes as fixes


def reply(next_idx: int, *, reset: bool = True, success: bool = False) -> dict[str, object]:
    return {"type": "next_node_idx", "next_node_idx": next_idx, "reset": reset,
            "success": success}


def test_a_stale_rejection_cannot_raise_next_index() -> None:
    # the follower's entry 13 conflicts ("reset to 13"); a reply to a batch sent before
    # that was seen says "my log ends at 13: reset to 14" -- it must not undo the 13
    assert fixes.guarded(reply(14), 13)["next_node_idx"] == 13


@pytest.mark.parametrize("message", [
    reply(13),  # a rejection that lowers: kept as sent
    reply(200, reset=False, success=True),  # success moves forward: untouched
    reply(200, reset=False),  # a transmission in progress: untouched
    {"type": "append_entries", "next_node_idx": 500},
])
def test_everything_else_passes_unchanged(message: dict[str, object]) -> None:
    assert fixes.guarded(message, 100 if message.get("success") else 119) is message


def test_no_next_index_known_passes_unchanged() -> None:
    message = reply(14)
    assert fixes.guarded(message, None) is message


def test_the_seam_is_where_the_guard_expects_it() -> None:
    """A pysyncobj upgrade that renames the private callback or the nextIndex map must
    fail here (and at the sidecar's start), not silently disable the guard."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    class Member(fixes.PysyncobjFixes):
        pass

    member = Member(f"127.0.0.1:{port}", [], SyncObjConf(autoTick=False))
    try:
        fixes.check(member)
        # the transport calls the subclass's method: the guard sees every message
        assert type(member)._SyncObj__onMessageReceived is not \
            SyncObj._SyncObj__onMessageReceived  # type: ignore[attr-defined]
    finally:
        member.destroy()
