"""AWS S3, or any S3-compatible upstream, as a ``CloudStore`` with boto3 (storage.md §4).

Invariants:
- boto3 is imported lazily and the client is built on first use, once per process (a client
  inherited through ``fork`` is never used: its pooled sockets belong to the parent). One
  client is shared by every thread of a worker; botocore clients are thread-safe.
- Nothing holds an object whole: uploads stream from the spool file (one PutObject below
  64 MiB, s3transfer's multipart upload by path above: parts are read as they are sent),
  reads stream a ranged GET in chunks of at most 1 MiB, copies run inside S3 (CopyObject,
  UploadPartCopy).
- Every SDK exception is translated here (``_Boundary``): ``BlobMissing``, ``SlowDown``,
  ``ServiceUnavailable``, the S3 code of a refused native complete, ``GatewayError`` (one
  ERROR line naming the config key), or ``InternalError``. No botocore type escapes.
- Multipart is passthrough (``NativeStore``): CreateMultipartUpload opens the upstream's own
  upload of the reserved result, each part goes up as its UploadPart (its ETag is kept on
  the part row and given back at Complete, so the upstream itself refuses a part that is
  not the one BleepStore committed), Complete is the upstream's. The upstream upload id is
  found by listing the uploads of that one key, once per process (cached).
- A native upload whose BleepStore upload is gone (a crash between the two commits, an
  abort that failed) is aborted by the startup sweep (``NativeGateway.recover``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from bleepstore import errors
from bleepstore.storage.backend import BlobMissing
from bleepstore.storage.cloud import GatewayError, NativePart
from bleepstore.storage.localio import CHUNK

if TYPE_CHECKING:
    from bleepstore.config import AwsStorageConfig

log = logging.getLogger("bleepstore.storage")

MiB = 1 << 20
MULTIPART_THRESHOLD = 64 * MiB  # below: one PutObject; at or above: a managed multipart upload
PART_SIZE = 16 * MiB  # upload part size (grown for huge files: S3 allows 10,000 parts)
MAX_PARTS = 10_000
MAX_COPY_OBJECT = 5 << 30  # S3's CopyObject / UploadPartCopy source limit
UPLOAD_THREADS = 4  # per upload_file call
COPY_THREADS = 8  # concurrent UploadPartCopy of one managed copy over 5 GiB
POOL = 8 * UPLOAD_THREADS + COPY_THREADS  # a worker's 8 threads all uploading at once
CONTENT_TYPE = "application/octet-stream"

_MISSING = {"NoSuchKey", "404", "NotFound"}
_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                "TokenRefreshRequired", "InvalidSecurity", "InvalidClientTokenId"}
_FORBIDDEN = {"AccessDenied", "AllAccessDisabled", "AccountProblem", "403", "Forbidden"}
_REGION = {"PermanentRedirect", "AuthorizationHeaderMalformed", "301", "Redirect",
           "IllegalLocationConstraintException"}
_THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
              "TooManyRequests", "TooManyRequestsException", "RequestThrottled", "503", "429"}
_COMPLETE_REFUSALS: dict[str, type[errors.S3Error]] = {
    "InvalidPart": errors.InvalidPart, "EntityTooSmall": errors.EntityTooSmall,
    "InvalidPartOrder": errors.InvalidPartOrder}
_NATIVE_CACHE = 4096  # upstream upload ids remembered per process
_KEYS = "storage.aws.access_key_id / storage.aws.secret_access_key (or boto3's default chain)"


class AwsCloud:
    """One bucket of an S3 upstream; object names are full keys (prefix included)."""

    def __init__(self, config: AwsStorageConfig, *, max_attempts: int = 3) -> None:
        """``max_attempts`` counts the first try (botocore's ``total_max_attempts``: its
        ``max_attempts`` key counts retries only, so 3 there would mean 4 requests)."""
        self.config = config
        self.bucket = config.bucket
        self.max_attempts = max_attempts
        self._lock = threading.Lock()
        self._client: Any = None
        self._pid = 0
        self._native: dict[str, str] = {}

    # --- the client -----------------------------------------------------------------------

    def client(self) -> Any:
        """The process's boto3 client, built on first use (after fork)."""
        client, pid = self._client, os.getpid()
        if client is not None and self._pid == pid:
            return client
        with self._lock:
            if self._client is None or self._pid != pid:
                self._client = self._new_client()
                self._pid = pid
            return self._client

    def _new_client(self) -> Any:
        import boto3.session
        from botocore.config import Config

        cfg = self.config
        s3: dict[str, Any] = {"addressing_style": "path"} if cfg.use_path_style else {}
        config = Config(signature_version="s3v4", s3=s3 or None, max_pool_connections=POOL,
                        connect_timeout=10, read_timeout=60,
                        retries={"mode": "standard", "total_max_attempts": self.max_attempts})
        # NOTE: a private Session: boto3's default session is not thread-safe to build.
        session = boto3.session.Session()
        return session.client("s3", region_name=cfg.region or None,
                              endpoint_url=cfg.endpoint_url or None,
                              aws_access_key_id=cfg.access_key_id or None,
                              aws_secret_access_key=cfg.secret_access_key or None,
                              config=config)

    # --- CloudStore -----------------------------------------------------------------------

    def upload_file(self, name: str, path: str, size: int) -> None:
        with _Boundary(self, "upload", name):
            if size < MULTIPART_THRESHOLD:
                # NOTE: one PutObject streamed from the open file (botocore reads it in
                # blocks and seeks back to retry); s3transfer would add a thread pool per
                # call, ~3.5 ms on every small PUT.
                with open(path, "rb") as body:
                    self.client().put_object(Bucket=self.bucket, Key=name, Body=body,
                                             ContentLength=size, ContentType=CONTENT_TYPE)
                return
            self.client().upload_file(path, self.bucket, name, Config=_transfer_config(size),
                                      ExtraArgs={"ContentType": CONTENT_TYPE})

    def read(self, name: str, offset: int, length: int) -> Iterator[bytes]:
        if length <= 0:
            return iter(())
        with _Boundary(self, "read", name):
            resp = self.client().get_object(Bucket=self.bucket, Key=name,
                                            Range=f"bytes={offset}-{offset + length - 1}")
        return _BodyChunks(resp["Body"], _Boundary(self, "read", name))

    def size(self, name: str) -> int:
        with _Boundary(self, "size", name):
            return int(self.client().head_object(Bucket=self.bucket, Key=name)["ContentLength"])

    def delete(self, name: str) -> None:
        try:
            with _Boundary(self, "delete", name):
                self.client().delete_object(Bucket=self.bucket, Key=name)
        except BlobMissing:  # S3 answers 204 for a missing key; some upstreams say 404
            pass

    def copy(self, src: str, dst: str) -> None:
        size = self.size(src)
        source = {"Bucket": self.bucket, "Key": src}
        with _Boundary(self, "copy", src):
            if size <= MAX_COPY_OBJECT:
                self.client().copy_object(Bucket=self.bucket, Key=dst, CopySource=source,
                                          MetadataDirective="COPY")
                return
            from boto3.s3.transfer import TransferConfig

            part = max(PART_SIZE * 32, math.ceil(size / MAX_PARTS / MiB) * MiB)
            transfer = TransferConfig(multipart_threshold=MAX_COPY_OBJECT,
                                      multipart_chunksize=part, max_concurrency=COPY_THREADS,
                                      preferred_transfer_client="classic")
            self.client().copy(source, self.bucket, dst, Config=transfer,
                               ExtraArgs={"ContentType": CONTENT_TYPE})

    def _abort(self, name: str, upload_id: str) -> None:
        """Best effort: the failure being handled matters more; recovery retries."""
        self._native.pop(name, None)
        try:
            with _Boundary(self, "abort", name):
                self.client().abort_multipart_upload(Bucket=self.bucket, Key=name,
                                                     UploadId=upload_id)
        except Exception as exc:
            log.warning("storage.aws: could not abort upload %s of %s: %s", upload_id, name,
                        exc)

    def list(self, prefix: str) -> Iterator[tuple[str, float]]:
        with _Boundary(self, "list", prefix):
            pages = self.client().get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", ()):
                    yield str(obj["Key"]), float(obj["LastModified"].timestamp())

    def check(self) -> None:
        with _Boundary(self, "check", ""):
            self.client().head_bucket(Bucket=self.bucket)

    # --- NativeStore: multipart passthrough --------------------------------------------

    def start_upload(self, name: str) -> None:
        with _Boundary(self, "start upload", name):
            self.client().create_multipart_upload(Bucket=self.bucket, Key=name,
                                                  ContentType=CONTENT_TYPE)

    def upload_part(self, name: str, number: int, attempt: str, path: str, size: int,
                    md5_hex: str) -> str:
        native = self._native_id(name)
        md5 = base64.b64encode(bytes.fromhex(md5_hex)).decode()
        with open(path, "rb") as body, _Boundary(self, "upload part", name):
            resp = self.client().upload_part(Bucket=self.bucket, Key=name, UploadId=native,
                                             PartNumber=number, Body=body, ContentLength=size,
                                             ContentMD5=md5)
        return str(resp["ETag"])

    def copy_part(self, name: str, number: int, attempt: str, src: str, size: int) -> str:
        native = self._native_id(name)
        with _Boundary(self, "copy part", src):
            resp = self.client().upload_part_copy(
                Bucket=self.bucket, Key=name, UploadId=native, PartNumber=number,
                CopySource={"Bucket": self.bucket, "Key": src})
        return str(resp["CopyPartResult"]["ETag"])

    def complete_upload(self, name: str, parts: Sequence[NativePart]) -> None:
        if any(p.handle is None for p in parts):
            raise errors.InvalidPart()
        body = {"Parts": [{"PartNumber": p.number, "ETag": p.handle} for p in parts]}
        try:
            native = self._native_id(name)
            with _Boundary(self, "complete", name):
                self.client().complete_multipart_upload(Bucket=self.bucket, Key=name,
                                                        UploadId=native, MultipartUpload=body)
        except errors.NoSuchUpload:
            # NOTE: a concurrent Complete of this upload (a client retry), or one that
            # crashed before its commit, built it already: adopted if it is these parts.
            if self._built_from(name, parts):
                return
            raise
        finally:
            self._native.pop(name, None)

    def _built_from(self, name: str, parts: Sequence[NativePart]) -> bool:
        """``name`` exists and its multipart ETag is that of exactly ``parts`` (MD5 of the
        part ETags, S3's rule; parts whose ETag is no MD5 cannot be told apart: no)."""
        digests = [(p.handle or "").strip('"') for p in parts]
        if not all(len(d) == 32 and all(c in "0123456789abcdef" for c in d) for d in digests):
            return False
        joined = b"".join(bytes.fromhex(d) for d in digests)
        expected = f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'
        try:
            with _Boundary(self, "size", name):
                head = self.client().head_object(Bucket=self.bucket, Key=name)
        except BlobMissing:
            return False
        return str(head.get("ETag", "")) == expected

    def abort_upload(self, name: str) -> None:
        with _Boundary(self, "list uploads", name):
            uploads = self.client().list_multipart_uploads(Bucket=self.bucket, Prefix=name)
        for upload in uploads.get("Uploads", ()):
            if upload["Key"] == name:
                self._abort(name, str(upload["UploadId"]))

    def sweep_uploads(self, prefix: str, keep: Callable[[str], bool]) -> int:
        with _Boundary(self, "list uploads", prefix):
            pages = self.client().get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix)
            found = [(str(u["Key"]), str(u["UploadId"]))
                     for page in pages for u in page.get("Uploads", ())]
        stale = [(key, upload_id) for key, upload_id in found if not keep(key)]
        for key, upload_id in stale:
            self._abort(key, upload_id)
        return len(stale)

    def _native_id(self, name: str) -> str:
        """The upstream upload of ``name``: the earliest if a retried create left two
        (every worker picks the same one)."""
        native = self._native.get(name)
        if native is not None:
            return native
        with _Boundary(self, "list uploads", name):
            resp = self.client().list_multipart_uploads(Bucket=self.bucket, Prefix=name)
        mine = sorted((u["Initiated"], str(u["UploadId"])) for u in resp.get("Uploads", ())
                      if u["Key"] == name)
        if not mine:
            raise errors.NoSuchUpload()
        if len(self._native) >= _NATIVE_CACHE:
            self._native.clear()
        self._native[name] = mine[0][1]
        return mine[0][1]

    # --- error translation ----------------------------------------------------------------

    def translate(self, exc: Exception, op: str, name: str) -> Exception:
        """The BleepStore exception for an SDK failure of ``op`` on ``name``."""
        from boto3.exceptions import S3UploadFailedError
        from botocore import exceptions as bx

        if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, Exception):
            exc = exc.__context__  # s3transfer wraps the ClientError in a string
        if isinstance(exc, bx.ClientError):
            return self._client_error(exc, op, name)
        if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError,
                            bx.CredentialRetrievalError, bx.TokenRetrievalError)):
            return self._refused(_KEYS, exc)
        if isinstance(exc, bx.NoRegionError):
            return self._refused("storage.aws.region", exc)
        if isinstance(exc, bx.SSLError):
            return self._refused("storage.aws.endpoint_url (TLS)", exc)
        if isinstance(exc, (bx.ConnectionError, bx.HTTPClientError, bx.IncompleteReadError)
                      ) or _is_urllib3(exc):
            log.warning("storage.aws: %s %s: %s", op, name, exc)
            return errors.ServiceUnavailable()
        log.error("storage.aws: unexpected %s on %s %s: %s", type(exc).__name__, op, name, exc)
        return errors.InternalError()

    def _client_error(self, exc: Any, op: str, name: str) -> Exception:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _MISSING and op not in ("check", "list", "list uploads"):
            if code != "NoSuchKey" and not self._bucket_exists():  # HEAD 404: key or bucket?
                return self._refused("storage.aws.bucket", exc)
            return BlobMissing(name)
        if code in ("NoSuchBucket", "404", "NotFound"):
            return self._refused("storage.aws.bucket", exc)
        if code in _CREDENTIALS:
            return self._refused(_KEYS, exc)
        if code in _FORBIDDEN or status == 403:
            return self._refused(f"storage.aws.bucket (permissions for {_KEYS})", exc)
        if code in _REGION or status == 301:
            return self._refused("storage.aws.region / storage.aws.endpoint_url", exc)
        if code in _THROTTLED or status in (429, 503):
            log.warning("storage.aws: %s %s throttled: %s", op, name, code)
            return errors.SlowDown()
        if code == "NoSuchUpload" and op in ("upload part", "copy part", "complete"):
            return errors.NoSuchUpload()
        if op == "complete" and code in _COMPLETE_REFUSALS:  # the client's part list
            log.info("storage.aws: the upstream refused the Complete of %s: %s", name, exc)
            return _COMPLETE_REFUSALS[code]()
        if status >= 500 or code in ("RequestTimeout", "InternalError", "ServiceUnavailable"):
            log.warning("storage.aws: %s %s: %s", op, name, exc)
            return errors.ServiceUnavailable()
        log.error("storage.aws: %s %s failed: %s", op, name, exc)
        return errors.InternalError()

    def _refused(self, key: str, exc: Exception) -> GatewayError:
        msg = f"the S3 upstream refused BleepStore: check {key} (bucket {self.bucket!r}): {exc}"
        log.error("storage.aws: %s", msg)
        return GatewayError(msg)

    def _bucket_exists(self) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client().head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            return str(exc.response.get("Error", {}).get("Code", "")) not in (
                "404", "NoSuchBucket", "NotFound")
        except BotoCoreError:
            return True  # unknown: keep the key's 404
        return True


