"""BleepStore configuration: typed, nested, defaulted in exactly one place.

Invariants:
- The dataclasses below ARE the defaults (product.md §5); nothing else defines one.
- ``load()`` is the only entry point; gunicorn.conf.py and the app both call it.
- Unknown sections/keys and bad values raise ``ConfigError`` naming the dotted key.
- Environment overrides: BLEEPSTORE_HOST/PORT/WORKERS/LOG_LEVEL (product.md §4), and
  the generic form ``BLEEPSTORE_<SECTION>__<KEY>[__<SUBKEY>]`` (values parsed as YAML
  scalars), e.g. ``BLEEPSTORE_STORAGE__LOCAL__ROOT_DIR=/srv/objects``.
- ``BLEEPSTORE_DATA_DIR`` moves every data path still at its built-in ``./data/...``
  default under that directory; a path the file or environment sets wins.
- Relative paths stay relative to the process's working directory (not the config
  file's): what people print and log is ``absolute(path)``.
- Serving a non-loopback address with the built-in ``auth.secret_key`` is a ConfigError
  unless ``auth.allow_default_credentials``: every start path calls ``load()``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

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


# --- building typed config from plain data ----------------------------------------

def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, int) and not isinstance(value, bool) and str(value) in choices:
            value = str(value)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if value < 0:
            raise ConfigError(f"{key}: must not be negative, got {value}")
        return value
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # pragma: no cover


def _build(cls: Any, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init and f.name != "source"}
    for k in data:
        if k not in names:
            raise ConfigError(f"{prefix + '.' if prefix else ''}{k}: unknown key")
    kwargs = {k: _coerce(v, hints[k], f"{prefix + '.' if prefix else ''}{k}")
              for k, v in data.items()}
    return cls(**kwargs)


def _set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{'.'.join(path)}: parent is not a mapping")
        node = nxt
    node[path[-1]] = value


_SHORT_ENV = {
    "BLEEPSTORE_HOST": ["server", "host"],
    "BLEEPSTORE_PORT": ["server", "port"],
    "BLEEPSTORE_WORKERS": ["server", "workers"],
    "BLEEPSTORE_LOG_LEVEL": ["logging", "level"],
}


def _apply_env(data: dict[str, Any], environ: typing.Mapping[str, str]) -> None:
    for name, value in sorted(environ.items()):
        if name in _SHORT_ENV:
            path = _SHORT_ENV[name]
        elif name.startswith("BLEEPSTORE_") and "__" in name:
            path = [p.lower() for p in name[len("BLEEPSTORE_"):].split("__")]
        else:
            continue
        try:
            parsed = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError:
            parsed = value
        if path[-1] in ("host", "admin_host", "region") and not isinstance(parsed, str):
            parsed = value
        _set_path(data, path, parsed)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``; any other name or address is not."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def uses_default_secret(cfg: Config) -> bool:
    return cfg.auth.secret_key == AuthConfig.secret_key


def _validate_exposure(cfg: Config) -> None:
    """The built-in secret is public: refuse to serve it beyond loopback unless told to."""
    if is_loopback(cfg.server.host) or not uses_default_secret(cfg) \
            or cfg.auth.allow_default_credentials:
        return
    raise ConfigError(
        f"auth.secret_key: still the built-in default while server.host is "
        f"{cfg.server.host!r}, not a loopback address: anyone could sign requests as "
        f"{cfg.auth.access_key!r}. Set auth.secret_key (or BLEEPSTORE_AUTH__SECRET_KEY), "
        "listen on 127.0.0.1, or accept the risk with auth.allow_default_credentials: true "
        "(BLEEPSTORE_AUTH__ALLOW_DEFAULT_CREDENTIALS=true)")


def _validate(cfg: Config) -> None:
    _validate_exposure(cfg)
    if cfg.server.port < 1 or cfg.server.port > 65535:
        raise ConfigError(f"server.port: {cfg.server.port} is not a TCP port")
    if cfg.server.workers < 1:
        raise ConfigError("server.workers: must be at least 1")
    if cfg.server.threads < 1:
        raise ConfigError("server.threads: must be at least 1")
    if cfg.server.body_read_timeout_s < 1:
        raise ConfigError("server.body_read_timeout_s: must be at least 1")
    for key in ("header_timeout_s", "min_body_rate_window_s", "worker_connections"):
        if getattr(cfg.server, key) < 1:
            raise ConfigError(f"server.{key}: must be at least 1")
    if cfg.server.min_body_rate_bytes_s < 0:
        raise ConfigError("server.min_body_rate_bytes_s: must be 0 (off) or more")
    if cfg.server.admin_port is not None and not cfg.server.admin_token:
        raise ConfigError("server.admin_token: must be set when server.admin_port is set")
    if not cfg.auth.access_key or not cfg.auth.secret_key:
        raise ConfigError("auth.access_key: the bootstrap credential must not be empty")
    if cfg.cluster.enabled is not None and cfg.cluster.enabled != (cfg.metadata.engine == "raft"):
        raise ConfigError("cluster.enabled: disagrees with metadata.engine")
    if cfg.metadata.engine == "raft":
        _validate_cluster(cfg)
    _validate_gateway(cfg.storage)
    if not 0 <= cfg.storage.inline_max_bytes <= MAX_INLINE_BYTES:
        raise ConfigError(f"storage.inline_max_bytes: must be 0 (off) to {MAX_INLINE_BYTES}")
    if cfg.queue.consumer_threads < 1 or cfg.queue.sync_timeout_ms < 1:
        raise ConfigError("queue.consumer_threads / queue.sync_timeout_ms: must be at least 1")
    if not 1 <= cfg.queue.outbox_batch_size <= 10000:
        raise ConfigError("queue.outbox_batch_size: must be between 1 and 10000")
    if cfg.queue.outbox_max_rows < 1:
        raise ConfigError("queue.outbox_max_rows: must be at least 1")
    for key in ("day_seconds", "interval_s", "batch_size"):
        if getattr(cfg.lifecycle, key) < 1:
            raise ConfigError(f"lifecycle.{key}: must be at least 1")


def _host_port(key: str, value: str) -> None:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{key}: {value!r} is not host:port")


def _validate_cluster(cfg: Config) -> None:
    cl = cfg.cluster
    _host_port("cluster.bind_addr", cl.bind_addr)
    if cl.advertise_addr:
        _host_port("cluster.advertise_addr", cl.advertise_addr)
    elif cl.bind_addr.startswith("0.0.0.0:"):
        raise ConfigError("cluster.advertise_addr: required when cluster.bind_addr is 0.0.0.0")
    for i, peer in enumerate(cl.peers):
        addr = peer if isinstance(peer, str) else (
            peer.get("addr") if isinstance(peer, dict) and peer.get("id") else None)
        if not isinstance(addr, str):
            raise ConfigError(f"cluster.peers[{i}]: \"host:port\" or {{id, addr, api_addr}}")
        _host_port(f"cluster.peers[{i}]", addr)
    if cl.election_timeout_ms < 50 or cl.heartbeat_interval_ms * 3 >= cl.election_timeout_ms:
        raise ConfigError("cluster.heartbeat_interval_ms: must be < election_timeout_ms / 3 "
                          "(and election_timeout_ms >= 50)")
    if cl.write_timeout_ms < 100:
        raise ConfigError("cluster.write_timeout_ms: must be at least 100")
    if cl.data_placement == "owner":
        if not cl.secret:
            raise ConfigError("cluster.secret: required with data_placement: owner (it "
                              "authenticates blob fetches between nodes)")
        if not cl.api_addr:
            raise ConfigError("cluster.api_addr: required with data_placement: owner (how "
                              "the other nodes fetch this node's blobs)")
        _host_port("cluster.api_addr", cl.api_addr)
        if cfg.storage.backend != "local":
            raise ConfigError("cluster.data_placement: 'owner' keeps blobs on each node's "
                              "disk (storage.backend: local); a cloud backend is shared")
    if cfg.queue.enabled and cfg.queue.consistency != "write-through":
        raise ConfigError("queue.consistency: only 'write-through' in cluster mode in this "
                          "build (write tasks are node-local)")


# The setting a gateway cannot work without, per backend.
_GATEWAY_REQUIRED = {"aws": ("bucket",), "gcp": ("bucket",), "azure": ("container",)}


def _validate_gateway(st: StorageConfig) -> None:
    if st.backend == "local":
        return
    section = getattr(st, st.backend)
    for key in _GATEWAY_REQUIRED[st.backend]:
        if not getattr(section, key):
            raise ConfigError(f"storage.{st.backend}.{key}: required with "
                              f"storage.backend: {st.backend}")
    if st.backend == "azure" and not (st.azure.connection_string or st.azure.account):
        raise ConfigError("storage.azure.connection_string: set it, or storage.azure.account")
    prefix = section.prefix
    if prefix and (prefix.startswith("/") or not prefix.endswith("/")):
        raise ConfigError(f"storage.{st.backend}.prefix: must not start with '/' and must "
                          "end with '/' (e.g. 'bleepstore/')")


DATA_DIR_ENV = "BLEEPSTORE_DATA_DIR"
_DEFAULT_DATA = "./data/"
# Every on-disk path with a ./data/... default: what BLEEPSTORE_DATA_DIR moves.
DATA_PATHS: tuple[tuple[str, ...], ...] = (
    ("metadata", "sqlite", "path"), ("storage", "local", "root_dir"), ("storage", "spool_dir"),
    ("queue", "pending_dir"), ("observability", "metrics_dir"), ("cluster", "data_dir"))


def _get(obj: Any, path: typing.Sequence[str]) -> Any:
    for part in path:
        obj = getattr(obj, part)
    return obj


def _replace(obj: Any, path: typing.Sequence[str], value: Any) -> Any:
    head, *rest = path
    new = _replace(getattr(obj, head), rest, value) if rest else value
    return dataclasses.replace(obj, **{head: new})


def rebase_data_dir(cfg: Config, data_dir: str) -> Config:
    """Each DATA_PATHS value still equal to its built-in ``./data/...`` default, moved
    under ``data_dir`` (made absolute). Values set to anything else are kept."""
    if not data_dir.strip():
        raise ConfigError(f"{DATA_DIR_ENV}: must not be empty")
    root = Path(os.path.abspath(os.path.expanduser(data_dir)))
    defaults = Config()
    for path in DATA_PATHS:
        default = _get(defaults, path)
        if _get(cfg, path) == default and default.startswith(_DEFAULT_DATA):
            cfg = _replace(cfg, path, str(root / default[len(_DEFAULT_DATA):]))
    return cfg


def data_paths(cfg: Config) -> dict[str, str]:
    """The on-disk paths this configuration uses, absolute, by dotted key."""
    keys: list[tuple[str, ...]] = [DATA_PATHS[0]]
    if cfg.storage.backend == "local":
        keys.append(DATA_PATHS[1])
    keys.append(DATA_PATHS[2])
    if cfg.queue.enabled and cfg.queue.consistency != "write-through":
        keys.append(DATA_PATHS[3])  # write tasks' payload files
    keys.append(DATA_PATHS[4])
    if cfg.metadata.engine == "raft":
        keys.append(DATA_PATHS[5])
    return {".".join(k): os.path.abspath(_get(cfg, k)) for k in keys}


def describe_source(cfg: Config, environ: typing.Mapping[str, str] | None = None) -> str:
    """"/etc/bleepstore.yaml + environment BLEEPSTORE_PORT" or "built-in defaults"."""
    names = env_overrides(environ)
    where = "built-in defaults" if cfg.source == "(built-in defaults)" else cfg.source
    return where + (f" + environment {', '.join(names)}" if names else "")


def env_overrides(environ: typing.Mapping[str, str] | None = None) -> list[str]:
    """Names (never values: they may be secrets) of the variables ``load()`` applies."""
    env = os.environ if environ is None else environ
    return sorted(n for n in env if n in _SHORT_ENV or n == DATA_DIR_ENV
                  or (n.startswith("BLEEPSTORE_") and "__" in n))


def locate(environ: typing.Mapping[str, str] | None = None) -> Path | None:
    """Config file per product.md §4: $BLEEPSTORE_CONFIG, ./bleepstore.yaml, or none."""
    env = os.environ if environ is None else environ
    explicit = env.get("BLEEPSTORE_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"BLEEPSTORE_CONFIG: {explicit} does not exist")
        return path
    local = Path("bleepstore.yaml")
    return local if local.is_file() else None


def load(path: str | Path | None = None,
         environ: typing.Mapping[str, str] | None = None) -> Config:
    """Load, merge env overrides, validate. Raises ConfigError naming the key."""
    env = os.environ if environ is None else environ
    file = Path(path) if path is not None else locate(env)
    data: dict[str, Any] = {}
    if file is not None:
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{file}: cannot read configuration: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{file}: top level must be a mapping")
        data = loaded or {}
    _apply_env(data, env)
    cfg: Config = _build(Config, data, "")
    cfg = dataclasses.replace(cfg, source=str(file) if file else "(built-in defaults)")
    if env.get(DATA_DIR_ENV):
        cfg = rebase_data_dir(cfg, env[DATA_DIR_ENV])
    _validate(cfg)
    return cfg


def redacted(cfg: Config) -> dict[str, Any]:
    """The effective configuration as plain data with secrets replaced."""

    def walk(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            out = {}
            for f in dataclasses.fields(obj):
                if f.name == "source":
                    continue
                value = getattr(obj, f.name)
                if f.name in SECRET_KEYS and isinstance(value, str) and value:
                    out[f.name] = "**REDACTED**"
                else:
                    out[f.name] = walk(value)
            return out
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        return obj

    result: dict[str, Any] = walk(cfg)
    return result
