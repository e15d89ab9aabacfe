"""The web console's backend in process (webtest against the real create_app()): login and
its limiter, sessions and logout, the S3 API with the session cookie + CSRF header (same
ACLs as signed requests), presigned URLs, user administration, pages and their headers.

Cookies are sent by hand (webtest's own jar is emptied after every request), so each test
says exactly which cookie a request carries."""

from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import webtest
from support.wsgiapp import ACCESS_KEY, HOST, SECRET_KEY, S3App, make_config

from bleepstore.app import create_app
from bleepstore.config import ConsoleConfig
from bleepstore.metadata.commands import CreateConsoleSession
from bleepstore.metadata.sqlite import SqliteStore
from bleepstore.model import ConsoleSession
from bleepstore.recovery import run_recovery
from bleepstore.s3.headers import now_iso
from bleepstore.web.console import assets
from bleepstore.web.console.session import hash_token, new_token

S3NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
COOKIE = re.compile(r"^bleepstore_console=([A-Za-z0-9_-]{43}); HttpOnly; SameSite=Strict; "
                    r"Path=/; Max-Age=43200$")
CONSOLE_MESSAGE = "console session is not valid"


@dataclasses.dataclass
class Session:
    token: str
    csrf: str
    body: dict[str, Any]


class Console:
    """Requests as the console's browser code makes them: unsigned, cookie and CSRF header
    given explicitly."""

    def __init__(self, app: S3App) -> None:
        self.app = app

    def call(self, method: str, target: str, *, session: Session | None = None,
             token: str | None = None, csrf: str | None = None, body: bytes = b"",
             json_body: Any = None, headers: dict[str, str] | None = None,
             environ: dict[str, str] | None = None) -> webtest.TestResponse:
        hdrs = dict(headers or {})
        token = token if token is not None else (session.token if session else None)
        csrf = csrf if csrf is not None else (session.csrf if session else None)
        if token is not None:
            hdrs["Cookie"] = f"bleepstore_console={token}"
        if csrf is not None:
            hdrs["x-bleepstore-csrf"] = csrf
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        try:
            return self.app.call(method, target, sign=False, body=body, headers=hdrs,
                                 environ=environ)
        finally:
            self.app.test.cookiejar.clear()

    def login(self, key: str = ACCESS_KEY, secret: str = SECRET_KEY) -> Session:
        resp = self.call("POST", "/console/api/login",
                         json_body={"access_key": key, "secret_key": secret})
        assert resp.status_int == 200, resp.body
        found = COOKIE.match(resp.headers["Set-Cookie"])
        assert found, resp.headers["Set-Cookie"]
        return Session(found.group(1), resp.json["csrf_token"], resp.json)

    def new_user(self, admin: Session, name: str) -> tuple[str, str]:
        resp = self.call("POST", "/console/api/users", session=admin,
                         json_body={"display_name": name})
        assert resp.status_int == 201, resp.body
        return resp.json["access_key"], resp.json["secret_key"]


@pytest.fixture
def static_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The console's static files, as the app is built: a directory this test controls."""
    root = tmp_path / "static"
    root.mkdir()
    (root / "index.html").write_text("<!doctype html><title>console</title>")
    (root / "console.js").write_text("console.log('hi');")
    (root / "console.css").write_text("body{}")
    monkeypatch.setattr(assets, "STATIC_DIR", root)
    return root


@pytest.fixture
def console(static_dir: Path, s3app: S3App) -> Console:
    return Console(s3app)  # NOTE: static_dir first: the app reads it when it is built


def s3_error(resp: webtest.TestResponse) -> tuple[str, str]:
    root = ET.fromstring(resp.body)
    return root.findtext("Code") or "", root.findtext("Message") or ""


# --- login, session, logout --------------------------------------------------------------

def test_login_sets_a_session_cookie_and_answers_the_session(console: Console) -> None:
    s = console.login()
    assert s.body == {"access_key": ACCESS_KEY, "display_name": ACCESS_KEY, "is_admin": True,
                      "csrf_token": s.csrf, "expires_at": s.body["expires_at"]}
    assert s.body["expires_at"] > now_iso()
    again = console.call("GET", "/console/api/session", token=s.token)
    assert again.status_int == 200 and again.json == s.body
    assert again.headers["Cache-Control"] == "no-store"


