"""Health, metrics across workers, structured access logs and the API docs, against the
real gunicorn (observability.md)."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any

from openapi_spec_validator import validate
from support.raw import send

from bleepstore.s3.router import Op


def scrape(server: Any) -> str:
    with urllib.request.urlopen(f"{server.endpoint}/metrics") as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        return str(resp.read().decode())


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_health_endpoints(server: Any, s3: Any) -> None:
    health = send(server.endpoint, "GET", "/health", sign=False)
    body = json.loads(health.body)
    assert health.status == 200 and body["status"] == "ok"
    # a cluster node also reports its Raft state (cluster.md §10)
    assert set(body["checks"]) - {"cluster"} == {"metadata", "storage"}
    assert all(c["status"] == "ok" and isinstance(c["latency_ms"], int)
               for c in body["checks"].values())
    for path in ("/healthz", "/readyz"):
        resp = send(server.endpoint, "GET", path, sign=False)
        assert resp.status == 200 and resp.body == b""
        assert "x-amz-request-id" in resp.headers
    assert send(server.endpoint, "HEAD", "/health", sign=False).body == b""


def test_metrics_count_operations_across_workers(server: Any, s3: Any, bucket: str) -> None:
    before = scrape(server)
    puts = 30  # spread over both workers by the kernel's accept balancing
    for i in range(puts):
        s3.put_object(Bucket=bucket, Key=f"m{i}", Body=b"x" * 100)
    after = scrape(server)
    delta = (metric(after, "bleepstore_s3_operations_total", operation="PutObject",
                    status="success")
             - metric(before, "bleepstore_s3_operations_total", operation="PutObject",
                      status="success"))
    assert delta == puts
    assert metric(after, "bleepstore_objects_total") >= puts
    assert metric(after, "bleepstore_buckets_total") >= 1
    assert 'path="/metrics"' not in after
    assert metric(after, "bleepstore_http_requests_total", method="PUT",
                  path="/{bucket}/{key}", status="200") >= puts
    gets_before = metric(after, "bleepstore_s3_operations_total", operation="GetObject",
                         status="success")
    for i in range(5):  # object bodies leave through sendfile: still counted at close()
        assert s3.get_object(Bucket=bucket, Key=f"m{i}")["Body"].read() == b"x" * 100
    gets_after = metric(scrape(server), "bleepstore_s3_operations_total",
                        operation="GetObject", status="success")
    assert gets_after - gets_before == 5


def test_errors_are_counted_by_code(server: Any, s3: Any, bucket: str) -> None:
    before = metric(scrape(server), "bleepstore_s3_errors_total", code="NoSuchKey")
    for _ in range(3):
        send(server.endpoint, "GET", f"/{bucket}/missing")
    # metrics are recorded when each response closes, just after the client has it
    deadline = time.monotonic() + 10
    while (after := metric(scrape(server), "bleepstore_s3_errors_total",
                           code="NoSuchKey")) - before < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert after - before == 3


def test_access_log_line_carries_the_request_id(server: Any, s3: Any, bucket: str) -> None:
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "logged"},
                                    ExpiresIn=60)
    target = url.split(f":{server.port}", 1)[1]
    signature = target.split("X-Amz-Signature=")[1].split("&")[0]
    resp = send(server.endpoint, "PUT", target, body=b"12345", sign=False)
    assert resp.status == 200
    rid = resp.headers["x-amz-request-id"]
    deadline = time.monotonic() + 10  # the line is written at close(), after the last byte
    while True:
        found = [json.loads(x) for x in server.log_text().splitlines() if rid in x]
        access = [x for x in found if x.get("logger") == "bleepstore.access"]
        if access or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(access) == 1
    entry = access[0]
    assert entry["request_id"] == rid and entry["host_id"] == resp.headers["x-amz-id-2"]
    assert entry["operation"] == "PutObject" and entry["bucket"] == bucket
    assert entry["key"] == "logged" and entry["bytes_in"] == 5
    assert signature not in server.log_text()
    assert "X-Amz-Signature=REDACTED" in entry["query"]
    # NOTE: the session log also holds other tests' error codes (AuthorizationHeaderMalformed):
    # look for an Authorization header value, not for the word.
    log_text = server.log_text()
    assert "AWS4-HMAC-SHA256 Credential=" not in log_text and "bleepstore-secret" not in log_text


def test_openapi_document_matches_the_router(server: Any) -> None:
    resp = send(server.endpoint, "GET", "/openapi.json", sign=False)
    doc = json.loads(resp.body)
    validate(doc)
    assert doc["info"]["title"] == "BleepStore S3-Compatible API"
    assert doc["servers"] == [{"url": f"http://127.0.0.1:{server.port}"}]
    ids = {op["operationId"] for item in doc["paths"].values() for op in item.values()}
    assert ids == {op.value for op in Op}
    assert {t["name"] for t in doc["tags"]} == {"Bucket", "Object", "MultipartUpload"}


def test_docs_page_serves_swagger_ui_without_cdn(server: Any) -> None:
    page = send(server.endpoint, "GET", "/docs", sign=False)
    assert page.status == 200 and b"swagger" in page.body.lower()
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    for src in re.findall(rb'(?:src|href)="([^"]+)"', page.body):
        assert src.startswith(b"/docs/static/"), src
        asset = send(server.endpoint, "GET", src.decode(), sign=False)
        assert asset.status == 200 and len(asset.body) > 1000
    assert send(server.endpoint, "GET", "/docs/static/../../etc/passwd", sign=False).status == 404
