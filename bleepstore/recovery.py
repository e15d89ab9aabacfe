"""Startup = recovery (product.md §6.2), run once in the gunicorn master before fork.

Invariants: every step is idempotent, so a recovery that is itself killed simply runs
again next start; every connection opened here is closed before returning.
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

from bleepstore.config import Config
from bleepstore.core.reconcile import reconcile
from bleepstore.metadata.commands import PutCredential
from bleepstore.model import Credential
from bleepstore.runtime import build_services, reap_and_sweep
from bleepstore.s3.acl import owner_id_for
from bleepstore.s3.headers import iso_from_datetime

log = logging.getLogger("bleepstore.recovery")


def _empty_dir(path: Path) -> int:
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return 0
    removed = 0
    for child in path.iterdir():
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


def run_recovery(cfg: Config) -> dict[str, int]:
    svc = build_services(cfg)
    try:
        counts: dict[str, int] = {"migrations": svc.store.migrate()}
        svc.store.apply(PutCredential(bootstrap_credential(cfg)))
        report = svc.storage.recover(svc.store.upload_exists)
        counts.update({k: int(v) for k, v in vars(report).items()})
        counts["spool_files_removed"] = _empty_dir(Path(cfg.storage.spool_dir))
        counts.update(reap_and_sweep(svc))
        if cfg.storage.reconcile_on_startup:  # the orphan scan (storage.md §5.5)
            counts.update(reconcile(svc))
        svc.store.checkpoint()
        counts["metrics_files_removed"] = _empty_dir(Path(cfg.observability.metrics_dir))
    finally:
        svc.store.close()
    if cfg.auth.access_key == "bleepstore" and cfg.auth.secret_key == "bleepstore-secret":
        log.warning("the default credentials are in use; change auth.access_key/secret_key")
    log.info("recovery complete", extra=counts)
    return counts
