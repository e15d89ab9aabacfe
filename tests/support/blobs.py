"""Writing and reading blobs through any storage backend, for the backend tests."""

from __future__ import annotations

import hashlib
from typing import Any

MiB = 1 << 20


def put(backend: Any, data: bytes, kind: str = "object", upload_id: str | None = None,
        part_number: int | None = None, piece: int = 256 * 1024) -> str:
    """Write ``data`` in ``piece``-sized writes; check the staged size and MD5."""
    writer = backend.open_writer(kind, upload_id, part_number)
    for start in range(0, len(data), piece):
        writer.write(data[start:start + piece])
    staged = writer.finish()
    assert (staged.size, staged.md5_hex) == (len(data), hashlib.md5(data).hexdigest())
    return str(staged.data_ref)


def put_part(backend: Any, data: bytes, upload_id: str, number: int) -> Any:
    """Upload part ``number`` as core does; -> the ``Part`` row core would commit."""
    from bleepstore.model import Part

    writer = backend.open_writer("part", upload_id, number)
    writer.write(data)
    staged = writer.finish()
    return Part(upload_id, number, staged.size, f'"{hashlib.md5(data).hexdigest()}"',
                "2026-01-01T00:00:00.000Z", staged.data_ref, backend_ref=staged.backend_ref)


def read(backend: Any, ref: str, offset: int = 0, length: int | None = None) -> bytes:
    """Read by iteration, as gunicorn does; every chunk is at most 1 MiB."""
    reader = backend.open_read(ref, offset, length)
    try:
        chunks = list(reader)
    finally:
        reader.close()
    assert all(0 < len(c) <= MiB for c in chunks)
    return b"".join(chunks)
