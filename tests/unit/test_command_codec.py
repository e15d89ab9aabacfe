"""metadata/codec.py: every command, result and error crosses JSON and comes back equal;
anything malformed is a CodecError and never anything else (the input is from the network)."""

from __future__ import annotations

import copy
import json
import sqlite3
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bleepstore import errors
from bleepstore.metadata import commands as c
from bleepstore.metadata.codec import (
    ApplyFailed,
    CodecError,
    decode_command,
    decode_outcome,
    encode_command,
    encode_outcome,
)
from bleepstore.model import (
    Bucket,
    ConsoleSession,
    ContentHeaders,
    Credential,
    EventOrigin,
    ObjectMeta,
    Part,
    Upload,
)

NOW = "2026-02-22T12:00:00.123Z"
LATER = "2026-02-22T13:00:00.000Z"
KEY = "ключ/😀"
ETAG = '"9b2cf535f27731c974343645a3985328"'
ACL = json.dumps({"owner": {"id": "a1b2", "display_name": "dave"},
                  "grants": [{"grantee": {"type": "Group",
                                          "uri": "http://acs.amazonaws.com/groups/global/AllUsers"},
                              "permission": "READ"}]})
ORIGIN = EventOrigin("req-7f3a", "PutObject")
TASK_ORIGIN = EventOrigin("req-8b21", "CompleteMultipartUpload", task_id="task-0042")
UPLOAD_ID = "2~Zm9vYmFyYmF6"

META = ObjectMeta(
    "photos", KEY, 1234, ETAG, NOW, "ab/cd/0123456789abcdef",
    ContentHeaders("image/jpeg", "gzip", "ru-RU", 'attachment; filename="ключ.jpg"',
                   "max-age=60", "Sun, 22 Feb 2026 12:00:00 GMT"),
    "STANDARD_IA", ACL, (("camera", "Fujifilm X-T5"), ("заметка", "😀 ok")),
    None, "CRC32C", "yZRlqg==")
MULTIPART_META = ObjectMeta("photos", "big.bin", 15 * 2**20, '"d41d8cd98f00b204e9800998ecf8427e-3"',
                            NOW, "ef/01/fedcba9876543210", parts_count=3)
UPLOAD = Upload(UPLOAD_ID, "photos", KEY, "a1b2", "dave", NOW,
                ContentHeaders(content_type="video/mp4"), "STANDARD", ACL,
                (("x", "1"),), "SHA256", "upload:" + UPLOAD_ID, "mpu/abc", "FULL_OBJECT")
PART = Part(UPLOAD_ID, 2, 5 * 2**20, ETAG, NOW, "12/34/part-2",
            "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=", None)
CREDENTIAL = Credential("AKIAEXAMPLE", "wJalrXUtnFEMI/K7MDENG", "a1b2", "Dave Ø", True, NOW,
                        "ops laptop 🔑")