def _transfer_config(size: int) -> Any:
    """s3transfer settings for a managed multipart upload of ``size`` bytes."""
    from boto3.s3.transfer import TransferConfig

    # NOTE: s3transfer reads each part from the file by path while sending it (it never
    # buffers a part), so memory does not grow with the part size; 16 MiB parts keep the
    # request count and per-part overhead low and each part cheap to retry. Files over
    # 160 GiB (not produced by BleepStore: PUT and parts stop at 5 GiB) get bigger parts.
    part = max(PART_SIZE, math.ceil(size / MAX_PARTS / MiB) * MiB)
    return TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=part,
                          max_concurrency=UPLOAD_THREADS, preferred_transfer_client="classic")


def _is_urllib3(exc: Exception) -> bool:
    from urllib3.exceptions import HTTPError

    return isinstance(exc, HTTPError)


class _Boundary:
    """``with`` block that turns any SDK exception into a BleepStore one (not
    ``BlobMissing`` / ``S3Error`` already translated, nor ``StopIteration``)."""

    def __init__(self, cloud: AwsCloud, op: str, name: str) -> None:
        self.cloud, self.op, self.name = cloud, op, name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if not isinstance(exc, Exception):
            return
        if isinstance(exc, (BlobMissing, errors.S3Error, StopIteration)):
            return
        raise self.cloud.translate(exc, self.op, self.name) from exc


class _BodyChunks:
    """The chunks of a GetObject body, at most 1 MiB each; ``close()`` (also on the end,
    an error, or a consumer that stops early) returns the connection."""

    def __init__(self, body: Any, boundary: _Boundary) -> None:
        self._body = body
        self._chunks: Iterator[bytes] = body.iter_chunks(CHUNK)
        self._boundary = boundary
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._closed:
            raise StopIteration
        try:
            with self._boundary:
                return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._body.close()
