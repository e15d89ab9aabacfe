"""CredentialCache: served from memory while the credential generation holds still, dropped
the moment it moves (no timer), and never re-filled with a row read before a change."""

from __future__ import annotations

from pathlib import Path

from bleepstore.credentials import CredentialCache
from bleepstore.metadata.commands import DeleteCredential, PutCredential
from bleepstore.metadata.sqlite import SqliteStore
from bleepstore.model import Credential

HOUR = 3600.0


def cred(key: str, active: bool = True) -> Credential:
    return Credential(key, key + "-secret", "o" * 64, key, active, "2026-01-01T00:00:00.000Z")


class FakeStore:
    def __init__(self) -> None:
        self.rows = {"AK": cred("AK")}
        self.generation = 0
        self.loads: list[str] = []

    def load(self, key: str) -> Credential | None:
        self.loads.append(key)
        return self.rows.get(key)


def test_hits_are_served_from_memory_while_the_generation_holds() -> None:
    fake = FakeStore()
    cache = CredentialCache(fake.load, lambda: fake.generation, HOUR)
    assert [cache("AK") for _ in range(5)] == [cred("AK")] * 5
    assert fake.loads == ["AK"]


def test_a_moved_generation_drops_every_entry_at_the_next_lookup() -> None:
    fake = FakeStore()
    cache = CredentialCache(fake.load, lambda: fake.generation, HOUR)
    assert cache("AK") is not None and cache("NOPE") is None
    del fake.rows["AK"]
    fake.rows["NOPE"] = cred("NOPE")
    fake.generation += 1
    assert cache("AK") is None
    assert cache("NOPE") == cred("NOPE")  # a negative entry is dropped too


def test_inactive_keys_look_unknown() -> None:
    fake = FakeStore()
    fake.rows["AK"] = cred("AK", active=False)
    assert CredentialCache(fake.load, lambda: fake.generation, HOUR)("AK") is None


def test_a_row_read_across_a_change_is_not_cached() -> None:
    """Thread 1 reads generation 0 and loads AK (still active); before it stores the row,
    AK is removed and thread 2 sees generation 1. Thread 1's stale row must not stay."""
    fake = FakeStore()

    def racing_load(key: str) -> Credential | None:
        row = fake.load(key)
        if key == "AK" and fake.generation == 0:
            del fake.rows["AK"]
            fake.generation = 1
            assert cache("OTHER") is None  # "thread 2": sees generation 1, clears
        return row

    cache = CredentialCache(racing_load, lambda: fake.generation, HOUR)
    assert cache("AK") is not None  # thread 1's own request raced the removal
    assert cache("AK") is None
    assert fake.loads == ["AK", "OTHER", "AK"]


def test_revocation_through_any_connection_reaches_the_cache(tmp_path: Path) -> None:
    """Two stores on one file stand for two workers; the cache's own store (whose
    connection may commit the change itself, as group-commit leader) must see it too."""
    worker = SqliteStore(tmp_path / "m.db")
    worker.migrate()
    other = SqliteStore(tmp_path / "m.db")
    worker.apply(PutCredential(cred("AK1")))
    worker.apply(PutCredential(cred("AK2")))
    cache = CredentialCache(worker.get_credential, worker.credential_generation, HOUR)
    assert cache("AK1") is not None and cache("AK2") is not None
    other.apply(DeleteCredential("AK1"))
    assert cache("AK1") is None
    worker.apply(PutCredential(cred("AK2", active=False)))  # same thread, same connection
    assert cache("AK2") is None