COMMANDS: list[Any] = [
    c.PutCredential(CREDENTIAL),
    c.PutCredential(Credential("AKIDISABLED", "s3cr3t", "c3d4", "erin", active=False)),
    c.DeleteCredential("AKIAEXAMPLE"),
    c.DeleteCredential("AKIAEXAMPLE", reassign_to="AKIDOTHER"),
    c.CreateBucket(Bucket("photos", "eu-west-1", "a1b2", "dave", ACL, NOW), 100, True, ORIGIN),
    c.CreateBucket(Bucket("logs", "us-east-1", "a1b2", "dave", "{}", NOW), 0, False),
    c.DeleteBucket("photos", EventOrigin("req-1", "DeleteBucket")),
    c.DeleteBucket("logs"),
    c.PutBucketAcl("photos", ACL, EventOrigin("req-2", "PutBucketAcl")),
    c.PutBucketVersioning("photos", "Enabled", EventOrigin("req-v", "PutBucketVersioning")),
    c.PutBucketVersioning("photos", "Suspended"),
    c.PutBucketConfig("photos", "cors", "<CORSConfiguration/>", ORIGIN),
    c.DeleteBucketConfig("photos", "policy"),
    c.PutObjectTags("photos", KEY, (("project", "blue"), ("é", "")), "null", ORIGIN),
    c.PutObjectTags("photos", KEY, ()),
    c.PutObject(META, NOW, LATER, if_match=ETAG, origin=ORIGIN),
    c.PutObject(META, NOW, LATER, if_none_match="*"),
    c.DeleteObjects("photos", (KEY, "a", "a/b", ""), LATER, EventOrigin("r", "DeleteObjects")),
    c.DeleteObjects("photos", (), LATER),
    c.DeleteObjects("photos", (KEY, "a"), LATER, None, ("0001863f1a2b3c4d5e6f7a8b", None), NOW),
    c.PutObjectAcl("photos", KEY, ACL),
    c.PutObjectAcl("photos", KEY, ACL, version_id="null"),
    c.CreateUpload(UPLOAD, EventOrigin("req-3", "CreateMultipartUpload")),
    c.CreateUpload(Upload(UPLOAD_ID, "photos", "k", "a1b2", "dave", NOW)),
    c.PutPart("photos", KEY, PART, LATER, EventOrigin("req-4", "UploadPart")),
    c.CompleteUpload(UPLOAD_ID, MULTIPART_META, NOW, LATER, (5 * 2**20, 5 * 2**20, 5 * 2**20),
                     "*", TASK_ORIGIN, None),
    c.CompleteUpload(UPLOAD_ID, MULTIPART_META, NOW, LATER, if_match=ETAG),
    c.AbortUpload("photos", KEY, UPLOAD_ID, LATER, origin=EventOrigin("r", "AbortMultipartUpload")),
    c.AbortUpload("photos", KEY, UPLOAD_ID, LATER, reason="expired"),
    c.ReapExpiredUploads(NOW, LATER),
    c.PurgeCompletedUploads(NOW),
    c.AddGcIntent("ab/cd/0123456789abcdef", "replaced", LATER),
    c.GcSwept(("ab/cd/01", "upload:" + UPLOAD_ID), (("ef/01/02", LATER), ("12/34/56", NOW))),
    c.GcSwept((), ()),
    c.PutNodeMeta("missing_blobs", json.dumps({"count": 2, "refs": ["ab/cd/01", "ef/01/02"]})),
    c.CreateConsoleSession(ConsoleSession("9f" * 32, "AKIAEXAMPLE", "csrf-Zm9v_YmFy", NOW,
                                          LATER)),
    c.DeleteConsoleSession("9f" * 32),
    c.DeleteExpiredConsoleSessions(NOW),
]


def test_the_table_covers_every_command() -> None:
    assert {type(cmd) for cmd in COMMANDS} == set(get_args(c.Command))


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda cmd: type(cmd).__name__)
def test_command_round_trips(cmd: Any) -> None:
    data = json.loads(json.dumps(encode_command(cmd), ensure_ascii=False))  # over the wire
    assert decode_command(data) == cmd
    assert decode_command(encode_command(cmd)) == cmd
    assert data["type"] == type(cmd).__name__ and data["v"] == 1


def test_encoding_is_plain_json() -> None:
    data = encode_command(c.PutObject(META, NOW, LATER, origin=ORIGIN))
    fields = data["fields"]
    assert fields["meta"]["user_metadata"] == [["camera", "Fujifilm X-T5"], ["заметка", "😀 ok"]]
    assert fields["meta"]["content"]["content_type"] == "image/jpeg"
    assert fields["origin"] == {"request_id": "req-7f3a", "operation": "PutObject",
                                "task_id": None}
    assert json.loads(json.dumps(data)) == data  # only lists, dicts and scalars inside


