"""LocalBackend on a real filesystem (tmp_path): durability protocol, bounds, safety, recovery."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bleepstore.model import Part
from bleepstore.storage.backend import BlobMissing, BlobReader, BlobWriter, StorageBackend
from bleepstore.storage.local import LocalBackend

REPO = Path(__file__).resolve().parents[3]
OBJECT_REF = re.compile(r"blobs/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{32}")
PART_REF = re.compile(r"multipart/[0-9a-f]{32}/[0-9]{5}-[0-9a-f]{32}")
UID = "0123456789abcdef0123456789abcdef"
MiB = 1 << 20


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    b = LocalBackend(tmp_path / "root")
    b.recover(lambda _uid: True)
    return b


def payload(n: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(n))


def put(backend: LocalBackend, data: bytes, kind: str = "object", **kw: object) -> str:
    w = backend.open_writer(kind, **kw)  # type: ignore[arg-type]
    for i in range(0, len(data), 65536):
        w.write(data[i : i + 65536])
    staged = w.finish()
    assert staged.size == len(data)
    assert staged.md5_hex == hashlib.md5(data).hexdigest()
    return staged.data_ref


def staging_files(backend: LocalBackend) -> list[str]:
    return os.listdir(backend.root / ".tmp")


def all_files(root: Path, sub: str) -> list[Path]:
    return [p for p in (root / sub).rglob("*") if not p.is_dir()]


def test_conforms_to_the_protocols(backend: LocalBackend) -> None:
    # The annotations are the real check (mypy); at runtime, exercise the same objects.
    seam: StorageBackend = backend
    writer: BlobWriter = seam.open_writer("object")
    writer.write(b"p")
    reader: BlobReader = seam.open_read(writer.finish().data_ref)
    assert reader.read() == b"p"
    reader.close()


# -- write / read ----------------------------------------------------------------------


def test_round_trip_and_ref_shape(backend: LocalBackend) -> None:
    data = payload(3 * MiB + 17)
    ref = put(backend, data)
    assert OBJECT_REF.fullmatch(ref)
    assert (backend.root / ref).stat().st_mode & 0o777 == 0o600
    assert backend.size(ref) == len(data)
    with backend.open_read(ref) as r:
        assert b"".join(r) == data
    assert staging_files(backend) == []


def test_every_write_gets_a_fresh_ref(backend: LocalBackend) -> None:
    refs = {put(backend, b"same") for _ in range(5)}
    assert len(refs) == 5


def test_part_ref_shape(backend: LocalBackend) -> None:
    ref = put(backend, b"part", "part", upload_id=UID, part_number=7)
    assert PART_REF.fullmatch(ref) and ref.startswith(f"multipart/{UID}/00007-")


@pytest.mark.parametrize(
    "kw",
    [
        {"upload_id": "../../etc", "part_number": 1},
        {"upload_id": UID.upper(), "part_number": 1},
        {"upload_id": UID + "\n", "part_number": 1},
        {"upload_id": UID, "part_number": 0},
        {"upload_id": UID, "part_number": 10001},
        {"upload_id": UID, "part_number": True},
        {"upload_id": None, "part_number": 1},
    ],
)
def test_bad_part_arguments_refused(backend: LocalBackend, kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        backend.open_writer("part", **kw)  # type: ignore[arg-type]
    assert staging_files(backend) == []


def test_bad_kind_refused(backend: LocalBackend) -> None:
    with pytest.raises(ValueError):
        backend.open_writer("../x")
    with pytest.raises(ValueError):
        backend.open_writer("object", upload_id=UID)


@pytest.mark.parametrize(
    "offset,length", [(0, 0), (0, 1), (5, 10), (MiB - 1, 3), (100, None), (MiB + 5, 2 * MiB)]
)
def test_range_read_bounds(backend: LocalBackend, offset: int, length: int | None) -> None:
    data = payload(3 * MiB + 11)
    ref = put(backend, data)
    want = data[offset : None if length is None else offset + length]
    with backend.open_read(ref, offset, length) as r:
        assert isinstance(r, io.FileIO)
        assert os.lseek(r.fileno(), 0, os.SEEK_CUR) == offset  # what gunicorn sendfile()s from
        chunks = list(r)
    assert all(len(c) <= MiB for c in chunks)
    assert b"".join(chunks) == want
    with backend.open_read(ref, offset, length) as r:
        assert r.read() == want  # read() without a size is still bounded
        assert r.read(10) == b""
    with backend.open_read(ref, offset, length) as r:
        got = bytearray()
        while piece := r.read(4096 * 3 + 1):
            got += piece
        assert bytes(got) == want
    with backend.open_read(ref, offset, length) as r:
        buf = bytearray(len(data))
        assert r.readinto(buf) == len(want) and bytes(buf[: len(want)]) == want


def test_read_never_passes_range_end_even_after_seek(backend: LocalBackend) -> None:
    ref = put(backend, b"0123456789")
    with backend.open_read(ref, 2, 3) as r:
        assert r.read(100) == b"234"
        r.seek(0)
        assert r.read(100) == b"01234"  # the end bound is absolute, never past offset+length


def test_sendfile_like_gunicorn(backend: LocalBackend) -> None:
    data = payload(20000)
    ref = put(backend, data)
    a, b = socket.socketpair()
    with a, b, backend.open_read(ref, 1000, 5000) as r:
        start = os.lseek(r.fileno(), 0, os.SEEK_CUR)
        a.sendfile(r, offset=start, count=5000)
        a.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := b.recv(65536):
            got += chunk
    assert got == data[1000:6000]


def test_close_closes_fd(backend: LocalBackend) -> None:
    ref = put(backend, b"abc")
    r = backend.open_read(ref)
    fd = r.fileno()
    r.close()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_missing_blob(backend: LocalBackend) -> None:
    ref = "blobs/aa/bb/aabb" + "0" * 28
    with pytest.raises(BlobMissing):
        backend.open_read(ref)
    with pytest.raises(BlobMissing):
        backend.size(ref)
    with pytest.raises(BlobMissing):
        backend.copy(ref, need_md5=False)
    with pytest.raises(BlobMissing):
        backend.copy(ref, need_md5=True)


def test_writer_streams_to_disk_without_buffering(backend: LocalBackend) -> None:
    w = backend.open_writer("object")
    (name,) = staging_files(backend)
    for i in range(1, 4):
        w.write(b"x" * 1000)
        assert w.size == 1000 * i
        assert os.path.getsize(backend.root / ".tmp" / name) == 1000 * i
    w.abort()


def test_constructor_does_no_io_and_dirs_are_lazy(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    assert b.root == tmp_path / "fresh"
    ref = put(b, b"hello")
    assert b.open_read(ref).read() == b"hello"


# -- abort and failures ----------------------------------------------------------------


def test_abort_leaves_nothing_and_is_idempotent(backend: LocalBackend) -> None:
    w = backend.open_writer("object")
    w.write(b"partial")
    assert len(staging_files(backend)) == 1
    w.abort()
    w.abort()
    assert staging_files(backend) == []
    assert all_files(backend.root, "blobs") == []
    with pytest.raises(ValueError):
        w.write(b"more")


def test_abort_after_finish_keeps_the_blob(backend: LocalBackend) -> None:
    w = backend.open_writer("object")
    w.write(b"keep")
    ref = w.finish().data_ref
    w.abort()
    assert backend.size(ref) == 4


def test_enospc_during_write_then_abort_cleans_up(
    backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulated: a real full disk (a tiny tmpfs/loop mount) is exercised by the e2e crash suite.
    w = backend.open_writer("object")
    w.write(b"ok")

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "write", full)
        with pytest.raises(OSError) as info:
            w.write(b"x" * 1024)
    assert info.value.errno == errno.ENOSPC
    w.abort()
    assert staging_files(backend) == []
    assert all_files(backend.root, "blobs") == []


def test_failed_finish_cleans_up(backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    w = backend.open_writer("object")
    w.write(b"data")

    def no_rename(src: str, dst: str) -> None:
        raise OSError(errno.EIO, "I/O error")

    with monkeypatch.context() as m:
        m.setattr(os, "rename", no_rename)
        with pytest.raises(OSError):
            w.finish()
    assert staging_files(backend) == []
    assert all_files(backend.root, "blobs") == []
    w.abort()  # still idempotent


# -- ref safety ------------------------------------------------------------------------

BAD_REFS = [
    "blobs/../../etc/passwd",
    "/etc/passwd",
    "blobs/aa/bb/" + "a" * 32 + "\x00",
    "blobs/aa/bb/" + "a" * 32 + "\n",
    "blobs/aa/bb/" + "A" * 32,
    "blobs/aa/bb/" + "a" * 31,
    "multipart/" + UID + "/1-" + "a" * 32,
    "multipart/../" + "a" * 32 + "/00001-" + "a" * 32,
    "upload:" + UID,  # only delete() accepts upload refs
    ".tmp/" + "a" * 32,
    "",
]


@pytest.mark.parametrize("ref", BAD_REFS)
def test_traversal_shaped_refs_refused(backend: LocalBackend, ref: str) -> None:
    for call in (
        lambda: backend.open_read(ref),
        lambda: backend.size(ref),
        lambda: backend.copy(ref, need_md5=False),
        lambda: backend.copy_to_part(ref, UID, 1, None),
        lambda: backend.assemble([Part(UID, 1, 1, '"e"', "", ref)]),
    ):
        with pytest.raises(ValueError):
            call()
    if not ref.startswith("upload:"):
        with pytest.raises(ValueError):
            backend.delete(ref)


@pytest.mark.parametrize("ref", ["upload:../x", "upload:" + UID + "\n", "upload:" + UID.upper()])
def test_bad_upload_refs_refused_by_delete(backend: LocalBackend, ref: str) -> None:
    with pytest.raises(ValueError):
        backend.delete(ref)


def test_symlinked_fanout_dir_pointing_outside_is_refused(
    backend: LocalBackend, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    w = "ab" + "cd" + "e" * 28
    (outside / "cd").mkdir(parents=True)
    (outside / "cd" / w).write_bytes(b"secret")
    (backend.root / "blobs" / "ab").symlink_to(outside)
    ref = f"blobs/ab/cd/{w}"
    for call in (
        lambda: backend.open_read(ref),
        lambda: backend.size(ref),
        lambda: backend.delete(ref),
        lambda: backend.copy(ref, need_md5=False),
    ):
        with pytest.raises(ValueError):
            call()
    assert (outside / "cd" / w).read_bytes() == b"secret"


def test_symlinked_upload_dir_pointing_outside_is_refused(
    backend: LocalBackend, tmp_path: Path
) -> None:
    outside = tmp_path / "victim"
    outside.mkdir()
    (outside / "file").write_bytes(b"keep")
    (backend.root / "multipart" / UID).symlink_to(outside)
    with pytest.raises(ValueError):
        backend.delete("upload:" + UID)
    with pytest.raises(ValueError):
        backend.open_writer("part", upload_id=UID, part_number=1)
    assert (outside / "file").read_bytes() == b"keep"


def test_symlinked_blob_inside_root_is_not_followed(backend: LocalBackend) -> None:
    target = put(backend, b"target")
    link = "blobs/11/22/1122" + "0" * 28
    (backend.root / "blobs" / "11" / "22").mkdir(parents=True)
    (backend.root / link).symlink_to(backend.root / target)
    with pytest.raises(OSError) as info:
        backend.open_read(link)
    assert info.value.errno == errno.ELOOP
    with pytest.raises(OSError):
        backend.size(link)
    with pytest.raises(OSError):
        backend.copy(link, need_md5=False)
    with pytest.raises(OSError):
        backend.copy(link, need_md5=True)
    backend.delete(link)  # removes the link only
    assert not os.path.lexists(backend.root / link)
    assert backend.size(target) == 6


def test_staging_dir_symlinked_outside_is_refused(backend: LocalBackend, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (backend.root / ".tmp").rmdir()
    (backend.root / ".tmp").symlink_to(outside)
    with pytest.raises(ValueError):
        backend.open_writer("object")
    assert list(outside.iterdir()) == []


# -- delete ----------------------------------------------------------------------------


def test_delete_idempotent(backend: LocalBackend) -> None:
    ref = put(backend, b"bye")
    backend.delete(ref)
    backend.delete(ref)
    with pytest.raises(BlobMissing):
        backend.size(ref)


def test_delete_upload_ref(backend: LocalBackend) -> None:
    refs = [put(backend, b"p%d" % n, "part", upload_id=UID, part_number=n) for n in (1, 2)]
    other = put(backend, b"x", "part", upload_id="f" * 32, part_number=1)
    backend.delete("upload:" + UID)
    backend.delete("upload:" + UID)
    assert not (backend.root / "multipart" / UID).exists()
    for ref in refs:
        with pytest.raises(BlobMissing):
            backend.size(ref)
    assert backend.size(other) == 1


# -- copy ------------------------------------------------------------------------------


def test_full_copy_is_a_hard_link(backend: LocalBackend) -> None:
    data = payload(100_000)
    src = put(backend, data)
    staged = backend.copy(src, need_md5=False)
    assert OBJECT_REF.fullmatch(staged.data_ref) and staged.data_ref != src
    assert (staged.size, staged.md5_hex) == (len(data), "")
    assert os.stat(backend.root / src).st_ino == os.stat(backend.root / staged.data_ref).st_ino
    backend.delete(src)
    assert backend.open_read(staged.data_ref).read() == data


def test_full_copy_falls_back_to_bytes_on_exdev(
    backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = payload(5000)
    src = put(backend, data)

    def cross_device(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    staged = backend.copy(src, need_md5=False)
    assert os.stat(backend.root / src).st_ino != os.stat(backend.root / staged.data_ref).st_ino
    assert backend.open_read(staged.data_ref).read() == data
    assert staging_files(backend) == []


def test_full_copy_with_md5(backend: LocalBackend) -> None:
    data = payload(MiB * 2 + 3)
    src = put(backend, data)
    staged = backend.copy(src, need_md5=True)
    assert staged.md5_hex == hashlib.md5(data).hexdigest() and staged.size == len(data)
    assert os.stat(backend.root / src).st_ino != os.stat(backend.root / staged.data_ref).st_ino


@pytest.mark.parametrize("first,last", [(0, 0), (3, 9), (MiB - 2, MiB + 2), (0, 2 * MiB + 2)])
def test_range_copy(backend: LocalBackend, first: int, last: int) -> None:
    data = payload(MiB * 2 + 3)
    src = put(backend, data)
    want = data[first : last + 1]  # inclusive, like x-amz-copy-source-range
    for staged in (
        backend.copy(src, (first, last), need_md5=False),
        backend.copy_to_part(src, UID, 3, (first, last)),
    ):
        assert staged.md5_hex == hashlib.md5(want).hexdigest()
        assert staged.size == len(want)
        assert backend.open_read(staged.data_ref).read() == want
    assert PART_REF.fullmatch(staged.data_ref) and f"/{UID}/00003-" in staged.data_ref


@pytest.mark.parametrize("byte_range", [(5, 4), (-1, 3), (0, 10), (10, 10)])
def test_range_copy_out_of_bounds(backend: LocalBackend, byte_range: tuple[int, int]) -> None:
    src = put(backend, b"0123456789")
    with pytest.raises(ValueError):
        backend.copy(src, byte_range, need_md5=True)
    assert staging_files(backend) == []


# -- assemble --------------------------------------------------------------------------


def make_parts(backend: LocalBackend, sizes: list[int]) -> tuple[list[Part], bytes]:
    parts, whole = [], b""
    for n, size in enumerate(sizes, start=1):
        data = payload(size, seed=n)
        ref = put(backend, data, "part", upload_id=UID, part_number=n)
        parts.append(Part(UID, n, size, '"x"', "", ref))
        whole += data
    return parts, whole


@pytest.mark.parametrize("no_cfr", [False, True])
def test_assemble(backend: LocalBackend, monkeypatch: pytest.MonkeyPatch, no_cfr: bool) -> None:
    parts, whole = make_parts(backend, [MiB + 1, 5, 3 * MiB, 0, 77])
    if no_cfr:  # a kernel/filesystem without copy_file_range: the read/write loop

        def unsupported(*args: object, **kwargs: object) -> int:
            raise OSError(errno.ENOSYS, "Function not implemented")

        monkeypatch.setattr(os, "copy_file_range", unsupported)
    staged = backend.assemble(list(reversed(parts))[::-1])
    assert OBJECT_REF.fullmatch(staged.data_ref)
    assert (staged.size, staged.md5_hex) == (len(whole), "")
    digest = hashlib.md5()
    for chunk in backend.open_read(staged.data_ref):
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.md5(whole).hexdigest()
    assert staging_files(backend) == []


def test_assemble_order_matters(backend: LocalBackend) -> None:
    parts, _ = make_parts(backend, [10, 20])
    staged = backend.assemble([parts[1], parts[0]])
    assert backend.open_read(staged.data_ref).read() == payload(20, 2) + payload(10, 1)


def test_assemble_failures_leave_no_staging(backend: LocalBackend) -> None:
    parts, _ = make_parts(backend, [10, 20])
    wrong = Part(UID, 2, 21, '"x"', "", parts[1].data_ref)
    with pytest.raises(ValueError):
        backend.assemble([parts[0], wrong])
    backend.delete(parts[1].data_ref)
    with pytest.raises(BlobMissing):
        backend.assemble(parts)
    assert staging_files(backend) == []
    assert all_files(backend.root, "blobs") == []


# -- check / recover / orphan scan -----------------------------------------------------


def test_check(backend: LocalBackend, tmp_path: Path) -> None:
    backend.check()
    assert staging_files(backend) == []
    with pytest.raises(OSError):
        LocalBackend(tmp_path / "nowhere").check()


def test_recover(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path / "r")
    live = "a" * 32
    dead = "b" * 32
    keep = put(b, b"live", "part", upload_id=live, part_number=1)
    put(b, b"dead", "part", upload_id=dead, part_number=1)
    obj = put(b, b"obj")
    (b.root / "multipart" / "not-an-upload").mkdir()
    (b.root / "multipart" / ("c" * 32)).write_bytes(b"a file, not a dir")
    (b.root / "multipart" / ("d" * 32)).symlink_to(tmp_path)
    w = b.open_writer("object")
    w.write(b"interrupted")
    (b.root / ".tmp" / "junk").write_bytes(b"j")
    report = b.recover(lambda uid: uid in (live, "c" * 32, "d" * 32))
    assert (report.staging_removed, report.uploads_removed, report.uploads_kept) == (2, 4, 1)
    assert staging_files(b) == []
    assert os.listdir(b.root / "multipart") == [live]
    assert b.size(keep) == 4 and b.size(obj) == 3
    assert tmp_path.exists()
    for sub in (".tmp", "blobs", "multipart"):
        assert (b.root / sub).stat().st_mode & 0o777 == 0o700


def test_iter_blob_refs(backend: LocalBackend) -> None:
    refs = {
        put(backend, b"o1"),
        put(backend, b"o2"),
        put(backend, b"p", "part", upload_id=UID, part_number=2),
    }
    (backend.root / "blobs" / "zz").mkdir()
    (backend.root / "blobs" / "ab" / "cd").mkdir(parents=True)
    (backend.root / "blobs" / "ab" / "cd" / "stray").write_bytes(b"")
    w = backend.open_writer("object")  # staging files are never reported
    w.write(b"x")
    assert set(backend.iter_blob_refs(older_than_s=-60)) == refs
    assert list(backend.iter_blob_refs(older_than_s=3600)) == []
    w.abort()


# -- crash hook ------------------------------------------------------------------------


def run_with_fault(root: Path, fault: str, script: str) -> subprocess.CompletedProcess[bytes]:
    code = (
        "from bleepstore.storage.local import LocalBackend\n" + f"b = LocalBackend({str(root)!r})\n"
    )
    env = {**os.environ, "BLEEPSTORE_FAULT": fault, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", code + textwrap.dedent(script)],
        env=env,
        capture_output=True,
        timeout=60,
    )


def test_sigkill_before_rename_leaves_only_staging(tmp_path: Path) -> None:
    root = tmp_path / "crash"
    proc = run_with_fault(
        root,
        "blob.before_rename",
        """
        w = b.open_writer("object")
        w.write(b"x" * 100000)
        w.finish()
        print("survived")
    """,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert b"survived" not in proc.stdout
    assert len(os.listdir(root / ".tmp")) == 1
    assert all_files(root, "blobs") == []
    b = LocalBackend(root)
    assert b.recover(lambda _uid: True).staging_removed == 1
    assert os.listdir(root / ".tmp") == []


def test_sigkill_after_rename_leaves_unreferenced_blob(tmp_path: Path) -> None:
    root = tmp_path / "crash"
    proc = run_with_fault(
        root,
        "blob.after_rename",
        """
        w = b.open_writer("object")
        w.write(b"y" * 1000)
        w.finish()
    """,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert os.listdir(root / ".tmp") == []
    (blob,) = list(LocalBackend(root).iter_blob_refs(older_than_s=-60))
    assert LocalBackend(root).size(blob) == 1000


def test_sigkill_during_assembly(tmp_path: Path) -> None:
    root = tmp_path / "crash"
    b = LocalBackend(root)
    parts, _ = make_parts(b, [1000, 2000])
    proc = run_with_fault(
        root,
        "assemble.middle",
        f"""
        from bleepstore.model import Part
        b.assemble({parts!r})
    """,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert all_files(root, "blobs") == []
    assert len(os.listdir(root / ".tmp")) == 1
    assert b.recover(lambda uid: True).staging_removed == 1
    assert b.assemble(parts).size == 3000  # the parts are intact: completing again works


def test_fault_hook_is_inert_when_unarmed(tmp_path: Path) -> None:
    proc = run_with_fault(
        tmp_path / "ok",
        "something.else",
        """
        w = b.open_writer("object")
        w.write(b"z")
        print(w.finish().size)
    """,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == b"1", proc.stderr
