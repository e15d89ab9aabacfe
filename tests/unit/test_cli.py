"""The operator's side of the CLI and the config (issue 16 part 2): data paths that do not
depend on the working directory by accident, a loopback default that refuses to expose
the public default secret, and help that says what every option defaults to."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bleepstore import __version__
from bleepstore.cli import EPILOG, main, parser
from bleepstore.config import ConfigError, data_paths, is_loopback, load
from bleepstore.metadata.sqlite import SqliteStore

DATA_KEYS = {"metadata.sqlite.path": "metadata.db", "storage.local.root_dir": "objects",
             "storage.spool_dir": "spool", "queue.pending_dir": "pending",
             "observability.metrics_dir": "prometheus", "cluster.data_dir": "raft"}


def value(cfg: object, dotted: str) -> str:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    assert isinstance(cfg, str)
    return cfg


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and no BLEEPSTORE_* variables from the outer shell."""
    for name in list(os.environ):
        if name.startswith("BLEEPSTORE_"):
            monkeypatch.delenv(name)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


# --- item 2: loopback by default, the default secret never beyond it -----------------

def test_the_default_host_is_loopback(elsewhere: Path) -> None:
    cfg = load(environ={})
    assert cfg.server.host == "127.0.0.1" and cfg.auth.allow_default_credentials is False


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost",
                                  "LOCALHOST"])
def test_loopback_hosts_serve_the_default_secret(host: str) -> None:
    assert is_loopback(host)
    assert load(environ={"BLEEPSTORE_HOST": host}).server.host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "s3.example.com",
                                  "", "128.0.0.1", "::ffff:10.0.0.1"])
def test_other_hosts_refuse_the_default_secret_and_say_how_to_fix_it(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ConfigError) as exc:
        load(environ={"BLEEPSTORE_HOST": host})
    msg = str(exc.value)
    assert msg.startswith("auth.secret_key:")
    assert "BLEEPSTORE_AUTH__SECRET_KEY" in msg and "auth.allow_default_credentials: true" in msg
    # either fix works
    assert load(environ={"BLEEPSTORE_HOST": host,
                         "BLEEPSTORE_AUTH__SECRET_KEY": "a-real-secret"}).server.host == host
    assert load(environ={"BLEEPSTORE_HOST": host,
                         "BLEEPSTORE_AUTH__ALLOW_DEFAULT_CREDENTIALS": "true"}).server.host == host