@settings(max_examples=200, deadline=None)
@given(cmd=st.one_of(*(st.from_type(cls) for cls in get_args(c.Command))))
def test_any_command_round_trips(cmd: Any) -> None:
    assert decode_command(json.loads(json.dumps(encode_command(cmd)))) == cmd


# --- outcomes -----------------------------------------------------------------------------

RESULTS = [
    (None, None),
    (True, True),
    (False, False),
    (3, 3),
    (0, 0),
    ("ab/cd/ref", "ab/cd/ref"),
    (((KEY, "ab/cd/01"), ("a", "ef/01/02")), ((KEY, "ab/cd/01"), ("a", "ef/01/02"))),
    (["ab/cd/01", "upload:" + UPLOAD_ID], ("ab/cd/01", "upload:" + UPLOAD_ID)),
    ([(UPLOAD_ID, "photos", KEY)], ((UPLOAD_ID, "photos", KEY),)),
    ((), ()),
]


@pytest.mark.parametrize(("result", "expected"), RESULTS)
def test_result_round_trips(result: Any, expected: Any) -> None:
    back = decode_outcome(json.loads(json.dumps(encode_outcome(result))))
    assert back == expected and type(back) is type(expected)


def _s3_error_classes() -> list[type[errors.S3Error]]:
    found: list[type[errors.S3Error]] = []
    pending: list[type[errors.S3Error]] = [errors.S3Error]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return sorted({cls for cls in found if cls.__module__ == errors.__name__},
                  key=lambda cls: cls.__name__)


S3_ERRORS = _s3_error_classes()


def _raised_again(exc: BaseException) -> BaseException:
    with pytest.raises(BaseException) as info:
        decode_outcome(json.loads(json.dumps(encode_outcome(error=exc))))
    return info.value


def test_every_s3_error_class_is_listed() -> None:
    names = {cls.__name__ for cls in S3_ERRORS}
    assert {"S3Error", "NoSuchBucket", "ChecksumMismatch", "InsufficientStorage",
            "NotImplemented_", "WriteTaskTimeout"} <= names


