"""DeleteCredential through SqliteStore.apply(): the credential generation moves with every
credential change, a user who owns buckets is not removed, and ``reassign_to`` hands the
buckets (and what names the user inside them) over in the same transaction as the removal."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bleepstore import errors
from bleepstore.metadata.commands import (
    CreateBucket,
    CreateUpload,
    DeleteCredential,
    InvalidReassignTarget,
    PutCredential,
    PutObject,
    UserOwnsBuckets,
)
from bleepstore.metadata.sqlite import SqliteStore
from bleepstore.model import Acl, Bucket, Credential, Grant, Grantee, ObjectMeta, Owner, Upload
from bleepstore.s3.acl import acl_to_json, default_acl, owner_id_for

NOW = "2026-01-01T00:00:00.000Z"
DAVE, ERIN, FRED = (Owner(owner_id_for(k), k.lower()) for k in ("DAVE", "ERIN", "FRED"))


def user(key: str, active: bool = True) -> PutCredential:
    return PutCredential(Credential(key, key + "-secret", owner_id_for(key), key.lower(),
                                    active, NOW))


def bucket(name: str, owner: Owner, acl: Acl | None = None) -> CreateBucket:
    text = acl_to_json(acl or default_acl(owner))
    return CreateBucket(Bucket(name, "us-east-1", owner.id, owner.display_name, text, NOW),
                        100, False)


def obj(bucket_name: str, key: str, owner: Owner) -> PutObject:
    meta = ObjectMeta(bucket_name, key, 1, '"e"', NOW, f"ref-{bucket_name}-{key}",
                      acl=acl_to_json(default_acl(owner)))
    return PutObject(meta, NOW, NOW)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "m.db")
    s.migrate()
    for key in ("DAVE", "ERIN", "FRED"):
        s.apply(user(key))
    return s


def owner_of(store: SqliteStore, name: str) -> str:
    b = store.get_bucket(name)
    assert b is not None
    return b.owner_id


def test_every_credential_change_moves_the_generation(store: SqliteStore) -> None:
    seen = [store.credential_generation()]
    store.apply(user("GINA"))                      # add
    seen.append(store.credential_generation())
    store.apply(user("GINA", active=False))        # disable
    seen.append(store.credential_generation())
    store.apply(DeleteCredential("GINA"))          # remove
    seen.append(store.credential_generation())
    assert seen == sorted(set(seen)), seen
    store.apply(bucket("not-a-credential-change", DAVE))
    assert not store.apply(DeleteCredential("NOBODY"))
    assert store.credential_generation() == seen[-1]


def test_a_user_who_owns_buckets_is_not_removed(store: SqliteStore) -> None:
    store.apply(bucket("dave-b", DAVE))
    store.apply(bucket("dave-a", DAVE))
    store.apply(bucket("erin-a", ERIN))
    generation = store.credential_generation()
    with pytest.raises(UserOwnsBuckets) as exc:
        store.apply(DeleteCredential("DAVE"))
    assert exc.value.buckets == ("dave-a", "dave-b")
    assert store.get_credential("DAVE") is not None
    assert store.credential_generation() == generation


def test_reassign_hands_buckets_and_the_users_own_resources_over(store: SqliteStore) -> None:
    shared = Acl(DAVE, (Grant(Grantee("CanonicalUser", id=DAVE.id), "FULL_CONTROL"),
                        Grant(Grantee("CanonicalUser", id=ERIN.id), "FULL_CONTROL"),
                        Grant(Grantee("CanonicalUser", id=FRED.id), "READ")))
    store.apply(bucket("dave-b", DAVE, shared))
    store.apply(obj("dave-b", "by-dave", DAVE))
    store.apply(obj("dave-b", "by-fred", FRED))
    store.apply(CreateUpload(Upload("u1", "dave-b", "k", DAVE.id, DAVE.display_name, NOW,
                                    acl=acl_to_json(default_acl(DAVE)))))
    store.apply(bucket("fred-b", FRED))
    store.apply(obj("fred-b", "dave-in-freds", DAVE))

    assert store.apply(DeleteCredential("DAVE", reassign_to="ERIN")) is True

    assert store.get_credential("DAVE") is None
    b = store.get_bucket("dave-b")
    assert b is not None and (b.owner_id, b.owner_display) == (ERIN.id, "erin")
    acl = json.loads(b.acl)
    assert acl["owner"] == {"id": ERIN.id, "display_name": "erin"}
    # DAVE's and ERIN's FULL_CONTROL grants collapse into one for ERIN; FRED's stays
    assert [(g["grantee"]["id"], g["permission"]) for g in acl["grants"]] == [
        (ERIN.id, "FULL_CONTROL"), (FRED.id, "READ")]
    moved = store.get_object("dave-b", "by-dave")
    kept = store.get_object("dave-b", "by-fred")
    elsewhere = store.get_object("fred-b", "dave-in-freds")
    assert moved is not None and json.loads(moved.acl)["owner"]["id"] == ERIN.id
    assert kept is not None and json.loads(kept.acl)["owner"]["id"] == FRED.id
    assert elsewhere is not None and json.loads(elsewhere.acl)["owner"]["id"] == DAVE.id
    upload = store.get_upload("u1")
    assert upload is not None and upload.owner_id == ERIN.id
    assert json.loads(upload.acl)["owner"]["id"] == ERIN.id
    assert owner_of(store, "fred-b") == FRED.id


def test_reassignment_is_one_transaction_with_the_removal(store: SqliteStore) -> None:
    """A failure half-way (the second bucket's ACL is unreadable) leaves everything as it
    was: the first bucket is still DAVE's and DAVE still exists."""
    store.apply(bucket("dave-1", DAVE))
    store.apply(bucket("dave-2", DAVE))
    with sqlite3.connect(store.path) as raw:
        raw.execute("UPDATE buckets SET acl = 'not json' WHERE name = 'dave-2'")
    generation = store.credential_generation()
    with pytest.raises(errors.InternalError):
        store.apply(DeleteCredential("DAVE", reassign_to="ERIN"))
    assert owner_of(store, "dave-1") == DAVE.id
    assert owner_of(store, "dave-2") == DAVE.id
    assert store.get_credential("DAVE") is not None
    assert store.credential_generation() == generation


@pytest.mark.parametrize("target", ["NOBODY", "DISABLED", "DAVE"])
def test_reassign_target_must_be_another_active_user(store: SqliteStore, target: str) -> None:
    store.apply(user("DISABLED", active=False))
    store.apply(bucket("dave-b", DAVE))
    with pytest.raises(InvalidReassignTarget):
        store.apply(DeleteCredential("DAVE", reassign_to=target))
    assert owner_of(store, "dave-b") == DAVE.id
    assert store.get_credential("DAVE") is not None


def test_reassign_with_nothing_to_hand_over_just_removes(store: SqliteStore) -> None:
    assert store.apply(DeleteCredential("FRED", reassign_to="ERIN")) is True
    assert store.get_credential("FRED") is None
