"""Multipart uploads (s3-api.md §14): create, upload part (and part copy), abort, list
parts, list uploads, and partNumber reads of completed objects. CompleteMultipartUpload
lives in ``multipart_complete`` and is re-exported here.

Invariants: a part is acknowledged only after its blob is durable and its row committed
(the commit re-checks that the upload still exists); a replaced part's blob goes to GC in
the same transaction.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from bleepstore import errors
from bleepstore.core import gc
from bleepstore.core.access import bucket_for, load_bucket, writer_owner
from bleepstore.core.copy import load_copy_source
from bleepstore.core.inputs import (
    acl_for_new_resource,
    content_headers,
    receive,
    reject_unsupported_headers,
)
from bleepstore.core.multipart_complete import complete_multipart_upload
from bleepstore.core.request import S3Request, S3Response, empty, xml_response
from bleepstore.core.services import Services
from bleepstore.core.stale import raise_if_superseded, retry_superseded
from bleepstore.core.uploads import UPLOAD_ID, load_upload, part_number
from bleepstore.metadata.commands import AbortUpload, CreateUpload, PutPart
from bleepstore.model import ObjectMeta, Part, Upload
from bleepstore.s3 import xml_render as render
from bleepstore.s3.acl import acl_to_json
from bleepstore.s3.checksums import ALGORITHMS, header_name
from bleepstore.s3.headers import now_iso
from bleepstore.s3.listing import build_page_from, parse_max_keys
from bleepstore.s3.names import user_metadata_from_headers, validate_storage_class
from bleepstore.storage.backend import BlobMissing

_COPY_RANGE = re.compile(r"bytes=(\d+)-(\d+)")
__all__ = ["abort_multipart_upload", "complete_multipart_upload", "create_multipart_upload",
           "list_multipart_uploads", "list_parts", "part_range", "upload_part",
           "upload_part_copy"]


def create_multipart_upload(svc: Services, req: S3Request) -> S3Response:
    reject_unsupported_headers(req)
    bucket = bucket_for(svc, req, "WRITE")
    algorithm = req.header("x-amz-checksum-algorithm")
    if algorithm is not None:
        algorithm = algorithm.upper()
        if algorithm not in ALGORITHMS:
            raise errors.InvalidRequest("Checksum algorithm provided is unsupported. Please "
                                        "try again with any of the valid types: "
                                        "[CRC32, CRC32C, CRC64NVME, SHA1, SHA256]")
    owner = writer_owner(req.principal, bucket)
    upload = Upload(
        upload_id=secrets.token_hex(16), bucket=bucket.name, key=req.key,
        owner_id=owner.id, owner_display=owner.display_name, initiated_at=now_iso(),
        content=content_headers(req),
        storage_class=validate_storage_class(req.header("x-amz-storage-class") or "STANDARD"),
        acl=acl_to_json(acl_for_new_resource(svc, req, owner, bucket)),
        user_metadata=user_metadata_from_headers(req.header_items),
        checksum_algorithm=algorithm)
    svc.store.apply(CreateUpload(upload))
    resp = xml_response(render.initiate_multipart_upload(bucket.name, req.key, upload.upload_id))
    return resp.header("x-amz-checksum-algorithm", algorithm)


def _commit_part(svc: Services, req: S3Request, upload: Upload, part: Part) -> None:
    try:
        replaced = svc.store.apply(PutPart(upload.bucket, upload.key, part, svc.gc_not_before()))
    except BaseException:
        svc.storage.delete(part.data_ref)
        raise
    gc.collect_now(svc, [replaced])


def upload_part(svc: Services, req: S3Request) -> S3Response:
    number = part_number(req.query.get("partNumber"))
    bucket_for(svc, req, "WRITE")
    upload = load_upload(svc, req)
    writer = svc.storage.open_writer("part", upload.upload_id, number)
    staged, digest = receive(req.payload, writer)
    part = Part(upload.upload_id, number, staged.size, f'"{staged.md5_hex}"', now_iso(),
                staged.data_ref, checksum_value=digest.checksum_b64
                if digest.checksum_algorithm == upload.checksum_algorithm else None)
    _commit_part(svc, req, upload, part)
    resp = empty(200).header("ETag", part.etag)
    if digest.checksum_algorithm and digest.checksum_b64:
        resp.header(header_name(digest.checksum_algorithm), digest.checksum_b64)
    return resp


def _copy_range(value: str | None, size: int) -> tuple[int, int] | None:
    if value is None:
        return None
    m = _COPY_RANGE.fullmatch(value.strip())
    if m is None or int(m.group(1)) > int(m.group(2)):
        raise errors.InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where "
            "first and last are the zero-based offsets of the first and last bytes to copy",
            ArgumentName="x-amz-copy-source-range", ArgumentValue=value)
    first, last = int(m.group(1)), int(m.group(2))
    if last >= size:
        raise errors.InvalidArgument(
            f"Range specified is not valid for source object of size: {size}",
            ArgumentName="x-amz-copy-source-range", ArgumentValue=value)
    return first, last


def upload_part_copy(svc: Services, req: S3Request) -> S3Response:
    return retry_superseded(lambda: _upload_part_copy_once(svc, req))


def _upload_part_copy_once(svc: Services, req: S3Request) -> S3Response:
    number = part_number(req.query.get("partNumber"))
    bucket_for(svc, req, "WRITE")
    upload = load_upload(svc, req)
    src = load_copy_source(svc, req)
    byte_range = _copy_range(req.header("x-amz-copy-source-range"), src.size)
    try:
        staged = svc.storage.copy_to_part(src.data_ref, upload.upload_id, number, byte_range)
    except BlobMissing:
        raise_if_superseded(svc, src)  # source overwritten meanwhile: redo from its new row
        raise errors.InternalError() from None
    part = Part(upload.upload_id, number, staged.size, f'"{staged.md5_hex}"', now_iso(),
                staged.data_ref)
    _commit_part(svc, req, upload, part)
    return xml_response(render.copy_part_result(part.etag, part.last_modified))


def abort_multipart_upload(svc: Services, req: S3Request) -> S3Response:
    bucket_for(svc, req, "WRITE")
    upload_id = req.query.get("uploadId", "")
    if not UPLOAD_ID.fullmatch(upload_id):
        raise errors.NoSuchUpload(UploadId=upload_id)
    svc.store.apply(AbortUpload(req.bucket, req.key, upload_id, svc.gc_not_before()))
    gc.collect_now(svc, [f"upload:{upload_id}"])
    return empty(204)


def list_parts(svc: Services, req: S3Request) -> S3Response:
    bucket = load_bucket(svc, req)
    upload = load_upload(svc, req)
    if req.principal.id not in (bucket.owner_id, upload.owner_id):
        raise errors.AccessDenied()
    max_parts = parse_max_keys(req.query.get("max-parts"), "max-parts")
    raw_marker = req.query.get("part-number-marker", "0") or "0"
    # NOTE: ASCII digits within the integer range only: str.isdigit() also accepts "²",
    # which int() refuses, and SQLite cannot bind integers past 64 bits (both were a 500).
    if re.fullmatch(r"[0-9]{1,10}", raw_marker) is None or int(raw_marker) > 2**31 - 1:
        raise errors.InvalidArgument("Invalid part-number-marker",
                                     ArgumentName="part-number-marker", ArgumentValue=raw_marker)
    marker = int(raw_marker)
    parts = svc.store.list_parts(upload.upload_id, after=marker, limit=max_parts + 1)
    truncated = len(parts) > max_parts
    return xml_response(render.list_parts(upload, parts[:max_parts], part_number_marker=marker,
                                          max_parts=max_parts, is_truncated=truncated))


@dataclass(frozen=True)
class _UploadSource:
    svc: Services
    bucket: str

    def scan(self, start_after: tuple[str, str, str] | None, prefix: str,
             limit: int) -> Sequence[Upload]:
        return self.svc.store.scan_uploads_after(self.bucket, start_after, prefix, limit)

    def cursor_of(self, item: Upload) -> tuple[str, str, str]:
        return (item.key, item.initiated_at, item.upload_id)

    def cursor_after_key(self, key: str) -> tuple[str, str, str]:
        return (key, "\U0010ffff", "")


def list_multipart_uploads(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "READ")
    encoding = req.query.get("encoding-type")
    if encoding is not None and encoding != "url":
        raise errors.InvalidArgument("Invalid Encoding Method specified in Request",
                                     ArgumentName="encoding-type", ArgumentValue=encoding)
    prefix = req.query.get("prefix", "")
    delimiter = req.query.get("delimiter") or None
    max_uploads = parse_max_keys(req.query.get("max-uploads"), "max-uploads")
    key_marker = req.query.get("key-marker") or None
    id_marker = req.query.get("upload-id-marker") or None
    source = _UploadSource(svc, bucket.name)
    start = None
    if key_marker is not None and id_marker is not None:
        marker = svc.store.get_upload(id_marker) if UPLOAD_ID.fullmatch(id_marker) else None
        start = (source.cursor_of(marker) if marker is not None and marker.key == key_marker
                 else (key_marker, "", id_marker))
    with svc.store.snapshot():
        page = build_page_from(source, prefix=prefix, delimiter=delimiter,
                               max_keys=max_uploads, after=key_marker, start=start)
    last = page.last_item
    return xml_response(render.list_multipart_uploads(
        bucket.name, page.contents, page.common_prefixes, key_marker=key_marker,
        upload_id_marker=id_marker if key_marker is not None else None,
        next_key_marker=page.next_marker,
        next_upload_id_marker=last.upload_id if last is not None else None,
        delimiter=delimiter, prefix=req.query.get("prefix"), encoding_type=encoding,
        max_uploads=max_uploads, is_truncated=page.is_truncated))


def part_range(svc: Services, req: S3Request, obj: ObjectMeta) -> tuple[int, int] | None:
    """GetObject/HeadObject ``partNumber=N``: the byte window of that part, or None."""
    if "partNumber" not in req.query:
        return None
    number = part_number(req.query.get("partNumber"))
    if req.header("range") is not None:
        raise errors.InvalidRequest("Cannot specify both Range header and partNumber query "
                                    "parameter")
    if not obj.parts_count:
        if number != 1:
            raise errors.InvalidPartNumber()
        return (0, obj.size - 1) if obj.size else None
    window = svc.store.part_window(obj.data_ref, number)
    if window is None:
        raise errors.InvalidPartNumber()
    offset, size = window
    if size == 0:
        return None
    return offset, offset + size - 1

