"""The shipped nginx site as deploy/README.md installs it (issue 16 part 2): it wins over
Debian's default site, forwards the client's address (believed by BleepStore from
``server.trusted_proxies`` only), and keeps /metrics, /docs and /openapi.json to this
machine; /metrics itself wants ``observability.metrics_token`` when one is set.

A second client address on this machine is real: the kernel routes all of 127.0.0.0/8 to
the loopback interface, so a socket bound to 127.0.0.2 reaches nginx from an address that
is not the one the site (or ``trusted_proxies``) names."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.clients import boto3_client
from support.nginx import Nginx, adapt_site, nginx_conf
from support.raw import Response, send
from support.server import Server, free_port

TOKEN = "metrics-scrape-token-0123456789"
OTHER = "127.0.0.2"  # a client address that is neither allowed nor trusted
DEBIAN_PAGE = Path("/var/www/html/index.nginx-debian.html")
# The shape of Debian's /etc/nginx/sites-available/default (comments dropped): what a
# stock `apt install nginx` enables, on the same port as the shipped site.
DEBIAN_DEFAULT_SITE = """
server {
	listen 80 default_server;
	listen [::]:80 default_server;
	root /var/www/html;
	index index.html index.htm index.nginx-debian.html;
	server_name _;
	location / {
		try_files $uri $uri/ =404;
	}
}
"""


def request(port: int, method: str, target: str, *, source: str = "127.0.0.1",
            headers: dict[str, str] | None = None, body: bytes = b"", sign: bool = False,
            forwarded: str | None = None) -> Response:
    """One request to 127.0.0.1:``port`` from the local address ``source``; ``forwarded``
    is an X-Forwarded-For header the client adds itself (unsigned: proxies rewrite it)."""
    return send(f"http://127.0.0.1:{port}", method, target, headers=headers, body=body,
                sign=sign, source=source,
                unsigned=None if forwarded is None else {"X-Forwarded-For": forwarded})


def debian_default_site(port: int, root: Path, *, default: bool = True) -> str:
    """Debian's default site on ``port`` (loopback only: IPv6 may be missing here);
    ``root`` must be readable by nginx's workers (see the ``www`` fixture)."""
    page = DEBIAN_PAGE.read_bytes() if DEBIAN_PAGE.exists() else (
        b"<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>"
        b"<body><h1>Welcome to nginx!</h1></body></html>\n")
    (root / "index.nginx-debian.html").write_bytes(page)
    (root / "index.nginx-debian.html").chmod(0o644)
    text = DEBIAN_DEFAULT_SITE.replace("\tlisten [::]:80 default_server;\n", "")
    text = text.replace("listen 80 default_server;",
                        f"listen 127.0.0.1:{port}{' default_server' if default else ''};")
    return text.replace("root /var/www/html;", f"root {root};")


def old_site(upstream: int, port: int) -> str:
    """The site as shipped before issue 16: not the default server, named hosts only."""
    text = adapt_site(upstream, port).replace(" default_server;", ";")
    return text.replace("server_name _;", "server_name s3.example.com *.s3.example.com;")


