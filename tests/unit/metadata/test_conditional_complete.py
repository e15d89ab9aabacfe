"""CompleteMultipartUpload's If-Match / If-None-Match are decided by the commit itself, on a
real SQLite file: a condition that held when the request was checked but no longer holds
when the commit runs fails the commit, and the upload stays completable."""

from __future__ import annotations

from pathlib import Path

import pytest

from bleepstore import errors
from bleepstore.metadata.commands import CompleteUpload, CreateBucket, CreateUpload, PutObject
from bleepstore.metadata.sqlite import SqliteStore
from bleepstore.model import Bucket, ObjectMeta, Upload

NOW = "2026-01-01T00:00:00.000Z"
UPLOAD = "ab" * 16


def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "m.db")
    s.migrate()
    s.apply(CreateBucket(Bucket("b", "us-east-1", "o" * 64, "o", "{}", NOW), 100, True))
    s.apply(CreateUpload(Upload(UPLOAD, "b", "k", "o" * 64, "o", NOW)))
    return s


def put(s: SqliteStore, n: int) -> str:
    etag = f'"{n:032x}"'
    s.apply(PutObject(ObjectMeta("b", "k", n, etag, NOW, f"blobs/00/00/{n:032x}"), NOW, NOW))
    return etag


def complete(if_match: str | None = None, if_none_match: str | None = None) -> CompleteUpload:
    meta = ObjectMeta("b", "k", 7, '"' + "c" * 32 + '-1"', NOW, "blobs/cc/cc/" + "c" * 32,
                      parts_count=1)
    return CompleteUpload(UPLOAD, meta, NOW, NOW, (7,), if_none_match, if_match=if_match)


def test_if_match_is_checked_again_at_commit(tmp_path: Path) -> None:
    s = store(tmp_path)
    seen = put(s, 1)  # the client read this ETag ...
    put(s, 2)         # ... and someone overwrote the key before the Complete committed
    with pytest.raises(errors.PreconditionFailed) as exc:
        s.apply(complete(if_match=seen))
    assert exc.value.extra == {"Condition": "If-Match"}
    assert s.upload_exists(UPLOAD)
    current = s.get_object("b", "k")
    assert current is not None and current.size == 2
    s.apply(complete(if_match=put(s, 3)))
    done = s.get_object("b", "k")
    assert done is not None and done.parts_count == 1 and not s.upload_exists(UPLOAD)


def test_if_match_on_a_key_that_is_gone_is_no_such_key(tmp_path: Path) -> None:
    s = store(tmp_path)
    with pytest.raises(errors.NoSuchKey) as exc:
        s.apply(complete(if_match='"' + "0" * 32 + '"'))
    assert exc.value.extra == {"Key": "k"}
    assert s.upload_exists(UPLOAD) and s.get_object("b", "k") is None


def test_if_none_match_star_is_checked_again_at_commit(tmp_path: Path) -> None:
    s = store(tmp_path)
    put(s, 1)
    with pytest.raises(errors.PreconditionFailed) as exc:
        s.apply(complete(if_none_match="*"))
    assert exc.value.extra == {"Condition": "If-None-Match"}
    assert s.upload_exists(UPLOAD)
