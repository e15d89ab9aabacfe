"""Rows whose blob is missing (storage.md §5.5): corruption, found and reported, never
silently dropped.

A background pass (the maintenance loop, never startup, so a start stays fast whatever
the object count) walks the ``objects`` rows in key order, in batches, and asks the
backend for each blob's size. A row whose blob is gone is re-read before it is counted
(a concurrent overwrite or delete legitimately unlinks the old blob). The result is
stored in ``node_meta`` under ``missing_blobs`` (count + the first refs) and shown by
/health; each missing ref is logged at ERROR once per process.

Invariants: read-only on data; the row stays (reads of it answer InternalError).
"""

from __future__ import annotations

import json
import logging

from bleepstore.core.services import Services
from bleepstore.metadata.commands import PutNodeMeta
from bleepstore.s3.headers import now_iso
from bleepstore.storage.backend import BlobMissing

log = logging.getLogger("bleepstore.storage")

BATCH = 500
NODE_META_KEY = "missing_blobs"
REPORTED_REFS = 10


def _missing(svc: Services, bucket: str, key: str, ref: str) -> bool:
    if not svc.storage.holds(ref):  # owner placement: the owner checks its own
        return False
    try:
        svc.storage.size(ref)
        return False
    except BlobMissing:
        current = svc.store.get_object(bucket, key)
        return current is not None and current.data_ref == ref


def scan_missing_blobs(svc: Services, logged: set[str]) -> int:
    """One pass over every object row; records and returns the number of missing blobs.

    ``logged`` holds the refs already logged by this process (each is logged once).
    """
    cursor: tuple[str, str] | None = None
    refs: list[str] = []
    count = 0
    while True:
        batch = svc.store.object_refs_after(cursor, BATCH)
        if not batch:
            break
        for bucket, key, ref in batch:
            if not _missing(svc, bucket, key, ref):
                continue
            count += 1
            if len(refs) < REPORTED_REFS:
                refs.append(ref)
            if ref not in logged:
                logged.add(ref)
                log.error("blob missing for an existing object: bucket=%s key=%s data_ref=%s",
                          bucket, key, ref)
        cursor = (batch[-1][0], batch[-1][1])
    report = {"count": count, "refs": refs, "checked_at": now_iso()}
    svc.store.apply(PutNodeMeta(NODE_META_KEY, json.dumps(report, sort_keys=True)))
    return count


def missing_blob_count(svc: Services) -> int | None:
    """The count of the last pass, or None before the first one."""
    raw = svc.store.node_meta(NODE_META_KEY)
    if raw is None:
        return None
    try:
        return int(json.loads(raw)["count"])
    except (ValueError, KeyError, TypeError):
        return None
