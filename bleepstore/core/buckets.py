"""Bucket operations (s3-api.md §7): ListBuckets, CreateBucket, DeleteBucket, HeadBucket,
GetBucketLocation, GetBucketAcl, PutBucketAcl.

Invariants: buckets own no files, so every bucket operation is a single commit.
"""

from __future__ import annotations

import json

from bleepstore import errors
from bleepstore.core import write_tasks
from bleepstore.core.access import bucket_acl, bucket_for, bucket_owner
from bleepstore.core.inputs import (
    acl_for_new_resource,
    acl_from_request,
    read_xml_body,
    reject_unsupported_headers,
)
from bleepstore.core.request import S3Request, S3Response, empty, origin_of, xml_response
from bleepstore.core.services import Services
from bleepstore.metadata.commands import CreateBucket, DeleteBucket, PutBucketAcl
from bleepstore.model import Acl, Bucket, Owner
from bleepstore.s3 import xml
from bleepstore.s3 import xml_render as render
from bleepstore.s3.acl import acl_to_json
from bleepstore.s3.headers import now_iso
from bleepstore.s3.listing import decode_token, encode_token
from bleepstore.s3.names import validate_bucket_name
from bleepstore.s3.numbers import parse_bounded


def _authenticated(req: S3Request) -> Owner:
    if req.principal.is_anonymous:
        raise errors.AccessDenied()
    return Owner(req.principal.id, req.principal.display_name)


def list_buckets(svc: Services, req: S3Request) -> S3Response:
    owner = _authenticated(req)
    raw_max = req.query.get("max-buckets")
    max_buckets = None if raw_max is None else parse_bounded(
        raw_max, 1, 10000, lambda: errors.InvalidArgument(
            "Argument max-buckets must be an integer between 1 and 10000",
            ArgumentName="max-buckets", ArgumentValue=raw_max))
    limit = -1 if max_buckets is None else max_buckets + 1
    token = req.query.get("continuation-token")
    after = decode_token(token) if token else ""
    prefix = req.query.get("prefix")
    buckets = svc.store.list_buckets(owner.id, prefix=prefix or "", after=after, limit=limit)
    region_filter = req.query.get("bucket-region")
    if region_filter:
        buckets = [b for b in buckets if b.region == region_filter]
    next_token = None
    if max_buckets is not None and len(buckets) > max_buckets:
        buckets = buckets[:max_buckets]
        next_token = encode_token(buckets[-1].name)
    return xml_response(render.list_buckets(owner, buckets, continuation_token=next_token,
                                         prefix=prefix))


def create_bucket(svc: Services, req: S3Request) -> S3Response:
    reject_unsupported_headers(req)
    owner = _authenticated(req)
    validate_bucket_name(req.bucket)
    region = svc.config.server.region
    constraint = xml.parse_create_bucket_configuration(read_xml_body(req.payload))
    if constraint and constraint != region:
        raise errors.IllegalLocationConstraintException(
            f"The {constraint} location constraint is incompatible for the region specific "
            "endpoint this request was sent to.")
    acl = acl_for_new_resource(svc, req, owner, None)
    bucket = Bucket(name=req.bucket, region=region, owner_id=owner.id,
                    owner_display=owner.display_name, acl=acl_to_json(acl),
                    created_at=now_iso())
    svc.store.apply(CreateBucket(bucket, svc.config.server.max_buckets,
                                 allow_existing_own=region == "us-east-1",
                                 origin=origin_of(req)))
    return empty(200).header("Location", f"/{req.bucket}")


def delete_bucket(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "OWNER")
    svc.store.apply(DeleteBucket(bucket.name, origin=origin_of(req)))
    return empty(204)


def head_bucket(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "READ")
    return empty(200).header("x-amz-bucket-region", bucket.region)


def get_bucket_location(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "OWNER")
    return xml_response(render.location_constraint(bucket.region))


def get_bucket_acl(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "READ_ACP")
    return xml_response(render.access_control_policy(bucket_acl(bucket)))


def put_bucket_acl(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "WRITE_ACP")
    owner = bucket_owner(bucket)
    acl = acl_from_request(svc, req, owner, None, for_bucket=True)
    if svc.tasks is not None:  # sync / async write mode (events.md §5)
        payload = {"bucket": bucket.name, "acl": json.loads(acl_to_json(Acl(owner, acl.grants)))}
        return write_tasks.submit(svc, req, write_tasks.new_task_id(), payload, empty(200),
                                  f"/{bucket.name}")
    svc.store.apply(PutBucketAcl(bucket.name, acl_to_json(Acl(owner, acl.grants)),
                                 origin=origin_of(req)))
    return empty(200)
