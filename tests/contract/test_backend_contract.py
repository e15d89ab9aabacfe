"""What core/ relies on from every blob backend (storage/backend.py), on each real backend:
local disk, and the AWS, GCS and Azure gateways against moto_server, the GCS emulator and
Azurite. Backend-specific behaviour (compose chaining, block splitting, error mapping per
SDK) is in each gateway's own test file."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from support.blobs import put, put_part
from support.blobs import read as read_all

from bleepstore import errors
from bleepstore.model import Part
from bleepstore.storage.backend import BlobMissing

OBJECT_REF = re.compile(r"blobs/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{32}")
PART_REF = re.compile(r"multipart/[0-9a-f]{32}/[0-9]{5}-[0-9a-f]{32}")
UPLOAD = "0123456789abcdef0123456789abcdef"
MiB = 1 << 20


def payload(n: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(n))


def test_write_then_read_whole_and_ranges(backend: Any) -> None:
    data = payload(3 * MiB + 17)
    ref = put(backend, data)
    assert OBJECT_REF.fullmatch(ref)
    assert backend.size(ref) == len(data)
    assert read_all(backend, ref) == data
    assert read_all(backend, ref, 5, 10) == data[5:15]
    assert read_all(backend, ref, MiB - 3, MiB + 6) == data[MiB - 3:2 * MiB + 3]
    assert read_all(backend, ref, len(data) - 1, 1) == data[-1:]
    reader = backend.open_read(ref, 10, 100)
    try:
        assert reader.read(30) == data[10:40]
        assert reader.read() == data[40:110]
        assert reader.read(5) == b""
    finally:
        reader.close()


def test_empty_object(backend: Any) -> None:
    ref = put(backend, b"")
    assert backend.size(ref) == 0
    assert read_all(backend, ref) == b""


def test_every_write_gets_a_fresh_ref(backend: Any) -> None:
    refs = {put(backend, b"same bytes") for _ in range(3)}
    assert len(refs) == 3


def test_abort_leaves_nothing(backend: Any) -> None:
    writer = backend.open_writer("object")
    writer.write(b"half a body")
    writer.abort()
    writer.abort()
    assert list(backend.iter_blob_refs(older_than_s=-3600)) == []


def test_copy_whole_and_ranged(backend: Any) -> None:
    data = payload(2 * MiB + 5, seed=3)
    src = put(backend, data)
    whole = backend.copy(src, None, need_md5=False)
    assert whole.data_ref != src and whole.size == len(data)
    assert read_all(backend, whole.data_ref) == data
    hashed = backend.copy(src, None, need_md5=True)
    assert hashed.md5_hex == hashlib.md5(data).hexdigest()
    ranged = backend.copy(src, (100, 1099), need_md5=True)
    assert (ranged.size, ranged.md5_hex) == (1000, hashlib.md5(data[100:1100]).hexdigest())
    assert read_all(backend, ranged.data_ref) == data[100:1100]
    backend.delete(src)
    assert read_all(backend, whole.data_ref) == data  # copies are independent blobs


def _as_part(staged: Any, number: int, data: bytes) -> Part:
    return Part(UPLOAD, number, staged.size, f'"{hashlib.md5(data).hexdigest()}"',
                "2026-01-01T00:00:00.000Z", staged.data_ref, backend_ref=staged.backend_ref)


def test_parts_and_assembly(backend: Any) -> None:
    reserved = backend.init_upload(UPLOAD)
    assert reserved is None or OBJECT_REF.fullmatch(reserved)
    src = put(backend, payload(3 * MiB, seed=9))
    sizes = [5 * MiB, 5 * MiB, 123]
    datas = [payload(n, seed=i) for i, n in enumerate(sizes)]
    parts = [put_part(backend, data, UPLOAD, number) for number, data in enumerate(datas, 1)]
    assert all(PART_REF.fullmatch(p.data_ref) for p in parts)
    ranged = backend.copy_to_part(src, UPLOAD, 4, (0, 99))
    assert (ranged.size, ranged.md5_hex) == (100, hashlib.md5(payload(100, 9)).hexdigest())
    whole = backend.copy_to_part(src, UPLOAD, 5, None, need_md5=False)
    assert whole.size == 3 * MiB
    assert whole.md5_hex in ("", hashlib.md5(payload(3 * MiB, 9)).hexdigest())
    listed = [parts[0], parts[1], _as_part(whole, 5, payload(3 * MiB, 9))]  # a subset, in order
    staged = backend.assemble(listed)
    assert reserved is None or staged.data_ref == reserved
    expected = datas[0] + datas[1] + payload(3 * MiB, seed=9)
    assert staged.size == len(expected)
    assert read_all(backend, staged.data_ref) == expected
    assert read_all(backend, staged.data_ref, 5 * MiB - 2, 4) == datas[0][-2:] + datas[1][:2]
    backend.delete(f"upload:{UPLOAD}")  # the GC of a settled upload: parts go, object stays
    assert read_all(backend, staged.data_ref) == expected


def test_a_repeated_complete_builds_the_same_bytes(backend: Any) -> None:
    """A client's retried Complete (or one after a crash between build and commit)."""
    backend.init_upload(UPLOAD)
    datas = [payload(5 * MiB, 1), payload(10, 2)]
    parts = [put_part(backend, data, UPLOAD, n) for n, data in enumerate(datas, 1)]
    first = backend.assemble(parts)
    second = backend.assemble(parts)
    for staged in (first, second):
        assert read_all(backend, staged.data_ref) == b"".join(datas)


