"""The AWS gateway (``NativeGateway`` over ``storage/aws.py``) against real S3 upstreams:
``moto_server`` and another BleepStore (local backend) reached over S3.

What is real: both upstreams are real servers on loopback, reached through boto3.
Multipart is a passthrough: each BleepStore upload is one native upload of its reserved
result, parts are its UploadParts (no object per part), Complete is the upstream's. Tests
look behind the gateway with a plain boto3 client (objects and native uploads).
moto enforces S3's 5 MiB minimum for every part but the last (checked below: EntityTooSmall);
``moto_small`` is a second moto with that minimum lowered to 1 KiB, so a 200-part upload
stays small (200 x 5 MiB through moto, which assembles in memory, takes too long here),
and whose listing pages hold 7 keys, so every listing is paged.
Throttling, 5xx and 403 answers are injected into botocore's send path (``before-send``), so
the SDK's own parsing and retry code still runs. Every test uses a fresh bucket.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ResponseStreamingError
from support.blobs import put_part
from support.clients import boto3_client
from support.moto_upstream import MotoUpstream
from support.server import ACCESS_KEY, SECRET_KEY, Server, free_port

from bleepstore import errors
from bleepstore.config import AwsStorageConfig
from bleepstore.model import Part, StagedBlob
from bleepstore.storage import aws
from bleepstore.storage.aws import AwsCloud
from bleepstore.storage.backend import BlobMissing
from bleepstore.storage.cloud import GatewayError
from bleepstore.storage.gateway import NativeGateway

MiB = 1 << 20
KiB = 1 << 10
PREFIX = "bs/"


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def moto(aws_emulator: MotoUpstream) -> MotoUpstream:
    return aws_emulator  # the session's moto_server (tests/conftest.py); fresh buckets


@pytest.fixture(scope="session")
def moto_small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoUpstream]:
    upstream = MotoUpstream(tmp_path_factory.mktemp("moto-small"), min_part_size=1024,
                            max_keys=7).start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="session")
def bleep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("bleep-upstream"), workers=1, threads=8).start()
    yield srv
    srv.stop()


def _gateway(store: AwsCloud, tmp_path: Path, prefix: str = PREFIX) -> NativeGateway:
    return NativeGateway(store, prefix, str(tmp_path / "spool"))


@pytest.fixture
def gw(moto: MotoUpstream, tmp_path: Path) -> NativeGateway:
    return _gateway(moto.new_store(PREFIX), tmp_path)


@pytest.fixture
def small_gw(moto_small: MotoUpstream, tmp_path: Path) -> NativeGateway:
    """On ``moto_small``: parts of a few KiB complete."""
    return _gateway(moto_small.new_store(PREFIX), tmp_path)


def _bleep_config(srv: Server, bucket: str, access: str = ACCESS_KEY,
                  secret: str = SECRET_KEY) -> AwsStorageConfig:
    return AwsStorageConfig(bucket=bucket, region="us-east-1", endpoint_url=srv.endpoint,
                            use_path_style=True, access_key_id=access, secret_access_key=secret)


@pytest.fixture
def bleep_gw(bleep: Server, tmp_path: Path, request: pytest.FixtureRequest) -> NativeGateway:
    bucket = "up-" + hashlib.md5(request.node.nodeid.encode()).hexdigest()[:16]
    boto3_client(bleep.endpoint).create_bucket(Bucket=bucket)
    return _gateway(AwsCloud(_bleep_config(bleep, bucket)), tmp_path)


# --- helpers ----------------------------------------------------------------------------------

def _cloud(gw: NativeGateway) -> AwsCloud:
    assert isinstance(gw.store, AwsCloud)
    return gw.store


def _write(gw: NativeGateway, data: bytes, kind: str = "object", upload: str | None = None,
           number: int | None = None) -> StagedBlob:
    writer = gw.open_writer(kind, upload, number)
    for i in range(0, len(data), MiB):
        writer.write(data[i:i + MiB])
    return writer.finish()


def _part(gw: NativeGateway, upload: str, number: int, data: bytes) -> Part:
    """The part row core would commit (``backend_ref``: the upstream's part ETag)."""
    part = put_part(gw, data, upload, number)
    assert isinstance(part, Part)
    return part


def _read(gw: NativeGateway, ref: str, offset: int = 0, length: int | None = None) -> bytes:
    reader = gw.open_read(ref, offset, length)
    try:
        chunks = list(reader)
    finally:
        reader.close()
    assert all(len(c) <= MiB for c in chunks)
    return b"".join(chunks)


def _record_ops(cloud: AwsCloud) -> list[str]:
    """The S3 operations the adapter's client calls from now on."""
    ops: list[str] = []
    cloud.client().meta.events.register(
        "before-call.s3", lambda model, **_: ops.append(model.name))
    return ops


@functools.cache
def _plain_client(endpoint: str, access: str, secret: str) -> Any:
    return boto3_client(endpoint, access, secret)


def _plain(cloud: AwsCloud) -> Any:
    """A plain boto3 client on the upstream (no spy, no cache): to look behind the gateway."""
    cfg = cloud.config
    return _plain_client(cfg.endpoint_url, cfg.access_key_id, cfg.secret_access_key)


def _objects(cloud: AwsCloud) -> list[str]:
    """Every object key in the bucket."""
    pages = _plain(cloud).get_paginator("list_objects_v2").paginate(Bucket=cloud.bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))


