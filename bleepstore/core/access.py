"""Loading buckets/objects together with the ACL decision (s3-api.md §13.4, §3.1).

Invariants: existence is never leaked to a caller without READ on the bucket — a
missing key answers NoSuchKey only when the caller may list the bucket.
"""

from __future__ import annotations

from bleepstore import errors
from bleepstore.core.request import S3Request
from bleepstore.core.services import Services
from bleepstore.model import Acl, Bucket, ObjectMeta, Owner, Principal
from bleepstore.s3.acl import acl_from_json, allowed


def bucket_owner(bucket: Bucket) -> Owner:
    return Owner(bucket.owner_id, bucket.owner_display)


def bucket_acl(bucket: Bucket) -> Acl:
    return acl_from_json(bucket.acl, bucket_owner(bucket))


def object_acl(obj: ObjectMeta, bucket: Bucket) -> Acl:
    return acl_from_json(obj.acl, bucket_owner(bucket))


def load_bucket(svc: Services, req: S3Request) -> Bucket:
    bucket = svc.store.get_bucket(req.bucket)
    if bucket is None:
        raise errors.NoSuchBucket(BucketName=req.bucket)
    expected = req.header("x-amz-expected-bucket-owner")
    if expected is not None and expected != bucket.owner_id:
        raise errors.AccessDenied()
    return bucket


def require(acl: Acl, principal: Principal, permission: str) -> None:
    if not allowed(acl, principal, permission):
        raise errors.AccessDenied()


def bucket_for(svc: Services, req: S3Request, permission: str) -> Bucket:
    """Load the bucket and demand ``permission`` on it ("OWNER" = owner only)."""
    bucket = load_bucket(svc, req)
    if permission == "OWNER":
        if req.principal.id != bucket.owner_id:
            raise errors.AccessDenied()
    else:
        require(bucket_acl(bucket), req.principal, permission)
    return bucket


def readable_object(svc: Services, principal: Principal, bucket: Bucket, key: str,
                    permission: str = "READ") -> ObjectMeta:
    obj = svc.store.get_object(bucket.name, key)
    if obj is None:
        if allowed(bucket_acl(bucket), principal, "READ"):
            raise errors.NoSuchKey(Key=key)
        raise errors.AccessDenied()
    require(object_acl(obj, bucket), principal, permission)
    return obj


def writer_owner(principal: Principal, bucket: Bucket) -> Owner:
    """Owner of a new object: the writer, or the bucket owner for anonymous writes."""
    if principal.is_anonymous:
        return bucket_owner(bucket)
    return Owner(principal.id, principal.display_name)
