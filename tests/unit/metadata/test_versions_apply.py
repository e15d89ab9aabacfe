"""Versioned writes in ``apply()`` on a real SQLite file: the current/history split, the
null version, promotion after a delete, stats, GC intents, and version ids that every
replica computes identically (cluster mode applies the same commands on each node)."""

from __future__ import annotations

from pathlib import Path

from bleepstore.events.catalog import events_for
from bleepstore.events.formats import s3_records
from bleepstore.metadata.commands import (
    CreateBucket,
    DeleteObjects,
    PutBucketVersioning,
    PutObject,
)
from bleepstore.metadata.sqlite import SqliteStore
from bleepstore.model import Bucket, ObjectMeta

NOW = "2026-01-01T00:00:00.000Z"
LATER = "2026-01-01T01:00:00.000Z"


def store(tmp_path: Path, name: str = "m.db", versioning: str | None = "Enabled") -> SqliteStore:
    s = SqliteStore(tmp_path / name)
    s.migrate()
    s.apply(CreateBucket(Bucket("b", "us-east-1", "o" * 64, "o", "{}", NOW), 100, True))
    if versioning is not None:
        s.apply(PutBucketVersioning("b", versioning))
    return s


def put(key: str, ref: str, size: int = 1) -> PutObject:
    return PutObject(ObjectMeta("b", key, size, f'"{ref}"', NOW, ref), NOW, LATER)


def delete(key: str, version_id: str | None = None) -> DeleteObjects:
    return DeleteObjects("b", (key,), LATER, version_ids=(version_id,) if version_id else (),
                         now=NOW)


def history(s: SqliteStore, key: str = "k") -> list[tuple[str, bool, bool, str]]:
    """(version id, delete marker, is latest, data ref), newest first."""
    return [(e.version_id, e.delete_marker, e.is_latest, e.meta.data_ref)
            for e in s.scan_versions("b", None, key, 100) if e.key == key]


def gc_refs(s: SqliteStore) -> set[str]:
    return {r[0] for r in s.conn().execute("SELECT data_ref FROM blob_gc")}