def _uploads(cloud: AwsCloud) -> list[str]:
    """The key of every native multipart upload in the bucket."""
    resp = _plain(cloud).list_multipart_uploads(Bucket=cloud.bucket)
    return sorted(u["Key"] for u in resp.get("Uploads", ()))


class _RawBody:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def _inject(cloud: AwsCloud, status: int, code: str, op: str = "") -> None:
    """Every request of ``cloud`` (or of operation ``op``) is answered by ``status``/``code``
    without the network."""
    body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>injected</Message></Error>").encode()

    def send(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"},
                           _RawBody(b"" if request.method == "HEAD" else body))

    cloud.client().meta.events.register("before-send.s3" + (f".{op}" if op else ""), send)


# --- round trips ------------------------------------------------------------------------------

def test_write_then_ranged_reads(gw: NativeGateway) -> None:
    data = os.urandom(3 * MiB + 5)
    staged = _write(gw, data)
    assert (staged.size, staged.md5_hex) == (len(data), hashlib.md5(data).hexdigest())
    assert _read(gw, staged.data_ref) == data
    assert _read(gw, staged.data_ref, MiB - 3, 2 * MiB + 7) == data[MiB - 3:3 * MiB + 4]
    assert _read(gw, staged.data_ref, len(data) - 1) == data[-1:]
    assert gw.size(staged.data_ref) == len(data)
    cloud = _cloud(gw)
    head = cloud.client().head_object(Bucket=cloud.bucket, Key=PREFIX + staged.data_ref)
    assert head["ContentLength"] == len(data)  # named by id under the prefix, never by key
    assert head["ContentType"] == "application/octet-stream"


def test_zero_byte_object(gw: NativeGateway) -> None:
    staged = _write(gw, b"")
    assert (staged.size, staged.md5_hex) == (0, hashlib.md5(b"").hexdigest())
    assert gw.size(staged.data_ref) == 0
    assert _read(gw, staged.data_ref) == b""


def test_copy_is_server_side(gw: NativeGateway) -> None:
    data = os.urandom(2 * MiB + 1)
    src = _write(gw, data)
    ops = _record_ops(_cloud(gw))
    copied = gw.copy(src.data_ref, need_md5=False)
    assert "CopyObject" in ops and not {"GetObject", "PutObject", "UploadPart"} & set(ops)
    assert (copied.size, copied.md5_hex) == (len(data), "")
    assert copied.data_ref != src.data_ref
    assert _read(gw, copied.data_ref) == data


def test_copy_over_the_copy_object_limit_is_a_server_side_multipart_copy(
        gw: NativeGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(MiB + 7)
    src = _write(gw, data)
    monkeypatch.setattr(aws, "MAX_COPY_OBJECT", MiB)  # stands in for 5 GiB
    ops = _record_ops(_cloud(gw))
    copied = gw.copy(src.data_ref, need_md5=False)
    assert "UploadPartCopy" in ops and "CopyObject" not in ops
    assert not {"GetObject", "PutObject", "UploadPart"} & set(ops)
    assert _read(gw, copied.data_ref) == data


def test_range_copy_streams_and_hashes(gw: NativeGateway) -> None:
    data = os.urandom(MiB + 100)
    src = _write(gw, data)
    copied = gw.copy(src.data_ref, (10, MiB + 9), need_md5=True)
    assert copied.md5_hex == hashlib.md5(data[10:MiB + 10]).hexdigest()
    assert _read(gw, copied.data_ref) == data[10:MiB + 10]


def test_delete_is_idempotent(gw: NativeGateway) -> None:
    staged = _write(gw, b"bye")
    gw.delete(staged.data_ref)
    gw.delete(staged.data_ref)
    gw.delete("blobs/00/00/" + "0" * 32)
    with pytest.raises(BlobMissing):
        gw.size(staged.data_ref)


# --- multipart: a passthrough to the upstream's own upload -----------------------------------

def test_three_parts_complete_into_the_reserved_ref(gw: NativeGateway) -> None:
    upload = "c" * 32
    cloud = _cloud(gw)
    ops = _record_ops(cloud)
    md5s: list[str] = []
    cloud.client().meta.events.register(
        "before-call.s3.UploadPart", lambda params, **_: md5s.append(
            params["headers"].get("Content-MD5", "")))
    ref = gw.init_upload(upload)
    assert ref == f"blobs/cc/cc/{upload}" == NativeGateway.reserved_ref(upload)
    assert _uploads(cloud) == [PREFIX + ref]
    chunks = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1000)]
    parts = [_part(gw, upload, n, d) for n, d in enumerate(chunks, 1)]
    assert [p.backend_ref for p in parts] == [p.etag for p in parts]  # moto: the part's MD5
    assert md5s == [base64.b64encode(hashlib.md5(d).digest()).decode() for d in chunks]
    assert _objects(cloud) == []  # no object per part, ever
    staged = gw.assemble(parts)
    assert ops == ["CreateMultipartUpload", "ListMultipartUploads", *["UploadPart"] * 3,
                   "CompleteMultipartUpload"]  # the upload id listed once, then cached
    assert (staged.data_ref, staged.size, staged.md5_hex) == (ref, sum(map(len, chunks)), "")
    assert _read(gw, ref) == b"".join(chunks)
    assert _objects(cloud) == [PREFIX + ref] and _uploads(cloud) == []
    head = cloud.client().head_object(Bucket=cloud.bucket, Key=PREFIX + ref)
    assert head["ContentType"] == "application/octet-stream"


