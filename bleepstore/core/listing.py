"""ListObjects (v1), ListObjectsV2 and DeleteObjects (s3-api.md §8.5, §9).

Invariants: a listing page is built by the one algorithm in ``s3.listing`` over
indexed range scans of the objects primary key, inside one read snapshot; it never
reads rows it does not return beyond the bounded look-ahead that decides IsTruncated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bleepstore import errors
from bleepstore.core import gc
from bleepstore.core.access import bucket_for, bucket_owner
from bleepstore.core.inputs import read_xml_body
from bleepstore.core.request import S3Request, S3Response, origin_of, xml_response
from bleepstore.core.services import Services
from bleepstore.metadata.commands import DeleteObjects
from bleepstore.metadata.versions import is_version_id
from bleepstore.model import ObjectMeta, Owner, Page
from bleepstore.s3 import xml, xml_listings
from bleepstore.s3 import xml_render as render
from bleepstore.s3.acl import acl_from_json
from bleepstore.s3.checksums import integrity_from_headers
from bleepstore.s3.headers import now_iso
from bleepstore.s3.listing import build_page, decode_token, encode_token, parse_max_keys, to_page
from bleepstore.s3.names import validate_key
from bleepstore.s3.xml import xml_safe


@dataclass(frozen=True)
class _ObjectSource:
    svc: Services
    bucket: str

    def scan(self, start_after: str | None, prefix: str, limit: int) -> Sequence[ObjectMeta]:
        return self.svc.store.scan_objects(self.bucket, start_after, prefix, limit)


def _echoable(value: str | None, name: str, encoding: str | None) -> None:
    """A parameter the listing echoes must fit in XML, unless ``encoding-type=url`` will
    percent-encode it (then the echo is the encoded value, as S3 sends it)."""
    if value is not None and encoding is None:
        xml_safe(value, name)


def listing_params(req: S3Request) -> tuple[str, str | None, int, str | None]:
    encoding = req.query.get("encoding-type")
    if encoding is not None and encoding != "url":
        raise errors.InvalidArgument("Invalid Encoding Method specified in Request",
                                     ArgumentName="encoding-type", ArgumentValue=encoding)
    prefix = req.query.get("prefix", "")
    delimiter = req.query.get("delimiter") or None
    _echoable(prefix, "prefix", encoding)
    _echoable(delimiter, "delimiter", encoding)
    return prefix, delimiter, parse_max_keys(req.query.get("max-keys")), encoding


def _page(svc: Services, bucket: str, prefix: str, delimiter: str | None, max_keys: int,
          after: str | None) -> Page:
    with svc.store.snapshot():
        listing = build_page(_ObjectSource(svc, bucket), prefix=prefix, delimiter=delimiter,
                             max_keys=max_keys, after=after)
    return to_page(listing)


def owner_lookup(default: Owner) -> Callable[[ObjectMeta], Owner]:
    def owner_of(obj: ObjectMeta) -> Owner:
        return acl_from_json(obj.acl, default).owner
    return owner_of


def list_objects_v2(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "READ")
    prefix, delimiter, max_keys, encoding = listing_params(req)
    token = req.query.get("continuation-token")
    start_after = req.query.get("start-after")
    _echoable(start_after, "start-after", encoding)
    after = decode_token(token) if token is not None else (start_after or None)
    page = _page(svc, bucket.name, prefix, delimiter, max_keys, after)
    next_token = encode_token(page.next_marker) if page.is_truncated and page.next_marker else None
    return xml_response(xml_listings.list_objects_v2(
        bucket.name, page, prefix=prefix, delimiter=delimiter, max_keys=max_keys,
        encoding_type=encoding, start_after=start_after, continuation_token=token,
        next_continuation_token=next_token,
        fetch_owner=req.query.get("fetch-owner", "").lower() == "true",
        owner_of=owner_lookup(bucket_owner(bucket))))


def list_objects(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "READ")
    prefix, delimiter, max_keys, encoding = listing_params(req)
    marker = req.query.get("marker")
    _echoable(marker, "marker", encoding)
    page = _page(svc, bucket.name, prefix, delimiter, max_keys, marker or None)
    return xml_response(xml_listings.list_objects_v1(
        bucket.name, page, prefix=prefix, delimiter=delimiter, max_keys=max_keys,
        encoding_type=encoding, marker=marker, owner_of=owner_lookup(bucket_owner(bucket))))


def _key_problem(key: str, version_id: str | None) -> render.DeleteErrorEntry | None:
    if version_id is not None and not is_version_id(version_id):
        return render.DeleteErrorEntry(key, "NoSuchVersion",
                                       errors.NoSuchVersion.message, version_id)
    try:
        validate_key(key)
    except errors.S3Error as exc:
        return render.DeleteErrorEntry(key, "InvalidArgument", exc.msg, version_id)
    return None


def delete_objects(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "WRITE")
    # NOTE: only integrity claims that are actually verified count: Content-MD5 or a
    # known x-amz-checksum-<alg> (header or trailer); an unknown x-amz-checksum-foo is not.
    spec = integrity_from_headers(req.header)
    verified = spec.content_md5 is not None or spec.checksum_algorithm is not None
    body = read_xml_body(req.payload)
    if not body:
        raise errors.MissingRequestBodyError()
    quiet, entries = xml.parse_delete(body)
    if not verified:
        raise errors.InvalidRequest("Missing required header for this request: Content-MD5")
    problems: dict[int, render.DeleteErrorEntry] = {}
    wanted: list[tuple[str, str | None]] = []
    for i, (key, version_id) in enumerate(entries):
        problem = _key_problem(key, version_id)
        if problem is None:
            wanted.append((key, version_id))
        else:
            problems[i] = problem
    unique = tuple(dict.fromkeys(wanted))
    removed = svc.store.apply(DeleteObjects(
        bucket.name, tuple(k for k, _ in unique), svc.gc_not_before(), origin=origin_of(req),
        version_ids=tuple(v for _, v in unique) if names_versions(unique) else (),
        now=now_iso())) if unique else ()
    gc.collect_now(svc, [r[1] for r in removed])
    changes = {(key, version_id): (was_marker, marker_id)
               for key, _, version_id, was_marker, marker_id in removed}
    results: list[render.DeletedEntry | render.DeleteErrorEntry] = []
    for i, (key, version_id) in enumerate(entries):
        if i in problems:
            results.append(problems[i])
            continue
        was_marker, marker_id = changes.get((key, version_id), (0, None))
        # [S3] a marker deleted by id reports that id as DeleteMarkerVersionId too
        results.append(render.DeletedEntry(key, version_id,
                                           bool(was_marker) or marker_id is not None,
                                           marker_id or (version_id if was_marker else None)))
    return xml_response(render.delete_result(results, quiet))


def names_versions(entries: Sequence[tuple[str, str | None]]) -> bool:
    """Any entry names a version (otherwise the command carries keys only)."""
    return any(version_id is not None for _, version_id in entries)
