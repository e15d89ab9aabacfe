"""The data-dir lock in-process: flock conflicts between two open file descriptions even
inside one process, so a second ``lock_data_dirs`` plays the second server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bleepstore.config import (
    Config,
    LocalStorageConfig,
    MetadataConfig,
    ObservabilityConfig,
    SqliteConfig,
    StorageConfig,
)
from bleepstore.datadir_lock import LOCK_NAME, DataDirBusy, data_dirs, lock_data_dirs


def config(db: Path, objects: Path, spool: Path, metrics: Path) -> Config:
    return Config(metadata=MetadataConfig(sqlite=SqliteConfig(path=str(db / "metadata.db"))),
                  storage=StorageConfig(spool_dir=str(spool),
                                        local=LocalStorageConfig(root_dir=str(objects))),
                  observability=ObservabilityConfig(metrics_dir=str(metrics)))


def test_each_distinct_directory_once_resolved(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    cfg = config(tmp_path / "real", tmp_path / "link", tmp_path / "real" / ".", tmp_path / "m")
    real = Path(os.path.realpath(tmp_path))
    assert data_dirs(cfg) == [real / "m", real / "real"]


def test_second_lock_names_holder_and_path_and_writes_nothing(tmp_path: Path) -> None:
    tmp_path = Path(os.path.realpath(tmp_path))  # the lock paths are resolved
    shared = tmp_path / "shared"
    held = lock_data_dirs(config(tmp_path / "a", shared, shared, shared))
    try:
        assert (shared / LOCK_NAME).read_text() == f"{os.getpid()}\n"
        own = tmp_path / "b"
        with pytest.raises(DataDirBusy) as exc:
            lock_data_dirs(config(own, own, own, shared))
        assert exc.value.pid == os.getpid() and exc.value.path == shared / LOCK_NAME
        assert f"pid {os.getpid()}" in str(exc.value) and str(shared / LOCK_NAME) in str(exc.value)
        assert (own / LOCK_NAME).read_text() == ""  # taken, released, never written
        lock_data_dirs(config(own, own, own, own)).release()  # ... and really released
    finally:
        held.release()
    lock_data_dirs(config(tmp_path / "a", shared, shared, shared)).release()


def test_holder_pid_unknown_until_written(tmp_path: Path) -> None:
    cfg = config(tmp_path, tmp_path, tmp_path, tmp_path)
    held = lock_data_dirs(cfg)
    try:
        os.truncate(tmp_path / LOCK_NAME, 0)
        with pytest.raises(DataDirBusy, match="pid unknown"):
            lock_data_dirs(cfg)
    finally:
        held.release()
