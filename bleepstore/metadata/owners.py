"""Handing a removed user's buckets to another user (``DeleteCredential.reassign_to``).

Invariants: runs inside the DeleteCredential transaction, so no bucket is ever left with
an owner that no credential holds. In each handed-over bucket the new owner takes the
removed user's place wherever ownership is stored: the bucket's owner columns and ACL,
and the ACLs (owner and grants) and initiator of the objects and uploads that name the
removed user. Objects and uploads of third parties keep their owner, as in S3 where the
writer of an object owns it.
"""

from __future__ import annotations

import sqlite3

from bleepstore.metadata import commands as c
from bleepstore.model import Acl, Grant, Grantee, Owner
from bleepstore.s3.acl import acl_from_json, acl_to_json


def reassign_target(conn: sqlite3.Connection, cmd: c.DeleteCredential,
                    old_owner_id: str) -> Owner:
    """The owner identity of ``cmd.reassign_to``: an active user other than the removed one."""
    row = conn.execute("SELECT owner_id, display_name, active FROM credentials "
                       "WHERE access_key_id = ?", (cmd.reassign_to,)).fetchone()
    if row is None or not row["active"] or row["owner_id"] == old_owner_id:
        raise c.InvalidReassignTarget(
            f"{cmd.reassign_to} is not an active user other than {cmd.access_key_id}")
    return Owner(str(row["owner_id"]), str(row["display_name"]))


def _grant_for(grant: Grant, old_id: str, new: Owner) -> Grant:
    if grant.grantee.type != "CanonicalUser" or grant.grantee.id != old_id:
        return grant
    return Grant(Grantee("CanonicalUser", id=new.id, display_name=new.display_name),
                 grant.permission)


def transfer_acl(text: str, old_id: str, new: Owner) -> str:
    """``text`` (an ``acl`` column) with ``old_id`` replaced by ``new`` as owner and grantee."""
    if text.strip() in ("", "{}"):
        return text  # the default ACL derives from the bucket owner columns
    acl = acl_from_json(text, new)
    grants: list[Grant] = []
    seen: set[tuple[str, str, str, str]] = set()
    for grant in (_grant_for(g, old_id, new) for g in acl.grants):
        key = (grant.grantee.type, grant.grantee.id, grant.grantee.uri, grant.permission)
        if key not in seen:  # the new owner may already hold the same grant
            seen.add(key)
            grants.append(grant)
    owner = new if acl.owner.id == old_id else acl.owner
    return acl_to_json(Acl(owner, tuple(grants)))


def _objects(conn: sqlite3.Connection, bucket: str, old_id: str, new: Owner) -> None:
    # instr() keeps the JSON parsing to the rows that mention the removed user at all
    rows = conn.execute("SELECT key, acl FROM objects WHERE bucket = ? AND instr(acl, ?) > 0",
                        (bucket, old_id)).fetchall()
    conn.executemany("UPDATE objects SET acl = ? WHERE bucket = ? AND key = ?",
                     [(transfer_acl(r["acl"], old_id, new), bucket, r["key"]) for r in rows])
    rows = conn.execute("SELECT key, vseq, acl FROM object_versions WHERE bucket = ? "
                        "AND instr(acl, ?) > 0", (bucket, old_id)).fetchall()
    conn.executemany("UPDATE object_versions SET acl = ? WHERE bucket = ? AND key = ? "
                     "AND vseq = ?", [(transfer_acl(r["acl"], old_id, new), bucket, r["key"],
                                       r["vseq"]) for r in rows])


def _uploads(conn: sqlite3.Connection, bucket: str, old_id: str, new: Owner) -> None:
    rows = conn.execute("SELECT upload_id, acl FROM multipart_uploads WHERE bucket = ? "
                        "AND (owner_id = ? OR instr(acl, ?) > 0)",
                        (bucket, old_id, old_id)).fetchall()
    for r in rows:
        conn.execute("UPDATE multipart_uploads SET acl = ? WHERE upload_id = ?",
                     (transfer_acl(r["acl"], old_id, new), r["upload_id"]))
    conn.execute("UPDATE multipart_uploads SET owner_id = ?, owner_display = ? "
                 "WHERE bucket = ? AND owner_id = ?", (new.id, new.display_name, bucket, old_id))


def hand_over(conn: sqlite3.Connection, buckets: tuple[str, ...], old_id: str,
              new: Owner) -> None:
    """Make ``new`` the owner of ``buckets`` (all owned by ``old_id``)."""
    for name in buckets:
        acl = conn.execute("SELECT acl FROM buckets WHERE name = ?", (name,)).fetchone()[0]
        conn.execute("UPDATE buckets SET owner_id = ?, owner_display = ?, acl = ? "
                     "WHERE name = ?", (new.id, new.display_name,
                                        transfer_acl(acl, old_id, new), name))
        _objects(conn, name, old_id, new)
        _uploads(conn, name, old_id, new)