def test_200_parts(small_gw: NativeGateway) -> None:
    upload = "d" * 32
    ref = small_gw.init_upload(upload)
    chunks = [bytes([n % 251]) * KiB + n.to_bytes(4, "big") for n in range(1, 201)]
    chunks[-1] = b"last"
    parts = [_part(small_gw, upload, n, d) for n, d in enumerate(chunks, 1)]
    assert small_gw.assemble(parts).data_ref == ref
    assert _read(small_gw, ref) == b"".join(chunks)
    cloud = _cloud(small_gw)
    assert _objects(cloud) == [PREFIX + ref] and _uploads(cloud) == []


def test_moto_enforces_the_5_mib_minimum_and_the_upload_survives(gw: NativeGateway) -> None:
    """The upstream's refusal reaches the client as S3's own error; the native upload stays,
    so the client can upload the part again and complete."""
    upload = "f" * 32
    ref = gw.init_upload(upload)
    parts = [_part(gw, upload, n, b"tiny") for n in (1, 2)]
    with pytest.raises(errors.EntityTooSmall):
        gw.assemble(parts)
    cloud = _cloud(gw)
    assert _uploads(cloud) == [PREFIX + ref] and _objects(cloud) == []
    big = os.urandom(5 * MiB)
    fixed = _part(gw, upload, 1, big)
    assert gw.assemble([fixed, parts[1]]).data_ref == ref
    assert _read(gw, ref) == big + b"tiny"


def test_a_stale_part_row_is_refused_by_the_upstream(small_gw: NativeGateway) -> None:
    """Part 1 uploaded twice: the upstream keeps the second body. Completing with the first
    row (its ETag) would build bytes the metadata does not describe: the upstream refuses
    it (InvalidPart), so metadata and upstream cannot silently disagree."""
    upload = "9" * 32
    ref = small_gw.init_upload(upload)
    first = _part(small_gw, upload, 1, b"a" * 2 * KiB)
    latest = _part(small_gw, upload, 1, b"b" * 2 * KiB)
    tail = _part(small_gw, upload, 2, b"tail")
    assert first.backend_ref != latest.backend_ref
    with pytest.raises(errors.InvalidPart):
        small_gw.assemble([first, tail])
    ops = _record_ops(_cloud(small_gw))
    with pytest.raises(errors.InvalidPart):  # a row without the upstream's ETag: no request
        small_gw.assemble([replace(latest, backend_ref=None), tail])
    assert ops == []
    assert _uploads(_cloud(small_gw)) == [PREFIX + ref]
    assert small_gw.assemble([latest, tail]).data_ref == ref
    assert _read(small_gw, ref) == b"b" * 2 * KiB + b"tail"


def test_a_repeated_complete_adopts_the_built_result(small_gw: NativeGateway) -> None:
    """A client's retried Complete (or one after a crash before the commit): the native
    upload is gone but its result is there with the right size, so it is the answer."""
    upload = "a" * 32
    ref = small_gw.init_upload(upload)
    parts = [_part(small_gw, upload, 1, b"1" * 2 * KiB), _part(small_gw, upload, 2, b"22")]
    first = small_gw.assemble(parts)
    second = small_gw.assemble(parts)
    assert first == second and second.data_ref == ref
    assert _read(small_gw, ref) == b"1" * 2 * KiB + b"22"
    with pytest.raises(errors.NoSuchUpload):  # another part list: not what was built
        small_gw.assemble(parts[:1])
    assert _read(small_gw, ref) == b"1" * 2 * KiB + b"22"


def test_a_complete_of_an_aborted_upload_is_no_such_upload(small_gw: NativeGateway) -> None:
    upload = "b" * 32
    ref = small_gw.init_upload(upload)
    part = _part(small_gw, upload, 1, b"gone")
    small_gw.delete(f"upload:{upload}")
    with pytest.raises(errors.NoSuchUpload):
        small_gw.assemble([part])
    with pytest.raises(errors.NoSuchUpload):
        _part(small_gw, upload, 2, b"late")
    with pytest.raises(BlobMissing):
        small_gw.size(ref)


