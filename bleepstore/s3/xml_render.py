"""S3 XML response renderers (pure; built with lxml so escaping is automatic).

Invariants (s3-api.md §4.4):
- every document starts with ``<?xml version="1.0" encoding="UTF-8"?>`` (except the
  §14.4 keep-alive mode, ``declaration=False``);
- success roots carry ``xmlns="http://s3.amazonaws.com/doc/2006-03-01/"``, ``<Error>`` none;
- element order is exactly the order s3-api.md lists; optional elements with no value are
  left out; empty lists produce no wrapper elements;
- timestamps and ETags are written as stored (ISO ms strings, quoted ETags);
- a value XML cannot carry raises ``InvalidArgument`` (via ``xml_safe``), never an lxml
  error; ``error_document`` instead scrubs such characters, because it must always render.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree

from bleepstore.model import Acl, Bucket, Owner
from bleepstore.s3.xml import S3NS, XSI, scrub, url_encode_listing, xml_safe

DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_NS = "{" + S3NS + "}"


@dataclass(frozen=True)
class DeletedEntry:
    key: str
    version_id: str | None = None
    delete_marker: bool = False  # the version deleted was a marker, or one was created
    marker_version_id: str | None = None  # the delete marker created


@dataclass(frozen=True)
class DeleteErrorEntry:
    key: str
    code: str
    message: str
    version_id: str | None = None


class Doc:
    """A tiny builder: ``add(parent, name, text)`` in the S3 namespace (or none)."""

    def __init__(self, root_name: str, *, namespaced: bool = True) -> None:
        self.ns = _NS if namespaced else ""
        nsmap = {None: S3NS} if namespaced else None
        self.root: Any = etree.Element(self.ns + root_name, nsmap=nsmap)

    def add(self, parent: Any, name: str, value: str | int | bool | None = None) -> Any:
        el = etree.SubElement(parent, self.ns + name)
        if value is not None:
            el.text = _text(value, name)
        return el

    def opt(self, parent: Any, name: str, value: str | int | None) -> None:
        """Add ``name`` only when ``value`` is not None (§4.4: omit absent optionals)."""
        if value is not None:
            self.add(parent, name, value)

    def owner(self, parent: Any, name: str, owner: Owner) -> None:
        el = self.add(parent, name)
        self.add(el, "ID", owner.id)
        self.add(el, "DisplayName", owner.display_name)

    def bytes(self, *, declaration: bool = True) -> bytes:
        body: bytes = etree.tostring(self.root, encoding="UTF-8", xml_declaration=False)
        return DECLARATION + body if declaration else body


def _text(value: str | int | bool, name: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return xml_safe(value, name)


def encoded(value: str, encode: bool) -> str:
    """``value`` as EncodingType=url asks (``encode``), else as is."""
    return url_encode_listing(value) if encode else value


# --- service and bucket ----------------------------------------------------------------


def list_buckets(
    owner: Owner,
    buckets: Sequence[Bucket],
    *,
    continuation_token: str | None = None,
    prefix: str | None = None,
) -> bytes:
    """ListAllMyBucketsResult (s3-api.md §7.1)."""
    d = Doc("ListAllMyBucketsResult")
    d.owner(d.root, "Owner", owner)
    wrapper = d.add(d.root, "Buckets")
    for b in buckets:
        el = d.add(wrapper, "Bucket")
        d.add(el, "Name", b.name)
        d.add(el, "CreationDate", b.created_at)
        d.add(el, "BucketRegion", b.region)
    d.opt(d.root, "ContinuationToken", continuation_token)
    d.opt(d.root, "Prefix", prefix)
    return d.bytes()


def location_constraint(region: str) -> bytes:
    """GetBucketLocation (§7.5): empty element for us-east-1."""
    d = Doc("LocationConstraint")
    if region and region != "us-east-1":
        d.root.text = _text(region, "LocationConstraint")
    return d.bytes()


def access_control_policy(acl: Acl) -> bytes:
    """AccessControlPolicy (§13.5); each Grantee declares ``xmlns:xsi`` and ``xsi:type``."""
    d = Doc("AccessControlPolicy")
    d.owner(d.root, "Owner", acl.owner)
    grants = d.add(d.root, "AccessControlList")
    for grant in acl.grants:
        g = d.add(grants, "Grant")
        grantee = etree.SubElement(g, _NS + "Grantee", nsmap={"xsi": XSI})
        grantee.set(f"{{{XSI}}}type", grant.grantee.type)
        if grant.grantee.type == "Group":
            d.add(grantee, "URI", grant.grantee.uri)
        else:
            d.add(grantee, "ID", grant.grantee.id)
            if grant.grantee.display_name:
                d.add(grantee, "DisplayName", grant.grantee.display_name)
        d.add(g, "Permission", grant.permission)
    return d.bytes()


def versioning_configuration(status: str | None) -> bytes:
    """GetBucketVersioning: no Status while versioning was never enabled."""
    d = Doc("VersioningConfiguration")
    d.opt(d.root, "Status", status)
    return d.bytes()


def tagging(tags: Sequence[tuple[str, str]]) -> bytes:
    """GetObjectTagging / GetBucketTagging: the tag set, in the order it was set."""
    d = Doc("Tagging")
    tag_set = d.add(d.root, "TagSet")
    for key, value in tags:
        el = d.add(tag_set, "Tag")
        d.add(el, "Key", key)
        d.add(el, "Value", value)
    return d.bytes()


# --- object attributes ----------------------------------------------------------------


@dataclass(frozen=True)
class ObjectPartsPage:
    """One page of a multipart object's parts for GetObjectAttributes ``ObjectParts``."""

    total: int
    part_number_marker: int
    next_part_number_marker: int
    max_parts: int
    is_truncated: bool
    parts: Sequence[tuple[int, int]]  # (PartNumber, Size); empty = no Part elements


