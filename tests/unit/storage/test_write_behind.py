"""Large staging writes go through the write-behind thread: same bytes, same MD5, and a
disk error is still reported to the request (real files; ENOSPC is simulated because a
full disk mid-write cannot be arranged in a unit test — the e2e disk-full test uses a
real tmpfs)."""

from __future__ import annotations

import errno
import hashlib
import os
import random
from pathlib import Path

import pytest

from bleepstore.storage import writebehind
from bleepstore.storage.local import LocalBackend
from bleepstore.storage.localio import WRITE_BEHIND_AFTER


def test_large_body_round_trips_with_its_md5(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    writer = backend.open_writer("object")
    rng = random.Random(7)
    expected = hashlib.md5()
    sizes = []
    while sum(sizes) < WRITE_BEHIND_AFTER * 3:
        chunk = rng.randbytes(rng.randint(1, 1 << 20))
        sizes.append(len(chunk))
        expected.update(chunk)
        writer.write(chunk if rng.random() < 0.5 else bytearray(chunk))
    staged = writer.finish()
    assert staged.size == sum(sizes)
    assert staged.md5_hex == expected.hexdigest()
    reader = backend.open_read(staged.data_ref)
    got = hashlib.md5()
    for chunk in reader:
        got.update(chunk)
    reader.close()
    assert got.hexdigest() == expected.hexdigest()


def test_disk_error_in_the_helper_thread_reaches_the_writer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = LocalBackend(tmp_path)
    writer = backend.open_writer("object")
    writer.write(b"x" * WRITE_BEHIND_AFTER)  # inline

    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writebehind, "write_all", full)
    with pytest.raises(OSError) as exc:
        for _ in range(64):
            writer.write(b"y" * (1 << 20))
        writer.finish()
    assert exc.value.errno == errno.ENOSPC
    writer.abort()
    assert os.listdir(tmp_path / ".tmp") == []
