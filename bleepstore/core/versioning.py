"""Bucket versioning: PutBucketVersioning, GetBucketVersioning, ListObjectVersions, and
the version rules the object operations share (docs/decisions.md, Versioning).

Invariants: a read names the current version unless ``versionId`` is given; a delete marker
is never read: without ``versionId`` it answers 404 NoSuchKey, by its id 405, both with
``x-amz-delete-marker: true``. Existence of a key or version is only revealed to callers
who may list the bucket (as ``access.readable_object``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bleepstore import errors
from bleepstore.core.access import (
    bucket_for,
    bucket_owner,
    may_list,
    object_acl,
    readable_object,
    require,
)
from bleepstore.core.inputs import read_xml_body
from bleepstore.core.listing import listing_params, owner_lookup
from bleepstore.core.request import S3Request, S3Response, empty, origin_of, xml_response
from bleepstore.core.services import Services
from bleepstore.metadata.commands import PutBucketVersioning
from bleepstore.metadata.versions import NULL, is_version_id
from bleepstore.model import Bucket, ObjectMeta, ObjectVersion, Principal
from bleepstore.s3 import xml_listings
from bleepstore.s3 import xml_render as render
from bleepstore.s3.headers import http_date
from bleepstore.s3.listing import build_page_from
from bleepstore.s3.xml import parse_versioning

AFTER_EVERY_VERSION = 1 << 62  # a cursor's -vseq past every version of its key


def put_bucket_versioning(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "OWNER")
    status = parse_versioning(read_xml_body(req.payload))
    svc.store.apply(PutBucketVersioning(bucket.name, status, origin=origin_of(req)))
    return empty(200)


def get_bucket_versioning(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "OWNER")
    return xml_response(render.versioning_configuration(bucket.versioning))


def requested_version(req: S3Request) -> str | None:
    """``versionId`` of the request; a malformed one is 400 InvalidArgument."""
    version = req.query.get("versionId")
    if version is not None and not is_version_id(version):
        raise errors.InvalidArgument("Invalid version id specified",
                                     ArgumentName="versionId", ArgumentValue=version)
    return version


def version_headers(bucket: Bucket, obj: ObjectMeta,
                    asked: str | None = None) -> list[tuple[str, str]]:
    """``x-amz-version-id`` of a read: sent once versioning was ever configured, or when
    the request named a version."""
    if bucket.versioning is None and asked is None:
        return []
    return [("x-amz-version-id", obj.version_id or NULL)]


def _marker_error(exc: errors.S3Error, marker: ObjectVersion) -> errors.S3Error:
    return (exc.with_header("x-amz-delete-marker", "true")
            .with_header("x-amz-version-id", marker.version_id)
            .with_header("Last-Modified", http_date(marker.meta.last_modified)))


def read_version(svc: Services, req: S3Request, bucket: Bucket, key: str,
                 permission: str = "READ") -> ObjectMeta:
    """The object version a request reads: the current one, or ``?versionId``."""
    version = requested_version(req)
    if version is None:
        try:
            return readable_object(svc, req.principal, bucket, key, permission)
        except errors.NoSuchKey as exc:
            marker = (svc.store.latest_delete_marker(bucket.name, key)
                      if bucket.versioning is not None else None)
            if marker is not None:
                raise _marker_error(exc, marker) from None
            raise
    return version_of(svc, req.principal, bucket, key, version, permission,
                      method=req.method).meta


def version_of(svc: Services, principal: Principal, bucket: Bucket, key: str, version: str,
               permission: str = "READ", *, method: str = "GET") -> ObjectVersion:
    """A named version that is not a delete marker (by id: 405 MethodNotAllowed)."""
    entry = svc.store.get_object_version(bucket.name, key, version)
    if entry is None:
        if may_list(svc, principal, bucket):
            raise errors.NoSuchVersion(Key=key, VersionId=version)
        raise errors.AccessDenied()
    if entry.delete_marker:
        raise _marker_error(errors.MethodNotAllowed(Method=method,
                                                    ResourceType="DeleteMarker"), entry)
    require(object_acl(entry.meta, bucket), principal, permission)
    return entry


@dataclass(frozen=True)
class _VersionSource:
    """ListObjectVersions' entries in (key, newest first) order; position = (key, -vseq)."""

    svc: Services
    bucket: str

    def scan(self, start_after: tuple[str, int] | None, prefix: str,
             limit: int) -> Sequence[ObjectVersion]:
        return self.svc.store.scan_versions(self.bucket, start_after, prefix, limit)

    def cursor_of(self, item: ObjectVersion) -> tuple[str, int]:
        return (item.key, -item.vseq)

    def cursor_after_key(self, key: str) -> tuple[str, int]:
        return (key, AFTER_EVERY_VERSION)


def _start(svc: Services, bucket: str, key_marker: str | None,
           id_marker: str | None) -> tuple[str, int] | None:
    """Where a page resumes: after (key-marker, version-id-marker), or after every version
    of key-marker. An id of ours carries its clock value, so a version deleted since the
    previous page still has its place."""
    if key_marker is None:
        if id_marker is not None:
            raise errors.InvalidArgument(
                "A version-id marker cannot be specified without a key marker.",
                ArgumentName="version-id-marker", ArgumentValue=id_marker)
        return None
    if id_marker is None:
        return None
    if not is_version_id(id_marker):
        raise errors.InvalidArgument("Invalid version id specified",
                                     ArgumentName="version-id-marker", ArgumentValue=id_marker)
    if id_marker != NULL:
        return (key_marker, -int(id_marker[:16], 16))
    entry = svc.store.get_object_version(bucket, key_marker, NULL)
    return (key_marker, -entry.vseq) if entry is not None else None


def list_object_versions(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "READ")
    prefix, delimiter, max_keys, encoding = listing_params(req)
    key_marker = req.query.get("key-marker") or None
    id_marker = req.query.get("version-id-marker") or None
    source = _VersionSource(svc, bucket.name)
    with svc.store.snapshot():
        start = _start(svc, bucket.name, key_marker, id_marker)
        page = build_page_from(source, prefix=prefix, delimiter=delimiter, max_keys=max_keys,
                               after=key_marker, start=start)
    last = page.last_item
    return xml_response(xml_listings.list_object_versions(
        bucket.name, page.contents, page.common_prefixes, prefix=prefix,
        key_marker=key_marker, version_id_marker=id_marker if key_marker else None,
        next_key_marker=page.next_marker,
        next_version_id_marker=last.version_id if last is not None else None,
        delimiter=delimiter, max_keys=max_keys, encoding_type=encoding,
        is_truncated=page.is_truncated, owner_of=owner_lookup(bucket_owner(bucket))))
