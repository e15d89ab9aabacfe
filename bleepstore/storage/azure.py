"""Azure Blob Storage as a ``CloudStore`` for ``GatewayBackend`` (storage.md §4.4).

Invariants:
- azure-storage-blob and azure-identity are imported inside methods only: the package
  imports without them. The SDK client is built on first use (``azure_connect``), never
  in ``__init__`` (the gunicorn master constructs, workers fork), and is then shared by
  the worker's threads (the SDK's clients are thread-safe).
- Memory per transfer is bounded: ``upload_file`` lets the SDK stage blocks straight from
  the open spool file (``upload_concurrency`` blocks of ``upload_block`` in flight: 12-20
  MiB per upload measured, whatever the object size); ``read``
  issues ranged GETs of ``read_request`` bytes and yields them in chunks of <= 1 MiB;
  server-side block copies (Put Block From URL) move no bytes through BleepStore, and the
  streamed fallback holds one download chunk per task.
- Multipart stages each part's blocks on the upload's reserved result itself
  (``NativeStore``): block ids ``<part>-<attempt>-<sub>`` (one length for every block of
  that blob), at most ``PART_BLOCKS`` per part (so 10,000 parts fit Azure's 50,000
  committed blocks), the block size kept on the part row; Complete is one Put Block List
  of the listed parts' blocks. Nothing is copied at Complete; an aborted upload's
  uncommitted blocks are discarded (Azure also drops them after 7 days).
- ``copy`` builds a block blob from ranges of a committed blob: one block per
  source range of at most ``block_limit`` bytes, ids of one fixed length, then one Put
  Block List. Nothing is visible under ``dst`` before that commit; a failed build discards
  its uncommitted blocks (best effort; Azure also drops them after 7 days).
- Every SDK call runs inside ``_translated`` (``azure_connect``), which turns SDK errors
  into ``BlobMissing``, ``SlowDown``, ``ServiceUnavailable`` or ``GatewayError`` (one ERROR
  log line naming the config key); no SDK exception leaves this module.
- Objects are named by refs only and user metadata lives in SQLite, so Azure's metadata
  rules (names must be C# identifiers) never apply here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, cast

from bleepstore import errors
from bleepstore.config import AzureStorageConfig
from bleepstore.storage.azure_connect import AzureConnection, Unsupported, error_code, error_status
from bleepstore.storage.azure_streams import FileSlice, RangeStream, run_all
from bleepstore.storage.backend import BlobMissing
from bleepstore.storage.cloud import NativePart
from bleepstore.storage.localio import CHUNK

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient, ContainerClient

log = logging.getLogger("bleepstore.storage")

BLOCK_LIMIT = 4000 << 20  # largest Put Block / Put Block From URL (service 2019-12-12+)
MAX_BLOCKS = 50_000  # committed blocks per blob
UPLOAD_BLOCK = 8 << 20  # block size of the SDK's chunked upload (a 5 GiB PUT: 640 blocks)
SINGLE_PUT = 4 << 20  # bodies up to this go in one Put Blob (the SDK reads them whole)
READ_REQUEST = 1 << 20  # bytes per ranged GET (the SDK briefly holds ~9x this: see read())
PART_BLOCKS = 5  # most blocks per part: 10,000 parts x 5 = Azure's committed-block limit
CHECK_TIMEOUT_S = 10  # check() is a health probe: fail fast, no retry
BLOCK_COPY_TIMEOUT_S = 900  # one Put Block From URL may copy up to 4000 MiB server-side
UNSUPPORTED = frozenset({"APINotImplemented", "NotImplemented", "FeatureNotSupported"})


def block_id(index: int, sub: int) -> str:
    """``"iiiii-sssss"``: Azure wants every block id of a blob to have the same length
    (the SDK sends it base64-encoded)."""
    return f"{index:05d}-{sub:05d}"


def block_plan(sizes: Sequence[int], limit: int) -> list[tuple[int, int, int, str]]:
    """``(source index, offset, length, block id)`` covering every source in order; a
    source above ``limit`` becomes several blocks, an empty one none."""
    plan = [(index, offset, min(limit, size - offset), block_id(index, sub))
            for index, size in enumerate(sizes)
            for sub, offset in enumerate(range(0, size, limit))]
    if len(plan) > MAX_BLOCKS:
        raise errors.InternalError(
            f"the object needs {len(plan)} blocks; Azure allows {MAX_BLOCKS} per blob")
    return plan


def part_block_id(number: int, attempt: str, sub: int) -> str:
    """``"nnnnn-<attempt>-sssss"``: one length for every block of an upload's result."""
    return f"{number:05d}-{attempt}-{sub:05d}"


def _spans(size: int, block: int) -> list[tuple[int, int, int]]:
    """``(sub, offset, length)`` of the blocks of ``size`` bytes; none for 0 bytes."""
    return [(sub, offset, min(block, size - offset))
            for sub, offset in enumerate(range(0, size, block))]


