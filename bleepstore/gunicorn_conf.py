"""gunicorn settings derived from BleepStore's config, plus the lifecycle hooks
(product.md §3): ``gunicorn -c python:bleepstore.gunicorn_conf bleepstore.wsgi:app``
works from any directory (what ``bleepstore serve`` execs); the repository's
``gunicorn.conf.py`` re-exports this module.

Invariants: loading this module opens nothing (no socket, lock, thread or database
connection); recovery runs once, in the master, in ``on_starting``, before any fork;
``preload_app`` stays off so each worker builds its own app. The start line (config
source, absolute data paths) is logged before recovery; a text banner is added only
when stderr is a terminal. Ctrl-C, however often pressed, ends without a traceback.
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import signal
import sys
import threading
from typing import Any

import gunicorn.http.wsgi
from gunicorn.glogging import Logger as GunicornLogger

from bleepstore import __version__, cpus
from bleepstore.config import (
    Config,
    ConfigError,
    data_paths,
    describe_source,
    env_overrides,
    load,
    uses_default_secret,
)
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


class ErrorLogOnly(GunicornLogger):  # type: ignore[misc]
    """gunicorn's logger without its access log: BleepStore writes its own
    (web/observe.py). With ``logconfig_dict`` set, gunicorn built and formatted an access
    line for every request and dropped it (~7 % of a worker's CPU on small GETs)."""

    def _compute_access_log_enabled(self) -> bool:
        return False

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None


logger_class = ErrorLogOnly
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
    then crash recovery. Ctrl-C here (recovery may take a while) stops quietly."""
    try:
        _start(server)
    except KeyboardInterrupt:  # gunicorn's own signal handling starts after this hook
        print("bleepstore: interrupted while starting", file=sys.stderr)
        sys.exit(130)


def _start(server: Any) -> None:
    from bleepstore.datadir_lock import DataDirBusy, lock_data_dirs
    from bleepstore.errors import S3Error
    from bleepstore.logs import setup_logging
    from bleepstore.recovery import run_recovery
    from bleepstore.storage.cloud import GatewayError

    try:
        # NOTE: the one lock the master owns, on purpose: workers inherit it, so it ends
        # with the last process of this server. Kept on the arbiter for its whole life.
        server.bleepstore_data_lock = lock_data_dirs(_cfg)
    except DataDirBusy as exc:  # a second server: touch nothing, say who holds it
        print(f"bleepstore: {exc}", file=sys.stderr)
        sys.exit(3)
    setup_logging(_cfg)
    _log_start(_cfg)
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

    # NOTE: the imported objects move to the collector's permanent generation: a worker's
    # collections no longer touch (and so copy) the pages it shares with the master.
    gc.freeze()


def _log_start(cfg: Config) -> None:
    """One line naming where the configuration came from and every absolute data path:
    the answer to "which data is this server using?"."""
    paths = data_paths(cfg)
    summary = "; ".join(f"{k} {v}" for k, v in paths.items())
    logging.getLogger("bleepstore.serve").info(
        f"bleepstore {__version__} starting: config {describe_source(cfg)}; {summary}",
        extra={"config": cfg.source, "env_overrides": env_overrides(), "data_paths": paths,
               "endpoint": endpoint_url(cfg.server.host, cfg.server.port)})


def endpoint_url(host: str, port: int) -> str:
    """A URL a client on this machine can use (a wildcard address is shown as loopback)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def banner(cfg: Config) -> str:
    """The text a person starting the server in a terminal reads."""
    url = endpoint_url(cfg.server.host, cfg.server.port)
    paths = data_paths(cfg)
    lines = [f"BleepStore {__version__} is ready", f"  S3 endpoint   {url}"]
    if cfg.server.host in ("0.0.0.0", "::", ""):
        lines[-1] += f"  (listening on every address: {cfg.server.host or '*'})"
    if cfg.console.enabled:
        lines.append(f"  web console   {url}/console/")
    if cfg.server.admin_port is not None:
        admin = endpoint_url(cfg.server.admin_host, cfg.server.admin_port)
        lines.append(f"  admin API     {admin}")
    common = os.path.commonpath(list(paths.values()))
    if common != os.sep:
        lines.append(f"  data dir      {common}")
    lines += [f"    {key:<26}{path}" for key, path in paths.items()]
    lines.append(f"  config        {describe_source(cfg)}")
    if uses_default_secret(cfg):
        lines.append(f"  WARNING: the default credentials are in use ({cfg.auth.access_key} / "
                     f"{cfg.auth.secret_key}): set auth.secret_key before anyone else can "
                     "reach this port")
    return "\n".join(lines)


def when_ready(server: Any) -> None:
    """Master, listening: a banner for a person at a terminal (logs stay JSON lines)."""
    if sys.stderr.isatty():
        print(banner(_cfg), file=sys.stderr, flush=True)


def pre_fork(server: Any, worker: Any) -> None:
    """Master, before each fork: the CPU the new worker's threads will share (cpus.py),
    the one the fewest live workers use, or None (``server.cpu_affinity: off``, one
    worker, or one usable CPU)."""
    worker.bleepstore_cpu = None
    if _server.cpu_affinity == "off" or _server.workers < 2:
        return
    usable = cpus.usable()
    if len(usable) > 1:
        taken = [getattr(w, "bleepstore_cpu", None) for w in server.WORKERS.values()]
        worker.bleepstore_cpu = cpus.pick(usable, taken)


def post_fork(server: Any, worker: Any) -> None:
    """Worker, just forked: until gunicorn installs the worker's own handlers, a stop
    signal would reach the master's inherited handler (a queue nobody reads here) and be
    lost, leaving the master waiting graceful_timeout_s. Nothing is served yet: exit."""
    stops = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
    for sig in stops:
        signal.signal(sig, _exit_booting)
    pending = getattr(server, "SIG_QUEUE", None)  # caught since fork by that handler
    try:
        while pending is not None:
            if pending.get_nowait() in stops:
                os._exit(0)
    except queue.Empty:
        pass


def _exit_booting(signum: int, frame: Any) -> None:
    os._exit(0)


# NOTE: after the first SIGINT/SIGQUIT gunicorn's worker calls sys.exit(0), whose atexit
# joins request threads still busy with a client. A second Ctrl-C landed inside that join
# and printed a traceback; a stalled client held the exit until the master's SIGKILL.
_QUIT_GRACE_S = 2.0


def worker_int(worker: Any) -> None:
    """Worker, on SIGINT/SIGQUIT: later ones are ignored, and the exit waits at most
    _QUIT_GRACE_S for busy threads (crash-only: cutting a request is always safe)."""
    # NOTE: a no-op handler, not SIG_IGN: a signal already pending when the handler
    # changes would otherwise be reported as "ignored due to race condition".
    signal.signal(signal.SIGINT, _ignore)
    signal.signal(signal.SIGQUIT, _ignore)
    timer = threading.Timer(_QUIT_GRACE_S, _exit_now)
    timer.daemon = True
    timer.start()


def _ignore(signum: int, frame: Any) -> None:
    pass


def _exit_now() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(0)


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
