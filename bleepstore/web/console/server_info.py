"""``GET /console/api/server``: what the console's overview page shows, from the same
sources as the operator endpoints (/health's document, /metrics' registry, the queue
status, the Raft sidecar's state), so the two never disagree.

Invariants: any logged-in user may read it; it carries no secret and no configuration;
a failing source is reported (null or an error entry), never a failed response.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import falcon

from bleepstore import __version__, errors
from bleepstore.core.services import Services
from bleepstore.metadata.replicated import ReplicatedStore
from bleepstore.web.console.guard import ConsoleGuard
from bleepstore.web.console.responses import send_json
from bleepstore.web.metrics import Metrics
from bleepstore.web.probes import Health

log = logging.getLogger("bleepstore.console")

# summed sample name -> the field it adds to
SAMPLE_FIELDS = {
    "bleepstore_http_requests_total": "requests_total",
    "bleepstore_bytes_received_total": "bytes_in_total",
    "bleepstore_bytes_sent_total": "bytes_out_total",
    "bleepstore_http_request_duration_seconds_sum": "latency_sum_s",
    "bleepstore_http_request_duration_seconds_count": "latency_count",
}


def metric_totals(metrics: Metrics) -> dict[str, Any]:
    """Request counters summed over every label (and every worker)."""
    totals: dict[str, Any] = {"requests_total": 0, "errors_4xx_total": 0,
                              "errors_5xx_total": 0, "bytes_in_total": 0,
                              "bytes_out_total": 0, "latency_sum_s": 0.0, "latency_count": 0}
    for family in metrics.scrape_registry().collect():
        for sample in family.samples:
            field = SAMPLE_FIELDS.get(sample.name)
            if field is None:
                continue
            totals[field] += sample.value
            if field == "requests_total":
                status = sample.labels.get("status", "")
                if status[:1] in ("4", "5"):
                    totals[f"errors_{status[0]}xx_total"] += sample.value
    return {k: (round(v, 6) if k == "latency_sum_s" else int(v)) for k, v in totals.items()}


def _disk(name: str, path: Path) -> dict[str, Any] | None:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return {"name": name, "path": str(path), "total": usage.total, "used": usage.used,
            "free": usage.free}


def _cluster(store: ReplicatedStore) -> dict[str, Any]:
    state = store.cluster_state()
    out: dict[str, Any] = {k: state.get(k) for k in (
        "node_id", "leader_id", "state", "term", "has_quorum", "ready")}
    try:
        status = store.call({"op": "status"}, timeout=2.0)
    except errors.S3Error:
        status = {}
    nodes = status.get("nodes") if status.get("ok") else None
    out["nodes"] = None if nodes is None else [
        {"id": n.get("id"), "api_addr": n.get("api_addr", ""),
         "state": n.get("state", "unknown"), "healthy": bool(n.get("healthy"))}
        for n in nodes if n.get("in_raft", True)]
    return out


class ServerInfo:
    def __init__(self, svc: Services, guard: ConsoleGuard, health: Health,
                 metrics: Metrics | None,
                 queue: Callable[[], dict[str, Any]] | None) -> None:
        self.svc, self.guard, self.health = svc, guard, health
        self.metrics, self.queue = metrics, queue

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.guard.session(req)
        send_json(resp, 200, {
            "version": __version__, "health": self.health.document()[1],
            "disk": self._disks(), "metrics": self._optional(self._metrics),
            "queue": self._optional(self.queue), "cluster": self._optional(self._cluster)})

    def _disks(self) -> list[dict[str, Any]]:
        found = [_disk("metadata", self.svc.store.path.parent)]
        storage = self.svc.config.storage
        if storage.backend == "local":
            found.append(_disk("objects", Path(storage.local.root_dir)))
        return [d for d in found if d is not None]

    def _metrics(self) -> dict[str, Any] | None:
        return metric_totals(self.metrics) if self.metrics is not None else None

    def _cluster(self) -> dict[str, Any] | None:
        store = self.svc.store
        return _cluster(store) if isinstance(store, ReplicatedStore) else None

    @staticmethod
    def _optional(source: Callable[[], dict[str, Any] | None] | None) -> Any:
        if source is None:
            return None
        try:
            return source()
        except Exception:  # a part of the overview is never worth a failed page
            log.warning("console overview: a source failed", exc_info=True)
            return None