def object_attributes(
    *,
    etag: str | None = None,
    checksum: tuple[str, str, str] | None = None,
    parts: ObjectPartsPage | None = None,
    storage_class: str | None = None,
    size: int | None = None,
) -> bytes:
    """GetObjectAttributesResponse: ETag (unquoted), Checksum (``Checksum<ALG>`` then
    ``ChecksumType``), ObjectParts, StorageClass, ObjectSize; absent ones left out."""
    d = Doc("GetObjectAttributesResponse")
    d.opt(d.root, "ETag", etag)
    if checksum is not None:
        algorithm, value, kind = checksum
        el = d.add(d.root, "Checksum")
        d.add(el, "Checksum" + algorithm, value)
        d.add(el, "ChecksumType", kind)
    if parts is not None:
        el = d.add(d.root, "ObjectParts")
        d.add(el, "PartsCount", parts.total)  # [S3] the model's TotalPartsCount
        d.add(el, "PartNumberMarker", parts.part_number_marker)
        d.add(el, "NextPartNumberMarker", parts.next_part_number_marker)
        d.add(el, "MaxParts", parts.max_parts)
        d.add(el, "IsTruncated", parts.is_truncated)
        for number, part_size in parts.parts:
            p = d.add(el, "Part")
            d.add(p, "PartNumber", number)
            d.add(p, "Size", part_size)
    d.opt(d.root, "StorageClass", storage_class)
    d.opt(d.root, "ObjectSize", size)
    return d.bytes()


# --- object and multipart results --------------------------------------------------------


def delete_result(
    entries: Sequence[DeletedEntry | DeleteErrorEntry], quiet: bool
) -> bytes:
    """DeleteResult (§8.5): request order; ``Deleted`` entries dropped in quiet mode."""
    d = Doc("DeleteResult")
    for e in entries:
        if isinstance(e, DeletedEntry):
            if quiet:
                continue
            el = d.add(d.root, "Deleted")
            d.add(el, "Key", e.key)
            d.opt(el, "VersionId", e.version_id)
            if e.delete_marker:
                d.add(el, "DeleteMarker", True)
                d.opt(el, "DeleteMarkerVersionId", e.marker_version_id)
        else:
            el = d.add(d.root, "Error")
            d.add(el, "Key", e.key)
            d.opt(el, "VersionId", e.version_id)
            d.add(el, "Code", e.code)
            d.add(el, "Message", e.message)
    return d.bytes()


def _etag_result(root: str, etag: str, last_modified: str) -> bytes:
    d = Doc(root)
    d.add(d.root, "LastModified", last_modified)
    d.add(d.root, "ETag", etag)
    return d.bytes()


def copy_object_result(etag: str, last_modified: str) -> bytes:
    """CopyObjectResult (§8.6): LastModified, ETag."""
    return _etag_result("CopyObjectResult", etag, last_modified)


def copy_part_result(etag: str, last_modified: str, checksum_algorithm: str | None = None,
                     checksum_value: str | None = None) -> bytes:
    """CopyPartResult (§14.3): LastModified, ETag, then ``Checksum<ALG>`` when the upload has
    a checksum algorithm."""
    d = Doc("CopyPartResult")
    d.add(d.root, "LastModified", last_modified)
    d.add(d.root, "ETag", etag)
    if checksum_algorithm and checksum_value:
        d.add(d.root, "Checksum" + checksum_algorithm, checksum_value)
    return d.bytes()


def initiate_multipart_upload(bucket: str, key: str, upload_id: str) -> bytes:
    """InitiateMultipartUploadResult (§14.1)."""
    d = Doc("InitiateMultipartUploadResult")
    d.add(d.root, "Bucket", bucket)
    d.add(d.root, "Key", key)
    d.add(d.root, "UploadId", upload_id)
    return d.bytes()


def complete_multipart_upload(
    location: str, bucket: str, key: str, etag: str, *, declaration: bool = True,
    checksum_algorithm: str | None = None, checksum_value: str | None = None,
) -> bytes:
    """CompleteMultipartUploadResult (§14.4); ``declaration=False`` for keep-alive mode.
    With a checksum: ``Checksum<ALG>`` then ``ChecksumType`` after ``ETag`` (a COMPOSITE
    value ends in ``-N``, a FULL_OBJECT one does not)."""
    d = Doc("CompleteMultipartUploadResult")
    d.add(d.root, "Location", location)
    d.add(d.root, "Bucket", bucket)
    d.add(d.root, "Key", key)
    d.add(d.root, "ETag", etag)
    if checksum_algorithm and checksum_value:
        d.add(d.root, "Checksum" + checksum_algorithm, checksum_value)
        d.add(d.root, "ChecksumType", "COMPOSITE" if "-" in checksum_value else "FULL_OBJECT")
    return d.bytes(declaration=declaration)


def error_document(
    code: str,
    message: str,
    extra: Mapping[str, str],
    resource: str,
    request_id: str,
    host_id: str,
    *,
    declaration: bool = True,
) -> bytes:
    """``<Error>`` (§5.1): Code, Message, extras in order, Resource, RequestId, HostId."""
    # NOTE: values are scrubbed (unrepresentable code points -> U+FFFD) instead of
    # validated: the error path must always produce a body, and Resource or an
    # ArgumentValue may echo exactly the bad input that caused the error.
    d = Doc("Error", namespaced=False)
    items = [("Code", code), ("Message", message), *extra.items()]
    items += [("Resource", resource), ("RequestId", request_id), ("HostId", host_id)]
    for name, value in items:
        el = etree.SubElement(d.root, name)
        el.text = scrub(str(value))
    return d.bytes(declaration=declaration)
