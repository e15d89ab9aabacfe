"""The ``bleepstore`` command: serve, check-config, version, user add|list|remove, events.

Invariants: ``serve`` only sets environment variables and execs
``gunicorn -c python:bleepstore.gunicorn_conf bleepstore.wsgi:app``, so it behaves exactly
like the documented gunicorn command, from any directory. Commands that read an existing
store never create one: no metadata database, exit 2 naming the absolute path looked at.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bleepstore import __version__
from bleepstore.config import (
    DATA_DIR_ENV,
    Config,
    ConfigError,
    LoggingConfig,
    ServerConfig,
    data_paths,
    describe_source,
    load,
    redacted,
    uses_default_secret,
)
from bleepstore.credentials import new_credential

if TYPE_CHECKING:
    from bleepstore.metadata.sqlite import SqliteStore

GUNICORN_ARGS = ["-c", "python:bleepstore.gunicorn_conf", "bleepstore.wsgi:app"]

EPILOG = f"""\
environment:
  BLEEPSTORE_CONFIG=FILE     the configuration file (else ./bleepstore.yaml, else the
                             built-in defaults: no file needed)
  {DATA_DIR_ENV}=DIR    like --data-dir: every data path still at its ./data/...
                             default moves under DIR (paths you set are kept)
  BLEEPSTORE_<SECTION>__<KEY>=VALUE
                             overrides one key (VALUE parsed as YAML), e.g.
                             BLEEPSTORE_AUTH__SECRET_KEY=...,
                             BLEEPSTORE_STORAGE__LOCAL__ROOT_DIR=/srv/objects
  BLEEPSTORE_HOST, BLEEPSTORE_PORT, BLEEPSTORE_WORKERS, BLEEPSTORE_LOG_LEVEL
                             shortcuts for server.host, server.port, server.workers,
                             logging.level (what serve's --host/--port/--workers/
                             --log-level set)