def test_an_upload_aborted_behind_a_cached_id(moto_small: MotoUpstream,
                                              tmp_path: Path) -> None:
    """Another worker aborted the native upload while this one holds its id. S3 answers
    404 NoSuchUpload; NOTE: moto answers 500 (a KeyError in moto), which the gateway passes
    on as ServiceUnavailable. Either way the failed Complete drops the cached id, so the
    client's retry lists again and gets NoSuchUpload."""
    cloud = AwsCloud(moto_small.new_store(PREFIX).config, max_attempts=1)  # no 500 backoff
    gw = _gateway(cloud, tmp_path)
    upload = "e" * 32
    ref = gw.init_upload(upload)
    part = _part(gw, upload, 1, b"cached")  # the native id is cached now
    other = _gateway(AwsCloud(cloud.config), tmp_path)
    other.delete(f"upload:{upload}")
    with pytest.raises(errors.ServiceUnavailable):  # moto's 500 (S3: NoSuchUpload)
        gw.assemble([part])
    with pytest.raises(errors.NoSuchUpload):
        gw.assemble([part])
    with pytest.raises(BlobMissing):
        gw.size(ref)


def test_a_complete_answered_no_such_upload_adopts_only_a_built_result(
        small_gw: NativeGateway) -> None:
    """S3's answer to a Complete that lost the race to another Complete of the same upload
    (moto instead repeats the success), replayed on the Complete request only."""
    upload = "7" * 32
    ref = small_gw.init_upload(upload)
    parts = [_part(small_gw, upload, 1, b"x" * 2 * KiB), _part(small_gw, upload, 2, b"y")]
    cloud = _cloud(small_gw)
    _inject(cloud, 404, "NoSuchUpload", op="CompleteMultipartUpload")
    with pytest.raises(errors.NoSuchUpload):  # nothing built
        small_gw.assemble(parts)
    _part(small_gw, upload, 2, b"y")  # the native id is cached again
    plain = _plain(cloud)
    native = plain.list_multipart_uploads(Bucket=cloud.bucket)["Uploads"][0]["UploadId"]
    plain.complete_multipart_upload(  # the winner
        Bucket=cloud.bucket, Key=PREFIX + ref, UploadId=native, MultipartUpload={
            "Parts": [{"PartNumber": p.part_number, "ETag": p.backend_ref} for p in parts]})
    assert small_gw.assemble(parts).data_ref == ref
    assert _read(small_gw, ref) == b"x" * 2 * KiB + b"y"


# --- multipart: UploadPartCopy --------------------------------------------------------------

def test_a_whole_copy_to_part_is_an_upload_part_copy(small_gw: NativeGateway) -> None:
    upload = "1" * 32
    ref = small_gw.init_upload(upload)
    data = os.urandom(3 * KiB)
    src = _write(small_gw, data)
    cloud = _cloud(small_gw)
    ops = _record_ops(cloud)
    staged = small_gw.copy_to_part(src.data_ref, upload, 1, None, need_md5=False)
    assert "UploadPartCopy" in ops and not {"GetObject", "PutObject", "UploadPart"} & set(ops)
    assert (staged.size, staged.md5_hex) == (len(data), "")
    assert staged.backend_ref == f'"{hashlib.md5(data).hexdigest()}"'  # the upstream's ETag
    part = Part(upload, 1, staged.size, f'"{src.md5_hex}"', "", staged.data_ref,
                backend_ref=staged.backend_ref)
    tail = _part(small_gw, upload, 2, b"tail")
    assert small_gw.assemble([part, tail]).data_ref == ref
    assert _read(small_gw, ref) == data + b"tail"
    assert _objects(cloud) == sorted([PREFIX + src.data_ref, PREFIX + ref])
    with pytest.raises(BlobMissing):
        small_gw.copy_to_part("blobs/ab/cd/" + "e" * 32, "2" * 32, 1, None, need_md5=False)


@pytest.mark.parametrize("byte_range", [(10, 2 * KiB + 9), None])
def test_a_ranged_or_hashed_copy_to_part_streams(small_gw: NativeGateway,
                                                 byte_range: tuple[int, int] | None) -> None:
    upload = "2" * 32
    ref = small_gw.init_upload(upload)
    data = os.urandom(3 * KiB)
    src = _write(small_gw, data)
    want = data if byte_range is None else data[byte_range[0]:byte_range[1] + 1]
    ops = _record_ops(_cloud(small_gw))
    staged = small_gw.copy_to_part(src.data_ref, upload, 1, byte_range, need_md5=True)
    assert "UploadPartCopy" not in ops and {"GetObject", "UploadPart"} <= set(ops)
    assert (staged.size, staged.md5_hex) == (len(want), hashlib.md5(want).hexdigest())
    part = Part(upload, 1, staged.size, f'"{staged.md5_hex}"', "", staged.data_ref,
                backend_ref=staged.backend_ref)
    small_gw.assemble([part, _part(small_gw, upload, 2, b"end")])
    assert _read(small_gw, ref) == want + b"end"


