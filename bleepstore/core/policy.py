"""Bucket policies, policy status and the public access block: Get/Put/DeleteBucketPolicy,
GetBucketPolicyStatus, Get/Put/DeletePublicAccessBlock (docs/decisions.md, Bucket policies).
How they act on every request is ``core.access``; ``authorization`` is re-exported here for
the web dispatch.

Invariants: a policy is stored as the owner sent it (GetBucketPolicy answers it byte for
byte) and only after it parsed; the public access block is stored as compact JSON of its
four flags. Get/Put/DeleteBucketPolicy are the bucket owner's: another account gets 403, or
405 when the policy allows it the action (AWS); the other operations are the owner's or
whoever the policy allows.
"""

from __future__ import annotations

from bleepstore import errors
from bleepstore.core.access import (
    BLOCK_KIND,
    POLICY_KIND,
    access_rules,
    authorization,
    bucket_for,
    load_bucket,
    policy_decision,
    stored_policy,
)
from bleepstore.core.inputs import read_xml_body
from bleepstore.core.request import S3Request, S3Response, empty, origin_of, xml_response
from bleepstore.core.services import Services
from bleepstore.metadata.commands import DeleteBucketConfig, PutBucketConfig
from bleepstore.model import Bucket
from bleepstore.s3 import public_access as pab
from bleepstore.s3.policy import Decision, Identity
from bleepstore.s3.policy_parse import MSG_SIZE, RAW_LIMIT, parse_policy

__all__ = ["authorization", "delete_bucket_policy", "delete_public_access_block",
           "get_bucket_policy", "get_bucket_policy_status", "get_public_access_block",
           "put_bucket_policy", "put_public_access_block"]


def _owner_only(svc: Services, req: S3Request) -> Bucket:
    bucket = load_bucket(svc, req)
    if req.principal.is_anonymous or req.principal.id != bucket.owner_id:
        if policy_decision(req, bucket) is Decision.ALLOW:  # [S3] allowed, not the owner
            raise errors.MethodNotAllowed(Method=req.method, ResourceType="BUCKET")
        raise errors.AccessDenied()
    return bucket


def _identity(svc: Services) -> Identity:
    """Principals name a BleepStore account by its canonical id or its access key."""
    def identity(name: str) -> str | None:
        credential = svc.store.get_credential(name)
        if credential is not None:
            return credential.owner_id
        return name if svc.store.display_name_for(name) is not None else None
    return identity


def get_bucket_policy(svc: Services, req: S3Request) -> S3Response:
    bucket = _owner_only(svc, req)
    document = svc.store.get_bucket_config(bucket.name, POLICY_KIND)
    if document is None:
        raise errors.NoSuchBucketPolicy(BucketName=bucket.name)
    return S3Response(status=200, body=document.encode("utf-8"),
                      content_type="application/json")


def put_bucket_policy(svc: Services, req: S3Request) -> S3Response:
    bucket = _owner_only(svc, req)
    try:
        raw = read_xml_body(req.payload, limit=RAW_LIMIT)
    except errors.MaxMessageLengthExceeded:
        raise errors.MalformedPolicy(MSG_SIZE) from None
    policy = parse_policy(raw, bucket.name, _identity(svc))
    if (access_rules(svc, bucket.name).block.block_public_policy
            and pab.policy_is_public(policy)):
        raise errors.AccessDenied()
    svc.store.apply(PutBucketConfig(bucket.name, POLICY_KIND, raw.decode("utf-8"),
                                    origin=origin_of(req)))
    return empty(204)


def delete_bucket_policy(svc: Services, req: S3Request) -> S3Response:
    bucket = _owner_only(svc, req)
    svc.store.apply(DeleteBucketConfig(bucket.name, POLICY_KIND, origin=origin_of(req)))
    return empty(204)


def get_bucket_policy_status(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "OWNER")
    document = svc.store.get_bucket_config(bucket.name, POLICY_KIND)
    if document is None:
        raise errors.NoSuchBucketPolicy(BucketName=bucket.name)
    _, public = stored_policy(document, bucket.name)
    return xml_response(pab.render_policy_status(public))


def get_public_access_block(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "OWNER")
    document = svc.store.get_bucket_config(bucket.name, BLOCK_KIND)
    if document is None:
        raise errors.NoSuchPublicAccessBlockConfiguration(BucketName=bucket.name)
    return xml_response(pab.render_configuration(pab.from_json(document)))


def put_public_access_block(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "OWNER")
    block = pab.parse_configuration(read_xml_body(req.payload))
    svc.store.apply(PutBucketConfig(bucket.name, BLOCK_KIND, pab.to_json(block),
                                    origin=origin_of(req)))
    return empty(200)


def delete_public_access_block(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "OWNER")
    svc.store.apply(DeleteBucketConfig(bucket.name, BLOCK_KIND, origin=origin_of(req)))
    return empty(204)
