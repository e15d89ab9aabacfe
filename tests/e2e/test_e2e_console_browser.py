"""The web console (GitHub issue 16) in a real headless Chromium driven by selenium, against
a real gunicorn BleepStore of this module: log in (and a wrong secret), buckets, a 20 MiB
multipart upload watched through its progress bar, download and share link (opened in a
browser with no cookies), deletes, logout and the old cookie replayed and refused; a part
that cannot be sent (retried, failed, resumed by Retry) and a cancelled upload (aborted);
paging, prefix search, folders, drop and folder uploads, details with metadata and
versions; the server page's live charts; user administration; a session ended elsewhere.
Every page gets an accessibility check, a keyboard (TAB) check where it has a form, a CSP
check (nothing blocked in the browser log) and a screenshot (paths printed).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select
from support.browser import (
    a11y_problems,
    chrome,
    cookie_header,
    csp_violations,
    gone,
    http,
    in_order,
    network,
    page_weight,
    screenshot,
    tab_stops,
    text_in,
    visible,
    wait,
    wait_for_file,
)
from support.clients import boto3_client
from support.server import ACCESS_KEY, SECRET_KEY, Server

pytestmark = pytest.mark.e2e

BUCKET = "console-e2e"
BIG = 20 * 1024 * 1024  # > 8 MiB: three parts of a multipart upload
SHARED_TEXT = "hello from the console share link\n"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("console"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(srv: Server, downloads: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[WebDriver]:
    drv = chrome(downloads, tmp_path_factory.mktemp("profile"))
    yield drv
    drv.quit()


@pytest.fixture
def drv(browser: WebDriver) -> WebDriver:
    """The module's browser, logged out (no cookies) and on a blank page."""
    browser.get("about:blank")
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})  # every origin's
    browser.get_log("browser")  # drop older messages
    return browser


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return tmp_path / "screenshots"


def drop_bucket(s3: Any, bucket: str) -> None:
    """Remove ``bucket`` and everything in it if a failed earlier run left it (reruns)."""
    try:
        for up in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            found = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                     for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            if found:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": found, "Quiet": True})
        s3.delete_bucket(Bucket=bucket)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "NoSuchBucket", exc


def fresh_bucket(srv: Server, bucket: str) -> Any:
    """An empty ``bucket`` (whatever an earlier run left is dropped) -> a boto3 client."""
    s3 = boto3_client(srv.endpoint)
    drop_bucket(s3, bucket)
    s3.create_bucket(Bucket=bucket)
    return s3


def heading(drv: WebDriver, text: str) -> None:
    wait(drv, lambda d: any(h.text == text for h in d.find_elements(By.CSS_SELECTOR, "#view h1")),
         message=f"no view titled {text!r}")


def check_page(drv: WebDriver, shots: Path, name: str) -> Path:
    """The accessibility and CSP checks, then a screenshot."""
    assert a11y_problems(drv) == []
    assert csp_violations(drv) == []
    return screenshot(drv, shots, name)


def open_console(drv: WebDriver, srv: Server, route: str, title: str) -> None:
    drv.get(f"{srv.endpoint}/console/{route}")
    heading(drv, title)


def login(drv: WebDriver, srv: Server) -> None:
    open_console(drv, srv, "#/login", "Log in")
    drv.find_element(By.ID, "login-access-key").send_keys(ACCESS_KEY)
    drv.find_element(By.ID, "login-secret").send_keys(SECRET_KEY, Keys.ENTER)
    heading(drv, "Buckets")


def keyboard_reaches(drv: WebDriver, ids: list[str], presses: int = 12) -> None:
    """From the top of a freshly loaded page, TAB reaches ``ids`` in this order."""
    drv.refresh()
    wait(drv, lambda d: d.find_elements(By.ID, ids[0]))
    stops = tab_stops(drv, presses)
    assert in_order(stops, ids), stops


def row(drv: WebDriver, key: str) -> Any:
    return visible(drv, f'#objects tr[data-key="{key}"]')


def confirm(drv: WebDriver) -> None:
    visible(drv, "#confirm-yes").click()


