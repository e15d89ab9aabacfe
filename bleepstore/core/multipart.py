"""Multipart uploads (s3-api.md §14): create, upload part (and part copy), abort, list
parts, list uploads, and partNumber reads of completed objects. CompleteMultipartUpload
lives in ``multipart_complete`` and is re-exported here.

Invariants: a part is acknowledged only after its blob is durable and its row committed
(the commit re-checks that the upload still exists); a replaced part's blob goes to GC in
the same transaction. In an upload with a checksum algorithm every new part carries a
checksum of it (sent and verified, or computed here as the bytes stream: FULL_OBJECT parts
sent without one, UploadPartCopy parts), so Complete can build the object's checksum.
"""

from __future__ import annotations

import base64
import logging
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
from bleepstore.core.request import S3Request, S3Response, empty, origin_of, xml_response
from bleepstore.core.services import Services
from bleepstore.core.stale import raise_if_superseded, retry_superseded
from bleepstore.core.uploads import UPLOAD_ID, load_upload, part_number
from bleepstore.metadata.commands import AbortUpload, CreateUpload, PutPart
from bleepstore.model import ObjectMeta, Part, StagedBlob, Upload
from bleepstore.s3 import xml_listings
from bleepstore.s3 import xml_render as render
from bleepstore.s3.acl import acl_to_json
from bleepstore.s3.checksums import (
    ALGORITHMS,
    FULL_OBJECT,
    Hasher,
    checksum_type_for_create,
    header_name,
    integrity_from_headers,
    multipart_checksum_type,
    new_hasher,
    type_mismatch_message,
)
from bleepstore.s3.headers import now_iso
from bleepstore.s3.listing import build_page_from, parse_max_keys
from bleepstore.s3.names import user_metadata_from_headers, validate_storage_class
from bleepstore.s3.numbers import INT32_MAX, parse_bounded
from bleepstore.s3.ranges import parse_copy_source_range
from bleepstore.s3.tags import parse_header as parse_tags_header
from bleepstore.storage.backend import BlobMissing, BlobWriter

log = logging.getLogger("bleepstore.storage")

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
    checksum_type = checksum_type_for_create(algorithm, req.header("x-amz-checksum-type"))
    tags = parse_tags_header(req.header("x-amz-tagging"))
    owner = writer_owner(req.principal, bucket)
    upload_id = secrets.token_hex(16)
    reserved = svc.storage.init_upload(upload_id)
    upload = Upload(
        upload_id=upload_id, bucket=bucket.name, key=req.key,
        owner_id=owner.id, owner_display=owner.display_name, initiated_at=now_iso(),
        content=content_headers(req),
        storage_class=validate_storage_class(req.header("x-amz-storage-class") or "STANDARD"),
        acl=acl_to_json(acl_for_new_resource(svc, req, owner, bucket)),
        user_metadata=user_metadata_from_headers(req.header_items),
        checksum_algorithm=algorithm, data_ref=reserved, checksum_type=checksum_type,
        tags=tags)
    try:
        svc.store.apply(CreateUpload(upload, origin=origin_of(req)))
    except BaseException as exc:
        gc.discard_uncommitted(svc, f"upload:{upload_id}", exc)
        raise
    resp = xml_response(render.initiate_multipart_upload(bucket.name, req.key, upload.upload_id))
    return resp.header("x-amz-checksum-algorithm", algorithm).header("x-amz-checksum-type",
                                                                     checksum_type)


def _commit_part(svc: Services, req: S3Request, upload: Upload, part: Part) -> None:
    try:
        replaced = svc.store.apply(PutPart(upload.bucket, upload.key, part, svc.gc_not_before(),
                                           origin=origin_of(req)))
    except BaseException as exc:
        gc.discard_uncommitted(svc, part.data_ref, exc)
        raise
    gc.collect_now(svc, [replaced])


class _HashingWriter:
    """A ``BlobWriter`` that also hashes what it writes: the checksum S3 computes itself
    for a part sent without one."""

    def __init__(self, inner: BlobWriter, hasher: Hasher) -> None:
        self._inner, self.hasher = inner, hasher

    def write(self, data: bytes) -> None:
        self.hasher.update(data)
        self._inner.write(data)

    def finish(self) -> StagedBlob:
        return self._inner.finish()

    def abort(self) -> None:
        self._inner.abort()

    @property
    def size(self) -> int:
        return self._inner.size


def _part_checksum_plan(req: S3Request, upload: Upload) -> str | None:
    """Before any body byte: the request's checksum algorithm must be the upload's [S3];
    a FULL_OBJECT part sent without one gets it computed (the algorithm is returned), a
    COMPOSITE part without one is refused, since the object's checksum needs it."""
    alg = upload.checksum_algorithm
    if alg is None:
        return None
    sent = integrity_from_headers(req.header).checksum_algorithm  # header or trailer
    if sent == alg:
        return None
    if sent is None and multipart_checksum_type(alg, upload.checksum_type) == FULL_OBJECT:
        return alg
    raise errors.InvalidRequest(type_mismatch_message(alg, sent))


