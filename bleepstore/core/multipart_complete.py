"""CompleteMultipartUpload (s3-api.md §14.4, storage.md §3.5 and §5.2).

Invariants:
- Validation (steps 1-7) finishes before any byte moves.
- Assembly makes the listed parts, in order, one new immutable blob (the local backend
  hard-links the part files into a composite blob and copies nothing; gateways compose
  upstream); the blob is durable and in place before the single commit that creates the
  object, drops the upload and parts, records the ``completed_uploads`` row and the GC
  intents. A crash leaves the old state (the upload, completable again) or the new
  object (a retry replays), never a mix.
- A Complete that loses a race (a concurrent Complete of the same upload, typically a
  client retry, or an Abort) answers like a replay or NoSuchUpload, never 500.
- ``If-Match`` / ``If-None-Match: *`` are PutObject's (``s3.conditions``), decided by the
  commit; a failed condition leaves the upload completable.
- The object's checksum is built from the parts' checksums alone (COMPOSITE: a digest of
  their digests; FULL_OBJECT: their CRCs combined with their sizes), so a checksum the
  request states (``x-amz-checksum-<alg>``) is checked before any byte moves.
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
from bleepstore.core.request import Payload, S3Request, S3Response, origin_of, xml_response
from bleepstore.core.services import Services
from bleepstore.core.uploads import load_upload
from bleepstore.metadata.commands import CompleteUpload
from bleepstore.model import ObjectMeta, Part, StagedBlob, Upload
from bleepstore.s3 import xml
from bleepstore.s3 import xml_render as render
from bleepstore.s3.checksums import (
    COMPOSITE,
    DIGEST_SIZES,
    FULL_OBJECT,
    DigestResult,
    full_object_crc,
    integrity_from_headers,
    mismatch_message,
    multipart_checksum_type,
    new_hasher,
    parse_checksum_type,
    type_mismatch_message,
)
from bleepstore.s3.conditions import check_write_preconditions, validate_write_condition_headers
from bleepstore.s3.headers import normalize_etag, now_iso
from bleepstore.s3.sigv4_signing import uri_encode
from bleepstore.storage.backend import BlobMissing
from bleepstore.storage.faults import fault_point

MIN_PART_SIZE = 5 * 1024 * 1024
COMPLETE_BODY_LIMIT = 8 * 1024 * 1024
ASSEMBLY_ATTEMPTS = 3  # a listed part's blob may vanish when it is re-uploaded meanwhile


PART_CHECKSUM_INVALID_MSG = "Invalid Base64 or multiple checksums present in request"


@dataclass(frozen=True)
class _Listed:
    number: int
    etag: str
    checksums: dict[str, str]


def _b64digest(alg: str, value: str) -> bytes | None:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except ValueError:  # binascii.Error is a ValueError
        return None
    return raw if len(raw) == DIGEST_SIZES[alg] else None


def _check_part_checksum(upload: Upload, item: _Listed, part: Part) -> None:
    """Step 4, the listed checksum against the part's [S3]: one per part, valid base64 of
    the right size, of the upload's algorithm and equal to the part's; required by a
    COMPOSITE upload (whose checksum is made of them)."""
    alg = upload.checksum_algorithm
    if alg is None:  # [BS] checksums listed for an upload without one are not checked
        return
    if len(item.checksums) > 1:
        raise errors.InvalidArgument(PART_CHECKSUM_INVALID_MSG)
    for given_alg, value in item.checksums.items():
        raw = _b64digest(given_alg, value)
        if raw is None:
            raise errors.InvalidArgument(PART_CHECKSUM_INVALID_MSG)
        if given_alg != alg:
            raise errors.BadDigest(f"The {given_alg.lower()} you specified for part "
                                   f"{item.number} did not match what we received.")
        if part.checksum_value and raw != base64.b64decode(part.checksum_value):
            raise errors.InvalidPart(UploadId=upload.upload_id, PartNumber=item.number)
    if not item.checksums and multipart_checksum_type(alg, upload.checksum_type) == COMPOSITE:
        raise errors.InvalidRequest(
            f"The upload was created using a {alg.lower()} checksum. The complete request "
            f"must include the checksum for each part. It was missing for part "
            f"{item.number} in the request.")


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
        _check_part_checksum(upload, item, part)
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


def _check_write_conditions(svc: Services, req: S3Request) -> tuple[str | None, str | None]:
    """Step 7: ``If-Match`` / ``If-None-Match: *`` against the current object, as PutObject
    (fail fast; the commit checks them again in its transaction) -> (if_match, if_none_match).
    """
    if_match, if_none_match = req.header("if-match"), req.header("if-none-match")
    validate_write_condition_headers(if_none_match)
    if if_match is not None or if_none_match is not None:
        current = svc.store.get_object(req.bucket, req.key)
        check_write_preconditions(if_match, if_none_match, current.etag if current else None,
                                  key=req.key)
    return if_match, if_none_match


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


def object_checksum(upload: Upload, parts: Sequence[Part]) -> str | None:
    """The completed object's checksum: COMPOSITE ``<b64>-N``, or FULL_OBJECT (the CRC of
    the whole object, combined from the parts' CRCs and sizes); None unless every listed
    part carries a checksum of the upload's algorithm (parts stored before they all did)."""
    alg = upload.checksum_algorithm
    if alg is None or not parts or any(not p.checksum_value for p in parts):
        return None
    if multipart_checksum_type(alg, upload.checksum_type) == FULL_OBJECT:
        crc = full_object_crc(alg, [(base64.b64decode(p.checksum_value or ""), p.size)
                                    for p in parts])
        return base64.b64encode(crc).decode()
    return composite_checksum(alg, parts)


