"""Reads that race an overwrite or delete of the same key (storage.md §6).

A read loads the object row, then opens its blob. With no GC grace (local disk), a
concurrent overwrite or delete can commit and unlink that blob in between, so the open
finds nothing although no data is lost: the reader merely holds a superseded row. Such a
read is retried against the current row (it then serves the newer version, or NoSuchKey)
instead of answering 500. A blob missing while its row still points at it is corruption
and stays an InternalError.

Invariants: only ``BlobSuperseded`` triggers a retry, and it is raised only after the
store confirmed that the row changed; retries are bounded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from bleepstore import errors
from bleepstore.core.services import Services
from bleepstore.model import ObjectMeta

T = TypeVar("T")
log = logging.getLogger("bleepstore.core")
# NOTE: 5 was seen to run out (CI: one CopyObject answered 503 in test_e2e_concurrency,
# 4 keys overwritten every ~25 ms by 24 clients of a 3-worker server on 2 cores). Counted
# in two runs of that test (~2,200 GETs and copies each): ~100 needed a 2nd attempt, 14-18
# a 3rd, 0-4 a 4th: each retry fails again with p ~ 0.15-0.25. A superseded attempt
# costs the reads before its blob's (about a millisecond); 25 make giving up unlikely.
STALE_RETRIES = 25


class BlobSuperseded(Exception):
    """The blob of a row we read was replaced/deleted before we could open it."""


def raise_if_superseded(svc: Services, obj: ObjectMeta) -> None:
    """Call on BlobMissing: raise BlobSuperseded when the row (of that version) no longer
    points there."""
    current = svc.store.get_object_version(obj.bucket, obj.key, obj.version_id or "null")
    if current is None or current.meta.data_ref != obj.data_ref:
        raise BlobSuperseded(obj.data_ref)


def retry_superseded(operation: Callable[[], T]) -> T:
    """Run ``operation``; rerun it (from the metadata read) while its row was superseded."""
    for _ in range(STALE_RETRIES):
        try:
            return operation()
        except BlobSuperseded:
            continue
    log.warning("a read gave up after %d attempts: its key changed before each could read "
                "its blob", STALE_RETRIES)
    raise errors.ServiceUnavailable()  # the key changes faster than we can read it
