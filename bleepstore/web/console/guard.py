"""Who may call a console API resource: a valid session, plus the CSRF header and the
request's own origin for every change, plus the bootstrap key for user administration.

Invariants: a resource asks the guard before it reads its body or anything else; the
session's user becomes ``ctx.principal`` (so the access log names them), nothing else.
"""

from __future__ import annotations

import falcon

from bleepstore.model import Principal
from bleepstore.web.console.responses import ConsoleError
from bleepstore.web.console.session import (
    COOKIE_NAME,
    CSRF_HEADER,
    ActiveSession,
    SessionValidator,
    csrf_matches,
    same_origin,
)


def check_origin(req: falcon.Request) -> None:
    """403 when the request comes from another origin (a cross-site form or fetch)."""
    if not same_origin(req.get_header("Origin"), req.scheme, req.get_header("Host")):
        raise ConsoleError(403, "bad_origin", "The request comes from another origin.")


class ConsoleGuard:
    def __init__(self, validator: SessionValidator, admin_key: str) -> None:
        self.validator = validator
        self.admin_key = admin_key

    def session(self, req: falcon.Request) -> ActiveSession:
        active = self.validator(req.get_cookie_values(COOKIE_NAME))
        if active is None:
            raise ConsoleError(401, "no_session", "Not logged in, or the session has ended.")
        cred = active.credential
        req.context.principal = Principal(cred.owner_id, cred.display_name, cred.access_key_id)
        return active

    def change(self, req: falcon.Request) -> ActiveSession:
        """A valid session, from its own origin, with its CSRF token in the header."""
        active = self.session(req)
        check_origin(req)
        if not csrf_matches(req.get_header(CSRF_HEADER), active):
            raise ConsoleError(403, "csrf_failed",
                               f"The {CSRF_HEADER} header does not match this session.")
        return active

    def is_admin(self, active: ActiveSession) -> bool:
        return active.credential.access_key_id == self.admin_key

    def admin(self, req: falcon.Request, *, change: bool) -> ActiveSession:
        active = self.change(req) if change else self.session(req)
        if not self.is_admin(active):
            raise ConsoleError(403, "forbidden", "Only the administrator may manage users.")
        return active
