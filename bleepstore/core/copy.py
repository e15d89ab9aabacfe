"""CopyObject and the copy-source rules shared with UploadPartCopy (s3-api.md §8.6).

Invariants: the copy streams or hard-links immutable blobs (never holds an object in
memory); a single-part source keeps its ETag, a multipart source gets the MD5 of the
copied bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from bleepstore import errors
from bleepstore.core import gc
from bleepstore.core.access import bucket_for, readable_object, writer_owner
from bleepstore.core.inputs import (
    MAX_SINGLE_PAYLOAD,
    acl_for_new_resource,
    content_headers,
    reject_unsupported_headers,
)
from bleepstore.core.objects import commit_object
from bleepstore.core.request import S3Request, S3Response, origin_of, xml_response
from bleepstore.core.services import Services
from bleepstore.core.stale import raise_if_superseded, retry_superseded
from bleepstore.core.versioning import version_headers, version_of
from bleepstore.metadata.commands import PutObject
from bleepstore.metadata.versions import is_version_id
from bleepstore.model import ObjectMeta
from bleepstore.s3 import xml_render as render
from bleepstore.s3.acl import acl_to_json
from bleepstore.s3.conditions import evaluate_copy_source_conditions
from bleepstore.s3.headers import now_iso
from bleepstore.s3.names import user_metadata_from_headers, validate_storage_class
from bleepstore.s3.tags import parse_header as parse_tags_header
from bleepstore.s3.tags import tagging_directive
from bleepstore.storage.backend import BlobMissing


@dataclass(frozen=True)
class CopySource:
    bucket: str
    key: str
    version_id: str | None = None


def _decode_source(raw: str) -> str:
    """Percent-decode the copy-source path as UTF-8 bytes.

    NOTE: WSGI hands header values over as latin-1 strings, so a client that sends raw
    UTF-8 (unencoded) arrives as mojibake; mapping back to the wire bytes first makes
    raw and percent-encoded UTF-8 decode to the same key, as S3 does.
    """
    try:
        wire = raw.encode("latin-1")
    except UnicodeEncodeError:  # not from a WSGI header (in-process callers)
        wire = raw.encode("utf-8")
    try:
        return unquote_to_bytes(wire).decode("utf-8")
    except UnicodeDecodeError:
        raise errors.InvalidArgument("Invalid copy source encoding",
                                     ArgumentName="x-amz-copy-source") from None


def parse_copy_source(value: str) -> CopySource:
    """``[/]bucket/key[?versionId=null]``, percent-encoded (s3-api.md §8.6)."""
    raw, _, version = value.partition("?versionId=")
    decoded = _decode_source(raw)
    decoded = decoded[1:] if decoded.startswith("/") else decoded
    bucket, _, key = decoded.partition("/")
    if not bucket or not key:
        raise errors.InvalidArgument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            ArgumentName="x-amz-copy-source", ArgumentValue=value)
    if version and not is_version_id(version):  # [S3] a foreign id is simply not found
        raise errors.NoSuchVersion(Key=key, VersionId=version)
    return CopySource(bucket, key, version or None)


def load_copy_source(svc: Services, req: S3Request) -> tuple[ObjectMeta, str | None]:
    """Parse x-amz-copy-source, demand READ on it, evaluate the source conditionals.
    -> (the source version, its ``x-amz-copy-source-version-id`` or None)."""
    src = parse_copy_source(req.header("x-amz-copy-source") or "")
    bucket = svc.store.get_bucket(src.bucket)
    if bucket is None:
        raise errors.NoSuchBucket(BucketName=src.bucket)
    expected = req.header("x-amz-source-expected-bucket-owner")
    if expected is not None and expected != bucket.owner_id:  # [S3] as expected-bucket-owner
        raise errors.AccessDenied()
    if src.version_id is None:
        obj = readable_object(svc, req.principal, bucket, src.key)
    else:
        try:
            obj = version_of(svc, req.principal, bucket, src.key, src.version_id).meta
        except errors.MethodNotAllowed:
            raise errors.InvalidRequest("The source of a copy request may not specifically "
                                        "refer to a delete marker by version id.") from None
    get = req.header
    evaluate_copy_source_conditions(lambda name: get(name), obj.etag, obj.last_modified)
    header = version_headers(bucket, obj, src.version_id)
    return obj, header[0][1] if header else None


def copy_object(svc: Services, req: S3Request) -> S3Response:
    return retry_superseded(lambda: _copy_object_once(svc, req))


def _copy_directives(req: S3Request, src: ObjectMeta, dest_bucket: str) -> tuple[str, str]:
    """The metadata directive and the storage class of the copy; a copy onto itself must
    change something (a named version copied onto its own key restores that version)."""
    directive = (req.header("x-amz-metadata-directive") or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise errors.InvalidArgument("Unknown metadata directive.",
                                     ArgumentName="x-amz-metadata-directive",
                                     ArgumentValue=directive)
    requested_class = req.header("x-amz-storage-class")
    storage_class = validate_storage_class(requested_class or "STANDARD")
    named = "?versionId=" in (req.header("x-amz-copy-source") or "")
    same = (src.bucket, src.key) == (dest_bucket, req.key) and not named
    if same and directive == "COPY" and (requested_class is None
                                         or requested_class == src.storage_class):
        raise errors.InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself "
            "without changing the object's metadata, storage class, website redirect "
            "location or encryption attributes.")
    return directive, storage_class


def _copy_object_once(svc: Services, req: S3Request) -> S3Response:
    reject_unsupported_headers(req)
    dest = bucket_for(svc, req, "WRITE")
    src, src_version = load_copy_source(svc, req)
    directive, storage_class = _copy_directives(req, src, dest.name)
    if src.size > MAX_SINGLE_PAYLOAD:
        raise errors.EntityTooLarge(ProposedSize=src.size, MaxSizeAllowed=MAX_SINGLE_PAYLOAD)
    owner = writer_owner(req.principal, dest)
    acl = acl_for_new_resource(svc, req, owner, dest)
    if directive == "REPLACE":
        content, user_meta = content_headers(req), user_metadata_from_headers(req.header_items)
    else:
        content, user_meta = src.content, src.user_metadata
    tags = (parse_tags_header(req.header("x-amz-tagging"))
            if tagging_directive(req.header("x-amz-tagging-directive")) == "REPLACE"
            else src.tags)
    multipart_source = bool(src.parts_count)
    try:
        staged = svc.storage.copy(src.data_ref, None, need_md5=multipart_source)
    except BlobMissing:
        raise_if_superseded(svc, src)  # source overwritten meanwhile: redo from its new row
        raise errors.InternalError() from None
    now = now_iso()
    etag = f'"{staged.md5_hex}"' if multipart_source else src.etag
    meta = ObjectMeta(
        bucket=dest.name, key=req.key, size=staged.size, etag=etag, last_modified=now,
        data_ref=staged.data_ref, content=content, storage_class=storage_class,
        acl=acl_to_json(acl), user_metadata=user_meta,
        checksum_algorithm=None if multipart_source else src.checksum_algorithm,
        checksum_value=None if multipart_source else src.checksum_value, tags=tags)
    replaced, version_id = commit_object(svc, PutObject(meta, now, svc.gc_not_before(),
                                                        origin=origin_of(req)))
    gc.collect_now(svc, [replaced])
    resp = xml_response(render.copy_object_result(etag, now))
    if src_version is not None:
        resp.header("x-amz-copy-source-version-id", src_version)
    if version_id is not None:
        resp.header("x-amz-version-id", version_id)
    return resp