def test_a_part_uploaded_again_replaces_the_first(backend: Any) -> None:
    backend.init_upload(UPLOAD)
    one = put_part(backend, payload(5 * MiB, 1), UPLOAD, 1)
    put_part(backend, payload(5 * MiB, 7), UPLOAD, 1)
    last = put_part(backend, payload(5 * MiB, 3), UPLOAD, 1)
    two = put_part(backend, b"tail", UPLOAD, 2)
    assert one.data_ref != last.data_ref
    staged = backend.assemble([last, two])
    assert read_all(backend, staged.data_ref) == payload(5 * MiB, 3) + b"tail"


def test_delete_is_idempotent_and_missing_blobs_say_so(backend: Any) -> None:
    ref = put(backend, b"short-lived")
    backend.delete(ref)
    backend.delete(ref)
    with pytest.raises(BlobMissing):
        backend.size(ref)
    with pytest.raises(BlobMissing):
        read_all(backend, ref)
    with pytest.raises(BlobMissing):
        backend.copy(ref, None, need_md5=False)


@pytest.mark.parametrize("ref", ["../etc/passwd", "blobs/../../x", "", "upload:xyz",
                                 "blobs/ab/cd/" + "g" * 32])
def test_malformed_refs_are_refused_before_any_io(backend: Any, ref: str) -> None:
    with pytest.raises(ValueError):
        backend.size(ref)


def test_orphan_scan_and_recovery_see_only_this_store(backend: Any) -> None:
    kept = put(backend, b"referenced")
    live, dead = UPLOAD, "f" * 32
    for upload_id in (live, dead):
        backend.init_upload(upload_id)
    live_part = put_part(backend, b"live part", live, 1)
    dead_part = put_part(backend, b"dead part", dead, 1)
    refs = set(backend.iter_blob_refs(older_than_s=-3600))
    assert kept in refs
    assert set(backend.iter_blob_refs(older_than_s=3600)) == set()  # all too young
    backend.recover(lambda upload_id: upload_id == live)
    with pytest.raises((BlobMissing, errors.InvalidPart, errors.NoSuchUpload)):
        backend.assemble([dead_part])  # what the dead upload left is gone
    assert read_all(backend, backend.assemble([live_part]).data_ref) == b"live part"
    assert read_all(backend, kept) == b"referenced"
    backend.check()
