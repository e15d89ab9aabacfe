"""The web console at /console (GitHub issue 16): static pages plus a small JSON API.

The console acts as the logged-in user: after a login it calls the S3 API of this same
server with its session cookie and CSRF header (web/front.py), so the ACL and bucket
policy checks are those of S3 itself; the API here only opens and closes sessions,
presigns URLs, shows the server's state and, for the bootstrap user, manages users.

Invariants: wired only when ``console.enabled``; then /console paths are service paths
(for unsigned path-style requests) and every error on them is JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from bleepstore.core.services import Services
from bleepstore.model import Credential
from bleepstore.web.console.api import Login, LoginLimiter, Logout, Presign, SessionInfo
from bleepstore.web.console.assets import ConsoleIndex, ConsoleRedirect, ConsoleStatic
from bleepstore.web.console.guard import ConsoleGuard
from bleepstore.web.console.responses import ConsoleHeaders, install_error_handlers
from bleepstore.web.console.server_info import ServerInfo
from bleepstore.web.console.session import SessionValidator
from bleepstore.web.console.users import UserItem, Users
from bleepstore.web.metrics import Metrics
from bleepstore.web.probes import Health

__all__ = ["ConsoleHeaders", "SessionValidator", "add_console_routes", "session_validator"]


def session_validator(svc: Services, lookup: Callable[[str], Credential | None]
                      ) -> SessionValidator:
    return SessionValidator(svc.store.get_console_session, lookup)


def add_console_routes(app: falcon.App[Any, Any], svc: Services, validator: SessionValidator,
                       *, health: Health, metrics: Metrics | None,
                       queue: Callable[[], dict[str, Any]] | None) -> None:
    install_error_handlers(app)
    guard = ConsoleGuard(validator, svc.config.auth.access_key)
    app.add_route("/console", ConsoleRedirect())
    app.add_route("/console/", ConsoleIndex())
    app.add_route("/console/static/{name}", ConsoleStatic())
    app.add_route("/console/api/login", Login(svc, guard, LoginLimiter()))
    app.add_route("/console/api/logout", Logout(svc, guard))
    app.add_route("/console/api/session", SessionInfo(guard))
    app.add_route("/console/api/presign", Presign(svc, guard))
    app.add_route("/console/api/server", ServerInfo(svc, guard, health, metrics, queue))
    app.add_route("/console/api/users", Users(svc, guard))
    app.add_route("/console/api/users/{access_key}", UserItem(svc, guard))
