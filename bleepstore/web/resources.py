"""Falcon resources for the service, buckets and objects: thin adapters that build an
``S3Request``, call the core operation the router picked, and write the ``S3Response``.

Invariants: resources never decide which operation runs (the pure router did); object
bodies reach gunicorn as a real file (or a composite blob's files, sent one after the
other by ``gunicorn_response.GunicornResponse.write_file``) with a Content-Length, so it
can ``sendfile``; a request carrying a header BleepStore does not implement is refused
(501) before its operation starts, so before any body byte is read or anything changes;
``source_ip`` is the client behind ``server.trusted_proxies`` (web/client_ip.py), never a
header a client could set on its own.
"""

from __future__ import annotations

from collections.abc import Callable

import falcon

from bleepstore.core import (
    attributes,
    buckets,
    copy,
    cors,
    lifecycle,
    listing,
    multipart,
    objects,
    policy,
    post_object,
    tagging,
    versioning,
)
from bleepstore.core.request import S3Request, S3Response
from bleepstore.core.services import Services
from bleepstore.s3.router import Op, refuse_unimplemented_headers
from bleepstore.web.client_ip import Network, environ_client_ip, parse_trusted
from bleepstore.web.environ import header_items
from bleepstore.web.payload import build_payload

Handler = Callable[[Services, S3Request], S3Response]

OPERATIONS: dict[Op, Handler] = {
    Op.LIST_BUCKETS: buckets.list_buckets,
    Op.CREATE_BUCKET: buckets.create_bucket,
    Op.DELETE_BUCKET: buckets.delete_bucket,
    Op.HEAD_BUCKET: buckets.head_bucket,
    Op.GET_BUCKET_LOCATION: buckets.get_bucket_location,
    Op.GET_BUCKET_ACL: buckets.get_bucket_acl,
    Op.PUT_BUCKET_ACL: buckets.put_bucket_acl,
    Op.GET_BUCKET_VERSIONING: versioning.get_bucket_versioning,
    Op.PUT_BUCKET_VERSIONING: versioning.put_bucket_versioning,
    Op.LIST_OBJECT_VERSIONS: versioning.list_object_versions,
    Op.GET_BUCKET_TAGGING: tagging.get_bucket_tagging,
    Op.PUT_BUCKET_TAGGING: tagging.put_bucket_tagging,
    Op.DELETE_BUCKET_TAGGING: tagging.delete_bucket_tagging,
    Op.GET_BUCKET_POLICY: policy.get_bucket_policy,
    Op.PUT_BUCKET_POLICY: policy.put_bucket_policy,
    Op.DELETE_BUCKET_POLICY: policy.delete_bucket_policy,
    Op.GET_BUCKET_POLICY_STATUS: policy.get_bucket_policy_status,
    Op.GET_PUBLIC_ACCESS_BLOCK: policy.get_public_access_block,
    Op.PUT_PUBLIC_ACCESS_BLOCK: policy.put_public_access_block,
    Op.DELETE_PUBLIC_ACCESS_BLOCK: policy.delete_public_access_block,
    Op.GET_BUCKET_CORS: cors.get_bucket_cors,
    Op.PUT_BUCKET_CORS: cors.put_bucket_cors,
    Op.DELETE_BUCKET_CORS: cors.delete_bucket_cors,
    Op.GET_BUCKET_LIFECYCLE: lifecycle.get_bucket_lifecycle,
    Op.PUT_BUCKET_LIFECYCLE: lifecycle.put_bucket_lifecycle,
    Op.DELETE_BUCKET_LIFECYCLE: lifecycle.delete_bucket_lifecycle,
    Op.POST_OBJECT: post_object.post_object,
    Op.LIST_OBJECTS: listing.list_objects,
    Op.LIST_OBJECTS_V2: listing.list_objects_v2,
    Op.LIST_MULTIPART_UPLOADS: multipart.list_multipart_uploads,
    Op.DELETE_OBJECTS: listing.delete_objects,
    Op.PUT_OBJECT: objects.put_object,
    Op.COPY_OBJECT: copy.copy_object,
    Op.GET_OBJECT: objects.get_object,
    Op.HEAD_OBJECT: lambda svc, req: objects.get_object(svc, req, head=True),
    Op.DELETE_OBJECT: objects.delete_object,
    Op.GET_OBJECT_ACL: objects.get_object_acl,
    Op.PUT_OBJECT_ACL: objects.put_object_acl,
    Op.GET_OBJECT_TAGGING: tagging.get_object_tagging,
    Op.PUT_OBJECT_TAGGING: tagging.put_object_tagging,
    Op.DELETE_OBJECT_TAGGING: tagging.delete_object_tagging,
    Op.GET_OBJECT_ATTRIBUTES: attributes.get_object_attributes,
    Op.CREATE_MULTIPART_UPLOAD: multipart.create_multipart_upload,
    Op.UPLOAD_PART: multipart.upload_part,
    Op.UPLOAD_PART_COPY: multipart.upload_part_copy,
    Op.COMPLETE_MULTIPART_UPLOAD: multipart.complete_multipart_upload,
    Op.ABORT_MULTIPART_UPLOAD: multipart.abort_multipart_upload,
    Op.LIST_PARTS: multipart.list_parts,
}