# --- multipart: abort, other workers ---------------------------------------------------------

def test_delete_of_an_upload_aborts_only_its_native_upload(small_gw: NativeGateway) -> None:
    cloud = _cloud(small_gw)
    a, b, done = "a" * 32, "b" * 32, "c" * 32
    refs = {u: small_gw.init_upload(u) for u in (a, b, done)}
    pa = _part(small_gw, a, 1, b"a")
    pb = _part(small_gw, b, 1, b"b")
    small_gw.assemble([_part(small_gw, done, 1, b"done")])
    small_gw.delete(pa.data_ref)  # a part names no object: nothing to do
    assert _uploads(cloud) == [PREFIX + refs[a], PREFIX + refs[b]]
    small_gw.delete(f"upload:{a}")
    small_gw.delete(f"upload:{a}")  # idempotent
    small_gw.delete(f"upload:{done}")  # a settled upload's GC: the result stays
    assert _uploads(cloud) == [PREFIX + refs[b]]
    assert _read(small_gw, refs[done]) == b"done"
    assert small_gw.assemble([pb]).data_ref == refs[b]
    with pytest.raises(errors.NoSuchUpload):
        small_gw.assemble([pa])


def test_another_worker_finds_the_native_upload_by_listing(moto_small: MotoUpstream,
                                                           tmp_path: Path) -> None:
    """Each worker process has its own AwsCloud (and cache of upstream upload ids)."""
    one = _gateway(moto_small.new_store(PREFIX), tmp_path)
    two = _gateway(AwsCloud(_cloud(one).config), tmp_path)
    upload = "8" * 32
    ref = one.init_upload(upload)
    chunks = [os.urandom(2 * KiB), os.urandom(2 * KiB), b"three"]
    p1 = _part(one, upload, 1, chunks[0])
    ops = _record_ops(_cloud(two))
    rest = [_part(two, upload, n, d) for n, d in ((2, chunks[1]), (3, chunks[2]))]
    assert ops == ["ListMultipartUploads", "UploadPart", "UploadPart"]
    assert two.assemble([p1, *rest]).data_ref == ref
    assert _read(two, ref) == b"".join(chunks)
    assert one.assemble([p1, *rest]).data_ref == ref  # the first worker's retry: same result
    assert _uploads(_cloud(one)) == []


def test_a_duplicated_native_upload_is_chosen_alike_by_every_worker(
        moto_small: MotoUpstream, tmp_path: Path) -> None:
    """A CreateMultipartUpload retried by the SDK after a lost answer leaves two native
    uploads of the reserved key: every worker picks the earliest, so parts meet in one; the
    other goes with the upload's GC."""
    one = _gateway(moto_small.new_store(PREFIX), tmp_path)
    two = _gateway(AwsCloud(_cloud(one).config), tmp_path)
    cloud = _cloud(one)
    upload = "6" * 32
    ref = one.init_upload(upload)
    _plain(cloud).create_multipart_upload(Bucket=cloud.bucket, Key=PREFIX + ref)
    parts = [_part(one, upload, 1, b"1" * 2 * KiB), _part(two, upload, 2, b"2")]
    assert two.assemble(parts).data_ref == ref
    assert _read(one, ref) == b"1" * 2 * KiB + b"2"
    assert _uploads(cloud) == [PREFIX + ref]
    one.delete(f"upload:{upload}")
    assert _uploads(cloud) == [] and _read(one, ref) == b"1" * 2 * KiB + b"2"


# --- listing, prefix, recovery ----------------------------------------------------------------

def _foreign(cloud: AwsCloud) -> list[str]:
    """Objects in the bucket that the gateway (prefix ``bs/``) does not own."""
    names = ["other/file.txt", "blobs/aa/bb/" + "a" * 32, "bs2/blobs/aa/bb/" + "b" * 32,
             "multipart/" + "9" * 32 + "/00001-" + "c" * 32, "bs/notes.txt"]
    for name in names:
        cloud.client().put_object(Bucket=cloud.bucket, Key=name, Body=b"keep")
    return names


def test_list_and_iter_blob_refs_honour_the_prefix(gw: NativeGateway) -> None:
    cloud = _cloud(gw)
    foreign = _foreign(cloud)
    mine = {_write(gw, b"1").data_ref, _write(gw, b"").data_ref}
    gw.init_upload("2" * 32)
    _part(gw, "2" * 32, 3, b"p")  # in the native upload: no object, no ref to list
    assert set(gw.iter_blob_refs(-60)) == mine
    assert list(gw.iter_blob_refs(3600)) == []
    listed = dict(cloud.list(PREFIX))
    assert set(listed) == {PREFIX + r for r in mine} | {"bs/notes.txt"}
    assert all(abs(t - listed["bs/notes.txt"]) < 120 for t in listed.values())
    assert set(_objects(cloud)) == set(listed) | set(foreign)


