"""Service endpoints on the S3 port: /health, /healthz, /readyz (observability.md §2).

Invariants: probes never raise into the S3 error path; a failing dependency shows as a
check with ``status: error`` and a short message, never a secret.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import falcon

from bleepstore.core.integrity import missing_blob_count
from bleepstore.core.services import Services

QUICK_CHECK_EVERY_S = 60.0


def _timed(check: Callable[[], None]) -> dict[str, Any]:
    start = time.monotonic()
    try:
        check()
        result: dict[str, Any] = {"status": "ok"}
    except Exception as exc:  # a probe reports, it never fails the request
        result = {"status": "error", "error": str(exc)[:200] or type(exc).__name__}
    result["latency_ms"] = int((time.monotonic() - start) * 1000)
    return result


class Health:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._last_quick_check = 0.0
        self.extra_checks: dict[str, Callable[[], dict[str, Any]]] = {}
        self.readiness_checks = ["metadata", "storage"]  # + "cluster" in cluster mode

    def _metadata(self) -> None:
        store = self.services.store
        store.conn().execute("SELECT 1").fetchone()
        if time.monotonic() - self._last_quick_check > QUICK_CHECK_EVERY_S:
            if not store.quick_check():
                raise RuntimeError("quick_check failed")
            self._last_quick_check = time.monotonic()

    def checks(self) -> dict[str, dict[str, Any]]:
        checks = {"metadata": _timed(self._metadata),
                  "storage": {**_timed(self.services.storage.check),
                              "backend": self.services.config.storage.backend}}
        # NOTE: rows whose blob is missing (storage.md §5.5) are reported, not fatal: the
        # rest of the store still serves, so the check stays "ok" and carries the count.
        try:
            missing = missing_blob_count(self.services)
        except Exception:  # a probe reports, it never fails the request
            missing = None
        if missing is not None:
            checks["storage"]["missing_blobs"] = missing
        for name, probe in self.extra_checks.items():
            checks[name] = probe()
        return checks

    def ready(self) -> bool:
        checks = self.checks()
        return all(checks[c]["status"] == "ok" for c in self.readiness_checks)

    def document(self) -> tuple[bool, dict[str, Any]]:
        """(metadata and storage are ok, the /health document); also shown by the console."""
        if not self.services.config.observability.health_check:
            return True, {"status": "ok"}
        checks = self.checks()
        critical_ok = all(checks[c]["status"] == "ok" for c in ("metadata", "storage"))
        all_ok = all(c["status"] == "ok" for c in checks.values())
        status = "ok" if all_ok else ("degraded" if critical_ok else "unavailable")
        return critical_ok, {"checks": checks, "status": status}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "application/json"
        if not self.services.config.observability.health_check:
            resp.data = b'{"status": "ok"}'
            return
        critical_ok, doc = self.document()
        resp.status = falcon.HTTP_200 if critical_ok else falcon.HTTP_503
        resp.data = json.dumps(doc, sort_keys=True).encode()

    on_head = on_get


class Liveness:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.status = falcon.HTTP_200 if self.enabled else falcon.HTTP_404
        resp.content_length = 0

    on_head = on_get


class Readiness:
    def __init__(self, health: Health, enabled: bool) -> None:
        self.health = health
        self.enabled = enabled

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not self.enabled:
            resp.status = falcon.HTTP_404
        else:
            resp.status = falcon.HTTP_200 if self.health.ready() else falcon.HTTP_503
        resp.content_length = 0

    on_head = on_get
