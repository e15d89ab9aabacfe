"""Upload identity (s3-api.md §14): the upload-ID grammar, part-number parsing and the
lookup that scopes an upload ID to the bucket and key it was created for.

Invariants: a client upload ID is matched against ``[0-9a-f]{32}`` before it reaches the
store (or any path); an unknown, foreign or malformed ID is ``NoSuchUpload``.
"""

from __future__ import annotations

import re

from bleepstore import errors
from bleepstore.core.request import S3Request
from bleepstore.core.services import Services
from bleepstore.model import Upload
from bleepstore.s3.numbers import parse_bounded

UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
MAX_PART_NUMBER = 10_000


def part_number(value: str | None) -> int:
    """``partNumber`` as an int in 1..10000, else InvalidArgument (§14.2)."""
    return parse_bounded(value, 1, MAX_PART_NUMBER, lambda: errors.InvalidArgument(
        "Part number must be an integer between 1 and 10000, inclusive",
        ArgumentName="partNumber", ArgumentValue=value))


def load_upload(svc: Services, req: S3Request) -> Upload:
    """The upload named by ``uploadId`` for this request's bucket and key."""
    upload_id = req.query.get("uploadId", "")
    upload = svc.store.get_upload(upload_id) if UPLOAD_ID.fullmatch(upload_id) else None
    if upload is None or (upload.bucket, upload.key) != (req.bucket, req.key):
        raise errors.NoSuchUpload(UploadId=upload_id)
    return upload
