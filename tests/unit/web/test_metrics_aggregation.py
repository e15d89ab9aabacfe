"""Request metrics summed in memory and published in batches (web/metrics.py): the
exposition is exactly what one prometheus_client update per observation gives, and
nothing observed stays unpublished past an idle moment, a scrape or the timer."""

from __future__ import annotations

import random
import subprocess
import sys

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from bleepstore.web.metrics import DURATION_BUCKETS, SIZE_BUCKETS, Metrics

METHODS = ("GET", "PUT", "HEAD")
PATHS = ("/{bucket}", "/{bucket}/{key}")


def _observations(n: int) -> list[dict[str, object]]:
    rng = random.Random(17)
    out = []
    for _ in range(n):
        status = rng.choice((200, 200, 204, 404, 503))
        out.append({
            "method": rng.choice(METHODS), "path": rng.choice(PATHS), "status": status,
            # bucket bounds themselves, and values beyond the last bound (+Inf)
            "duration": rng.choice((0.005, 0.0051, 0.3, 10, 11.5, rng.random())),
            "bytes_in": rng.choice((0, 256, 257, 4096, 1 << 27, rng.randrange(1 << 20))),
            "bytes_out": rng.randrange(1 << 16),
            "operation": rng.choice((None, "GetObject", "PutObject")),
            "error_code": {404: "NoSuchKey", 503: "SlowDown"}.get(status)})
    return out


def _reference(observations: list[dict[str, object]]) -> bytes:
    """The same series updated once per observation, the way observe() used to."""
    reg = CollectorRegistry()
    requests = Counter("bleepstore_http_requests_total", "HTTP requests",
                       ["method", "path", "status"], registry=reg)
    duration = Histogram("bleepstore_http_request_duration_seconds", "Request duration",
                         ["method", "path"], buckets=DURATION_BUCKETS, registry=reg)
    size_in = Histogram("bleepstore_http_request_size_bytes", "Request payload",
                        ["method", "path"], buckets=SIZE_BUCKETS, registry=reg)
    size_out = Histogram("bleepstore_http_response_size_bytes", "Response body",
                         ["method", "path"], buckets=SIZE_BUCKETS, registry=reg)
    ops = Counter("bleepstore_s3_operations_total", "S3 operations", ["operation", "status"],
                  registry=reg)
    errs = Counter("bleepstore_s3_errors_total", "S3 error codes returned", ["code"],
                   registry=reg)
    received = Counter("bleepstore_bytes_received_total", "Request payload bytes",
                       registry=reg)
    sent = Counter("bleepstore_bytes_sent_total", "Response body bytes", registry=reg)
    for o in observations:
        m, p, status = o["method"], o["path"], int(o["status"])  # type: ignore[call-overload]
        requests.labels(m, p, str(status)).inc()
        duration.labels(m, p).observe(o["duration"])
        size_in.labels(m, p).observe(o["bytes_in"])
        size_out.labels(m, p).observe(o["bytes_out"])
        received.inc(o["bytes_in"])  # type: ignore[arg-type]
        sent.inc(o["bytes_out"])  # type: ignore[arg-type]
        if o["operation"] is not None:
            ops.labels(o["operation"], "error" if status >= 400 else "success").inc()
        if o["error_code"]:
            errs.labels(o["error_code"]).inc()
    return generate_latest(reg)


def _series(exposition: bytes) -> list[str]:
    """Sample lines without the ``_created`` timestamps (they differ between registries)."""
    return sorted(line for line in exposition.decode().splitlines()
                  if line and not line.startswith("#") and "_created" not in line)


def test_summed_observations_expose_exactly_what_single_updates_do() -> None:
    observations = _observations(2_000)
    metrics = Metrics(lambda: {})
    for o in observations:
        metrics.begin()
        metrics.begin()  # another request in flight: nothing published on the way
        metrics.observe(**o)  # type: ignore[arg-type]
        metrics.cancel()
    ours = generate_latest(metrics.scrape_registry())
    got = [s for s in _series(ours) if not s.startswith(("bleepstore_objects_total",
                                                         "bleepstore_buckets_total",
                                                         "bleepstore_stored_bytes",
                                                         "bleepstore_multipart_uploads",
                                                         "bleepstore_gc_pending"))]
    assert got == _series(_reference(observations))


CHILD = r"""
import os, sys, time
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
from prometheus_client import CollectorRegistry, multiprocess
from bleepstore.web import metrics as mod

def published(name):
    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg)
    return sum(s.value for f in reg.collect() for s in f.samples if s.name == name)

m = mod.Metrics(lambda: {})
obs = dict(method="GET", path="/{bucket}/{key}", status=200, duration=0.01, bytes_in=0,
           bytes_out=5, operation="GetObject", error_code=None)
m.begin(); m.observe(**obs)
print("idle", published("bleepstore_s3_operations_total"))
m.begin(); m.begin(); m.observe(**obs)
print("busy", published("bleepstore_s3_operations_total"))
deadline = time.monotonic() + 10
while published("bleepstore_s3_operations_total") < 2 and time.monotonic() < deadline:
    time.sleep(0.01)
print("timer", published("bleepstore_s3_operations_total"))
m.observe(**obs)
m.begin()  # still busy: only the scrape publishes before the timer
m.begin(); m.observe(**obs)
m.scrape_registry()
print("scrape", published("bleepstore_s3_operations_total"))
"""


def test_observations_reach_the_files_when_idle_on_a_timer_and_at_a_scrape(
        tmp_path: object) -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = dict(line.split() for line in proc.stdout.splitlines())
    assert lines == {"idle": "1.0", "busy": "1.0", "timer": "2.0", "scrape": "4.0"}
