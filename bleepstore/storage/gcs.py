"""Google Cloud Storage adapter (``CloudStore``) for ``GatewayBackend`` (storage.md §4.3).

Invariants:
- google-cloud-storage is imported inside methods only (the package imports without it),
  and the client is built on first use, once per process: the gunicorn master constructs
  the adapter, workers fork and each builds its own (a client inherited across a fork is
  rebuilt: the PID is checked). One client is shared by a worker's threads (the SDK's
  requests/urllib3 transport is thread-safe); building it is serialised by a lock.
- Memory is bounded per transfer, never by object size: uploads go in requests of at most
  ``UPLOAD_CHUNK`` (resumable above that size); reads fetch ranged windows of at most
  ``READ_WINDOW`` and yield slices of at most 1 MiB.
- No SDK exception leaves this module: 404 -> ``BlobMissing`` (objects) or ``GatewayError``
  (the bucket); 401/403/credentials -> ``GatewayError`` naming the config key (one ERROR
  log line); 429 -> ``SlowDown``; 408/5xx, connection errors, timeouts -> ``ServiceUnavailable``;
  anything else -> ``InternalError`` (logged).
- Every write goes to a fresh, write-once name, so every call is retried with the SDK's
  ``DEFAULT_RETRY`` (a retried upload/compose/rewrite rewrites identical bytes; a retried
  delete that finds nothing is a success) without generation preconditions.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from bleepstore import errors
from bleepstore.storage.backend import BlobMissing
from bleepstore.storage.cloud import GatewayError
from bleepstore.storage.localio import CHUNK

if TYPE_CHECKING:
    from bleepstore.config import GcpStorageConfig

log = logging.getLogger("bleepstore.storage")

# NOTE: 8 MiB = the SDK's single-request limit (_MAX_MULTIPART_SIZE) and a multiple of the
# 256 KiB resumable granularity: every upload request body is at most 8 MiB, read from the
# spool file one request at a time (the SDK default, 100 MiB, would hold 100 MiB per
# upload). The SDK holds about two copies of one request (16 MiB measured), so 8 threads
# bound a worker's upload buffers near 128 MiB, whatever the object size.
UPLOAD_CHUNK = 8 << 20
READ_WINDOW = 8 << 20  # one ranged GET; held while its 1 MiB slices are yielded
MAX_COMPOSE = 32  # GCS limit on sources per compose call (the emulator does not enforce it)
COMPOSE_THREADS = 8
EMULATOR_PROJECT = "bleepstore-emulator"
OCTET_STREAM = "application/octet-stream"
_BUCKET_MISSING = "bucket does not exist"  # GCS's 404 text when the bucket is what is absent


class GcsCloud:
    """One GCS bucket; names are full object names (the gateway's prefix included)."""

    def __init__(self, cfg: GcpStorageConfig, *, endpoint: str = "",
                 retry_timeout_s: float = 120.0, request_timeout_s: float = 60.0,
                 upload_chunk: int = UPLOAD_CHUNK, read_window: int = READ_WINDOW,
                 compose_threads: int = COMPOSE_THREADS) -> None:
        """``cfg`` is ``storage.gcp``; the keyword arguments are for tests and tools (the
        emulator's endpoint, short retry deadlines, small windows)."""
        if upload_chunk <= 0 or upload_chunk % (256 << 10):
            raise ValueError("upload_chunk must be a positive multiple of 256 KiB")
        self.bucket_name = cfg.bucket
        self.project = cfg.project
        self.prefix = cfg.prefix
        self.credentials_file = cfg.credentials_file
        # "" = the SDK's endpoint, or STORAGE_EMULATOR_HOST's when that is set
        self.endpoint = endpoint
        self.retry_timeout_s = retry_timeout_s
        self.request_timeout_s = request_timeout_s
        self.upload_chunk = upload_chunk
        self.read_window = max(1, read_window)
        self.compose_threads = max(1, compose_threads)
        self._lock = threading.Lock()
        self._state: tuple[int, Any, Any, Any] | None = None  # (pid, client, bucket, retry)

    # --- CloudStore -----------------------------------------------------------------------

    def upload_file(self, name: str, path: str, size: int) -> None:
        with self._errors("upload", name, missing="bucket"):
            bucket, retry = self._bucket()
            blob = bucket.blob(name, chunk_size=self.upload_chunk)
            # Resumable (chunk by chunk from the file) above 8 MiB, one request below.
            blob.upload_from_filename(path, content_type=OCTET_STREAM, retry=retry,
                                      timeout=self.request_timeout_s)

    def read(self, name: str, offset: int, length: int) -> Iterator[bytes]:
        """The first window is fetched now, so a missing object or an unreachable cloud
        is raised by ``open_read`` (an S3 error response), not in the middle of a body."""
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be >= 0")
        if length == 0:
            return iter(())
        first = self._window(name, offset, min(self.read_window, length))
        return self._windows(name, first, offset, offset + length)

    def _window(self, name: str, pos: int, want: int) -> bytes:
        # NOTE: ranged GETs of at most READ_WINDOW, not blob.open("rb"): its reader does
        # the same ranged GETs (40 MiB by default) after an extra metadata GET, and reads
        # whole windows too; nothing in the SDK yields a response body as it arrives.
        with self._errors("read", name):
            bucket, retry = self._bucket()
            try:
                data: bytes = bucket.blob(name).download_as_bytes(
                    start=pos, end=pos + want - 1, raw_download=True, checksum=None,
                    retry=retry, timeout=self.request_timeout_s)
            except Exception as exc:
                if _status(exc) != 416:
                    raise
                data = b""  # ``pos`` is at or past the end of the object
        return data

    def _windows(self, name: str, data: bytes, pos: int, end: int) -> Iterator[bytes]:
        while True:
            for i in range(0, len(data), CHUNK):
                yield data[i:i + CHUNK]
            want, got = min(self.read_window, end - pos), len(data)
            pos += got
            if got < want or pos >= end:
                return  # done, or the object ends before ``end`` (a short stream)
            data = b""  # let the old window go before the next one arrives
            data = self._window(name, pos, min(self.read_window, end - pos))

    def size(self, name: str) -> int:
        with self._errors("stat", name):
            bucket, retry = self._bucket()
            blob = bucket.blob(name)
            blob.reload(projection="noAcl", retry=retry, timeout=self.request_timeout_s)
        return int(blob.size or 0)

    def delete(self, name: str) -> None:
        from google.api_core.exceptions import NotFound

        with self._errors("delete", name):
            bucket, retry = self._bucket()
            try:
                bucket.blob(name).delete(retry=retry, timeout=self.request_timeout_s)
            except NotFound as exc:  # already gone (or a retried delete that had worked)
                if _BUCKET_MISSING in str(exc):
                    raise

    def copy(self, src: str, dst: str) -> None:
        with self._errors("copy", src):
            bucket, retry = self._bucket()
            source, target = bucket.blob(src), bucket.blob(dst)
            token: str | None = None
            while True:  # server side; large or cross-class copies take several calls
                token, _, _ = target.rewrite(source, token=token, retry=retry,
                                             timeout=self.request_timeout_s)
                if token is None:
                    return

    def compose(self, dst: str, sources: Sequence[str]) -> None:
        names = list(sources)
        if not names:
            raise ValueError("compose needs at least one source")
        if len(names) <= MAX_COMPOSE:
            self._compose_one(dst, names)
            return
        folder = _common_folder(names)
        # NOTE: a per-call tag keeps two concurrent Completes of one upload (a client retry)
        # from composing from, or deleting, each other's intermediates.
        tag = secrets.token_hex(4)
        made: list[str] = []
        try:
            level = 0
            while len(names) > MAX_COMPOSE:
                level += 1
                groups = [names[i:i + MAX_COMPOSE] for i in range(0, len(names), MAX_COMPOSE)]
                targets = [f"{folder}c{level}-{i:05d}-{tag}" for i in range(len(groups))]
                made += targets
                self._parallel(self._compose_one, list(zip(targets, groups, strict=True)))
                names = targets
            self._compose_one(dst, names)
        finally:
            self._discard(made)

    def list(self, prefix: str) -> Iterator[tuple[str, float]]:
        with self._errors("list", prefix, missing="bucket"):
            client, retry = self._client()
            # NOTE: the SDK follows nextPageToken; every page is fetched as iteration goes.
            for blob in client.list_blobs(self.bucket_name, prefix=prefix, page_size=1000,
                                          fields="items(name,updated),nextPageToken",
                                          retry=retry, timeout=self.request_timeout_s):
                updated = blob.updated
                yield blob.name, updated.timestamp() if updated is not None else 0.0

    def check(self) -> None:
        """List one name under the prefix: needs only ``storage.objects.list``, which the
        gateway needs anyway (a bucket GET would also need ``storage.buckets.get``)."""
        with self._errors("check", self.prefix, missing="bucket"):
            client, retry = self._client()
            pages = client.list_blobs(self.bucket_name, prefix=self.prefix, max_results=1,
                                      fields="items(name),nextPageToken", retry=retry,
                                      timeout=self.request_timeout_s).pages
            next(iter(pages), None)

    # --- helpers --------------------------------------------------------------------------

    def _compose_one(self, dst: str, names: Sequence[str]) -> None:
        with self._errors("compose", dst):
            bucket, retry = self._bucket()
            target = bucket.blob(dst)
            target.content_type = OCTET_STREAM
            target.compose([bucket.blob(n) for n in names], retry=retry,
                           timeout=self.request_timeout_s)

    def _parallel(self, fn: Callable[[str, Sequence[str]], None],
                  jobs: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Run one round's composes on a bounded pool; the first error is raised."""
        if len(jobs) == 1:
            fn(*jobs[0])
            return
        pool = ThreadPoolExecutor(min(self.compose_threads, len(jobs)),
                                  thread_name_prefix="gcs-compose")
        try:
            for future in [pool.submit(fn, dst, names) for dst, names in jobs]:
                future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # after an error: start no more

    def _discard(self, names: Sequence[str]) -> None:
        """Best effort: what is left is deleted with the upload's folder (GC, recovery)."""
        def drop(name: str, _: Sequence[str]) -> None:
            try:
                self.delete(name)
            except Exception as exc:  # noqa: BLE001  never mask the compose outcome
                log.warning("gcs: compose temporary %s not deleted: %s", name, exc)

        if names:
            self._parallel(drop, [(n, ()) for n in names])

    def _conn(self) -> tuple[int, Any, Any, Any]:
        """(pid, client, bucket, retry), built once per process."""
        state = self._state
        if state is None or state[0] != os.getpid():
            with self._lock:
                state = self._state
                if state is None or state[0] != os.getpid():
                    state = self._state = self._build()
        return state

    def _client(self) -> tuple[Any, Any]:
        _, client, _, retry = self._conn()
        return client, retry

    def _bucket(self) -> tuple[Any, Any]:
        _, _, bucket, retry = self._conn()
        return bucket, retry

    def _build(self) -> tuple[int, Any, Any, Any]:
        from google.cloud import storage
        from google.cloud.storage.retry import DEFAULT_RETRY

        endpoint = self.endpoint or os.environ.get("STORAGE_EMULATOR_HOST", "")
        if endpoint and "://" not in endpoint:
            endpoint = "http://" + endpoint
        options = {"api_endpoint": endpoint} if endpoint else None
        project: str | None = self.project or None
        try:
            if self.credentials_file:
                credentials = _load_credentials(self.credentials_file)
            elif endpoint:  # an emulator: no credentials at all
                from google.auth.credentials import AnonymousCredentials

                credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
                project = project or EMULATOR_PROJECT
            else:
                credentials = None  # Application Default Credentials
            client = storage.Client(project=project, credentials=credentials,
                                    client_options=options)
        except Exception as exc:
            source = self.credentials_file or "Application Default Credentials"
            raise self._config_error("storage.gcp.credentials_file",
                                     f"cannot use GCS credentials from {source}",
                                     f"{type(exc).__name__}: {exc}"[:500]) from exc
        if hasattr(client, "_bucket_metadata_cache"):
            # NOTE: for OpenTelemetry span attributes only, the SDK fetches the bucket's
            # metadata from background threads (an extra bucket GET, needing
            # storage.buckets.get, and a thread per 404); BleepStore does not trace the SDK.
            client._bucket_metadata_cache = None
        retry = DEFAULT_RETRY.with_timeout(self.retry_timeout_s)
        return os.getpid(), client, client.bucket(self.bucket_name), retry

    @contextmanager
    def _errors(self, op: str, name: str, missing: str = "object") -> Iterator[None]:
        try:
            yield
        except (BlobMissing, errors.S3Error):
            raise
        except Exception as exc:
            raise self._translate(exc, op, name, missing) from exc

    def _translate(self, exc: BaseException, op: str, name: str, missing: str) -> Exception:
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth

        while isinstance(exc, api.RetryError) and exc.cause is not None:
            exc = exc.cause  # retries exhausted: judge the last failure
        where = f"gs://{self.bucket_name}/{name}"
        detail = f"{type(exc).__name__}: {exc}"[:500]
        status = _status(exc)
        if status == 404:
            if missing == "object" and _BUCKET_MISSING not in str(exc):
                return BlobMissing(f"{where} does not exist")
            return self._config_error("storage.gcp.bucket",
                                      f"bucket {self.bucket_name!r} not found", detail)
        if status in (401, 403) or isinstance(exc, auth.DefaultCredentialsError) or (
                isinstance(exc, auth.RefreshError) and not getattr(exc, "retryable", False)):
            return self._config_error(
                "storage.gcp.credentials_file",
                f"GCS refused {op} on {where} (credentials or IAM on storage.gcp.bucket "
                f"{self.bucket_name!r})", detail)
        if status == 429:
            return errors.SlowDown()
        if (status is not None and (status == 408 or status >= 500)) or _transient(exc):
            log.warning("gcs: %s %s: %s", op, where, detail)
            return errors.ServiceUnavailable()
        log.error("gcs: %s %s failed: %s", op, where, detail)
        return errors.InternalError(f"GCS {op} failed")

    def _config_error(self, key: str, what: str, detail: str) -> GatewayError:
        message = f"{key}: {what}: {detail}"
        log.error("gcs gateway misconfigured: %s", message)
        return GatewayError(message)


def _load_credentials(path: str) -> Any:
    """A service-account key or an ``gcloud auth application-default login`` file; other
    kinds (workload identity federation ...) work through ADC (credentials_file empty)."""
    with open(path, "rb") as f:
        info = json.loads(f.read(1 << 20) or b"null")
    kind = info.get("type") if isinstance(info, dict) else None
    if kind == "service_account":
        from google.oauth2 import service_account

        return service_account.Credentials.from_service_account_info(info)  # type: ignore[no-untyped-call]
    if kind == "authorized_user":
        from google.oauth2 import credentials

        return credentials.Credentials.from_authorized_user_info(info)  # type: ignore[no-untyped-call]
    raise ValueError(f"{path}: not a service_account or authorized_user key (type {kind!r})")


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)  # google.api_core GoogleAPICallError
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)  # storage.exceptions.InvalidResponse
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _transient(exc: BaseException) -> bool:
    """Connection failures and timeouts, whichever layer raised them."""
    import http.client

    import requests
    import urllib3
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    return isinstance(exc, (
        ConnectionError, TimeoutError, http.client.HTTPException,
        requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.HTTPError, auth.TransportError, auth.RefreshError,
        api.RetryError))


def _common_folder(names: Sequence[str]) -> str:
    """The one ``…/multipart/<upload id>/`` folder all sources live in (temporaries go
    there, so the upload's own cleanup removes them even after a crash)."""
    folders = {n.rsplit("/", 1)[0] + "/" for n in names}
    folder = folders.pop() if len(folders) == 1 else ""
    if "multipart/" not in folder:
        raise ValueError("more than 32 compose sources must share one multipart/<id>/ folder")
    return folder
