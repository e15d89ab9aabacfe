"""Blob garbage collection (storage.md §5.4).

Invariants: a blob is deleted only after the commit that dropped its last reference
recorded a GC intent; the intent row is removed only after the backend delete
succeeded, so a crash anywhere leaves work that the next sweep finishes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from bleepstore import errors
from bleepstore.core.services import Services
from bleepstore.metadata.commands import AddGcIntent, GcSwept
from bleepstore.model import is_inline_ref
from bleepstore.s3.headers import iso_from_datetime, now_iso

log = logging.getLogger("bleepstore.storage")

UNKNOWN_OUTCOME_GRACE_S = 3600


def _retry_at(attempts: int) -> str:
    delay = min(2 ** (attempts + 1) * 60, 3600)
    return iso_from_datetime(datetime.now(UTC) + timedelta(seconds=delay))


def still_referenced(svc: Services, ref: str) -> bool:
    """A row points at ``ref`` after all: an intent recorded for a commit whose outcome was
    unknown (cluster mode) that did commit. The intent goes, the blob stays."""
    if ref.startswith("upload:"):
        return svc.store.upload_exists(ref.removeprefix("upload:"))
    return svc.store.is_live(ref)


def discard_uncommitted(svc: Services, ref: str, exc: BaseException) -> None:
    """The blob staged for a write that failed: deleted now, unless the write may still
    commit (``OutcomeUnknown``: a Raft entry that timed out); then a ``failed`` intent late
    enough for that entry to have committed or been dropped (cluster.md §2)."""
    if isinstance(exc, errors.OutcomeUnknown):
        delay = max(svc.config.storage.effective_gc_grace_s, UNKNOWN_OUTCOME_GRACE_S)
        not_before = iso_from_datetime(datetime.now(UTC) + timedelta(seconds=delay))
        try:
            svc.store.apply(AddGcIntent(ref, "failed", not_before))
        except Exception as err:  # the orphan scan collects it
            log.warning("cannot record blob %s of an unconfirmed write: %s", ref, err)
        return
    try:
        svc.storage.delete(ref)
    except Exception as err:  # the orphan scan collects it
        log.warning("cannot remove uncommitted blob %s: %s", ref, err)


def delete_refs(svc: Services, refs: Iterable[tuple[str, int]]) -> tuple[int, int]:
    """Delete each blob, then settle the intents in one transaction."""
    done: list[str] = []
    retry: list[tuple[str, str]] = []
    for ref, attempts in refs:
        if still_referenced(svc, ref):
            done.append(ref)
            continue
        try:
            svc.storage.delete(ref)
            done.append(ref)
        except Exception as exc:  # any backend failure: retry later, never fail a request
            log.warning("gc: cannot delete %s: %s", ref, exc)
            retry.append((ref, _retry_at(attempts)))
    if done or retry:
        svc.store.apply(GcSwept(done=tuple(done), retry=tuple(retry)))
    return len(done), len(retry)


def collect_now(svc: Services, refs: Iterable[str | None]) -> None:
    """After a commit: drop the blobs it released when no grace period applies (an inline
    blob went with the commit itself)."""
    if svc.config.storage.effective_gc_grace_s > 0:
        return
    wanted = [(r, 0) for r in refs if r and not is_inline_ref(r)]
    if wanted:
        try:
            delete_refs(svc, wanted)
        except Exception as exc:  # best effort; the sweeper finishes the job
            log.warning("gc: deferred after commit: %s", exc)


def sweep(svc: Services, batch: int = 500) -> int:
    """Delete every due blob, in batches; returns how many were deleted."""
    total = 0
    while True:
        due = svc.store.due_gc(now_iso(), batch)
        if not due:
            return total
        done, _ = delete_refs(svc, due)
        total += done
        if len(due) < batch or done == 0:
            return total
