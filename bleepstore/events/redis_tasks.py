"""Redis Streams write-task channel (events.md §5, §6.1): one stream per node,
``{prefix}:tasks:{node_id}``, read through one consumer group.

- ``connect()`` creates the group (``XGROUP CREATE <stream> <group> 0 MKSTREAM``; BUSYGROUP is
  ignored). The group starts at ``0``, so entries added before it existed (an ``enqueue``
  racing a broker restart) are still delivered.
- ``enqueue`` is one ``XADD`` (fields ``task_id``, ``task``); its confirmation is the entry id.
  No MAXLEN: trimming a task stream could drop tasks nobody has carried out yet.
- ``dequeue`` is ``XREADGROUP ... COUNT 1 BLOCK <ms> ... >``. The socket timeout is
  ``timeout_s`` and every BLOCK is cut shorter than it (a longer wait is a loop of shorter
  BLOCKs), so an idle channel never looks like a hung broker and a hung broker costs at most
  ``timeout_s``. Entries taken over by ``reclaim()`` are kept in a small local buffer and
  come out of ``dequeue`` first.
- A read whose reply was lost (socket timeout, a broker that hung and resumed) may still have
  handed an entry to this consumer on the server. So the first ``dequeue`` on every new
  connection first re-reads this consumer's own pending entries (``XREADGROUP ... 0``): they
  come back at once instead of after ``claim_idle_ms``.
- ``ack`` is ``XACK`` + ``XDEL`` in one MULTI: the stream then holds exactly the tasks not yet
  done (it never grows without bound), and the two cannot be split by a broken connection.
  ``dead_letter`` is ``XADD {prefix}:dead-letter`` + ``XACK`` + ``XDEL`` in one MULTI.
- Any Redis or socket error becomes a ``PublishError`` and drops the client (and the local
  buffer: those entries stay in this consumer's pending list, and the re-read above brings
  them back); the next call reconnects and re-creates the group if the broker lost it.

One object belongs to one thread. The default consumer name ``{node_id}:{pid}:{thread}`` is
fixed on first use, by the thread that uses it (not the one that built the object), so that
objects built before a fork or handed to consumer threads still get names of their own.
``redis`` is imported inside the methods only.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from bleepstore.events.publisher import PublishError
from bleepstore.events.redis_publisher import open_client, redact_url
from bleepstore.events.tasks import Delivery, TaskChannelHealth, TaskMessage

if TYPE_CHECKING:
    import redis

RECLAIM_COUNT = 10


def _text(value: Any) -> str:
    """A reply element as text (the client returns bytes); never raises."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _field(fields: dict[Any, Any], name: str) -> str:
    return _text(fields.get(name.encode(), fields.get(name)))