def test_the_cookie_is_secure_over_https(console: Console) -> None:
    resp = console.call("POST", "/console/api/login",
                        json_body={"access_key": ACCESS_KEY, "secret_key": SECRET_KEY},
                        environ={"wsgi.url_scheme": "https"})
    assert resp.status_int == 200
    assert resp.headers["Set-Cookie"].endswith("; Max-Age=43200; Secure")


def test_every_bad_login_gets_the_same_401(console: Console) -> None:
    admin = console.login()
    key, secret = console.new_user(admin, "erin")
    assert console.call("PATCH", f"/console/api/users/{key}", session=admin,
                        json_body={"active": False}).status_int == 200
    bodies = []
    for access_key, secret_key in ((ACCESS_KEY, "wrong"), ("NOSUCHKEY", SECRET_KEY),
                                   (key, secret)):
        resp = console.call("POST", "/console/api/login",
                            json_body={"access_key": access_key, "secret_key": secret_key})
        assert resp.status_int == 401
        assert "Set-Cookie" not in resp.headers
        bodies.append(resp.json)
    assert bodies[0]["error"] == "invalid_credentials"
    assert bodies[0] == bodies[1] == bodies[2]


def test_failed_logins_are_limited_per_client(console: Console) -> None:
    wrong = {"access_key": ACCESS_KEY, "secret_key": "wrong"}
    here = {"REMOTE_ADDR": "192.0.2.7"}
    for _ in range(10):
        assert console.call("POST", "/console/api/login", json_body=wrong,
                            environ=here).status_int == 401
    resp = console.call("POST", "/console/api/login", environ=here,
                        json_body={"access_key": ACCESS_KEY, "secret_key": SECRET_KEY})
    assert resp.status_int == 429 and resp.json["error"] == "too_many_attempts"
    elsewhere = console.call("POST", "/console/api/login", environ={"REMOTE_ADDR": "192.0.2.8"},
                             json_body={"access_key": ACCESS_KEY, "secret_key": SECRET_KEY})
    assert elsewhere.status_int == 200


def test_no_session_without_a_valid_cookie(console: Console) -> None:
    for token in (None, "garbage", new_token()):
        resp = console.call("GET", "/console/api/session", token=token)
        assert resp.status_int == 401 and resp.json["error"] == "no_session"


def test_logout_ends_the_session_for_the_api_and_for_s3(console: Console) -> None:
    s = console.login()
    assert console.call("PUT", "/photos", session=s).status_int == 200
    assert console.call("POST", "/console/api/logout", token=s.token).status_int == 403  # CSRF
    resp = console.call("POST", "/console/api/logout", session=s)
    assert resp.status_int == 204
    assert resp.headers["Set-Cookie"] == ("bleepstore_console=; HttpOnly; SameSite=Strict; "
                                          "Path=/; Max-Age=0")
    assert console.call("GET", "/console/api/session", session=s).status_int == 401
    refused = console.call("GET", "/photos", session=s)
    assert refused.status_int == 403
    code, message = s3_error(refused)
    assert code == "AccessDenied" and CONSOLE_MESSAGE in message


def test_an_expired_session_is_refused(console: Console) -> None:
    store = SqliteStore(console.app.root / "metadata.db")
    token = new_token()
    assert store.apply(CreateConsoleSession(ConsoleSession(
        hash_token(token), ACCESS_KEY, "c" * 43, "2020-01-01T00:00:00.000Z",
        "2020-01-01T01:00:00.000Z")))
    assert console.call("GET", "/console/api/session", token=token).status_int == 401
    assert console.call("GET", "/", token=token, csrf="c" * 43).status_int == 403


# --- the S3 API with the cookie ------------------------------------------------------------