@dataclass(frozen=True)
class _Stated:
    """The object checksum a Complete request states (``x-amz-checksum-<alg>``)."""

    algorithm: str
    digest: bytes


def _stated_checksum(req: S3Request, upload: Upload) -> _Stated | None:
    """``x-amz-checksum-type`` must be the upload's; an ``x-amz-checksum-<alg>`` header
    (already checked well-formed, single, with the payload) must be of its algorithm."""
    alg = upload.checksum_algorithm
    kind = multipart_checksum_type(alg, upload.checksum_type)
    requested = req.header("x-amz-checksum-type")
    if requested is not None and parse_checksum_type(requested) != kind:
        raise errors.InvalidRequest(f"The upload was created using the {kind or 'null'} "
                                    "checksum mode. The complete request must use the same "
                                    "checksum mode.")
    spec = integrity_from_headers(req.header)
    if spec.checksum_algorithm is None or spec.checksum_b64 is None:
        return None
    if spec.checksum_algorithm != alg:
        raise errors.InvalidRequest(type_mismatch_message(alg, spec.checksum_algorithm))
    return _Stated(alg, base64.b64decode(spec.checksum_b64))


def _check_stated(stated: _Stated | None, value: str | None) -> None:
    """BadDigest when the stated checksum is not the object's (a COMPOSITE value is
    compared without its ``-N``)."""
    if stated is None or value is None:
        return
    if base64.b64decode(value.partition("-")[0]) != stated.digest:
        raise errors.BadDigest(mismatch_message(stated.algorithm))


class _CompleteBody:
    """Complete's payload. Its ``x-amz-checksum-<alg>`` header is the object's checksum, not
    the body's [S3]: the payload's mismatch for it is dropped here (it is raised after the
    content-sha256, Content-MD5 and chunk-signature checks, which still apply) and the value
    is checked against the object (``_check_stated``)."""

    def __init__(self, payload: Payload) -> None:
        self._payload = payload
        self.declared_length = payload.declared_length

    def read(self, size: int) -> bytes:
        return self._payload.read(size)

    def finish(self) -> DigestResult:
        try:
            return self._payload.finish()
        except errors.ChecksumMismatch:
            return DigestResult(0, "", None, None)


def _location(req: S3Request) -> str:
    key = uri_encode(req.key.encode("utf-8"), encode_slash=False)
    path = key if req.virtual_host else f"{req.bucket}/{key}"
    return f"{req.scheme}://{req.host}/{path}"


def _result(req: S3Request, etag: str, checksum_algorithm: str | None = None,
            checksum_value: str | None = None) -> S3Response:
    return xml_response(render.complete_multipart_upload(
        _location(req), req.bucket, req.key, etag, checksum_algorithm=checksum_algorithm,
        checksum_value=checksum_value))


