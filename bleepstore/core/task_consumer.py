"""Consumer threads of this node's task channel (events.md §5.5, §7, §8).

Invariants:
- A delivery is acknowledged only once its task is settled (done, failed, dead) or has
  been republished as a retry; a consumer that dies leaves it to be redelivered.
- Before consuming, each consumer republishes the tasks recorded but never confirmed by
  the broker (their handler died, or fell back to carrying them out).
- Transient failures are retried ``max_retries`` times with a doubling delay, then the
  task is dead-lettered with its error, its row ``dead``, its file moved to ``dead/``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bleepstore.core.write_tasks import Transient, WriteTasks, carry_out
from bleepstore.events import metrics
from bleepstore.events.status import TASK_CHANNEL_KEY
from bleepstore.events.tasks import Delivery, TaskMessage, TaskQueue
from bleepstore.metadata.commands import PutNodeMeta
from bleepstore.metadata.task_rows import TERMINAL
from bleepstore.s3.headers import iso_from_datetime

log = logging.getLogger("bleepstore.events")

DEQUEUE_S = 1.0
RECLAIM_EVERY_S = 5.0
UNPUBLISHED_AFTER_S = 5.0  # younger unconfirmed rows may still be publishing
BACKOFF_S = (1.0, 30.0)


class TaskConsumer:
    def __init__(self, svc: Any, threads: int, retry_delay_ms: int) -> None:
        self.svc = svc
        self.tasks: WriteTasks = svc.tasks
        self.retry_delay_s = retry_delay_ms / 1000
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"bleepstore-tasks-{n}",
                                          daemon=True) for n in range(threads)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        backoff, channel = BACKOFF_S[0], None
        reclaimed = 0.0
        while not self._stop.is_set():
            try:
                if channel is None:
                    channel = self.tasks.new_channel()
                    channel.connect()
                    self.republish(channel)
                    backoff = BACKOFF_S[0]
                if time.monotonic() - reclaimed > RECLAIM_EVERY_S:
                    channel.reclaim()
                    reclaimed = time.monotonic()
                    self._sample(channel)
                delivery = channel.dequeue(DEQUEUE_S)
                if delivery is not None:
                    self.handle(channel, delivery)
            except Exception as exc:
                log.warning("task consumer: %s; reconnecting in %.0f s", exc, backoff)
                if channel is not None:
                    _close(channel)
                channel = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_S[1])
        if channel is not None:
            _close(channel)

    def _sample(self, channel: TaskQueue) -> None:
        """Pending tasks and dead letters for /health and the gauges (events.md §9, §11)."""
        health = channel.health()
        try:
            if health.pending_tasks is not None:
                metrics.PENDING.set(health.pending_tasks)
            if health.dead_letter_count is not None:
                metrics.DEAD_LETTER.set(health.dead_letter_count)
            self.svc.store.apply(PutNodeMeta(TASK_CHANNEL_KEY, json.dumps(
                {"pending_tasks": health.pending_tasks,
                 "dead_letter_count": health.dead_letter_count})))
        except Exception:  # noqa: S110  informative only
            pass

    def republish(self, channel: TaskQueue) -> int:
        cutoff = iso_from_datetime(datetime.now(UTC) - timedelta(seconds=UNPUBLISHED_AFTER_S))
        count = 0
        for row in self.tasks.rows.unpublished():
            if row.created_at > cutoff:
                continue
            payload = json.loads(row.payload)["payload"]
            key = f"{payload['bucket']}/{payload.get('key', '')}"
            channel.enqueue(TaskMessage(row.task_id, row.payload, key))
            self.tasks.rows.mark_published(row.task_id)
            count += 1
        if count:
            log.info("republished %d write task(s) the broker never confirmed", count)
        return count

    def handle(self, channel: TaskQueue, delivery: Delivery) -> None:
        message = json.loads(delivery.body)
        row = self.tasks.rows.get(delivery.task_id)
        if row is None or (row.state in TERMINAL and row.state != "dead"):
            channel.ack(delivery)  # a duplicate delivery, or a purged task
            return
        try:
            carry_out(self.svc, row, replay=row.state == "dead")
        except Transient as exc:
            self._retry(channel, delivery, message, str(exc))
            return
        except Exception:  # a business failure: the row says which; no retry
            _count("failed")
            channel.ack(delivery)
            return
        _count("done")
        channel.ack(delivery)

    def _retry(self, channel: TaskQueue, delivery: Delivery, message: dict[str, Any],
               error: str) -> None:
        attempts = int(message.get("attempts", 0)) + 1
        task_id = delivery.task_id
        if attempts > int(message.get("max_retries", self.tasks.max_retries)):
            channel.dead_letter(delivery, error, attempts)
            self.tasks.rows.settle(task_id, "dead", attempts=attempts,
                                   error={"code": "InternalError", "message": error[:500],
                                          "status": 500})
            self.tasks.pending.bury(task_id)
            self.tasks.settled()
            _count("dead")
            log.warning("write task %s dead after %d attempts: %s", task_id, attempts, error)
            return
        self._stop.wait(self.retry_delay_s * 2 ** (attempts - 1))
        body = json.dumps({**message, "attempts": attempts}, sort_keys=True)
        payload = message["payload"]
        # NOTE: pending before the new message exists (its consumer must be able to start
        # it); a crash before the ack redelivers the original, which finds it pending.
        self.tasks.rows.settle(task_id, "pending", attempts=attempts)
        channel.enqueue(TaskMessage(task_id, body, f"{payload['bucket']}/{payload.get('key', '')}"))
        channel.ack(delivery)
        _count("retried")


def _count(result: str) -> None:
    try:
        metrics.CONSUMED.labels(result=result).inc()
    except Exception:  # noqa: S110
        pass


def _close(channel: TaskQueue) -> None:
    try:
        channel.close()
    except Exception:  # noqa: S110  a broken connection
        pass