def test_login_page_refuses_a_wrong_secret(srv: Server, drv: WebDriver, shots: Path) -> None:
    status, headers, body = http("GET", f"{srv.endpoint}/console/")
    assert status == 200 and headers["content-security-policy"] == CSP
    assert headers["cache-control"] == "no-cache" and b"console.js" in body
    open_console(drv, srv, "", "Log in")  # no session: the console goes to #/login
    assert drv.current_url.endswith("#/login")
    perf = page_weight(drv)
    print(f"page weight: {perf['encoded']} bytes encoded, {perf['decoded']} decoded, "
          f"{perf['transfer']} transferred in {perf['requests']} requests; "
          f"load {perf['load_ms']:.0f} ms (DOMContentLoaded {perf['dcl_ms']:.0f} ms): "
          f"{[n.removeprefix(srv.endpoint) for n in perf['names']]}")
    assert all(n.startswith(srv.endpoint) for n in perf["names"])  # nothing from elsewhere
    # the budget: html + js + css under 60 KB uncompressed
    static = sum(len(http("GET", n)[2]) for n in set(perf["names"]) if n.endswith((".js", ".css")))
    print(f"html + js + css: {len(body) + static} bytes")
    assert len(body) + static < 60_000
    keyboard_reaches(drv, ["login-access-key", "login-secret", "login-submit"])
    check_page(drv, shots, "01-login")

    drv.find_element(By.ID, "login-access-key").send_keys(ACCESS_KEY)
    drv.find_element(By.ID, "login-secret").send_keys("not-the-secret", Keys.ENTER)
    assert "wrong" in text_in(drv, "#status.error", "wrong")
    heading(drv, "Log in")
    assert drv.find_element(By.ID, "login-secret").get_attribute("value") == ""
    assert not drv.get_cookies()
    check_page(drv, shots, "02-login-error")


def upload_watching_progress(drv: WebDriver, path: Path, shots: Path) -> list[int]:
    """Pick ``path`` in the file input; sample the total <progress> until it reads 100."""
    network(drv, 8 * 1024 * 1024)  # NOTE: loopback would finish between two samples
    samples: list[int] = []
    shot: list[Path] = []

    def sample(d: WebDriver) -> bool:
        value = d.execute_script("const b = document.getElementById('upload-total');"
                                 "return b ? b.value : null")
        if value is not None:
            samples.append(int(value))
            if 20 <= value < 100 and not shot:
                shot.append(screenshot(d, shots, "04-uploading"))
        return value == 100

    try:
        drv.find_element(By.ID, "upload-files").send_keys(str(path))
        wait(drv, sample, 60, "the upload did not reach 100 %")
    finally:
        network(drv)
    return samples


