"""``events_for``: which events a committed change produces, and their data (events.md §2).
A pure function of the command and what ``apply()`` returned; the broker tests
(tests/events) check the same events end to end."""

from __future__ import annotations

from typing import Any

from bleepstore.events.catalog import events_for
from bleepstore.metadata import commands as c
from bleepstore.model import Bucket, EventOrigin, ObjectMeta, Part, Upload

NOW = "2026-01-01T00:00:00.000Z"
META = ObjectMeta("b", "k", 5, '"e"', NOW, "r")


def origin(op: str) -> EventOrigin:
    return EventOrigin("req-1", op)


def shape(cmd: Any, result: Any) -> list[tuple[str, str, dict[str, Any], str]]:
    return [(e.type, e.bucket, e.data, e.request_id) for e in events_for(cmd, result)]


def test_a_put_is_object_created_named_by_its_operation_with_its_version() -> None:
    [(kind, bucket, data, rid)] = shape(c.PutObject(META, NOW, NOW, origin=origin("CopyObject")),
                                        (None, "v1"))
    assert (kind, bucket, rid) == ("object.created", "b", "req-1")
    assert data == {"bucket": "b", "key": "k", "size": 5, "etag": '"e"',
                    "content_type": "application/octet-stream", "operation": "CopyObject",
                    "last_modified": NOW, "version_id": "v1"}
    [(_, _, unversioned, rid)] = shape(c.PutObject(META, NOW, NOW), None)
    assert unversioned["operation"] == "PutObject" and "version_id" not in unversioned
    assert rid == ""


def test_complete_is_object_created_then_multipart_completed() -> None:
    events = shape(c.CompleteUpload("u1", META, NOW, NOW, origin=origin("X")), (None, None))
    assert [e[0] for e in events] == ["object.created", "multipart.completed"]
    assert events[0][2]["operation"] == "CompleteMultipartUpload"
    assert events[1][2] == {"bucket": "b", "key": "k", "upload_id": "u1", "etag": '"e"',
                            "size": 5}


def test_deletes_say_what_they_removed_and_nothing_when_nothing_was() -> None:
    one = c.DeleteObjects("b", ("k",), NOW, origin=origin("DeleteObject"))
    assert shape(one, (("k", "r", None, 0, None),)) == [
        ("object.deleted", "b", {"bucket": "b", "key": "k"}, "req-1")]
    assert shape(one, ()) == []
    many = c.DeleteObjects("b", ("k", "j"), NOW, origin=origin("DeleteObjects"))
    assert shape(many, (("k", "r", None, 0, None), ("j", "r", None, 0, None)))[0][2] == {
        "bucket": "b", "keys": ["k", "j"]}
    versioned = shape(many, (("k", "r", "v1", 1, None), ("j", "r", None, 0, "m1")))[0][2]
    assert versioned["versions"] == [
        {"key": "k", "version_id": "v1", "delete_marker": True},
        {"key": "j", "version_id": "m1", "delete_marker_created": True}]


def test_bucket_and_upload_events() -> None:
    bucket = Bucket("b", "eu-west-1", "owner", "Owner", "{}", NOW)
    assert shape(c.CreateBucket(bucket, 100, True), True)[0][:3] == (
        "bucket.created", "b", {"bucket": "b", "region": "eu-west-1", "owner": "owner"})
    assert shape(c.CreateBucket(bucket, 100, True), False) == []  # re-created: a no-op
    assert shape(c.DeleteBucket("b"), None)[0][0] == "bucket.deleted"
    assert shape(c.PutBucketAcl("b", '{"g": 1}'), None)[0][2] == {"bucket": "b",
                                                                   "acl": {"g": 1}}
    assert shape(c.PutObjectAcl("b", "k", "{}"), None)[0][:2] == ("object.acl.updated", "b")
    upload = Upload("u1", "b", "k", "owner", "Owner", NOW)
    assert shape(c.CreateUpload(upload), None)[0][2] == {"bucket": "b", "key": "k",
                                                          "upload_id": "u1"}
    part = c.PutPart("b", "k", Part("u1", 3, 10, '"p"', NOW, "r"), NOW)
    assert shape(part, None)[0][2] == {"bucket": "b", "key": "k", "upload_id": "u1",
                                       "part_number": 3, "etag": '"p"', "size": 10}
    assert shape(c.AbortUpload("b", "k", "u1", NOW), None)[0][2]["reason"] == "client"


def test_reaped_uploads_are_aborted_as_expired_and_reads_produce_nothing() -> None:
    reap = c.ReapExpiredUploads(NOW, NOW)
    assert [(e[1], e[2]["upload_id"], e[2]["reason"]) for e in shape(
        reap, (("u1", "b", "k"), ("u2", "b2", "k2")))] == [("b", "u1", "expired"),
                                                           ("b2", "u2", "expired")]
    assert shape(c.PutBucketVersioning("b", "Enabled"), None) == []
