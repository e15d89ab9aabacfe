"""``bleepstore events tail``: print every event published from now on, as it arrives,
whatever the broker, so a user sees events flow without writing a consumer.

Read-only towards BleepStore's own channels: Redis reads the stream (XREAD, no group),
RabbitMQ binds a private auto-delete queue to the exchange, Kafka reads every event topic
from its end (partitions assigned, no group join).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from bleepstore.config import QueueConfig
from bleepstore.events.catalog import EVENT_TYPES

POLL_S = 1.0


def follow(q: QueueConfig, stop: Callable[[], bool]) -> Iterator[str]:
    """Bodies of the events published from now on, until ``stop()`` (checked each second);
    first an empty string, once subscribed (what is published after it is seen)."""
    if q.backend == "redis":
        return _redis(q, stop)
    if q.backend == "rabbitmq":
        return _rabbitmq(q, stop)
    return _kafka(q, stop)


def _redis(q: QueueConfig, stop: Callable[[], bool]) -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(q.redis.url, socket_timeout=POLL_S + 5,
                                  socket_connect_timeout=5, decode_responses=True)
    stream = f"{q.redis.stream_prefix}:events"
    last = str(client.xinfo_stream(stream)["last-generated-id"]) if client.exists(stream) else "0"
    yield ""
    while not stop():
        reply: Any = client.xread({stream: last}, block=int(POLL_S * 1000))
        for _, entries in reply or ():
            for entry_id, fields in entries:
                last = entry_id
                yield str(fields.get("data", ""))


def _rabbitmq(q: QueueConfig, stop: Callable[[], bool]) -> Iterator[str]:
    import pika

    r = q.rabbitmq
    conn = pika.BlockingConnection(pika.URLParameters(r.url))
    try:
        channel = conn.channel()
        channel.exchange_declare(r.exchange, exchange_type=r.exchange_type, durable=r.durable)
        queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        channel.queue_bind(queue, r.exchange, routing_key="#")
        yield ""
        for _, _, body in channel.consume(queue, auto_ack=True, inactivity_timeout=POLL_S):
            if stop():
                return
            if body is not None:
                yield body.decode("utf-8", "replace")
    finally:
        if conn.is_open:
            conn.close()


def _kafka(q: QueueConfig, stop: Callable[[], bool]) -> Iterator[str]:
    from confluent_kafka import OFFSET_END, Consumer, TopicPartition

    k = q.kafka
    consumer = Consumer({"bootstrap.servers": ",".join(k.brokers), "log_level": 2,
                         "group.id": f"bleepstore-tail-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        # NOTE: partitions assigned directly at their end, not a group subscription: a
        # group join takes seconds, and what is published meanwhile would be skipped.
        topics = consumer.list_topics(timeout=10).topics
        consumer.assign([TopicPartition(name, p, OFFSET_END)
                         for name in (f"{k.topic_prefix}.{t}" for t in EVENT_TYPES)
                         if name in topics for p in topics[name].partitions])
        yield ""
        while not stop():
            message = consumer.poll(POLL_S)
            if message is not None and message.error() is None:
                yield (message.value() or b"").decode("utf-8", "replace")
    finally:
        consumer.close()


def pretty(body: str) -> str:
    """One line per event: time, type, bucket/key, then the JSON."""
    try:
        event = json.loads(body)
    except ValueError:
        return body
    if "Records" in event:
        first = event["Records"][0]
        head = f"{first.get('eventTime', '')} {first.get('eventName', '')}"
    else:
        data = event.get("data", {})
        where = "/".join(str(x) for x in (data.get("bucket"), data.get("key")) if x)
        head = f"{event.get('timestamp', '')} {event.get('type', '')} {where}"
    return f"{head}  {json.dumps(event, sort_keys=True)}"


def run(q: QueueConfig, limit: int | None, seconds: float | None,
        emit: Callable[[str], None], ready: Callable[[], None]) -> int:
    deadline = None if seconds is None else time.monotonic() + seconds
    count = 0

    def stop() -> bool:
        return (limit is not None and count >= limit) or (
            deadline is not None and time.monotonic() >= deadline)
    for body in follow(q, stop):
        if not body:
            ready()
            continue
        emit(pretty(body))
        count += 1
        if stop():
            break
    return count
