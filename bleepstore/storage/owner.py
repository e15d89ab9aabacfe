"""Owner placement (cluster.md §9, ``cluster.data_placement: owner``): every node keeps
the blobs it received on its own disk; a read elsewhere streams them from the owner.

Refs name their owner: ``node/<node_id>/<local ref>``, so every path that moves a ref
(rows, copies, parts, GC intents, snapshots) carries the owner with it and no column has to
follow it around. Invariants:
- Writes always land on this node (a copy or an assembly streams remote sources in).
- A remote read asks the owner's internal endpoint (``/_bleepstore/internal/blob``, the
  cluster secret in ``X-BleepStore-Cluster-Token``) and streams its answer; an owner that
  cannot be reached is 503 SlowDown before any byte is sent, never other bytes.
- Only the owner deletes a blob (the applier records a GC intent on the owner only); an
  ``upload:<id>`` ref is every node's own part directory of that upload.
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from bleepstore import errors
from bleepstore.model import Part, StagedBlob
from bleepstore.storage.backend import BlobMissing, BlobReader, RecoveryReport
from bleepstore.storage.gateway import CloudReader
from bleepstore.storage.local import LocalBackend

OWNED = re.compile(r"node/([A-Za-z0-9._-]{1,64})/(.+)")
INTERNAL_PATH = "/_bleepstore/internal/blob"
TOKEN_HEADER = "X-BleepStore-Cluster-Token"
SIZE_HEADER = "X-BleepStore-Blob-Size"
CHUNK = 1 << 20


def owner_of(ref: str) -> str | None:
    match = OWNED.fullmatch(ref)
    return match.group(1) if match else None


class _OwnedWriter:
    def __init__(self, inner: Any, prefix: str) -> None:
        self._inner, self._prefix = inner, prefix

    @property
    def size(self) -> int:
        return int(self._inner.size)

    def write(self, data: bytes) -> None:
        self._inner.write(data)

    def finish(self) -> StagedBlob:
        staged: StagedBlob = self._inner.finish()
        return replace(staged, data_ref=self._prefix + staged.data_ref)

    def abort(self) -> None:
        self._inner.abort()


def _stream(conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
            length: int) -> Iterator[bytes]:
    """The owner's answer in chunks; the connection is closed when the reader is."""
    try:
        left = length
        while left:
            data = resp.read(min(CHUNK, left))
            if not data:
                raise ConnectionError("the owner closed the blob stream early")
            left -= len(data)
            yield data
    finally:
        conn.close()


