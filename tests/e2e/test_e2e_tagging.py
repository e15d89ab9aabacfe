"""Object and bucket tagging end to end (boto3 and the aws CLI): tag sets on PutObject,
CopyObject (COPY / REPLACE directive) and multipart uploads, Put/Get/DeleteObjectTagging
per version, x-amz-tagging-count, bucket tagging, and AWS's limits and errors."""

from __future__ import annotations

import json
from typing import Any

import botocore.exceptions
import pytest
from support.clients import AwsCli

pytestmark = pytest.mark.usefixtures("metadata_feature")


def tag_set(pairs: dict[str, str]) -> dict[str, Any]:
    return {"TagSet": [{"Key": k, "Value": v} for k, v in pairs.items()]}


def tags_of(s3: Any, bucket: str, key: str, **kw: Any) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key,
                                                                 **kw)["TagSet"]}


def error_of(exc: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> tuple[int, str]:
    r = exc.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


def test_tags_sent_with_put_object_are_kept_and_counted(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="project=blue&owner=ann%20b")
    assert tags_of(s3, bucket, "k") == {"project": "blue", "owner": "ann b"}
    assert s3.head_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPHeaders"][
        "x-amz-tagging-count"] == "2"
    assert s3.get_object(Bucket=bucket, Key="k")["TagCount"] == 2
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    assert "x-amz-tagging-count" not in s3.head_object(
        Bucket=bucket, Key="plain")["ResponseMetadata"]["HTTPHeaders"]
    assert tags_of(s3, bucket, "plain") == {}


def test_put_and_delete_object_tagging(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="a=1")
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tag_set({"b": "2", "c": ""}))
    assert tags_of(s3, bucket, "k") == {"b": "2", "c": ""}  # replaced, not merged
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"  # data untouched
    out = s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert tags_of(s3, bucket, "k") == {}


def test_tagging_a_missing_key_is_no_such_key(s3: Any, bucket: str) -> None:
    for call in (lambda: s3.get_object_tagging(Bucket=bucket, Key="nope"),
                 lambda: s3.put_object_tagging(Bucket=bucket, Key="nope",
                                               Tagging=tag_set({"a": "1"}))):
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            call()
        assert error_of(exc) == (404, "NoSuchKey")


@pytest.mark.parametrize("tags, code", [
    ({f"k{i}": "v" for i in range(11)}, "BadRequest"),
    ({"k" * 129: "v"}, "InvalidTag"),
    ({"k": "v" * 257}, "InvalidTag"),
    ({"aws:cloudformation": "v"}, "InvalidTag"),
    ({"bad*key": "v"}, "InvalidTag"),
])
def test_invalid_tag_sets_are_refused_whole(s3: Any, bucket: str, tags: dict[str, str],
                                            code: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="keep=me")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tag_set(tags))
    assert error_of(exc) == (400, code)
    assert tags_of(s3, bucket, "k") == {"keep": "me"}
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="new", Body=b"x",
                      Tagging="&".join(f"{k}={v}" for k, v in tags.items()))
    assert error_of(exc)[0] == 400
    with pytest.raises(botocore.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key="new")  # nothing stored


def test_duplicate_keys_in_the_header_are_invalid(s3: Any, bucket: str) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="a=1&a=2")
    assert error_of(exc) == (400, "InvalidTag")


def test_copy_keeps_or_replaces_tags(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"x", Tagging="a=1")
    s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "src"})
    assert tags_of(s3, bucket, "copied") == {"a": "1"}
    s3.copy_object(Bucket=bucket, Key="replaced", CopySource={"Bucket": bucket, "Key": "src"},
                   TaggingDirective="REPLACE", Tagging="b=2")
    assert tags_of(s3, bucket, "replaced") == {"b": "2"}
    s3.copy_object(Bucket=bucket, Key="none", CopySource={"Bucket": bucket, "Key": "src"},
                   TaggingDirective="REPLACE")
    assert tags_of(s3, bucket, "none") == {}


def test_multipart_upload_tags_reach_the_object(s3: Any, bucket: str) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", Tagging="stage=raw")
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=1,
                          Body=b"p" * 10)
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1,
                                                             "ETag": part["ETag"]}]})
    assert tags_of(s3, bucket, "mp") == {"stage": "raw"}


def test_tags_belong_to_their_version(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"1", Tagging="v=1")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"2", Tagging="v=2")["VersionId"]
    assert tags_of(s3, bucket, "k") == {"v": "2"}
    assert tags_of(s3, bucket, "k", VersionId=v1) == {"v": "1"}
    out = s3.put_object_tagging(Bucket=bucket, Key="k", VersionId=v1,
                                Tagging=tag_set({"old": "yes"}))
    assert out["VersionId"] == v1
    assert tags_of(s3, bucket, "k", VersionId=v1) == {"old": "yes"}
    assert tags_of(s3, bucket, "k", VersionId=v2) == {"v": "2"}
    s3.delete_object(Bucket=bucket, Key="k")  # a delete marker is latest now
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.get_object_tagging(Bucket=bucket, Key="k")
    assert error_of(exc) == (404, "NoSuchKey")


def test_bucket_tagging(s3: Any, bucket: str) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_of(exc) == (404, "NoSuchTagSet")
    s3.put_bucket_tagging(Bucket=bucket, Tagging=tag_set({"team": "data", "cost": "42"}))
    got = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    assert got == [{"Key": "team", "Value": "data"}, {"Key": "cost", "Value": "42"}]
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.put_bucket_tagging(Bucket=bucket, Tagging=tag_set({f"k{i}": "v" for i in range(51)}))
    assert error_of(exc) == (400, "InvalidTag")
    s3.delete_bucket_tagging(Bucket=bucket)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_of(exc) == (404, "NoSuchTagSet")


def test_aws_cli_object_tagging(aws: AwsCli, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    aws("s3api", "put-object-tagging", "--bucket", bucket, "--key", "k", "--tagging",
        json.dumps(tag_set({"env": "prod"})))
    out = json.loads(aws("s3api", "get-object-tagging", "--bucket", bucket, "--key", "k").stdout)
    assert out["TagSet"] == [{"Key": "env", "Value": "prod"}]