def test_cookie_and_csrf_act_as_the_user(console: Console) -> None:
    s = console.login()
    assert console.call("PUT", "/photos", session=s).status_int == 200
    put = console.call("PUT", "/photos/cat.txt", session=s, body=b"meow",
                       headers={"Content-Type": "text/plain"})
    assert put.status_int == 200, put.body
    listed = console.call("GET", "/", session=s)
    assert [e.text for e in ET.fromstring(listed.body).iter(f"{S3NS}Name")] == ["photos"]
    got = console.call("GET", "/photos/cat.txt", session=s)
    assert got.status_int == 200 and got.body == b"meow"
    assert got.headers["ETag"] == put.headers["ETag"]
    signed = console.app.call("GET", "/photos/cat.txt")  # the same object, signed
    assert signed.body == b"meow"
    owner = ET.fromstring(console.app.call("GET", "/photos?acl").body).findtext(
        f"{S3NS}Owner/{S3NS}DisplayName")
    assert owner == ACCESS_KEY
    assert console.call("DELETE", "/photos/cat.txt", session=s).status_int == 204
    assert console.app.call("GET", "/photos/cat.txt").status_int == 404


def test_without_the_csrf_header_the_cookie_is_ignored(console: Console) -> None:
    s = console.login()
    assert console.call("PUT", "/photos", session=s).status_int == 200
    assert console.app.call("PUT", "/photos/k", body=b"x").status_int == 200
    for method, target in (("PUT", "/photos/new"), ("GET", "/photos/k")):
        resp = console.call(method, target, token=s.token, body=b"y" if method == "PUT" else b"")
        assert resp.status_int == 403
        code, message = s3_error(resp)
        assert code == "AccessDenied" and CONSOLE_MESSAGE not in message  # plain anonymous


def test_a_wrong_csrf_header_or_foreign_origin_is_refused(console: Console) -> None:
    s = console.login()
    for method in ("GET", "HEAD", "PUT"):
        resp = console.call(method, "/", token=s.token, csrf="x" * 43)
        assert resp.status_int == 403
        if method != "HEAD":
            assert CONSOLE_MESSAGE in s3_error(resp)[1]
    foreign = console.call("PUT", "/photos", session=s,
                           headers={"Origin": "http://evil.example"})
    assert foreign.status_int == 403 and CONSOLE_MESSAGE in s3_error(foreign)[1]
    own = console.call("PUT", "/photos", session=s, headers={"Origin": f"http://{HOST}"})
    assert own.status_int == 200
    https = console.call("GET", "/", session=s, headers={"Origin": f"https://{HOST}"})
    assert https.status_int == 403  # same host, another scheme: another origin
    no_cookie = console.call("GET", "/", csrf=s.csrf)
    assert no_cookie.status_int == 403 and CONSOLE_MESSAGE in s3_error(no_cookie)[1]


def test_another_users_session_gets_the_s3_acl_answer(console: Console) -> None:
    admin = console.login()
    assert console.call("PUT", "/private", session=admin).status_int == 200
    assert console.call("PUT", "/private/secret.txt", session=admin, body=b"s").status_int == 200
    key, secret = console.new_user(admin, "erin")
    erin = console.login(key, secret)
    assert erin.body["is_admin"] is False
    for method, target in (("GET", "/private/secret.txt"), ("GET", "/private"),
                           ("PUT", "/private/mine.txt")):
        resp = console.call(method, target, session=erin, body=b"e" if method == "PUT" else b"")
        assert resp.status_int == 403, (method, target)
        code, message = s3_error(resp)
        assert code == "AccessDenied" and CONSOLE_MESSAGE not in message
    mine = console.call("GET", "/", session=erin)
    assert list(ET.fromstring(mine.body).iter(f"{S3NS}Name")) == []


