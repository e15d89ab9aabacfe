"""Bucket policies, policy status and the public access block (issue 15 items 2-3).

PLACEHOLDER: being built; every operation answers 501 until then.
"""

from __future__ import annotations

from bleepstore import errors
from bleepstore.core.request import S3Request, S3Response
from bleepstore.core.services import Services


def get_bucket_policy(svc: Services, req: S3Request) -> S3Response:
    raise errors.S3NotImplemented()


def put_bucket_policy(svc: Services, req: S3Request) -> S3Response:
    raise errors.S3NotImplemented()


def delete_bucket_policy(svc: Services, req: S3Request) -> S3Response:
    raise errors.S3NotImplemented()


def get_bucket_policy_status(svc: Services, req: S3Request) -> S3Response:
    raise errors.S3NotImplemented()


def get_public_access_block(svc: Services, req: S3Request) -> S3Response:
    raise errors.S3NotImplemented()


def put_public_access_block(svc: Services, req: S3Request) -> S3Response:
    raise errors.S3NotImplemented()


def delete_public_access_block(svc: Services, req: S3Request) -> S3Response:
    raise errors.S3NotImplemented()