def test_buckets_upload_download_share_delete_logout(
        srv: Server, drv: WebDriver, shots: Path, downloads: Path, tmp_path: Path) -> None:
    s3 = boto3_client(srv.endpoint)
    drop_bucket(s3, BUCKET)
    login(drv, srv)
    assert "bleepstore" in drv.find_element(By.ID, "whoami").text
    keyboard_reaches(drv, ["nav-buckets", "logout", "bucket-name", "create-bucket-submit"])
    heading(drv, "Buckets")  # the reload kept the session (cookie + /console/api/session)
    check_page(drv, shots, "03-buckets")

    name = drv.find_element(By.ID, "bucket-name")
    name.send_keys("Bad_Name!", Keys.ENTER)
    text_in(drv, "#status.error", "InvalidBucketName")
    name.clear()
    name.send_keys(BUCKET, Keys.ENTER)
    visible(drv, f'tr[data-bucket="{BUCKET}"] a').click()
    heading(drv, BUCKET)
    text_in(drv, "#objects", "This folder is empty")

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(BIG))
    samples = upload_watching_progress(drv, big, shots)
    print(f"total progress samples: {samples}")
    assert samples == sorted(samples) and samples[-1] == 100
    assert len({s for s in samples if 0 < s < 100}) >= 2, samples
    text_in(drv, "#upload-total-text", "100 %")
    assert "20.0 MiB" in row(drv, "big.bin").text
    etag = s3.head_object(Bucket=BUCKET, Key="big.bin")["ETag"]
    assert etag.endswith('-3"'), etag  # three 8 MiB parts: a multipart upload

    small = tmp_path / "hello.txt"
    small.write_text(SHARED_TEXT)
    drv.find_element(By.ID, "upload-files").send_keys(str(small))
    row(drv, "hello.txt")
    check_page(drv, shots, "05-listing")

    (downloads / "big.bin").unlink(missing_ok=True)  # a rerun's download keeps its name
    row(drv, "big.bin").find_element(By.CSS_SELECTOR, ".act-download").click()
    got = wait_for_file(downloads / "big.bin", BIG)
    assert hashlib.sha256(got.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()

    row(drv, "hello.txt").find_element(By.CSS_SELECTOR, ".act-details").click()
    facts = text_in(drv, "#facts", "text/plain")
    assert hashlib.md5(SHARED_TEXT.encode()).hexdigest() in facts
    assert f"{len(SHARED_TEXT)} bytes" in facts
    assert "FULL_CONTROL" in drv.find_element(By.ID, "acl").text  # the owner's grant
    row(drv, "hello.txt").find_element(By.CSS_SELECTOR, ".act-share").click()
    Select(visible(drv, "#share-expiry")).select_by_visible_text("1 hour")
    drv.find_element(By.ID, "share-create").click()
    url = wait(drv, lambda d: d.find_element(By.ID, "share-url").get_attribute("value"))
    assert "X-Amz-Expires=3600" in url and "X-Amz-Signature=" in url
    check_page(drv, shots, "06-details-share")

    fresh = chrome(profile=tmp_path / "fresh-profile")  # another browser: no cookies at all
    try:
        fresh.get(url)
        assert not fresh.get_cookies()
        assert fresh.find_element(By.TAG_NAME, "body").text == SHARED_TEXT.strip()
        screenshot(fresh, shots, "07-share-link-fresh-browser")
    finally:
        fresh.quit()

    drv.get(f"{srv.endpoint}/console/#/buckets")
    heading(drv, "Buckets")
    visible(drv, f'tr[data-bucket="{BUCKET}"] button').click()
    confirm(drv)
    text_in(drv, "#status.error", "The bucket is not empty: delete its objects first")

    visible(drv, f'tr[data-bucket="{BUCKET}"] a').click()
    row(drv, "hello.txt")
    drv.find_element(By.ID, "select-all").click()
    assert drv.find_element(By.ID, "delete-selected").text == "Delete selected (2)"
    drv.find_element(By.ID, "delete-selected").click()
    confirm(drv)
    text_in(drv, "#status", "Deleted 2 object(s).")
    gone(drv, "#objects tr[data-key]")
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0

    drv.find_element(By.LINK_TEXT, "Buckets").click()
    visible(drv, f'tr[data-bucket="{BUCKET}"] button').click()
    confirm(drv)
    gone(drv, f'tr[data-bucket="{BUCKET}"]')
    assert BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    cookie = cookie_header(drv)
    status, _, body = http("GET", f"{srv.endpoint}/console/api/session", {"Cookie": cookie})
    assert status == 200, body
    token = json.loads(body)["csrf_token"]
    as_console = {"Cookie": cookie, "x-bleepstore-csrf": token}
    assert http("GET", f"{srv.endpoint}/", as_console)[0] == 200  # the cookie works... so far

    drv.find_element(By.ID, "logout").click()
    heading(drv, "Log in")
    text_in(drv, "#status", "logged out")
    status, _, body = http("GET", f"{srv.endpoint}/console/api/session", {"Cookie": cookie})
    assert status == 401 and json.loads(body)["error"], body
    status, _, body = http("GET", f"{srv.endpoint}/", as_console)
    assert status in (401, 403) and b"<Code>AccessDenied</Code>" in body, body
    drv.refresh()
    heading(drv, "Log in")
    assert drv.find_element(By.ID, "nav").get_attribute("hidden") is not None
    check_page(drv, shots, "08-logged-out")


def test_server_page_draws_live_charts(srv: Server, drv: WebDriver, shots: Path) -> None:
    login(drv, srv)
    drv.find_element(By.ID, "nav-server").click()
    heading(drv, "Server")
    visible(drv, '#health tr[data-component]')
    # rates need two polls (2 s apart); two points need three
    wait(drv, lambda d: d.execute_script(
        "const s = document.getElementById('chart-requests');"
        "return s && Number(s.dataset.points) >= 2 && s.querySelector('polyline')"), 15)
    charts = drv.find_elements(By.CSS_SELECTOR, "#charts svg[role=img]")
    assert [c.get_attribute("id") for c in charts] == [
        "chart-requests", "chart-errors", "chart-bytes", "chart-latency"]
    assert "requests" in charts[0].get_attribute("aria-label")
    assert drv.find_elements(By.CSS_SELECTOR, "#disks progress")
    assert "BleepStore" in drv.find_element(By.ID, "server-version").text
    check_page(drv, shots, "09-server")


def test_users_page_for_the_admin(srv: Server, drv: WebDriver, shots: Path) -> None:
    login(drv, srv)
    drv.find_element(By.ID, "nav-users").click()
    heading(drv, "Users")
    keyboard_reaches(drv, ["user-name", "create-user-submit"])
    visible(drv, f'#users tr[data-user="{ACCESS_KEY}"]')

    drv.find_element(By.ID, "user-name").send_keys("console alice", Keys.ENTER)
    secret = wait(drv, lambda d: d.find_elements(By.ID, "new-secret-key")
                  and d.find_element(By.ID, "new-secret-key").get_attribute("value"))
    access = drv.find_element(By.ID, "new-access-key").get_attribute("value")
    user_row = f'#users tr[data-user="{access}"]'
    assert "console alice" in visible(drv, user_row).text
    check_page(drv, shots, "10-users-new-secret")
    assert boto3_client(srv.endpoint, access, secret).list_buckets()["Buckets"] == []

    drv.find_element(By.ID, "nav-buckets").click()  # away and back: the secret is gone
    heading(drv, "Buckets")
    drv.find_element(By.ID, "nav-users").click()
    visible(drv, user_row)
    assert not drv.find_elements(By.ID, "new-secret-key") and secret not in drv.page_source

    visible(drv, f"{user_row} .act-toggle").click()
    wait(drv, lambda d: d.find_element(By.CSS_SELECTOR, f"{user_row} .user-status").text
         == "disabled")
    with pytest.raises(ClientError):
        boto3_client(srv.endpoint, access, secret).list_buckets()
    check_page(drv, shots, "11-users-disabled")

    visible(drv, f"{user_row} .act-remove").click()
    confirm(drv)
    gone(drv, user_row)
    text_in(drv, "#status", "removed")


def parts_on_server(s3: Any, bucket: str, key: str) -> tuple[str, list[int]] | None:
    """The key's one multipart upload in progress and its parts, as the server has them."""
    ups = [u for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
           if u["Key"] == key]
    if not ups:
        return None
    parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=ups[0]["UploadId"]).get("Parts", [])
    return ups[0]["UploadId"], [p["PartNumber"] for p in parts]


