"""The admin API on ``server.admin_port`` (cluster.md §10.2-§10.4; §10.1 is web/cluster.py).

Invariants: reachable only on the admin port (the front middleware routes by the local
port of the accepted socket, never by Host); every call needs the bearer token,
compared in constant time; secrets appear only in the response that creates them.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import falcon

from bleepstore import __version__
from bleepstore.config import redacted
from bleepstore.core.reconcile import reconcile
from bleepstore.core.services import Services
from bleepstore.credentials import new_credential
from bleepstore.metadata.commands import (
    DeleteCredential,
    InvalidReassignTarget,
    PutCredential,
    UserOwnsBuckets,
)
from bleepstore.model import Credential

STARTED = time.time()


class AdminError(Exception):
    def __init__(self, status: str, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def send(resp: falcon.Response, status: str, body: Any) -> None:
    resp.status = status
    resp.content_type = "application/json"
    resp.data = json.dumps(body, sort_keys=True).encode()


def handle_admin_error(req: falcon.Request, resp: falcon.Response, ex: AdminError,
                       params: Any) -> None:
    send(resp, ex.status, {**ex.extra, "error": ex.code, "message": ex.message})


def json_body(req: falcon.Request) -> dict[str, Any]:
    raw = req.bounded_stream.read(64 * 1024)
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise AdminError(falcon.HTTP_400, "bad_request", "Body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise AdminError(falcon.HTTP_400, "bad_request", "Body must be a JSON object.")
    return body


def _public(c: Credential) -> dict[str, Any]:
    out: dict[str, Any] = {"access_key_id": c.access_key_id,
                           "status": "active" if c.active else "disabled",
                           "created_at": c.created_at}
    if c.description is not None:
        out["description"] = c.description
    return out


class AdminAuth:
    """Falcon hook-like check, called by every admin resource."""

    def __init__(self, token: str) -> None:
        self.token = token.encode()

    def check(self, req: falcon.Request) -> None:
        header = req.get_header("Authorization") or ""
        given = header[7:].encode() if header.startswith("Bearer ") else b""
        if not self.token or not hmac.compare_digest(given, self.token):
            raise AdminError(falcon.HTTP_401, "unauthorized",
                             "Missing or invalid admin bearer token.")


class CredentialsCollection:
    def __init__(self, svc: Services, auth: AdminAuth) -> None:
        self.svc, self.auth = svc, auth

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auth.check(req)
        creds = [_public(c) for c in self.svc.store.list_credentials()]
        send(resp, falcon.HTTP_200, {"credentials": creds})

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auth.check(req)
        body = json_body(req)
        description = body.get("description")
        if description is not None and (not isinstance(description, str)
                                        or len(description) > 256):
            raise AdminError(falcon.HTTP_400, "bad_request",
                             "description must be a string of at most 256 characters.")
        name = body.get("display_name")
        cred = new_credential(str(name) if name else None, description)
        self.svc.store.apply(PutCredential(cred))
        out = _public(cred)
        out["secret_access_key"] = cred.secret_key
        send(resp, falcon.HTTP_201, out)


class CredentialItem:
    def __init__(self, svc: Services, auth: AdminAuth) -> None:
        self.svc, self.auth = svc, auth

    def _get(self, key: str) -> Credential:
        cred = self.svc.store.get_credential(key)
        if cred is None:
            raise AdminError(falcon.HTTP_404, "not_found", f"No credential {key}.")
        return cred

    def _not_bootstrap(self, key: str, action: str) -> None:
        # NOTE: recovery re-creates the bootstrap key, active, at every start, so removing
        # or disabling it would silently undo itself; rotating it is a config change.
        if key == self.svc.config.auth.access_key:
            raise AdminError(falcon.HTTP_409, "bootstrap_credential",
                             f"{key} is the bootstrap credential (auth.access_key) and cannot "
                             f"be {action}; change the configuration and restart instead.")

    def on_delete(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        """``?reassign_to=KEY`` hands the user's buckets over; without it, 409 if any."""
        self.auth.check(req)
        self._get(key)
        self._not_bootstrap(key, "removed")
        try:
            removed = self.svc.store.apply(DeleteCredential(key, req.get_param("reassign_to")))
        except UserOwnsBuckets as exc:
            raise AdminError(falcon.HTTP_409, "user_owns_buckets",
                             f"{key} still owns buckets; delete them or pass reassign_to.",
                             buckets=list(exc.buckets)) from None
        except InvalidReassignTarget as exc:
            raise AdminError(falcon.HTTP_400, "bad_request", f"reassign_to: {exc}") from None
        if not removed:
            raise AdminError(falcon.HTTP_404, "not_found", f"No credential {key}.")
        resp.status = falcon.HTTP_204

    def on_put_status(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        self.auth.check(req)
        status = json_body(req).get("status")
        if status not in ("active", "disabled"):
            raise AdminError(falcon.HTTP_400, "bad_request",
                             'status must be "active" or "disabled".')
        cred = self._get(key)
        if status == "disabled":
            self._not_bootstrap(key, "disabled")
        updated = Credential(cred.access_key_id, cred.secret_key, cred.owner_id,
                             cred.display_name, status == "active", cred.created_at,
                             cred.description)
        self.svc.store.apply(PutCredential(updated))
        send(resp, falcon.HTTP_200, _public(updated))


class AdminStatus:
    def __init__(self, svc: Services, auth: AdminAuth) -> None:
        self.svc, self.auth = svc, auth

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auth.check(req)
        started = datetime.fromtimestamp(STARTED, UTC).isoformat()
        mode = "cluster" if self.svc.config.metadata.engine == "raft" else "embedded"
        send(resp, falcon.HTTP_200, {"version": __version__, "mode": mode,
                                      "uptime_seconds": int(time.time() - STARTED),
                                      "healthy": True, "started_at": started})


class AdminStorageStats:
    def __init__(self, svc: Services, auth: AdminAuth) -> None:
        self.svc, self.auth = svc, auth

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auth.check(req)
        s = self.svc.store.stats()
        send(resp, falcon.HTTP_200, {"total_objects": s["object_count"],
                                      "total_size_bytes": s["total_bytes"],
                                      "total_buckets": s["bucket_count"],
                                      "total_multipart_uploads": s["upload_count"]})


class AdminStorageStatus:
    def __init__(self, svc: Services, auth: AdminAuth) -> None:
        self.svc, self.auth = svc, auth

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auth.check(req)
        try:
            self.svc.storage.check()
            state = "healthy"
        except Exception:  # OSError on disk, a gateway's S3Error: both mean unusable
            state = "unavailable"
        st = self.svc.config.storage
        if st.backend == "local":
            where = {"backend": "filesystem", "data_directory": st.local.root_dir}
        else:
            section = getattr(st, st.backend)
            where = {"backend": st.backend,
                     "bucket": getattr(section, "bucket", "") or section.container}
        send(resp, falcon.HTTP_200, {**where, "state": state, "read_only": False})


class AdminQueueStatus:
    """GET /admin/queue/status (events.md §9): the same object as /health's checks.queue."""

    def __init__(self, svc: Services, auth: AdminAuth,
                 status: Callable[[], dict[str, Any]]) -> None:
        self.svc, self.auth, self.status = svc, auth, status

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auth.check(req)
        send(resp, falcon.HTTP_200, self.status())


class AdminQueueTask:
    """GET /admin/queue/tasks/{task_id} (events.md §9)."""

    def __init__(self, svc: Services, auth: AdminAuth) -> None:
        self.svc, self.auth = svc, auth

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        self.auth.check(req)
        row = self.svc.tasks.rows.get(task_id) if self.svc.tasks is not None else None
        if row is None:
            send(resp, falcon.HTTP_404, {"error": "not_found", "task_id": task_id})
            return
        send(resp, falcon.HTTP_200, row.public())


class AdminReconcile:
    """POST /admin/storage/reconcile: the orphan scan (storage.md §5.5)."""

    def __init__(self, svc: Services, auth: AdminAuth) -> None:
        self.svc, self.auth = svc, auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auth.check(req)
        counts = reconcile(self.svc)
        send(resp, falcon.HTTP_200, {"scanned": counts["orphans_scanned"],
                                      "deleted": counts["orphans_removed"],
                                      "errors": counts["orphans_failed"]})


class AdminConfig:
    def __init__(self, svc: Services, auth: AdminAuth) -> None:
        self.svc, self.auth = svc, auth

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auth.check(req)
        cfg = self.svc.config
        body = redacted(cfg)
        body.update(listen_addr=f"{cfg.server.host}:{cfg.server.port}",
                    admin_listen_addr=f"{cfg.server.admin_host}:{cfg.server.admin_port}",
                    data_directory=cfg.storage.local.root_dir,
                    mode="cluster" if cfg.metadata.engine == "raft" else "embedded")
        send(resp, falcon.HTTP_200, body)


class AdminNotFound:
    def _any(self, req: falcon.Request, resp: falcon.Response, **_: Any) -> None:
        raise AdminError(falcon.HTTP_404, "not_found", "No such admin endpoint.")

    on_get = on_post = on_put = on_delete = on_head = _any


def add_admin_routes(app: falcon.App[Any, Any], svc: Services,
                     queue_status: Callable[[], dict[str, Any]] | None = None) -> None:
    auth = AdminAuth(svc.config.server.admin_token)
    app.add_error_handler(AdminError, handle_admin_error)
    app.add_route("/admin/credentials", CredentialsCollection(svc, auth))
    item = CredentialItem(svc, auth)
    app.add_route("/admin/credentials/{key}", item)
    app.add_route("/admin/credentials/{key}/status", item, suffix="status")
    app.add_route("/admin/status", AdminStatus(svc, auth))
    app.add_route("/admin/storage/stats", AdminStorageStats(svc, auth))
    app.add_route("/admin/storage/status", AdminStorageStatus(svc, auth))
    app.add_route("/admin/storage/reconcile", AdminReconcile(svc, auth))
    app.add_route("/admin/config", AdminConfig(svc, auth))
    if queue_status is not None:
        app.add_route("/admin/queue/status", AdminQueueStatus(svc, auth, queue_status))
        app.add_route("/admin/queue/tasks/{task_id}", AdminQueueTask(svc, auth))
    from bleepstore.web.cluster import add_cluster_routes

    add_cluster_routes(app, svc, auth)
    app.add_route("/admin/_not_found", AdminNotFound())
