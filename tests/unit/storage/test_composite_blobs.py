"""Composite blobs (storage/composite.py): a completed multipart upload is its part files,
hard-linked, not a copy; every read, copy, delete and scan of the local backend handles it."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import stat
from pathlib import Path

import pytest

from bleepstore import errors
from bleepstore.model import Part
from bleepstore.storage import composite as composite_module
from bleepstore.storage.backend import BlobMissing
from bleepstore.storage.composite import EAGER_SEGMENTS, CompositeReader
from bleepstore.storage.local import LocalBackend

UID = "fedcba9876543210fedcba9876543210"
MiB = 1 << 20
SIZES = [MiB + 1, 5, 3 * MiB, 0, 77]


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    b = LocalBackend(tmp_path / "root")
    b.recover(lambda _uid: True)
    return b


def write_parts(backend: LocalBackend, sizes: list[int]) -> tuple[list[Part], bytes]:
    rng = random.Random(len(sizes))
    parts, chunks = [], []
    for number, size in enumerate(sizes, start=1):
        data = rng.randbytes(size)
        writer = backend.open_writer("part", upload_id=UID, part_number=number)
        writer.write(data)
        staged = writer.finish()
        parts.append(Part(UID, number, size, f'"{staged.md5_hex}"', "", staged.data_ref))
        chunks.append(data)
    return parts, b"".join(chunks)


@pytest.fixture
def composite(backend: LocalBackend) -> tuple[str, bytes, list[Part]]:
    parts, whole = write_parts(backend, SIZES)
    return backend.assemble(parts).data_ref, whole, parts


def path_of(backend: LocalBackend, ref: str) -> Path:
    return backend.root / ref


def test_assembly_links_the_parts_and_copies_nothing(
        backend: LocalBackend, composite: tuple[str, bytes, list[Part]]) -> None:
    ref, whole, parts = composite
    folder = path_of(backend, ref)
    assert folder.is_dir()
    names = sorted(os.listdir(folder))
    assert names == [f"{i:05d}-{size}" for i, size in enumerate(SIZES, start=1)]
    for name, part in zip(names, parts, strict=True):
        assert os.path.samefile(folder / name, backend.root / part.data_ref)  # one inode
    assert backend.size(ref) == len(whole)
    assert os.listdir(backend.root / ".tmp") == []


def test_the_object_outlives_its_upload(
        backend: LocalBackend, composite: tuple[str, bytes, list[Part]]) -> None:
    ref, whole, _ = composite
    backend.delete(f"upload:{UID}")  # what GC does once the Complete is committed
    assert not (backend.root / "multipart" / UID).exists()
    assert b"".join(backend.open_read(ref)) == whole


@pytest.mark.parametrize("offset,length", [
    (0, None), (0, 1), (MiB, 2), (MiB + 1, 5), (MiB + 3, MiB + 10), (MiB + 6, None),
    (4 * MiB + 5, 77), (4 * MiB + 5, 1000), (4 * MiB + 82, None), (10 * MiB, None),
    (MiB - 10, 3 * MiB + 20)])
def test_ranges_across_segments(backend: LocalBackend, composite: tuple[str, bytes, list[Part]],
                                offset: int, length: int | None) -> None:
    ref, whole, _ = composite
    want = whole[offset:] if length is None else whole[offset:offset + length]
    reader = backend.open_read(ref, offset, length)
    assert reader.tell() == offset
    assert b"".join(reader) == want
    assert reader.tell() == offset + len(want)
    reader.close()
    reader = backend.open_read(ref, offset, length)
    got = bytearray()
    while chunk := reader.read(333_333):
        got += chunk
    assert bytes(got) == want
    reader.close()


def test_readinto_and_sendfile_spans(backend: LocalBackend,
                                     composite: tuple[str, bytes, list[Part]]) -> None:
    ref, whole, _ = composite
    reader = backend.open_read(ref, 100, 2 * MiB)
    assert isinstance(reader, CompositeReader) and not hasattr(reader, "fileno")
    buf = bytearray(50)
    assert reader.readinto(buf) == 50 and bytes(buf) == whole[100:150]
    sent = b"".join(os.pread(fd, n, offset) for fd, offset, n in reader.sendfile_spans())
    assert sent == whole[150:100 + 2 * MiB]
    assert reader.read() == b"" and list(reader.sendfile_spans()) == []
    reader.close()
    reader.close()  # idempotent


def test_an_open_reader_survives_a_delete(backend: LocalBackend,
                                          composite: tuple[str, bytes, list[Part]]) -> None:
    """Local GC has no grace period: an overwrite may remove the blob while a GET streams."""
    ref, whole, _ = composite
    backend.delete(f"upload:{UID}")
    reader = backend.open_read(ref)
    backend.delete(ref)
    assert not path_of(backend, ref).exists()
    assert b"".join(reader) == whole
    with pytest.raises(BlobMissing):
        backend.open_read(ref)
    with pytest.raises(BlobMissing):
        backend.size(ref)
    backend.delete(ref)  # idempotent


def test_copies_of_a_composite(backend: LocalBackend,
                               composite: tuple[str, bytes, list[Part]]) -> None:
    ref, whole, _ = composite
    linked = backend.copy(ref, None, need_md5=False)
    assert path_of(backend, linked.data_ref).is_dir() and linked.md5_hex == ""
    assert (linked.size, b"".join(backend.open_read(linked.data_ref))) == (len(whole), whole)
    hashed = backend.copy(ref, None, need_md5=True)
    assert hashed.md5_hex == hashlib.md5(whole).hexdigest()
    assert path_of(backend, hashed.data_ref).is_file()
    ranged = backend.copy(ref, (MiB - 3, MiB + 9), need_md5=False)
    assert backend.open_read(ranged.data_ref).read() == whole[MiB - 3:MiB + 10]
    part = backend.copy_to_part(ref, UID, 9, (10, 4 * MiB + 20))
    assert part.md5_hex == hashlib.md5(whole[10:4 * MiB + 21]).hexdigest()
    backend.delete(ref)
    assert b"".join(backend.open_read(linked.data_ref)) == whole  # its own links


def test_a_composite_of_a_composite_is_flat(backend: LocalBackend,
                                            composite: tuple[str, bytes, list[Part]]) -> None:
    ref, whole, _ = composite
    again = backend.assemble([Part(UID, 1, len(whole), '"e"', "", ref),
                              Part(UID, 2, len(whole), '"e"', "", ref)])
    assert len(os.listdir(path_of(backend, again.data_ref))) == 2 * len(SIZES)
    assert b"".join(backend.open_read(again.data_ref)) == whole + whole


def test_one_part_is_linked_as_a_plain_file(backend: LocalBackend) -> None:
    parts, whole = write_parts(backend, [12345])
    staged = backend.assemble(parts)
    path = path_of(backend, staged.data_ref)
    assert path.is_file() and os.path.samefile(path, backend.root / parts[0].data_ref)
    assert backend.open_read(staged.data_ref).read() == whole


def test_without_hard_links_the_parts_are_copied(backend: LocalBackend,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    parts, whole = write_parts(backend, SIZES)

    def refused(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refused)
    staged = backend.assemble(parts)
    assert path_of(backend, staged.data_ref).is_file()
    assert backend.open_read(staged.data_ref).read() == whole
    assert os.listdir(backend.root / ".tmp") == []


def test_failures_leave_nothing_behind(backend: LocalBackend) -> None:
    parts, _ = write_parts(backend, [10, 20, 30])
    wrong = Part(UID, 3, 31, '"x"', "", parts[2].data_ref)
    with pytest.raises(ValueError):
        backend.assemble([parts[0], parts[1], wrong])
    backend.delete(parts[2].data_ref)
    with pytest.raises(BlobMissing):
        backend.assemble(parts)
    assert os.listdir(backend.root / ".tmp") == []
    assert list((backend.root / "blobs").rglob("*")) == []


def test_scan_delete_and_hostile_entries(backend: LocalBackend,
                                         composite: tuple[str, bytes, list[Part]]) -> None:
    ref, whole, _ = composite
    assert ref in set(backend.iter_blob_refs(older_than_s=-60))
    folder = path_of(backend, ref)
    (folder / "notes.txt").write_bytes(b"never served")  # outside the grammar: ignored
    assert backend.size(ref) == len(whole)
    assert b"".join(backend.open_read(ref)) == whole
    target = backend.root / "secret"
    target.write_bytes(b"x" * 5)
    first = sorted(os.listdir(folder))[0]
    os.unlink(folder / first)
    os.symlink(target, folder / first)  # a segment that is a symlink is never followed
    with pytest.raises((BlobMissing, OSError)):
        b"".join(backend.open_read(ref))
    backend.delete(ref)
    assert not folder.exists() and target.read_bytes() == b"x" * 5
    assert ref not in set(backend.iter_blob_refs(older_than_s=-60))


def test_modes_are_private(backend: LocalBackend,
                           composite: tuple[str, bytes, list[Part]]) -> None:
    ref, _, _ = composite
    assert stat.S_IMODE(os.stat(path_of(backend, ref)).st_mode) == 0o700


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_reader_holds_a_bounded_number_of_files(backend: LocalBackend) -> None:
    """A few parallel GETs of a 10,000-part object must not use up the worker's descriptors."""
    count = EAGER_SEGMENTS + 72
    parts, whole = write_parts(backend, [10] * count)
    ref = backend.assemble(parts).data_ref
    before = open_fds()
    reader = backend.open_read(ref)
    assert open_fds() - before == EAGER_SEGMENTS
    assert reader.read(5 * 10) == whole[:50]
    assert open_fds() - before <= EAGER_SEGMENTS
    got = reader.read(2000 - 50)
    assert open_fds() - before <= EAGER_SEGMENTS  # read-past files are closed as it goes
    assert got + b"".join(reader) == whole[50:]
    reader.close()
    assert open_fds() == before


def test_beyond_the_eager_files_a_deleted_composite_ends_the_read(backend: LocalBackend) -> None:
    parts, whole = write_parts(backend, [10] * (EAGER_SEGMENTS + 2))
    ref = backend.assemble(parts).data_ref
    backend.delete(f"upload:{UID}")
    reader = backend.open_read(ref)
    backend.delete(ref)
    assert reader.read(EAGER_SEGMENTS * 10) == whole[:EAGER_SEGMENTS * 10]  # held open
    with pytest.raises(BlobMissing):
        reader.read(10)  # the client sees a short body and retries
    reader.close()


def test_out_of_descriptors_is_slow_down(backend: LocalBackend,
                                         composite: tuple[str, bytes, list[Part]],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ref, _, _ = composite
    real_open = composite_module.open_ro
    opened: list[int] = []

    def exhausted(path: str) -> int:
        if len(opened) == 2:
            raise OSError(errno.EMFILE, "Too many open files")
        opened.append(real_open(path))
        return opened[-1]

    monkeypatch.setattr(composite_module, "open_ro", exhausted)
    before = open_fds()
    with pytest.raises(errors.SlowDown):
        backend.open_read(ref)
    assert open_fds() == before  # the two it had opened are closed again