def test_list_pages_through_everything(small_gw: NativeGateway) -> None:
    refs = {_write(small_gw, b"").data_ref for _ in range(15)}  # moto_small: pages of 7 keys
    assert set(small_gw.iter_blob_refs(-60)) == refs
    gone = refs.pop()
    small_gw.delete(gone)
    assert set(small_gw.iter_blob_refs(-60)) == refs


def test_recover_aborts_dead_and_stray_native_uploads_under_the_prefix_only(
        gw: NativeGateway) -> None:
    """moto reports every upload as initiated in 2010; the BleepStore upstream (below)
    reports real times, so the sweep is also checked not to spare a young one."""
    cloud = _cloud(gw)
    foreign = _foreign(cloud)
    live, dead = "4" * 32, "5" * 32
    live_ref = gw.init_upload(live)
    gw.init_upload(dead)
    live_part, dead_part = _part(gw, live, 1, b"live"), _part(gw, dead, 1, b"dead")
    strays = [PREFIX + "blobs/aa/bb/x",  # not a reserved key
              PREFIX + "blobs/00/00/" + live]  # a live id, not at its reserved key
    outside = ["blobs/55/55/" + dead, "bs2/blobs/55/55/" + dead, "other/x"]
    for key in strays + outside:
        _plain(cloud).create_multipart_upload(Bucket=cloud.bucket, Key=key)
    report = gw.recover(lambda upload_id: upload_id == live)
    assert (report.uploads_removed, report.uploads_kept) == (3, 0)  # dead's, 2 strays
    assert _uploads(cloud) == sorted([PREFIX + live_ref, *outside])
    assert _read(gw, gw.assemble([live_part]).data_ref) == b"live"
    with pytest.raises(errors.NoSuchUpload):
        gw.assemble([dead_part])
    assert set(foreign) <= set(_objects(cloud))


def test_recover_aborts_even_young_native_uploads(bleep_gw: NativeGateway) -> None:
    """At startup no upload of this server is in flight (data-dir lock): a native upload
    started a moment ago is a crash's leftover too (the BleepStore upstream reports real
    times)."""
    cloud = _cloud(bleep_gw)
    dead = "3" * 32
    bleep_gw.init_upload(dead)
    _plain(cloud).create_multipart_upload(Bucket=cloud.bucket, Key=PREFIX + "blobs/aa/bb/x")
    bleep_gw.recover(lambda _: False)
    assert _uploads(cloud) == []


def test_recover_starts_without_the_right_to_list_uploads(
        gw: NativeGateway, caplog: pytest.LogCaptureFixture) -> None:
    """An upstream without ListMultipartUploads (or no permission for it) never stops a
    start: the sweep is skipped with a warning."""
    gw.init_upload("5" * 32)
    cloud = _cloud(gw)
    _inject(cloud, 403, "AccessDenied", op="ListMultipartUploads")
    with caplog.at_level(logging.WARNING, logger="bleepstore.storage"):
        gw.recover(lambda _: False)
    assert "not checked" in caplog.text
    assert _uploads(cloud) == [PREFIX + NativeGateway.reserved_ref("5" * 32)]


# --- error translation ------------------------------------------------------------------------

def test_missing_object_is_blob_missing(gw: NativeGateway) -> None:
    ref = "blobs/ab/cd/" + "e" * 32
    with pytest.raises(BlobMissing):
        gw.size(ref)
    with pytest.raises(BlobMissing):
        gw.open_read(ref)  # at open, not at the first chunk
    with pytest.raises(BlobMissing):
        gw.open_read(ref, 0, 10)
    with pytest.raises(BlobMissing):
        gw.copy(ref, need_md5=False)
    with pytest.raises(BlobMissing):
        gw.copy(ref, (0, 0), need_md5=True)


def test_missing_bucket_is_a_gateway_error_naming_the_key(
        moto: MotoUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cloud = AwsCloud(moto.aws_config("no-such-bucket-" + os.urandom(4).hex()))
    gw = _gateway(cloud, tmp_path)
    with caplog.at_level(logging.ERROR, logger="bleepstore.storage"):
        with pytest.raises(GatewayError) as info:
            gw.check()
    assert "storage.aws.bucket" in info.value.detail
    errors_logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors_logged) == 1 and "storage.aws.bucket" in errors_logged[0].getMessage()
    for call in (lambda: gw.size("blobs/ab/cd/" + "e" * 32),  # HEAD 404: bucket, not key
                 lambda: _write(gw, b"data"),
                 lambda: list(gw.iter_blob_refs(0))):
        with pytest.raises(GatewayError):
            call()


