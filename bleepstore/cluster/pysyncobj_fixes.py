"""A fix to pysyncobj's (0.3.17) Raft, applied where every peer message enters it:
**a rejected AppendEntries may only lower the follower's nextIndex.**

The livelock it ends (found by the partition test): a leader isolated with an uncommitted
tail entry at index ``i`` rejoins as a follower. pysyncobj's leader sends entries
optimistically, several batches per heartbeat, advancing nextIndex as it sends. The
follower rejects the first batch (entry ``i`` has another term: "reset to ``i``") and the
later ones (their prevLogIdx is past its log: "reset to ``i + 1``"). Both rejections
arrive, the later one wins, the leader resends from ``i + 1``, which conflicts again -- for
ever: the node never catches up while the majority carries on. Raft's rule is that a
rejection moves nextIndex back; one that would move it forward is stale (it answers a
message sent before a lower rejection was seen). Taking the minimum keeps every real hint;
a lower nextIndex than needed only resends entries the follower already holds, which our
journal keeps (``journal.DurableJournal.deleteEntriesFrom``).

Why an override, not a fork: pysyncobj registers ``self.__onMessageReceived`` (the mangled
``_SyncObj__onMessageReceived``) as its transport callback, looked up on the instance, so a
subclass method of that name sees every message first. ``check`` pins the names at start.
"""

from __future__ import annotations

from typing import Any

from pysyncobj import SyncObj

_ON_MESSAGE = "_SyncObj__onMessageReceived"
_NEXT_INDEX = "_SyncObj__raftNextIndex"


def guarded(message: dict[str, Any], next_index: int | None) -> dict[str, Any]:
    """``message`` as the leader should act on it, given its nextIndex for the sender."""
    if (message.get("type") != "next_node_idx" or not message.get("reset")
            or message.get("success") or next_index is None):
        return message
    hint = message.get("next_node_idx")
    if isinstance(hint, int) and hint > next_index:
        return {**message, "next_node_idx": next_index}
    return message


class PysyncobjFixes(SyncObj):  # type: ignore[misc]
    """Mix in before SyncObj (the member class derives from this)."""

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802
        if isinstance(message, dict) and message.get("type") == "next_node_idx" \
                and self._isLeader():
            message = guarded(message, getattr(self, _NEXT_INDEX).get(node))
        getattr(super(), _ON_MESSAGE)(node, message)


def check(member: SyncObj) -> None:
    """Fail at start, not silently, if a pysyncobj upgrade moved what the fix relies on."""
    if not callable(getattr(SyncObj, _ON_MESSAGE, None)) \
            or not isinstance(getattr(member, _NEXT_INDEX, None), dict):
        raise RuntimeError(f"pysyncobj changed: {_ON_MESSAGE} or {_NEXT_INDEX} is gone; the "
                           "fix in bleepstore/cluster/pysyncobj_fixes.py needs a new seam")
