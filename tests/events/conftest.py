"""Real brokers for the event tests, started once per session when first asked for, and
BleepStore servers publishing to them (each on its own channel names, so tests and
servers never read each other's events)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.event_sinks import KafkaSink, RabbitSink, RedisSink, Sink
from support.kafka_broker import TansuBroker
from support.rabbitmq_broker import RabbitBroker
from support.redis_broker import RedisBroker
from support.server import Server

BROKERS = ["redis", "rabbitmq", "kafka"]


@pytest.fixture(scope="session")
def redis_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisBroker]:
    broker = RedisBroker(tmp_path_factory.mktemp("redis")).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def rabbitmq_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitBroker]:
    broker = RabbitBroker(tmp_path_factory.mktemp("rabbitmq")).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    broker = TansuBroker(tmp_path_factory.mktemp("tansu")).start()
    yield broker
    broker.stop()


def queue_config(backend: str, broker: Any, prefix: str) -> dict[str, Any]:
    """The ``queue`` section for ``backend`` with channel names of their own."""
    section: dict[str, Any] = {"enabled": True, "backend": backend, "node_id": "edge-a"}
    if backend == "redis":
        section["redis"] = {"url": broker.url, "stream_prefix": prefix}
    elif backend == "rabbitmq":
        section["rabbitmq"] = {"url": broker.url, "exchange": prefix, "queue_prefix": prefix}
    else:
        section["kafka"] = {"brokers": [broker.bootstrap], "topic_prefix": prefix,
                            "partitions": 2}
    return section


def sink_for(backend: str, broker: Any, prefix: str) -> Sink:
    if backend == "redis":
        return RedisSink(broker.client(), f"{prefix}:events")
    if backend == "rabbitmq":
        return RabbitSink(broker, f"{prefix}.events")
    return KafkaSink(broker.bootstrap, prefix)


@pytest.fixture
def event_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Callable[..., tuple[Server, Sink]]]:
    """``event_server(backend, **queue_overrides)``: a started server publishing to that
    session broker, and a sink reading what it published."""
    made: list[tuple[Server, Sink]] = []

    def make(backend: str, workers: int = 2, **overrides: Any) -> tuple[Server, Sink]:
        broker = request.getfixturevalue(f"{backend}_broker")
        prefix = "bs" + uuid.uuid4().hex[:10]
        queue = {**queue_config(backend, broker, prefix), **overrides}
        server = Server(tmp_path_factory.mktemp("events-server"), workers=workers, threads=4,
                        extra_config={"queue": queue})
        server.start()
        made.append((server, None))  # type: ignore[arg-type]
        if backend == "kafka":  # the topics exist once the relay has connected
            _wait_topics(broker, prefix)
        sink = sink_for(backend, broker, prefix)
        made[-1] = (server, sink)
        return server, sink

    yield make
    for server, sink in made:
        server.stop()
        if sink is not None:
            sink.close()


def _wait_topics(broker: TansuBroker, prefix: str, timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while f"{prefix}.object.created" not in broker.topics():
        assert time.monotonic() < deadline, "the relay never created the Kafka topics"
        time.sleep(0.1)
