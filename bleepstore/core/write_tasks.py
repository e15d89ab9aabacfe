"""The sync and async write modes (events.md §5): an eligible write is persisted as a
WriteTask, published to this node's task channel and carried out by a consumer.

Invariants:
- Everything a direct write checks first (auth, bucket, permissions, conditions, the
  body's digests) is checked before a task exists; a PutObject body is durable in
  ``pending_dir`` (fsync, rename, fsync dir) before its row is committed.
- The broker never blocks a write: if publishing fails, the handler carries the task out
  itself and answers as write-through (events.md §5.3 step 5).
- A task is done exactly when its change commits: the row turns ``done`` inside the
  command's transaction (``EventOrigin.task_id``). A duplicate delivery finds it settled.
- PutObject's blob ref is derived from the task id, so a retried task reuses its blob.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bleepstore import errors
from bleepstore.core import gc
from bleepstore.core.request import S3Request, S3Response, empty
from bleepstore.events.publisher import PublishError
from bleepstore.events.tasks import TaskMessage, TaskQueue
from bleepstore.metadata.commands import DeleteObjects, PutBucketAcl, PutObject, PutObjectAcl
from bleepstore.metadata.task_rows import TERMINAL, TaskRow, TaskRows, TaskSettled
from bleepstore.model import ContentHeaders, EventOrigin, ObjectMeta
from bleepstore.s3.headers import now_iso
from bleepstore.storage.backend import BlobMissing
from bleepstore.storage.pending import PendingFiles

log = logging.getLogger("bleepstore.events")

WAIT_POLL_S = 0.05


class Transient(Exception):
    """A failure worth retrying (events.md §5.5): SQLite busy, a backend 5xx."""


@dataclass
class WriteTasks:
    """One per worker (``Services.tasks``) when ``queue.consistency`` is sync or async."""

    mode: str
    node_id: str
    rows: TaskRows
    pending: PendingFiles
    new_channel: Callable[[], TaskQueue]
    max_retries: int
    sync_timeout_s: float
    _local: threading.local = field(default_factory=threading.local)
    _settled: threading.Condition = field(default_factory=threading.Condition)
    _warned: float = 0.0

    def channel(self) -> TaskQueue:
        """This thread's connection to the task channel (pika and librdkafka objects
        belong to one thread)."""
        channel = getattr(self._local, "channel", None)
        if channel is None:
            channel = self.new_channel()
            channel.connect()
            self._local.channel = channel
        return channel

    def drop_channel(self) -> None:
        channel, self._local.channel = getattr(self._local, "channel", None), None
        if channel is not None:
            try:
                channel.close()
            except Exception:  # noqa: S110  a broken connection
                pass

    def settled(self) -> None:
        with self._settled:
            self._settled.notify_all()

    def wait(self, task_id: str, timeout_s: float) -> TaskRow | None:
        """The row once terminal, or None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            row = self.rows.get(task_id)
            if row is not None and row.state in TERMINAL:
                return row
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with self._settled:
                self._settled.wait(min(WAIT_POLL_S, left))


def new_task_id() -> str:
    from ulid import ULID

    return f"task_{ULID()}"


def write_id(task_id: str) -> str:
    """PutObject's deterministic write id (events.md §5.5)."""
    return hashlib.sha256(task_id.encode()).hexdigest()[:32]


# --- the handler's side ---------------------------------------------------------------

def submit(svc: Any, req: S3Request, task_id: str, payload: dict[str, Any],
           answer: S3Response, location: str) -> S3Response:
    """Record, publish and (sync) wait for a task; ``answer`` is the direct-mode response."""
    tasks: WriteTasks = svc.tasks
    now = now_iso()
    message = {"attempts": 0, "created_at": now, "max_retries": tasks.max_retries,
               "node_id": tasks.node_id, "operation": req.op.value, "payload": payload,
               "request_id": req.request_id, "task_id": task_id}
    body = json.dumps(message, sort_keys=True)
    tasks.rows.insert(TaskRow(task_id, req.op.value, "pending", 0, 0, tasks.max_retries, body,
                              payload.get("data_ref"), req.request_id, now, now, None, None))
    key = f"{payload['bucket']}/{payload.get('key', '')}"
    try:
        tasks.channel().enqueue(TaskMessage(task_id, body, key))
    except PublishError as exc:
        tasks.drop_channel()
        _warn_direct(tasks, exc)
        row = tasks.rows.get(task_id)
        assert row is not None
        carry_out(svc, row, direct=True)
        return answer
    tasks.rows.mark_published(task_id)
    if tasks.mode == "async":
        resp = empty(202).header("x-bleepstore-task-id", task_id).header("Location", location)
        for name, value in answer.headers:
            if name in ("ETag",) or name.startswith("x-amz-checksum-"):
                resp.header(name, value)
        return resp
    row = tasks.wait(task_id, tasks.sync_timeout_s)
    if row is None:
        raise errors.WriteTaskTimeout(TaskId=task_id)
    if row.state != "done":
        raise stored_error(row)
    return answer


def stored_error(row: TaskRow) -> errors.S3Error:
    detail = json.loads(row.last_error) if row.last_error else {}
    cls = errors.error_class(str(detail.get("code", "InternalError")))
    return cls(detail.get("message") or None)


