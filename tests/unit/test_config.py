"""Configuration: defaults in one place, env overrides, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bleepstore.config import ConfigError, load, redacted


def test_no_file_gives_embedded_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load(environ={})
    assert cfg.server.port == 9010 and cfg.server.host == "0.0.0.0"
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
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load(path, environ={})
    assert key in str(exc.value)


def test_redaction_hides_secrets() -> None:
    cfg = load(environ={"BLEEPSTORE_SERVER__ADMIN_TOKEN": "tok", "BLEEPSTORE_SERVER__ADMIN_PORT": "9011"})
    out = redacted(cfg)
    assert out["auth"]["secret_key"] == "**REDACTED**"
    assert out["server"]["admin_token"] == "**REDACTED**"
    assert out["auth"]["access_key"] == "bleepstore"
