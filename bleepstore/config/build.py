"""Plain data (parsed YAML, environment variables) into the typed ``Config``.

Invariants:
- Unknown sections/keys and values of the wrong type raise ``ConfigError`` naming the
  dotted key; integers are never negative.
- Environment overrides: BLEEPSTORE_HOST/PORT/WORKERS/LOG_LEVEL (product.md §4), and the
  generic form ``BLEEPSTORE_<SECTION>__<KEY>[__<SUBKEY>]`` (values parsed as YAML
  scalars), e.g. ``BLEEPSTORE_STORAGE__LOCAL__ROOT_DIR=/srv/objects``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

import yaml

from bleepstore.config.model import ConfigError


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
        return build(tp, value, key)
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


def build(cls: Any, data: Any, prefix: str) -> Any:
    """An instance of the dataclass ``cls`` from a mapping; ``prefix``: its dotted key."""
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


SHORT_ENV = {
    "BLEEPSTORE_HOST": ["server", "host"],
    "BLEEPSTORE_PORT": ["server", "port"],
    "BLEEPSTORE_WORKERS": ["server", "workers"],
    "BLEEPSTORE_LOG_LEVEL": ["logging", "level"],
}


def apply_env(data: dict[str, Any], environ: typing.Mapping[str, str]) -> None:
    """Each BLEEPSTORE_ override in ``environ`` set into ``data`` (the parsed file)."""
    for name, value in sorted(environ.items()):
        if name in SHORT_ENV:
            path = SHORT_ENV[name]
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
