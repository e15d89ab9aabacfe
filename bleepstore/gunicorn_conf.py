"""gunicorn settings derived from BleepStore's config, plus the lifecycle hooks
(product.md §3). The repository's ``gunicorn.conf.py`` re-exports this module.

Invariants: loading this module opens nothing (no socket, lock, thread or database
connection); recovery runs once, in the master, in ``on_starting``, before any fork;
``preload_app`` stays off so each worker builds its own app.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import gunicorn.http.wsgi

from bleepstore.config import ConfigError, load
from bleepstore.logs import formatter_for

try:
    _cfg = load()
except ConfigError as _exc:
    print(f"bleepstore: configuration error: {_exc}", file=sys.stderr)
    sys.exit(2)

gunicorn.http.wsgi.SERVER = "BleepStore"  # gunicorn writes exactly one Server header

_server = _cfg.server
bind = [f"{_server.host}:{_server.port}"]
if _server.admin_port is not None:
    bind.append(f"{_server.admin_host}:{_server.admin_port}")
workers = _server.workers
# NOTE: gthread, with request heads read by the main loop (slow clients cost no thread).
worker_class = "bleepstore.gunicorn_worker.S3Worker"
threads = _server.threads
worker_connections = _server.worker_connections
timeout = _server.worker_timeout_s
graceful_timeout = _server.graceful_timeout_s
keepalive = _server.keepalive_s
preload_app = False
limit_request_line = 8190
limit_request_fields = 200
limit_request_field_size = 16380
accesslog = None
# NOTE: gunicorn 27's control socket defaults to one path shared by every instance on
# the machine; BleepStore does not use it, so two servers must never fight over it.
control_socket_disable = True
loglevel = _cfg.logging.level
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"bleepstore": {"()": formatter_for, "fmt": _cfg.logging.format}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "bleepstore",
                            "stream": "ext://sys.stderr"}},
    "root": {"handlers": [], "level": loglevel.upper()},
    "loggers": {"gunicorn.error": {"handlers": ["stderr"], "level": loglevel.upper(),
                                   "propagate": False},
                "gunicorn.access": {"handlers": [], "propagate": False}},
}
raw_env = [f"PROMETHEUS_MULTIPROC_DIR={os.path.abspath(_cfg.observability.metrics_dir)}"]
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR",
                      os.path.abspath(_cfg.observability.metrics_dir))


def on_starting(server: Any) -> None:
    """Master, once, before any worker exists and before binding: the data-dir lock,
    then crash recovery."""
    from bleepstore.datadir_lock import DataDirBusy, lock_data_dirs
    from bleepstore.errors import S3Error
    from bleepstore.logs import setup_logging
    from bleepstore.recovery import run_recovery
    from bleepstore.storage.gateway import GatewayError

    try:
        # NOTE: the one lock the master owns, on purpose: workers inherit it, so it ends
        # with the last process of this server. Kept on the arbiter for its whole life.
        server.bleepstore_data_lock = lock_data_dirs(_cfg)
    except DataDirBusy as exc:  # a second server: touch nothing, say who holds it
        print(f"bleepstore: {exc}", file=sys.stderr)
        sys.exit(3)
    setup_logging(_cfg)
    try:
        run_recovery(_cfg)
    except S3Error as exc:  # e.g. an unusable bucket/container: one clear line, no start
        detail = exc.detail if isinstance(exc, GatewayError) else f"{exc.code}: {exc.msg}"
        print(f"bleepstore: storage: {detail}", file=sys.stderr)
        sys.exit(2)
    except ConfigError as exc:  # a setting only checkable on disk (queue.pending_dir)
        print(f"bleepstore: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    if _cfg.metadata.engine == "raft":  # before any worker: they submit commands to it
        import subprocess

        server.bleepstore_sidecar = subprocess.Popen(
            [sys.executable, "-m", "bleepstore.cluster.sidecar", "--parent", str(os.getpid())])
    # NOTE: importing (not building) the app in the master lets every forked worker
    # inherit the loaded modules, halving worker boot time. Imports create no socket,
    # lock or thread; create_app() still runs in each worker after fork.
    import bleepstore.app  # noqa: F401


def child_exit(server: Any, worker: Any) -> None:
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
    except Exception:  # metrics bookkeeping must never break the arbiter
        pass


def on_exit(server: Any) -> None:
    """After the workers stopped: the Raft sidecar goes last (it may still be applying)."""
    sidecar = getattr(server, "bleepstore_sidecar", None)
    if sidecar is not None:
        sidecar.terminate()
        try:
            sidecar.wait(10)
        except Exception:
            sidecar.kill()