def _replay(svc: Services, req: S3Request) -> S3Response:
    """Step 1 [BS]: a completed upload whose object is unchanged answers the same 200."""
    upload_id = req.query.get("uploadId", "")
    done = svc.store.get_completed(upload_id)
    if done is not None and (done.bucket, done.key) == (req.bucket, req.key):
        current = svc.store.get_object(req.bucket, req.key)
        if current is not None and current.etag == done.etag:
            resp = _result(req, done.etag, current.checksum_algorithm, current.checksum_value)
            if current.version_id is not None:
                resp.header("x-amz-version-id", current.version_id)
            return resp
    raise errors.NoSuchUpload(UploadId=upload_id)


def _assemble(svc: Services, upload: Upload, listed: Sequence[_Listed],
              parts: list[Part]) -> tuple[list[Part], StagedBlob]:
    """One pass over the listed parts into a new durable blob (not yet referenced)."""
    for _ in range(ASSEMBLY_ATTEMPTS):
        try:
            return parts, svc.storage.assemble(parts)
        except (BlobMissing, errors.InvalidPart) as exc:
            # a listed part was re-uploaded, or the upload was settled: an Abort that won
            # the race has also discarded what a native upload held (Azure: InvalidPart)
            if not svc.store.upload_exists(upload.upload_id):
                raise errors.NoSuchUpload(UploadId=upload.upload_id) from None
            if isinstance(exc, errors.InvalidPart):
                raise
            parts = _validate_parts(svc, upload, listed)  # InvalidPart if its ETag changed
    raise errors.InternalError()


def _command(svc: Services, req: S3Request, upload: Upload, parts: list[Part],
             staged: StagedBlob, conditions: tuple[str | None, str | None]) -> CompleteUpload:
    now = now_iso()
    meta = ObjectMeta(
        bucket=upload.bucket, key=upload.key, size=staged.size, etag=composite_etag(parts),
        last_modified=now, data_ref=staged.data_ref, content=upload.content,
        storage_class=upload.storage_class, acl=upload.acl,
        user_metadata=upload.user_metadata, parts_count=len(parts),
        checksum_algorithm=upload.checksum_algorithm,
        checksum_value=object_checksum(upload, parts), tags=upload.tags)
    if_match, if_none_match = conditions
    return CompleteUpload(upload.upload_id, meta, now, svc.gc_not_before(),
                          tuple(p.size for p in parts), if_none_match, if_match=if_match,
                          origin=origin_of(req))


def complete_multipart_upload(svc: Services, req: S3Request) -> S3Response:
    bucket_for(svc, req, "WRITE")
    try:
        upload = load_upload(svc, req)
    except errors.NoSuchUpload:
        return _replay(svc, req)
    body = read_xml_body(_CompleteBody(req.payload), limit=COMPLETE_BODY_LIMIT)
    if not body.strip():  # [S3] MalformedXML, not MissingRequestBodyError (decisions.md)
        raise errors.MalformedXML()
    listed = [_Listed(n, e, c) for n, e, c in xml.parse_complete_multipart(body)]
    stated = _stated_checksum(req, upload)
    try:
        parts = _validate_parts(svc, upload, listed)
        _check_stated(stated, object_checksum(upload, parts))
        conditions = _check_write_conditions(svc, req)
        parts, staged = _assemble(svc, upload, listed, parts)
        cmd = _command(svc, req, upload, parts, staged, conditions)
        # NOTE: a backend that builds the result at the upload's reserved ref (AWS
        # passthrough, Azure blocks) hands a concurrent Complete that same blob.
        released = commit_object(svc, cmd, blob_is_ours=staged.data_ref != upload.data_ref)
    except errors.NoSuchUpload:  # a concurrent Complete (a client retry) or Abort won
        return _replay(svc, req)
    fault_point("complete.after_commit")
    refs, version_id = released
    gc.collect_now(svc, refs)
    resp = _result(req, cmd.meta.etag, cmd.meta.checksum_algorithm, cmd.meta.checksum_value)
    if version_id is not None:
        resp.header("x-amz-version-id", version_id)
    return resp
