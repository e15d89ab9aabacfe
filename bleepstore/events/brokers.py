"""The configured broker (``queue.backend``) as a ``Publisher``; SDKs import lazily."""

from __future__ import annotations

from bleepstore.config import QueueConfig
from bleepstore.events.publisher import Publisher
from bleepstore.events.tasks import TaskQueue

TIMEOUT_S = 5.0


def build_publisher(q: QueueConfig, node_id: str) -> Publisher:
    if q.backend == "redis":
        from bleepstore.events.redis_publisher import RedisPublisher

        return RedisPublisher(q.redis.url, q.redis.stream_prefix, q.redis.max_len, TIMEOUT_S)
    if q.backend == "rabbitmq":
        from bleepstore.events.rabbitmq_publisher import RabbitPublisher

        r = q.rabbitmq
        return RabbitPublisher(r.url, r.exchange, r.exchange_type, r.queue_prefix, r.durable,
                               node_id, TIMEOUT_S)
    from bleepstore.events.kafka_publisher import KafkaPublisher

    k = q.kafka
    return KafkaPublisher(list(k.brokers), k.topic_prefix, k.acks, k.partitions,
                          k.replication_factor, node_id, TIMEOUT_S)


def build_task_queue(q: QueueConfig, node_id: str) -> TaskQueue:
    """This node's task channel (events.md §5, §6), one per thread."""
    if q.backend == "redis":
        from bleepstore.events.redis_tasks import RedisTaskQueue

        r = q.redis
        return RedisTaskQueue(r.url, r.stream_prefix, r.consumer_group, node_id,
                              claim_idle_ms=r.claim_idle_ms, timeout_s=TIMEOUT_S)
    if q.backend == "rabbitmq":
        from bleepstore.events.rabbitmq_tasks import RabbitTaskQueue

        m = q.rabbitmq
        return RabbitTaskQueue(m.url, m.exchange, m.exchange_type, m.queue_prefix, m.durable,
                               node_id, m.prefetch_count, TIMEOUT_S)
    from bleepstore.events.kafka_tasks import KafkaTaskQueue

    k = q.kafka
    return KafkaTaskQueue(list(k.brokers), k.topic_prefix, k.consumer_group, k.acks,
                          k.partitions, k.replication_factor, node_id, TIMEOUT_S)


def task_retry(q: QueueConfig) -> tuple[int, int]:
    """(max_retries, retry_delay_ms) of the configured backend."""
    section = getattr(q, q.backend)
    return int(section.max_retries), int(section.retry_delay_ms)
