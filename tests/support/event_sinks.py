"""Reading what BleepStore published, per broker, for the end-to-end event tests: every
event seen so far on a server's event channel (Redis stream, the RabbitMQ events queue,
every Kafka event topic), parsed; ``wait_for`` polls until a condition holds."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from bleepstore.events.catalog import EVENT_TYPES


class Sink:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def poll(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def wait_for(self, ready: Callable[[list[dict[str, Any]]], bool], timeout: float = 20.0,
                 what: str = "events") -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if ready(self.seen):
                return self.seen
            assert time.monotonic() < deadline, f"timed out waiting for {what}: " \
                f"{len(self.seen)} seen, last {self.seen[-3:]}"
            time.sleep(0.05)

    def of_bucket(self, bucket: str) -> list[dict[str, Any]]:
        self.poll()
        return [e for e in self.seen if bucket_of(e) == bucket]


def bucket_of(event: dict[str, Any]) -> str | None:
    if "Records" in event:
        return str(event["Records"][0]["s3"]["bucket"]["name"])
    return event.get("data", {}).get("bucket")


class RedisSink(Sink):
    def __init__(self, client: Any, stream: str) -> None:
        super().__init__()
        self.client, self.stream, self.last = client, stream, "-"
        self.ids: list[str] = []

    def poll(self) -> None:
        start = self.last if self.last == "-" else "(" + self.last
        for entry_id, fields in self.client.xrange(self.stream, start, "+", count=10_000):
            fields = {_text(k): _text(v) for k, v in fields.items()}
            self.last = _text(entry_id)
            self.ids.append(fields["event_id"])
            self.seen.append(json.loads(fields["data"]))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RabbitSink(Sink):
    def __init__(self, broker: Any, queue: str) -> None:
        super().__init__()
        self.broker, self.queue = broker, queue

    def poll(self) -> None:
        with self.broker.channel() as ch:
            while True:
                method, _, body = ch.basic_get(self.queue, auto_ack=True)
                if method is None:
                    return
                self.seen.append(json.loads(body))


class KafkaSink(Sink):
    def __init__(self, bootstrap: str, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.consumer = Consumer({"bootstrap.servers": bootstrap, "log_level": 2,
                                  "group.id": "sink-" + uuid.uuid4().hex,
                                  "enable.auto.commit": False})
        self._topics = [f"{prefix}.{t}" for t in EVENT_TYPES]
        self._assigned: set[str] = set()
        self._partition = lambda t, p: TopicPartition(t, p, OFFSET_BEGINNING)

    def _assign(self) -> None:
        """Every event topic that exists by now (the relay creates them when it connects)."""
        if len(self._assigned) == len(self._topics):
            return
        meta = self.consumer.list_topics(timeout=10).topics
        new = [t for t in self._topics if t in meta and t not in self._assigned]
        if new:
            self.consumer.incremental_assign([self._partition(t, p) for t in new
                                              for p in meta[t].partitions])
            self._assigned.update(new)

    def poll(self) -> None:
        self._assign()
        while batch := self.consumer.consume(num_messages=1000, timeout=0.2):
            self.seen.extend(json.loads(m.value()) for m in batch if m.error() is None)

    def close(self) -> None:
        self.consumer.close()
