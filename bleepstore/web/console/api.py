"""The console's session API: login, logout, the current session, presigned URLs.

Invariants: a wrong secret, an unknown key and a disabled user get the same 401 after the
same work (a constant-time comparison against a stand-in secret for unknown keys); more
than ``MAX_FAILURES`` failed logins from one address within ``WINDOW_S`` get 429 (per
worker); the secret is never logged or echoed; a session is created only for an active
credential (checked again inside the command's transaction).
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import falcon

from bleepstore import errors
from bleepstore.core.services import Services
from bleepstore.metadata.commands import (
    CreateConsoleSession,
    DeleteConsoleSession,
    DeleteExpiredConsoleSessions,
)
from bleepstore.model import ConsoleSession, Credential, Principal
from bleepstore.s3.headers import iso_from_datetime
from bleepstore.s3.names import validate_bucket_name, validate_key
from bleepstore.s3.sigv4 import MAX_EXPIRES
from bleepstore.web.client_ip import environ_client_ip, parse_trusted
from bleepstore.web.console.guard import ConsoleGuard, check_origin
from bleepstore.web.console.presign import attachment_disposition, presign_get
from bleepstore.web.console.responses import ConsoleError, bad_request, json_body, send_json
from bleepstore.web.console.session import (
    ActiveSession,
    hash_token,
    new_token,
    session_cookie,
)

MAX_FAILURES = 10
WINDOW_S = 60.0
MAX_TRACKED_CLIENTS = 10000
MAX_FIELD_CHARS = 1024
# compared against when the key is unknown, so an unknown key costs what a wrong secret does
STAND_IN_SECRET = "x" * 40
INVALID = ConsoleError(401, "invalid_credentials", "The access key or secret key is wrong.")


class LoginLimiter:
    """Failed logins per client address in a sliding window (thread-safe, bounded)."""

    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S) -> None:
        self.max_failures, self.window_s = max_failures, window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        seen = self._failures.get(client)
        if seen is None:
            return deque()
        while seen and now - seen[0] > self.window_s:
            seen.popleft()
        if not seen:
            del self._failures[client]
        return seen

    def blocked(self, client: str) -> bool:
        with self._lock:
            return len(self._recent(client, time.monotonic())) >= self.max_failures

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            if client not in self._failures and len(self._failures) >= MAX_TRACKED_CLIENTS:
                for stale in [c for c in self._failures if not self._recent(c, now)]:
                    self._failures.pop(stale, None)
                if len(self._failures) >= MAX_TRACKED_CLIENTS:
                    self._failures.clear()  # NOTE: bounded memory beats a perfect count
            self._failures.setdefault(client, deque()).append(now)


def _text_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_FIELD_CHARS:
        raise bad_request(f"{name} must be a non-empty string.")
    if not is_utf8(value):
        raise bad_request(f"{name} is not valid Unicode text.")
    return value


def is_utf8(text: str) -> bool:
    """False for a string with a lone surrogate (JSON's "\ud800"): it has no UTF-8 form."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def session_body(active: ActiveSession, is_admin: bool) -> dict[str, Any]:
    return {"access_key": active.credential.access_key_id,
            "display_name": active.credential.display_name, "is_admin": is_admin,
            "csrf_token": active.session.csrf_token, "expires_at": active.session.expires_at}


class Login:
    def __init__(self, svc: Services, guard: ConsoleGuard, limiter: LoginLimiter) -> None:
        self.svc, self.guard, self.limiter = svc, guard, limiter
        # behind a trusted proxy every client would otherwise share the proxy's limit
        self.trusted = parse_trusted(svc.config.server.trusted_proxies)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        check_origin(req)
        client = environ_client_ip(req.env, self.trusted)
        if self.limiter.blocked(client):
            raise ConsoleError(429, "too_many_attempts",
                               "Too many failed logins; wait a minute and try again.")
        body = json_body(req)
        access_key, secret = _text_field(body, "access_key"), _text_field(body, "secret_key")
        cred = self._verify(access_key, secret)
        if cred is None:
            self.limiter.failed(client)
            raise INVALID
        active = self._open_session(cred)
        if active is None:  # disabled or removed meanwhile
            self.limiter.failed(client)
            raise INVALID
        req.context.principal = Principal(cred.owner_id, cred.display_name, cred.access_key_id)
        ttl = self.svc.config.console.session_ttl_s
        resp.append_header("Set-Cookie", session_cookie(active[1], ttl, req.scheme == "https"))
        send_json(resp, 200, session_body(active[0], self.guard.is_admin(active[0])))

    def _verify(self, access_key: str, secret: str) -> Credential | None:
        cred = self.svc.store.get_credential(access_key)
        expected = cred.secret_key if cred is not None else STAND_IN_SECRET
        match = hmac.compare_digest(secret.encode(), expected.encode())
        return cred if cred is not None and cred.active and match else None

    def _open_session(self, cred: Credential) -> tuple[ActiveSession, str] | None:
        now = datetime.now(UTC)
        created = iso_from_datetime(now)
        expires = iso_from_datetime(now + timedelta(seconds=self.svc.config.console.session_ttl_s))
        store = self.svc.store
        store.apply(DeleteExpiredConsoleSessions(created))  # housekeeping, at every login
        token, csrf = new_token(), new_token()
        session = ConsoleSession(hash_token(token), cred.access_key_id, csrf, created, expires)
        if not store.apply(CreateConsoleSession(session)):
            return None
        return ActiveSession(session, cred), token


class Logout:
    def __init__(self, svc: Services, guard: ConsoleGuard) -> None:
        self.svc, self.guard = svc, guard

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        active = self.guard.change(req)
        self.svc.store.apply(DeleteConsoleSession(active.session.token_hash))
        resp.append_header("Set-Cookie", session_cookie("", 0, req.scheme == "https"))
        resp.status = falcon.HTTP_204


class SessionInfo:
    def __init__(self, guard: ConsoleGuard) -> None:
        self.guard = guard

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        active = self.guard.session(req)
        send_json(resp, 200, session_body(active, self.guard.is_admin(active)))


def _expires(body: dict[str, Any]) -> int:
    value = body.get("expires_s", 3600)
    if type(value) is not int or not 1 <= value <= MAX_EXPIRES:
        raise bad_request(f"expires_s must be an integer from 1 to {MAX_EXPIRES}.")
    return value


class Presign:
    """A presigned GET URL for an existing bucket's key, signed as the session's user."""

    def __init__(self, svc: Services, guard: ConsoleGuard) -> None:
        self.svc, self.guard = svc, guard

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        active = self.guard.change(req)
        body = json_body(req)
        bucket, key = _text_field(body, "bucket"), _text_field(body, "key")
        expires_s, download = _expires(body), body.get("download", False)
        if not isinstance(download, bool):
            raise bad_request("download must be true or false.")
        try:
            validate_bucket_name(bucket)
            validate_key(key)
        except errors.S3Error as exc:
            raise bad_request(exc.msg) from None
        if self.svc.store.get_bucket(bucket) is None:
            raise ConsoleError(404, "no_such_bucket", f"There is no bucket {bucket}.")
        now = datetime.now(UTC).replace(microsecond=0)
        extra = {"response-content-disposition": attachment_disposition(key)} if download else {}
        url = presign_get(active.credential, scheme=req.scheme,
                          host=req.get_header("Host") or req.host, bucket=bucket, key=key,
                          expires_s=expires_s, region=self.svc.config.server.region, now=now,
                          extra=extra)
        send_json(resp, 200, {"url": url,
                              "expires_at": iso_from_datetime(now + timedelta(seconds=expires_s))})

