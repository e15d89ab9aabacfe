"""``checks.queue`` of /health and ``GET /admin/queue/status`` (events.md §9), answered by
any worker from the node's database: the relay holding the lease records the broker's
state there (only it talks to the broker); the outbox depth is read directly."""

from __future__ import annotations

import json
from typing import Any

from bleepstore.events.outbox import depth
from bleepstore.events.publisher import BrokerHealth

NODE_META_KEY = "event_relay"
TASK_CHANNEL_KEY = "task_channel"  # sampled by a task consumer (write tasks only)


def relay_state_json(health: BrokerHealth) -> str:
    return json.dumps({"connected": health.connected, "error": health.error})


def queue_status(store: Any, backend: str) -> dict[str, Any]:
    """``status`` is "error" while the broker is unreachable (the top level is then
    "degraded", still HTTP 200: events wait in the outbox, writes go on)."""
    raw = store.node_meta(NODE_META_KEY)
    state = json.loads(raw) if raw else {"connected": False, "error": "not connected yet"}
    raw_tasks = store.node_meta(TASK_CHANNEL_KEY)
    tasks = json.loads(raw_tasks) if raw_tasks else {}
    out: dict[str, Any] = {"status": "ok" if state.get("connected") else "error",
                           "backend": backend, "connected": bool(state.get("connected")),
                           "outbox_depth": depth(store.conn()),
                           "pending_tasks": tasks.get("pending_tasks", 0),
                           "dead_letter_count": tasks.get("dead_letter_count", 0),
                           "latency_ms": None}
    if state.get("error"):
        out["error"] = state["error"]
    return out
