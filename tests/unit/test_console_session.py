"""web/console/session.py on its own: what makes a session cookie valid, and the cookie,
origin and CSRF helpers."""

from __future__ import annotations

import re

from bleepstore.model import ConsoleSession, Credential
from bleepstore.web.console.session import (
    ActiveSession,
    SessionValidator,
    csrf_matches,
    hash_token,
    new_token,
    same_origin,
    session_cookie,
)

FUTURE, PAST = "2999-01-01T00:00:00.000Z", "2000-01-01T00:00:00.000Z"
DAVE = Credential("DAVE", "secret", "owner-dave", "dave")


def validator(sessions: dict[str, ConsoleSession],
              creds: dict[str, Credential]) -> SessionValidator:
    return SessionValidator(sessions.get, creds.get)


def test_a_valid_token_gives_its_session_and_credential() -> None:
    token = new_token()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    row = ConsoleSession(hash_token(token), "DAVE", "csrf", PAST, FUTURE)
    check = validator({row.token_hash: row}, {"DAVE": DAVE})
    assert check([token]) == ActiveSession(row, DAVE)
    assert check(["not-a-token", token]) == ActiveSession(row, DAVE)  # the first valid one
    assert check(None) is None and check([]) is None


def test_what_makes_a_session_invalid() -> None:
    token = new_token()
    live = ConsoleSession(hash_token(token), "DAVE", "csrf", PAST, FUTURE)
    expired = ConsoleSession(hash_token(token), "DAVE", "csrf", PAST, PAST)
    disabled = Credential("DAVE", "secret", "owner-dave", "dave", active=False)
    assert validator({}, {"DAVE": DAVE})([token]) is None  # logged out
    assert validator({live.token_hash: expired}, {"DAVE": DAVE})([token]) is None
    assert validator({live.token_hash: live}, {})([token]) is None  # user removed
    assert validator({live.token_hash: live}, {"DAVE": disabled})([token]) is None
    # the stored value is the hash, never the token: the token itself finds nothing
    assert validator({token: live}, {"DAVE": DAVE})([token]) is None


def test_cookie_origin_and_csrf_helpers() -> None:
    assert session_cookie("t", 60, False) == (
        "bleepstore_console=t; HttpOnly; SameSite=Strict; Path=/; Max-Age=60")
    assert session_cookie("", 0, True).endswith("; Max-Age=0; Secure")
    assert same_origin(None, "http", "h:9010")
    assert same_origin("http://h:9010", "http", "h:9010")
    assert not same_origin("https://h:9010", "http", "h:9010")
    assert not same_origin("null", "http", "h:9010")
    assert not same_origin("http://h:9010", "http", None)
    active = ActiveSession(ConsoleSession("x", "DAVE", "tok", PAST, FUTURE), DAVE)
    assert csrf_matches("tok", active)
    assert not csrf_matches(None, active) and not csrf_matches("to", active)
    assert not csrf_matches("tök", active)  # non-ASCII compares, never raises
