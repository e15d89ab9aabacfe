"""BleepStore's OpenAPI 3.1 document for the S3 API, generated from the router's own
operation table so it cannot drift from the code (observability.md §4).

Invariants: one OpenAPI operation per S3 operation (operationId = the AWS name); S3
distinguishes operations on one path by query sub-resource or by header, which OpenAPI
cannot key on, so such operations get the sub-resource in the path key (``?acl``) or a
``#Operation`` fragment (CopyObject, UploadPartCopy).
"""

from __future__ import annotations

import json
from typing import Any

from bleepstore import __version__
from bleepstore.s3.router import Op, operation_table

_BASE = {"SERVICE": "/", "BUCKET": "/{bucket}", "OBJECT": "/{bucket}/{key}"}
_TAGS = {"SERVICE": "Bucket", "BUCKET": "Bucket", "OBJECT": "Object"}
_MULTIPART = {Op.CREATE_MULTIPART_UPLOAD, Op.UPLOAD_PART, Op.UPLOAD_PART_COPY,
              Op.COMPLETE_MULTIPART_UPLOAD, Op.ABORT_MULTIPART_UPLOAD, Op.LIST_PARTS,
              Op.LIST_MULTIPART_UPLOADS}
_HEADERS: dict[Op, tuple[tuple[str, bool], ...]] = {
    Op.COPY_OBJECT: (("x-amz-copy-source", True), ("x-amz-metadata-directive", False)),
    Op.UPLOAD_PART_COPY: (("x-amz-copy-source", True), ("x-amz-copy-source-range", False)),
    Op.GET_OBJECT: (("Range", False), ("If-Match", False), ("If-None-Match", False)),
    Op.HEAD_OBJECT: (("Range", False), ("If-Match", False), ("If-None-Match", False)),
    Op.PUT_OBJECT: (("Content-MD5", False), ("x-amz-acl", False), ("If-None-Match", False)),
    Op.CREATE_BUCKET: (("x-amz-acl", False),),
    Op.PUT_BUCKET_ACL: (("x-amz-acl", False),),
    Op.PUT_OBJECT_ACL: (("x-amz-acl", False),),
}
_OPTIONAL_QUERY: dict[Op, tuple[str, ...]] = {
    Op.LIST_OBJECTS: ("prefix", "delimiter", "marker", "max-keys", "encoding-type"),
    Op.LIST_OBJECTS_V2: ("prefix", "delimiter", "continuation-token", "start-after",
                         "max-keys", "fetch-owner", "encoding-type"),
    Op.LIST_MULTIPART_UPLOADS: ("prefix", "delimiter", "key-marker", "upload-id-marker",
                                "max-uploads", "encoding-type"),
    Op.LIST_PARTS: ("max-parts", "part-number-marker"),
    Op.GET_OBJECT: ("partNumber", "response-content-type", "response-content-disposition"),
    Op.HEAD_OBJECT: ("partNumber",),
}
_BODY_OPS = {Op.PUT_OBJECT, Op.UPLOAD_PART}
_XML_BODY_OPS = {Op.CREATE_BUCKET, Op.PUT_BUCKET_ACL, Op.PUT_OBJECT_ACL, Op.DELETE_OBJECTS,
                 Op.COMPLETE_MULTIPART_UPLOAD}


def _path_key(resource: str, needs: tuple[str, ...], must_equal: str | None, op: Op,
              copy_source: bool) -> str:
    key = _BASE[resource]
    if needs:
        parts = [f"{n}={must_equal}" if must_equal else n for n in needs]
        key += "?" + "&".join(parts)
    if copy_source:
        key += f"#{op.value}"
    return key


def _param(name: str, where: str, required: bool) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": {"type": "string"}}


def _operation(resource: str, op: Op, needs: tuple[str, ...]) -> dict[str, Any]:
    params = [_param("bucket", "path", True)] if resource != "SERVICE" else []
    if resource == "OBJECT":
        params.append(_param("key", "path", True))
    params += [_param(n, "query", True) for n in needs if n != "partNumber" or op not in (
        Op.GET_OBJECT, Op.HEAD_OBJECT)]
    params += [_param(n, "query", False) for n in _OPTIONAL_QUERY.get(op, ())]
    params += [_param(h, "header", req) for h, req in _HEADERS.get(op, ())]
    doc: dict[str, Any] = {
        "operationId": op.value, "summary": op.value,
        "tags": ["MultipartUpload" if op in _MULTIPART else _TAGS[resource]],
        "parameters": params,
        "responses": {"200": {"description": "Success"},
                      "default": {"description": "S3 error",
                                  "content": {"application/xml": {"schema": {
                                      "$ref": "#/components/schemas/Error"}}}}}}
    if op in _BODY_OPS:
        doc["requestBody"] = {"content": {"application/octet-stream": {
            "schema": {"type": "string", "format": "binary"}}}}
    elif op in _XML_BODY_OPS:
        doc["requestBody"] = {"content": {"application/xml": {"schema": {"type": "string"}}}}
    return doc


def build_document(server_url: str = "/") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    seen: set[Op] = set()
    for resource, rows in operation_table().items():
        for row in rows:
            if not isinstance(row.outcome, Op) or row.outcome in seen:
                continue
            seen.add(row.outcome)
            key = _path_key(resource, () if row.outcome in (Op.GET_OBJECT, Op.HEAD_OBJECT)
                            else row.needs, row.must_equal, row.outcome, row.copy_source)
            paths.setdefault(key, {})[row.method.lower()] = _operation(
                resource, row.outcome, row.needs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "BleepStore S3-Compatible API", "version": __version__},
        "servers": [{"url": server_url}],
        "security": [{"sigv4": []}],
        "tags": [{"name": "Bucket"}, {"name": "Object"}, {"name": "MultipartUpload"}],
        "paths": paths,
        "components": {
            "securitySchemes": {"sigv4": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "AWS Signature Version 4 (header or presigned query)"}},
            "schemas": {"Error": {"type": "object", "properties": {
                n: {"type": "string"} for n in ("Code", "Message", "Resource", "RequestId",
                                                 "HostId")}}}},
    }


class OpenApiCache:
    """The document is built once per worker; only ``servers`` depends on the request."""

    def __init__(self) -> None:
        self._doc = build_document()

    def render(self, server_url: str) -> bytes:
        doc = dict(self._doc)
        doc["servers"] = [{"url": server_url}]
        return json.dumps(doc, sort_keys=True).encode()