def access_log(srv: Server, operation: str, key: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in srv.log_text().splitlines() if line.startswith("{")]
    return [e for e in lines if e.get("operation") == operation and e.get("key") == key]


def test_failed_part_resumes_and_cancel_aborts(
        srv: Server, drv: WebDriver, shots: Path, tmp_path: Path) -> None:
    bucket = "console-retry"
    s3 = fresh_bucket(srv, bucket)
    login(drv, srv)
    open_console(drv, srv, f"#/b/{bucket}/", bucket)
    data = os.urandom(BIG)
    name = f"resume-{os.urandom(4).hex()}.bin"  # its own lines in the access log, even on a rerun
    (tmp_path / name).write_bytes(data)
    item = f'#uploads li[data-key="{name}"]'
    # part 2 cannot reach the server: retried 3 times with backoff, then the file fails
    drv.execute_cdp_cmd("Network.enable", {})
    drv.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*partNumber=2&*"]})
    try:
        drv.find_element(By.ID, "upload-files").send_keys(str(tmp_path / name))
        visible(drv, f"{item}[data-state=failed]", 30)
    finally:
        drv.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    text_in(drv, f"{item} .note", "failed: network error")
    check_page(drv, shots, "12-upload-failed")
    before = parts_on_server(s3, bucket, name)
    assert before is not None and before[1] == [1, 3], before
    upload_id = before[0]

    drv.find_element(By.CSS_SELECTOR, f"{item} button[aria-label^=Retry]").click()
    visible(drv, f"{item}[data-state=done]", 30)
    got = s3.get_object(Bucket=bucket, Key=name)
    assert got["ETag"].endswith('-3"') and got["Body"].read() == data
    # resumed, not restarted: one upload, and each part stored exactly once
    assert len(access_log(srv, "CreateMultipartUpload", name)) == 1
    stored = [e["query"] for e in access_log(srv, "UploadPart", name)
              if e["status"] == 200]
    assert sorted(q.split("&")[0] for q in stored) == [f"partNumber={n}" for n in (1, 2, 3)]
    assert all(upload_id in q for q in stored)

    (tmp_path / "cancel.bin").write_bytes(data[: 10 * 1024 * 1024])
    item = '#uploads li[data-key="cancel.bin"]'
    network(drv, 1024 * 1024)
    try:
        drv.find_element(By.ID, "upload-files").send_keys(str(tmp_path / "cancel.bin"))
        wait(drv, lambda d: parts_on_server(s3, bucket, "cancel.bin")
             and int(d.find_element(By.CSS_SELECTOR, f"{item} progress").get_attribute("value")))
        drv.find_element(By.CSS_SELECTOR, f"{item} button[aria-label^=Cancel]").click()
        visible(drv, f"{item}[data-state=cancelled]")
    finally:
        network(drv)
    wait(drv, lambda d: parts_on_server(s3, bucket, "cancel.bin") is None, 15,
         "the cancelled upload was not aborted")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="cancel.bin")
    drv.find_element(By.ID, "uploads-clear").click()
    gone(drv, "#uploads li")
    drop_bucket(s3, bucket)


