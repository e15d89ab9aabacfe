"""The Raft applier on real SQLite files (cluster/applier.py): the applied-index guard,
node-local effects only on the proposing node, refusals as results, the untrusted-replica
exit, and snapshots (a SQLite backup) installed only when ahead of the replica."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bleepstore.cluster.applier import EXIT_UNTRUSTED, Applier, applied_index
from bleepstore.metadata import commands as c
from bleepstore.metadata.codec import decode_outcome, encode_command
from bleepstore.metadata.sqlite import SqliteStore
from bleepstore.model import Bucket, ObjectMeta

NOW = "2026-12-02T10:00:00.000Z"
LATER = "2026-12-02T11:00:00.000Z"


def store(tmp_path: Path, name: str) -> SqliteStore:
    s = SqliteStore(tmp_path / name / "metadata.db")
    s.migrate()
    return s


def entry(cmd: Any, origin: str = "n1") -> str:
    return json.dumps({"type": "Command", "v": 1, "origin": origin, "ts": NOW,
                       "cmd": encode_command(cmd)})


def put(key: str, ref: str) -> c.PutObject:
    return c.PutObject(ObjectMeta("bkt", key, 1, '"e"', NOW, ref), NOW, LATER)


def setup(applier: Applier) -> None:
    applier.apply(1, entry(c.CreateBucket(Bucket("bkt", "us-east-1", "o", "o", "{}", NOW),
                                          100, True)))


def gc_refs(s: SqliteStore) -> set[str]:
    return {r[0] for r in s.conn().execute("SELECT data_ref FROM blob_gc")}


def test_an_entry_is_applied_once_whatever_replays_it(tmp_path: Path) -> None:
    s = store(tmp_path, "a")
    applier = Applier(s, "n1")
    setup(applier)
    assert decode_outcome(json.loads(applier.apply(2, entry(put("k", "r1"))))) == (None, None)
    assert json.loads(applier.apply(2, entry(put("k", "r2"))))["replayed"]
    assert json.loads(applier.apply(1, entry(put("k", "r3"))))["replayed"]
    assert s.get_object("bkt", "k").data_ref == "r1"  # type: ignore[union-attr]
    assert applied_index(s.conn()) == 2


def test_gc_intents_only_on_the_proposing_node(tmp_path: Path) -> None:
    mine, other = store(tmp_path, "n1"), store(tmp_path, "n2")
    for s, node in ((mine, "n1"), (other, "n2")):
        applier = Applier(s, node)
        setup(applier)
        applier.apply(2, entry(put("k", "r1")))
        applier.apply(3, entry(put("k", "r2")))  # replaces r1, proposed by n1
    assert gc_refs(mine) == {"r1"} and gc_refs(other) == set()
    assert mine.get_object("bkt", "k") == other.get_object("bkt", "k")


def test_a_refusal_is_a_result_every_node_reaches(tmp_path: Path) -> None:
    s = store(tmp_path, "a")
    applier = Applier(s, "n1")
    answer = json.loads(applier.apply(1, entry(put("k", "r1"))))
    with pytest.raises(Exception) as info:
        decode_outcome(answer)
    assert type(info.value).__name__ == "NoSuchBucket"
    assert applied_index(s.conn()) == 1  # the entry is consumed, nothing else changed
    garbled = json.dumps({"type": "Command", "origin": "n1", "cmd": {"type": "Nope"}})
    assert json.loads(applier.apply(2, garbled))["ok"] is False
    assert applied_index(s.conn()) == 2


def test_an_unexpected_failure_ends_the_member(tmp_path: Path) -> None:
    s = store(tmp_path, "a")
    exits: list[int] = []

    def fake_exit(code: int) -> None:  # os._exit would end the test run
        exits.append(code)

    applier = Applier(s, "n1", on_exit=fake_exit)
    setup(applier)
    s.conn().execute("DROP TABLE objects")  # the replica is broken under the applier
    with pytest.raises(Exception):  # noqa: B017
        applier.apply(2, entry(put("k", "r1")))
    assert exits == [EXIT_UNTRUSTED] and applied_index(s.conn()) == 1


def test_a_snapshot_installs_only_when_ahead(tmp_path: Path) -> None:
    leader = store(tmp_path, "leader")
    applier = Applier(leader, "n1")
    setup(applier)
    for i in range(2, 12):
        applier.apply(i, entry(put(f"k{i}", f"r{i}")))
    leader.conn().execute("INSERT INTO node_meta VALUES ('local-only', 'x')")
    dump = str(tmp_path / "raft.dump")
    internal = ((b"cmd", 11, 3), (b"cmd", 10, 3), {"n1"})
    applier.serialize(dump, internal)

    fresh = store(tmp_path, "fresh")
    assert Applier(fresh, "n4").deserialize(dump) == internal
    assert applied_index(fresh.conn()) == 11 and fresh.get_object("bkt", "k11") is not None
    assert fresh.node_meta("local-only") is None  # node-local tables are not shipped

    ahead = store(tmp_path, "ahead")
    ahead_applier = Applier(ahead, "n2")
    setup(ahead_applier)
    for i in range(2, 14):
        ahead_applier.apply(i, entry(put(f"k{i}", f"r{i}")))
    ahead_applier.deserialize(dump)
    assert applied_index(ahead.conn()) == 13 and ahead.get_object("bkt", "k13") is not None


def test_inline_bytes_travel_in_a_snapshot_and_an_older_snapshot_still_installs(
        tmp_path: Path) -> None:
    leader = store(tmp_path, "leader")
    applier = Applier(leader, "n1")
    setup(applier)
    ref = "inline:" + "ab" * 16
    applier.apply(2, entry(c.PutObject(ObjectMeta("bkt", "small", 3, '"e"', NOW, ref), NOW,
                                       LATER, inline_data=b"abc")))
    dump = str(tmp_path / "raft.dump")
    internal = ((b"cmd", 2, 1), (b"cmd", 1, 1), {"n1"})
    applier.serialize(dump, internal)
    joiner = store(tmp_path, "joiner")
    Applier(joiner, "n2").deserialize(dump)
    assert joiner.inline_blob(ref) == b"abc"

    older = tmp_path / "older.dump"  # written before inline_blobs existed
    older.write_bytes(Path(dump).read_bytes())
    with sqlite3.connect(older) as conn:
        conn.execute("DROP TABLE inline_blobs")
    behind = store(tmp_path, "behind")
    Applier(behind, "n3").deserialize(str(older))
    assert applied_index(behind.conn()) == 2 and behind.inline_blob(ref) is None