def test_unreachable_endpoint_is_service_unavailable(tmp_path: Path) -> None:
    cfg = AwsStorageConfig(bucket="b", endpoint_url=f"http://127.0.0.1:{free_port()}",
                           use_path_style=True, access_key_id="a", secret_access_key="s")
    gw = _gateway(AwsCloud(cfg, max_attempts=1), tmp_path)
    for call in (gw.check, lambda: gw.size("blobs/ab/cd/" + "e" * 32),
                 lambda: _write(gw, b"data"), lambda: gw.open_read("blobs/ab/cd/" + "e" * 32),
                 lambda: gw.delete("blobs/ab/cd/" + "e" * 32),
                 lambda: list(gw.iter_blob_refs(0))):
        with pytest.raises(errors.ServiceUnavailable):
            call()


@pytest.mark.parametrize(("status", "code", "expected"), [
    (503, "SlowDown", errors.SlowDown),
    (500, "InternalError", errors.ServiceUnavailable),
    (502, "BadGateway", errors.ServiceUnavailable),
    (403, "AccessDenied", GatewayError),
    (403, "InvalidAccessKeyId", GatewayError),
    (400, "AuthorizationHeaderMalformed", GatewayError),
    (400, "InvalidArgument", errors.InternalError),
])
def test_injected_upstream_answers_are_translated(
        gw: NativeGateway, status: int, code: str, expected: type[Exception]) -> None:
    staged = _write(gw, b"some bytes")
    cloud = AwsCloud(_cloud(gw).config, max_attempts=1)  # retries would back off (sleep)
    gw = _gateway(cloud, Path(gw.spool_dir))
    _inject(cloud, status, code)
    upload = "d" * 32
    part = Part(upload, 1, 4, '"e"', "", gw.new_ref("part", upload, 1), backend_ref='"e"')
    calls: list[Callable[[], object]] = [
        lambda: gw.open_read(staged.data_ref, 0, 4), lambda: _write(gw, b"data"),
        lambda: gw.delete(staged.data_ref), lambda: list(gw.iter_blob_refs(0)),
        lambda: gw.init_upload(upload), lambda: _part(gw, upload, 1, b"part"),
        lambda: gw.assemble([part]), lambda: gw.delete(f"upload:{upload}")]
    if status != 400:  # a HEAD answer has no body: a bare 400 says nothing more
        calls += [gw.check, lambda: gw.size(staged.data_ref),
                  lambda: gw.copy(staged.data_ref, need_md5=False),
                  lambda: gw.copy_to_part(staged.data_ref, upload, 2, None, need_md5=False)]
    for call in calls:
        with pytest.raises(expected) as info:
            call()
        assert type(info.value).__module__.startswith("bleepstore")


def test_an_error_mid_stream_is_service_unavailable_and_closes_the_body() -> None:
    class Body:
        closed = False

        def iter_chunks(self, size: int) -> Iterator[bytes]:
            yield b"x" * size
            raise ResponseStreamingError(error="connection reset")

        def close(self) -> None:
            self.closed = True

    cloud = AwsCloud(AwsStorageConfig(bucket="b"))
    body = Body()
    chunks = aws._BodyChunks(body, aws._Boundary(cloud, "read", "n"))
    assert len(next(chunks)) == MiB
    with pytest.raises(errors.ServiceUnavailable):
        next(chunks)
    assert body.closed


def test_closing_a_reader_early_closes_the_response(gw: NativeGateway) -> None:
    staged = _write(gw, os.urandom(4 * MiB))
    chunks = _cloud(gw).read(PREFIX + staged.data_ref, 0, 4 * MiB)
    assert len(next(chunks)) == MiB
    chunks.close()  # type: ignore[attr-defined]
    assert chunks._body._raw_stream.closed  # type: ignore[attr-defined]
    assert list(chunks) == []


def test_wrong_credentials_are_a_gateway_error(bleep: Server, bleep_gw: NativeGateway,
                                               tmp_path: Path) -> None:
    bucket = _cloud(bleep_gw).bucket
    for access, secret, code in ((ACCESS_KEY, "wrong-secret", "SignatureDoesNotMatch"),
                                 ("no-such-key", SECRET_KEY, "InvalidAccessKeyId")):
        gw = _gateway(AwsCloud(_bleep_config(bleep, bucket, access, secret)), tmp_path)
        with pytest.raises(GatewayError) as info:
            gw.check()  # HEAD: a bare 403, no error code
        assert "storage.aws.access_key_id" in info.value.detail
        with pytest.raises(GatewayError) as info:
            _write(gw, b"data")
        assert "storage.aws.access_key_id" in info.value.detail and code in info.value.detail


# --- the client: lazy, per process, shared by threads, default chain ------------------------

def test_module_imports_and_constructs_without_boto3() -> None:
    code = ("import sys; sys.modules['boto3'] = sys.modules['botocore'] = None\n"
            "from bleepstore.config import AwsStorageConfig\n"
            "from bleepstore.storage.aws import AwsCloud\n"
            "c = AwsCloud(AwsStorageConfig(bucket='b')); assert c._client is None\n")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=Path(__file__).resolve().parents[2])


