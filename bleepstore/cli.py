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

import yaml

from bleepstore import __version__
from bleepstore.config import ConfigError, load, redacted
from bleepstore.credentials import new_access_key, new_secret


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
    return store


def _user(args: argparse.Namespace) -> int:
    from bleepstore.metadata.commands import DeleteCredential, PutCredential
    from bleepstore.model import Credential
    from bleepstore.s3.acl import owner_id_for

    try:
        store = _store(args)
    except ConfigError as exc:
        print(f"bleepstore: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.user_cmd == "list":
        for c in store.list_credentials():
            state = "active" if c.active else "inactive"
            print(f"{c.access_key_id}\t{c.owner_id}\t{c.display_name}\t{state}")
        return 0
    if args.user_cmd == "remove":
        if not store.apply(DeleteCredential(args.access_key)):
            print(f"bleepstore: no such user {args.access_key}", file=sys.stderr)
            return 1
        return 0
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
    rm = usub.add_parser("remove", help="delete a user")
    rm.add_argument("access_key")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.cmd == "serve":
        return _serve(args)
    if args.cmd == "check-config":
        return _check_config(args)
    if args.cmd == "user":
        return _user(args)
    print(f"bleepstore {__version__}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
