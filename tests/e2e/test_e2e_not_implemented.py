"""Refused, not ignored (issue 16): a header or sub-resource BleepStore does not implement
answers 501 NotImplemented naming it, after authentication and before anything is read
or written -- end to end, with boto3 as the client (s3.router.NOT_IMPLEMENTED)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from support.clients import boto3_client
from support.raw import send

pytestmark = pytest.mark.usefixtures("metadata_feature")  # web layer only: no gateways


def refused(exc: pytest.ExceptionInfo[ClientError], named: str) -> dict[str, Any]:
    response = exc.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 501, response
    error: dict[str, Any] = response["Error"]
    assert error["Code"] == "NotImplemented", error
    assert named.lower() in error["Message"].lower(), error
    return error


def keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


SSE_C = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32}
LOCK_UNTIL = datetime.now(UTC) + timedelta(days=1)


@pytest.mark.parametrize("extra, named", [
    ({"ServerSideEncryption": "AES256"}, "x-amz-server-side-encryption"),
    ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/x"},
     "x-amz-server-side-encryption"),
    ({"BucketKeyEnabled": True}, "x-amz-server-side-encryption-bucket-key-enabled"),
    (SSE_C, "x-amz-server-side-encryption-customer-"),
    ({"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": LOCK_UNTIL},
     "x-amz-object-lock-"),
    ({"ObjectLockLegalHoldStatus": "ON"}, "x-amz-object-lock-legal-hold"),
    ({"WebsiteRedirectLocation": "/elsewhere.html"}, "x-amz-website-redirect-location"),
])
def test_put_object_refuses_and_writes_nothing(s3: Any, bucket: str, extra: dict[str, Any],
                                               named: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"secret data", **extra)
    error = refused(exc, named)
    assert error["Header"].lower().startswith(named.lower())
    assert "k" * 32 not in str(exc.value.response)  # an SSE-C key is never echoed
    assert keys(s3, bucket) == []
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(Bucket=bucket, Key="k", **extra)
    refused(exc, named)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_sse_c_reads_copies_and_parts_are_refused(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="plain", Body=b"plain")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="plain", **SSE_C)
    refused(exc, "x-amz-server-side-encryption-customer-")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "plain"},
                       CopySourceSSECustomerAlgorithm="AES256",
                       CopySourceSSECustomerKey="k" * 32)
    refused(exc, "x-amz-copy-source-server-side-encryption-customer-")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "plain"},
                       ServerSideEncryption="AES256")
    refused(exc, "x-amz-server-side-encryption")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=1, Body=b"x",
                       **SSE_C)
    refused(exc, "x-amz-server-side-encryption-customer-")
    assert "Parts" not in s3.list_parts(Bucket=bucket, Key="big", UploadId=upload)
    assert keys(s3, bucket) == ["plain"]


def test_conditions_that_would_be_ignored_are_refused(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    s3.put_object(Bucket=bucket, Key="src", Body=b"new")
    with pytest.raises(ClientError) as exc:  # a mismatching If-Match must not delete
        s3.delete_object(Bucket=bucket, Key="k", IfMatch='"00000000000000000000000000000000"')
    refused(exc, "If-Match")
    assert "for DeleteObject" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:  # If-None-Match: * must not overwrite
        s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "src"},
                       IfNoneMatch="*")
    refused(exc, "If-None-Match")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v1"
    assert s3.head_object(Bucket=bucket, Key="k", IfMatch=etag)["ETag"] == etag  # still served
    resp = send_put(s3, bucket, "sha", {"x-amz-checksum-sha512": "A" * 88})
    assert resp.status == 501 and b"<Header>x-amz-checksum-sha512</Header>" in resp.body
    assert keys(s3, bucket) == ["k", "src"]


def send_put(s3: Any, bucket: str, key: str, headers: dict[str, str]) -> Any:
    return send(s3.meta.endpoint_url, "PUT", f"/{bucket}/{key}", body=b"data",
                headers=headers)


def test_create_bucket_refuses_object_lock_and_other_ownership(s3: Any) -> None:
    for extra, named in [({"ObjectLockEnabledForBucket": True},
                          "x-amz-bucket-object-lock-enabled"),
                         ({"ObjectOwnership": "BucketOwnerEnforced"}, "x-amz-object-ownership"),
                         ({"ObjectOwnership": "BucketOwnerPreferred"}, "x-amz-object-ownership")]:
        with pytest.raises(ClientError) as exc:
            s3.create_bucket(Bucket="refused-bucket", **extra)
        assert "(only " in refused(exc, named)["Message"]
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert "refused-bucket" not in names
    # what BleepStore does anyway is accepted
    s3.create_bucket(Bucket="accepted-bucket", ObjectLockEnabledForBucket=False,
                     ObjectOwnership="ObjectWriter")
    assert "accepted-bucket" in [b["Name"] for b in s3.list_buckets()["Buckets"]]


@pytest.mark.parametrize("call, named", [
    (lambda s3, b: s3.get_bucket_website(Bucket=b), "website"),
    (lambda s3, b: s3.put_bucket_website(Bucket=b, WebsiteConfiguration={
        "IndexDocument": {"Suffix": "index.html"}}), "website"),
    (lambda s3, b: s3.delete_bucket_website(Bucket=b), "website"),
    (lambda s3, b: s3.get_bucket_encryption(Bucket=b), "encryption"),
    (lambda s3, b: s3.put_bucket_encryption(Bucket=b, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}),
     "encryption"),
    (lambda s3, b: s3.get_object_lock_configuration(Bucket=b), "object-lock"),
    (lambda s3, b: s3.put_object_retention(Bucket=b, Key="k", Retention={
        "Mode": "GOVERNANCE", "RetainUntilDate": LOCK_UNTIL}), "retention"),
    (lambda s3, b: s3.put_object_legal_hold(Bucket=b, Key="k", LegalHold={"Status": "ON"}),
     "legal-hold"),
    (lambda s3, b: s3.get_bucket_logging(Bucket=b), "logging"),
    (lambda s3, b: s3.get_bucket_notification_configuration(Bucket=b), "notification"),
    (lambda s3, b: s3.get_bucket_replication(Bucket=b), "replication"),
    (lambda s3, b: s3.get_bucket_accelerate_configuration(Bucket=b), "accelerate"),
    (lambda s3, b: s3.get_bucket_request_payment(Bucket=b), "requestPayment"),
    (lambda s3, b: s3.get_bucket_ownership_controls(Bucket=b), "ownershipControls"),
    (lambda s3, b: s3.list_bucket_inventory_configurations(Bucket=b), "inventory"),
    (lambda s3, b: s3.restore_object(Bucket=b, Key="k", RestoreRequest={"Days": 1}),
     "restore"),
    (lambda s3, b: s3.get_object_torrent(Bucket=b, Key="k"), "torrent"),
])
def test_sub_resources_are_refused_naming_them(s3: Any, bucket: str, call: Any,
                                               named: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"keep")
    with pytest.raises(ClientError) as exc:
        call(s3, bucket)
    error = refused(exc, named)
    assert error.get("ArgumentName") == named
    assert keys(s3, bucket) == ["k"]
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"keep"


def test_rename_object_no_longer_overwrites_the_key(s3: Any, bucket: str) -> None:
    """PUT ?renameObject used to be a PutObject of the (empty) body onto the key."""
    s3.put_object(Bucket=bucket, Key="target", Body=b"keep")
    s3.put_object(Bucket=bucket, Key="source", Body=b"src")
    resp = send(s3.meta.endpoint_url, "PUT", f"/{bucket}/target?renameObject",
                headers={"x-amz-rename-source": f"/{bucket}/source"})
    assert resp.status == 501 and b"<ArgumentName>renameObject</ArgumentName>" in resp.body
    assert s3.get_object(Bucket=bucket, Key="target")["Body"].read() == b"keep"
    assert keys(s3, bucket) == ["source", "target"]


def test_what_is_implemented_or_harmless_is_accepted(s3: Any, bucket: str) -> None:
    owner = s3.list_buckets()["Owner"]["ID"]
    s3.put_object(Bucket=bucket, Key="a", Body=b"a", RequestPayer="requester",
                  ExpectedBucketOwner=owner, StorageClass="STANDARD_IA")
    assert s3.head_object(Bucket=bucket, Key="a")["StorageClass"] == "STANDARD_IA"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="b", Body=b"b", ExpectedBucketOwner="111122223333")
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    s3.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "a"},
                   ExpectedSourceBucketOwner=owner)
    with pytest.raises(ClientError) as exc:  # was accepted and ignored
        s3.copy_object(Bucket=bucket, Key="d", CopySource={"Bucket": bucket, "Key": "a"},
                       ExpectedSourceBucketOwner="111122223333")
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    upload = s3.create_multipart_upload(Bucket=bucket, Key="e")["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(Bucket=bucket, Key="e", UploadId=upload, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "a"},
                            ExpectedSourceBucketOwner="111122223333")
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    assert keys(s3, bucket) == ["a", "c"]


def test_authentication_comes_first(server: Any, s3: Any, bucket: str) -> None:
    """A bad signature is 403 whatever the request asks for; a presigned URL with an added
    (unsigned) SSE header too. The 501 is for authenticated requests and, as the §2.5
    sub-resources always were, for anonymous ones: it names a feature, not a bucket."""
    sse = {"x-amz-server-side-encryption": "AES256"}
    wrong = send(server.endpoint, "PUT", f"/{bucket}/k", body=b"x", headers=sse,
                 secret_key="not-the-secret")
    assert wrong.status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in wrong.body
    unknown = send(server.endpoint, "PUT", f"/{bucket}/k", body=b"x", headers=sse,
                   access_key="AKNOBODY", secret_key="x")
    assert unknown.status == 403 and b"<Code>InvalidAccessKeyId</Code>" in unknown.body
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "k"},
                                    ExpiresIn=300)
    target = url.split(str(server.port), 1)[1]
    presigned = send(server.endpoint, "PUT", target, body=b"x", sign=False,
                     headers={"x-amz-object-lock-mode": "GOVERNANCE"})
    assert presigned.status == 403
    assert b"<HeadersNotSigned>x-amz-object-lock-mode</HeadersNotSigned>" in presigned.body
    anonymous = send(server.endpoint, "PUT", f"/{bucket}/k", body=b"x", headers=sse,
                     sign=False)
    assert anonymous.status == 501, anonymous.body
    assert b"<Header>x-amz-server-side-encryption</Header>" in anonymous.body
    assert keys(s3, bucket) == []
    # the signed equivalent, through the same path, with boto3's own answer parsing
    other = boto3_client(server.endpoint)
    with pytest.raises(ClientError) as exc:
        other.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="AES256")
    assert refused(exc, "x-amz-server-side-encryption")["Message"] == \
        "x-amz-server-side-encryption is not implemented"