def test_the_refusal_covers_a_config_file_too(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  host: 0.0.0.0\n")
    with pytest.raises(ConfigError, match="auth.secret_key"):
        load(path, environ={})
    path.write_text("server:\n  host: 0.0.0.0\nauth:\n  secret_key: s3cr3t-s3cr3t\n")
    assert load(path, environ={}).server.host == "0.0.0.0"


# --- item 1: data paths --------------------------------------------------------------

def test_data_dir_moves_every_default_data_path(elsewhere: Path) -> None:
    cfg = load(environ={"BLEEPSTORE_DATA_DIR": "store"})  # relative: made absolute
    for key, leaf in DATA_KEYS.items():
        assert value(cfg, key) == str(elsewhere / "store" / leaf), key


def test_explicit_paths_win_over_the_data_dir(elsewhere: Path) -> None:
    (elsewhere / "bleepstore.yaml").write_text(
        "metadata:\n  sqlite:\n    path: /srv/meta/m.db\nstorage:\n  spool_dir: ./myspool\n")
    cfg = load(environ={"BLEEPSTORE_DATA_DIR": "/srv/bs",
                        "BLEEPSTORE_OBSERVABILITY__METRICS_DIR": "/run/prom"})
    assert cfg.metadata.sqlite.path == "/srv/meta/m.db"
    assert cfg.storage.spool_dir == "./myspool"
    assert cfg.observability.metrics_dir == "/run/prom"
    assert cfg.storage.local.root_dir == "/srv/bs/objects"
    assert cfg.cluster.data_dir == "/srv/bs/raft"


def test_without_a_data_dir_the_defaults_stay_and_print_absolute(elsewhere: Path) -> None:
    cfg = load(environ={})
    assert cfg.metadata.sqlite.path == "./data/metadata.db"
    assert data_paths(cfg) == {
        "metadata.sqlite.path": str(elsewhere / "data" / "metadata.db"),
        "storage.local.root_dir": str(elsewhere / "data" / "objects"),
        "storage.spool_dir": str(elsewhere / "data" / "spool"),
        "observability.metrics_dir": str(elsewhere / "data" / "prometheus")}


def _store_at(data: Path) -> None:
    data.mkdir(parents=True)
    store = SqliteStore(str(data / "metadata.db"))
    store.migrate()
    store.close()


@pytest.mark.parametrize("argv", [["user", "list"], ["user", "add", "--access-key", "AKX"],
                                  ["user", "remove", "AKX"]])
def test_user_commands_refuse_to_create_a_store(elsewhere: Path, argv: list[str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    expected = elsewhere / "data" / "metadata.db"
    assert f"no BleepStore data at {expected}: start the server once, or pass " \
           "--config/--data-dir" in err
    assert list(elsewhere.iterdir()) == []  # no ./data created


@pytest.mark.parametrize("where", ["before", "after", "env"])
def test_user_commands_find_the_store_from_anywhere(elsewhere: Path, tmp_path: Path,
                                                    where: str, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "store"
    _store_at(data)
    opts = {"before": (["--data-dir", str(data)], []), "after": ([], ["--data-dir", str(data)]),
            "env": ([], [])}[where]
    if where == "env":
        monkeypatch.setenv("BLEEPSTORE_DATA_DIR", str(data))
    assert main(["user", *opts[0], "add", "--access-key", "AKBSWHERE", *opts[1]]) == 0
    assert main(["user", *opts[0], "list", *opts[1]]) == 0
    assert "AKBSWHERE\t" in capsys.readouterr().out
    assert list(elsewhere.iterdir()) == []


# --- item 4: check-config, --version, help ---------------------------------------------

def _check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, dict[str, Any]]:
    assert main(["check-config", *argv]) == 0
    out = capsys.readouterr().out
    data = yaml.safe_load(out)
    assert isinstance(data, dict)
    return out, data


def test_check_config_shows_the_sections_in_use(elsewhere: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out, data = _check([], capsys)
    assert "cluster" not in data and "queue" not in data
    assert set(data["storage"]) & {"local", "aws", "gcp", "azure"} == {"local"}
    assert f"#   metadata.sqlite.path: {elsewhere / 'data' / 'metadata.db'}" in out
    assert "# configuration: built-in defaults" in out
    _, everything = _check(["--all"], capsys)
    assert {"cluster", "queue"} <= set(everything)
    assert {"local", "aws", "gcp", "azure"} <= set(everything["storage"])


def test_check_config_shows_the_backends_in_use(elsewhere: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("queue:\n  enabled: true\n  backend: kafka\n"
                    "storage:\n  backend: aws\n  aws:\n    bucket: b\n")
    out, data = _check(["--config", str(path), "--data-dir", str(tmp_path / "d")], capsys)
    assert set(data["queue"]) & {"redis", "rabbitmq", "kafka"} == {"kafka"}
    assert set(data["storage"]) & {"local", "aws", "gcp", "azure"} == {"aws"}
    assert f"# configuration: {path}" in out
    assert f"#   metadata.sqlite.path: {tmp_path / 'd' / 'metadata.db'}" in out
    assert "storage.local.root_dir" not in out  # not used by a gateway


def test_version_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"bleepstore {__version__}"


def _parsers(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [p]
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += _parsers(child)
    return found


def test_every_option_has_help_with_its_default() -> None:
    for p in _parsers(parser()):
        text = p.format_help()
        for action in p._actions:
            if not action.option_strings or action.dest in ("help", "version"):
                continue
            assert action.help, f"{p.prog} {action.option_strings}"
            assert "default" in action.help.lower() or "(default:" in text, \
                f"{p.prog} {action.option_strings}"
    top = parser().format_help()
    for name in ("BLEEPSTORE_CONFIG", "BLEEPSTORE_DATA_DIR", "BLEEPSTORE_<SECTION>__<KEY>",
                 "BLEEPSTORE_HOST", "BLEEPSTORE_PORT", "BLEEPSTORE_WORKERS",
                 "BLEEPSTORE_LOG_LEVEL"):
        assert name in EPILOG and name in top
    assert "BLEEPSTORE_DATA_DIR" in next(p for p in _parsers(parser())
                                         if p.prog.endswith(" serve")).format_help()


def test_serve_refuses_before_starting_anything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLEEPSTORE_")}
    proc = subprocess.run([sys.executable, "-m", "bleepstore.cli", "serve", "--host", "0.0.0.0",
                           "--data-dir", str(tmp_path / "d")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "BLEEPSTORE_AUTH__SECRET_KEY" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "d").exists()
