"""Command handlers for users (credentials) and their console sessions (``apply``'s
``HANDLERS`` dispatches to them, inside the caller's transaction).

Invariants: every credential change bumps ``credential_generation`` (what the per-worker
credential caches watch); one that disables or removes a user, or changes their secret,
ends their console sessions; a user is removed only with no bucket left ownerless.
"""

from __future__ import annotations

import sqlite3

from bleepstore.metadata import commands as c
from bleepstore.metadata.owners import hand_over, reassign_target
from bleepstore.metadata.rows import CREDENTIAL_COLS, cols, credential_values, placeholders


def _credentials_changed(conn: sqlite3.Connection) -> None:
    """Every worker's credential cache drops its entries at its next lookup."""
    conn.execute("UPDATE credential_generation SET value = value + 1 WHERE id = 1")


_CREDENTIAL_CHANGED = (
    "credentials.secret_key IS NOT excluded.secret_key OR "
    "credentials.owner_id IS NOT excluded.owner_id OR "
    "credentials.display_name IS NOT excluded.display_name OR "
    "credentials.active IS NOT excluded.active OR "
    "COALESCE(excluded.description, credentials.description) IS NOT credentials.description")


def _end_console_sessions(conn: sqlite3.Connection, access_key: str) -> None:
    conn.execute("DELETE FROM console_sessions WHERE access_key = ?", (access_key,))


def put_credential(conn: sqlite3.Connection, cmd: c.PutCredential) -> None:
    """Disabling a user or changing their secret also ends their console sessions."""
    new = cmd.credential
    old = conn.execute("SELECT secret_key FROM credentials WHERE access_key_id = ?",
                       (new.access_key_id,)).fetchone()
    # NOTE: an unchanged credential writes nothing (``WHERE``): every start re-applies the
    # bootstrap credential, and on a full disk that must not need WAL space.
    cur = conn.execute(f"INSERT INTO credentials ({cols(CREDENTIAL_COLS)}) "
                       f"VALUES ({placeholders(CREDENTIAL_COLS)}) ON CONFLICT(access_key_id) "
                       "DO UPDATE SET secret_key = excluded.secret_key, "
                       "owner_id = excluded.owner_id, display_name = excluded.display_name, "
                       "active = excluded.active, "
                       "description = COALESCE(excluded.description, credentials.description) "
                       f"WHERE {_CREDENTIAL_CHANGED}", credential_values(new))
    if cur.rowcount > 0:
        _credentials_changed(conn)
        if not new.active or (old is not None and old[0] != new.secret_key):
            _end_console_sessions(conn, new.access_key_id)


def delete_credential(conn: sqlite3.Connection, cmd: c.DeleteCredential) -> bool:
    """False when the key is unknown; refuses to leave the user's buckets ownerless."""
    row = conn.execute("SELECT owner_id FROM credentials WHERE access_key_id = ?",
                       (cmd.access_key_id,)).fetchone()
    if row is None:
        return False
    old_id = str(row["owner_id"])
    # NOTE: checked here, not by the caller: a bucket the user creates between a check and
    # the removal would otherwise be left with an owner no credential holds.
    buckets = tuple(r[0] for r in conn.execute(
        "SELECT name FROM buckets WHERE owner_id = ? ORDER BY name", (old_id,)))
    if cmd.reassign_to is not None:
        hand_over(conn, buckets, old_id, reassign_target(conn, cmd, old_id))
    elif buckets:
        raise c.UserOwnsBuckets(cmd.access_key_id, buckets)
    conn.execute("DELETE FROM credentials WHERE access_key_id = ?", (cmd.access_key_id,))
    _end_console_sessions(conn, cmd.access_key_id)
    _credentials_changed(conn)
    return True


def create_console_session(conn: sqlite3.Connection, cmd: c.CreateConsoleSession) -> bool:
    # NOTE: the credential is checked here, in the transaction: a user disabled between the
    # login's secret check and this insert must not get a session.
    s = cmd.session
    cur = conn.execute(
        "INSERT INTO console_sessions (token_hash, access_key, csrf_token, created_at, "
        "expires_at) SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM credentials "
        "WHERE access_key_id = ? AND active = 1)",
        (s.token_hash, s.access_key, s.csrf_token, s.created_at, s.expires_at, s.access_key))
    return cur.rowcount > 0


def delete_console_session(conn: sqlite3.Connection, cmd: c.DeleteConsoleSession) -> bool:
    cur = conn.execute("DELETE FROM console_sessions WHERE token_hash = ?", (cmd.token_hash,))
    return cur.rowcount > 0


def delete_expired_console_sessions(conn: sqlite3.Connection,
                                    cmd: c.DeleteExpiredConsoleSessions) -> int:
    cur = conn.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (cmd.now,))
    return cur.rowcount