def test_listing_pages_search_folders_and_a_revoked_session(
        srv: Server, drv: WebDriver, shots: Path, tmp_path: Path) -> None:
    bucket = "console-pages"
    s3 = fresh_bucket(srv, bucket)
    for n in range(205):
        s3.put_object(Bucket=bucket, Key=f"many/key-{n:04d}", Body=b"x")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"top v1", b"top v2"):
        s3.put_object(Bucket=bucket, Key="top.txt", Body=body, Metadata={"origin": "e2e"})
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.txt").write_text("b")
    login(drv, srv)
    open_console(drv, srv, f"#/b/{bucket}/", bucket)
    row(drv, "top.txt").find_element(By.CSS_SELECTOR, ".act-details").click()
    assert "x-amz-meta-origin\ne2e" in text_in(drv, "#facts", "x-amz-meta-origin")
    assert len(visible(drv, "#versions").find_elements(By.CSS_SELECTOR, "tbody tr")) == 2
    drv.find_element(By.ID, "upload-folder").send_keys(str(folder))  # webkitdirectory
    visible(drv, '#uploads li[data-key="photos/sub/b.txt"][data-state=done]')
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="photos/")[
        "Contents"]) == ["photos/a.txt", "photos/sub/b.txt"]

    # a (synthetic) drop of a file on the listing uploads it into the folder shown
    drv.execute_script(
        "const dt = new DataTransfer();"
        "dt.items.add(new File(['dropped bytes'], 'dropped.txt', {type: 'text/plain'}));"
        "const zone = document.getElementById('listing');"
        "for (const type of ['dragover', 'drop']) zone.dispatchEvent(new DragEvent(type,"
        " {dataTransfer: dt, bubbles: true, cancelable: true}));")
    row(drv, "dropped.txt")
    assert s3.get_object(Bucket=bucket, Key="dropped.txt")["Body"].read() == b"dropped bytes"

    visible(drv, '#objects tr[data-prefix="many/"] a').click()
    heading(drv, f"{bucket} / many/")
    count = "return document.querySelectorAll('#objects tr[data-key]').length"
    wait(drv, lambda d: d.execute_script(count) == 200)
    drv.find_element(By.ID, "next-page").click()
    wait(drv, lambda d: d.execute_script(count) == 5)
    assert drv.find_element(By.ID, "page-number").text == "Page 2"
    assert not drv.find_element(By.ID, "next-page").is_enabled()
    row(drv, "many/key-0204")
    drv.find_element(By.ID, "prev-page").click()
    wait(drv, lambda d: d.execute_script(count) == 200)
    row(drv, "many/key-0000")
    drv.find_element(By.ID, "search").send_keys("key-01", Keys.ENTER)
    wait(drv, lambda d: d.execute_script(count) == 100)
    assert not drv.find_element(By.ID, "next-page").is_enabled()
    check_page(drv, shots, "13-listing-search")

    drv.find_element(By.CSS_SELECTOR, "nav.crumbs").find_element(By.LINK_TEXT, bucket).click()
    visible(drv, '#objects tr[data-prefix="photos/"] a').click()
    row(drv, "photos/a.txt")
    visible(drv, '#objects tr[data-prefix="photos/sub/"]')
    check_page(drv, shots, "14-folder")

    # the session ends elsewhere (another tab logs out): the next action goes to #/login
    cookie = cookie_header(drv)
    token = json.loads(http("GET", f"{srv.endpoint}/console/api/session",
                            {"Cookie": cookie})[2])["csrf_token"]
    assert http("POST", f"{srv.endpoint}/console/api/logout",
                {"Cookie": cookie, "x-bleepstore-csrf": token}, b"")[0] == 204
    drv.find_element(By.ID, "refresh").click()
    heading(drv, "Log in")
    text_in(drv, "#status.error", "session has ended")

    drop_bucket(s3, bucket)
