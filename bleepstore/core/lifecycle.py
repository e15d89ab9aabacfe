"""Bucket lifecycle: PutBucketLifecycleConfiguration, GetBucketLifecycleConfiguration,
DeleteBucketLifecycle, and the background pass that carries the rules out (docs/decisions.md,
Lifecycle).

Invariants:
- The configuration is stored normalised (``s3.lifecycle.to_json``) as the bucket's
  ``lifecycle`` document: replicated in cluster mode, dropped with the bucket. Owner only.
- The pass runs on one node (the holder of the ``maintenance`` lease; in cluster mode only on
  the Raft leader: runtime.py decides) and changes data only through ordinary commands
  (DeleteObjects, AbortUpload). Each command is decided from rows read moments before and
  re-checked just before it is applied: a key whose current version changed in between is
  left for the next pass. Every decision is a function of the data, so a kill -9 anywhere
  loses nothing: what committed is done, the rest is decided again by the next pass.
- Progress is a cursor per bucket in ``node_meta`` (``lifecycle``), saved after each batch of
  a bucket too large for one: a pass killed midway resumes there; a finished pass clears it.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bleepstore import errors
from bleepstore.core import gc
from bleepstore.core.access import bucket_for
from bleepstore.core.inputs import read_xml_body
from bleepstore.core.request import S3Request, S3Response, empty, origin_of, xml_response
from bleepstore.core.services import Services
from bleepstore.metadata.commands import (
    AbortUpload,
    DeleteBucketConfig,
    DeleteObjects,
    PutBucketConfig,
    PutNodeMeta,
)
from bleepstore.model import ObjectVersion
from bleepstore.s3 import lifecycle as lc
from bleepstore.s3 import lifecycle_due as lcd
from bleepstore.s3.checksums import integrity_from_headers
from bleepstore.s3.headers import now_iso

log = logging.getLogger("bleepstore.lifecycle")

KIND = "lifecycle"  # the bucket configuration kind and the node_meta key of the cursors
CHUNK = 100  # keys per DeleteObjects command
PHASES = ("current", "history", "uploads")


# --- the API -----------------------------------------------------------------------------


def new_rule_id() -> str:
    """An ID for a rule sent without one: 48 characters, as AWS makes them (base64 of a
    random UUID's text)."""
    return base64.b64encode(str(uuid.uuid4()).encode()).decode()


def put_bucket_lifecycle(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "OWNER")
    spec = integrity_from_headers(req.header)
    body = read_xml_body(req.payload)  # verifies Content-MD5 / x-amz-checksum-*
    if spec.content_md5 is None and spec.checksum_algorithm is None:
        raise errors.InvalidRequest("Missing required header for this request: Content-MD5")
    config = lc.parse_configuration(body, new_rule_id, req.header(lc.MIN_SIZE_HEADER))
    svc.store.apply(PutBucketConfig(bucket.name, KIND, lc.to_json(config),
                                    origin=origin_of(req)))
    return empty(200).header(lc.MIN_SIZE_HEADER, config.min_object_size)


def get_bucket_lifecycle(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "OWNER")
    document = svc.store.get_bucket_config(bucket.name, KIND)
    if document is None:
        raise errors.NoSuchLifecycleConfiguration(BucketName=bucket.name)
    config = lc.from_json(document)
    return xml_response(lc.render(config)).header(lc.MIN_SIZE_HEADER, config.min_object_size)


def delete_bucket_lifecycle(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "OWNER")
    svc.store.apply(DeleteBucketConfig(bucket.name, KIND, origin=origin_of(req)))
    return empty(204)


# --- the background pass -----------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """Where a bucket's sweep stands: a phase and the last row done (a key, or an upload's
    (key, initiated_at, upload_id)); ``after`` None: the phase starts at the beginning."""

    phase: str = PHASES[0]
    after: Any = None


@dataclass(frozen=True)
class _Batch:
    svc: Services
    bucket: str
    rules: Sequence[lc.Rule]
    now_ms: int
    day_ms: int
    limit: int


def _load_cursors(svc: Services) -> dict[str, Cursor]:
    raw = svc.store.node_meta(KIND)
    data = json.loads(raw).get("cursors", {}) if raw else {}
    return {b: Cursor(c[0], c[1]) for b, c in data.items() if c and c[0] in PHASES}


def _save(svc: Services, cursors: dict[str, Cursor], **extra: Any) -> None:
    state = {"cursors": {b: [c.phase, c.after] for b, c in cursors.items()}, **extra}
    svc.store.apply(PutNodeMeta(KIND, json.dumps(state, separators=(",", ":"))))


def run_pass(svc: Services, keep_going: Callable[[], bool] = lambda: True) -> dict[str, int]:
    """One sweep of every bucket with a lifecycle configuration, a batch per bucket in turn
    (so a huge bucket does not hold the others back); stops early when ``keep_going()`` is
    False (the lease was lost). -> counts of what it did."""
    started, t0 = now_iso(), time.monotonic()
    cursors = _load_cursors(svc)
    saved = bool(cursors)
    counts: Counter[str] = Counter()
    finished: set[str] = set()
    while True:
        todo = [(b, d) for b, d in svc.store.buckets_with_config(KIND) if b not in finished]
        if not todo:
            break
        for bucket, document in todo:
            if not keep_going():
                return dict(counts)
            try:
                nxt = _bucket_batch(svc, bucket, lc.from_json(document).rules,
                                    cursors.get(bucket, Cursor()), counts)
            except errors.NoSuchBucket:  # deleted meanwhile (its configuration with it)
                nxt = None
            except Exception:  # NOTE: one bucket's failure must not stop the others
                log.exception("lifecycle: bucket %s left for the next pass", bucket)
                counts["failed_buckets"] += 1
                finished.add(bucket)
                continue
            if nxt is None:
                finished.add(bucket)
                cursors.pop(bucket, None)
            else:
                cursors[bucket] = nxt
            if nxt is not None and nxt.after is not None or saved:
                _save(svc, cursors)  # a crash from here on resumes at the cursors
                saved = bool(cursors)
    _save(svc, {}, last_pass={"started": started, "finished": now_iso(),
                              "seconds": round(time.monotonic() - t0, 3), **counts})
    return dict(counts)


def _bucket_batch(svc: Services, bucket: str, rules: Sequence[lc.Rule], cursor: Cursor,
                  counts: Counter[str]) -> Cursor | None:
    """One batch of the bucket's current phase -> the next cursor (None: sweep done)."""
    wanted = lcd.phases(rules)
    index, after = PHASES.index(cursor.phase), cursor.after
    while index < len(PHASES) and not wanted[index]:
        index, after = index + 1, None
    if index == len(PHASES):
        return None
    cfg = svc.config.lifecycle
    batch = _Batch(svc, bucket, rules, int(time.time() * 1000), cfg.day_seconds * 1000,
                   cfg.batch_size)
    step = (_current_batch, _history_batch, _uploads_batch)[index]
    after = step(batch, after, counts)
    if after is not None:
        return Cursor(PHASES[index], after)
    later = [i for i in range(index + 1, len(PHASES)) if wanted[i]]
    return Cursor(PHASES[later[0]]) if later else None


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]


