"""Bucket CORS configuration: PutBucketCors, GetBucketCors, DeleteBucketCors (issue 15
item 4). The preflight and the response headers are the web layer's (``web/front.py``),
from the same stored rules (``s3/cors.py``).

Invariants: the bucket owner only, as on AWS; a configuration is validated whole before it
is stored (normalised JSON, replicated with the bucket in cluster mode); the body is read
only after the owner check and is never larger than AWS's 64 KB.
"""

from __future__ import annotations

from bleepstore import errors
from bleepstore.core.access import bucket_for
from bleepstore.core.inputs import read_xml_body
from bleepstore.core.request import S3Request, S3Response, empty, origin_of, xml_response
from bleepstore.core.services import Services
from bleepstore.metadata.commands import DeleteBucketConfig, PutBucketConfig
from bleepstore.s3 import cors
from bleepstore.s3.checksums import ALGORITHMS, header_name

KIND = "cors"
MSG_NO_MD5 = "Missing required header for this request: Content-MD5"


def get_bucket_cors(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "OWNER")
    document = svc.store.get_bucket_config(bucket.name, KIND)
    if document is None:
        raise errors.NoSuchCORSConfiguration(BucketName=bucket.name)
    return xml_response(cors.render(cors.from_json(document)))


def _has_integrity_header(req: S3Request) -> bool:
    """PutBucketCors is an operation AWS wants a body checksum on: Content-MD5, or (what
    botocore sends today) a flexible checksum, as a header or an aws-chunked trailer."""
    if req.header("content-md5") is not None:
        return True
    if any(req.header(header_name(alg)) is not None for alg in ALGORITHMS):
        return True
    return "x-amz-checksum-" in (req.header("x-amz-trailer") or "").lower()


def put_bucket_cors(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "OWNER")
    if not _has_integrity_header(req):
        raise errors.InvalidRequest(MSG_NO_MD5)
    rules = cors.parse_configuration(read_xml_body(req.payload, cors.MAX_DOCUMENT_BYTES))
    svc.store.apply(PutBucketConfig(bucket.name, KIND, cors.to_json(rules),
                                    origin=origin_of(req)))
    return empty(200)


def delete_bucket_cors(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "OWNER")
    svc.store.apply(DeleteBucketConfig(bucket.name, KIND, origin=origin_of(req)))
    return empty(204)
