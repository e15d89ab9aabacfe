"""Redis Streams publisher (events.md §6.1): one ``XADD`` per event on ``{prefix}:events``.

The confirmation of an event is the entry ID its ``XADD`` returns. A batch goes out as one
non-transactional pipeline (one round trip, in order). Any Redis or socket error becomes a
``PublishError`` and drops the client, so the next call reconnects from scratch.

``redis`` is imported inside the methods only (publisher.py: no broker SDK at import time,
clients created lazily, after the fork).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from bleepstore.events.publisher import BrokerHealth, OutboxEvent, PublishError

if TYPE_CHECKING:
    import redis


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (error messages end up in logs)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
    except ValueError:
        return "<unparseable url>"


def open_client(url: str, timeout_s: float) -> redis.Redis:
    """A client whose every call is one attempt bounded by ``timeout_s`` (from_url gives
    connections no retry policy); PublishError for a missing package or a bad URL."""
    try:
        import redis
    except ImportError as exc:
        raise PublishError("the redis backend needs the 'redis' package "
                           "(pip install 'bleepstore[redis]')") from exc
    try:
        return redis.Redis.from_url(url, socket_timeout=timeout_s,
                                    socket_connect_timeout=timeout_s, health_check_interval=30)
    except ValueError as exc:  # a malformed URL or query string
        raise PublishError(f"redis {redact_url(url)}: bad url: {exc}") from exc


class RedisPublisher:
    """Publishes outbox events to one Redis stream. Owned by one thread (publisher.py)."""

    name = "redis"

    def __init__(self, url: str, stream_prefix: str = "bleepstore", max_len: int = 1_000_000,
                 timeout_s: float = 5.0) -> None:
        self.url = url
        self.stream = f"{stream_prefix}:events"
        self.max_len = max_len
        self.timeout_s = timeout_s
        self._client: redis.Redis | None = None

    def _fail(self, what: str, exc: BaseException) -> PublishError:
        """Drop the client (the next call reconnects) and describe the failure."""
        self.close()
        return PublishError(f"redis {redact_url(self.url)}: {what} failed: {exc}")

    def _ensure_client(self) -> redis.Redis:
        if self._client is None:
            self._client = open_client(self.url, self.timeout_s)
        return self._client

    def connect(self) -> None:
        """Create the client if there is none and PING. A stream needs no declaring: the first
        XADD creates it. Calling it again reuses the client (no new connection)."""
        client = self._ensure_client()
        import redis

        try:
            client.ping()
        except (redis.RedisError, OSError) as exc:
            raise self._fail("connect (PING)", exc) from exc

    def publish_batch(self, events: Sequence[OutboxEvent]) -> None:
        if not events:
            return
        if self._client is None:
            self.connect()
        client = self._ensure_client()
        import redis

        try:
            pipe = client.pipeline(transaction=False)
            for event in events:
                pipe.xadd(self.stream, {"event_id": event.event_id, "type": event.event_type,
                                        "data": event.body},
                          id="*", maxlen=self.max_len, approximate=True)
            ids = pipe.execute(raise_on_error=True)
        except (redis.RedisError, OSError) as exc:
            raise self._fail(f"XADD of {len(events)} events to {self.stream}", exc) from exc
        confirmed = sum(1 for entry_id in ids if isinstance(entry_id, bytes | str) and entry_id)
        if len(ids) != len(events) or confirmed != len(events):
            self.close()
            raise PublishError(f"redis {redact_url(self.url)}: {confirmed} of {len(events)} "
                               f"XADDs to {self.stream} returned an entry id")

    def health(self) -> BrokerHealth:
        """One PING, bounded by ``timeout_s``; never raises."""
        try:
            client = self._ensure_client()
        except PublishError as exc:
            return BrokerHealth(connected=False, latency_ms=None, error=str(exc))
        import redis

        try:
            start = time.perf_counter()
            client.ping()
            latency_ms = (time.perf_counter() - start) * 1000.0
        except (redis.RedisError, OSError) as exc:
            return BrokerHealth(connected=False, latency_ms=None,
                                error=str(self._fail("PING", exc)))
        return BrokerHealth(connected=True, latency_ms=latency_ms)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a dead connection must never raise
                pass