def _same(a: ObjectVersion | None, b: ObjectVersion | None) -> bool:
    """The same current version (or none, both times)."""
    if a is None or b is None:
        return a is b
    return (a.vseq, a.meta.data_ref, a.meta.last_modified) == (
        b.vseq, b.meta.data_ref, b.meta.last_modified)


def _ref(entry: ObjectVersion | None) -> str:
    return entry.meta.data_ref if entry is not None else ""


def _delete(b: _Batch, targets: Sequence[tuple[str, str | None]],
            seen: dict[str, ObjectVersion]) -> int:
    """DeleteObjects for ``targets`` ((key, version id or None: the current version)), in
    chunks; a key whose current version is no longer the one ``seen`` is skipped."""
    done = 0
    for chunk in _chunks(targets):
        fresh = b.svc.store.current_versions(b.bucket, sorted({k for k, _ in chunk}))
        kept = [(k, v) for k, v in chunk if _same(fresh.get(k), seen.get(k))]
        if not kept:
            continue
        by_version = kept[0][1] is not None
        # NOTE: checked again inside the commit: a write after the re-read is never removed
        removed = b.svc.store.apply(DeleteObjects(
            b.bucket, tuple(k for k, _ in kept), b.svc.gc_not_before(), now=now_iso(),
            version_ids=tuple(v for _, v in kept) if by_version else (),
            if_current=tuple(_ref(seen.get(k)) for k, _ in kept)))
        gc.collect_now(b.svc, [r[1] for r in removed])
        done += len(removed)
    return done


