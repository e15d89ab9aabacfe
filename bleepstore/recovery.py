"""Startup = recovery (product.md §6.2), run once in the gunicorn master before fork.

Invariants: every step is idempotent, so a recovery that is itself killed simply runs
again next start; every connection opened here is closed before returning. The caller
holds the data-dir lock (``datadir_lock``, taken in ``on_starting``), so no other process
writes these directories: that is what makes the sweeps and the un-aged orphan scan safe.
"""

from __future__ import annotations

import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from bleepstore.config import Config, ConfigError
from bleepstore.core.reconcile import reconcile_at_startup
from bleepstore.core.services import Services
from bleepstore.datadir_lock import LOCK_NAME
from bleepstore.metadata.commands import PutCredential
from bleepstore.model import Credential
from bleepstore.runtime import build_services, build_storage, reap_and_sweep, sqlite_store
from bleepstore.s3.acl import owner_id_for
from bleepstore.s3.headers import iso_from_datetime
from bleepstore.storage.local import LocalBackend

log = logging.getLogger("bleepstore.recovery")


def _empty_dir(path: Path) -> int:
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return 0
    removed = 0
    for child in path.iterdir():
        if child.name == LOCK_NAME:  # ours, held: deleting it would free the directory
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
        removed += 1
    return removed


def bootstrap_credential(cfg: Config) -> Credential:
    return Credential(access_key_id=cfg.auth.access_key, secret_key=cfg.auth.secret_key,
                      owner_id=owner_id_for(cfg.auth.access_key),
                      display_name=cfg.display_name,
                      created_at=iso_from_datetime(datetime.now(UTC)))


def recover_write_tasks(svc: Services) -> dict[str, int]:
    """Tasks whose consumer died run again; pending files no live task owns go."""
    tasks, q = svc.tasks, svc.config.queue
    assert tasks is not None
    st = svc.config.storage
    if st.backend == "local":
        Path(q.pending_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        Path(st.local.root_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.stat(q.pending_dir).st_dev != os.stat(st.local.root_dir).st_dev:
            raise ConfigError("queue.pending_dir: must be on the filesystem of "
                              "storage.local.root_dir (a task's file is renamed into place)")
    reset = tasks.rows.reset_running()
    removed = tasks.pending.sweep(tasks.rows.live_ids(), 3600 * q.dead_letter_retention_h)
    return {"tasks_reset": reset, "pending_files_removed": removed}


def recover_cluster_node(cfg: Config) -> dict[str, int]:
    """Cluster mode: only what belongs to this node. The replicated tables are the Raft
    sidecar's (it replays its journal and proposes the bootstrap credential). A shared blob
    store holds other nodes' writes in progress, so no sweep touches it; under owner
    placement the node's own disk gets the staging and dead-upload sweeps. No un-aged
    orphan scan either way: a write whose outcome was unknown at the crash may still be
    applied once this replica catches up."""
    store = sqlite_store(cfg)
    try:
        counts = {"migrations": store.migrate()}
        storage = build_storage(cfg)
        if isinstance(storage, LocalBackend):
            if cfg.cluster.data_placement == "owner":  # this node's own disk: its sweeps
                counts.update(vars(storage.recover(store.upload_exists)))
            storage.prepare()
        storage.check()
        counts["spool_files_removed"] = _empty_dir(Path(cfg.storage.spool_dir))
        store.checkpoint()
    finally:
        store.close()
    counts["metrics_files_removed"] = _empty_dir(Path(cfg.observability.metrics_dir))
    return counts


def run_recovery(cfg: Config) -> dict[str, int]:
    if cfg.metadata.engine == "raft":
        node_counts = recover_cluster_node(cfg)
        log.info("recovery complete", extra=node_counts)
        return node_counts
    svc = build_services(cfg)
    try:
        counts: dict[str, int] = {"migrations": svc.store.migrate()}
        svc.store.apply(PutCredential(bootstrap_credential(cfg)))
        report = svc.storage.recover(svc.store.upload_exists)
        svc.storage.check()  # a gateway's bucket must be usable: else no start, key named
        counts.update({k: int(v) for k, v in vars(report).items()})
        counts["spool_files_removed"] = _empty_dir(Path(cfg.storage.spool_dir))
        counts.update(reap_and_sweep(svc))
        if svc.tasks is not None:  # events.md §8
            counts.update(recover_write_tasks(svc))
        if cfg.storage.reconcile_on_startup:  # the orphan scan (storage.md §5.5)
            counts.update(reconcile_at_startup(svc))
        svc.store.checkpoint()
        counts["metrics_files_removed"] = _empty_dir(Path(cfg.observability.metrics_dir))
    finally:
        svc.store.close()
    if cfg.auth.access_key == "bleepstore" and cfg.auth.secret_key == "bleepstore-secret":
        log.warning("the default credentials are in use; change auth.access_key/secret_key")
    log.info("recovery complete", extra=counts)
    return counts