def test_enabled_writes_keep_every_version_and_ids_sort_by_recency(tmp_path: Path) -> None:
    s = store(tmp_path)
    ids = [s.apply(put("k", f"r{i}"))[1] for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5  # same `now`: the clock still ticks
    assert [h[0] for h in history(s)] == ids[::-1]
    assert [h[2] for h in history(s)] == [True, False, False, False, False]
    assert s.get_object("b", "k").data_ref == "r4"  # type: ignore[union-attr]
    assert gc_refs(s) == set()  # nothing replaced: every version keeps its blob
    assert s.stats()["object_count"] == 1 and s.stats()["total_bytes"] == 1


def test_a_delete_marker_hides_the_key_and_deleting_it_restores(tmp_path: Path) -> None:
    s = store(tmp_path)
    first = s.apply(put("k", "r1"))[1]
    ((key, ref, version, was_marker, marker),) = s.apply(delete("k"))
    assert (key, ref, version, was_marker) == ("k", None, None, 0) and marker
    assert s.get_object("b", "k") is None
    assert s.latest_delete_marker("b", "k").version_id == marker  # type: ignore[union-attr]
    assert s.stats()["object_count"] == 0
    assert s.apply(delete("k", marker)) == (("k", None, marker, 1, None),)
    assert s.get_object("b", "k").version_id == first  # type: ignore[union-attr]
    assert s.stats()["object_count"] == 1 and gc_refs(s) == set()


def test_deleting_the_current_version_promotes_the_previous_one(tmp_path: Path) -> None:
    s = store(tmp_path)
    v1 = s.apply(put("k", "r1", 3))[1]
    v2 = s.apply(put("k", "r2", 5))[1]
    assert s.apply(delete("k", v2)) == (("k", "r2", v2, 0, None),)
    assert gc_refs(s) == {"r2"}
    current = s.get_object("b", "k")
    assert current is not None and (current.version_id, current.data_ref) == (v1, "r1")
    assert s.stats()["total_bytes"] == 3
    assert s.apply(delete("k", v2)) == ()  # gone already: nothing changes


def test_suspended_writes_replace_the_null_version_wherever_it_is(tmp_path: Path) -> None:
    s = store(tmp_path, versioning=None)
    s.apply(put("k", "r0"))  # written before versioning: the null version
    s.apply(PutBucketVersioning("b", "Enabled"))
    v1 = s.apply(put("k", "r1"))[1]
    s.apply(PutBucketVersioning("b", "Suspended"))
    assert s.apply(put("k", "r2")) == ("r0", None)  # [S3] no id reported; r0 replaced
    assert history(s) == [("null", False, True, "r2"), (v1, False, False, "r1")]
    assert s.apply(put("k", "r3")) == ("r2", None)
    ((_, ref, _, _, marker),) = s.apply(delete("k"))
    assert (ref, marker) == ("r3", "null")  # the null marker replaces the null version
    assert history(s) == [("null", True, True, ""), (v1, False, False, "r1")]
    assert gc_refs(s) == {"r0", "r2", "r3"}


def test_every_replica_computes_the_same_version_ids(tmp_path: Path) -> None:
    replicas = [store(tmp_path, f"n{i}.db") for i in range(2)]
    commands = [put("k", "r1"), put("j", "r2"), delete("k"), put("k", "r3")]
    outcomes = [[s.apply(cmd) for cmd in commands] for s in replicas]
    assert outcomes[0] == outcomes[1]
    assert history(replicas[0]) == history(replicas[1])


def test_events_carry_version_ids(tmp_path: Path) -> None:
    s = store(tmp_path)
    cmd = put("k", "r1")
    result = s.apply(cmd)
    (created,) = events_for(cmd, result)
    assert created.data["version_id"] == result[1]
    removal = s.apply(delete("k"))
    (deleted,) = events_for(delete("k"), removal)
    assert deleted.data["keys"] == ["k"]
    assert deleted.data["versions"] == [{"key": "k", "delete_marker_created": True,
                                         "version_id": removal[0][4]}]
    (record,) = s3_records({"type": deleted.type, "data": deleted.data, "timestamp": NOW,
                            "request_id": "r", "id": "e"}, 7, "us-east-1")
    assert record["eventName"] == "ObjectRemoved:DeleteMarkerCreated"
    assert record["s3"]["object"]["versionId"] == removal[0][4]


def test_a_delete_conditioned_on_the_current_blob_spares_a_newer_write(tmp_path: Path) -> None:
    """Lifecycle decides from rows read earlier: a write after that read must survive."""
    s = store(tmp_path, versioning=None)
    s.apply(put("k", "r1"))
    s.apply(put("k", "r2"))  # the overwrite lands between the read and the delete
    stale = DeleteObjects("b", ("k",), LATER, now=NOW, if_current=("r1",))
    assert s.apply(stale) == ()
    assert s.get_object("b", "k").data_ref == "r2"  # type: ignore[union-attr]
    assert s.apply(DeleteObjects("b", ("k", "gone"), LATER, now=NOW,
                                 if_current=("r2", ""))) == (("k", "r2", None, 0, None),)


def test_same_size_overwrite_runs_no_stats_update(tmp_path: Path) -> None:
    """Counters change only by non-zero deltas: a same-size overwrite skips the UPDATE."""
    s = store(tmp_path, versioning=None)
    s.apply(put("k", "r1", size=5))
    statements: list[str] = []
    s.conn().set_trace_callback(statements.append)
    s.apply(put("k", "r2", size=5))
    assert statements and not [q for q in statements if q.startswith("UPDATE stats")]
    s.apply(put("k", "r3", size=7))
    assert len([q for q in statements if q.startswith("UPDATE stats")]) == 1
    s.conn().set_trace_callback(None)
    assert s.stats()["object_count"] == 1 and s.stats()["total_bytes"] == 7
