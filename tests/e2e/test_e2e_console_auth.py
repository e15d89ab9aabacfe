"""The console's session against a real gunicorn (2 workers, hour-long credential cache):
login over HTTP, the S3 API with the cookie + CSRF header, a presigned URL fetched with
urllib, logout and disable refused at once on every worker, and an access log that
holds neither a secret nor a session token."""

from __future__ import annotations

import http.client
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from support.access_log import access_records
from support.server import ACCESS_KEY, SECRET_KEY, Server

COOKIE = re.compile(r"^bleepstore_console=([A-Za-z0-9_-]{43}); HttpOnly; SameSite=Strict; "
                    r"Path=/; Max-Age=900$")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("console"), workers=2, extra_config={
        "server": {"keepalive_s": 300}, "auth": {"credential_cache_ttl_s": 3600},
        "console": {"session_ttl_s": 900}})
    server.start()
    yield server
    server.stop()


@dataclass
class Session:
    token: str
    csrf: str
    body: dict[str, Any]


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One keep-alive connection (served by one worker for its whole life)."""

    def __init__(self, srv: Server, netloc: str | None = None) -> None:
        self.netloc = netloc or srv.endpoint.removeprefix("http://")
        self.http = http.client.HTTPConnection(self.netloc, timeout=30)

    def call(self, method: str, target: str, *, session: Session | None = None,
             body: bytes = b"", json_body: Any = None, csrf: bool = True,
             origin: str | None = None) -> Reply:
        headers = {"Origin": origin or f"http://{self.netloc}"}
        if session is not None:
            headers["Cookie"] = f"other=1; bleepstore_console={session.token}"
            if csrf:
                headers["x-bleepstore-csrf"] = session.csrf
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        self.http.request(method, target, body=body or None, headers=headers)
        resp = self.http.getresponse()
        return Reply(resp.status, resp.headers, resp.read())

    def login(self, key: str, secret: str) -> Session:
        reply = self.call("POST", "/console/api/login",
                          json_body={"access_key": key, "secret_key": secret})
        assert reply.status == 200, reply.body
        found = COOKIE.match(reply.headers["Set-Cookie"])
        assert found, reply.headers["Set-Cookie"]
        return Session(found.group(1), reply.json()["csrf_token"], reply.json())

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def client(srv: Server) -> Iterator[Client]:
    c = Client(srv)
    yield c
    c.close()


def new_user(client: Client, admin: Session, name: str) -> tuple[str, str]:
    reply = client.call("POST", "/console/api/users", session=admin,
                        json_body={"display_name": name})
    assert reply.status == 201, reply.body
    return reply.json()["access_key"], reply.json()["secret_key"]


def test_the_console_session_drives_s3_and_presigns(srv: Server, client: Client) -> None:
    admin = client.login(ACCESS_KEY, SECRET_KEY)
    key, secret = new_user(client, admin, "erin")
    erin = client.login(key, secret)
    assert erin.body["access_key"] == key and erin.body["is_admin"] is False
    assert client.call("PUT", "/erin-photos", session=erin).status == 200
    data = bytes(range(256)) * 64
    put = client.call("PUT", "/erin-photos/raw.bin", session=erin, body=data)
    assert put.status == 200
    got = client.call("GET", "/erin-photos/raw.bin", session=erin)
    assert got.status == 200 and got.body == data
    assert got.headers["ETag"] == put.headers["ETag"]
    listed = client.call("GET", "/", session=erin)
    assert b"<Name>erin-photos</Name>" in listed.body
    assert client.call("GET", "/erin-photos/raw.bin", session=admin).status == 403  # not his
    assert client.call("GET", "/erin-photos/raw.bin", session=erin, csrf=False).status == 403

    reply = client.call("POST", "/console/api/presign", session=erin,
                        json_body={"bucket": "erin-photos", "key": "raw.bin"})
    assert reply.status == 200, reply.body
    url = reply.json()["url"]
    assert url.startswith(f"{srv.endpoint}/erin-photos/raw.bin?")
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.read() == data
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url.replace("raw.bin", "raw.bin2"), timeout=30)
    assert refused.value.code == 403

    assert client.call("POST", "/console/api/logout", session=erin).status == 204
    assert client.call("GET", "/console/api/session", session=erin).status == 401
    after = client.call("GET", "/erin-photos/raw.bin", session=erin)
    assert after.status == 403 and b"console session is not valid" in after.body

    # NOTE: the log is written when each response ends; the last one may trail a moment.
    last = client.call("GET", "/console/api/session", session=admin)
    access_records(srv, {last.headers["x-amz-request-id"]})
    log = srv.log_text()
    for secret_text in (secret, SECRET_KEY, admin.token, erin.token, admin.csrf, erin.csrf):
        assert secret_text not in log
    assert "/console/api/login" in log and key in log  # the log itself is there


def test_a_disabled_users_session_ends_on_every_worker(srv: Server, client: Client) -> None:
    admin = client.login(ACCESS_KEY, SECRET_KEY)
    key, secret = new_user(client, admin, "fred")
    fred = client.login(key, secret)
    conns: list[Client] = []
    pids: set[int] = set()
    try:
        for _ in range(8):  # keep-alive connections until both workers served fred
            batch = [Client(srv) for _ in range(8)]
            ids = set()
            for conn in batch:
                reply = conn.call("GET", "/", session=fred)
                assert reply.status == 200, reply.body
                conn.call("GET", "/", session=fred)  # now a cache hit in that worker
                ids.add(reply.headers["x-amz-request-id"])
            pids |= {rec["pid"] for rec in access_records(srv, ids).values()}
            conns += batch
            if len(pids) >= 2:
                break
        assert len(pids) == 2, f"could not reach both workers: {pids}"
        reply = client.call("PATCH", f"/console/api/users/{key}", session=admin,
                            json_body={"active": False})
        assert reply.status == 200 and reply.json()["active"] is False
        for conn in conns:
            refused = conn.call("GET", "/", session=fred)
            assert refused.status == 403, refused.body
            assert conn.call("GET", "/console/api/session", session=fred).status == 401
    finally:
        for conn in conns:
            conn.close()


def test_the_console_works_through_the_shipped_nginx_site(
        srv: Server, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Behind nginx the Origin check and the presigned URL see the browser's host:port
    (the site forwards ``$http_host``), and the cookie passes through."""
    from support.nginx import Nginx

    proxy = Nginx(tmp_path_factory.mktemp("console-nginx"), srv.port).start()
    via = Client(srv, f"127.0.0.1:{proxy.port}")
    try:
        admin = via.login(ACCESS_KEY, SECRET_KEY)
        assert via.call("PUT", "/via-nginx", session=admin).status == 200
        assert via.call("PUT", "/via-nginx/k", session=admin, body=b"through").status == 200
        assert via.call("GET", "/via-nginx/k", session=admin).body == b"through"
        reply = via.call("POST", "/console/api/presign", session=admin,
                         json_body={"bucket": "via-nginx", "key": "k"})
        url = reply.json()["url"]
        assert url.startswith(f"http://{via.netloc}/via-nginx/k?"), url
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.read() == b"through"
        assert via.call("GET", "/via-nginx/k", session=admin,
                        origin="http://evil.example").status == 403
        assert via.call("DELETE", "/via-nginx/k", session=admin).status == 204
        assert via.call("DELETE", "/via-nginx", session=admin).status == 204
    finally:
        via.close()
        proxy.stop()