def nginx_bin() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.fixture
def www() -> Iterator[Path]:
    """A document root nginx's workers can read (run as root, nginx serves files as
    ``nobody``, which cannot enter pytest's private temporary directories)."""
    root = Path(tempfile.mkdtemp(prefix="bleepstore-www-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("site-backend"), workers=1, threads=4,
                 extra_config={"server": {"trusted_proxies": ["127.0.0.1"]},
                               "observability": {"metrics_token": TOKEN}})
    srv.start()
    boto3_client(srv.endpoint).create_bucket(Bucket="site-bucket")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def proxy(backend: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """The shipped site, Debian's default site removed (deploy/README.md step 4)."""
    ngx = Nginx(tmp_path_factory.mktemp("site-nginx"), backend.port).start()
    yield ngx
    ngx.stop()


def access_line(server: Server, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10  # written when the response closes
    while True:
        for line in server.log_text().splitlines():
            if request_id in line:
                entry = json.loads(line)
                if entry.get("logger") == "bleepstore.access":
                    return dict(entry)
        assert time.monotonic() < deadline, f"no access line for {request_id}"
        time.sleep(0.05)


# ------------------------------------------------------------------ B: the default site


def test_old_site_lost_to_debian_default_site_silently(backend: Server, tmp_path: Path,
                                                       www: Path) -> None:
    """The failure the walkthrough produced (control: this harness can see it): with
    Debian's default site enabled next to the old site, a signed ListBuckets reached the
    Welcome page, and boto3 (like ``aws s3 ls``) printed an empty list without an error."""
    port = free_port()
    site = old_site(backend.port, port) + debian_default_site(port, www)
    ngx = Nginx(tmp_path / "ngx", backend.port, port=port, site=site).start()
    try:
        listed = boto3_client(f"http://127.0.0.1:{port}").list_buckets()
        assert listed.get("Buckets", []) == []  # silently empty ...
        page = request(port, "GET", "/", sign=True)
        assert page.status == 200 and b"Welcome to nginx" in page.body  # ... Debian answered
    finally:
        ngx.stop()


def test_shipped_site_and_debian_default_site_cannot_both_be_enabled(
        backend: Server, tmp_path: Path, www: Path) -> None:
    """Following the walkthrough but forgetting to remove Debian's default site is now a
    loud `nginx -t` failure naming the clash, never a site that answers for ours."""
    port = free_port()
    root = tmp_path / "ngx"
    for sub in ("logs", "tmp"):
        (root / sub).mkdir(parents=True)
    # sites-enabled/* in name order: "bleepstore" before "default"
    site = adapt_site(backend.port, port) + debian_default_site(port, www)
    (root / "nginx.conf").write_text(nginx_conf(root, site))
    check = subprocess.run([nginx_bin(), "-t", "-p", str(root), "-c", str(root / "nginx.conf"),
                            "-e", "stderr"], capture_output=True, text=True, timeout=30)
    assert check.returncode != 0
    assert re.search(r"a duplicate default server for 127\.0\.0\.1:\d+", check.stderr), \
        check.stderr


def test_shipped_site_answers_every_host_other_sites_do_not_claim(
        backend: Server, tmp_path: Path, www: Path) -> None:
    """Another site kept on the same port (Debian's, demoted as deploy/README.md says: no
    ``default_server``, its own name) answers only its own name, even listed first."""
    port = free_port()
    other = debian_default_site(port, www, default=False).replace(
        "server_name _;", "server_name intranet.example;")
    ngx = Nginx(tmp_path / "ngx", backend.port, port=port,
                site=other + adapt_site(backend.port, port)).start()
    try:
        for endpoint in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
            names = [b["Name"] for b in boto3_client(endpoint).list_buckets()["Buckets"]]
            assert names == ["site-bucket"], endpoint
        theirs = request(port, "GET", "/", headers={"Host": "intranet.example"})
        assert theirs.status == 200 and b"Welcome to nginx" in theirs.body
    finally:
        ngx.stop()


def test_signed_list_buckets_through_the_shipped_site(proxy: Nginx) -> None:
    for endpoint in (f"http://127.0.0.1:{proxy.port}", f"http://localhost:{proxy.port}"):
        listed = boto3_client(endpoint).list_buckets()
        assert [b["Name"] for b in listed["Buckets"]] == ["site-bucket"]
        assert listed["ResponseMetadata"]["HTTPHeaders"]["server"] == "BleepStore"


# ------------------------------------------------------------------ C: the client address


@pytest.mark.parametrize("source, forwarded, logged", [
    # a remote-looking client: nginx appends the address it saw; that is the client,
    # whatever it claimed itself
    (OTHER, None, OTHER),
    (OTHER, "203.0.113.7", OTHER),
    (OTHER, "127.0.0.1", OTHER),
    # a client on loopback is itself a trusted proxy, so its own claim is believed
    # (deploy/README.md: trust only the proxy's address, and keep the backend on loopback)
    ("127.0.0.1", "203.0.113.7", "203.0.113.7"),
    ("127.0.0.1", None, "127.0.0.1"),
])
def test_access_log_shows_the_forwarded_client(backend: Server, proxy: Nginx, source: str,
                                               forwarded: str | None, logged: str) -> None:
    resp = request(proxy.port, "GET", "/site-bucket?list-type=2", source=source,
                   forwarded=forwarded, sign=True)
    assert resp.status == 200, resp.body
    entry = access_line(backend, resp.headers["x-amz-request-id"])
    assert (entry["remote_addr"], entry["peer_addr"]) == (logged, "127.0.0.1")


def test_refused_requests_are_logged_with_the_client_too(backend: Server,
                                                         proxy: Nginx) -> None:
    resp = request(proxy.port, "GET", "/site-bucket", source=OTHER)  # anonymous: 403
    assert resp.status == 403
    assert access_line(backend, resp.headers["x-amz-request-id"])["remote_addr"] == OTHER


def test_untrusted_peer_header_is_ignored(backend: Server) -> None:
    resp = request(backend.port, "GET", "/site-bucket?list-type=2", source=OTHER,
                   forwarded="203.0.113.7", sign=True)
    assert resp.status == 200
    entry = access_line(backend, resp.headers["x-amz-request-id"])
    assert (entry["remote_addr"], entry["peer_addr"]) == (OTHER, OTHER)


def test_source_ip_policy_sees_the_forwarded_address(backend: Server, proxy: Nginx) -> None:
    s3 = boto3_client(backend.endpoint)
    s3.create_bucket(Bucket="ip-policy")
    try:
        s3.put_object(Bucket="ip-policy", Key="k", Body=b"data")
        s3.put_bucket_policy(Bucket="ip-policy", Policy=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::ip-policy/*",
                "Condition": {"IpAddress": {"aws:SourceIp": f"{OTHER}/32"}}}]}))

        def get(port: int, source: str, forwarded: str | None = None) -> int:
            return request(port, "GET", "/ip-policy/k", source=source, forwarded=forwarded,
                           sign=True).status

        assert get(proxy.port, "127.0.0.1") == 200
        assert get(proxy.port, OTHER) == 403  # was 127.0.0.1 behind nginx: allowed
        assert get(proxy.port, OTHER, forwarded="127.0.0.1") == 403  # no way out by header
        assert get(proxy.port, "127.0.0.1", forwarded=OTHER) == 403  # a trusted claim
        assert get(backend.port, OTHER, forwarded="127.0.0.1") == 403  # untrusted peer
        assert get(backend.port, "127.0.0.1") == 200
    finally:
        s3.delete_bucket_policy(Bucket="ip-policy")
        s3.delete_object(Bucket="ip-policy", Key="k")
        s3.delete_bucket(Bucket="ip-policy")


# ------------------------------------------------------------------ D: operator pages


OPERATOR_PATHS = ("/docs", "/docs/static/swagger-ui.css", "/openapi.json", "/metrics")
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("path", OPERATOR_PATHS)
def test_operator_pages_answer_this_machine_only(proxy: Nginx, path: str) -> None:
    headers = BEARER if path == "/metrics" else {}
    local = request(proxy.port, "GET", path, headers=headers)
    assert local.status == 200, local.body[:300]
    remote = request(proxy.port, "GET", path, source=OTHER, headers=headers)
    assert remote.status == 403 and "x-amz-request-id" not in remote.headers  # nginx's own
    assert b"bleepstore" not in remote.body.lower() and b"swagger" not in remote.body.lower()


def test_s3_requests_on_those_paths_still_pass(backend: Server, proxy: Nginx) -> None:
    """Buckets may be called docs or metrics: signed requests are S3, from anywhere."""
    s3 = boto3_client(backend.endpoint)
    for name in ("docs", "metrics"):
        s3.create_bucket(Bucket=name)
        s3.put_object(Bucket=name, Key="readme", Body=b"hello")
    try:
        for target in ("/docs?list-type=2", "/metrics?list-type=2", "/docs/readme"):
            resp = request(proxy.port, "GET", target, source=OTHER, sign=True)
            assert resp.status == 200, (target, resp.body[:300])
            assert b"hello" in resp.body or b"<Key>readme</Key>" in resp.body
        # a made-up signature passes nginx but is an S3 request: never the metrics page
        fake = request(proxy.port, "GET", "/metrics", source=OTHER, headers={
            "Authorization": "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/s3/aws4_request,"
                             " SignedHeaders=host, Signature=00"})
        assert fake.status in (400, 403) and b"<Error>" in fake.body
        assert b"bleepstore_" not in fake.body
    finally:
        for name in ("docs", "metrics"):
            s3.delete_object(Bucket=name, Key="readme")
            s3.delete_bucket(Bucket=name)


def test_metrics_token(backend: Server, proxy: Nginx) -> None:
    for port in (backend.port, proxy.port):  # direct, and through the site from loopback
        for headers in ({}, {"Authorization": "Bearer wrong"},
                        {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer"}):
            denied = request(port, "GET", "/metrics", headers=headers)
            assert denied.status == 401, (port, headers, denied.body[:200])
            assert denied.headers["www-authenticate"].startswith("Bearer")
            assert b"bleepstore_" not in denied.body
        # any other Authorization is an S3 request (a bucket named "metrics"): an S3 error
        bare = request(port, "GET", "/metrics", headers={"Authorization": TOKEN})
        assert bare.status == 400 and b"<Error>" in bare.body
        granted = request(port, "GET", "/metrics", headers=BEARER)
        assert granted.status == 200
        assert b"bleepstore_http_requests_total" in granted.body
        assert granted.headers["content-type"].startswith("text/plain")
    # the other probes stay open (health checks from load balancers)
    assert request(backend.port, "GET", "/healthz").status == 200
