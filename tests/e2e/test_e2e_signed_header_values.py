"""Signed header values end to end (direct, through nginx, as a gateway): a signed empty
Content-Type, and non-ASCII x-amz-meta-* values sent and signed by boto3 as UTF-8, returned
RFC 2047-encoded as S3 returns them (docs/decisions.md)."""

from __future__ import annotations

import base64
from typing import Any

import botocore.handlers
from support.signed import send

VALUE = "héllo wörld à 中"
# [S3] the value's bytes read as ISO-8859-1, that text's UTF-8, base64, one encoded word.
AS_S3_RETURNS = "=?UTF-8?B?" + base64.b64encode(
    VALUE.encode().decode("latin-1").encode()).decode() + "?="


def test_signed_empty_content_type(server: Any, s3: Any, bucket: str) -> None:
    resp = send(server.endpoint, "PUT", f"/{bucket}/empty-type", body=b"x",
                headers={"Content-Type": ""})
    assert resp.status == 200, resp.body
    assert s3.get_object(Bucket=bucket, Key="empty-type")["Body"].read() == b"x"


def test_non_ascii_metadata_round_trip(server: Any, s3: Any, bucket: str) -> None:
    # botocore refuses non-ASCII metadata client side; S3 itself accepts it (boto/boto3#3063).
    s3.meta.events.unregister("before-parameter-build.s3.PutObject",
                              botocore.handlers.validate_ascii_metadata)
    s3.put_object(Bucket=bucket, Key="meta", Body=b"x", Metadata={"m": VALUE, "a": "plain"})
    assert s3.head_object(Bucket=bucket, Key="meta")["Metadata"] == {
        "m": AS_S3_RETURNS, "a": "plain"}
    got = s3.get_object(Bucket=bucket, Key="meta")
    assert got["Metadata"] == {"m": AS_S3_RETURNS, "a": "plain"}
    s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "meta"})
    assert s3.head_object(Bucket=bucket, Key="copied")["Metadata"]["m"] == AS_S3_RETURNS