def upload_part(svc: Services, req: S3Request) -> S3Response:
    number = part_number(req.query.get("partNumber"))
    bucket_for(svc, req, "WRITE")
    upload = load_upload(svc, req)
    compute = _part_checksum_plan(req, upload)
    writer: BlobWriter = svc.storage.open_writer("part", upload.upload_id, number)
    hashing = _HashingWriter(writer, new_hasher(compute)) if compute is not None else None
    staged, digest = receive(req.payload, hashing or writer)
    alg, value = digest.checksum_algorithm, digest.checksum_b64
    if hashing is not None:
        alg, value = compute, base64.b64encode(hashing.hasher.digest()).decode()
    part = Part(upload.upload_id, number, staged.size, f'"{staged.md5_hex}"', now_iso(),
                staged.data_ref, checksum_value=value
                if alg is not None and alg == upload.checksum_algorithm else None,
                backend_ref=staged.backend_ref)
    _commit_part(svc, req, upload, part)
    resp = empty(200).header("ETag", part.etag)
    if alg and value:
        resp.header(header_name(alg), value)
    return resp


def upload_part_copy(svc: Services, req: S3Request) -> S3Response:
    return retry_superseded(lambda: _upload_part_copy_once(svc, req))


def _upload_part_copy_once(svc: Services, req: S3Request) -> S3Response:
    number = part_number(req.query.get("partNumber"))
    bucket_for(svc, req, "WRITE")
    upload = load_upload(svc, req)
    src, src_version = load_copy_source(svc, req)
    byte_range = parse_copy_source_range(req.header("x-amz-copy-source-range"), src.size)
    whole = byte_range is None or byte_range == (0, src.size - 1)
    # NOTE: the whole of a single-part source: its ETag is the part's, so a gateway can
    # copy in the cloud instead of streaming the bytes through to hash them.
    same_etag = whole and not src.parts_count
    try:
        checksum = _copied_checksum(svc, upload, src, byte_range, whole)
        staged = svc.storage.copy_to_part(src.data_ref, upload.upload_id, number,
                                          None if whole else byte_range, need_md5=not same_etag)
    except BlobMissing:
        raise_if_superseded(svc, src)  # source overwritten meanwhile: redo from its new row
        raise errors.InternalError() from None
    etag = src.etag if same_etag else f'"{staged.md5_hex}"'
    part = Part(upload.upload_id, number, staged.size, etag, now_iso(), staged.data_ref,
                checksum_value=checksum, backend_ref=staged.backend_ref)
    _commit_part(svc, req, upload, part)
    resp = xml_response(render.copy_part_result(part.etag, part.last_modified,
                                                upload.checksum_algorithm, checksum))
    if src_version is not None:
        resp.header("x-amz-copy-source-version-id", src_version)
    return resp


def _copied_checksum(svc: Services, upload: Upload, src: ObjectMeta,
                     byte_range: tuple[int, int] | None, whole: bool) -> str | None:
    """[S3] the checksum of the copied bytes, in the upload's algorithm (CopyPartResult,
    ListParts). The source's own full-object checksum when it is that; otherwise the range
    is streamed from the immutable source blob and hashed (raises ``BlobMissing``)."""
    alg = upload.checksum_algorithm
    if alg is None:
        return None
    if (whole and src.checksum_algorithm == alg and src.checksum_value
            and "-" not in src.checksum_value):  # not a COMPOSITE "<b64>-N"
        return src.checksum_value
    first, length = (0, src.size) if byte_range is None else (
        byte_range[0], byte_range[1] - byte_range[0] + 1)
    hasher = new_hasher(alg)
    if length:
        reader = svc.storage.open_read(src.data_ref, first, length)
        try:
            for chunk in reader:
                hasher.update(chunk)
        finally:
            reader.close()
    return base64.b64encode(hasher.digest()).decode()


def abort_multipart_upload(svc: Services, req: S3Request) -> S3Response:
    bucket_for(svc, req, "WRITE")
    upload_id = req.query.get("uploadId", "")
    if not UPLOAD_ID.fullmatch(upload_id):
        raise errors.NoSuchUpload(UploadId=upload_id)
    svc.store.apply(AbortUpload(req.bucket, req.key, upload_id, svc.gc_not_before(),
                                origin=origin_of(req)))
    gc.collect_now(svc, [f"upload:{upload_id}"])
    return empty(204)


def list_parts(svc: Services, req: S3Request) -> S3Response:
    bucket = load_bucket(svc, req)
    upload = load_upload(svc, req)
    if req.principal.id not in (bucket.owner_id, upload.owner_id):
        raise errors.AccessDenied()
    max_parts = parse_max_keys(req.query.get("max-parts"), "max-parts")
    raw_marker = req.query.get("part-number-marker", "0") or "0"
    marker = parse_bounded(raw_marker, 0, INT32_MAX, lambda: errors.InvalidArgument(
        "Invalid part-number-marker", ArgumentName="part-number-marker",
        ArgumentValue=raw_marker))
    parts = svc.store.list_parts(upload.upload_id, after=marker, limit=max_parts + 1)
    truncated = len(parts) > max_parts
    return xml_response(xml_listings.list_parts(
        upload, parts[:max_parts], part_number_marker=marker, max_parts=max_parts,
        is_truncated=truncated))


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
    return xml_response(xml_listings.list_multipart_uploads(
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
    # NOTE: past the object's parts S3 answers 416 InvalidPartNumber with the two counts,
    # not 400 InvalidPart (docs/decisions.md); a non-multipart object has one part.
    if not obj.parts_count:
        if number != 1:
            raise errors.InvalidPartNumber(PartNumberRequested=number, ActualPartCount=1)
        return (0, obj.size - 1) if obj.size else None
    window = svc.store.part_window(obj.data_ref, number)
    if window is None:
        raise errors.InvalidPartNumber(PartNumberRequested=number,
                                       ActualPartCount=obj.parts_count)
    offset, size = window
    if size == 0:
        return None
    return offset, offset + size - 1

