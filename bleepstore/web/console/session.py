"""Console sessions: the cookie's token, its CSRF companion, and the validity check shared
by the console API and the S3 front.

Invariants: the cookie holds a random 256-bit token; only its SHA-256 hex is stored. A
session is valid only while its row exists, has not expired, and its credential exists
and is active; the credential is read through the worker's ``CredentialCache``, which
notices every credential change on the next lookup, so a disabled user's session is
refused by the very next request in every worker. Tokens and CSRF values are compared
in constant time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bleepstore.model import ConsoleSession, Credential
from bleepstore.s3.headers import now_iso

COOKIE_NAME = "bleepstore_console"
CSRF_HEADER = "x-bleepstore-csrf"
# secrets.token_urlsafe(32): 43 characters of the URL-safe base64 alphabet
TOKEN_FORMAT = re.compile(r"[A-Za-z0-9_-]{43}")
MAX_COOKIE_VALUES = 4  # several cookies of the same name: look at a few, not at all


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def session_cookie(token: str, max_age: int, secure: bool) -> str:
    """The ``Set-Cookie`` value of a login (``max_age`` 0 and no token: a logout)."""
    value = (f"{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/; "
             f"Max-Age={max_age}")
    return value + "; Secure" if secure else value


def same_text(given: str, expected: str) -> bool:
    """Constant-time equality of two header values (any text, not only ASCII)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                               expected.encode("utf-8", "surrogatepass"))


def same_origin(origin: str | None, scheme: str, host: str | None) -> bool:
    """No ``Origin`` header, or the request's own origin (scheme and Host)."""
    if origin is None:
        return True
    return host is not None and origin.lower() == f"{scheme}://{host}".lower()


@dataclass(frozen=True)
class ActiveSession:
    session: ConsoleSession
    credential: Credential


class SessionValidator:
    """``validator(cookie values) -> ActiveSession | None``; one per worker."""

    def __init__(self, get_session: Callable[[str], ConsoleSession | None],
                 lookup: Callable[[str], Credential | None]) -> None:
        self._get_session = get_session
        self._lookup = lookup

    def __call__(self, cookie_values: Iterable[str] | None) -> ActiveSession | None:
        for index, token in enumerate(cookie_values or ()):
            if index == MAX_COOKIE_VALUES:
                break
            active = self.check(token)
            if active is not None:
                return active
        return None

    def check(self, token: str) -> ActiveSession | None:
        if not TOKEN_FORMAT.fullmatch(token):
            return None
        session = self._get_session(hash_token(token))
        if session is None or session.expires_at <= now_iso():
            return None
        cred = self._lookup(session.access_key)
        if cred is None or not cred.active:
            return None
        return ActiveSession(session, cred)


def csrf_matches(given: str | None, active: ActiveSession) -> bool:
    return given is not None and same_text(given, active.session.csrf_token)