class AzureCloud:
    """One container (``storage.azure.*``) holding ``{prefix}{ref}`` block blobs."""

    def __init__(self, config: AzureStorageConfig, *, block_limit: int = BLOCK_LIMIT,
                 upload_block: int = UPLOAD_BLOCK, upload_concurrency: int = 4,
                 read_request: int = READ_REQUEST, compose_concurrency: int = 8,
                 block_from_url: bool | None = None, retry_total: int | None = None) -> None:
        """``block_from_url``: None = use Put Block From URL until the service says it is
        not implemented, then stream; False = always stream (tests). ``retry_total``:
        None = the SDK's default retry policy (storage.md §4.1)."""
        if min(block_limit, upload_block, upload_concurrency, read_request,
               compose_concurrency) < 1:
            raise ValueError("sizes and concurrencies must be >= 1")
        self.config = config
        self.block_limit = block_limit
        self._upload_block = upload_block
        self._upload_concurrency = upload_concurrency
        self._compose_concurrency = compose_concurrency
        self._from_url = block_from_url
        # NOTE: the transfer sizes are client settings in this SDK, not upload_blob()
        # arguments. min_large_block_upload_threshold=1 keeps the SDK on its seekable
        # sub-stream path for any block size (no whole-block buffers).
        options: dict[str, Any] = {
            "max_single_put_size": SINGLE_PUT, "max_block_size": upload_block,
            "min_large_block_upload_threshold": 1,
            "max_single_get_size": read_request, "max_chunk_get_size": read_request}
        if retry_total is not None:
            options["retry_total"] = retry_total
        self._conn = AzureConnection(config, options)

    # --- CloudStore ---------------------------------------------------------------------

    def upload_file(self, name: str, path: str, size: int) -> None:
        blob = self._blob(name)
        with open(path, "rb") as f, self._translated(name):
            blob.upload_blob(f, length=size, overwrite=True,
                             max_concurrency=self._upload_concurrency)

    def read(self, name: str, offset: int, length: int) -> Iterator[bytes]:
        """Ranged GETs of ``read_request`` bytes, the first sent now (a missing blob raises
        here, not mid-stream). NOTE: the SDK collects each GET with ``list()`` over a
        stream whose ``len()`` is its byte count, so it briefly allocates 8 bytes of list
        per byte (~9x ``read_request``): hence 1 MiB GETs, not the SDK's 4 MiB."""
        if length <= 0:
            return iter(())
        blob = self._blob(name)
        with self._translated(name):
            download = blob.download_blob(offset=offset, length=length)
        return self._chunks(name, download)

    def size(self, name: str) -> int:
        blob = self._blob(name)
        with self._translated(name):
            return int(blob.get_blob_properties().size)

    def delete(self, name: str) -> None:
        blob = self._blob(name)
        with contextlib.suppress(BlobMissing), self._translated(name):
            blob.delete_blob()

    def copy(self, src: str, dst: str) -> None:
        """Synchronous and server-side: Put Block From URL + Put Block List (no polling of
        an asynchronous Copy Blob, no 256 MiB cap of Copy Blob From URL)."""
        self._build(dst, [(src, self.size(src))])

    def list(self, prefix: str) -> Iterator[tuple[str, float]]:
        container = self._client()
        with self._translated(prefix):
            for item in container.list_blobs(name_starts_with=prefix or None):
                yield str(item.name), item.last_modified.timestamp()

    def check(self) -> None:
        container = self._client()
        with self._translated(self.config.container):
            container.get_container_properties(retry_total=0, timeout=CHECK_TIMEOUT_S,
                                               connection_timeout=CHECK_TIMEOUT_S,
                                               read_timeout=CHECK_TIMEOUT_S)

    # --- NativeStore: staged blocks on the upload's result ------------------------------

    def start_upload(self, name: str) -> None:
        return None  # blocks are staged on ``name`` itself: nothing to open

    def upload_part(self, name: str, number: int, attempt: str, path: str, size: int,
                    md5_hex: str) -> str:
        blob, block = self._blob(name), self._part_block(size)
        tasks = [self._file_block_task(blob, name, path, offset, length,
                                       part_block_id(number, attempt, sub))
                 for sub, offset, length in _spans(size, block)]
        run_all(tasks, self._upload_concurrency)
        return str(block)

    def copy_part(self, name: str, number: int, attempt: str, src: str, size: int) -> str:
        blob, block = self._blob(name), self._part_block(size)
        tasks = [self._stage_task(blob, src, offset, length, part_block_id(number, attempt, sub))
                 for sub, offset, length in _spans(size, block)]
        run_all(tasks, self._compose_concurrency)
        return str(block)

    def complete_upload(self, name: str, parts: Sequence[NativePart]) -> None:
        from azure.core.exceptions import HttpResponseError
        from azure.storage.blob import BlobBlock

        ids: list[str] = []
        for part in parts:
            if part.handle is None or not part.handle.isdigit() or int(part.handle) < 1:
                raise errors.InvalidPart()
            ids += [part_block_id(part.number, part.attempt, sub)
                    for sub, _, _ in _spans(part.size, int(part.handle))]
        if len(ids) > MAX_BLOCKS:
            raise errors.InternalError(f"{len(ids)} blocks; Azure allows {MAX_BLOCKS} per blob")
        blob = self._blob(name)
        with self._translated(name):
            try:
                # NOTE: a block of the list is found uncommitted, or committed by an
                # earlier commit of this same list (a retried Complete): the same blob.
                blob.commit_block_list([BlobBlock(block_id=bid) for bid in ids])
            except HttpResponseError as exc:
                if error_code(exc) == "InvalidBlockList":  # a part's blocks are not there
                    raise errors.InvalidPart() from exc
                raise

    def abort_upload(self, name: str) -> None:
        self._discard_blocks(self._blob(name))

    def sweep_uploads(self, prefix: str, keep: Callable[[str], bool]) -> int:
        """Discard the staged blocks of uploads that are gone (Azure would keep, and bill,
        them for 7 days): the blobs under ``prefix`` that only a listing with uncommitted
        blobs shows (nothing committed there yet)."""
        committed = {name for name, _ in self.list(prefix)}
        container, discarded = self._client(), 0
        with self._translated(prefix):
            staged = [str(item.name) for item in container.list_blobs(
                name_starts_with=prefix, include=["uncommittedblobs"])]
        for name in staged:
            if name not in committed and not keep(name):
                discarded += self._discard_blocks(self._blob(name))
        return discarded

    def _part_block(self, size: int) -> int:
        return min(self.block_limit, max(self._upload_block, -(-size // PART_BLOCKS)))

    def _file_block_task(self, blob: BlobClient, name: str, path: str, offset: int,
                         length: int, bid: str) -> Callable[[], None]:
        def stage() -> None:
            with open(path, "rb") as f, self._translated(name):
                blob.stage_block(bid, cast(IO[bytes], FileSlice(f, offset, length)),
                                 length=length)
        return stage

    # --- building a blob from ranges of other blobs ---------------------------------------

    def _build(self, dst: str, sources: Sequence[tuple[str, int]]) -> None:
        plan = block_plan([size for _, size in sources], self.block_limit)
        blob = self._blob(dst)
        tasks = [self._stage_task(blob, sources[index][0], offset, length, bid)
                 for index, offset, length, bid in plan]
        try:
            run_all(tasks, self._compose_concurrency)
            from azure.storage.blob import BlobBlock

            with self._translated(dst):
                blob.commit_block_list([BlobBlock(block_id=bid) for *_, bid in plan])
        except BaseException:
            self._discard_blocks(blob)
            raise

    def _stage_task(self, blob: BlobClient, src: str, offset: int, length: int,
                    bid: str) -> Callable[[], None]:
        def stage() -> None:
            if self._from_url is not False:
                try:
                    self._stage_from_url(blob, src, offset, length, bid)
                    return
                except Unsupported:
                    log.info("Put Block From URL not implemented by the service: "
                             "blocks are streamed through BleepStore")
                    self._from_url = False
            with self._translated(src):
                source = cast(IO[bytes], RangeStream(self.read, src, offset, length))
                blob.stage_block(bid, source, length=length)
        return stage

    def _stage_from_url(self, blob: BlobClient, src: str, offset: int, length: int,
                        bid: str) -> None:
        from azure.core.exceptions import HttpResponseError

        url = self._conn.source_url(src)
        with self._translated(src):
            try:
                blob.stage_block_from_url(bid, url, source_offset=offset, source_length=length,
                                          timeout=BLOCK_COPY_TIMEOUT_S,
                                          read_timeout=BLOCK_COPY_TIMEOUT_S)
            except HttpResponseError as exc:
                if error_code(exc) in UNSUPPORTED or error_status(exc) == 501:
                    raise Unsupported() from exc
                raise
        self._from_url = True

    def _discard_blocks(self, blob: BlobClient) -> bool:
        """Drop the uncommitted blocks of a failed build: committing an empty list (only
        if nothing is committed there yet) discards them, then the empty blob goes."""
        try:
            blob.commit_block_list([], if_none_match="*")
            blob.delete_blob()
        except Exception as exc:  # best effort: Azure drops them after 7 days anyway
            log.debug("could not discard uncommitted blocks of %s: %s", blob.blob_name, exc)
            return False
        return True

    # --- the connection's parts, kept as methods (the contract tests reach for them) ---

    def _blob(self, name: str) -> BlobClient:
        return self._conn.blob(name)

    def _client(self) -> ContainerClient:
        return self._conn.container()

    def _translated(self, name: str) -> contextlib.AbstractContextManager[None]:
        return self._conn.translated(name)

    def _chunks(self, name: str, download: Any) -> Iterator[bytes]:
        with self._translated(name):
            for piece in download.chunks():
                for start in range(0, len(piece), CHUNK):
                    yield piece[start:start + CHUNK]
