"""Checks of a built ``Config`` that no single field's type can express.

Invariants:
- Serving a non-loopback address with the built-in ``auth.secret_key`` is a ConfigError
  unless ``auth.allow_default_credentials``: every start path calls ``load()``, which
  calls ``validate()``.
"""

from __future__ import annotations

import ipaddress

from bleepstore.config.model import MAX_INLINE_BYTES, AuthConfig, Config, ConfigError, StorageConfig


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


def validate(cfg: Config) -> None:
    """Raise ConfigError for the first setting that cannot work, naming its key."""
    _validate_exposure(cfg)
    if cfg.server.port < 1 or cfg.server.port > 65535:
        raise ConfigError(f"server.port: {cfg.server.port} is not a TCP port")
    for key in ("workers", "threads", "body_read_timeout_s", "header_timeout_s",
                "min_body_rate_window_s", "worker_connections"):
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
