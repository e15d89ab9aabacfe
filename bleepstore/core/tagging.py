"""Object and bucket tagging: Get/Put/DeleteObjectTagging, Get/Put/DeleteBucketTagging
(docs/decisions.md, Tagging). Tags sent with a write (``x-amz-tagging``) are taken by the
write operations themselves (objects, copy, multipart) through ``s3.tags``.

Invariants: object tags follow the version they belong to (``versionId``); reading them needs
READ on the object, changing them WRITE on the bucket (as overwriting the object would);
bucket tags are the owner's. A tag set is validated whole before anything is stored.
"""

from __future__ import annotations

import json

from bleepstore import errors
from bleepstore.core.access import bucket_for, load_bucket
from bleepstore.core.inputs import read_xml_body
from bleepstore.core.request import S3Request, S3Response, empty, origin_of, xml_response
from bleepstore.core.services import Services
from bleepstore.core.versioning import read_version, requested_version, version_headers
from bleepstore.metadata.commands import DeleteBucketConfig, PutBucketConfig, PutObjectTags
from bleepstore.s3 import tags as t
from bleepstore.s3 import xml_render as render

BUCKET_KIND = "tagging"


def get_object_tagging(svc: Services, req: S3Request) -> S3Response:
    bucket = load_bucket(svc, req)
    obj = read_version(svc, req, bucket, req.key)
    resp = xml_response(render.tagging(obj.tags))
    resp.headers.extend(version_headers(bucket, obj, req.query.get("versionId")))
    return resp


def _set_object_tags(svc: Services, req: S3Request, tags: t.Tags, status: int) -> S3Response:
    version = requested_version(req)
    bucket = bucket_for(svc, req, "WRITE")
    obj = read_version(svc, req, bucket, req.key)  # NoSuchKey / NoSuchVersion / 405 first
    svc.store.apply(PutObjectTags(bucket.name, req.key, tags, version, origin=origin_of(req)))
    resp = empty(status)
    resp.headers.extend(version_headers(bucket, obj, version))
    return resp


def put_object_tagging(svc: Services, req: S3Request) -> S3Response:
    tags = t.parse_tagging(read_xml_body(req.payload))
    return _set_object_tags(svc, req, tags, 200)


def delete_object_tagging(svc: Services, req: S3Request) -> S3Response:
    return _set_object_tags(svc, req, (), 204)


def get_bucket_tagging(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "OWNER")
    document = svc.store.get_bucket_config(bucket.name, BUCKET_KIND)
    if document is None:
        raise errors.NoSuchTagSet()
    return xml_response(render.tagging([(k, v) for k, v in json.loads(document)]))


def put_bucket_tagging(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "OWNER")
    tags = t.parse_tagging(read_xml_body(req.payload), limit=t.BUCKET_TAG_LIMIT)
    svc.store.apply(PutBucketConfig(bucket.name, BUCKET_KIND, json.dumps(tags),
                                    origin=origin_of(req)))
    return empty(204)


def delete_bucket_tagging(svc: Services, req: S3Request) -> S3Response:
    bucket = bucket_for(svc, req, "OWNER")
    svc.store.apply(DeleteBucketConfig(bucket.name, BUCKET_KIND, origin=origin_of(req)))
    return empty(204)