precedence: option > environment > configuration file > built-in default.
Relative paths are relative to the working directory; check-config prints them absolute.
"""

NO_DATA_HINT = "start the server once, or pass --config/--data-dir"


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option's help; options whose default comes from the
    configuration say so in their own words (argparse would print "None")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


class NoStore(Exception):
    """The metadata database the configuration names does not exist."""


def _load(args: argparse.Namespace) -> Config:
    """The configuration a non-serve command works on: --config and --data-dir applied."""
    env = dict(os.environ)
    if getattr(args, "data_dir", None):
        env[DATA_DIR_ENV] = os.path.abspath(args.data_dir)
    return load(args.config, env)


def _serve(args: argparse.Namespace) -> int:
    for flag, var in (("config", "BLEEPSTORE_CONFIG"), ("host", "BLEEPSTORE_HOST"),
                      ("port", "BLEEPSTORE_PORT"), ("workers", "BLEEPSTORE_WORKERS"),
                      ("log_level", "BLEEPSTORE_LOG_LEVEL"), ("data_dir", DATA_DIR_ENV)):
        value = getattr(args, flag)
        if value is not None:
            paths = ("config", "data_dir")
            os.environ[var] = os.path.abspath(value) if flag in paths else str(value)
    try:
        load()
    except ConfigError as exc:
        print(f"bleepstore: configuration error: {exc}", file=sys.stderr)
        return 2
    # NOTE: -P keeps the working directory off sys.path: a stray module there must not
    # shadow the installed package (the server runs the same from any directory).
    argv = [sys.executable, "-P", "-m", "gunicorn", *GUNICORN_ARGS]
    os.execv(sys.executable, argv)
    return 0  # pragma: no cover


def _unused_sections(cfg: Config) -> list[str]:
    """Dotted names of the sections this configuration does not use."""
    hidden = []
    if cfg.metadata.engine != "raft":
        hidden.append("cluster")
    elif cfg.cluster.discovery != "dns":
        hidden.append("cluster.dns")
    if not cfg.queue.enabled:
        hidden.append("queue")
    else:
        hidden += [f"queue.{b}" for b in ("redis", "rabbitmq", "kafka")
                   if b != cfg.queue.backend]
    hidden += [f"storage.{b}" for b in ("local", "aws", "gcp", "azure")
               if b != cfg.storage.backend]
    return hidden


def _header(cfg: Config, hidden: list[str]) -> list[str]:
    lines = [f"# configuration: {describe_source(cfg)}", "# data paths (absolute):"]
    lines += [f"#   {key}: {path}" for key, path in data_paths(cfg).items()]
    if hidden:
        lines.append(f"# not in use, left out (--all shows them): {', '.join(hidden)}")
    if uses_default_secret(cfg):
        lines.append("# WARNING: auth.secret_key is the built-in default")
    return lines


def _check_config(args: argparse.Namespace) -> int:
    try:
        cfg = _load(args)
    except ConfigError as exc:
        print(f"bleepstore: configuration error: {exc}", file=sys.stderr)
        return 2
    data = redacted(cfg)
    hidden = [] if args.all else _unused_sections(cfg)
    for name in hidden:
        *parents, last = name.split(".")
        node = data
        for part in parents:
            node = node[part]
        del node[last]
    print("\n".join(_header(cfg, hidden)))
    print(yaml.safe_dump(data, sort_keys=False), end="")
    return 0


def _store(args: argparse.Namespace) -> tuple[Config, SqliteStore]:
    """The existing store; NoStore rather than creating an empty one somewhere else."""
    from bleepstore.metadata.sqlite import SqliteStore

    cfg = _load(args)
    db = Path(os.path.abspath(cfg.metadata.sqlite.path))
    if not db.is_file():
        raise NoStore(f"no BleepStore data at {db}: {NO_DATA_HINT}\n"
                      f"(configuration: {describe_source(cfg)}; working directory: {os.getcwd()})")
    store = SqliteStore(str(db), synchronous=cfg.metadata.sqlite.synchronous,
                        busy_timeout_ms=cfg.metadata.sqlite.busy_timeout_ms)
    store.migrate()
    return cfg, store


def _user_remove(args: argparse.Namespace, bootstrap_key: str, store: SqliteStore) -> int:
    """Refuses the bootstrap key and a user who owns buckets (unless --reassign-to)."""
    from bleepstore.metadata.commands import (
        DeleteCredential,
        InvalidReassignTarget,
        UserOwnsBuckets,
    )

    if args.access_key == bootstrap_key:
        print(f"bleepstore: {args.access_key} is the bootstrap user (auth.access_key), "
              "recreated at every start: change the configuration instead", file=sys.stderr)
        return 1
    try:
        removed = store.apply(DeleteCredential(args.access_key, args.reassign_to))
    except UserOwnsBuckets as exc:
        print(f"bleepstore: {args.access_key} still owns these buckets; delete them or hand "
              "them over with --reassign-to ACCESS_KEY:", file=sys.stderr)
        print("\n".join(f"  {name}" for name in exc.buckets), file=sys.stderr)
        return 1
    except InvalidReassignTarget as exc:
        print(f"bleepstore: --reassign-to: {exc}", file=sys.stderr)
        return 1
    if not removed:
        print(f"bleepstore: no such user {args.access_key}", file=sys.stderr)
        return 1
    return 0


def _user(args: argparse.Namespace) -> int:
    from bleepstore.metadata.commands import PutCredential

    try:
        cfg, store = _store(args)
    except ConfigError as exc:
        print(f"bleepstore: configuration error: {exc}", file=sys.stderr)
        return 2
    except NoStore as exc:
        print(f"bleepstore: {exc}", file=sys.stderr)
        return 2
    if args.user_cmd == "list":
        for c in store.list_credentials():
            state = "active" if c.active else "inactive"
            print(f"{c.access_key_id}\t{c.owner_id}\t{c.display_name}\t{state}")
        return 0
    if args.user_cmd == "remove":
        return _user_remove(args, cfg.auth.access_key, store)
    cred = new_credential(args.display_name, access_key=args.access_key,
                          secret_key=args.secret_key)
    store.apply(PutCredential(cred))
    print(f"access_key_id: {cred.access_key_id}\nsecret_access_key: {cred.secret_key}\n"
          f"owner_id: {cred.owner_id}")
    return 0


def _events(args: argparse.Namespace) -> int:
    try:
        cfg = _load(args)
    except ConfigError as exc:
        print(f"bleepstore: configuration error: {exc}", file=sys.stderr)
        return 2
    if not cfg.queue.enabled:
        print("bleepstore: queue.enabled is false: no events are published", file=sys.stderr)
        return 2
    from bleepstore.events.tail import run

    def ready() -> None:
        print(f"following {cfg.queue.backend} events (Ctrl-C stops)", file=sys.stderr,
              flush=True)
    try:
        run(cfg.queue, args.limit, args.seconds, lambda line: print(line, flush=True), ready)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # the broker is unreachable: say so, no traceback
        print(f"bleepstore: cannot follow {cfg.queue.backend} events: {exc}", file=sys.stderr)
        return 1
    return 0


def _version(args: argparse.Namespace) -> int:
    print(f"bleepstore {__version__}")
    return 0


def _where(p: argparse.ArgumentParser, nested: bool = False) -> None:
    """--config and --data-dir. A nested command (user list) takes them after its name
    too; SUPPRESS there keeps a value given before it."""
    default = argparse.SUPPRESS if nested else None
    p.add_argument("--config", metavar="FILE", default=default,
                   help="configuration file (default: $BLEEPSTORE_CONFIG, else "
                        "./bleepstore.yaml, else the built-in defaults)")
    p.add_argument("--data-dir", dest="data_dir", metavar="DIR", default=default,
                   help="put every data path still at its ./data/... default under DIR "
                        f"(default: ${DATA_DIR_ENV}, else ./data in the working directory)")


def _add_serve(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the server under gunicorn", epilog=EPILOG,
                           formatter_class=_Help,
                           description="Run BleepStore: execs gunicorn -c "
                                       "python:bleepstore.gunicorn_conf bleepstore.wsgi:app")
    _where(serve)
    serve.add_argument("--host", help="S3 API listen address (default: server.host, built "
                                      f"in {ServerConfig.host}; any non-loopback address "
                                      "needs auth.secret_key set)")
    serve.add_argument("--port", type=int,
                       help=f"S3 API port (default: server.port, built in {ServerConfig.port})")
    serve.add_argument("--workers", type=int, help="gunicorn worker processes (default: "
                                                   f"server.workers, built in "
                                                   f"{ServerConfig.workers})")
    serve.add_argument("--log-level", dest="log_level",
                       choices=["debug", "info", "warning", "error"],
                       help=f"log level (default: logging.level, built in "
                            f"{LoggingConfig.level})")


def _add_user(sub: Any) -> None:
    user = sub.add_parser("user", help="manage credentials (needs an existing store)",
                          formatter_class=_Help)
    _where(user)
    usub = user.add_subparsers(dest="user_cmd", required=True)
    add = usub.add_parser("add", help="create (or update) a user; prints the secret once",
                          formatter_class=_Help)
    _where(add, nested=True)
    add.add_argument("--access-key", help="access key id (default: a new random AKBS... id)")
    add.add_argument("--secret-key", help="secret; write --secret-key=VALUE when it starts "
                                          "with '-' (default: a new random secret)")
    add.add_argument("--display-name", help="display name (default: the access key id)")
    ls = usub.add_parser("list", help="list users (never secrets)", formatter_class=_Help)
    _where(ls, nested=True)
    rm = usub.add_parser("remove", help="delete a user (refused while they own buckets)",
                         formatter_class=_Help)
    _where(rm, nested=True)
    rm.add_argument("access_key", help="the access key id of the user to remove")
    rm.add_argument("--reassign-to", dest="reassign_to", metavar="ACCESS_KEY",
                    help="hand the user's buckets to this active user (default: refuse "
                         "while the user owns buckets)")


def _add_events(sub: Any) -> None:
    events = sub.add_parser("events", help="watch the event queue", formatter_class=_Help)
    _where(events)
    esub = events.add_subparsers(dest="events_cmd", required=True)
    tail = esub.add_parser("tail", help="print events as they are published (Ctrl-C stops)",
                           formatter_class=_Help)
    _where(tail, nested=True)
    tail.add_argument("--limit", type=int, help="stop after this many events (default: no "
                                                "limit)")
    tail.add_argument("--seconds", type=float, help="stop after this long (default: until "
                                                    "Ctrl-C)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bleepstore", description="S3-compatible object store",
                                epilog=EPILOG, formatter_class=_Help)
    p.add_argument("--version", action="version", version=f"bleepstore {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    _add_serve(sub)
    check = sub.add_parser("check-config", formatter_class=_Help,
                           help="validate and print the effective configuration")
    _where(check)
    check.add_argument("--all", action="store_true",
                       help="show every section (default: only the sections in use)")
    sub.add_parser("version", help="print the version", formatter_class=_Help)
    _add_user(sub)
    _add_events(sub)
    return p


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": _serve, "check-config": _check_config, "user": _user, "events": _events,
    "version": _version,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return _COMMANDS[args.cmd](args)
    except KeyboardInterrupt:  # Ctrl-C before serve's exec, or during a user command
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
