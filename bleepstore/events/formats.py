"""What goes on the wire for one outbox row (``queue.event_format``).

``bleepstore``: the stored envelope as is (events.md §3). ``s3``: the AWS S3 Event
Notification document (``Records``, eventVersion 2.1), so consumers written for S3
notifications work unchanged; ``sequencer`` is the outbox ``seq`` in hex (monotonic, so
per bucket too). Event types with no S3 counterpart (bucket.*, multipart.*, part.uploaded)
are not sent in that format.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

from bleepstore.events.outbox import OutboxRow
from bleepstore.events.publisher import OutboxEvent

_CREATED = {"PutObject": "ObjectCreated:Put", "CopyObject": "ObjectCreated:Copy",
            "CompleteMultipartUpload": "ObjectCreated:CompleteMultipartUpload",
            "PostObject": "ObjectCreated:Post"}


def render(row: OutboxRow, event_format: str, region: str) -> OutboxEvent | None:
    if event_format == "bleepstore":
        return OutboxEvent(row.seq, row.event_id, row.event_type, row.partition_key, row.body)
    records = s3_records(json.loads(row.body), row.seq, region)
    if not records:
        return None
    body = json.dumps({"Records": records}, separators=(",", ":"), ensure_ascii=False)
    return OutboxEvent(row.seq, row.event_id, row.event_type, row.partition_key, body)


def s3_records(event: dict[str, Any], seq: int, region: str) -> list[dict[str, Any]]:
    data, kind = event["data"], event["type"]
    if kind == "object.created":
        names = [(_CREATED.get(data["operation"], "ObjectCreated:Put"), data["key"],
                  data["size"], data["etag"], data.get("version_id"))]
    elif kind == "object.deleted":
        names = [_removed(data)]
    elif kind == "objects.deleted":
        names = ([_removed(change) for change in data["versions"]] if "versions" in data
                 else [("ObjectRemoved:Delete", key, None, None, None) for key in data["keys"]])
    elif kind == "object.acl.updated":
        names = [("ObjectAcl:Put", data["key"], None, None, None)]
    else:
        return []
    return [_record(event, name, key, size, etag, version_id, seq, region)
            for name, key, size, etag, version_id in names]


def _removed(change: dict[str, Any]) -> tuple[str, str, None, None, str | None]:
    name = ("ObjectRemoved:DeleteMarkerCreated" if change.get("delete_marker_created")
            else "ObjectRemoved:Delete")
    return (name, change["key"], None, None, change.get("version_id"))


def _record(event: dict[str, Any], name: str, key: str, size: int | None, etag: str | None,
            version_id: str | None, seq: int, region: str) -> dict[str, Any]:
    bucket = event["data"]["bucket"]
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "sequencer": f"{seq:016X}"}
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["eTag"] = etag.strip('"')
    if version_id is not None:
        obj["versionId"] = version_id
    return {
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": region,
        "eventTime": event["timestamp"], "eventName": name,
        "userIdentity": {"principalId": ""},
        "requestParameters": {"sourceIPAddress": ""},
        "responseElements": {"x-amz-request-id": event["request_id"],
                             "x-amz-id-2": event["id"]},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "bleepstore",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": ""},
                          "arn": f"arn:aws:s3:::{bucket}"},
               "object": obj},
    }
