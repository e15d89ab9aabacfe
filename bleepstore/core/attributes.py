"""GetObjectAttributes: ``GET /{bucket}/{key}?attributes`` — HeadObject and ListParts in
one XML answer, limited to the root elements named in ``x-amz-object-attributes``.

Invariants: READ on the object, exactly as GetObject (a missing key is NoSuchKey only for
a caller who may list the bucket); no blob is opened. ``ObjectParts`` only for multipart
objects, and its ``Part`` entries only when the object carries an additional checksum (as
S3 general purpose buckets do). Per-part checksums of a completed upload are not kept
(``blob_parts`` holds offset and size only), so each ``Part`` has PartNumber and Size.
"""

from __future__ import annotations

from bleepstore import errors
from bleepstore.core.access import load_bucket
from bleepstore.core.request import S3Request, S3Response, xml_response
from bleepstore.core.services import Services
from bleepstore.core.versioning import read_version, version_headers
from bleepstore.model import ObjectMeta
from bleepstore.s3 import xml_render as render
from bleepstore.s3.headers import http_date
from bleepstore.s3.listing import parse_max_keys
from bleepstore.s3.numbers import INT32_MAX, parse_bounded

HEADER = "x-amz-object-attributes"
ATTRIBUTES = frozenset({"ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"})


def requested_attributes(raw: str | None) -> frozenset[str]:
    """The names in the header (comma separated, case-sensitive as in S3)."""
    names = [n.strip() for n in (raw or "").split(",")]
    names = [n for n in names if n]
    if not names:
        raise errors.InvalidArgument(
            "The x-amz-object-attributes header specifying the attributes to be retrieved "
            "is either missing or empty", ArgumentName=HEADER)
    for name in names:
        if name not in ATTRIBUTES:
            raise errors.InvalidArgument("Invalid attribute name specified.",
                                         ArgumentName=HEADER, ArgumentValue=name)
    return frozenset(names)


def _part_number_marker(raw: str | None) -> int:
    value = raw or "0"
    return parse_bounded(value, 0, INT32_MAX, lambda: errors.InvalidArgument(
        "Invalid part-number-marker", ArgumentName="x-amz-part-number-marker",
        ArgumentValue=value))


def _object_parts(svc: Services, obj: ObjectMeta, marker: int,
                  max_parts: int) -> render.ObjectPartsPage:
    windows = svc.store.part_windows(obj.data_ref, after=marker, limit=max_parts + 1)
    page = windows[:max_parts]
    return render.ObjectPartsPage(
        total=obj.parts_count or 0, part_number_marker=marker,
        next_part_number_marker=page[-1][0] if page else marker, max_parts=max_parts,
        is_truncated=len(windows) > max_parts,
        parts=page if obj.checksum_algorithm and obj.checksum_value else ())


def get_object_attributes(svc: Services, req: S3Request) -> S3Response:
    bucket = load_bucket(svc, req)
    wanted = requested_attributes(req.header(HEADER))
    max_parts = parse_max_keys(req.header("x-amz-max-parts"), "max-parts")
    marker = _part_number_marker(req.header("x-amz-part-number-marker"))
    obj = read_version(svc, req, bucket, req.key)
    checksum = None
    if "Checksum" in wanted and obj.checksum_algorithm and obj.checksum_value:
        kind = "COMPOSITE" if "-" in obj.checksum_value else "FULL_OBJECT"
        checksum = (obj.checksum_algorithm, obj.checksum_value, kind)
    body = render.object_attributes(
        etag=obj.etag.strip('"') if "ETag" in wanted else None,
        checksum=checksum,
        parts=(_object_parts(svc, obj, marker, max_parts)
               if "ObjectParts" in wanted and obj.parts_count else None),
        storage_class=obj.storage_class if "StorageClass" in wanted else None,
        size=obj.size if "ObjectSize" in wanted else None)
    resp = xml_response(body).header("Last-Modified", http_date(obj.last_modified))
    resp.headers.extend(version_headers(bucket, obj, req.query.get("versionId")))
    return resp
