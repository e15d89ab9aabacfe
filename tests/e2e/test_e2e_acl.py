"""ACLs end to end (s3-api.md §13): canned ACLs, grant headers, AccessControlPolicy bodies,
the input-mode errors, anonymous access and a second real user made with the CLI."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import botocore.exceptions
import pytest
from lxml import etree
from support.clients import boto3_client
from support.server import Server
from support.signed import RawResponse, send

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"


@dataclass(frozen=True)
class User:
    access_key: str
    secret_key: str
    client: Any

    @property
    def id(self) -> str:
        return hashlib.sha256(self.access_key.encode()).hexdigest()


def add_user(server: Server, name: str) -> User:
    """Create a credential with the real ``bleepstore user add`` (fresh key every time:
    the server caches lookups, unknown keys included)."""
    access = "AK" + name.upper() + secrets.token_hex(6).upper()
    secret = secrets.token_urlsafe(30)
    exe = shutil.which("bleepstore")
    cmd = [exe] if exe else [sys.executable, "-m", "bleepstore.cli"]
    env = {**os.environ, "BLEEPSTORE_CONFIG": str(server.config_path)}
    # NOTE: "--opt=value": a urlsafe secret may start with "-", which argparse would
    # otherwise take for an option.
    subprocess.run([*cmd, "user", "add", f"--access-key={access}", f"--secret-key={secret}",
                    f"--display-name={name}"], env=env, check=True, capture_output=True)
    return User(access, secret, boto3_client(server.endpoint, access, secret))


def remove_user(server: Server, user: User) -> None:
    """Empty and drop the user's buckets, then the credential, so the per-test reset
    (which visits every credential) does not grow with each test."""
    c = user.client
    for b in c.list_buckets()["Buckets"]:
        keys = [{"Key": o["Key"]} for o in c.list_objects_v2(Bucket=b["Name"]).get(
            "Contents", [])]
        if keys:
            c.delete_objects(Bucket=b["Name"], Delete={"Objects": keys})
        c.delete_bucket(Bucket=b["Name"])
    with sqlite3.connect(server.db_path) as conn:
        conn.execute("DELETE FROM credentials WHERE access_key_id = ?", (user.access_key,))


@pytest.fixture
def bob(server: Server, s3: Any) -> Iterator[User]:
    user = add_user(server, "bob")
    yield user
    remove_user(server, user)


def code_of(exc: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> tuple[int, str]:
    r = exc.value.response
    return int(r["ResponseMetadata"]["HTTPStatusCode"]), str(r["Error"]["Code"])


def fails(call: Any, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        call(**kwargs)
    return code_of(exc)


def grant_set(acl: dict[str, Any]) -> set[tuple[str, str]]:
    return {(g["Grantee"].get("ID") or g["Grantee"].get("URI"), g["Permission"])
            for g in acl["Grants"]}


def anon(server: Server, method: str, target: str, body: bytes = b"") -> RawResponse:
    return send(server.endpoint, method, target, body=body, sign=False)


def raw_code(resp: RawResponse) -> tuple[int, str | None]:
    code = etree.fromstring(resp.body).findtext("Code") if resp.body else None
    return resp.status, code


# ------------------------------------------------------------------ canned and rendering


@pytest.mark.parametrize("canned,extra", [
    ("private", set()),
    ("public-read", {(ALL_USERS, "READ")}),
    ("public-read-write", {(ALL_USERS, "READ"), (ALL_USERS, "WRITE")}),
    ("authenticated-read", {(AUTH_USERS, "READ")}),
    ("log-delivery-write", {(LOG_DELIVERY, "WRITE"), (LOG_DELIVERY, "READ_ACP")}),
])
def test_canned_bucket_acls(s3: Any, canned: str, extra: set[tuple[str, str]]) -> None:
    s3.create_bucket(Bucket="canned-acl", ACL=canned)
    me = s3.list_buckets()["Owner"]
    acl = s3.get_bucket_acl(Bucket="canned-acl")
    assert acl["Owner"] == me
    assert grant_set(acl) == {(me["ID"], "FULL_CONTROL")} | extra
    s3.put_bucket_acl(Bucket="canned-acl", ACL="private")
    assert grant_set(s3.get_bucket_acl(Bucket="canned-acl")) == {(me["ID"], "FULL_CONTROL")}


def test_acl_xml_document_shape(server: Server, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read")
    resp = send(server.endpoint, "GET", f"/{bucket}/k?acl")
    assert resp.status == 200 and resp.headers["content-type"] == "application/xml"
    root = etree.fromstring(resp.body)
    assert root.tag == NS + "AccessControlPolicy"
    assert [c.tag.replace(NS, "") for c in root] == ["Owner", "AccessControlList"]
    owner_grant, group_grant = root.findall(f"{NS}AccessControlList/{NS}Grant")
    user = owner_grant.find(NS + "Grantee")
    assert user.get(XSI_TYPE) == "CanonicalUser"
    assert [c.tag.replace(NS, "") for c in user] == ["ID", "DisplayName"]
    assert owner_grant.findtext(NS + "Permission") == "FULL_CONTROL"
    group = group_grant.find(NS + "Grantee")
    assert group.get(XSI_TYPE) == "Group" and group.findtext(NS + "URI") == ALL_USERS
    assert group_grant.findtext(NS + "Permission") == "READ"


def test_acls_set_at_put_object_and_default_private(s3: Any, bucket: str) -> None:
    me = s3.list_buckets()["Owner"]["ID"]
    s3.put_object(Bucket=bucket, Key="default", Body=b"1")
    assert grant_set(s3.get_object_acl(Bucket=bucket, Key="default")) == {(me, "FULL_CONTROL")}
    s3.put_object(Bucket=bucket, Key="auth", Body=b"2", ACL="authenticated-read")
    assert grant_set(s3.get_object_acl(Bucket=bucket, Key="auth")) == {
        (me, "FULL_CONTROL"), (AUTH_USERS, "READ")}
    s3.put_object(Bucket=bucket, Key="grants", Body=b"3", GrantRead=f'uri="{ALL_USERS}"',
                  GrantFullControl=f'id="{me}"')
    assert grant_set(s3.get_object_acl(Bucket=bucket, Key="grants")) == {
        (me, "FULL_CONTROL"), (ALL_USERS, "READ")}


# ------------------------------------------------------------------ input modes and errors


def test_grant_headers_give_exactly_the_listed_grants(s3: Any, bob: User) -> None:
    s3.create_bucket(Bucket="grant-hdr", GrantRead=f'id="{bob.id}"',
                     GrantWriteACP=f'uri="{AUTH_USERS}"')
    acl = s3.get_bucket_acl(Bucket="grant-hdr")
    assert grant_set(acl) == {(bob.id, "READ"), (AUTH_USERS, "WRITE_ACP")}  # owner not added
    bob_grant = next(g for g in acl["Grants"] if g["Grantee"].get("ID") == bob.id)
    assert bob_grant["Grantee"]["DisplayName"] == "bob"  # filled in for known ids
    s3.list_objects_v2(Bucket="grant-hdr")  # the owner keeps every right anyway
    s3.put_bucket_acl(Bucket="grant-hdr", GrantFullControl=f'id="{bob.id}", uri="{ALL_USERS}"')
    assert grant_set(s3.get_bucket_acl(Bucket="grant-hdr")) == {
        (bob.id, "FULL_CONTROL"), (ALL_USERS, "FULL_CONTROL")}


def test_access_control_policy_body(s3: Any, bucket: str, bob: User) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    me = s3.get_object_acl(Bucket=bucket, Key="k")["Owner"]
    policy = {"Owner": {"ID": me["ID"]}, "Grants": [
        {"Grantee": {"Type": "CanonicalUser", "ID": bob.id, "DisplayName": "forged"},
         "Permission": "READ"},
        {"Grantee": {"Type": "Group", "URI": AUTH_USERS}, "Permission": "READ_ACP"}]}
    s3.put_object_acl(Bucket=bucket, Key="k", AccessControlPolicy=policy)
    acl = s3.get_object_acl(Bucket=bucket, Key="k")
    assert acl["Owner"] == me
    assert [(g["Grantee"].get("ID") or g["Grantee"]["URI"], g["Permission"])
            for g in acl["Grants"]] == [(bob.id, "READ"), (AUTH_USERS, "READ_ACP")]
    assert acl["Grants"][0]["Grantee"]["DisplayName"] == "bob"  # never the forged name
    assert bob.client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy=policy)
    assert grant_set(s3.get_bucket_acl(Bucket=bucket)) == {(bob.id, "READ"),
                                                           (AUTH_USERS, "READ_ACP")}
    other = {"Owner": {"ID": bob.id}, "Grants": policy["Grants"]}
    assert fails(s3.put_bucket_acl, Bucket=bucket, AccessControlPolicy=other) == (
        403, "AccessDenied")


def _policy_xml(owner: str, grantee: str) -> bytes:
    return (f'<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Owner><ID>{owner}</ID></Owner><AccessControlList><Grant>{grantee}"
            f"<Permission>READ</Permission></Grant></AccessControlList>"
            f"</AccessControlPolicy>").encode()


XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


@pytest.mark.parametrize("headers,body,expected", [
    ({"x-amz-acl": "private", "x-amz-grant-read": f'uri="{ALL_USERS}"'}, None,
     (400, "InvalidRequest")),
    ({"x-amz-acl": "public-read"}, "policy", (400, "UnexpectedContent")),
    ({"x-amz-grant-read": f'uri="{ALL_USERS}"'}, "policy", (400, "UnexpectedContent")),
    ({}, None, (400, "MissingSecurityHeader")),
    ({"x-amz-acl": "world-readable"}, None, (400, "InvalidArgument")),
    ({"x-amz-grant-read": 'emailAddress="a@example.com"'}, None,
     (400, "UnresolvableGrantByEmailAddress")),
    ({"x-amz-grant-read": 'uri="http://example.com/group"'}, None, (400, "InvalidArgument")),
    ({"x-amz-grant-read": "id=not-hex"}, None, (400, "InvalidArgument")),
    ({}, b"<AccessControlPolicy><Owner>", (400, "MalformedACLError")),
    ({}, b"<Policy/>", (400, "MalformedACLError")),
    ({}, "no-xsi-type", (400, "MalformedACLError")),
    ({}, "bad-permission", (400, "MalformedACLError")),
    ({}, "email-grantee", (400, "UnresolvableGrantByEmailAddress")),
])
@pytest.mark.parametrize("target", ["bucket", "object"])
def test_acl_input_mode_errors(server: Server, s3: Any, bucket: str, target: str,
                               headers: dict[str, str], body: Any,
                               expected: tuple[int, str]) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    me = s3.list_buckets()["Owner"]["ID"]
    user = f'<Grantee {XSI} xsi:type="CanonicalUser"><ID>{me}</ID></Grantee>'
    payload = {
        None: b"", "policy": _policy_xml(me, user),
        "no-xsi-type": _policy_xml(me, f"<Grantee><ID>{me}</ID></Grantee>"),
        "bad-permission": _policy_xml(me, user).replace(b">READ<", b">READ_ALL<"),
        "email-grantee": _policy_xml(me, f'<Grantee {XSI} xsi:type="AmazonCustomerByEmail">'
                                         "<EmailAddress>a@example.com</EmailAddress></Grantee>"),
    }.get(body, body)
    path = f"/{bucket}?acl" if target == "bucket" else f"/{bucket}/k?acl"
    resp = send(server.endpoint, "PUT", path, body=payload, headers=headers)
    assert raw_code(resp) == expected, resp.body
    getter = (s3.get_bucket_acl(Bucket=bucket) if target == "bucket"
              else s3.get_object_acl(Bucket=bucket, Key="k"))
    assert grant_set(getter) == {(me, "FULL_CONTROL")}  # unchanged


def test_create_and_put_object_with_canned_and_grant_conflict(s3: Any, bucket: str) -> None:
    assert fails(s3.create_bucket, Bucket="conflict-acl", ACL="private",
                 GrantRead=f'uri="{ALL_USERS}"') == (400, "InvalidRequest")
    assert fails(s3.put_object, Bucket=bucket, Key="c", Body=b"", ACL="public-read",
                 GrantRead=f'uri="{ALL_USERS}"') == (400, "InvalidRequest")
    assert fails(s3.put_object, Bucket=bucket, Key="c", Body=b"", ACL="nope") == (
        400, "InvalidArgument")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert "conflict-acl" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_put_object_acl_on_missing_key(s3: Any, bucket: str) -> None:
    assert fails(s3.put_object_acl, Bucket=bucket, Key="ghost", ACL="public-read") == (
        404, "NoSuchKey")
    assert fails(s3.get_object_acl, Bucket=bucket, Key="ghost") == (404, "NoSuchKey")


# ------------------------------------------------------------------ anonymous access


def test_anonymous_access_follows_canned_acls(server: Server, s3: Any) -> None:
    for name, canned in (("anon-private", "private"), ("anon-read", "public-read"),
                         ("anon-rw", "public-read-write")):
        s3.create_bucket(Bucket=name, ACL=canned)
        s3.put_object(Bucket=name, Key="private.txt", Body=b"secret")
        s3.put_object(Bucket=name, Key="public.txt", Body=b"shared", ACL="public-read")
    assert raw_code(anon(server, "GET", "/")) == (403, "AccessDenied")
    for name in ("anon-private", "anon-read", "anon-rw"):
        assert raw_code(anon(server, "GET", f"/{name}/private.txt")) == (403, "AccessDenied")
        got = anon(server, "GET", f"/{name}/public.txt")
        assert (got.status, got.body) == (200, b"shared")
        assert anon(server, "HEAD", f"/{name}/public.txt").headers["content-length"] == "6"
        assert raw_code(anon(server, "GET", f"/{name}?acl")) == (403, "AccessDenied")
        assert raw_code(anon(server, "GET", f"/{name}/public.txt?acl")) == (403, "AccessDenied")
    assert raw_code(anon(server, "GET", "/anon-private?list-type=2")) == (403, "AccessDenied")
    assert raw_code(anon(server, "GET", "/anon-private/missing")) == (403, "AccessDenied")
    assert raw_code(anon(server, "HEAD", "/anon-private")) == (403, None)
    assert anon(server, "HEAD", "/anon-read").status == 200
    listed = anon(server, "GET", "/anon-read?list-type=2")
    assert listed.status == 200
    assert [k.text for k in etree.fromstring(listed.body).iter(NS + "Key")] == [
        "private.txt", "public.txt"]
    assert raw_code(anon(server, "GET", "/anon-read/missing")) == (404, "NoSuchKey")
    assert raw_code(anon(server, "PUT", "/anon-read/new", b"x")) == (403, "AccessDenied")
    assert raw_code(anon(server, "DELETE", "/anon-read/public.txt")) == (403, "AccessDenied")
    assert raw_code(anon(server, "PUT", "/anon-private/new", b"x")) == (403, "AccessDenied")
    put = anon(server, "PUT", "/anon-rw/dropped", b"anonymous bytes")
    assert put.status == 200
    assert put.headers["etag"] == '"' + hashlib.md5(b"anonymous bytes").hexdigest() + '"'
    me = s3.list_buckets()["Owner"]["ID"]
    assert s3.get_object_acl(Bucket="anon-rw", Key="dropped")["Owner"]["ID"] == me
    assert s3.get_object(Bucket="anon-rw", Key="dropped")["Body"].read() == b"anonymous bytes"
    assert anon(server, "DELETE", "/anon-rw/private.txt").status == 204
    assert "private.txt" not in [o["Key"] for o in s3.list_objects_v2(Bucket="anon-rw")[
        "Contents"]]
    assert raw_code(anon(server, "PUT", "/anon-rw?acl", b"")) == (403, "AccessDenied")
    assert raw_code(anon(server, "DELETE", "/anon-rw")) == (403, "AccessDenied")


# ------------------------------------------------------------------ two users


def test_second_user_needs_grants(server: Server, s3: Any, bucket: str, bob: User) -> None:
    b = bob.client
    s3.put_object(Bucket=bucket, Key="doc", Body=b"alice's")
    assert fails(b.get_object, Bucket=bucket, Key="doc") == (403, "AccessDenied")
    assert fails(b.head_object, Bucket=bucket, Key="doc")[0] == 403
    assert fails(b.get_object, Bucket=bucket, Key="missing") == (403, "AccessDenied")
    assert fails(b.list_objects_v2, Bucket=bucket) == (403, "AccessDenied")
    assert fails(b.put_object, Bucket=bucket, Key="x", Body=b"") == (403, "AccessDenied")
    assert fails(b.get_object_acl, Bucket=bucket, Key="doc") == (403, "AccessDenied")
    assert fails(b.delete_bucket, Bucket=bucket) == (403, "AccessDenied")
    s3.put_object_acl(Bucket=bucket, Key="doc", GrantRead=f'id="{bob.id}"')
    assert b.get_object(Bucket=bucket, Key="doc")["Body"].read() == b"alice's"
    assert fails(b.get_object_acl, Bucket=bucket, Key="doc") == (403, "AccessDenied")
    assert fails(b.get_object, Bucket=bucket, Key="missing") == (403, "AccessDenied")
    s3.put_bucket_acl(Bucket=bucket, GrantRead=f'id="{bob.id}"')
    assert [o["Key"] for o in b.list_objects_v2(Bucket=bucket)["Contents"]] == ["doc"]
    assert fails(b.get_object, Bucket=bucket, Key="missing") == (404, "NoSuchKey")
    assert fails(b.put_object, Bucket=bucket, Key="x", Body=b"") == (403, "AccessDenied")
    s3.put_bucket_acl(Bucket=bucket, GrantWrite=f'id="{bob.id}"', GrantRead=f'id="{bob.id}"')
    b.put_object(Bucket=bucket, Key="by-bob", Body=b"bob's", ACL="bucket-owner-read")
    me = s3.list_buckets()["Owner"]["ID"]
    acl = b.get_object_acl(Bucket=bucket, Key="by-bob")
    assert acl["Owner"]["ID"] == bob.id
    assert grant_set(acl) == {(bob.id, "FULL_CONTROL"), (me, "READ")}
    assert s3.get_object(Bucket=bucket, Key="by-bob")["Body"].read() == b"bob's"
    assert fails(s3.get_object_acl, Bucket=bucket, Key="by-bob") == (403, "AccessDenied")


def test_list_buckets_is_per_user(s3: Any, bob: User) -> None:
    s3.create_bucket(Bucket="alice-one")
    bob.client.create_bucket(Bucket="bob-one")
    assert fails(bob.client.create_bucket, Bucket="alice-one") == (409, "BucketAlreadyExists")
    mine = bob.client.list_buckets()
    assert [x["Name"] for x in mine["Buckets"]] == ["bob-one"]
    assert mine["Owner"] == {"ID": bob.id, "DisplayName": "bob"}
    assert "bob-one" not in [x["Name"] for x in s3.list_buckets()["Buckets"]]
    assert fails(s3.list_objects_v2, Bucket="bob-one") == (403, "AccessDenied")


def test_authenticated_read_lets_any_signed_user_read(server: Server, s3: Any, bucket: str,
                                                      bob: User) -> None:
    s3.put_object(Bucket=bucket, Key="members", Body=b"m", ACL="authenticated-read")
    assert bob.client.get_object(Bucket=bucket, Key="members")["Body"].read() == b"m"
    assert raw_code(anon(server, "GET", f"/{bucket}/members")) == (403, "AccessDenied")
    s3.put_bucket_acl(Bucket=bucket, ACL="authenticated-read")
    assert bob.client.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    assert raw_code(anon(server, "GET", f"/{bucket}")) == (403, "AccessDenied")


def test_copy_needs_read_on_source_and_write_on_destination(s3: Any, bucket: str,
                                                           bob: User) -> None:
    b = bob.client
    b.create_bucket(Bucket="bob-dest")
    s3.put_object(Bucket=bucket, Key="private", Body=b"alice only")
    src = {"Bucket": bucket, "Key": "private"}
    assert fails(b.copy_object, Bucket="bob-dest", Key="k", CopySource=src) == (
        403, "AccessDenied")
    assert fails(b.copy_object, Bucket="bob-dest", Key="k",
                 CopySource={"Bucket": bucket, "Key": "missing"}) == (403, "AccessDenied")
    assert fails(b.copy_object, Bucket=bucket, Key="k", CopySource={
        "Bucket": "bob-dest", "Key": "x"})[0] == 403  # no WRITE on alice's bucket
    s3.put_object_acl(Bucket=bucket, Key="private", GrantRead=f'id="{bob.id}"')
    b.copy_object(Bucket="bob-dest", Key="k", CopySource=src)
    assert b.get_object(Bucket="bob-dest", Key="k")["Body"].read() == b"alice only"
    assert b.get_object_acl(Bucket="bob-dest", Key="k")["Owner"]["ID"] == bob.id
    assert fails(s3.get_object, Bucket="bob-dest", Key="k") == (403, "AccessDenied")
