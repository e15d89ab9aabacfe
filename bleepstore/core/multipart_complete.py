"""CompleteMultipartUpload (s3-api.md §14.4, storage.md §3.5 and §5.2).

Invariants:
- Validation (steps 1-7) finishes before any byte moves.
- Assembly streams the listed parts, in order, into one new immutable blob in one pass
  (the local backend copies in the kernel); the blob is fsynced and renamed before the
  single commit that creates the object, drops the upload and parts, records the
  ``completed_uploads`` row and the GC intents. A crash leaves the old state (the upload,
  completable again) or the new object (a retry replays), never a mix.
- A Complete that loses a race (a concurrent Complete of the same upload, typically a
  client retry, or an Abort) answers like a replay or NoSuchUpload, never 500.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from bleepstore import errors
from bleepstore.core import gc
from bleepstore.core.access import bucket_for
from bleepstore.core.inputs import read_xml_body
from bleepstore.core.objects import commit_object
from bleepstore.core.request import S3Request, S3Response, xml_response
from bleepstore.core.services import Services
from bleepstore.core.uploads import load_upload
from bleepstore.metadata.commands import CompleteUpload
from bleepstore.model import ObjectMeta, Part, StagedBlob, Upload
from bleepstore.s3 import xml
from bleepstore.s3 import xml_render as render
from bleepstore.s3.checksums import new_hasher
from bleepstore.s3.headers import normalize_etag, now_iso
from bleepstore.s3.sigv4 import uri_encode
from bleepstore.storage.backend import BlobMissing
from bleepstore.storage.faults import fault_point

MIN_PART_SIZE = 5 * 1024 * 1024
COMPLETE_BODY_LIMIT = 8 * 1024 * 1024
ASSEMBLY_ATTEMPTS = 3  # a listed part's blob may vanish when it is re-uploaded meanwhile


@dataclass(frozen=True)
class _Listed:
    number: int
    etag: str
    checksums: dict[str, str]


def _check_listed(svc: Services, upload: Upload, listed: Sequence[_Listed]) -> list[Part]:
    """Steps 3-4: strictly increasing numbers; each part uploaded with that ETag/checksum."""
    previous = 0
    for item in listed:
        if item.number <= previous:
            raise errors.InvalidPartOrder(UploadId=upload.upload_id)
        previous = item.number
    with svc.store.snapshot():  # the parts of a live upload, never of a settled one
        if not svc.store.upload_exists(upload.upload_id):
            raise errors.NoSuchUpload(UploadId=upload.upload_id)
        stored = {p.part_number: p for p in svc.store.list_parts(upload.upload_id)}
    parts: list[Part] = []
    for item in listed:
        part = stored.get(item.number)
        if part is None or normalize_etag(part.etag) != normalize_etag(item.etag):
            raise errors.InvalidPart(UploadId=upload.upload_id, PartNumber=item.number)
        given = item.checksums.get(upload.checksum_algorithm or "")
        if given is not None and part.checksum_value and given.strip() != part.checksum_value:
            raise errors.InvalidPart(UploadId=upload.upload_id, PartNumber=item.number)
        parts.append(part)
    return parts


def _validate_parts(svc: Services, upload: Upload, listed: Sequence[_Listed]) -> list[Part]:
    """Steps 3-6: order, existence + ETag/checksum, minimum size, total size."""
    parts = _check_listed(svc, upload, listed)
    for part in parts[:-1]:
        if part.size < MIN_PART_SIZE:
            raise errors.EntityTooSmall(ProposedSize=part.size, MinSizeAllowed=MIN_PART_SIZE,
                                        PartNumber=part.part_number, ETag=part.etag)
    total = sum(p.size for p in parts)
    if total > svc.config.server.max_object_size:
        raise errors.EntityTooLarge(ProposedSize=total,
                                    MaxSizeAllowed=svc.config.server.max_object_size)
    return parts


def _check_if_none_match(svc: Services, req: S3Request) -> str | None:
    """Step 7: ``If-None-Match: *`` and the key exists -> 412 (re-checked at commit)."""
    value = req.header("if-none-match")
    if value is not None:
        if value.strip() != "*":
            raise errors.S3NotImplemented(Header="If-None-Match")
        if svc.store.get_object(req.bucket, req.key) is not None:
            raise errors.PreconditionFailed(Condition="If-None-Match")
    return value


def composite_etag(parts: Sequence[Part]) -> str:
    """[S3] ``"md5(concat(part md5 digests))-N"``."""
    digest = hashlib.md5(b"".join(bytes.fromhex(normalize_etag(p.etag)) for p in parts))
    return f'"{digest.hexdigest()}-{len(parts)}"'


def composite_checksum(algorithm: str | None, parts: Sequence[Part]) -> str | None:
    """[S3] COMPOSITE checksum: ``b64(alg(concat(part digests)))-N``; None unless every
    listed part carries a checksum of the upload's algorithm."""
    if algorithm is None or not parts or any(not p.checksum_value for p in parts):
        return None
    hasher = new_hasher(algorithm)
    for part in parts:
        hasher.update(base64.b64decode(part.checksum_value or ""))
    return f"{base64.b64encode(hasher.digest()).decode()}-{len(parts)}"


