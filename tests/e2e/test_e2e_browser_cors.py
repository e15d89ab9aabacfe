"""CORS and POST Object in a real headless Chromium: a page served from another origin PUTs
to a presigned URL, uploads a form built from boto3's generate_presigned_post with fetch and
FormData, reads the object back with a header the bucket's CORS rule exposes, and is refused
a bucket that has no CORS rule. The browser enforces CORS; the server only answers."""

from __future__ import annotations

import hashlib
import html
import http.server
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.server import REPO

PAGE = REPO / "tests" / "support" / "cors_page.html"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--virtual-time-budget=30000"]
PUT_BODY = "put from the browser"
POST_BODY = "posted from the browser"


def chromium_dom(tmp_path: Path, url: str) -> str:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed: tests/bootstrap.sh installs it")
    proc = subprocess.run([exe, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                           "--dump-dom", url], capture_output=True, text=True, timeout=120)
    return proc.stdout


@pytest.fixture
def page_site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A tiny HTTP server for the page, on its own port: another origin than BleepStore."""
    root = tmp_path / "site"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def run_page(tmp_path: Path, site: tuple[str, Path], config: dict[str, Any]) -> dict[str, Any]:
    origin, root = site
    text = PAGE.read_text().replace("__CONFIG__", json.dumps(config))
    (root / "index.html").write_text(text)
    dom = chromium_dom(tmp_path, f"{origin}/index.html")
    start = dom.find('<pre id="result">')
    assert start >= 0, dom[:2000]
    result = dom[start + len('<pre id="result">'):].split("</pre>", 1)[0]
    assert result != "pending", "the page's script did not finish"
    out: dict[str, Any] = json.loads(html.unescape(result))
    return out


def md5_etag(text: str) -> str:
    return f'"{hashlib.md5(text.encode()).hexdigest()}"'


def test_browser_put_post_and_get_across_origins(server: Any, s3: Any, bucket: str,
                                                 page_site: tuple[str, Path],
                                                 tmp_path: Path) -> None:
    origin = page_site[0]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [{
        "AllowedOrigins": [origin], "AllowedMethods": ["GET", "PUT", "POST", "HEAD"],
        "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag", "x-amz-meta-origin"],
        "MaxAgeSeconds": 60}]})
    closed = f"{bucket}-nocors"
    s3.create_bucket(Bucket=closed)
    s3.put_object(Bucket=closed, Key="secret.txt", Body=b"not for other origins")
    post = s3.generate_presigned_post(
        bucket, "browser/${filename}", Fields={"x-amz-meta-origin": "browser"},
        Conditions=[{"x-amz-meta-origin": "browser"}, ["content-length-range", 1, 1024]],
        ExpiresIn=600)
    config = {
        "putUrl": s3.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": "put.txt"}, ExpiresIn=600),
        "putBody": PUT_BODY, "post": post, "postBody": POST_BODY,
        "getUrl": s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "browser/browser.txt"},
            ExpiresIn=600),
        "noCorsUrl": s3.generate_presigned_url(
            "get_object", Params={"Bucket": closed, "Key": "secret.txt"}, ExpiresIn=600),
    }
    out = run_page(tmp_path, page_site, config)
    assert out["put"] == {"status": 200, "etag": md5_etag(PUT_BODY)}
    assert out["post"] == {"status": 204, "etag": md5_etag(POST_BODY)}
    assert out["get"] == {"status": 200, "body": POST_BODY, "etag": md5_etag(POST_BODY),
                          "meta": "browser", "hidden": None}
    assert "Failed to fetch" in out["noCors"]["error"]  # TypeError: the browser refused it
    # and on the server: exactly what the page sent
    assert s3.get_object(Bucket=bucket, Key="put.txt")["Body"].read() == PUT_BODY.encode()
    posted = s3.get_object(Bucket=bucket, Key="browser/browser.txt")
    assert posted["Body"].read() == POST_BODY.encode()
    assert posted["Metadata"] == {"origin": "browser"}
    s3.delete_object(Bucket=closed, Key="secret.txt")
    s3.delete_bucket(Bucket=closed)


def test_browser_is_refused_without_a_cors_rule(server: Any, s3: Any, bucket: str,
                                                page_site: tuple[str, Path],
                                                tmp_path: Path) -> None:
    """The same page against a bucket with no CORS rule: every step fails in the browser.
    The PUT is preflighted, so it never reaches the bucket; the form POST is a simple
    request, so it is sent and stored, and only its answer is withheld from the page."""
    s3.put_object(Bucket=bucket, Key="browser/browser.txt", Body=b"x")
    post = s3.generate_presigned_post(bucket, "browser/${filename}", ExpiresIn=600)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket,
                                                          "Key": "browser/browser.txt"})
    config = {
        "putUrl": s3.generate_presigned_url("put_object",
                                            Params={"Bucket": bucket, "Key": "put.txt"}),
        "putBody": PUT_BODY, "post": post, "postBody": POST_BODY, "getUrl": url,
        "noCorsUrl": url}
    out = run_page(tmp_path, page_site, config)
    for step in ("put", "post", "get", "noCors"):
        assert "Failed to fetch" in out[step].get("error", ""), out
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["browser/browser.txt"]
    posted = s3.get_object(Bucket=bucket, Key="browser/browser.txt")["Body"].read()
    assert posted == POST_BODY.encode()
