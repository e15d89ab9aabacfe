"""Request inputs shared by write operations: content headers, ACL input, payloads.

Invariants: payloads are copied in bounded chunks (never read whole); a staged blob
whose verification fails is aborted before anything references it.
"""

from __future__ import annotations

import errno

from bleepstore import errors
from bleepstore.core.request import Payload, S3Request
from bleepstore.core.services import Services
from bleepstore.model import Acl, Bucket, ContentHeaders, Owner, StagedBlob
from bleepstore.s3.acl import acl_from_headers, acl_from_xml, canned_acl
from bleepstore.s3.checksums import DigestResult
from bleepstore.s3.headers import stored_content_encoding
from bleepstore.s3.router import refuse_unimplemented_headers
from bleepstore.storage.backend import BlobWriter

CHUNK = 1024 * 1024
MAX_SINGLE_PAYLOAD = 5 * 1024 ** 3
XML_LIMIT = 2 * 1024 * 1024


def reject_unsupported_headers(req: S3Request) -> None:
    """Headers that imply functionality BleepStore does not have: 501 naming the header
    (the one list is ``s3.router.NOT_IMPLEMENTED``; the web dispatch already checked the
    request's own headers, this also covers a POST form's fields)."""
    refuse_unimplemented_headers(req.op, req.header_items)


def content_headers(req: S3Request) -> ContentHeaders:
    return ContentHeaders(
        content_type=req.header("content-type") or "application/octet-stream",
        content_encoding=stored_content_encoding(req.header("content-encoding")),
        content_language=req.header("content-language"),
        content_disposition=req.header("content-disposition"),
        cache_control=req.header("cache-control"),
        expires=req.header("expires"))


def acl_for_new_resource(svc: Services, req: S3Request, owner: Owner,
                         bucket: Bucket | None) -> Acl:
    """ACL from x-amz-acl / x-amz-grant-* headers, default private (s3-api.md §13.2)."""
    bucket_owner = Owner(bucket.owner_id, bucket.owner_display) if bucket else None
    acl = acl_from_headers(req.header, owner, bucket_owner=bucket_owner,
                           for_bucket=bucket is None, display_names=svc.display_name)
    return acl if acl is not None else canned_acl("private", owner, bucket_owner=bucket_owner,
                                                  for_bucket=bucket is None)


def read_xml_body(payload: Payload, limit: int = XML_LIMIT) -> bytes:
    """Read a small XML body with a hard cap, then verify its integrity headers."""
    chunks: list[bytes] = []
    total = 0
    while True:
        data = payload.read(min(CHUNK, limit + 1 - total))
        if not data:
            break
        total += len(data)
        if total > limit:
            raise errors.MaxMessageLengthExceeded()
        chunks.append(data)
    payload.finish()
    return b"".join(chunks)


def acl_from_request(svc: Services, req: S3Request, current_owner: Owner,
                     bucket_owner: Owner | None, for_bucket: bool) -> Acl:
    """PutBucketAcl/PutObjectAcl input: exactly one of canned, grants, XML (§13.3)."""
    body = read_xml_body(req.payload)
    acl = acl_from_headers(req.header, current_owner, bucket_owner=bucket_owner,
                           for_bucket=for_bucket, display_names=svc.display_name)
    if acl is not None:
        if body.strip():
            raise errors.UnexpectedContent()
        return acl
    if not body.strip():
        raise errors.MissingSecurityHeader(MissingHeaderName="x-amz-acl")
    return acl_from_xml(body, current_owner, svc.display_name)


def check_declared_size(payload: Payload, limit: int = MAX_SINGLE_PAYLOAD) -> None:
    if payload.declared_length is not None and payload.declared_length > limit:
        raise errors.EntityTooLarge(ProposedSize=payload.declared_length,
                                    MaxSizeAllowed=limit)


def receive(payload: Payload, writer: BlobWriter,
            limit: int = MAX_SINGLE_PAYLOAD) -> tuple[StagedBlob, DigestResult]:
    """Stream the payload into ``writer``; verify; make the blob durable."""
    try:
        check_declared_size(payload, limit)
        while True:
            data = payload.read(CHUNK)
            if not data:
                break
            writer.write(data)
            if writer.size > limit:
                raise errors.EntityTooLarge(ProposedSize=writer.size, MaxSizeAllowed=limit)
        digest = payload.finish()
        staged = writer.finish()
    except OSError as exc:
        writer.abort()
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise errors.ServiceUnavailable(
                "Insufficient storage space to complete this request.") from exc
        raise
    except BaseException:
        writer.abort()
        raise
    return staged, digest
