"""Small objects kept inline in SQLite (storage/inline.py, core/inline_storage.py) through
the real app: where the bytes land, every read path, copies, versions, and that an inline
blob goes with the last row that points at it -- never earlier, never later."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from support.wsgiapp import S3App

from bleepstore.metadata.apply import put_object
from bleepstore.metadata.codec import decode_command, encode_command
from bleepstore.metadata.commands import PutObject
from bleepstore.model import ObjectMeta

LIMIT = 65536  # storage.inline_max_bytes, the default


def db(app: S3App) -> sqlite3.Connection:
    return sqlite3.connect(app.root / "metadata.db")


def ref_of(app: S3App, bucket: str, key: str) -> str:
    with db(app) as conn:
        return str(conn.execute("SELECT data_ref FROM objects WHERE bucket = ? AND key = ?",
                                (bucket, key)).fetchone()[0])


def inline_refs(app: S3App) -> set[str]:
    with db(app) as conn:
        return {r[0] for r in conn.execute("SELECT data_ref FROM inline_blobs")}


def blob_files(app: S3App) -> list[Path]:
    blobs = app.root / "objects" / "blobs"
    return [p for p in blobs.rglob("*") if p.is_file()] if blobs.exists() else []


@pytest.fixture
def app(s3app: S3App) -> S3App:
    assert s3app.call("PUT", "/bkt").status_int == 200
    return s3app


@pytest.mark.parametrize("size", [0, 1, 4096, LIMIT])
def test_a_small_object_lives_in_the_database_and_reads_back(app: S3App, size: int) -> None:
    body = bytes(i % 251 for i in range(size))
    put = app.call("PUT", "/bkt/k", body=body)
    assert put.status_int == 200
    assert put.headers["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    ref = ref_of(app, "bkt", "k")
    assert ref.startswith("inline:") and inline_refs(app) == {ref}
    assert blob_files(app) == []  # no file, no staging leftovers
    got = app.call("GET", "/bkt/k")
    assert (got.status_int, got.body) == (200, body)
    assert got.headers["Content-Length"] == str(size)
    head = app.call("HEAD", "/bkt/k")
    assert head.headers["Content-Length"] == str(size)


def test_one_byte_over_the_limit_is_a_file(app: S3App) -> None:
    body = b"z" * (LIMIT + 1)
    assert app.call("PUT", "/bkt/big", body=body).status_int == 200
    assert not ref_of(app, "bkt", "big").startswith("inline:")
    assert inline_refs(app) == set() and len(blob_files(app)) == 1
    assert app.call("GET", "/bkt/big").body == body


def test_ranges_and_part_number_reads_of_an_inline_object(app: S3App) -> None:
    body = bytes(range(256)) * 4
    app.call("PUT", "/bkt/k", body=body)
    for rng, want in (("bytes=0-0", body[:1]), ("bytes=10-19", body[10:20]),
                      ("bytes=-5", body[-5:]), ("bytes=1000-", body[1000:])):
        got = app.call("GET", "/bkt/k", headers={"Range": rng})
        assert (got.status_int, got.body) == (206, want), rng
    assert app.call("GET", "/bkt/k", headers={"Range": "bytes=5000-"}).status_int == 416
    part = app.call("GET", "/bkt/k?partNumber=1")
    assert (part.status_int, part.body) == (206, body)


def test_overwrite_and_delete_drop_the_bytes_in_the_same_commit(app: S3App) -> None:
    app.call("PUT", "/bkt/k", body=b"one")
    first = ref_of(app, "bkt", "k")
    app.call("PUT", "/bkt/k", body=b"two")
    second = ref_of(app, "bkt", "k")
    assert inline_refs(app) == {second} != {first}
    with db(app) as conn:  # no GC intent either: nothing is left for a sweep
        assert conn.execute("SELECT COUNT(*) FROM blob_gc").fetchone()[0] == 0
    assert app.call("GET", "/bkt/k").body == b"two"
    assert app.call("DELETE", "/bkt/k").status_int == 204
    assert inline_refs(app) == set()
    assert app.call("GET", "/bkt/k").status_int == 404


def test_an_overwrite_by_a_large_object_and_back(app: S3App) -> None:
    app.call("PUT", "/bkt/k", body=b"small")
    app.call("PUT", "/bkt/k", body=b"L" * (LIMIT + 10))
    assert inline_refs(app) == set() and len(blob_files(app)) == 1
    app.call("PUT", "/bkt/k", body=b"small again")
    assert len(inline_refs(app)) == 1 and blob_files(app) == []  # the file was collected
    assert app.call("GET", "/bkt/k").body == b"small again"


def test_versions_keep_their_bytes_until_each_version_is_deleted(app: S3App) -> None:
    body = b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"
    assert app.call("PUT", "/bkt?versioning", body=body).status_int == 200
    v1 = app.call("PUT", "/bkt/k", body=b"v1").headers["x-amz-version-id"]
    v2 = app.call("PUT", "/bkt/k", body=b"v2").headers["x-amz-version-id"]
    assert len(inline_refs(app)) == 2
    assert app.call("GET", f"/bkt/k?versionId={v1}").body == b"v1"
    assert app.call("DELETE", "/bkt/k").status_int == 204  # a delete marker: bytes stay
    assert len(inline_refs(app)) == 2
    assert app.call("DELETE", f"/bkt/k?versionId={v1}").status_int == 204
    assert len(inline_refs(app)) == 1
    assert app.call("GET", f"/bkt/k?versionId={v2}").body == b"v2"
    app.call("DELETE", f"/bkt/k?versionId={v2}")
    assert inline_refs(app) == set()


def test_copies_of_an_inline_source_never_share_its_ref(app: S3App) -> None:
    app.call("PUT", "/bkt/src", body=b"0123456789")
    src = ref_of(app, "bkt", "src")
    assert app.call("PUT", "/bkt/dst", headers={"x-amz-copy-source": "/bkt/src"}
                    ).status_int == 200
    assert ref_of(app, "bkt", "dst") != src
    app.call("DELETE", "/bkt/src")  # the copy must not lose its bytes with the source
    assert app.call("GET", "/bkt/dst").body == b"0123456789"
    # in place, with new metadata (the classic "touch")
    app.call("PUT", "/bkt/t", body=b"touch me")
    assert app.call("PUT", "/bkt/t", headers={"x-amz-copy-source": "/bkt/t",
                                               "x-amz-metadata-directive": "REPLACE",
                                               "Content-Type": "text/plain"}).status_int == 200
    got = app.call("GET", "/bkt/t")
    assert got.body == b"touch me" and got.headers["Content-Type"] == "text/plain"


def test_upload_part_copy_from_an_inline_source(app: S3App) -> None:
    app.call("PUT", "/bkt/src", body=b"abcdefghij")
    init = app.call("POST", "/bkt/mp?uploads")
    upload_id = init.body.decode().split("<UploadId>")[1].split("<")[0]
    part = app.call("PUT", f"/bkt/mp?partNumber=1&uploadId={upload_id}",
                    headers={"x-amz-copy-source": "/bkt/src",
                             "x-amz-copy-source-range": "bytes=2-5"})
    assert part.status_int == 200
    etag = part.body.decode().split("<ETag>")[1].split("<")[0]
    done = app.call("POST", f"/bkt/mp?uploadId={upload_id}", body=(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
        f"<ETag>{etag}</ETag></Part></CompleteMultipartUpload>").encode())
    assert done.status_int == 200
    assert app.call("GET", "/bkt/mp").body == b"cdef"


def test_the_commit_refuses_an_inline_ref_without_its_bytes(app: S3App) -> None:
    meta = ObjectMeta("bkt", "k", 3, '"e"', "2026-01-01T00:00:00.000Z",
                      "inline:" + "a" * 32)
    now = meta.last_modified
    with db(app) as conn, pytest.raises(ValueError):
        put_object(conn, PutObject(meta, now, now))
    with db(app) as conn, pytest.raises(ValueError):  # bytes that disagree with the size
        put_object(conn, PutObject(meta, now, now, inline_data=b"four"))
    file_meta = ObjectMeta("bkt", "k", 3, '"e"', now, "blobs/aa/bb/" + "c" * 32)
    with db(app) as conn, pytest.raises(ValueError):  # bytes for a file ref
        put_object(conn, PutObject(file_meta, now, now, inline_data=b"abc"))


def test_a_put_object_with_bytes_crosses_the_command_codec() -> None:
    meta = ObjectMeta("bkt", "k", 3, '"e"', "2026-01-01T00:00:00.000Z", "inline:" + "a" * 32)
    cmd = PutObject(meta, meta.last_modified, meta.last_modified, inline_data=b"\x00\xffz")
    assert decode_command(encode_command(cmd)) == cmd
