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
worker_class = "gthread"
threads = _server.threads
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
    """Master, once, before any worker exists: crash recovery."""
    from bleepstore.logs import setup_logging
    from bleepstore.recovery import run_recovery

    setup_logging(_cfg)
    run_recovery(_cfg)
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
