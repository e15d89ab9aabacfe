"""The configuration's shape: typed, nested, frozen dataclasses that ARE the defaults.

Invariants:
- The dataclasses below are the defaults (product.md §5); nothing else defines one.
- ``bleepstore.config.load()`` builds one from a file and the environment and validates
  it; the other modules of this package do one step each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

SECRET_KEYS = {"secret_key", "admin_token", "secret", "secret_access_key",
               "connection_string", "url"}


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # NOTE: loopback by default; another address needs a real secret
    port: int = 9010
    region: str = "us-east-1"
    virtual_host_domains: list[str] = field(default_factory=lambda: ["localhost"])
    admin_port: int | None = None
    admin_host: str = "127.0.0.1"
    admin_token: str = ""
    workers: int = 2
    threads: int = 8
    worker_timeout_s: int = 120
    graceful_timeout_s: int = 30
    keepalive_s: int = 5
    header_timeout_s: int = 20
    body_read_timeout_s: int = 60
    min_body_rate_bytes_s: int = 1024
    min_body_rate_window_s: int = 10
    worker_connections: int = 1000
    # [BS] auto: with 2+ workers and 2+ CPUs, each worker's threads on a CPU of its own
    cpu_affinity: Literal["auto", "off"] = "auto"
    max_object_size: int = 5497558138880
    max_buckets: int = 10000
    # [BS] peers (IPs or CIDRs) whose X-Forwarded-For / X-Forwarded-Proto are believed
    trusted_proxies: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AuthConfig:
    access_key: str = "bleepstore"
    secret_key: str = "bleepstore-secret"
    display_name: str = ""
    clock_skew_s: int = 900
    enforce_region: bool = False
    credential_cache_ttl_s: int = 60
    # [BS] serving a non-loopback address with the built-in secret_key is refused unless true
    allow_default_credentials: bool = False


@dataclass(frozen=True)
class SqliteConfig:
    path: str = "./data/metadata.db"
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    busy_timeout_ms: int = 5000


@dataclass(frozen=True)
class MetadataConfig:
    engine: Literal["sqlite", "raft"] = "sqlite"
    sqlite: SqliteConfig = field(default_factory=SqliteConfig)


@dataclass(frozen=True)
class LocalStorageConfig:
    root_dir: str = "./data/objects"


@dataclass(frozen=True)
class AwsStorageConfig:
    bucket: str = ""
    region: str = "us-east-1"
    prefix: str = ""
    endpoint_url: str = ""
    use_path_style: bool = False
    access_key_id: str = ""
    secret_access_key: str = ""


@dataclass(frozen=True)
class GcpStorageConfig:
    bucket: str = ""
    project: str = ""
    prefix: str = ""
    credentials_file: str = ""


@dataclass(frozen=True)
class AzureStorageConfig:
    container: str = ""
    account: str = ""
    prefix: str = ""
    connection_string: str = ""
    use_managed_identity: bool = False


MAX_INLINE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class StorageConfig:
    backend: Literal["local", "aws", "gcp", "azure"] = "local"
    spool_dir: str = "./data/spool"
    multipart_ttl_s: int = 604800
    completed_upload_retention_s: int = 86400
    gc_grace_s: int | None = None  # None = 0 for local, 900 for gateways
    # Objects up to this size live in the metadata database (local backend, embedded mode).
    inline_max_bytes: int = 65536
    maintenance_interval_s: int = 300
    reconcile_on_startup: bool = True
    local: LocalStorageConfig = field(default_factory=LocalStorageConfig)
    aws: AwsStorageConfig = field(default_factory=AwsStorageConfig)
    gcp: GcpStorageConfig = field(default_factory=GcpStorageConfig)
    azure: AzureStorageConfig = field(default_factory=AzureStorageConfig)

    @property
    def effective_gc_grace_s(self) -> int:
        if self.gc_grace_s is not None:
            return self.gc_grace_s
        return 0 if self.backend == "local" else 900


def inline_limit(cfg: Config) -> int:
    """Largest object kept inline; 0 where inlining is off: gateways keep every byte in
    the cloud bucket, cluster mode keeps Raft entries small, and the sync / async write
    modes stage through their pending files."""
    st = cfg.storage
    if st.backend != "local" or cfg.metadata.engine == "raft" or \
            (cfg.queue.enabled and cfg.queue.consistency != "write-through"):
        return 0
    return st.inline_max_bytes


@dataclass(frozen=True)
class DnsDiscoveryConfig:
    name: str = ""
    port: int = 9001
    refresh_interval_s: int = 30


@dataclass(frozen=True)
class ClusterConfig:
    enabled: bool | None = None
    node_id: str = "node-1"
    cluster_id: str = "bleepstore"
    bind_addr: str = "0.0.0.0:9001"
    advertise_addr: str = ""
    api_addr: str = ""
    data_dir: str = "./data/raft"
    peers: list[Any] = field(default_factory=list)
    discovery: Literal["static", "dns"] = "static"
    dns: DnsDiscoveryConfig = field(default_factory=DnsDiscoveryConfig)
    election_timeout_ms: int = 1000
    heartbeat_interval_ms: int = 150
    snapshot_interval: int = 10000
    snapshot_min_interval_s: int = 300
    snapshot_threshold: int = 8192
    max_append_entries: int = 64
    write_timeout_ms: int = 5000
    secret: str = ""
    data_placement: Literal["shared", "owner"] = "shared"
    # [BS] the default of x-bleepstore-read-consistency for this node's reads
    read_consistency: Literal["local", "leader", "linearizable"] = "local"


@dataclass(frozen=True)
class RedisQueueConfig:
    url: str = "redis://localhost:6379"
    stream_prefix: str = "bleepstore"
    consumer_group: str = "bleepstore-workers"
    max_retries: int = 3
    retry_delay_ms: int = 1000
    max_len: int = 1000000
    claim_idle_ms: int = 60000


@dataclass(frozen=True)
class RabbitQueueConfig:
    url: str = "amqp://guest:guest@localhost:5672/"
    exchange: str = "bleepstore"
    exchange_type: Literal["topic", "direct", "fanout"] = "topic"
    queue_prefix: str = "bleepstore"
    durable: bool = True
    prefetch_count: int = 10
    max_retries: int = 3
    retry_delay_ms: int = 1000


@dataclass(frozen=True)
class KafkaQueueConfig:
    brokers: list[str] = field(default_factory=lambda: ["localhost:9092"])
    topic_prefix: str = "bleepstore"
    consumer_group: str = "bleepstore-workers"
    acks: Literal["all", "1", "0"] = "all"
    max_retries: int = 3
    retry_delay_ms: int = 1000
    partitions: int = 6
    replication_factor: int = 1


@dataclass(frozen=True)
class QueueConfig:
    enabled: bool = False
    backend: Literal["redis", "rabbitmq", "kafka"] = "redis"
    consistency: Literal["write-through", "sync", "async"] = "write-through"
    node_id: str = ""
    pending_dir: str = "./data/pending"
    sync_timeout_ms: int = 30000
    consumer_threads: int = 1
    outbox_batch_size: int = 100
    outbox_max_rows: int = 1000000
    # [BS] a full outbox drops new events (counted, logged) or refuses writes (503 SlowDown)
    outbox_full_policy: Literal["drop", "reject"] = "drop"
    # [BS] "s3": the AWS S3 Event Notification document instead of the envelope
    event_format: Literal["bleepstore", "s3"] = "bleepstore"
    task_retention_h: int = 24
    dead_letter_retention_h: int = 168
    redis: RedisQueueConfig = field(default_factory=RedisQueueConfig)
    rabbitmq: RabbitQueueConfig = field(default_factory=RabbitQueueConfig)
    kafka: KafkaQueueConfig = field(default_factory=KafkaQueueConfig)


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"
    access_log: bool = True


@dataclass(frozen=True)
class ObservabilityConfig:
    metrics: bool = True
    health_check: bool = True
    metrics_dir: str = "./data/prometheus"
    # [BS] when set, /metrics wants "Authorization: Bearer <token>" (from any address)
    metrics_token: str = ""


@dataclass(frozen=True)
class LifecycleConfig:
    """Bucket lifecycle expiration (core/lifecycle.py): how long a rule's "day" is, how
    often the maintenance lease holder runs the pass, and its batch size."""

    day_seconds: int = 86400  # a rule's day; expirations round up to a multiple of it
    interval_s: int = 3600  # between two lifecycle passes
    batch_size: int = 1000  # rows read per bucket per batch (each batch saves its cursor)


@dataclass(frozen=True)
class ConsoleConfig:
    """The web console at /console (web/console/)."""

    enabled: bool = True
    session_ttl_s: int = 43200  # a console login lasts this long (server-side and cookie)


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    metadata: MetadataConfig = field(default_factory=MetadataConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    source: str = field(default="(built-in defaults)", compare=False)

    @property
    def display_name(self) -> str:
        return self.auth.display_name or self.auth.access_key