def _deny_get_when(console: Console, key: str, value: str) -> None:
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::photos/*", "Condition": {"StringEquals": {key: value}}}]}
    resp = console.app.call("PUT", "/photos?policy", body=json.dumps(policy).encode())
    assert resp.status_int == 204, resp.body


def test_bucket_policies_see_a_sigv4_header_request(console: Console) -> None:
    s = console.login()
    assert console.call("PUT", "/photos", session=s).status_int == 200
    assert console.call("PUT", "/photos/k", session=s, body=b"v").status_int == 200
    _deny_get_when(console, "s3:signatureversion", "AWS")  # a "no SigV2" hardening policy
    assert console.call("GET", "/photos/k", session=s).status_int == 200
    _deny_get_when(console, "s3:authtype", "REST-HEADER")
    denied = console.call("GET", "/photos/k", session=s)
    assert denied.status_int == 403 and s3_error(denied)[0] == "AccessDenied"


def test_a_signed_request_ignores_the_cookie(console: Console) -> None:
    resp = console.app.call("PUT", "/signed", headers={
        "Cookie": f"bleepstore_console={new_token()}", "x-bleepstore-csrf": "bogus"})
    assert resp.status_int == 200


def test_a_preflight_is_answered_as_before(console: Console) -> None:
    s = console.login()
    assert console.call("PUT", "/photos", session=s).status_int == 200
    asked = {"Origin": "http://app.example", "Access-Control-Request-Method": "PUT"}
    plain = console.call("OPTIONS", "/photos/k", headers=asked)
    with_cookie = console.call("OPTIONS", "/photos/k", session=s, headers=asked)
    assert plain.status_int == with_cookie.status_int == 403
    assert s3_error(plain)[0] == s3_error(with_cookie)[0] == "AccessForbidden"


# --- presigned URLs ------------------------------------------------------------------------

def test_presign_gives_a_url_that_s3_accepts(console: Console) -> None:
    s = console.login()
    assert console.call("PUT", "/photos", session=s).status_int == 200
    key = "dir/ключ 1+2.txt"
    put = console.app.call("PUT", "/photos/dir/%D0%BA%D0%BB%D1%8E%D1%87%201%2B2.txt",
                           body=b"presigned bytes")
    assert put.status_int == 200
    resp = console.call("POST", "/console/api/presign", session=s,
                        json_body={"bucket": "photos", "key": key, "expires_s": 600,
                                   "download": True})
    assert resp.status_int == 200, resp.body
    url = urlsplit(resp.json["url"])
    assert (url.scheme, url.netloc) == ("http", HOST)
    assert "X-Amz-Expires=600" in url.query
    target = f"{url.path}?{url.query}"
    got = console.app.call("GET", target, sign=False)
    assert got.status_int == 200 and got.body == b"presigned bytes"
    assert got.headers["Content-Disposition"] == (
        'attachment; filename="____ 1+2.txt"; '
        "filename*=UTF-8''%D0%BA%D0%BB%D1%8E%D1%87%201%2B2.txt")
    tampered = target[:-1] + ("0" if target[-1] != "0" else "1")
    bad = console.app.call("GET", tampered, sign=False)
    assert bad.status_int == 403 and s3_error(bad)[0] == "SignatureDoesNotMatch"


@pytest.mark.parametrize("body, status", [
    ({"bucket": "photos", "key": "k", "expires_s": 0}, 400),
    ({"bucket": "photos", "key": "k", "expires_s": 604801}, 400),
    ({"bucket": "photos", "key": "k", "expires_s": "60"}, 400),
    ({"bucket": "photos", "key": "k", "download": "yes"}, 400),
    ({"bucket": "Not_A_Bucket", "key": "k"}, 400),
    ({"bucket": "photos", "key": ""}, 400),
    ({"bucket": "nosuchbucket", "key": "k"}, 404),
])
def test_presign_refuses_bad_input(console: Console, body: dict[str, Any], status: int) -> None:
    s = console.login()
    assert console.call("PUT", "/photos", session=s).status_int == 200
    resp = console.call("POST", "/console/api/presign", session=s, json_body=body)
    assert resp.status_int == status and resp.json["message"]


# --- users ---------------------------------------------------------------------------------

def test_users_are_for_the_admin_only(console: Console) -> None:
    admin = console.login()
    key, secret = console.new_user(admin, "erin")
    erin = console.login(key, secret)
    for method, target, body in (("GET", "/console/api/users", None),
                                 ("POST", "/console/api/users", {}),
                                 ("PATCH", f"/console/api/users/{ACCESS_KEY}", {"active": True}),
                                 ("DELETE", f"/console/api/users/{key}", None)):
        resp = console.call(method, target, session=erin, json_body=body)
        assert resp.status_int == 403 and resp.json["error"] == "forbidden", target
    listed = console.call("GET", "/console/api/users", session=admin)
    users = {u["access_key"]: u for u in listed.json["users"]}
    assert users[key] == {"access_key": key, "display_name": "erin", "active": True,
                          "created": users[key]["created"]}
    assert secret not in listed.text and SECRET_KEY not in listed.text
    for name in ("\ud800", "tab\there", "x" * 257, 7):
        bad = console.call("POST", "/console/api/users", session=admin,
                           json_body={"display_name": name})
        assert bad.status_int == 400, name
    no_csrf = console.call("POST", "/console/api/users", token=admin.token, json_body={})
    assert no_csrf.status_int == 403 and no_csrf.json["error"] == "csrf_failed"


def test_disabling_a_user_ends_their_session_at_once(console: Console) -> None:
    admin = console.login()
    key, secret = console.new_user(admin, "erin")
    erin = console.login(key, secret)
    assert console.call("GET", "/", session=erin).status_int == 200
    resp = console.call("PATCH", f"/console/api/users/{key}", session=admin,
                        json_body={"active": False})
    assert resp.status_int == 200 and resp.json["active"] is False
    assert console.call("GET", "/console/api/session", session=erin).status_int == 401
    assert console.call("GET", "/", session=erin).status_int == 403
    console.call("PATCH", f"/console/api/users/{key}", session=admin, json_body={"active": True})
    assert console.call("GET", "/console/api/session", session=erin).status_int == 401
    assert console.login(key, secret).body["access_key"] == key


def test_removing_users(console: Console) -> None:
    admin = console.login()
    key, secret = console.new_user(admin, "erin")
    erin = console.login(key, secret)
    assert console.call("PUT", "/erins", session=erin).status_int == 200
    owns = console.call("DELETE", f"/console/api/users/{key}", session=admin)
    assert owns.status_int == 409 and owns.json["error"] == "owns_buckets"
    assert owns.json["buckets"] == ["erins"]
    assert console.call("DELETE", "/erins", session=erin).status_int == 204
    assert console.call("DELETE", f"/console/api/users/{key}", session=admin).status_int == 204
    assert console.call("GET", "/console/api/session", session=erin).status_int == 401
    missing = console.call("DELETE", f"/console/api/users/{key}", session=admin)
    assert missing.status_int == 404
    for method, body in (("DELETE", None), ("PATCH", {"active": False})):
        resp = console.call(method, f"/console/api/users/{ACCESS_KEY}", session=admin,
                            json_body=body)
        assert resp.status_int == 409 and resp.json["error"] == "bootstrap_user"


# --- server overview ---------------------------------------------------------------------------

def test_server_overview(console: Console) -> None:
    assert console.call("GET", "/console/api/server").status_int == 401
    s = console.login()
    console.call("GET", "/console/nothing-here")
    body = console.call("GET", "/console/api/server", session=s).json
    health = json.loads(console.app.call("GET", "/health", sign=False).body)
    assert body["health"]["status"] == health["status"] == "ok"
    assert set(body["health"]["checks"]) == set(health["checks"])
    assert [d["name"] for d in body["disk"]] == ["metadata", "objects"]
    assert all(d["total"] >= d["free"] > 0 for d in body["disk"])
    metrics = body["metrics"]
    assert metrics["requests_total"] >= 3 and metrics["errors_4xx_total"] >= 2
    assert metrics["latency_count"] == metrics["requests_total"]
    assert body["queue"] is None and body["cluster"] is None and body["version"]


# --- pages, headers, bad input ---------------------------------------------------------------

def test_pages_and_their_headers(console: Console, static_dir: Path) -> None:
    redirect = console.call("GET", "/console")
    assert redirect.status_int == 302 and redirect.headers["Location"] == "/console/"
    index = console.call("GET", "/console/")
    assert index.status_int == 200 and index.body == (static_dir / "index.html").read_bytes()
    assert index.headers["Content-Type"] == "text/html; charset=utf-8"
    assert index.headers["Cache-Control"] == "no-cache"
    js = console.call("GET", "/console/static/console.js")
    assert js.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert js.headers["Cache-Control"] == "public, max-age=3600"
    css = console.call("GET", "/console/static/console.css")
    assert css.headers["Content-Type"] == "text/css; charset=utf-8"
    same = console.call("GET", "/console/static/console.js",
                        headers={"If-None-Match": js.headers["ETag"]})
    assert same.status_int == 304 and same.body == b""
    api = console.call("GET", "/console/api/session")
    for resp in (redirect, index, js, css, same, api):
        assert resp.headers["Content-Security-Policy"] == CSP
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["X-Frame-Options"] == "DENY"
    assert api.headers["Cache-Control"] == "no-store"
    (static_dir / "console.js").write_text("console.log('changed, longer');")
    assert console.call("GET", "/console/static/console.js",
                        headers={"If-None-Match": js.headers["ETag"]}).status_int == 200


@pytest.mark.parametrize("target", [
    "/console/static/../app.py", "/console/static/%2e%2e/app.py",
    "/console/static/%2e%2e%2fapp.py", "/console/static/..%2f..%2fconfig.py",
    "/console/static/.hidden.js", "/console/static/Console.JS", "/console/static/app.py",
    "/console/static/nothere.js", "/console/static/", "/console/static/a/b.js",
])
def test_static_files_outside_the_rules_are_404(console: Console, target: str) -> None:
    resp = console.call("GET", target)
    assert resp.status_int == 404 and resp.json["error"] == "not_found"
    assert resp.headers["Content-Security-Policy"] == CSP


def test_no_static_directory_yet_is_404(console: Console, static_dir: Path) -> None:
    for name in list(static_dir.iterdir()):
        name.unlink()
    static_dir.rmdir()
    for target in ("/console/", "/console/static/console.js"):
        resp = console.call("GET", target)
        assert resp.status_int == 404 and resp.json["error"] == "not_found"


@pytest.mark.parametrize("body", [
    b"{", b"[1, 2]", b'"text"', b'{"access_key": 1, "secret_key": "x"}', b'{"access_key": "a"}',
    b"\xff\xfe", b'{"access_key": "' + b"a" * 70000 + b'", "secret_key": "x"}',
    b"[" * 50000 + b"]" * 50000, b'{"access_key": "\\ud800", "secret_key": "x"}',
    b'{"access_key": "a", "secret_key": "\\udfff"}',
])
def test_bad_json_is_400(console: Console, body: bytes) -> None:
    resp = console.call("POST", "/console/api/login", body=body,
                        headers={"Content-Type": "application/json"})
    assert resp.status_int == 400 and resp.json["error"] == "bad_request"


def test_wrong_method_and_unknown_path_are_json(console: Console) -> None:
    resp = console.call("DELETE", "/console/api/login")
    assert resp.status_int == 405 and resp.json["error"] == "method_not_allowed"
    assert "POST" in resp.headers["Allow"]
    unknown = console.call("GET", "/console/api/nothing")
    assert unknown.status_int == 404 and unknown.json["error"] == "not_found"


def test_login_from_another_origin_is_refused(console: Console) -> None:
    resp = console.call("POST", "/console/api/login", headers={"Origin": "http://evil.example"},
                        json_body={"access_key": ACCESS_KEY, "secret_key": SECRET_KEY})
    assert resp.status_int == 403 and "Set-Cookie" not in resp.headers


# --- console disabled ------------------------------------------------------------------------

def test_disabled_console_is_plain_s3_and_ignores_the_cookie(tmp_path: Path) -> None:
    cfg = dataclasses.replace(make_config(tmp_path), console=ConsoleConfig(enabled=False))
    run_recovery(cfg)
    app = S3App(webtest.TestApp(create_app(cfg, background=False)), tmp_path)
    for target in ("/console", "/console/", "/console/api/session"):
        resp = app.call("GET", target, sign=False)
        assert resp.status_int == 404 and s3_error(resp)[0] == "NoSuchBucket"
        assert "Content-Security-Policy" not in resp.headers
    token = new_token()
    SqliteStore(tmp_path / "metadata.db").apply(CreateConsoleSession(ConsoleSession(
        hash_token(token), ACCESS_KEY, "c" * 43, now_iso(), "2999-01-01T00:00:00.000Z")))
    resp = app.call("PUT", "/bucket", sign=False, headers={
        "Cookie": f"bleepstore_console={token}", "x-bleepstore-csrf": "c" * 43})
    assert resp.status_int == 403
    code, message = s3_error(resp)
    assert code == "AccessDenied" and CONSOLE_MESSAGE not in message