def _warn_direct(tasks: WriteTasks, exc: Exception) -> None:
    if time.monotonic() - tasks._warned > 10:
        tasks._warned = time.monotonic()
        log.warning("task channel unavailable, writes carried out directly: %s", exc)


# --- carrying a task out (a consumer, or the handler when the broker is down) -----------

def carry_out(svc: Any, row: TaskRow, *, direct: bool = False, replay: bool = False) -> None:
    """Run the task once. Raises the S3 error of a business failure (the row is then
    ``failed``) and ``Transient`` for one worth retrying (the row stays ``running`` for
    the caller to requeue); a settled or foreign task is a no-op."""
    tasks: WriteTasks = svc.tasks
    if not tasks.rows.start(row.task_id, replay=replay):
        return
    message = json.loads(row.payload)
    try:
        _apply(svc, row, message["payload"])
    except TaskSettled:
        pass
    except Exception as exc:
        if _transient(exc) and not direct:
            raise Transient(f"{type(exc).__name__}: {exc}") from exc
        tasks.rows.settle(row.task_id, "failed", error=_describe(exc))
        tasks.pending.remove(row.task_id)
        tasks.settled()
        if isinstance(exc, errors.S3Error):
            raise
        raise errors.InternalError() from exc
    tasks.pending.remove(row.task_id)
    tasks.settled()


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, errors.S3Error):
        return exc.status >= 500
    if isinstance(exc, BlobMissing):
        return False  # the task's bytes are gone: no retry brings them back
    return isinstance(exc, (sqlite3.Error, OSError))


def _describe(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, errors.S3Error):
        return {"code": exc.code, "message": exc.msg, "status": exc.status}
    return {"code": "InternalError", "message": type(exc).__name__, "status": 500}


def _apply(svc: Any, row: TaskRow, p: dict[str, Any]) -> None:
    origin = EventOrigin(row.request_id, row.operation, row.task_id)
    if row.operation == "PutObject":
        _put_object(svc, row, p, origin)
    elif row.operation == "DeleteObject":
        removed = svc.store.apply(DeleteObjects(p["bucket"], (p["key"],), svc.gc_not_before(),
                                                origin=origin, now=now_iso()))
        gc.collect_now(svc, [r[1] for r in removed])
    elif row.operation == "PutObjectAcl":
        svc.store.apply(PutObjectAcl(p["bucket"], p["key"], json.dumps(p["acl"]),
                                     origin=origin))
    elif row.operation == "PutBucketAcl":
        svc.store.apply(PutBucketAcl(p["bucket"], json.dumps(p["acl"]), origin=origin))
    else:
        raise errors.InternalError(f"unknown task operation {row.operation}")


def _put_object(svc: Any, row: TaskRow, p: dict[str, Any], origin: EventOrigin) -> None:
    tasks: WriteTasks = svc.tasks
    ref = svc.storage.import_file(tasks.pending.path(row.task_id), write_id(row.task_id))
    now = now_iso()
    meta = ObjectMeta(
        bucket=p["bucket"], key=p["key"], size=p["content_length"], etag=p["etag"],
        last_modified=now, data_ref=ref,
        content=ContentHeaders(p["content_type"], p["content_encoding"], p["content_language"],
                               p["content_disposition"], p["cache_control"], p["expires"]),
        storage_class=p["storage_class"], acl=json.dumps(p["acl"]),
        user_metadata=tuple((k, v) for k, v in p["user_metadata"].items()),
        checksum_algorithm=p["checksum_algorithm"], checksum_value=p["checksum_value"],
        tags=tuple((k, v) for k, v in p.get("tags", ())))  # absent in tasks before tagging
    cmd = PutObject(meta, now, svc.gc_not_before(), p["if_match"],
                    "*" if p["if_none_match"] else None, origin=origin)
    try:
        replaced, _ = svc.store.apply(cmd)
    except TaskSettled:
        raise
    except BaseException as exc:
        if not _transient(exc) and not svc.store.is_referenced(ref):
            svc.storage.delete(ref)  # refused for good: the blob is nobody's
        raise
    gc.collect_now(svc, [replaced])


def put_object_payload(meta: ObjectMeta, if_match: str | None,
                       if_none_match: str | None, task_id: str) -> dict[str, Any]:
    """The PutObject payload of events.md §5.1 (``data_ref`` is the pending file's name)."""
    c = meta.content
    return {"acl": json.loads(meta.acl), "bucket": meta.bucket, "cache_control": c.cache_control,
            "checksum_algorithm": meta.checksum_algorithm,
            "checksum_value": meta.checksum_value, "content_disposition": c.content_disposition,
            "content_encoding": c.content_encoding, "content_language": c.content_language,
            "content_length": meta.size, "content_type": c.content_type, "data_ref": task_id,
            "etag": meta.etag, "expires": c.expires, "if_match": if_match,
            "if_none_match": if_none_match is not None, "key": meta.key,
            "owner_display": "", "owner_id": "", "storage_class": meta.storage_class,
            "tags": [list(tag) for tag in meta.tags], "user_metadata": dict(meta.user_metadata)}