@pytest.mark.parametrize("cls", S3_ERRORS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("build", [
    lambda cls: cls(),
    lambda cls: cls(BucketName="photos", Key=KEY, PartNumberRequested=7, Skipped=None),
    lambda cls: cls("custom message 😀", Condition="If-Match").with_header("Allow", "GET, PUT"),
], ids=["bare", "extra", "message+header"])
def test_s3_error_round_trips(cls: type[errors.S3Error], build: Any) -> None:
    exc = build(cls)
    back = _raised_again(exc)
    assert type(back) is cls
    assert isinstance(back, errors.S3Error)
    assert (back.code, back.status, back.msg, str(back), back.args) == (
        exc.code, exc.status, exc.msg, str(exc), exc.args)
    assert list(back.extra.items()) == list(exc.extra.items())  # element order is pinned
    assert back.headers == exc.headers


def test_s3_error_subclass_from_elsewhere_travels_as_its_ancestor() -> None:
    class Local(errors.NoSuchKey):
        pass

    back = _raised_again(Local(Key=KEY))
    assert type(back) is errors.NoSuchKey and back.extra == {"Key": KEY}


def test_user_owns_buckets_round_trips() -> None:
    exc = c.UserOwnsBuckets("AKIAEXAMPLE", ("photos", "logs", "ведро"))
    back = _raised_again(exc)
    assert type(back) is c.UserOwnsBuckets
    assert (back.access_key_id, back.buckets, str(back), back.args) == (
        exc.access_key_id, exc.buckets, str(exc), exc.args)


def test_invalid_reassign_target_round_trips() -> None:
    exc = c.InvalidReassignTarget("AKIDOTHER is not an active user")
    back = _raised_again(exc)
    assert type(back) is c.InvalidReassignTarget and back.args == exc.args


@pytest.mark.parametrize("exc", [KeyError("x"), RuntimeError("disk on fire"), ValueError("bad"),
                                 sqlite3.IntegrityError("UNIQUE constraint failed: buckets.name")])
def test_other_exceptions_become_apply_failed(exc: BaseException) -> None:
    data = encode_outcome(error=exc)
    assert data == {"ok": False, "error": {"kind": "internal", "message": str(exc)}}
    back = _raised_again(exc)
    assert type(back) is ApplyFailed and str(back) == str(exc)


def test_error_wins_over_result() -> None:
    assert encode_outcome("ignored", errors.NoSuchKey())["ok"] is False


def test_unencodable_result_is_a_codec_error() -> None:
    with pytest.raises(CodecError):
        encode_outcome(1.5)


# --- malformed input ----------------------------------------------------------------------

GOOD = encode_command(COMMANDS[15])  # PutObject with origin


def _deep(depth: int) -> Any:
    value: Any = None
    for _ in range(depth):
        value = [value]
    return value


def _mutated(change: Any) -> Any:
    data = copy.deepcopy(GOOD)
    return change(data) or data


MALFORMED_COMMANDS = [
    None, [], "PutObject", 1,
    {"type": "PutObject", "v": 1},
    {"type": "PutObject", "v": 1, "fields": GOOD["fields"], "extra": 1},
    _mutated(lambda d: d.update(type="Popen")),
    _mutated(lambda d: d.update(type="ObjectMeta")),  # a dataclass, but not a command
    _mutated(lambda d: d.update(type="UserOwnsBuckets")),
    _mutated(lambda d: d.update(type=["PutObject"])),
    _mutated(lambda d: d.update(v=2)),
    _mutated(lambda d: d.update(v="1")),
    _mutated(lambda d: d.update(v=True)),
    _mutated(lambda d: d.update(fields=[])),
    _mutated(lambda d: d["fields"].pop("now")),
    _mutated(lambda d: d["fields"].update(surprise=1)),
    _mutated(lambda d: d["fields"]["meta"].pop("etag")),
    _mutated(lambda d: d["fields"]["meta"].update(version_id=5)),
    _mutated(lambda d: d["fields"]["meta"].update(bogus="x")),
    _mutated(lambda d: d["fields"]["meta"]["content"].update(extra=None)),
    _mutated(lambda d: d["fields"]["meta"].update(size="1234")),
    _mutated(lambda d: d["fields"]["meta"].update(size=True)),
    _mutated(lambda d: d["fields"]["meta"].update(size=12.0)),
    _mutated(lambda d: d["fields"]["meta"].update(size=None)),
    _mutated(lambda d: d["fields"]["meta"].update(key=5)),
    _mutated(lambda d: d["fields"]["meta"].update(user_metadata="x")),
    _mutated(lambda d: d["fields"]["meta"].update(user_metadata=[["a"]])),
    _mutated(lambda d: d["fields"]["meta"].update(user_metadata=[["a", "b", "c"]])),
    _mutated(lambda d: d["fields"]["meta"].update(user_metadata=[["a", 1]])),
    _mutated(lambda d: d["fields"]["meta"].update(user_metadata={"a": "b"})),
    _mutated(lambda d: d["fields"]["meta"].update(parts_count="3")),
    _mutated(lambda d: d["fields"].update(meta=None)),
    _mutated(lambda d: d["fields"].update(meta=["photos"])),
    _mutated(lambda d: d["fields"].update(origin="req-7f3a")),
    _mutated(lambda d: d["fields"]["origin"].update(task_id=7)),
    {"type": "CreateBucket", "v": 1,
     "fields": {**encode_command(COMMANDS[4])["fields"], "allow_existing_own": 1}},
    {"type": "PutCredential", "v": 1,
     "fields": {"credential": {**encode_command(COMMANDS[0])["fields"]["credential"],
                               "active": "yes"}}},
]


@pytest.mark.parametrize("data", MALFORMED_COMMANDS)
def test_malformed_command_is_a_codec_error(data: Any) -> None:
    with pytest.raises(CodecError):
        decode_command(data)


def test_deeply_nested_input_is_a_codec_error() -> None:
    with pytest.raises(CodecError):
        decode_command(_mutated(lambda d: d.update(type=_deep(50_000))))
    with pytest.raises(CodecError):
        decode_command(_mutated(lambda d: d["fields"]["meta"].update(key=_deep(50_000))))


MALFORMED_OUTCOMES = [
    None, [], "ok", {}, {"ok": True}, {"ok": 1, "result": None},
    {"ok": True, "result": None, "error": None},
    {"ok": True, "result": {"a": 1}}, {"ok": True, "result": 1.5},
    {"ok": True, "result": [1, [{"a": 1}]]}, {"ok": True, "result": _deep(50_000)},
    {"ok": False, "error": {"kind": _deep(50_000)}},
    {"ok": False}, {"ok": False, "error": None}, {"ok": False, "error": "NoSuchKey"},
    {"ok": False, "error": {}},
    {"ok": False, "error": {"kind": "python", "message": "x"}},
    {"ok": False, "error": {"kind": "internal"}},
    {"ok": False, "error": {"kind": "internal", "message": 3}},
    {"ok": False, "error": {"kind": "invalid_reassign_target", "message": None}},
    {"ok": False, "error": {"kind": "user_owns_buckets", "access_key_id": "A"}},
    {"ok": False, "error": {"kind": "user_owns_buckets", "access_key_id": "A",
                            "buckets": "photos"}},
    {"ok": False, "error": {"kind": "user_owns_buckets", "access_key_id": "A",
                            "buckets": [1]}},
]
_S3 = {"kind": "s3", "class": "NoSuchKey", "message": "m", "extra": {}, "headers": {}}
MALFORMED_OUTCOMES += [{"ok": False, "error": {**_S3, **change}} for change in [
    {"class": "ValueError"}, {"class": "Exception"}, {"class": "NoSuchKeyy"}, {"class": None},
    {"message": None}, {"extra": []}, {"extra": {"Key": 1}}, {"headers": {"Allow": None}},
    {"headers": None}, {"code": "NoSuchKey"},
]]


@pytest.mark.parametrize("data", MALFORMED_OUTCOMES)
def test_malformed_outcome_is_a_codec_error(data: Any) -> None:
    with pytest.raises(CodecError):
        decode_outcome(data)


@pytest.mark.parametrize("text", ["not base64!", "\x80", "ключ"])
def test_bytes_field_that_is_not_base64_is_a_codec_error(text: str) -> None:
    """Non-ASCII text made base64 raise a bare ValueError (found by the property below)."""
    data = encode_command(c.PutObject(META, NOW, LATER, inline_data=b"abc"))
    assert decode_command(data).inline_data == b"abc"
    data["fields"]["inline_data"] = text
    with pytest.raises(CodecError):
        decode_command(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), value=json_values)
def test_any_json_decodes_or_is_a_codec_error(data: st.DataObject, value: Any) -> None:
    """Random values, alone or in place of one field of a valid command: never a crash."""
    cmd = data.draw(st.sampled_from(COMMANDS))
    enc = encode_command(cmd)
    name = data.draw(st.sampled_from(sorted(enc["fields"])))
    for candidate in (value, {**enc, "fields": {**enc["fields"], name: value}}):
        try:
            decode_command(candidate)
        except CodecError:
            pass
        try:
            decode_outcome(candidate)
        except CodecError:
            pass
        except (errors.S3Error, c.UserOwnsBuckets, c.InvalidReassignTarget, ApplyFailed):
            pass


def test_fields_with_defaults_may_be_missing() -> None:
    """Entries journalled before a field existed (an older build) still decode."""
    data = encode_command(c.PutObject(META, NOW, LATER))
    del data["fields"]["meta"]["version_id"]
    del data["fields"]["origin"]
    assert decode_command(data) == c.PutObject(META, NOW, LATER)
