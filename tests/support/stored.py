"""What a test server has stored, whatever its backend: the part blobs of an upload as
files on disk (local), objects in the cloud emulator (GCS) or parts inside a native upload
(AWS, Azure)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bleepstore.config import load
from bleepstore.runtime import build_storage
from bleepstore.storage.aws import AwsCloud
from bleepstore.storage.gateway import GatewayBackend, NativeGateway


@contextmanager
def server_environ(extra: dict[str, str]) -> Iterator[None]:
    """A server's environment in this process while its adapter is built and used (the
    GCS SDK reads STORAGE_EMULATOR_HOST when its client is built)."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def part_blobs(server: Any, upload_id: str | None = None) -> list[str]:
    """What the backend holds for the parts of an upload (or, with None, of every upload
    whose parts are objects): ``<nnnnn>-<w>`` names of part files or objects (local, GCS);
    ``<nnnnn>-native``, once per part number, for the parts inside a native upload (the
    AWS upstream's multipart upload, Azure's uncommitted blocks)."""
    folder = f"multipart/{upload_id}/" if upload_id else "multipart/"
    if server.backend == "local":
        root = Path(server.data) / "objects" / folder
        if not root.is_dir():
            return []
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    with server_environ(dict(server.env)):
        backend = build_storage(load(server.config_path, {**os.environ, **server.env}))
        assert isinstance(backend, GatewayBackend)
        if isinstance(backend, NativeGateway):
            names = ([backend.name(backend.reserved_ref(upload_id))] if upload_id else
                     _native_upload_names(backend))
            return [f"{n:05d}-native" for name in names
                    for n in sorted(_native_part_numbers(backend, name))]
        prefix = backend.prefix + folder
        return sorted(name[len(prefix):] for name, _ in backend.store.list(prefix))


def _native_upload_names(backend: NativeGateway) -> list[str]:
    store: Any = backend.store
    prefix = backend.prefix + "blobs/"
    if isinstance(store, AwsCloud):
        uploads = store.client().list_multipart_uploads(Bucket=store.bucket, Prefix=prefix)
        return sorted({str(u["Key"]) for u in uploads.get("Uploads", ())})
    return sorted(str(item.name) for item in store._client().list_blobs(
        name_starts_with=prefix, include=["uncommittedblobs"]))


def _native_part_numbers(backend: NativeGateway, name: str) -> set[int]:
    store: Any = backend.store
    if isinstance(store, AwsCloud):
        client = store.client()
        uploads = client.list_multipart_uploads(Bucket=store.bucket, Prefix=name)
        return {int(part["PartNumber"])
                for upload in uploads.get("Uploads", ()) if upload["Key"] == name
                for part in client.list_parts(Bucket=store.bucket, Key=name,
                                              UploadId=upload["UploadId"]).get("Parts", ())}
    from azure.core.exceptions import ResourceNotFoundError

    try:
        _, uncommitted = store._blob(name).get_block_list("uncommitted")
    except ResourceNotFoundError:
        return set()
    return {int(block.id.split("-")[0]) for block in uncommitted}
