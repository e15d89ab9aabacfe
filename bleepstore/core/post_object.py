"""Browser form uploads: POST Object (issue 15 item 5).

PLACEHOLDER: being built; every operation answers 501 until then.
"""

from __future__ import annotations

from bleepstore import errors
from bleepstore.core.request import S3Request, S3Response
from bleepstore.core.services import Services


def post_object(svc: Services, req: S3Request) -> S3Response:
    raise errors.S3NotImplemented()
