"""Per-worker runtime: building the backends from config and the maintenance loop.

Invariants: nothing here runs at import time; the maintenance loop is a daemon thread
that is safe to kill at any instant, and only the holder of the ``maintenance`` lease
row runs it on a node (storage.md §2.13) — no lock files.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import UTC, datetime, timedelta

from bleepstore.config import Config
from bleepstore.core import gc
from bleepstore.core.integrity import scan_missing_blobs
from bleepstore.core.services import Services
from bleepstore.metadata.commands import PurgeCompletedUploads, ReapExpiredUploads
from bleepstore.metadata.sqlite import SqliteStore
from bleepstore.s3.headers import iso_from_datetime
from bleepstore.storage.local import LocalBackend

log = logging.getLogger("bleepstore.runtime")


def build_services(cfg: Config) -> Services:
    store = SqliteStore(cfg.metadata.sqlite.path, synchronous=cfg.metadata.sqlite.synchronous,
                        busy_timeout_ms=cfg.metadata.sqlite.busy_timeout_ms)
    return Services(store=store, storage=LocalBackend(cfg.storage.local.root_dir), config=cfg)


def _ago(seconds: int) -> str:
    return iso_from_datetime(datetime.now(UTC) - timedelta(seconds=seconds))


def reap_and_sweep(svc: Services) -> dict[str, int]:
    """One maintenance pass: TTL-reap uploads, purge old completions, sweep GC."""
    st = svc.config.storage
    reaped = svc.store.apply(ReapExpiredUploads(_ago(st.multipart_ttl_s), svc.gc_not_before()))
    purged = svc.store.apply(PurgeCompletedUploads(_ago(st.completed_upload_retention_s)))
    swept = gc.sweep(svc)
    return {"uploads_reaped": reaped, "completed_purged": purged, "blobs_collected": swept}


def take_lease(svc: Services, holder: str, seconds: int) -> bool:
    now = datetime.now(UTC)
    expires = iso_from_datetime(now + timedelta(seconds=seconds))
    conn = svc.store.conn()
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.execute(
            "INSERT INTO leases (name, holder, expires_at) VALUES ('maintenance', ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, "
            "expires_at = excluded.expires_at WHERE leases.holder = excluded.holder "
            "OR leases.expires_at < ?", (holder, expires, iso_from_datetime(now)))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return cur.rowcount > 0


def _maintenance_loop(svc: Services, stop: threading.Event) -> None:
    interval = max(1, svc.config.storage.maintenance_interval_s)
    holder = f"{socket.gethostname()}:{os.getpid()}"
    logged: set[str] = set()  # missing-blob refs already logged at ERROR by this process
    while not stop.wait(interval):
        try:
            if take_lease(svc, holder, 3 * interval):
                counts = reap_and_sweep(svc)
                counts["missing_blobs"] = scan_missing_blobs(svc, logged)
                if any(counts.values()):
                    log.info("maintenance pass", extra=counts)
        except Exception:  # keep the loop alive; the next pass retries
            log.exception("maintenance pass failed")


def start_background(svc: Services) -> threading.Event:
    stop = threading.Event()
    thread = threading.Thread(target=_maintenance_loop, args=(svc, stop),
                              name="bleepstore-maintenance", daemon=True)
    thread.start()
    return stop
