"""Configuration: defaults in one place, env overrides, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bleepstore.config import ConfigError, load, redacted


def test_no_file_gives_embedded_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load(environ={})
    assert cfg.server.port == 9010 and cfg.server.host == "127.0.0.1"
    assert cfg.metadata.engine == "sqlite"
    assert cfg.metadata.sqlite.path == "./data/metadata.db"
    assert cfg.storage.backend == "local" and cfg.storage.local.root_dir == "./data/objects"
    assert (cfg.auth.access_key, cfg.auth.secret_key) == ("bleepstore", "bleepstore-secret")
    assert cfg.storage.effective_gc_grace_s == 0
    assert cfg.source == "(built-in defaults)"


def test_local_file_and_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bleepstore.yaml").write_text(
        "server:\n  port: 9500\n  workers: 3\nstorage:\n  local:\n    root_dir: /srv/x\n")
    cfg = load(environ={"BLEEPSTORE_PORT": "9600", "BLEEPSTORE_LOG_LEVEL": "debug",
                        "BLEEPSTORE_STORAGE__MULTIPART_TTL_S": "60"})
    assert cfg.server.port == 9600 and cfg.server.workers == 3
    assert cfg.storage.local.root_dir == "/srv/x"
    assert cfg.logging.level == "debug" and cfg.storage.multipart_ttl_s == 60


def test_bleepstore_config_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BLEEPSTORE_CONFIG"):
        load(environ={"BLEEPSTORE_CONFIG": str(tmp_path / "missing.yaml")})


@pytest.mark.parametrize("text,key", [
    ("server:\n  port: high\n", "server.port"),
    ("server:\n  prot: 1\n", "server.prot"),
    ("sever:\n  port: 1\n", "sever"),
    ("metadata:\n  engine: memory\n", "metadata.engine"),
    ("storage:\n  backend: sqlite\n", "storage.backend"),
    ("logging:\n  level: loud\n", "logging.level"),
    ("server:\n  admin_port: 9011\n", "server.admin_token"),
    ("auth:\n  enforce_region: maybe\n", "auth.enforce_region"),
    ("server:\n  virtual_host_domains: localhost\n", "server.virtual_host_domains"),
    ("server:\n  workers: -1\n", "server.workers"),
    ("server:\n  header_timeout_s: 0\n", "server.header_timeout_s"),
    ("server:\n  min_body_rate_bytes_s: -1\n", "server.min_body_rate_bytes_s"),
    ("server:\n  cpu_affinity: yes\n", "server.cpu_affinity"),
    ("storage:\n  backend: aws\n", "storage.aws.bucket"),
    ("storage:\n  backend: gcp\n", "storage.gcp.bucket"),
    ("storage:\n  backend: azure\n", "storage.azure.container"),
    ("storage:\n  backend: azure\n  azure:\n    container: c\n",
     "storage.azure.connection_string"),
    ("storage:\n  backend: aws\n  aws:\n    bucket: b\n    prefix: /abs\n",
     "storage.aws.prefix"),
    ("storage:\n  backend: gcp\n  gcp:\n    bucket: b\n    prefix: no-slash\n",
     "storage.gcp.prefix"),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load(path, environ={})
    assert key in str(exc.value)


def test_redaction_hides_secrets() -> None:
    cfg = load(environ={"BLEEPSTORE_SERVER__ADMIN_TOKEN": "tok",
                        "BLEEPSTORE_SERVER__ADMIN_PORT": "9011"})
    out = redacted(cfg)
    assert out["auth"]["secret_key"] == "**REDACTED**"
    assert out["server"]["admin_token"] == "**REDACTED**"
    assert out["auth"]["access_key"] == "bleepstore"


def _cluster(tmp_path: Path, cluster: str, extra: str = "") -> Path:
    path = tmp_path / "c.yaml"
    path.write_text("metadata:\n  engine: raft\ncluster:\n" + cluster + extra)
    return path


def test_the_shipped_cluster_example_loads() -> None:
    repo = Path(__file__).resolve().parents[2]
    cfg = load(repo / "deploy" / "cluster" / "node.example.yaml", environ={})
    assert cfg.metadata.engine == "raft" and len(cfg.cluster.peers) == 3
    assert cfg.cluster.heartbeat_interval_ms * 3 < cfg.cluster.election_timeout_ms


@pytest.mark.parametrize(("cluster", "key"), [
    ("  bind_addr: 0.0.0.0:9001\n", "cluster.advertise_addr"),
    ("  bind_addr: nohost\n", "cluster.bind_addr"),
    ("  bind_addr: 127.0.0.1:9001\n  peers: [{addr: '127.0.0.1:9002'}]\n", "cluster.peers[0]"),
    ("  bind_addr: 127.0.0.1:9001\n  peers: ['127.0.0.1:99999']\n", "cluster.peers[0]"),
    ("  bind_addr: 127.0.0.1:9001\n  heartbeat_interval_ms: 400\n",
     "cluster.heartbeat_interval_ms"),
    ("  bind_addr: 127.0.0.1:9001\n  data_placement: owner\n", "cluster.secret"),
    ("  bind_addr: 127.0.0.1:9001\n  data_placement: owner\n  secret: s\n",
     "cluster.api_addr"),
    ("  bind_addr: 127.0.0.1:9001\n  write_timeout_ms: 10\n", "cluster.write_timeout_ms"),
])
def test_cluster_settings_are_checked_at_start(tmp_path: Path, cluster: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load(_cluster(tmp_path, cluster), environ={})


def test_write_tasks_are_refused_in_cluster_mode(tmp_path: Path) -> None:
    extra = "queue:\n  enabled: true\n  backend: redis\n  consistency: async\n"
    with pytest.raises(ConfigError, match="queue.consistency"):
        load(_cluster(tmp_path, "  bind_addr: 127.0.0.1:9001\n", extra), environ={})
