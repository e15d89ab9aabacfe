"""Bucket policies, GetBucketPolicyStatus and the public access block end to end, with boto3,
the aws CLI and raw anonymous requests, as a second and third real user (``bleepstore user
add``): what a policy grants and denies on every kind of operation, its interplay with the
ACLs, AWS's MalformedPolicy answers, the four public access block flags, a restart.

Every client reaches the server from 127.0.0.1 over plain HTTP (directly, through nginx, as a
gateway or a cluster node), which the SourceIp and SecureTransport tests rely on."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import botocore.exceptions
import pytest
from support.clients import AwsCli, boto3_client
from support.server import Server
from support.signed import RawResponse, send

pytestmark = pytest.mark.usefixtures("metadata_feature")

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
PAB_ALL_OFF = {"BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
               "RestrictPublicBuckets": False}


@dataclass(frozen=True)
class User:
    access_key: str
    client: Any

    @property
    def id(self) -> str:
        return hashlib.sha256(self.access_key.encode()).hexdigest()


def _add_user(server: Server, name: str) -> User:
    access = "AKP" + name.upper() + secrets.token_hex(6).upper()
    secret = secrets.token_urlsafe(30)
    exe = shutil.which("bleepstore")
    cmd = [exe] if exe else [sys.executable, "-m", "bleepstore.cli"]
    env = {**os.environ, "BLEEPSTORE_CONFIG": str(server.config_path)}
    subprocess.run([*cmd, "user", "add", f"--access-key={access}", f"--secret-key={secret}",
                    f"--display-name={name}"], env=env, check=True, capture_output=True)
    return User(access, boto3_client(server.endpoint, access, secret))


def _remove_user(server: Server, user: User) -> None:
    for b in user.client.list_buckets()["Buckets"]:
        user.client.delete_bucket_policy(Bucket=b["Name"])
        keys = [{"Key": o["Key"]} for o in user.client.list_objects_v2(
            Bucket=b["Name"]).get("Contents", [])]
        if keys:
            user.client.delete_objects(Bucket=b["Name"], Delete={"Objects": keys})
        user.client.delete_bucket(Bucket=b["Name"])
    with sqlite3.connect(server.db_path) as conn:
        conn.execute("DELETE FROM credentials WHERE access_key_id = ?", (user.access_key,))


@pytest.fixture
def bob(server: Server, s3: Any) -> Iterator[User]:
    user = _add_user(server, "bob")
    yield user
    _remove_user(server, user)


@pytest.fixture
def carol(server: Server, s3: Any) -> Iterator[User]:
    user = _add_user(server, "carol")
    yield user
    _remove_user(server, user)


@pytest.fixture
def pb(s3: Any, bucket: str) -> Iterator[str]:
    """The test bucket; its policy and public access block go before the per-test reset
    (the owner may always delete a policy, whatever it denies)."""
    yield bucket
    s3.delete_bucket_policy(Bucket=bucket)
    s3.delete_public_access_block(Bucket=bucket)


def put_policy(s3: Any, bucket: str, *statements: dict[str, Any]) -> str:
    text = json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
    s3.put_bucket_policy(Bucket=bucket, Policy=text)
    return text


def allow(bucket: str, action: str | list[str] = "s3:GetObject", resource: str = "/*",
          principal: Any = "*", effect: str = "Allow", **extra: Any) -> dict[str, Any]:
    return {"Effect": effect, "Principal": principal, "Action": action,
            "Resource": f"arn:aws:s3:::{bucket}{resource}", **extra}


def everything(bucket: str) -> list[str]:
    return [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]


def error_of(call: Any, **kwargs: Any) -> tuple[int, str, str]:
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        call(**kwargs)
    r = exc.value.response
    return (int(r["ResponseMetadata"]["HTTPStatusCode"]), str(r["Error"]["Code"]),
            str(r["Error"].get("Message", "")))


def anon(server: Server, method: str, bucket: str, key: str = "", query: str = "",
         body: bytes = b"", headers: dict[str, str] | None = None) -> RawResponse:
    target = f"/{bucket}" + (f"/{quote(key)}" if key else "") + (f"?{query}" if query else "")
    return send(server.endpoint, method, target, body=body, headers=headers, sign=False)


def owner_id(s3: Any) -> str:
    return str(s3.list_buckets()["Owner"]["ID"])


# ------------------------------------------------------------------------ what a policy grants


def test_public_read_policy_lets_anonymous_read_only_what_it_names(server: Server, s3: Any,
                                                                   pb: str) -> None:
    s3.put_object(Bucket=pb, Key="public/cat.jpg", Body=b"meow")
    s3.put_object(Bucket=pb, Key="private/plan.txt", Body=b"secret")
    assert anon(server, "GET", pb, "public/cat.jpg").status == 403
    text = put_policy(s3, pb, allow(pb, resource="/public/*", Sid="PublicRead"))
    got = anon(server, "GET", pb, "public/cat.jpg")
    assert (got.status, got.body) == (200, b"meow")
    assert got.headers["etag"] == s3.head_object(Bucket=pb, Key="public/cat.jpg")["ETag"]
    assert anon(server, "HEAD", pb, "public/cat.jpg").status == 200
    assert anon(server, "GET", pb, "private/plan.txt").status == 403
    assert anon(server, "GET", pb, "public/missing").status == 403  # [S3] no s3:ListBucket
    assert anon(server, "GET", pb).status == 403
    assert anon(server, "PUT", pb, "public/new", body=b"x").status == 403
    assert anon(server, "DELETE", pb, "public/cat.jpg").status == 403
    assert anon(server, "GET", pb, "public/cat.jpg", query="acl").status == 403
    assert s3.get_bucket_policy(Bucket=pb)["Policy"] == text  # byte for byte
    s3.delete_bucket_policy(Bucket=pb)
    assert anon(server, "GET", pb, "public/cat.jpg").status == 403
    assert error_of(s3.get_bucket_policy, Bucket=pb) == (
        404, "NoSuchBucketPolicy", "The bucket policy does not exist")
    s3.delete_bucket_policy(Bucket=pb)  # deleting nothing is a 204 too


def test_policy_listing_grant_turns_a_missing_key_into_404(server: Server, s3: Any,
                                                           pb: str) -> None:
    put_policy(s3, pb, allow(pb), allow(pb, "s3:ListBucket", resource=""))
    assert anon(server, "GET", pb, "nope").status == 404
    listing = anon(server, "GET", pb, query="list-type=2")
    assert listing.status == 200 and b"<ListBucketResult" in listing.body


def test_policy_with_the_aws_cli(aws: AwsCli, s3: Any, pb: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    text = json.dumps({"Version": "2012-10-17", "Id": "cli", "Statement": [
        allow(pb, Sid="Read")]}, indent=2)
    policy.write_text(text)
    aws("s3api", "put-bucket-policy", "--bucket", pb, "--policy", f"file://{policy}")
    out = aws("s3api", "get-bucket-policy", "--bucket", pb, "--output", "json").stdout
    assert json.loads(out)["Policy"] == text
    status = json.loads(aws("s3api", "get-bucket-policy-status", "--bucket", pb).stdout)
    assert status == {"PolicyStatus": {"IsPublic": True}}
    aws("s3api", "put-public-access-block", "--bucket", pb, "--public-access-block-"
        "configuration", "BlockPublicAcls=true,IgnorePublicAcls=false,BlockPublicPolicy=true,"
        "RestrictPublicBuckets=false")
    got = json.loads(aws("s3api", "get-public-access-block", "--bucket", pb).stdout)
    assert got["PublicAccessBlockConfiguration"] == {
        **PAB_ALL_OFF, "BlockPublicAcls": True, "BlockPublicPolicy": True}
    failed = aws("s3api", "put-bucket-policy", "--bucket", pb, "--policy", "{nope",
                 check=False)
    assert failed.returncode != 0 and "MalformedPolicy" in failed.stderr
    assert "This policy contains invalid Json" in failed.stderr
    aws("s3api", "delete-bucket-policy", "--bucket", pb)
    aws("s3api", "delete-public-access-block", "--bucket", pb)
    gone = aws("s3api", "get-bucket-policy-status", "--bucket", pb, check=False)
    assert gone.returncode != 0 and "NoSuchBucketPolicy" in gone.stderr


def test_other_user_allowed_by_principal(s3: Any, pb: str, bob: User, carol: User) -> None:
    s3.put_object(Bucket=pb, Key="shared/a", Body=b"A")
    assert error_of(bob.client.get_object, Bucket=pb, Key="shared/a")[:2] == (403,
                                                                             "AccessDenied")
    root = f"arn:aws:iam::{bob.id}:root"
    put_policy(s3, pb, allow(pb, ["s3:GetObject", "s3:PutObject"], principal={"AWS": root}),
               allow(pb, "s3:ListBucket", "", principal={"AWS": bob.access_key}))
    assert bob.client.get_object(Bucket=pb, Key="shared/a")["Body"].read() == b"A"
    bob.client.put_object(Bucket=pb, Key="shared/b", Body=b"B")
    assert [o["Key"] for o in bob.client.list_objects_v2(Bucket=pb)["Contents"]] == [
        "shared/a", "shared/b"]
    listed = s3.list_objects_v2(Bucket=pb, Prefix="shared/b", FetchOwner=True)["Contents"]
    assert listed[0]["Owner"]["ID"] == bob.id  # the writer owns what it wrote
    for call, kwargs in [(carol.client.get_object, {"Key": "shared/a"}),
                         (carol.client.list_objects_v2, {}),
                         (bob.client.delete_object, {"Key": "shared/a"}),
                         (bob.client.get_bucket_acl, {})]:
        assert error_of(call, Bucket=pb, **kwargs)[:2] == (403, "AccessDenied")
    user_arn = f"arn:aws:iam::{carol.id}:user/{carol.access_key}"
    put_policy(s3, pb, allow(pb, principal={"AWS": user_arn}),
               allow(pb, principal={"CanonicalUser": bob.id}))
    assert carol.client.get_object(Bucket=pb, Key="shared/a")["Body"].read() == b"A"
    assert bob.client.get_object(Bucket=pb, Key="shared/a")["Body"].read() == b"A"
    unknown = {"AWS": "arn:aws:iam::123456789012:root"}
    assert error_of(s3.put_bucket_policy, Bucket=pb, Policy=json.dumps(
        {"Statement": [allow(pb, principal=unknown)]})) == (
        400, "MalformedPolicy", "Invalid principal in policy")


def test_only_the_owner_manages_the_policy(s3: Any, pb: str, bob: User) -> None:
    text = put_policy(s3, pb, allow(pb, principal={"AWS": bob.id}))
    for call in (bob.client.get_bucket_policy, bob.client.delete_bucket_policy):
        assert error_of(call, Bucket=pb)[:2] == (403, "AccessDenied")
    assert error_of(bob.client.put_bucket_policy, Bucket=pb, Policy=text)[:2] == (
        403, "AccessDenied")
    # [S3] allowed by the policy but not the owner's account: 405
    put_policy(s3, pb, allow(pb, ["s3:GetBucketPolicy", "s3:GetBucketPolicyStatus"], "",
                             principal={"AWS": bob.id}))
    assert error_of(bob.client.get_bucket_policy, Bucket=pb)[:2] == (405, "MethodNotAllowed")
    assert bob.client.get_bucket_policy_status(Bucket=pb)["PolicyStatus"] == {"IsPublic": False}
    assert error_of(bob.client.get_public_access_block, Bucket=pb)[:2] == (403, "AccessDenied")


def test_policy_grants_bucket_configuration_to_another_user(s3: Any, pb: str,
                                                            bob: User) -> None:
    assert error_of(bob.client.put_bucket_versioning, Bucket=pb,
                    VersioningConfiguration={"Status": "Enabled"})[:2] == (403, "AccessDenied")
    put_policy(s3, pb, allow(pb, ["s3:PutBucketVersioning", "s3:GetBucketVersioning",
                                  "s3:PutBucketPublicAccessBlock"], "",
                             principal={"AWS": bob.id}))
    bob.client.put_bucket_versioning(Bucket=pb, VersioningConfiguration={"Status": "Enabled"})
    assert bob.client.get_bucket_versioning(Bucket=pb)["Status"] == "Enabled"
    bob.client.put_public_access_block(Bucket=pb, PublicAccessBlockConfiguration={
        **PAB_ALL_OFF, "IgnorePublicAcls": True})
    assert s3.get_public_access_block(Bucket=pb)["PublicAccessBlockConfiguration"][
        "IgnorePublicAcls"] is True


def test_existing_object_tag_condition(server: Server, s3: Any, pb: str) -> None:
    s3.put_object(Bucket=pb, Key="tagged", Body=b"t")
    s3.put_object(Bucket=pb, Key="plain", Body=b"p")
    s3.put_object_tagging(Bucket=pb, Key="tagged",
                          Tagging={"TagSet": [{"Key": "Visibility", "Value": "public"}]})
    put_policy(s3, pb, allow(pb, Condition={
        "StringEquals": {"s3:ExistingObjectTag/Visibility": "public"}}))
    assert anon(server, "GET", pb, "tagged").status == 200
    assert anon(server, "GET", pb, "plain").status == 403
    s3.delete_object_tagging(Bucket=pb, Key="tagged")
    assert anon(server, "GET", pb, "tagged").status == 403


# ------------------------------------------------------------------------ what a policy denies


def test_deny_by_source_ip_applies_to_the_owner_too(s3: Any, pb: str) -> None:
    s3.put_object(Bucket=pb, Key="k", Body=b"v")
    put_policy(s3, pb, allow(pb, "s3:*", resource="", effect="Deny",
                             Resource=everything(pb),
                             Condition={"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}))
    for call, kwargs in [(s3.get_object, {"Key": "k"}), (s3.put_object, {"Key": "n"}),
                         (s3.list_objects_v2, {}), (s3.delete_object, {"Key": "k"}),
                         (s3.get_bucket_acl, {}), (s3.get_public_access_block, {}),
                         (s3.delete_bucket, {})]:
        assert error_of(call, Bucket=pb, **kwargs)[:2] == (403, "AccessDenied"), call
    assert error_of(s3.head_object, Bucket=pb, Key="k")[0] == 403
    assert json.loads(s3.get_bucket_policy(Bucket=pb)["Policy"])["Statement"][0]["Effect"] \
        == "Deny"  # AWS's lock-out safeguard: the owner may always manage the policy
    put_policy(s3, pb, allow(pb, "s3:*", resource="", effect="Deny", Resource=everything(pb),
                             Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))
    assert s3.get_object(Bucket=pb, Key="k")["Body"].read() == b"v"
    put_policy(s3, pb, allow(pb, "s3:*", resource="", effect="Deny", Resource=everything(pb),
                             Condition={"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8",
                                                                         "::1/128"]}}))
    assert error_of(s3.get_object, Bucket=pb, Key="k")[:2] == (403, "AccessDenied")
    s3.delete_bucket_policy(Bucket=pb)
    assert s3.get_object(Bucket=pb, Key="k")["Body"].read() == b"v"


def test_deny_without_secure_transport(server: Server, s3: Any, pb: str) -> None:
    s3.put_object(Bucket=pb, Key="k", Body=b"v")
    put_policy(s3, pb, allow(pb, "s3:*", resource="", effect="Deny", Resource=everything(pb),
                             Sid="TLSOnly",
                             Condition={"Bool": {"aws:SecureTransport": "false"}}))
    assert error_of(s3.get_object, Bucket=pb, Key="k")[:2] == (403, "AccessDenied")
    assert error_of(s3.head_bucket, Bucket=pb)[0] == 403
    assert error_of(s3.delete_objects, Bucket=pb,
                    Delete={"Objects": [{"Key": "k"}]})[:2] == (403, "AccessDenied")
    assert error_of(s3.create_multipart_upload, Bucket=pb, Key="mp")[:2] == (403,
                                                                            "AccessDenied")
    assert anon(server, "GET", pb, "k").status == 403
    # only Get/Put/DeleteBucketPolicy escape the owner's own Deny (AWS's safeguard)
    assert error_of(s3.get_bucket_policy_status, Bucket=pb)[:2] == (403, "AccessDenied")
    assert "TLSOnly" in s3.get_bucket_policy(Bucket=pb)["Policy"]


def test_deny_by_prefix_on_listing(s3: Any, pb: str) -> None:
    for key in ("public/a", "private/b"):
        s3.put_object(Bucket=pb, Key=key, Body=b"x")
    put_policy(s3, pb, allow(pb, "s3:ListBucket", "", effect="Deny",
                             Condition={"StringNotLike": {"s3:prefix": "public/*"}}))
    listed = s3.list_objects_v2(Bucket=pb, Prefix="public/")
    assert [o["Key"] for o in listed["Contents"]] == ["public/a"]
    assert s3.list_objects(Bucket=pb, Prefix="public/x")["Prefix"] == "public/x"
    for prefix in (None, "private/", ""):
        kwargs = {} if prefix is None else {"Prefix": prefix}
        assert error_of(s3.list_objects_v2, Bucket=pb, **kwargs)[:2] == (403, "AccessDenied")
    assert s3.get_object(Bucket=pb, Key="private/b")["Body"].read() == b"x"  # not listing


def test_deny_wins_over_acl_grants(server: Server, s3: Any, pb: str, bob: User) -> None:
    s3.put_bucket_acl(Bucket=pb, ACL="public-read-write")
    s3.put_object(Bucket=pb, Key="open", Body=b"o", ACL="public-read")
    assert anon(server, "PUT", pb, "anon-1", body=b"a").status == 200
    assert bob.client.get_object(Bucket=pb, Key="open")["Body"].read() == b"o"
    put_policy(s3, pb, allow(pb, "s3:PutObject", effect="Deny"),
               allow(pb, effect="Deny", principal={"AWS": bob.access_key}))
    assert anon(server, "PUT", pb, "anon-2", body=b"a").status == 403
    assert error_of(s3.put_object, Bucket=pb, Key="own", Body=b"x")[:2] == (403,
                                                                           "AccessDenied")
    assert error_of(bob.client.get_object, Bucket=pb, Key="open")[:2] == (403, "AccessDenied")
    assert anon(server, "GET", pb, "open").status == 200  # the ACL still grants the rest
    assert s3.get_object(Bucket=pb, Key="open")["Body"].read() == b"o"


def test_bulk_delete_is_authorised_for_every_key_it_could_name(s3: Any, pb: str) -> None:
    for key in ("tmp/x", "keep/y"):
        s3.put_object(Bucket=pb, Key=key, Body=b"x")
    put_policy(s3, pb, allow(pb, "s3:DeleteObject", "/keep/*", effect="Deny"))
    # NOTE: the keys are in the body: a Deny that may hit some key refuses the whole request
    assert error_of(s3.delete_objects, Bucket=pb,
                    Delete={"Objects": [{"Key": "tmp/x"}]})[:2] == (403, "AccessDenied")
    s3.delete_object(Bucket=pb, Key="tmp/x")
    assert error_of(s3.delete_object, Bucket=pb, Key="keep/y")[:2] == (403, "AccessDenied")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=pb)["Contents"]] == ["keep/y"]


def test_copy_source_is_judged_by_its_own_bucket_policy(s3: Any, pb: str, bob: User) -> None:
    s3.put_object(Bucket=pb, Key="src", Body=b"payload")
    bob.client.create_bucket(Bucket=pb + "-bob")
    dest = pb + "-bob"
    source = {"Bucket": pb, "Key": "src"}
    assert error_of(bob.client.copy_object, Bucket=dest, Key="c", CopySource=source)[:2] == (
        403, "AccessDenied")
    put_policy(s3, pb, allow(pb, principal={"AWS": bob.id}))
    bob.client.copy_object(Bucket=dest, Key="c", CopySource=source)
    assert bob.client.get_object(Bucket=dest, Key="c")["Body"].read() == b"payload"
    # a policy on the destination does not open the source
    put_policy(bob.client, dest, allow(dest, ["s3:PutObject"], principal={"AWS": bob.id}))
    put_policy(s3, pb, allow(pb, effect="Deny", principal={"AWS": bob.id}))
    assert error_of(bob.client.copy_object, Bucket=dest, Key="d", CopySource=source)[:2] == (
        403, "AccessDenied")
    put_policy(s3, pb, allow(pb, effect="Deny"))
    assert error_of(s3.copy_object, Bucket=pb, Key="own", CopySource=source)[:2] == (
        403, "AccessDenied")


def test_post_uploads_follow_the_policy_and_block_public_acls(s3: Any, pb: str) -> None:
    import requests

    def post(key: str, **fields: str) -> int:
        form = s3.generate_presigned_post(pb, key, Fields=fields, Conditions=[
            {k: v} for k, v in fields.items()], ExpiresIn=300)
        resp = requests.post(form["url"], data=form["fields"], files={"file": ("f", b"x")},
                             timeout=60)
        return resp.status_code

    assert post("free/a") == 204
    put_policy(s3, pb, allow(pb, "s3:PutObject", "/locked/*", effect="Deny",
                             principal={"AWS": owner_id(s3)}))
    assert post("locked/a") == 403  # the form's signer is who the policy sees
    assert post("free/b") == 204
    s3.put_public_access_block(Bucket=pb, PublicAccessBlockConfiguration={
        **PAB_ALL_OFF, "BlockPublicAcls": True})
    assert post("free/c", acl="public-read") == 403
    assert post("free/d", acl="private") == 204
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=pb)["Contents"]] == [
        "free/a", "free/b", "free/d"]


def test_deny_presigned_urls_by_auth_type(s3: Any, pb: str) -> None:
    s3.put_object(Bucket=pb, Key="k", Body=b"v")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": pb, "Key": "k"})
    with urllib.request.urlopen(url) as resp:
        assert resp.read() == b"v"
    put_policy(s3, pb, allow(pb, effect="Deny", Condition={
        "StringEquals": {"s3:authType": "REST-QUERY-STRING"}}))
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(url)
    assert exc.value.code == 403
    assert s3.get_object(Bucket=pb, Key="k")["Body"].read() == b"v"


# ------------------------------------------------------------------------ MalformedPolicy


@pytest.mark.parametrize("make,message", [
    (lambda b: "not json", "Policies must be valid JSON and the first byte must be '{'"),
    (lambda b: '{"Statement": [', "This policy contains invalid Json"),
    (lambda b: json.dumps({"Version": "2012-10-17"}), "Missing required field Statement"),
    (lambda b: json.dumps({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                          "Resource": f"arn:aws:s3:::{b}/*"}]}),
     "Missing required field Principal"),
    (lambda b: json.dumps({"Statement": [allow("other-bucket")]}),
     "Policy has invalid resource"),
    (lambda b: json.dumps({"Statement": [allow(b, "s3:GetObjects")]}),
     "Policy has invalid action"),
    (lambda b: json.dumps({"Statement": [allow(b, "s3:ListBucket")]}),
     "Action does not apply to any resource(s) in statement"),
    (lambda b: json.dumps({"Statement": [allow(b, principal="alice")]}),
     "Invalid principal in policy"),
    (lambda b: json.dumps({"Statement": [allow(b, Condition={"StringEqualz": {
        "aws:username": "x"}})]}), "Invalid Condition type : StringEqualz"),
    (lambda b: json.dumps({"Statement": [allow(b, Condition={"IpAddress": {
        "aws:SourceIp": "300.1.1.1"}})]}), "Invalid IP address in Conditions"),
    (lambda b: json.dumps({"Version": "2001-01-01", "Statement": [allow(b)]}),
     "The policy must contain a valid version string"),
    (lambda b: json.dumps({"Statement": [allow(b, Sid="x" * 21000)]}),
     "Policy exceeds the maximum allowed document size."),
])
def test_malformed_policies(s3: Any, pb: str, make: Any, message: str) -> None:
    assert error_of(s3.put_bucket_policy, Bucket=pb, Policy=make(pb)) == (
        400, "MalformedPolicy", message)
    assert error_of(s3.get_bucket_policy, Bucket=pb)[:2] == (404, "NoSuchBucketPolicy")


# ------------------------------------------------------------------------ policy status


@pytest.mark.parametrize("statement,public", [
    (lambda b, me: allow(b), True),
    (lambda b, me: allow(b, principal={"AWS": "*"}, Condition={
        "StringLike": {"aws:Referer": "https://example.com/*"}}), True),
    (lambda b, me: allow(b, principal={"AWS": me}), False),
    (lambda b, me: allow(b, Condition={"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}), False),
    (lambda b, me: allow(b, Condition={"IpAddress": {"aws:SourceIp": "0.0.0.0/1"}}), True),
    (lambda b, me: allow(b, effect="Deny"), False),
])
def test_bucket_policy_status(s3: Any, pb: str, statement: Any, public: bool) -> None:
    assert error_of(s3.get_bucket_policy_status, Bucket=pb)[:2] == (404, "NoSuchBucketPolicy")
    put_policy(s3, pb, statement(pb, owner_id(s3)))
    assert s3.get_bucket_policy_status(Bucket=pb)["PolicyStatus"] == {"IsPublic": public}


# ------------------------------------------------------------------------ public access block


def test_public_access_block_round_trip(s3: Any, pb: str) -> None:
    assert error_of(s3.get_public_access_block, Bucket=pb) == (
        404, "NoSuchPublicAccessBlockConfiguration",
        "The public access block configuration was not found")
    every = {name: True for name in PAB_ALL_OFF}
    s3.put_public_access_block(Bucket=pb, PublicAccessBlockConfiguration=every)
    assert s3.get_public_access_block(Bucket=pb)["PublicAccessBlockConfiguration"] == every
    s3.put_public_access_block(Bucket=pb, PublicAccessBlockConfiguration={
        "RestrictPublicBuckets": True})  # a flag left out is false
    assert s3.get_public_access_block(Bucket=pb)["PublicAccessBlockConfiguration"] == {
        **PAB_ALL_OFF, "RestrictPublicBuckets": True}
    s3.delete_public_access_block(Bucket=pb)
    assert error_of(s3.get_public_access_block, Bucket=pb)[1] == (
        "NoSuchPublicAccessBlockConfiguration")


def test_block_public_acls(server: Server, s3: Any, pb: str, bob: User) -> None:
    s3.put_object(Bucket=pb, Key="already", Body=b"a", ACL="public-read")
    s3.put_public_access_block(Bucket=pb, PublicAccessBlockConfiguration={
        **PAB_ALL_OFF, "BlockPublicAcls": True})
    me = owner_id(s3)
    public_body = {"Owner": {"ID": me}, "Grants": [
        {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"}]}
    for call, kwargs in [
            (s3.put_bucket_acl, {"ACL": "public-read"}),
            (s3.put_bucket_acl, {"ACL": "authenticated-read"}),
            (s3.put_bucket_acl, {"GrantRead": f'uri="{ALL_USERS}"'}),
            (s3.put_bucket_acl, {"AccessControlPolicy": public_body}),
            (s3.put_object, {"Key": "new", "Body": b"n", "ACL": "public-read"}),
            (s3.put_object_acl, {"Key": "already", "ACL": "public-read-write"}),
            (s3.put_object_acl, {"Key": "already", "AccessControlPolicy": public_body}),
            (s3.create_multipart_upload, {"Key": "mp", "ACL": "public-read"}),
            (s3.copy_object, {"Key": "copy", "ACL": "public-read",
                              "CopySource": {"Bucket": pb, "Key": "already"}})]:
        assert error_of(call, Bucket=pb, **kwargs)[:2] == (403, "AccessDenied"), kwargs
    with pytest.raises(botocore.exceptions.ClientError):
        s3.head_object(Bucket=pb, Key="new")  # nothing was written
    private_body = {"Owner": {"ID": me}, "Grants": [
        {"Grantee": {"Type": "CanonicalUser", "ID": bob.id}, "Permission": "READ"}]}
    s3.put_object_acl(Bucket=pb, Key="already", AccessControlPolicy=private_body)
    s3.put_bucket_acl(Bucket=pb, ACL="private")
    s3.put_object(Bucket=pb, Key="fine", Body=b"f", ACL="bucket-owner-full-control")
    s3.put_object(Bucket=pb, Key="granted", Body=b"g", GrantRead=f'id="{bob.id}"')
    assert bob.client.get_object(Bucket=pb, Key="granted")["Body"].read() == b"g"


def test_block_public_acls_leaves_existing_acls_alone(server: Server, s3: Any,
                                                      pb: str) -> None:
    s3.put_object(Bucket=pb, Key="already", Body=b"a", ACL="public-read")
    s3.put_public_access_block(Bucket=pb, PublicAccessBlockConfiguration={
        **PAB_ALL_OFF, "BlockPublicAcls": True})
    assert anon(server, "GET", pb, "already").status == 200


def test_ignore_public_acls(server: Server, s3: Any, pb: str) -> None:
    s3.put_bucket_acl(Bucket=pb, ACL="public-read")
    s3.put_object(Bucket=pb, Key="open", Body=b"o", ACL="public-read")
    assert anon(server, "GET", pb, "open").status == 200
    assert anon(server, "GET", pb).status == 200
    s3.put_public_access_block(Bucket=pb, PublicAccessBlockConfiguration={
        **PAB_ALL_OFF, "IgnorePublicAcls": True})
    assert anon(server, "GET", pb, "open").status == 403
    assert anon(server, "GET", pb).status == 403
    assert anon(server, "GET", pb, "missing").status == 403
    grants = s3.get_object_acl(Bucket=pb, Key="open")["Grants"]
    assert any(g["Grantee"].get("URI") == ALL_USERS for g in grants)  # kept, just ignored
    s3.put_object(Bucket=pb, Key="newer", Body=b"n", ACL="public-read")  # still allowed
    s3.delete_public_access_block(Bucket=pb)
    assert anon(server, "GET", pb, "open").status == 200
    assert anon(server, "GET", pb, "newer").status == 200


def test_block_public_policy(server: Server, s3: Any, pb: str, bob: User) -> None:
    s3.put_object(Bucket=pb, Key="k", Body=b"v")
    put_policy(s3, pb, allow(pb))  # public before the block: it keeps working
    s3.put_public_access_block(Bucket=pb, PublicAccessBlockConfiguration={
        **PAB_ALL_OFF, "BlockPublicPolicy": True})
    assert anon(server, "GET", pb, "k").status == 200
    public = json.dumps({"Statement": [allow(pb, Sid="Another")]})
    assert error_of(s3.put_bucket_policy, Bucket=pb, Policy=public)[:2] == (403,
                                                                           "AccessDenied")
    put_policy(s3, pb, allow(pb, principal={"AWS": bob.id}))  # not public: accepted
    put_policy(s3, pb, allow(pb, Condition={"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}))
    assert anon(server, "GET", pb, "k").status == 200


def test_restrict_public_buckets(server: Server, s3: Any, pb: str, bob: User) -> None:
    s3.put_object(Bucket=pb, Key="k", Body=b"v")
    put_policy(s3, pb, allow(pb), allow(pb, "s3:PutObject", principal={"AWS": bob.id}))
    assert anon(server, "GET", pb, "k").status == 200
    assert bob.client.get_object(Bucket=pb, Key="k")["Body"].read() == b"v"
    s3.put_public_access_block(Bucket=pb, PublicAccessBlockConfiguration={
        **PAB_ALL_OFF, "RestrictPublicBuckets": True})
    assert anon(server, "GET", pb, "k").status == 403
    assert error_of(bob.client.get_object, Bucket=pb, Key="k")[:2] == (403, "AccessDenied")
    # the policy is public, so even bob's named grant is cross-account access: blocked
    assert error_of(bob.client.put_object, Bucket=pb, Key="b", Body=b"b")[:2] == (
        403, "AccessDenied")
    assert s3.get_object(Bucket=pb, Key="k")["Body"].read() == b"v"
    put_policy(s3, pb, allow(pb, principal={"AWS": bob.id}))  # not public: no restriction
    assert bob.client.get_object(Bucket=pb, Key="k")["Body"].read() == b"v"


# ------------------------------------------------------------------------ lifetime


def test_policy_is_dropped_with_its_bucket(s3: Any) -> None:
    s3.create_bucket(Bucket="policy-lifetime")
    put_policy(s3, "policy-lifetime", allow("policy-lifetime"))
    s3.put_public_access_block(Bucket="policy-lifetime", PublicAccessBlockConfiguration={
        **PAB_ALL_OFF, "BlockPublicAcls": True})
    s3.delete_bucket(Bucket="policy-lifetime")
    s3.create_bucket(Bucket="policy-lifetime")
    assert error_of(s3.get_bucket_policy, Bucket="policy-lifetime")[1] == "NoSuchBucketPolicy"
    assert error_of(s3.get_public_access_block, Bucket="policy-lifetime")[1] == (
        "NoSuchPublicAccessBlockConfiguration")


def test_policy_and_block_survive_a_restart(tmp_path: Path) -> None:
    srv = Server(tmp_path / "restart").start()
    try:
        client = boto3_client(srv.endpoint)
        client.create_bucket(Bucket="durable")
        client.put_object(Bucket="durable", Key="k", Body=b"v")
        text = put_policy(client, "durable", allow("durable"))
        client.put_public_access_block(Bucket="durable", PublicAccessBlockConfiguration={
            **PAB_ALL_OFF, "BlockPublicPolicy": True})
        srv.stop()
        srv.start()
        client = boto3_client(srv.endpoint)
        assert client.get_bucket_policy(Bucket="durable")["Policy"] == text
        assert client.get_public_access_block(Bucket="durable")[
            "PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
        assert anon(srv, "GET", "durable", "k").status == 200
    finally:
        srv.stop()
