"""Console sessions through the real SqliteStore: the three commands, the read, the rules
that end a user's sessions with the user, and migration V10 on an existing database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bleepstore.metadata import schema
from bleepstore.metadata.commands import (
    CreateConsoleSession,
    DeleteConsoleSession,
    DeleteCredential,
    DeleteExpiredConsoleSessions,
    PutCredential,
)
from bleepstore.metadata.sqlite import SqliteStore
from bleepstore.model import ConsoleSession, Credential
from bleepstore.s3.acl import owner_id_for

NOW = "2026-01-01T00:00:00.000Z"
HOUR = "2026-01-01T01:00:00.000Z"
DAY = "2026-01-02T00:00:00.000Z"


def user(key: str, active: bool = True, secret: str | None = None) -> PutCredential:
    return PutCredential(Credential(key, secret or key + "-secret", owner_id_for(key),
                                    key.lower(), active, NOW))


def session(token_hash: str, key: str = "DAVE", expires: str = DAY) -> CreateConsoleSession:
    return CreateConsoleSession(ConsoleSession(token_hash, key, "csrf-" + token_hash, NOW,
                                               expires))


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "m.db")
    s.migrate()
    s.apply(user("DAVE"))
    s.apply(user("ERIN"))
    return s


def test_create_get_delete(store: SqliteStore) -> None:
    assert store.apply(session("a" * 64)) is True
    assert store.get_console_session("a" * 64) == ConsoleSession(
        "a" * 64, "DAVE", "csrf-" + "a" * 64, NOW, DAY)
    assert store.get_console_session("b" * 64) is None
    assert store.apply(DeleteConsoleSession("a" * 64)) is True
    assert store.get_console_session("a" * 64) is None
    assert store.apply(DeleteConsoleSession("a" * 64)) is False


def test_no_session_for_an_unknown_or_disabled_user(store: SqliteStore) -> None:
    assert store.apply(session("a" * 64, key="NOBODY")) is False
    store.apply(user("FRED", active=False))
    assert store.apply(session("b" * 64, key="FRED")) is False
    assert store.get_console_session("a" * 64) is None
    assert store.get_console_session("b" * 64) is None


def test_delete_expired_keeps_the_live_ones(store: SqliteStore) -> None:
    store.apply(session("1" * 64, expires=HOUR))
    store.apply(session("2" * 64, expires=DAY))
    store.apply(session("3" * 64, key="ERIN", expires=NOW))
    assert store.apply(DeleteExpiredConsoleSessions(HOUR)) == 2  # expires_at <= now
    assert store.get_console_session("1" * 64) is None
    assert store.get_console_session("3" * 64) is None
    assert store.get_console_session("2" * 64) is not None
    assert store.apply(DeleteExpiredConsoleSessions(HOUR)) == 0


def test_disabling_removing_or_rekeying_a_user_ends_their_sessions(store: SqliteStore) -> None:
    store.apply(session("1" * 64, key="DAVE"))
    store.apply(session("2" * 64, key="ERIN"))
    store.apply(user("DAVE"))  # unchanged: the session stays
    assert store.get_console_session("1" * 64) is not None
    store.apply(user("DAVE", active=False))
    assert store.get_console_session("1" * 64) is None
    assert store.get_console_session("2" * 64) is not None  # other users keep theirs
    store.apply(user("DAVE"))  # enabled again: the old session does not come back
    assert store.get_console_session("1" * 64) is None

    store.apply(session("3" * 64, key="DAVE"))
    store.apply(user("DAVE", secret="rotated-secret"))
    assert store.get_console_session("3" * 64) is None

    assert store.apply(DeleteCredential("ERIN")) is True
    assert store.get_console_session("2" * 64) is None


def test_migration_adds_the_table_to_an_existing_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                 "applied_at TEXT NOT NULL)")
    for number, script in enumerate(schema.MIGRATIONS[:9], start=1):  # a V9 database
        conn.execute("BEGIN")
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?, ?)", (number, NOW))
        conn.execute("COMMIT")
    conn.execute("INSERT INTO credentials (access_key_id, secret_key, owner_id, created_at) "
                 "VALUES ('DAVE', 's', 'o', ?)", (NOW,))
    conn.close()

    store = SqliteStore(path)
    assert store.migrate() == schema.LATEST - 9
    assert schema.current_version(store.conn()) == schema.LATEST
    indexes = {r[1] for r in store.conn().execute("PRAGMA index_list(console_sessions)")}
    assert "idx_console_sessions_expires" in indexes
    assert store.apply(session("c" * 64)) is True  # the old rows are still there
    assert store.get_console_session("c" * 64) is not None
    assert store.migrate() == 0