def _location(req: S3Request) -> str:
    key = uri_encode(req.key.encode("utf-8"), encode_slash=False)
    path = key if req.virtual_host else f"{req.bucket}/{key}"
    return f"{req.scheme}://{req.host}/{path}"


def _result(req: S3Request, etag: str) -> S3Response:
    return xml_response(render.complete_multipart_upload(_location(req), req.bucket, req.key,
                                                         etag))


def _replay(svc: Services, req: S3Request) -> S3Response:
    """Step 1 [BS]: a completed upload whose object is unchanged answers the same 200."""
    upload_id = req.query.get("uploadId", "")
    done = svc.store.get_completed(upload_id)
    if done is not None and (done.bucket, done.key) == (req.bucket, req.key):
        current = svc.store.get_object(req.bucket, req.key)
        if current is not None and current.etag == done.etag:
            return _result(req, done.etag)
    raise errors.NoSuchUpload(UploadId=upload_id)


def _assemble(svc: Services, upload: Upload, listed: Sequence[_Listed],
              parts: list[Part]) -> tuple[list[Part], StagedBlob]:
    """One pass over the listed parts into a new durable blob (not yet referenced)."""
    for _ in range(ASSEMBLY_ATTEMPTS):
        try:
            return parts, svc.storage.assemble(parts)
        except BlobMissing:  # a listed part was re-uploaded, or the upload was settled
            if not svc.store.upload_exists(upload.upload_id):
                raise errors.NoSuchUpload(UploadId=upload.upload_id) from None
            parts = _validate_parts(svc, upload, listed)  # InvalidPart if its ETag changed
    raise errors.InternalError()


def _command(svc: Services, upload: Upload, parts: list[Part], staged: StagedBlob,
             if_none_match: str | None) -> CompleteUpload:
    now = now_iso()
    meta = ObjectMeta(
        bucket=upload.bucket, key=upload.key, size=staged.size, etag=composite_etag(parts),
        last_modified=now, data_ref=staged.data_ref, content=upload.content,
        storage_class=upload.storage_class, acl=upload.acl,
        user_metadata=upload.user_metadata, parts_count=len(parts),
        checksum_algorithm=upload.checksum_algorithm,
        checksum_value=composite_checksum(upload.checksum_algorithm, parts))
    return CompleteUpload(upload.upload_id, meta, now, svc.gc_not_before(),
                          tuple(p.size for p in parts), if_none_match)


def complete_multipart_upload(svc: Services, req: S3Request) -> S3Response:
    bucket_for(svc, req, "WRITE")
    try:
        upload = load_upload(svc, req)
    except errors.NoSuchUpload:
        return _replay(svc, req)
    body = read_xml_body(req.payload, limit=COMPLETE_BODY_LIMIT)
    if not body.strip():
        raise errors.MissingRequestBodyError()
    listed = [_Listed(n, e, c) for n, e, c in xml.parse_complete_multipart(body)]
    try:
        parts = _validate_parts(svc, upload, listed)
        if_none_match = _check_if_none_match(svc, req)
        parts, staged = _assemble(svc, upload, listed, parts)
        cmd = _command(svc, upload, parts, staged, if_none_match)
        released = commit_object(svc, cmd)
    except errors.NoSuchUpload:  # a concurrent Complete (a client retry) or Abort won
        return _replay(svc, req)
    fault_point("complete.after_commit")
    gc.collect_now(svc, released or [])
    return _result(req, cmd.meta.etag)