def _current_batch(b: _Batch, after: str | None, counts: Counter[str]) -> str | None:
    """Expiration of current versions: deleted, or hidden under a delete marker."""
    rows = b.svc.store.lifecycle_current(b.bucket, after or "", b.limit)
    due = [r for r in rows
           if lcd.action_for(b.rules, lcd.states_of([r])[0], b.now_ms, b.day_ms) == lcd.EXPIRE]
    if due:
        counts["expired"] += _delete(b, [(r.key, None) for r in due], {r.key: r for r in due})
    return rows[-1].key if len(rows) == b.limit else None


def _history_batch(b: _Batch, after: str | None, counts: Counter[str]) -> str | None:
    """Noncurrent versions and lone delete markers, a key's whole history at a time."""
    store = b.svc.store
    with store.snapshot():  # the history and the current rows as of one instant
        rows = store.lifecycle_history(b.bucket, after or "", b.limit)
        next_after = None
        if len(rows) == b.limit:  # the last key may be cut: leave it to the next batch
            last = rows[-1].key
            rows = [r for r in rows if r.key != last] or store.lifecycle_history(
                b.bucket, "", -1, only_key=last)  # one key fills the batch: all of it
            next_after = rows[-1].key
        currents = store.current_versions(b.bucket, list(dict.fromkeys(r.key for r in rows)))
    targets: list[tuple[str, str | None]] = []
    for key, group in itertools.groupby(rows, key=lambda r: r.key):
        current = currents.get(key)
        history = ([current] if current is not None else []) + list(group)
        for entry, state in zip(history, lcd.states_of(history), strict=True):
            if lcd.action_for(b.rules, state, b.now_ms, b.day_ms) == lcd.DELETE_VERSION:
                targets.append((key, entry.version_id))
    if targets:
        counts["noncurrent_deleted"] += _delete(b, targets, currents)
    return next_after


def _uploads_batch(b: _Batch, after: list[str] | None, counts: Counter[str]
                   ) -> list[str] | None:
    """AbortIncompleteMultipartUpload."""
    cursor = (after[0], after[1], after[2]) if after else None
    uploads = b.svc.store.scan_uploads_after(b.bucket, cursor, "", b.limit)
    for u in uploads:
        due = lcd.abort_due(b.rules, u.key, lcd.iso_to_ms(u.initiated_at), b.day_ms)
        if due is None or due.at_ms > b.now_ms:
            continue
        try:
            b.svc.store.apply(AbortUpload(b.bucket, u.key, u.upload_id,
                                          b.svc.gc_not_before(), reason="expired"))
        except errors.NoSuchUpload:  # completed or aborted meanwhile
            continue
        gc.collect_now(b.svc, [f"upload:{u.upload_id}"])
        counts["uploads_aborted"] += 1
    last = uploads[-1] if len(uploads) == b.limit else None
    return [last.key, last.initiated_at, last.upload_id] if last is not None else None
