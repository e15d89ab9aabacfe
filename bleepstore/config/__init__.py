"""BleepStore configuration: typed, nested, defaulted in exactly one place (``model``).

Invariants:
- ``load()`` is the only entry point; gunicorn.conf.py and the app both call it: file
  (``locate()``), then environment overrides (``build``), then BLEEPSTORE_DATA_DIR
  (``paths``), then ``validate``.
- Bad values raise ``ConfigError`` naming the dotted key.
- This module is the package's public face: the names below are what other layers import.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any

import yaml

from bleepstore.config.build import SHORT_ENV, apply_env, build
from bleepstore.config.model import (
    SECRET_KEYS,
    AuthConfig,
    AwsStorageConfig,
    AzureStorageConfig,
    ClusterConfig,
    Config,
    ConfigError,
    ConsoleConfig,
    GcpStorageConfig,
    LifecycleConfig,
    LocalStorageConfig,
    LoggingConfig,
    MetadataConfig,
    ObservabilityConfig,
    QueueConfig,
    ServerConfig,
    SqliteConfig,
    StorageConfig,
    inline_limit,
)
from bleepstore.config.paths import DATA_DIR_ENV, data_paths, rebase_data_dir
from bleepstore.config.validate import is_loopback, uses_default_secret, validate

__all__ = [
    "AuthConfig", "AwsStorageConfig", "AzureStorageConfig", "ClusterConfig",
    "Config", "ConfigError", "ConsoleConfig", "DATA_DIR_ENV",
    "GcpStorageConfig", "LifecycleConfig", "LocalStorageConfig", "LoggingConfig",
    "MetadataConfig", "ObservabilityConfig", "QueueConfig", "ServerConfig", "SqliteConfig",
    "StorageConfig", "data_paths", "describe_source", "env_overrides", "inline_limit",
    "is_loopback", "load", "locate", "rebase_data_dir", "redacted", "uses_default_secret"]


def describe_source(cfg: Config, environ: typing.Mapping[str, str] | None = None) -> str:
    """"/etc/bleepstore.yaml + environment BLEEPSTORE_PORT" or "built-in defaults"."""
    names = env_overrides(environ)
    where = "built-in defaults" if cfg.source == "(built-in defaults)" else cfg.source
    return where + (f" + environment {', '.join(names)}" if names else "")


def env_overrides(environ: typing.Mapping[str, str] | None = None) -> list[str]:
    """Names (never values: they may be secrets) of the variables ``load()`` applies."""
    env = os.environ if environ is None else environ
    return sorted(n for n in env if n in SHORT_ENV or n == DATA_DIR_ENV
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
    apply_env(data, env)
    cfg: Config = build(Config, data, "")
    cfg = dataclasses.replace(cfg, source=str(file) if file else "(built-in defaults)")
    if env.get(DATA_DIR_ENV):
        cfg = rebase_data_dir(cfg, env[DATA_DIR_ENV])
    validate(cfg)
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