PAYLOAD_OPS = frozenset({Op.PUT_OBJECT, Op.UPLOAD_PART, Op.DELETE_OBJECTS,
                         Op.COMPLETE_MULTIPART_UPLOAD, Op.POST_OBJECT})


def _s3_request(req: falcon.Request, trusted: tuple[Network, ...],
                items: list[tuple[str, str]]) -> S3Request:
    ctx = req.context
    address = ctx.address
    payload = build_payload(req.env, ctx.header, ctx.auth, needs_body=ctx.op in PAYLOAD_OPS)
    auth = ctx.auth
    return S3Request(
        op=ctx.op, method=req.method, bucket=address.bucket or "", key=address.key or "",
        query=ctx.query, header=ctx.header, header_items=items,
        principal=ctx.principal, payload=payload, request_id=ctx.request_id,
        host=ctx.header("host") or "", scheme=req.scheme, virtual_host=address.virtual_host,
        raw_path=ctx.raw_path, source_ip=environ_client_ip(req.env, trusted),
        auth_mode=auth.mode, signature_version="" if auth.credential is None
        else "AWS4-HMAC-SHA256" if auth.scope else "AWS")


def write_response(req: falcon.Request, resp: falcon.Response, out: S3Response) -> None:
    resp.status = falcon.code_to_http_status(out.status)
    for name, value in out.headers:
        resp.append_header(name, value) if name.lower().startswith("x-amz-meta-") \
            else resp.set_header(name, value)
    if out.content_type is not None:
        resp.content_type = out.content_type
    if out.stream is not None:
        resp.stream = out.stream
        resp.content_length = out.content_length
    elif out.body is not None and req.method != "HEAD":
        resp.data = out.body
    elif out.content_length is not None:
        resp.content_length = out.content_length
    elif out.status not in (204, 304):
        resp.content_length = 0


class S3Resource:
    """One instance per resource shape; every verb goes through the op table."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.trusted = parse_trusted(services.config.server.trusted_proxies)

    def _dispatch(self, req: falcon.Request, resp: falcon.Response, **_: str) -> None:
        # NOTE: after authentication (the front), before the payload, the policy and the
        # operation: a feature BleepStore lacks is refused, never silently ignored.
        items = header_items(req.env)
        refuse_unimplemented_headers(req.context.op, items)
        s3req = _s3_request(req, self.trusted, items)
        # NOTE: the bucket policy and the public access block apply to every operation
        # (core/access.py): a Deny is answered before the operation reads anything.
        with policy.authorization(self.services, s3req):
            out = OPERATIONS[req.context.op](self.services, s3req)
        write_response(req, resp, out)

    on_get = on_head = on_put = on_post = on_delete = _dispatch
