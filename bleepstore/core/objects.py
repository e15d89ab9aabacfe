"""Object operations: PutObject, GetObject, HeadObject, DeleteObject, object ACLs
(s3-api.md §8).

Invariants: a PUT is acknowledged only after the blob is durable and the metadata
commit (which re-checks If-Match / If-None-Match) succeeded; a failed commit deletes
the new blob. GET streams from an immutable blob, so concurrent overwrites are safe.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from bleepstore import errors
from bleepstore.core import gc, write_tasks
from bleepstore.core.access import (
    bucket_for,
    bucket_owner,
    load_bucket,
    object_acl,
    writer_owner,
)
from bleepstore.core.inputs import (
    acl_for_new_resource,
    acl_from_request,
    content_headers,
    receive,
    reject_unsupported_headers,
)
from bleepstore.core.request import S3Request, S3Response, empty, origin_of, xml_response
from bleepstore.core.services import Services
from bleepstore.core.stale import raise_if_superseded, retry_superseded
from bleepstore.core.versioning import read_version, requested_version, version_headers
from bleepstore.core.write_tasks import new_task_id
from bleepstore.metadata.commands import CompleteUpload, DeleteObjects, PutObject, PutObjectAcl
from bleepstore.model import ObjectMeta, Owner
from bleepstore.s3 import xml_render as render
from bleepstore.s3.acl import acl_to_json
from bleepstore.s3.checksums import header_name
from bleepstore.s3.conditions import (
    check_write_preconditions,
    evaluate_read_conditions,
    validate_write_condition_headers,
)
from bleepstore.s3.headers import http_date, now_iso, override_value
from bleepstore.s3.names import user_metadata_from_headers, validate_storage_class
from bleepstore.s3.ranges import parse_range
from bleepstore.s3.tags import parse_header as parse_tags_header
from bleepstore.storage.backend import BlobMissing
from bleepstore.storage.inline import InlineReader

log = logging.getLogger("bleepstore.s3")

RESPONSE_OVERRIDES = (
    ("response-content-type", "Content-Type"),
    ("response-content-language", "Content-Language"),
    ("response-expires", "Expires"),
    ("response-cache-control", "Cache-Control"),
    ("response-content-disposition", "Content-Disposition"),
    ("response-content-encoding", "Content-Encoding"),
)


def put_object(svc: Services, req: S3Request) -> S3Response:
    reject_unsupported_headers(req)
    if_match, if_none_match = req.header("if-match"), req.header("if-none-match")
    validate_write_condition_headers(if_none_match)
    bucket = bucket_for(svc, req, "WRITE")
    owner = writer_owner(req.principal, bucket)
    acl = acl_for_new_resource(svc, req, owner, bucket)
    storage_class = validate_storage_class(req.header("x-amz-storage-class") or "STANDARD")
    user_meta = user_metadata_from_headers(req.header_items)
    content = content_headers(req)
    tags = parse_tags_header(req.header("x-amz-tagging"))
    if if_match is not None or if_none_match is not None:  # fail fast; re-checked at commit
        current = svc.store.get_object(bucket.name, req.key)
        check_write_preconditions(if_match, if_none_match, current.etag if current else None,
                                  key=req.key)
    tasks = svc.tasks
    task_id = new_task_id() if tasks is not None else None
    writer = (tasks.pending.open_writer(task_id) if tasks is not None and task_id is not None
              else svc.storage.open_writer("object"))
    staged, digest = receive(req.payload, writer)
    now = now_iso()
    meta = ObjectMeta(
        bucket=bucket.name, key=req.key, size=staged.size, etag=f'"{staged.md5_hex}"',
        last_modified=now, data_ref=staged.data_ref, content=content,
        storage_class=storage_class, acl=acl_to_json(acl), user_metadata=user_meta,
        checksum_algorithm=digest.checksum_algorithm, checksum_value=digest.checksum_b64,
        tags=tags)
    resp = empty(200).header("ETag", meta.etag)
    if digest.checksum_algorithm and digest.checksum_b64:
        resp.header(header_name(digest.checksum_algorithm), digest.checksum_b64)
        resp.header("x-amz-checksum-type", "FULL_OBJECT")  # [S3] always, for a PutObject
    if task_id is not None:  # sync / async write mode (events.md §5)
        payload = write_tasks.put_object_payload(meta, if_match, if_none_match, task_id)
        return write_tasks.submit(svc, req, task_id, payload, resp, f"/{bucket.name}/{req.key}")
    replaced, version_id = commit_object(svc, PutObject(
        meta, now, svc.gc_not_before(), if_match, if_none_match, origin=origin_of(req),
        inline_data=staged.inline))
    gc.collect_now(svc, [replaced])
    if version_id is not None:
        resp.header("x-amz-version-id", version_id)
    return resp


def commit_object(svc: Services, cmd: PutObject | CompleteUpload, *,
                  blob_is_ours: bool = True) -> Any:
    """Apply the commit; on any failure the staged blob is removed (never referenced),
    unless another request may commit that same blob (``blob_is_ours`` False)."""
    try:
        result = svc.store.apply(cmd)
    except BaseException as exc:
        if blob_is_ours:
            gc.discard_uncommitted(svc, cmd.meta.data_ref, exc)
        raise
    return result


def object_headers(obj: ObjectMeta) -> list[tuple[str, str]]:
    c = obj.content
    headers = [("ETag", obj.etag), ("Last-Modified", http_date(obj.last_modified)),
               ("Accept-Ranges", "bytes"), ("Content-Type", c.content_type)]
    for name, value in (("Content-Encoding", c.content_encoding),
                        ("Content-Language", c.content_language),
                        ("Content-Disposition", c.content_disposition),
                        ("Cache-Control", c.cache_control), ("Expires", c.expires)):
        if value is not None:
            headers.append((name, value))
    headers.extend(obj.user_metadata)
    if obj.storage_class != "STANDARD":
        headers.append(("x-amz-storage-class", obj.storage_class))
    if obj.tags:
        headers.append(("x-amz-tagging-count", str(len(obj.tags))))
    return headers


def _apply_overrides(req: S3Request, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    present = [(q, h) for q, h in RESPONSE_OVERRIDES if q in req.query]
    if not present:
        return headers
    if req.principal.is_anonymous:
        raise errors.InvalidRequest(
            "Request specific response headers cannot be used for anonymous GET requests.")
    overrides = {h.lower(): (h, override_value(req.query[q], q)) for q, h in present}
    kept = [(k, v) for k, v in headers if k.lower() not in overrides]
    return kept + list(overrides.values())


def get_object(svc: Services, req: S3Request, *, head: bool = False) -> S3Response:
    # NOTE: a concurrent overwrite may unlink the blob between our row read and the open;
    # the read is then redone against the current row (core/stale.py).
    return retry_superseded(lambda: _get_object_once(svc, req, head))


def _get_object_once(svc: Services, req: S3Request, head: bool) -> S3Response:
    bucket = load_bucket(svc, req)
    obj = read_version(svc, req, bucket, req.key)
    headers = _apply_overrides(req, object_headers(obj))
    headers += version_headers(bucket, obj, req.query.get("versionId"))
    if evaluate_read_conditions(req.header, obj.etag, obj.last_modified) == 304:
        return S3Response(status=304, headers=[("ETag", obj.etag), (
            "Last-Modified", http_date(obj.last_modified))])
    from bleepstore.core.multipart import part_range  # partNumber reads (issue 4)
    window = part_range(svc, req, obj)
    if "partNumber" in req.query and obj.parts_count:  # [S3] only for partNumber reads
        headers.append(("x-amz-mp-parts-count", str(obj.parts_count)))
    rng = parse_range(req.header("range"), obj.size) if window is None else window
    status, first, length = 200, 0, obj.size
    if rng is not None:
        status, first, length = 206, rng[0], rng[1] - rng[0] + 1
        headers.append(("Content-Range", f"bytes {rng[0]}-{rng[1]}/{obj.size}"))
    elif (obj.checksum_algorithm and obj.checksum_value
          and (req.header("x-amz-checksum-mode") or "").upper() == "ENABLED"):
        headers.append((header_name(obj.checksum_algorithm), obj.checksum_value))
        kind = "COMPOSITE" if "-" in obj.checksum_value else "FULL_OBJECT"  # multipart
        headers.append(("x-amz-checksum-type", kind))
    resp = S3Response(status=status, headers=headers, content_length=length)
    if not head:
        try:
            resp.stream = svc.storage.open_read(obj.data_ref, first, length)
            if isinstance(resp.stream, InlineReader):  # already in memory: one write
                resp.body, resp.stream = resp.stream.getvalue(), None
        except BlobMissing:
            raise_if_superseded(svc, obj)
            log.error("data missing: bucket=%s key=%s data_ref=%s", obj.bucket, obj.key,
                      obj.data_ref)
            raise errors.InternalError() from None
    return resp


def delete_object(svc: Services, req: S3Request) -> S3Response:
    version = requested_version(req)
    bucket = bucket_for(svc, req, "WRITE")
    if svc.tasks is not None and bucket.versioning is None:  # write modes (events.md §5)
        return write_tasks.submit(svc, req, new_task_id(), {"bucket": bucket.name,
                                                            "key": req.key},
                                  empty(204), f"/{bucket.name}/{req.key}")
    removed = svc.store.apply(DeleteObjects(
        bucket.name, (req.key,), svc.gc_not_before(), origin=origin_of(req),
        version_ids=(version,) if version is not None else (), now=now_iso()))
    gc.collect_now(svc, [r[1] for r in removed])
    resp = empty(204)
    if version is not None:
        resp.header("x-amz-version-id", version)
    for _, _, _, was_marker, marker_id in removed:
        if was_marker or marker_id is not None:
            resp.header("x-amz-delete-marker", "true")
        if marker_id is not None:
            resp.header("x-amz-version-id", marker_id)
    return resp


def get_object_acl(svc: Services, req: S3Request) -> S3Response:
    bucket = load_bucket(svc, req)
    obj = read_version(svc, req, bucket, req.key, "READ_ACP")
    resp = xml_response(render.access_control_policy(object_acl(obj, bucket)))
    resp.headers.extend(version_headers(bucket, obj, req.query.get("versionId")))
    return resp


def put_object_acl(svc: Services, req: S3Request) -> S3Response:
    bucket = load_bucket(svc, req)
    version = requested_version(req)
    obj = read_version(svc, req, bucket, req.key, "WRITE_ACP")
    current = object_acl(obj, bucket)
    acl = acl_from_request(svc, req, current.owner, bucket_owner(bucket), for_bucket=False)
    acl_owned = type(acl)(owner=Owner(current.owner.id, current.owner.display_name),
                          grants=acl.grants)
    if svc.tasks is not None and version is None:  # sync / async write mode (events.md §5)
        payload = {"bucket": bucket.name, "key": req.key,
                   "acl": json.loads(acl_to_json(acl_owned))}
        return write_tasks.submit(svc, req, new_task_id(), payload, empty(200),
                                  f"/{bucket.name}/{req.key}")
    svc.store.apply(PutObjectAcl(bucket.name, req.key, acl_to_json(acl_owned),
                                 origin=origin_of(req), version_id=version))
    resp = empty(200)
    if version is not None:
        resp.header("x-amz-version-id", version)
    return resp