class OwnerPlacement:
    """A StorageBackend over this node's LocalBackend and its peers' internal endpoints.
    ``api_addr(node_id)`` -> the node's S3 ``host:port`` (from ``cluster_nodes``)."""

    def __init__(self, local: LocalBackend, node_id: str, api_addr: Callable[[str], str | None],
                 token: str, timeout_s: float = 10.0) -> None:
        self.local, self.node_id, self._api_addr = local, node_id, api_addr
        self._token, self._timeout = token, timeout_s
        self._prefix = f"node/{node_id}/"

    # --- refs -----------------------------------------------------------------------------

    def _split(self, ref: str) -> tuple[str, str]:
        match = OWNED.fullmatch(ref)
        if match is None:
            raise ValueError(f"not an owner-placement ref: {ref!r}")
        return match.group(1), match.group(2)

    def _own(self, ref: str) -> str | None:
        """The local ref when this node owns ``ref``, else None."""
        node, local = self._split(ref)
        return local if node == self.node_id else None

    # --- writes ---------------------------------------------------------------------------

    def open_writer(self, kind: str, upload_id: str | None = None,
                    part_number: int | None = None) -> _OwnedWriter:
        return _OwnedWriter(self.local.open_writer(kind, upload_id, part_number), self._prefix)

    def _owned(self, staged: StagedBlob) -> StagedBlob:
        return replace(staged, data_ref=self._prefix + staged.data_ref)

    def _stream_into(self, writer: _OwnedWriter, ref: str,
                     byte_range: tuple[int, int] | None = None) -> None:
        offset, length = (0, None) if byte_range is None else \
            (byte_range[0], byte_range[1] - byte_range[0] + 1)
        reader = self.open_read(ref, offset, length)
        try:
            for chunk in reader:
                writer.write(chunk)
        finally:
            reader.close()

    def _streamed(self, writer: _OwnedWriter, sources: Sequence[tuple[str, Any]]) -> StagedBlob:
        try:
            for ref, byte_range in sources:
                self._stream_into(writer, ref, byte_range)
            return writer.finish()
        except BaseException:
            writer.abort()
            raise

    def copy(self, src_ref: str, byte_range: tuple[int, int] | None = None, *,
             need_md5: bool) -> StagedBlob:
        local = self._own(src_ref)
        if local is not None:
            return self._owned(self.local.copy(local, byte_range, need_md5=need_md5))
        return self._streamed(self.open_writer("object"), [(src_ref, byte_range)])

    def copy_to_part(self, src_ref: str, upload_id: str, part_number: int,
                     byte_range: tuple[int, int] | None, *, need_md5: bool = True) -> StagedBlob:
        local = self._own(src_ref)
        if local is not None:
            return self._owned(self.local.copy_to_part(local, upload_id, part_number,
                                                       byte_range, need_md5=need_md5))
        return self._streamed(self.open_writer("part", upload_id, part_number),
                              [(src_ref, byte_range)])

    def import_file(self, path: str, write_id: str) -> str:
        return self._prefix + self.local.import_file(path, write_id)

    def init_upload(self, upload_id: str) -> None:
        return None

    def assemble(self, parts: Sequence[Part]) -> StagedBlob:
        """The completing node's blob: local parts concatenated on disk, remote ones
        streamed in from their owners."""
        owned = [(p, self._own(p.data_ref)) for p in parts]
        local = [replace(p, data_ref=r) for p, r in owned if r is not None]
        if len(local) == len(parts):
            return self._owned(self.local.assemble(local))
        staged = self._streamed(self.open_writer("object"), [(p.data_ref, None) for p in parts])
        return replace(staged, md5_hex="")

    # --- reads ----------------------------------------------------------------------------

    def open_read(self, data_ref: str, offset: int = 0, length: int | None = None) -> BlobReader:
        local = self._own(data_ref)
        if local is not None:
            return self.local.open_read(local, offset, length)
        node, ref = self._split(data_ref)
        return self._fetch(node, ref, offset, length)[0]

    def _fetch(self, node: str, ref: str, offset: int,
               length: int | None) -> tuple[CloudReader, int]:
        """A reader of the owner's bytes, and the whole blob's size."""
        addr = self._api_addr(node)
        if not addr:
            raise errors.SlowDown(f"The node {node} holding this object is unknown.")
        host, _, port = addr.rpartition(":")
        query = f"ref={quote(ref, safe='')}&offset={offset}"
        if length is not None:
            query += f"&length={length}"
        conn = http.client.HTTPConnection(host, int(port), timeout=self._timeout)
        try:
            conn.request("GET", f"{INTERNAL_PATH}?{query}", headers={TOKEN_HEADER: self._token})
            resp = conn.getresponse()
        except OSError:
            conn.close()
            raise errors.SlowDown(f"The node {node} holding this object cannot be reached; "
                                  "retry later.") from None
        if resp.status == 200:
            count = int(resp.getheader("Content-Length") or 0)
            return CloudReader(_stream(conn, resp, count), count), \
                int(resp.getheader(SIZE_HEADER) or 0)
        conn.close()
        if resp.status == 404:
            raise BlobMissing(f"node/{node}/{ref}")
        raise errors.SlowDown(f"The node {node} holding this object answered {resp.status}.")

    def size(self, data_ref: str) -> int:
        local = self._own(data_ref)
        if local is not None:
            return self.local.size(local)
        reader, size = self._fetch(*self._split(data_ref), 0, 0)
        reader.close()
        return size

    def holds(self, data_ref: str) -> bool:
        return self._own(data_ref) is not None

    # --- housekeeping (own disk only) -----------------------------------------------------

    def delete(self, data_ref: str) -> None:
        if data_ref.startswith("upload:"):
            self.local.delete(data_ref)
            return
        local = self._own(data_ref)
        if local is not None:
            self.local.delete(local)

    def check(self) -> None:
        self.local.check()

    def recover(self, live_upload_ids: Callable[[str], bool]) -> RecoveryReport:
        return self.local.recover(live_upload_ids)

    def iter_blob_refs(self, older_than_s: float) -> Iterator[str]:
        for ref in self.local.iter_blob_refs(older_than_s):
            yield self._prefix + ref
