"""Dispatch (s3-api.md §2.4-§2.5). Pure: a method, an ``Address`` and a query in, an ``Op`` out.

Invariants:
- Which resource a target names (bucket, key, service paths) is ``s3/address.py``'s.
- ``route`` is driven by the data in ``_TABLES``; rows are tried top to bottom after two
  global checks: unsupported sub-resources (501) and recognised sub-resources used
  with a method that has no row for them (405 — ``DELETE /b/k?acl`` never deletes).
- Nothing the server does not implement is accepted and ignored: every such header and
  sub-resource is in ``NOT_IMPLEMENTED`` and answers 501 naming it (sub-resources in
  ``route``, headers in ``refuse_unimplemented_headers``, which the web dispatch calls
  after authentication, before any body byte or state change).
- Unknown query parameters are ignored.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from bleepstore.errors import (
    InvalidArgument,
    MethodNotAllowed,
    S3Error,
    S3NotImplemented,
)
from bleepstore.s3.address import Address


class Op(enum.Enum):
    """One member per operation; the value is the AWS API name used in metrics."""

    LIST_BUCKETS = "ListBuckets"
    CREATE_BUCKET = "CreateBucket"
    DELETE_BUCKET = "DeleteBucket"
    HEAD_BUCKET = "HeadBucket"
    GET_BUCKET_LOCATION = "GetBucketLocation"
    GET_BUCKET_ACL = "GetBucketAcl"
    PUT_BUCKET_ACL = "PutBucketAcl"
    GET_BUCKET_VERSIONING = "GetBucketVersioning"
    PUT_BUCKET_VERSIONING = "PutBucketVersioning"
    LIST_OBJECT_VERSIONS = "ListObjectVersions"
    GET_BUCKET_TAGGING = "GetBucketTagging"
    PUT_BUCKET_TAGGING = "PutBucketTagging"
    DELETE_BUCKET_TAGGING = "DeleteBucketTagging"
    GET_BUCKET_POLICY = "GetBucketPolicy"
    PUT_BUCKET_POLICY = "PutBucketPolicy"
    DELETE_BUCKET_POLICY = "DeleteBucketPolicy"
    GET_BUCKET_POLICY_STATUS = "GetBucketPolicyStatus"
    GET_PUBLIC_ACCESS_BLOCK = "GetPublicAccessBlock"
    PUT_PUBLIC_ACCESS_BLOCK = "PutPublicAccessBlock"
    DELETE_PUBLIC_ACCESS_BLOCK = "DeletePublicAccessBlock"
    GET_BUCKET_CORS = "GetBucketCors"
    PUT_BUCKET_CORS = "PutBucketCors"
    DELETE_BUCKET_CORS = "DeleteBucketCors"
    GET_BUCKET_LIFECYCLE = "GetBucketLifecycleConfiguration"
    PUT_BUCKET_LIFECYCLE = "PutBucketLifecycleConfiguration"
    DELETE_BUCKET_LIFECYCLE = "DeleteBucketLifecycle"
    POST_OBJECT = "PostObject"
    LIST_OBJECTS = "ListObjects"
    LIST_OBJECTS_V2 = "ListObjectsV2"
    LIST_MULTIPART_UPLOADS = "ListMultipartUploads"
    DELETE_OBJECTS = "DeleteObjects"
    PUT_OBJECT = "PutObject"
    COPY_OBJECT = "CopyObject"
    GET_OBJECT = "GetObject"
    HEAD_OBJECT = "HeadObject"
    DELETE_OBJECT = "DeleteObject"
    GET_OBJECT_ACL = "GetObjectAcl"
    PUT_OBJECT_ACL = "PutObjectAcl"
    GET_OBJECT_TAGGING = "GetObjectTagging"
    PUT_OBJECT_TAGGING = "PutObjectTagging"
    DELETE_OBJECT_TAGGING = "DeleteObjectTagging"
    GET_OBJECT_ATTRIBUTES = "GetObjectAttributes"
    CREATE_MULTIPART_UPLOAD = "CreateMultipartUpload"
    UPLOAD_PART = "UploadPart"
    UPLOAD_PART_COPY = "UploadPartCopy"
    COMPLETE_MULTIPART_UPLOAD = "CompleteMultipartUpload"
    ABORT_MULTIPART_UPLOAD = "AbortMultipartUpload"
    LIST_PARTS = "ListParts"


# ---------------------------------------------------------------- the dispatch table

@dataclass(frozen=True)
class Reject:
    """A table outcome that is an error: 501, 405 or a missing companion parameter."""

    kind: str  # "not-implemented" | "method-not-allowed" | "missing"
    argument: str | None = None


@dataclass(frozen=True)
class Row:
    """``method`` plus every name in ``needs`` present (and ``copy_source`` if set)."""

    method: str
    needs: tuple[str, ...]
    outcome: Op | Reject
    copy_source: bool = False
    must_equal: str | None = None  # value the single ``needs`` parameter must have


_R = Row
_BUCKET_ROWS = (
    _R("GET", ("acl",), Op.GET_BUCKET_ACL),
    _R("GET", ("location",), Op.GET_BUCKET_LOCATION),
    _R("GET", ("uploads",), Op.LIST_MULTIPART_UPLOADS),
    _R("GET", ("versioning",), Op.GET_BUCKET_VERSIONING),
    _R("GET", ("versions",), Op.LIST_OBJECT_VERSIONS),
    _R("GET", ("tagging",), Op.GET_BUCKET_TAGGING),
    _R("GET", ("policyStatus",), Op.GET_BUCKET_POLICY_STATUS),
    _R("GET", ("policy",), Op.GET_BUCKET_POLICY),
    _R("GET", ("publicAccessBlock",), Op.GET_PUBLIC_ACCESS_BLOCK),
    _R("GET", ("cors",), Op.GET_BUCKET_CORS),
    _R("GET", ("lifecycle",), Op.GET_BUCKET_LIFECYCLE),
    _R("GET", ("list-type",), Op.LIST_OBJECTS_V2, must_equal="2"),
    _R("GET", (), Op.LIST_OBJECTS),
    _R("HEAD", (), Op.HEAD_BUCKET),
    _R("PUT", ("acl",), Op.PUT_BUCKET_ACL),
    _R("PUT", ("versioning",), Op.PUT_BUCKET_VERSIONING),
    _R("PUT", ("tagging",), Op.PUT_BUCKET_TAGGING),
    _R("PUT", ("policy",), Op.PUT_BUCKET_POLICY),
    _R("PUT", ("publicAccessBlock",), Op.PUT_PUBLIC_ACCESS_BLOCK),
    _R("PUT", ("cors",), Op.PUT_BUCKET_CORS),
    _R("PUT", ("lifecycle",), Op.PUT_BUCKET_LIFECYCLE),
    _R("PUT", (), Op.CREATE_BUCKET),
    _R("DELETE", ("tagging",), Op.DELETE_BUCKET_TAGGING),
    _R("DELETE", ("policy",), Op.DELETE_BUCKET_POLICY),
    _R("DELETE", ("publicAccessBlock",), Op.DELETE_PUBLIC_ACCESS_BLOCK),
    _R("DELETE", ("cors",), Op.DELETE_BUCKET_CORS),
    _R("DELETE", ("lifecycle",), Op.DELETE_BUCKET_LIFECYCLE),
    _R("DELETE", (), Op.DELETE_BUCKET),
    _R("POST", ("delete",), Op.DELETE_OBJECTS),
    _R("POST", (), Op.POST_OBJECT),  # browser form uploads
)
_OBJECT_ROWS = (
    _R("GET", ("acl",), Op.GET_OBJECT_ACL),
    _R("GET", ("uploadId",), Op.LIST_PARTS),
    _R("GET", ("tagging",), Op.GET_OBJECT_TAGGING),
    _R("GET", ("attributes",), Op.GET_OBJECT_ATTRIBUTES),
    # NOTE: deviation from §2.4 (which answers 501): part reads are routed to the plain
    # read operations, which implement ``partNumber`` themselves.
    _R("GET", ("partNumber",), Op.GET_OBJECT),
    _R("GET", (), Op.GET_OBJECT),
    _R("HEAD", ("partNumber",), Op.HEAD_OBJECT),
    _R("HEAD", (), Op.HEAD_OBJECT),
    _R("PUT", ("acl",), Op.PUT_OBJECT_ACL),
    _R("PUT", ("partNumber", "uploadId"), Op.UPLOAD_PART_COPY, copy_source=True),
    _R("PUT", ("partNumber", "uploadId"), Op.UPLOAD_PART),
    _R("PUT", ("partNumber",), Reject("missing", "uploadId")),
    _R("PUT", ("uploadId",), Reject("missing", "partNumber")),
    _R("PUT", ("tagging",), Op.PUT_OBJECT_TAGGING),
    _R("PUT", (), Op.COPY_OBJECT, copy_source=True),
    _R("PUT", (), Op.PUT_OBJECT),
    _R("DELETE", ("tagging",), Op.DELETE_OBJECT_TAGGING),
    _R("DELETE", ("uploadId",), Op.ABORT_MULTIPART_UPLOAD),
    _R("DELETE", (), Op.DELETE_OBJECT),
    _R("POST", ("uploads",), Op.CREATE_MULTIPART_UPLOAD),
    _R("POST", ("uploadId",), Op.COMPLETE_MULTIPART_UPLOAD),
    _R("POST", (), Reject("method-not-allowed")),
)
_SERVICE_ROWS = (_R("GET", (), Op.LIST_BUCKETS),)
_TABLES = {"SERVICE": _SERVICE_ROWS, "BUCKET": _BUCKET_ROWS, "OBJECT": _OBJECT_ROWS}

RECOGNISED_SUBRESOURCES = ("acl", "location", "uploads", "uploadId", "partNumber", "delete",
                           "versioning", "versions", "tagging", "list-type", "attributes",
                           "policy", "policyStatus", "publicAccessBlock", "cors", "lifecycle")


# ---------------------------------------------------------------- what is not implemented

_BUCKET_AND_OBJECT = frozenset({"BUCKET", "OBJECT"})


@dataclass(frozen=True)
class Unsupported:
    """A request header or sub-resource BleepStore does not implement: 501 NotImplemented
    naming it, never a silent no-op. ``on``: the resource kinds where a sub-resource is
    refused; ``ops``: a header is refused only on these operations (empty: on all);
    ``accepted``: header values that ask for what BleepStore does anyway."""

    kind: str  # "header" | "sub-resource"
    on: frozenset[str] = _BUCKET_AND_OBJECT
    ops: frozenset[Op] = frozenset()
    accepted: tuple[str, ...] = ()


_H, _S = Unsupported("header"), Unsupported("sub-resource")
# NOTE: the one list of what BleepStore refuses rather than accept and ignore (issue 16;
# supersedes s3-api.md §3.3 for SSE AES256, the website redirect and object ownership):
# supporting one later is deleting its line. Header names match case-insensitively; a
# header value is never echoed (SSE-C keys are secrets). Accepted on purpose:
# x-amz-request-payer (no bucket is requester-pays), x-amz-bypass-governance-retention
# (there is no retention to bypass), x-amz-storage-class (stored and reported),
# x-amz-expected-bucket-owner and x-amz-source-expected-bucket-owner (checked: core).
NOT_IMPLEMENTED: Mapping[str, Unsupported] = MappingProxyType({
    # Server-side encryption: nothing is encrypted at rest, so AES256 is refused too.
    "x-amz-server-side-encryption": _H,
    "x-amz-server-side-encryption-aws-kms-key-id": _H,
    "x-amz-server-side-encryption-context": _H,
    "x-amz-server-side-encryption-bucket-key-enabled": _H,
    "x-amz-server-side-encryption-customer-algorithm": _H,
    "x-amz-server-side-encryption-customer-key": _H,
    "x-amz-server-side-encryption-customer-key-MD5": _H,
    "x-amz-copy-source-server-side-encryption-customer-algorithm": _H,
    "x-amz-copy-source-server-side-encryption-customer-key": _H,
    "x-amz-copy-source-server-side-encryption-customer-key-MD5": _H,
    # Object Lock and MFA delete: no retention, no legal hold, no MFA.
    "x-amz-object-lock-mode": _H,
    "x-amz-object-lock-retain-until-date": _H,
    "x-amz-object-lock-legal-hold": _H,
    "x-amz-object-lock-event-hold": _H,
    "x-amz-object-lock-event-hold-duration-days": _H,
    "x-amz-object-lock-event-hold-duration-years": _H,
    # Object annotations (metadata tables): none are kept.
    "x-amz-object-annotation-directive": _H,
    "x-amz-bucket-object-lock-enabled": Unsupported("header", accepted=("false",)),
    "x-amz-mfa": _H,
    # Static website hosting: a redirect would never be served.
    "x-amz-website-redirect-location": _H,
    # Buckets are ObjectWriter (ACLs apply, the writer owns) in the one global namespace.
    "x-amz-object-ownership": Unsupported("header", accepted=("ObjectWriter",)),
    "x-amz-bucket-namespace": Unsupported("header", accepted=("global",)),
    # Checks that, ignored, would delete, overwrite or store unverified bytes.
    "If-Match": Unsupported("header", ops=frozenset({Op.DELETE_OBJECT, Op.COPY_OBJECT})),
    "If-None-Match": Unsupported("header", ops=frozenset({Op.COPY_OBJECT})),
    "x-amz-if-match-last-modified-time": _H,
    "x-amz-if-match-size": _H,
    "x-amz-if-match-initiated-time": _H,
    "x-amz-mp-object-size": _H,
    "x-amz-write-offset-bytes": _H,
    "x-amz-checksum-md5": _H,
    "x-amz-checksum-sha512": _H,
    "x-amz-checksum-xxhash64": _H,
    "x-amz-checksum-xxhash3": _H,
    "x-amz-checksum-xxhash128": _H,
    # Sub-resources (s3-api.md §2.5).
    "abac": _S,
    "annotation": _S,
    "accelerate": _S,
    "analytics": _S,
    "encryption": _S,
    "intelligent-tiering": _S,
    "inventory": _S,
    "legal-hold": _S,
    "logging": _S,
    "metadataAnnotationTable": _S,
    "metadataConfiguration": _S,
    "metadataInventoryTable": _S,
    "metadataJournalTable": _S,
    "metadataTable": _S,
    "metrics": _S,
    "notification": _S,
    "object-lock": _S,
    "ownershipControls": _S,
    "renameObject": _S,
    "replication": _S,
    "requestPayment": _S,
    "restore": _S,
    "retention": _S,
    "select": _S,
    "session": _S,
    "torrent": _S,
    "website": _S,
    # Implemented on the other resource kind only.
    "attributes": Unsupported("sub-resource", on=frozenset({"BUCKET"})),
    "policy": Unsupported("sub-resource", on=frozenset({"OBJECT"})),
    "policyStatus": Unsupported("sub-resource", on=frozenset({"OBJECT"})),
    "publicAccessBlock": Unsupported("sub-resource", on=frozenset({"OBJECT"})),
    "cors": Unsupported("sub-resource", on=frozenset({"OBJECT"})),
    "lifecycle": Unsupported("sub-resource", on=frozenset({"OBJECT"})),
})
# Sub-resources refused on every bucket and object route.
UNSUPPORTED_SUBRESOURCES = frozenset(
    name for name, u in NOT_IMPLEMENTED.items()
    if u.kind == "sub-resource" and u.on == _BUCKET_AND_OBJECT)
_HEADERS = {name.lower(): (name, u) for name, u in NOT_IMPLEMENTED.items()
            if u.kind == "header"}


def refuse_unimplemented_headers(op: Op, header_items: Iterable[tuple[str, str]]) -> None:
    """501 NotImplemented naming the first header of ``NOT_IMPLEMENTED`` the request carries
    (``header_items``: lowercase names), unless its value is one the entry accepts."""
    for lowered, value in header_items:
        found = _HEADERS.get(lowered.lower())
        if found is None:
            continue
        name, entry = found
        if entry.ops and op not in entry.ops:
            continue
        if value.strip().lower() in (a.lower() for a in entry.accepted):
            continue
        message = f"{name} is not implemented"
        if entry.ops:
            message += f" for {op.value}"
        if entry.accepted:
            message += f" (only {' or '.join(entry.accepted)} is accepted)"
        raise S3NotImplemented(message, Header=name)


_METHOD_ORDER = ("GET", "HEAD", "PUT", "POST", "DELETE")


def _allow(rows: Sequence[Row], name: str | None = None) -> str:
    """Methods with a row mentioning ``name`` (with a row yielding an Op when None)."""
    methods = {r.method for r in rows
               if (name in r.needs if name else isinstance(r.outcome, Op))}
    return ", ".join(m for m in _METHOD_ORDER if m in methods)


def _not_allowed(method: str, resource: str, allow: str) -> S3Error:
    return MethodNotAllowed(Method=method, ResourceType=resource).with_header("Allow", allow)


def _unsupported(resource: str, method: str, query: Mapping[str, str]) -> str | None:
    for name in query:
        entry = NOT_IMPLEMENTED.get(name)
        if entry is not None and entry.kind == "sub-resource" and resource in entry.on:
            return name
        # NOTE: S3 has no PUT of a given version (only its ACL and tags can be set).
        if name == "versionId" and method == "PUT" and not {"acl", "tagging"} & set(query):
            return name
    return None


def _matches(row: Row, method: str, query: Mapping[str, str], copy_source: bool) -> bool:
    return (row.method == method and all(n in query for n in row.needs)
            and (copy_source or not row.copy_source))


def _reject(reject: Reject, method: str, resource: str, rows: Sequence[Row]) -> S3Error:
    if reject.kind == "not-implemented":
        return S3NotImplemented(ArgumentName=reject.argument)
    if reject.kind == "missing":
        return InvalidArgument(f"This operation requires the {reject.argument} parameter",
                               ArgumentName=reject.argument)
    return _not_allowed(method, resource, _allow(rows))


def route(method: str, address: Address, query: Mapping[str, str],
          has_copy_source: bool) -> Op:
    """Pick the operation for a request (§2.4), or raise the error the table prescribes."""
    resource = ("SERVICE" if address.bucket is None
                else "BUCKET" if address.key is None else "OBJECT")
    rows = _TABLES[resource]
    if resource != "SERVICE":
        unsupported = _unsupported(resource, method, query)
        if unsupported is not None:
            raise S3NotImplemented(f"The {unsupported} sub-resource (?{unsupported}) is not "
                                   "implemented", ArgumentName=unsupported)
        for name in RECOGNISED_SUBRESOURCES:
            if name in query and not any(r.method == method and name in r.needs for r in rows):
                raise _not_allowed(method, resource, _allow(rows, name))
    for row in rows:
        if not _matches(row, method, query, has_copy_source):
            continue
        if isinstance(row.outcome, Reject):
            raise _reject(row.outcome, method, resource, rows)
        if row.must_equal is not None and query[row.needs[0]] != row.must_equal:
            raise InvalidArgument("Invalid List Type specified in Request",
                                  ArgumentName=row.needs[0],
                                  ArgumentValue=query[row.needs[0]])
        return row.outcome
    raise _not_allowed(method, resource, _allow(rows))


__all__ = ["Op", "RECOGNISED_SUBRESOURCES", "Reject", "Row", "UNSUPPORTED_SUBRESOURCES", "route"]


def operation_table() -> dict[str, tuple[Row, ...]]:
    """The dispatch table by resource kind (SERVICE, BUCKET, OBJECT), for the OpenAPI
    document, which is generated from it so that the two cannot drift."""
    return dict(_TABLES)
