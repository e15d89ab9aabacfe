"""gunicorn's access log stays off under BleepStore's logging config (BleepStore writes its
own): with ``logconfig_dict`` set, stock gunicorn formats an access line per request."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from gunicorn.config import Config as GunicornConfig
from gunicorn.glogging import Logger


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GunicornConfig:
    monkeypatch.setenv("BLEEPSTORE_CONFIG", "")
    # importing the config module sets it (setdefault): undone after the test
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prometheus"))
    monkeypatch.chdir(tmp_path)
    from bleepstore import gunicorn_conf

    cfg = GunicornConfig()
    cfg.set("logconfig_dict", gunicorn_conf.logconfig_dict)
    cfg.set("logger_class", gunicorn_conf.logger_class)
    return cfg


def test_stock_gunicorn_would_build_access_lines(conf: GunicornConfig) -> None:
    assert Logger(conf).access_log_enabled  # what ErrorLogOnly exists to switch off


def test_the_configured_logger_builds_none(conf: GunicornConfig,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    logger = conf.logger_class(conf)
    assert not logger.access_log_enabled
    built: list[object] = []
    monkeypatch.setattr(logger, "atoms", lambda *a: built.append(a) or {})
    logger.access(None, None, {}, None)
    assert built == []
    assert logging.getLogger("gunicorn.error") is logger.error_log
