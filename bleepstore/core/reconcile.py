"""The orphan scan (storage.md §5.5): delete blobs that no metadata row references.

A blob renamed into place whose metadata commit never happened (a crash between rename
and commit, or a failed best-effort delete) is referenced by nothing and only this scan
removes it. Multipart directories without an upload row are removed by the backend's
``recover()`` at startup; this scan covers the part files inside live uploads too.

Invariants: at run time (admin endpoint) only blobs older than the minimum age are
considered, because a younger one may belong to a write that has not committed yet. At
startup (``reconcile_at_startup``: master, data-dir lock held, before fork) no writer
exists, so every blob is considered whatever its age. "Referenced" means an ``objects``,
``multipart_parts`` or ``blob_gc`` row names the ref, so a blob is never deleted ahead of
its GC intent's sweep.
"""

from __future__ import annotations

import logging
import math
import os
import time

from bleepstore.core.services import Services

log = logging.getLogger("bleepstore.storage")

MIN_AGE_S = 3600.0
# NOTE: tests set this to 0 to reconcile at run time without waiting an hour; there is
# no config key because a small age is unsafe on a running server.
MIN_AGE_ENV = "BLEEPSTORE_RECONCILE_MIN_AGE_S"
# NOTE: not 0: a blob stamped in the future (the clock stepped back since the crash that
# orphaned it) must not escape the startup scan either.
ANY_AGE = -math.inf


def min_age_s() -> float:
    raw = os.environ.get(MIN_AGE_ENV)
    if not raw:
        return MIN_AGE_S
    try:
        return max(0.0, float(raw))
    except ValueError:
        log.warning("ignoring %s=%r (not a number)", MIN_AGE_ENV, raw)
        return MIN_AGE_S


def reconcile(svc: Services, older_than_s: float | None = None) -> dict[str, int]:
    """Run time: walk the blobs older than the minimum age; delete the unreferenced."""
    return _scan(svc, min_age_s() if older_than_s is None else older_than_s)


def reconcile_at_startup(svc: Services) -> dict[str, int]:
    """Startup, with no writer alive (the caller holds the data-dir lock): every blob."""
    started = time.monotonic()
    # One read transaction for the whole walk halves the cost of the per-ref lookups;
    # harmless here, where no writer waits on a checkpoint.
    with svc.store.snapshot():
        counts = _scan(svc, ANY_AGE)
    counts["orphan_scan_ms"] = round((time.monotonic() - started) * 1000)
    return counts


def _scan(svc: Services, older_than_s: float) -> dict[str, int]:
    scanned = removed = failed = 0
    for ref in svc.storage.iter_blob_refs(older_than_s=older_than_s):
        scanned += 1
        if svc.store.is_referenced(ref):
            continue
        try:
            svc.storage.delete(ref)
            removed += 1
        except Exception as exc:  # next scan retries; never fail startup for this
            failed += 1
            log.warning("reconcile: cannot delete orphan %s: %s", ref, exc)
    return {"orphans_scanned": scanned, "orphans_removed": removed,
            "orphans_failed": failed}
