"""The on-disk paths of a configuration, and moving their defaults (BLEEPSTORE_DATA_DIR).

Invariants:
- ``BLEEPSTORE_DATA_DIR`` moves every data path still at its built-in ``./data/...``
  default under that directory; a path the file or environment sets wins.
- Relative paths stay relative to the process's working directory (not the config
  file's): what people print and log is ``absolute(path)``.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any

from bleepstore.config.model import Config, ConfigError

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
