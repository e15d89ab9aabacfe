"""The ``bleepstore`` command: serve, check-config, version, user add|list|remove.

Invariants: ``serve`` only sets environment variables and execs gunicorn with the
packaged config and app, so it behaves exactly like the documented gunicorn command.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from bleepstore import __version__
from bleepstore.config import ConfigError, load, redacted
from bleepstore.credentials import new_access_key, new_secret

if TYPE_CHECKING:
    from bleepstore.metadata.sqlite import SqliteStore


def _serve(args: argparse.Namespace) -> int:
    for flag, var in (("config", "BLEEPSTORE_CONFIG"), ("host", "BLEEPSTORE_HOST"),
                      ("port", "BLEEPSTORE_PORT"), ("workers", "BLEEPSTORE_WORKERS"),
                      ("log_level", "BLEEPSTORE_LOG_LEVEL")):
        value = getattr(args, flag)
        if value is not None:
            os.environ[var] = str(value) if flag != "config" else str(Path(value).resolve())
    try:
        load()
    except ConfigError as exc:
        print(f"bleepstore: configuration error: {exc}", file=sys.stderr)
        return 2
    conf = Path(__file__).with_name("gunicorn_conf.py")
    argv = [sys.executable, "-m", "gunicorn", "-c", str(conf), "bleepstore.wsgi:app"]
    os.execv(sys.executable, argv)
    return 0  # pragma: no cover


def _check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load(args.config)
    except ConfigError as exc:
        print(f"bleepstore: configuration error: {exc}", file=sys.stderr)
        return 2
    print(yaml.safe_dump(redacted(cfg), sort_keys=False), end="")
    return 0


def _store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from bleepstore.metadata.sqlite import SqliteStore

    cfg = load(args.config)
    store = SqliteStore(cfg.metadata.sqlite.path, synchronous=cfg.metadata.sqlite.synchronous,
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
    from bleepstore.model import Credential
    from bleepstore.s3.acl import owner_id_for

    try:
        cfg, store = _store(args)
    except ConfigError as exc:
        print(f"bleepstore: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.user_cmd == "list":
        for c in store.list_credentials():
            state = "active" if c.active else "inactive"
            print(f"{c.access_key_id}\t{c.owner_id}\t{c.display_name}\t{state}")
        return 0
    if args.user_cmd == "remove":
        return _user_remove(args, cfg.auth.access_key, store)
    access_key = args.access_key or new_access_key()
    secret = args.secret_key or new_secret()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    store.apply(PutCredential(Credential(access_key, secret, owner_id_for(access_key),
                                         args.display_name or access_key, True, now)))
    print(f"access_key_id: {access_key}\nsecret_access_key: {secret}\n"
          f"owner_id: {owner_id_for(access_key)}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bleepstore", description="S3-compatible object store")
    sub = p.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run the server under gunicorn")
    serve.add_argument("--config")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--log-level", dest="log_level")
    check = sub.add_parser("check-config", help="validate and print the configuration")
    check.add_argument("--config")
    sub.add_parser("version", help="print the version")
    user = sub.add_parser("user", help="manage credentials")
    user.add_argument("--config")
    usub = user.add_subparsers(dest="user_cmd", required=True)
    add = usub.add_parser("add", help="create (or update) a user; prints the secret once")
    add.add_argument("--access-key")
    add.add_argument("--secret-key")
    add.add_argument("--display-name")
    usub.add_parser("list", help="list users (never secrets)")
    rm = usub.add_parser("remove", help="delete a user (refused while they own buckets)")
    rm.add_argument("access_key")
    rm.add_argument("--reassign-to", dest="reassign_to", metavar="ACCESS_KEY",
                    help="hand the user's buckets to this active user")
    events = sub.add_parser("events", help="watch the event queue")
    events.add_argument("--config")
    esub = events.add_subparsers(dest="events_cmd", required=True)
    tail = esub.add_parser("tail", help="print events as they are published (Ctrl-C stops)")
    tail.add_argument("--limit", type=int, help="stop after this many events")
    tail.add_argument("--seconds", type=float, help="stop after this long")
    return p


def _events(args: argparse.Namespace) -> int:
    try:
        cfg = load(args.config)
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


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.cmd == "serve":
        return _serve(args)
    if args.cmd == "check-config":
        return _check_config(args)
    if args.cmd == "user":
        return _user(args)
    if args.cmd == "events":
        return _events(args)
    print(f"bleepstore {__version__}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
