"""NativeGateway over AzureCloud against a real Azurite (storage.md §4.4).

One Azurite per session; every test works on a FRESH container, so tests share nothing
and can run in parallel. Multipart parts are no blobs: each part's blocks are staged on
the upload's reserved result (``blobs/<id[:2]>/<id[2:4]>/<id>``) and Complete is one Put
Block List, so these tests look at the block lists and at the listing with uncommitted
blobs through the SDK. Azurite 3.37 implements Put Block From URL, so copies run
server-side here; the streamed fallback (for services without it) is tested by forcing it
(``block_from_url=False``) and by replaying Azurite 3.35's "not implemented".
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import subprocess
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("azure.storage.blob")

from support.azurite import Azurite, connection_string  # noqa: E402
from support.blobs import put, put_part, read
from support.server import free_port  # noqa: E402

from bleepstore import errors  # noqa: E402
from bleepstore.config import AzureStorageConfig  # noqa: E402
from bleepstore.model import Part, StagedBlob  # noqa: E402
from bleepstore.storage.azure import AzureCloud, block_id, part_block_id  # noqa: E402
from bleepstore.storage.backend import BlobMissing  # noqa: E402
from bleepstore.storage.cloud import GatewayError  # noqa: E402
from bleepstore.storage.gateway import NativeGateway  # noqa: E402

MiB = 1 << 20
KiB = 1 << 10
Blocks = list[tuple[str, int]]


@pytest.fixture(scope="session")
def azurite(azure_emulator: Azurite) -> Azurite:
    return azure_emulator  # the session's Azurite (tests/conftest.py); fresh containers


def backend(azurite: Azurite, tmp_path: Path, prefix: str = "gw/",
            **options: Any) -> NativeGateway:
    return NativeGateway(azurite.new_store(prefix, **options), prefix, str(tmp_path / "spool"))


@pytest.fixture
def gw(azurite: Azurite, tmp_path: Path) -> NativeGateway:
    return backend(azurite, tmp_path)


def cloud(gw: NativeGateway) -> AzureCloud:
    store = gw.store
    assert isinstance(store, AzureCloud)
    return store


def upload_parts(gw: NativeGateway, bodies: list[bytes],
                 upload_id: str | None = None) -> tuple[str, list[Part]]:
    """A new upload (or more parts of ``upload_id``) numbered from 1, as core does it."""
    upload_id = upload_id or secrets.token_hex(16)
    assert gw.init_upload(upload_id) == f"blobs/{upload_id[:2]}/{upload_id[2:4]}/{upload_id}"
    return upload_id, [put_part(gw, body, upload_id, n) for n, body in enumerate(bodies, 1)]


def as_part(upload_id: str, number: int, staged: StagedBlob) -> Part:
    """The row core commits for a copied part (UploadPartCopy)."""
    return Part(upload_id, number, staged.size, '"copied"', "", staged.data_ref,
                backend_ref=staged.backend_ref)


def attempt(part: Part) -> str:
    return part.data_ref.rsplit("-", 1)[1]  # multipart/<id>/<nnnnn>-<attempt>


def expected_blocks(part: Part, *sizes: int) -> Blocks:
    """The block ids and sizes part ``part`` should have been staged as."""
    return [(part_block_id(part.part_number, attempt(part), sub), size)
            for sub, size in enumerate(sizes)]


def block_lists(gw: NativeGateway, ref: str) -> tuple[Blocks, Blocks]:
    """(committed, uncommitted) blocks of ``ref``; white box: the block lists are the point."""
    committed, uncommitted = cloud(gw)._blob(gw.name(ref)).get_block_list("all")
    return ([(b.id, b.size) for b in committed], [(b.id, b.size) for b in uncommitted])


def committed_blocks(gw: NativeGateway, ref: str) -> Blocks:
    committed, uncommitted = block_lists(gw, ref)
    assert uncommitted == []
    return committed


def all_blobs(gw: NativeGateway) -> tuple[set[str], set[str]]:
    """(committed, uncommitted-only) blob names in the container, prefix included."""
    container = cloud(gw)._client()
    every = {str(b.name) for b in container.list_blobs(include=["uncommittedblobs"])}
    committed = {str(b.name) for b in container.list_blobs()}
    return committed, every - committed


# --- round trips ------------------------------------------------------------------------
def test_write_then_full_and_ranged_reads(gw: NativeGateway) -> None:
    data = os.urandom(9 * MiB + 12345)  # > 4 MiB: the SDK stages blocks
    ref = put(gw, data)
    assert ref.startswith("blobs/") and gw.size(ref) == len(data)
    assert read(gw, ref) == data
    assert read(gw, ref, 5, 10) == data[5:15]
    assert read(gw, ref, MiB - 1, MiB + 2) == data[MiB - 1:2 * MiB + 1]
    assert read(gw, ref, len(data) - 7) == data[-7:]
    reader = gw.open_read(ref, 100, 1000)
    assert reader.read(10) == data[100:110] and reader.tell() == 10
    assert reader.read() == data[110:1100] and reader.read() == b""
    reader.close()


def test_zero_byte_object(gw: NativeGateway) -> None:
    ref = put(gw, b"")
    assert gw.size(ref) == 0
    assert read(gw, ref) == b""


def test_copy_is_server_side_and_ranged_copy_streams(gw: NativeGateway) -> None:
    data = os.urandom(2 * MiB + 3)
    src = put(gw, data)
    whole = gw.copy(src, need_md5=False)
    assert (whole.size, whole.md5_hex) == (len(data), "") and whole.data_ref != src
    assert read(gw, whole.data_ref) == data
    ranged = gw.copy(src, (10, MiB + 10), need_md5=True)
    assert ranged.md5_hex == hashlib.md5(data[10:MiB + 11]).hexdigest()
    assert read(gw, ranged.data_ref) == data[10:MiB + 11]
    empty = gw.copy(put(gw, b""), need_md5=False)
    assert gw.size(empty.data_ref) == 0


def test_delete_is_idempotent(gw: NativeGateway) -> None:
    ref = put(gw, b"bye")
    gw.delete(ref)
    gw.delete(ref)
    with pytest.raises(BlobMissing):
        gw.size(ref)
    with pytest.raises(BlobMissing):  # at open, not mid-stream: core answers "data missing"
        gw.open_read(ref, 0, 3)


# --- multipart: parts are blocks staged on the reserved result ------------------------


def test_parts_are_blocks_of_the_reserved_result(gw: NativeGateway) -> None:
    bodies = [os.urandom(n) for n in (MiB + 1, 7, 300_000)]
    upload_id, parts = upload_parts(gw, bodies)
    reserved = gw.reserved_ref(upload_id)
    assert [p.backend_ref for p in parts] == [str(8 * MiB)] * 3  # the block size (8 MiB)
    assert all_blobs(gw) == (set(), {gw.name(reserved)})  # no blob per part
    _, uncommitted = block_lists(gw, reserved)
    assert sorted(uncommitted) == sorted(sum(
        (expected_blocks(p, len(b)) for p, b in zip(parts, bodies, strict=True)), []))
    staged = gw.assemble(parts)
    assert staged == StagedBlob(reserved, sum(map(len, bodies)), "")
    assert committed_blocks(gw, reserved) == [
        *expected_blocks(parts[0], MiB + 1), *expected_blocks(parts[1], 7),
        *expected_blocks(parts[2], 300_000)]
    assert all_blobs(gw) == ({gw.name(reserved)}, set())
    assert read(gw, reserved) == b"".join(bodies)


def test_two_hundred_parts(gw: NativeGateway) -> None:
    bodies = [os.urandom(1000 + 37 * n) for n in range(200)]
    bodies[57] = b""  # an empty part contributes no block
    _, parts = upload_parts(gw, bodies)
    staged = gw.assemble(parts)
    assert read(gw, staged.data_ref) == b"".join(bodies)
    blocks = committed_blocks(gw, staged.data_ref)
    assert len(blocks) == 199 and blocks[57] == expected_blocks(parts[58], len(bodies[58]))[0]


def test_a_big_part_is_split_into_at_most_five_blocks_of_at_most_the_limit(
        azurite: Azurite, tmp_path: Path) -> None:
    """A part's blocks are max(upload_block, ceil(size / 5)) bytes, capped by block_limit
    (5 blocks a part: 10,000 parts fit Azure's 50,000 committed blocks a blob)."""
    gw = backend(azurite, tmp_path, block_limit=256 * KiB, upload_block=64 * KiB)
    bodies = [os.urandom(5000), os.urandom(MiB), os.urandom(2 * MiB + 5)]
    _, parts = upload_parts(gw, bodies)
    fifth = -(-MiB // 5)  # 209,716 > upload_block
    assert [p.backend_ref for p in parts] == [str(64 * KiB), str(fifth), str(256 * KiB)]
    staged = gw.assemble(parts)
    assert read(gw, staged.data_ref) == b"".join(bodies)
    blocks = committed_blocks(gw, staged.data_ref)
    assert blocks == [*expected_blocks(parts[0], 5000),
                      *expected_blocks(parts[1], *[fifth] * 4, MiB - 4 * fifth),
                      *expected_blocks(parts[2], *[256 * KiB] * 8, 5)]
    assert len({len(i) for i, _ in blocks}) == 1  # Azure: one id length per blob


def test_a_copy_over_the_block_limit_is_split(azurite: Azurite, tmp_path: Path) -> None:
    gw = backend(azurite, tmp_path, block_limit=MiB)
    data = os.urandom(2 * MiB + 5)
    copied = gw.copy(put(gw, data), need_md5=False)
    assert committed_blocks(gw, copied.data_ref) == [
        (block_id(0, 0), MiB), (block_id(0, 1), MiB), (block_id(0, 2), 5)]
    assert read(gw, copied.data_ref) == data


def count_calls(monkeypatch: pytest.MonkeyPatch, method: str) -> list[Any]:
    """Record the calls of ``BlobClient.<method>`` (still made)."""
    from azure.storage.blob import BlobClient

    calls: list[Any] = []
    original = getattr(BlobClient, method)

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BlobClient, method, counted)
    return calls


@pytest.mark.parametrize(("from_url", "url_calls"), [(None, 9), (False, 0)])
def test_copy_to_part_of_a_whole_source_stages_split_blocks(
        azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        from_url: bool | None, url_calls: int) -> None:
    """Server-side (Put Block From URL) by default; streamed through BleepStore with
    ``block_from_url=False`` (services without it)."""
    gw = backend(azurite, tmp_path, block_limit=256 * KiB, upload_block=64 * KiB,
                 block_from_url=from_url)
    data = os.urandom(2 * MiB + 5)
    src = put(gw, data)
    calls = count_calls(monkeypatch, "stage_block_from_url")
    upload_id, [first] = upload_parts(gw, [b"head"])
    copied = gw.copy_to_part(src, upload_id, 2, None, need_md5=False)
    assert (copied.size, copied.md5_hex, copied.backend_ref) == (len(data), "", str(256 * KiB))
    assert len(calls) == url_calls
    part = as_part(upload_id, 2, copied)
    staged = gw.assemble([first, part])
    assert committed_blocks(gw, staged.data_ref) == [
        *expected_blocks(first, 4), *expected_blocks(part, *[256 * KiB] * 8, 5)]
    assert read(gw, staged.data_ref) == b"head" + data
    assert read(gw, src) == data  # the source is untouched


def test_not_implemented_switches_copy_part_to_streaming(
        azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Azurite before 3.37 answers Put Block From URL with APINotImplemented (replayed
    here): the adapter streams that block and every later one."""
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobClient

    calls = []

    def not_implemented(self: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(args)
        exc = HttpResponseError(message="Current API is not implemented yet.")
        exc.__dict__.update(status_code=501, error_code="APINotImplemented")
        raise exc

    monkeypatch.setattr(BlobClient, "stage_block_from_url", not_implemented)
    gw = backend(azurite, tmp_path, block_limit=256 * KiB, upload_block=64 * KiB)
    data = os.urandom(MiB + 3)  # 5 blocks
    src = put(gw, data)
    upload_id = secrets.token_hex(16)
    gw.init_upload(upload_id)
    first = gw.copy_to_part(src, upload_id, 1, None, need_md5=False)
    # NOTE: the blocks are staged on several threads: more than one may try the URL
    # before the first refusal switches the adapter over; none tries after.
    assert 1 <= len(calls) <= 5
    tried = len(calls)
    second = gw.copy_to_part(src, upload_id, 2, None, need_md5=False)
    assert len(calls) == tried
    staged = gw.assemble([as_part(upload_id, 1, first), as_part(upload_id, 2, second)])
    assert read(gw, staged.data_ref) == data + data


def test_a_subset_of_the_parts_assembles_to_exactly_those_bytes(gw: NativeGateway) -> None:
    bodies = [os.urandom(1000), os.urandom(2000), os.urandom(3000)]
    _, parts = upload_parts(gw, bodies)
    staged = gw.assemble([parts[0], parts[2]])
    assert (staged.size, read(gw, staged.data_ref)) == (4000, bodies[0] + bodies[2])
    # part 2's staged block is discarded by the commit (nothing uncommitted is left)
    assert committed_blocks(gw, staged.data_ref) == [
        *expected_blocks(parts[0], 1000), *expected_blocks(parts[2], 3000)]


def test_a_part_uploaded_again_is_assembled_from_its_latest_row(gw: NativeGateway) -> None:
    upload_id, [old, two] = upload_parts(gw, [b"old one", b"two"])
    _, [new] = upload_parts(gw, [b"new one!"], upload_id)
    assert attempt(new) != attempt(old)
    staged = gw.assemble([new, two])
    assert read(gw, staged.data_ref) == b"new one!two"
    assert committed_blocks(gw, staged.data_ref) == [
        *expected_blocks(new, 8), *expected_blocks(two, 3)]
    with pytest.raises(errors.InvalidPart):  # the old attempt's block is gone with the commit
        gw.assemble([old, two])
    assert read(gw, staged.data_ref) == b"new one!two"  # and the result is as it was


def test_a_part_whose_blocks_are_not_staged_is_invalid_part(gw: NativeGateway) -> None:
    upload_id, parts = upload_parts(gw, [b"a" * 100, b"b" * 100])
    never = Part(upload_id, 3, 100, '"x"', "", gw.new_ref("part", upload_id, 3),
                 backend_ref=parts[0].backend_ref)
    bad_handles = [replace(parts[1], backend_ref=h) for h in (None, "", "x", "0")]
    for listed in ([*parts, never], *([parts[0], bad] for bad in bad_handles)):
        with pytest.raises(errors.InvalidPart):
            gw.assemble(listed)
    reserved = gw.reserved_ref(upload_id)
    assert all_blobs(gw) == (set(), {gw.name(reserved)})  # nothing committed
    with pytest.raises(BlobMissing):
        gw.size(reserved)
    # the staged blocks survive the refusal: the client can still complete correctly
    assert read(gw, gw.assemble(parts).data_ref) == b"a" * 100 + b"b" * 100


def test_a_repeated_assemble_commits_the_same_blocks(gw: NativeGateway) -> None:
    """A retried Complete finds its blocks committed by the first one: the same blob."""
    bodies = [os.urandom(5000), b"", os.urandom(10)]
    _, parts = upload_parts(gw, bodies)
    first = gw.assemble(parts)
    blocks = committed_blocks(gw, first.data_ref)
    for _ in range(2):
        again = gw.assemble(parts)
        assert again == first
        assert committed_blocks(gw, again.data_ref) == blocks
        assert read(gw, again.data_ref) == b"".join(bodies)


def test_empty_parts_assemble_to_an_empty_object(gw: NativeGateway) -> None:
    _, parts = upload_parts(gw, [b"", b""])
    staged = gw.assemble(parts)
    assert (staged.size, gw.size(staged.data_ref), read(gw, staged.data_ref)) == (0, 0, b"")


def test_deleting_a_part_ref_does_nothing(gw: NativeGateway) -> None:
    _, parts = upload_parts(gw, [b"one", b"two"])
    gw.delete(parts[0].data_ref)  # core's GC of a replaced part: no blob to delete
    assert read(gw, gw.assemble(parts).data_ref) == b"onetwo"


def test_deleting_the_upload_ref_before_complete_discards_its_blocks(
        gw: NativeGateway) -> None:
    upload_id, parts = upload_parts(gw, [b"1", b"2", b"3"])
    other, others = upload_parts(gw, [b"4"])
    for _ in range(2):  # idempotent
        gw.delete(f"upload:{upload_id}")
        assert all_blobs(gw) == (set(), {gw.name(gw.reserved_ref(other))})
    with pytest.raises(errors.InvalidPart):  # what it staged is gone
        gw.assemble(parts)
    assert read(gw, gw.assemble(others).data_ref) == b"4"  # the other upload is intact


def test_deleting_the_upload_ref_after_complete_keeps_the_result(gw: NativeGateway) -> None:
    """Core's GC of a settled upload: the reserved ref is now a committed object."""
    bodies = [os.urandom(3000), b"end"]
    upload_id, parts = upload_parts(gw, bodies)
    staged = gw.assemble(parts)
    blocks = committed_blocks(gw, staged.data_ref)
    gw.delete(f"upload:{upload_id}")
    assert committed_blocks(gw, staged.data_ref) == blocks
    assert read(gw, staged.data_ref) == b"".join(bodies)


def test_a_source_vanishing_mid_build_discards_the_staged_blocks(gw: NativeGateway) -> None:
    """Sizes were listed, then a source went away: Put Block From URL answers 404
    CannotVerifyCopySource (BlobMissing) and the blocks already staged on the destination
    are discarded, so not even an uncommitted blob is left."""
    store = cloud(gw)
    first = gw.name(put(gw, os.urandom(1000)))
    dst = gw.name("blobs/aa/bb/" + "ab" * 16)
    with pytest.raises(BlobMissing):
        store._build(dst, [(first, 1000), (gw.name("blobs/aa/bb/" + "cd" * 16), 10)])
    everything = store._client().list_blobs(include=["uncommittedblobs"])
    assert [b.name for b in everything] == [first]


# --- listing, orphan scan, recovery -------------------------------------------------------


def test_list_and_iter_blob_refs_honour_the_prefix(azurite: Azurite, tmp_path: Path) -> None:
    container = azurite.new_container()
    mine = NativeGateway(AzureCloud(azurite.store_config(container, "a/")), "a/",
                         str(tmp_path / "spool"))
    theirs = NativeGateway(AzureCloud(azurite.store_config(container, "ab/")), "ab/",
                           str(tmp_path / "spool"))
    refs = {put(mine, b"one"), put(mine, b"two")}
    _, parts = upload_parts(mine, [b"p"])
    put(theirs, b"not mine")
    mine.store.upload_file("a/stray-not-a-ref", __file__, os.path.getsize(__file__))
    assert set(mine.iter_blob_refs(older_than_s=-60)) == refs  # staged blocks are no blob
    refs.add(mine.assemble(parts).data_ref)
    assert set(mine.iter_blob_refs(older_than_s=-60)) == refs
    assert set(mine.iter_blob_refs(older_than_s=3600)) == set()
    listed = dict(mine.store.list("a/"))
    assert len(listed) == 4 and all(abs(t - time.time()) < 300 for t in listed.values())


def test_recover_discards_the_blocks_of_dead_uploads_only(azurite: Azurite,
                                                          tmp_path: Path) -> None:
    container = azurite.new_container()
    gw, theirs = (NativeGateway(AzureCloud(azurite.store_config(container, prefix)), prefix,
                                str(tmp_path / "spool")) for prefix in ("gw/", "other/"))
    live, live_parts = upload_parts(gw, [b"keep", b"me"])
    dead, _ = upload_parts(gw, [b"drop", b"these", b"blocks"])
    big = os.urandom(4 * MiB + 1)  # above the SDK's single Put Blob: committed blocks
    objects = {put(gw, b"small"): b"small", put(gw, b""): b"", put(gw, big): big}
    # NOTE: Put Blob objects (small, empty) and an empty result have no committed block,
    # like a dead upload's blob: the sweep must not take them for one.
    for bodies in ([b"done"], [b""]):
        _, parts = upload_parts(gw, bodies)
        objects[gw.assemble(parts).data_ref] = bodies[0]  # completed, upload row gone
    leftover = gw.name(gw.new_ref("object"))  # a copy build that died before its commit
    cloud(gw)._blob(leftover).stage_block(block_id(0, 0), b"half")
    other, other_parts = upload_parts(theirs, [b"another prefix"])
    gw.recover(lambda upload_id: upload_id == live)
    committed, uncommitted = all_blobs(gw)
    assert uncommitted == {gw.name(gw.reserved_ref(live)),
                           theirs.name(theirs.reserved_ref(other))}
    assert committed == {gw.name(ref) for ref in objects}
    for ref, body in objects.items():
        assert read(gw, ref) == body
    assert read(gw, gw.assemble(live_parts).data_ref) == b"keepme"
    assert read(theirs, theirs.assemble(other_parts).data_ref) == b"another prefix"


# --- error translation ------------------------------------------------------------------


def test_missing_blobs_raise_blob_missing(gw: NativeGateway) -> None:
    ghost = "blobs/00/11/" + "0011" * 8
    for call in (lambda: gw.size(ghost), lambda: gw.open_read(ghost, 0, 5),
                 lambda: gw.open_read(ghost), lambda: gw.copy(ghost, need_md5=False),
                 lambda: gw.copy(ghost, (0, 1), need_md5=True)):
        with pytest.raises(BlobMissing):
            call()
    with pytest.raises(BlobMissing):
        gw.store.copy(gw.name(ghost), gw.name("blobs/00/11/" + "1100" * 8))
    gw.delete(ghost)


def test_missing_container_is_a_gateway_error_naming_the_key(
        azurite: Azurite, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = AzureCloud(azurite.store_config("no-such-container"))
    gw = NativeGateway(store, "", str(tmp_path / "spool"))
    with caplog.at_level(logging.ERROR, logger="bleepstore.storage"):
        with pytest.raises(GatewayError, match="storage.azure.container"):
            gw.check()
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "storage.azure.container" in caplog.records[0].getMessage()
    with pytest.raises(GatewayError):
        put(gw, b"data")
    assert list(tmp_path.joinpath("spool").iterdir()) == []  # spool removed anyway


def test_bad_credentials_are_a_gateway_error(azurite: Azurite) -> None:
    wrong = azurite.connection_string.replace("AccountKey=Eby8", "AccountKey=Xby8")
    store = AzureCloud(AzureStorageConfig(container=azurite.new_container(),
                                          connection_string=wrong))
    with pytest.raises(GatewayError, match="storage.azure.connection_string"):
        store.check()
    with pytest.raises(GatewayError):
        store.size("blobs/00/00/" + "0" * 32)


def test_unset_config_is_a_gateway_error() -> None:
    with pytest.raises(GatewayError, match="storage.azure.container"):
        AzureCloud(AzureStorageConfig(connection_string="x")).check()
    with pytest.raises(GatewayError, match="storage.azure.connection_string"):
        AzureCloud(AzureStorageConfig(container="c")).check()
    with pytest.raises(GatewayError, match="storage.azure.connection_string"):
        AzureCloud(AzureStorageConfig(container="c", connection_string="garbage")).check()


def test_unreachable_endpoint_is_service_unavailable(tmp_path: Path) -> None:
    config = AzureStorageConfig(container="c", connection_string=connection_string(free_port()))
    store = AzureCloud(config, retry_total=0)
    for call in (store.check, lambda: store.size("x"), lambda: list(store.list("")),
                 lambda: store.read("x", 0, 10)):
        with pytest.raises(errors.ServiceUnavailable):
            call()
    gw = NativeGateway(store, "", str(tmp_path / "spool"))
    with pytest.raises(errors.ServiceUnavailable):
        put(gw, b"data")


def _sdk_error(kind: str, status: int | None = None, code: str | None = None) -> Exception:
    from azure.core import exceptions as az

    exc: Exception = getattr(az, kind)(message=f"{kind} {status} {code}")
    if status is not None:
        exc.__dict__.update(status_code=status, error_code=code)
    return exc


@pytest.mark.parametrize(("kind", "status", "code", "expected"), [
    ("ResourceNotFoundError", 404, "BlobNotFound", BlobMissing),
    ("ResourceNotFoundError", 404, "CannotVerifyCopySource", BlobMissing),
    ("ResourceNotFoundError", 404, "ContainerNotFound", GatewayError),
    ("ClientAuthenticationError", 403, "AuthenticationFailed", GatewayError),
    ("HttpResponseError", 403, "AuthorizationPermissionMismatch", GatewayError),
    ("HttpResponseError", 403, "CannotVerifyCopySource", GatewayError),
    ("ClientAuthenticationError", None, None, GatewayError),  # e.g. no managed identity
    ("HttpResponseError", 503, "ServerBusy", errors.SlowDown),
    ("HttpResponseError", 429, None, errors.SlowDown),
    ("HttpResponseError", 503, "ServiceUnavailable", errors.ServiceUnavailable),
    ("HttpResponseError", 500, "OperationTimedOut", errors.ServiceUnavailable),
    ("ServiceRequestError", None, None, errors.ServiceUnavailable),
    ("ServiceRequestTimeoutError", None, None, errors.ServiceUnavailable),
    ("ServiceResponseError", None, None, errors.ServiceUnavailable),
    ("ServiceResponseTimeoutError", None, None, errors.ServiceUnavailable),
    ("IncompleteReadError", None, None, errors.ServiceUnavailable),
    ("ResourceExistsError", 409, "BlobAlreadyExists", errors.InternalError),
    ("HttpResponseError", 400, "InvalidBlockList", errors.InternalError),
])
def test_error_table(kind: str, status: int | None, code: str | None,
                     expected: type[Exception]) -> None:
    """storage.md §4.1's table for errors Azurite cannot produce (throttling, timeouts)."""
    store = AzureCloud(AzureStorageConfig(container="c", connection_string="x"))
    with pytest.raises(expected) as caught:
        with store._translated("blobs/some/ref"):
            raise _sdk_error(kind, status, code)
    assert type(caught.value) is expected  # GatewayError is also an InternalError
    if expected is GatewayError:
        assert "storage.azure." in str(caught.value)


def test_no_sdk_import_and_no_client_before_first_use() -> None:
    code = ("import sys; from bleepstore.storage.azure import AzureCloud; "
            "from bleepstore.config import AzureStorageConfig; "
            "AzureCloud(AzureStorageConfig(container='c', connection_string='x')); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'azure'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"  # the gunicorn master constructs; workers connect


def test_threads_share_one_adapter(azurite: Azurite, tmp_path: Path) -> None:
    gw = backend(azurite, tmp_path)
    bodies = [os.urandom(300_000 + n) for n in range(16)]

    def round_trip(body: bytes) -> bool:
        ref = put(gw, body)
        same = read(gw, ref) == body
        gw.delete(ref)
        return same

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(round_trip, bodies))


def test_threads_upload_the_parts_of_one_upload(gw: NativeGateway) -> None:
    """Clients send parts in parallel: every part stages blocks on the same blob."""
    upload_id, _ = upload_parts(gw, [])
    bodies = [os.urandom(100_000 + n) for n in range(16)]
    with ThreadPoolExecutor(8) as pool:
        parts = list(pool.map(lambda n: put_part(gw, bodies[n - 1], upload_id, n),
                              range(1, 17)))
    assert read(gw, gw.assemble(parts).data_ref) == b"".join(bodies)


# --- memory -----------------------------------------------------------------------------


def test_memory_stays_flat_for_a_64_mib_upload_and_read(azurite: Azurite,
                                                       tmp_path: Path) -> None:
    gw = backend(azurite, tmp_path)
    size, piece = 64 * MiB, os.urandom(MiB)
    tracemalloc.start()
    try:
        writer = gw.open_writer("object")
        for _ in range(size // MiB):
            writer.write(piece)
        tracemalloc.reset_peak()
        staged = writer.finish()
        upload_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        digest = hashlib.md5()
        total = 0
        for chunk in gw.open_read(staged.data_ref):
            digest.update(chunk)
            total += len(chunk)
        read_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == size and digest.hexdigest() == staged.md5_hex
    # upload: the SDK's sub-stream buffers (<= 4 MiB) for upload_concurrency=4 blocks in
    # flight (measured ~20 MiB); read: one 1 MiB GET, which the SDK collects through a
    # list pre-sized to its byte count (measured ~12 MiB). Neither grows with the object.
    assert upload_peak < 28 * MiB, upload_peak
    assert read_peak < 16 * MiB, read_peak


def test_memory_stays_flat_for_a_64_mib_part(azurite: Azurite, tmp_path: Path) -> None:
    """upload_part stages the part's blocks (5 of 12.8 MiB here) from the spool file."""
    gw = backend(azurite, tmp_path)
    size, piece = 64 * MiB, os.urandom(MiB)
    upload_id, _ = upload_parts(gw, [])
    writer = gw.open_writer("part", upload_id, 1)
    for _ in range(size // MiB):
        writer.write(piece)
    tracemalloc.start()
    try:
        staged = writer.finish()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert staged.backend_ref == str(-(-size // 5))
    # NOTE: measured ~0.4 MiB (the SDK streams each slice of the file). Blocks read
    # whole would be 12.8 MiB each, four in flight: ~52 MiB measured.
    assert peak < 8 * MiB, peak
    part = Part(upload_id, 1, staged.size, '"x"', "", staged.data_ref,
                backend_ref=staged.backend_ref)
    result = gw.assemble([part])
    digest = hashlib.md5()
    for chunk in gw.open_read(result.data_ref):
        digest.update(chunk)
    assert (gw.size(result.data_ref), digest.hexdigest()) == (size, staged.md5_hex)
