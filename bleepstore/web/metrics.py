"""Prometheus metrics (observability.md §3), multiprocess-safe under gunicorn.

Invariants: counters and histograms are per-process files when PROMETHEUS_MULTIPROC_DIR
is set (gunicorn.conf.py sets it before any worker starts; recovery empties it); gauges
with one source of truth (object/bucket/byte counts) are read from the ``stats`` row at
scrape time, never kept per process; updating a metric never fails a request.

A request's observations are summed in memory (``_Pending``) and published to those
files when the process has no request left in flight, else by a timer ``PUBLISH_EVERY_S``
later, and before this process answers a scrape (issue 17: ten mmap
writes under a lock per request cost more than the rest of the bookkeeping together).
"""

from __future__ import annotations

import logging
import os
import threading
from bisect import bisect_left
from collections import Counter as Counter_
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

log = logging.getLogger("bleepstore.metrics")

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
PUBLISH_EVERY_S = 0.1


def _multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def _allocate(fd: int, size: int) -> None:
    os.posix_fallocate(fd, 0, max(size, os.fstat(fd).st_size))


def install_allocating_mmap() -> None:
    """Make prometheus_client allocate its per-process files' blocks before using them.

    NOTE: it grows them with truncate() (sparse) and writes through mmap: on a full disk
    the first write to a new page is a SIGBUS that kills the worker, and every respawned
    worker died the same way (issue 9). With the blocks allocated first, a full disk is an
    OSError when a metric is first created, which ``observe`` swallows.
    """
    from prometheus_client import mmap_dict, values

    base = mmap_dict.MmapedDict
    if getattr(getattr(values, "MmapedDict", None), "allocating", False):
        return
    initial = int(getattr(mmap_dict, "_INITIAL_MMAP_SIZE", 1 << 20))

    class AllocatingMmapedDict(base):  # type: ignore[misc, valid-type]
        allocating = True

        def __init__(self, filename: str, read_mode: bool = False) -> None:
            if not read_mode:
                fd = os.open(filename, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    _allocate(fd, initial)
                finally:
                    os.close(fd)
            super().__init__(filename, read_mode)

        def _init_value(self, key: str) -> None:
            if self._used + len(key.encode()) + 64 > self._capacity:
                _allocate(self._f.fileno(), self._capacity * 2)
            super()._init_value(key)

    values.MmapedDict = AllocatingMmapedDict  # type: ignore[attr-defined]


class StatsCollector:
    """Scrape-time gauges from the metadata ``stats`` row."""

    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        s = self.stats()
        for name, key, doc in (
                ("bleepstore_objects_total", "object_count", "Objects stored"),
                ("bleepstore_buckets_total", "bucket_count", "Buckets"),
                ("bleepstore_stored_bytes", "total_bytes", "Sum of object sizes"),
                ("bleepstore_multipart_uploads", "upload_count", "Uploads in progress"),
                ("bleepstore_gc_pending", "gc_pending", "Blobs waiting for GC")):
            yield GaugeMetricFamily(name, doc, value=s.get(key, 0))


class _Pending:
    """Observations not yet published, summed per label set."""

    def __init__(self) -> None:
        self.requests: Counter_[tuple[str, str, str]] = Counter_()
        # (histogram, method, path) -> [sum, count per bucket (prometheus' own order)]
        self.histograms: dict[tuple[Histogram, str, str], list[Any]] = {}
        self.operations: Counter_[tuple[str, str]] = Counter_()
        self.errors: Counter_[str] = Counter_()
        self.bytes_in = self.bytes_out = 0

    def sample(self, hist: Histogram, bounds: tuple[float, ...], method: str, path: str,
               value: float) -> None:
        entry = self.histograms.get((hist, method, path))
        if entry is None:
            entry = self.histograms[(hist, method, path)] = [0.0, [0] * (len(bounds) + 1)]
        entry[0] += value
        entry[1][bisect_left(bounds, value)] += 1  # the first bucket with value <= bound


def _publish_histogram(hist: Histogram, method: str, path: str, total: float,
                       counts: list[int]) -> None:
    # NOTE: prometheus_client keeps a histogram child as a ``_sum`` value and one value
    # per bucket (not cumulative): adding n to them is n observe() calls in one write each.
    # tests/unit/web/test_metrics_aggregation.py proves the exposition is the same.
    child = hist.labels(method, path)
    child._sum.inc(total)
    for bucket, n in zip(child._buckets, counts, strict=True):
        if n:
            bucket.inc(n)


class Metrics:
    """All request-path metrics of one process."""

    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        # NOTE: in multiprocess mode values live in mmap'd files and the registry is only
        # used for exposition; a private registry keeps create_app() re-entrant in tests.
        self.registry = CollectorRegistry()
        reg = None if _multiprocess() else self.registry
        if reg is None:
            install_allocating_mmap()
        self.http_requests = Counter("bleepstore_http_requests_total", "HTTP requests",
                                     ["method", "path", "status"], registry=reg)
        self.http_duration = Histogram("bleepstore_http_request_duration_seconds",
                                       "Request duration", ["method", "path"],
                                       buckets=DURATION_BUCKETS, registry=reg)
        self.request_size = Histogram("bleepstore_http_request_size_bytes", "Request payload",
                                      ["method", "path"], buckets=SIZE_BUCKETS, registry=reg)
        self.response_size = Histogram("bleepstore_http_response_size_bytes", "Response body",
                                       ["method", "path"], buckets=SIZE_BUCKETS, registry=reg)
        self.operations = Counter("bleepstore_s3_operations_total", "S3 operations",
                                  ["operation", "status"], registry=reg)
        self.errors = Counter("bleepstore_s3_errors_total", "S3 error codes returned",
                              ["code"], registry=reg)
        self._registry_or_none = reg
        # NOTE: created on first use: an unlabelled counter opens its mmap file when it is
        # constructed, and on a full disk that must fail a metric update, not the app.
        self._byte_counters: tuple[Counter, Counter] | None = None
        self._collectors: list[Any] = []
        self.add_collector(StatsCollector(stats))
        self._lock = threading.Lock()
        self._pending = _Pending()
        self._in_flight = 0
        self._timer_armed = False

    def add_collector(self, collector: Any) -> None:
        """A scrape-time collector (one source of truth read at each scrape)."""
        self._collectors.append(collector)
        if self._registry_or_none is not None:
            self._registry_or_none.register(collector)

    def _bytes(self) -> tuple[Counter, Counter]:
        if self._byte_counters is None:
            reg = self._registry_or_none
            self._byte_counters = (
                Counter("bleepstore_bytes_received_total", "Request payload bytes",
                        registry=reg),
                Counter("bleepstore_bytes_sent_total", "Response body bytes", registry=reg))
        return self._byte_counters

    def begin(self) -> None:
        """A request started; ``observe()`` or ``cancel()`` ends it."""
        with self._lock:
            self._in_flight += 1

    def cancel(self) -> None:
        """A begun request that will not be observed (the application raised)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)

    def observe(self, *, method: str, path: str, status: int, duration: float,
                bytes_in: int, bytes_out: int, operation: str | None,
                error_code: str | None) -> None:
        """One finished request (begun with ``begin()``)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            p = self._pending
            p.requests[(method, path, str(status))] += 1
            p.sample(self.http_duration, DURATION_BUCKETS, method, path, duration)
            p.sample(self.request_size, SIZE_BUCKETS, method, path, bytes_in)
            p.sample(self.response_size, SIZE_BUCKETS, method, path, bytes_out)
            p.bytes_in += bytes_in
            p.bytes_out += bytes_out
            if operation is not None:
                p.operations[(operation, "error" if status >= 400 else "success")] += 1
            if error_code:
                p.errors[error_code] += 1
            idle = self._in_flight == 0
            arm = not idle and not self._timer_armed
            self._timer_armed = self._timer_armed or arm
        if idle:
            self.publish()
        elif arm:  # busy: publish soon whether or not the process ever goes idle
            timer = threading.Timer(PUBLISH_EVERY_S, self.publish)
            timer.daemon = True
            timer.start()

    def publish(self) -> None:
        """Write what was observed since the last publish to this process's files."""
        with self._lock:
            p, self._pending = self._pending, _Pending()
            self._timer_armed = False
        try:
            for (method, path, status), n in p.requests.items():
                self.http_requests.labels(method, path, status).inc(n)
            for (hist, method, path), (total, counts) in p.histograms.items():
                _publish_histogram(hist, method, path, total, counts)
            for (operation, outcome), n in p.operations.items():
                self.operations.labels(operation, outcome).inc(n)
            for code, n in p.errors.items():
                self.errors.labels(code).inc(n)
            if p.requests:
                counter_in, counter_out = self._bytes()
                counter_in.inc(p.bytes_in)
                counter_out.inc(p.bytes_out)
        except Exception as exc:  # best effort (observability.md §3.1)
            log.debug("metric update failed: %s", exc)

    def scrape_registry(self) -> CollectorRegistry:
        """What a scrape reads: all workers' files plus the scrape-time collectors."""
        self.publish()
        if not _multiprocess():
            return self.registry
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        for collector in self._collectors:
            registry.register(collector)
        return registry

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The negotiated exposition of ``scrape_registry()``."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.scrape_registry()), content_type
