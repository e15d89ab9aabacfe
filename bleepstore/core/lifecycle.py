"""Bucket lifecycle configuration (issue 15 item 6).

PLACEHOLDER: being built; every operation answers 501 until then.
"""

from __future__ import annotations

from bleepstore import errors
from bleepstore.core.request import S3Request, S3Response
from bleepstore.core.services import Services


def get_bucket_lifecycle(svc: Services, req: S3Request) -> S3Response:
    raise errors.S3NotImplemented()


def put_bucket_lifecycle(svc: Services, req: S3Request) -> S3Response:
    raise errors.S3NotImplemented()


def delete_bucket_lifecycle(svc: Services, req: S3Request) -> S3Response:
    raise errors.S3NotImplemented()