class RedisTaskQueue:
    """This node's task stream and its consumer group (see the module docstring)."""

    name = "redis"

    def __init__(self, url: str, stream_prefix: str = "bleepstore",
                 consumer_group: str = "bleepstore-workers", node_id: str = "node",
                 consumer: str = "", claim_idle_ms: int = 60000, timeout_s: float = 5.0) -> None:
        self.url = url
        self.stream = f"{stream_prefix}:tasks:{node_id}"
        self.dead_letter_stream = f"{stream_prefix}:dead-letter"
        self.group = consumer_group
        self.node_id = node_id
        self._consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self.timeout_s = timeout_s
        # The longest single BLOCK: under the socket timeout by a margin (1 s, or half of a
        # short timeout), so the server's "nothing came" reply always arrives in time.
        self.max_block_s = max(0.001, timeout_s - min(1.0, timeout_s / 2))
        self._client: redis.Redis | None = None
        self._buffer: deque[Delivery] = deque()
        self._reread_own = True  # re-read this consumer's pending entries (a new connection)

    @property
    def consumer(self) -> str:
        """This consumer's name in the group; the default is fixed on first use."""
        if not self._consumer:
            self._consumer = f"{self.node_id}:{os.getpid()}:{threading.get_native_id()}"
        return self._consumer

    # -- connection -------------------------------------------------------------------------

    def _fail(self, what: str, exc: BaseException) -> PublishError:
        """Drop the client (the next call reconnects) and describe the failure."""
        self.close()
        return PublishError(f"redis {redact_url(self.url)}: {what} failed: {exc}")

    def _ensure_client(self) -> redis.Redis:
        if self._client is None:
            self._client = open_client(self.url, self.timeout_s)
            self._reread_own = True
        return self._client

    def _create_group(self, client: redis.Redis) -> None:
        import redis

        try:
            client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    def connect(self) -> None:
        """Create the client if there is none, PING and create the group (idempotent)."""
        client = self._ensure_client()
        import redis

        try:
            client.ping()
            self._create_group(client)
        except (redis.RedisError, OSError) as exc:
            raise self._fail(f"connect (PING, XGROUP CREATE {self.stream})", exc) from exc

    def _connected(self) -> redis.Redis:
        if self._client is None:
            self.connect()
        return self._ensure_client()

    # -- producing --------------------------------------------------------------------------

    def enqueue(self, message: TaskMessage) -> None:
        client = self._connected()
        import redis

        try:
            entry_id = client.xadd(self.stream, {"task_id": message.task_id,
                                                 "task": message.body}, id="*")
        except (redis.RedisError, OSError) as exc:
            raise self._fail(f"XADD of task {message.task_id} to {self.stream}", exc) from exc
        if not _text(entry_id):
            self.close()
            raise PublishError(f"redis {redact_url(self.url)}: XADD of task {message.task_id} "
                               f"to {self.stream} returned no entry id")

    # -- consuming --------------------------------------------------------------------------

    def _delivery(self, entry: Any) -> Delivery | None:
        """``(id, fields)`` as a Delivery; None for an entry deleted under us (no fields).
        A malformed entry still comes out (its task_id / body may be empty): the consumer
        finds no such task row and acknowledges it, so it cannot loop."""
        entry_id, fields = entry
        if not isinstance(fields, dict):
            return None
        return Delivery(task_id=_field(fields, "task_id"), body=_field(fields, "task"),
                        handle=_text(entry_id))

    def _read(self, client: redis.Redis, start: str, count: int,
              block_ms: int | None) -> list[Delivery]:
        """One XREADGROUP from ``start`` (``>``: new entries; ``0``: this consumer's own
        pending ones), BLOCK ``block_ms`` (no BLOCK when None). Re-creates the group if the
        stream or group vanished under a live connection (DEL, FLUSHALL)."""
        import redis

        for attempt in range(2):
            try:
                reply: Any = client.xreadgroup(self.group, self.consumer, {self.stream: start},
                                               count=count, block=block_ms)
                break
            except redis.ResponseError as exc:
                if attempt or not str(exc).startswith("NOGROUP"):
                    raise
                self._create_group(client)
        if not reply:
            return []
        if isinstance(reply, dict):  # RESP3: {stream: [entries]}
            reply = list(reply.items())
        out = []
        for _stream, entries in reply:
            for entry in entries or []:
                delivery = self._delivery(entry)
                if delivery is not None:
                    out.append(delivery)
        return out

    def dequeue(self, timeout_s: float) -> Delivery | None:
        if self._buffer:
            return self._buffer.popleft()
        client = self._connected()
        import redis

        deadline = time.monotonic() + max(0.0, timeout_s)
        try:
            if self._reread_own:
                self._buffer.extend(self._read(client, "0", RECLAIM_COUNT, None))
                self._reread_own = False
                if self._buffer:
                    return self._buffer.popleft()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    # A zero (or spent) timeout still looks once, without blocking; BLOCK 0
                    # would mean "forever".
                    new = self._read(client, ">", 1, None)
                    return new[0] if new else None
                block_ms = max(1, int(min(remaining, self.max_block_s) * 1000))
                new = self._read(client, ">", 1, block_ms)
                if new:
                    return new[0]
                if time.monotonic() >= deadline:
                    return None
        except (redis.RedisError, OSError) as exc:
            raise self._fail(f"XREADGROUP from {self.stream}", exc) from exc

    def ack(self, delivery: Delivery) -> None:
        client = self._connected()
        import redis

        try:
            pipe = client.pipeline(transaction=True)
            pipe.xack(self.stream, self.group, delivery.handle)
            pipe.xdel(self.stream, delivery.handle)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise self._fail(f"XACK of {delivery.handle} on {self.stream}", exc) from exc
        # XACK may answer 0: someone else acknowledged it already (a reclaimed duplicate),
        # or the broker lost it. Either way it is done; nothing to report.

    def dead_letter(self, delivery: Delivery, error: str, attempts: int) -> None:
        client = self._connected()
        import redis

        try:
            pipe = client.pipeline(transaction=True)
            pipe.xadd(self.dead_letter_stream,
                      {"task": delivery.body, "error": error, "attempts": str(attempts)}, id="*")
            pipe.xack(self.stream, self.group, delivery.handle)
            pipe.xdel(self.stream, delivery.handle)
            results = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise self._fail(f"dead-lettering {delivery.handle} to {self.dead_letter_stream}",
                             exc) from exc
        if not _text(results[0]):
            self.close()
            raise PublishError(f"redis {redact_url(self.url)}: XADD to "
                               f"{self.dead_letter_stream} returned no entry id")

    def reclaim(self) -> int:
        """XAUTOCLAIM entries idle over ``claim_idle_ms`` (their consumer died, or a reply
        was lost) into this consumer; they come out of the next ``dequeue`` calls."""
        client = self._connected()
        import redis

        try:
            reply: Any = client.xautoclaim(self.stream, self.group, self.consumer,
                                           self.claim_idle_ms, "0-0", count=RECLAIM_COUNT)
        except (redis.RedisError, OSError) as exc:
            if isinstance(exc, redis.ResponseError) and str(exc).startswith("NOGROUP"):
                return 0  # nothing to reclaim; the next dequeue re-creates the group
            raise self._fail(f"XAUTOCLAIM on {self.stream}", exc) from exc
        entries = reply[1] if isinstance(reply, list | tuple) and len(reply) > 1 else []
        queued = {d.handle for d in self._buffer}
        claimed = 0
        for entry in entries:
            delivery = self._delivery(entry)
            if delivery is not None and delivery.handle not in queued:
                self._buffer.append(delivery)
                queued.add(delivery.handle)
                claimed += 1
        return claimed

    # -- health -----------------------------------------------------------------------------

    def health(self) -> TaskChannelHealth:
        """PING, then pending = XPENDING count + entries not yet delivered, and XLEN of the
        dead-letter stream. Never raises.

        "Not yet delivered" is the group's ``lag`` (XINFO GROUPS, Redis >= 7). Redis reports
        a null lag when deleted entries make it unknowable (ours: an acked-and-deleted entry
        after an older one still pending), and Redis 6 has none; then, because ``ack`` deletes
        what it acknowledges, the stream holds exactly the pending and the undelivered
        entries, so undelivered = XLEN - XPENDING count."""
        try:
            client = self._ensure_client()
        except PublishError as exc:
            return TaskChannelHealth(False, None, None, str(exc))
        import redis

        try:
            client.ping()
            pipe = client.pipeline(transaction=False)
            pipe.xlen(self.stream)
            pipe.xlen(self.dead_letter_stream)
            pipe.xpending(self.stream, self.group)
            pipe.xinfo_groups(self.stream)
            stream_len, dead, pending, groups = pipe.execute(raise_on_error=False)
            for result in (stream_len, dead):
                if isinstance(result, Exception):
                    raise result
        except (redis.RedisError, OSError) as exc:
            return TaskChannelHealth(False, None, None, str(self._fail("health", exc)))
        group: dict[Any, Any] | None = None
        if isinstance(groups, list):
            group = next((g for g in groups if isinstance(g, dict)
                          and _text(g.get("name")) == self.group), None)
        if group is None or not isinstance(pending, dict):
            # No group (the broker lost it; the next consumer call re-creates it from 0):
            # everything in the stream is still to be delivered.
            return TaskChannelHealth(True, int(stream_len), int(dead))
        in_flight = int(pending.get("pending") or 0)
        lag = group.get("lag")
        undelivered = lag if isinstance(lag, int) else max(0, int(stream_len) - in_flight)
        return TaskChannelHealth(True, in_flight + undelivered, int(dead))

    def close(self) -> None:
        self._buffer.clear()
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a dead connection must never raise
                pass
