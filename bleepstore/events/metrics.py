"""The queue metrics of events.md §11 (multiprocess-safe like web/metrics.py: per-process
files under PROMETHEUS_MULTIPROC_DIR). Updating a metric never fails anything."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PUBLISHED = Counter("bleepstore_queue_published_total", "Confirmed publishes", ["kind"])
FAILED = Counter("bleepstore_queue_failed_total",
                 "Failed publish attempts or dropped events", ["reason"])
CONSUMED = Counter("bleepstore_queue_consumed_total", "Task deliveries handled", ["result"])
PENDING = Gauge("bleepstore_queue_pending", "Pending tasks (sampled)",
                multiprocess_mode="mostrecent")
DEAD_LETTER = Gauge("bleepstore_queue_dead_letter", "Dead-letter depth (sampled)",
                    multiprocess_mode="mostrecent")
OUTBOX_DEPTH = Gauge("bleepstore_queue_outbox_depth", "Outbox rows",
                     multiprocess_mode="mostrecent")
LATENCY = Histogram("bleepstore_queue_latency_ms",
                    "Milliseconds from commit to broker confirmation", ["kind"],
                    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 5000, 30000))


def count_dropped(n: int) -> None:
    try:
        FAILED.labels(reason="outbox_full").inc(n)
    except Exception:  # noqa: S110  a metric never fails a write
        pass