def test_client_is_built_once_per_process_and_shared(
        gw: NativeGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = _cloud(gw)
    refs: list[str] = []
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            data = os.urandom(1000 + n)
            ref = _write(gw, data).data_ref
            assert _read(gw, ref) == data
            refs.append(ref)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and len(set(refs)) == 16
    first = cloud.client()
    assert cloud.client() is first
    monkeypatch.setattr(cloud, "_pid", -1)  # as in a worker forked after first use
    assert cloud.client() is not first


def test_default_credential_chain(moto: MotoUpstream, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in moto.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    bucket = moto.new_bucket()
    cfg = AwsStorageConfig(bucket=bucket, endpoint_url=moto.endpoint, use_path_style=True)
    gw = _gateway(AwsCloud(cfg), tmp_path)
    gw.check()
    assert _read(gw, _write(gw, b"chain").data_ref) == b"chain"


def test_server_storage_config_names_a_fresh_bucket(moto: MotoUpstream) -> None:
    one, two = moto.server_storage_config(), moto.server_storage_config()
    assert one["backend"] == "aws" and one["aws"]["bucket"] != two["aws"]["bucket"]
    AwsCloud(AwsStorageConfig(**one["aws"])).check()


# --- memory -----------------------------------------------------------------------------------

def _traced_peak(fn: Callable[[], None]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("mib", "upload_op"), [(48, "PutObject"), (64, "UploadPart")])
def test_memory_stays_flat_for_large_uploads_and_reads(gw: NativeGateway, mib: int,
                                                       upload_op: str) -> None:
    """Below 64 MiB one streamed PutObject, from 64 MiB a managed multipart upload."""
    block = os.urandom(MiB)
    digest = hashlib.md5()
    for n in range(mib):
        digest.update(n.to_bytes(8, "big") + block[8:])
    ops = _record_ops(_cloud(gw))  # the client is built before tracing starts
    staged: list[StagedBlob] = []

    def upload() -> None:
        writer = gw.open_writer("object")
        for n in range(mib):
            writer.write(n.to_bytes(8, "big") + block[8:])
        staged.append(writer.finish())

    up_peak = _traced_peak(upload)
    assert staged[0].md5_hex == digest.hexdigest() and upload_op in ops
    got = hashlib.md5()

    def download() -> None:
        reader = gw.open_read(staged[0].data_ref)
        for chunk in reader:
            got.update(chunk)
        reader.close()

    down_peak = _traced_peak(download)
    assert got.hexdigest() == digest.hexdigest()
    print(f"{mib} MiB peak: upload {up_peak / MiB:.1f} MiB, download {down_peak / MiB:.1f} MiB")
    assert up_peak < 16 * MiB and down_peak < 8 * MiB


# --- a BleepStore as the upstream -------------------------------------------------------------

def test_bleepstore_upstream_round_trip(bleep_gw: NativeGateway) -> None:
    data = os.urandom(MiB + 3)
    staged = _write(bleep_gw, data)
    assert _read(bleep_gw, staged.data_ref, 5, MiB) == data[5:MiB + 5]
    ops = _record_ops(_cloud(bleep_gw))
    copied = bleep_gw.copy(staged.data_ref, need_md5=False)
    assert "CopyObject" in ops and "GetObject" not in ops
    assert _read(bleep_gw, copied.data_ref) == data
    assert set(bleep_gw.iter_blob_refs(-60)) == {staged.data_ref, copied.data_ref}
    bleep_gw.delete(staged.data_ref)
    bleep_gw.delete(staged.data_ref)
    with pytest.raises(BlobMissing):
        bleep_gw.size(staged.data_ref)


def test_bleepstore_upstream_passthrough(bleep_gw: NativeGateway) -> None:
    cloud = _cloud(bleep_gw)
    upload = "6" * 32
    ref = bleep_gw.init_upload(upload)
    big = os.urandom(5 * MiB)
    src = _write(bleep_gw, b"tail")
    ops = _record_ops(cloud)
    copied = bleep_gw.copy_to_part(src.data_ref, upload, 2, None, need_md5=False)
    parts = [_part(bleep_gw, upload, 1, big),
             Part(upload, 2, 4, f'"{src.md5_hex}"', "", copied.data_ref,
                  backend_ref=copied.backend_ref)]
    assert "UploadPartCopy" in ops and "GetObject" not in ops
    assert _objects(cloud) == [PREFIX + src.data_ref]
    assert bleep_gw.assemble(parts).data_ref == ref
    assert _read(bleep_gw, ref) == big + b"tail"
    assert _objects(cloud) == sorted([PREFIX + src.data_ref, PREFIX + ref])
    assert _uploads(cloud) == []
    small = "7" * 32
    small_ref = bleep_gw.init_upload(small)
    tiny = [_part(bleep_gw, small, n, b"small") for n in (1, 2)]
    with pytest.raises(errors.EntityTooSmall):
        bleep_gw.assemble(tiny)
    assert _uploads(cloud) == [PREFIX + small_ref]
    bleep_gw.delete(f"upload:{small}")
    assert _uploads(cloud) == []
