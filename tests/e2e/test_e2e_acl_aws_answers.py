"""ACL answers as S3 gives them (docs/decisions.md): grant order, ids that are not canonical,
a canned ACL with grant headers, and the arguments S3's errors name. S3's answers: the
AWS-recorded snapshot of LocalStack's TestS3::test_s3_bucket_acl(_exceptions), and
versity/versitygw#1384."""

from __future__ import annotations

from typing import Any

from lxml import etree
from support.signed import send

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
FAKE_GROUP = "http://acs.amazonaws.com/groups/s3/FakeGroup"


def grants(acl: dict[str, Any]) -> list[tuple[str, str]]:
    return [(g["Grantee"].get("ID") or g["Grantee"]["URI"], g["Permission"])
            for g in acl["Grants"]]


def error(resp: Any) -> tuple[int, str | None, str | None, str | None, str | None]:
    root = etree.fromstring(resp.body)
    return (resp.status, *(root.findtext(n) for n in
                           ("Code", "Message", "ArgumentName", "ArgumentValue")))


def policy(owner: str, grantee: str, permission: str = "READ") -> bytes:
    return (f'<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Owner><ID>{owner}</ID></Owner><AccessControlList><Grant>"
            f"<Grantee {XSI} {grantee}</Grantee><Permission>{permission}</Permission>"
            f"</Grant></AccessControlList></AccessControlPolicy>").encode()


def test_grant_order_as_s3_lists_it(s3: Any, bucket: str) -> None:
    me = s3.list_buckets()["Owner"]["ID"]
    s3.put_bucket_acl(Bucket=bucket, ACL="log-delivery-write")  # the owner first
    assert grants(s3.get_bucket_acl(Bucket=bucket)) == [
        (me, "FULL_CONTROL"), (LOG_DELIVERY, "WRITE"), (LOG_DELIVERY, "READ_ACP")]
    s3.put_bucket_acl(Bucket=bucket, GrantRead=f'uri="{LOG_DELIVERY}", id="{me}"')
    assert grants(s3.get_bucket_acl(Bucket=bucket)) == [  # only the listed grants
        (LOG_DELIVERY, "READ"), (me, "READ")]
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.put_object_acl(Bucket=bucket, Key="k", AccessControlPolicy={
        "Owner": {"ID": me}, "Grants": [
            {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"},
            {"Grantee": {"Type": "CanonicalUser", "ID": me}, "Permission": "FULL_CONTROL"}]})
    assert grants(s3.get_object_acl(Bucket=bucket, Key="k")) == [  # as the document has it
        (ALL_USERS, "READ"), (me, "FULL_CONTROL")]


def test_grant_header_errors(server: Any, s3: Any, bucket: str) -> None:
    path = f"/{bucket}?acl"
    cases = [
        ({"x-amz-acl": "private", "x-amz-grant-read": f'uri="{LOG_DELIVERY}"'},
         (400, "InvalidRequest", "Specifying both Canned ACLs and Header Grants is not allowed",
          None, None)),
        ({"x-amz-grant-write": 'id="wrong-id"'},
         (400, "InvalidArgument", "Invalid id", "id", "wrong-id")),
        ({"x-amz-grant-write": f'uri="{FAKE_GROUP}"'},
         (400, "InvalidArgument", "Invalid group uri", "uri", FAKE_GROUP)),
        ({"x-amz-grant-write": 'fakekey="1234"'},
         (400, "InvalidArgument", "Argument format not recognized", "x-amz-grant-write",
          'fakekey="1234"')),
    ]
    for headers, expected in cases:
        assert error(send(server.endpoint, "PUT", path, headers=headers)) == expected, headers
    me = s3.list_buckets()["Owner"]["ID"]
    assert grants(s3.get_bucket_acl(Bucket=bucket)) == [(me, "FULL_CONTROL")]  # unchanged


def test_policy_errors(server: Any, s3: Any, bucket: str) -> None:
    me = s3.list_buckets()["Owner"]["ID"]
    path = f"/{bucket}?acl"
    cases = [
        (policy(me, f'xsi:type="Group"><URI>{FAKE_GROUP}</URI>'),
         (400, "InvalidArgument", "Invalid group uri", "Group/URI", FAKE_GROUP)),
        (policy(me, 'xsi:type="CanonicalUser"><ID>wrong-id</ID>'),
         (400, "InvalidArgument", "Invalid id", "CanonicalUser/ID", "wrong-id")),
        (policy("wrong-id", f'xsi:type="CanonicalUser"><ID>{me}</ID>'),
         (400, "InvalidArgument", "Invalid id", "CanonicalUser/ID", "wrong-id")),
    ]
    for body, expected in cases:
        assert error(send(server.endpoint, "PUT", path, body=body)) == expected, body
    assert grants(s3.get_bucket_acl(Bucket=bucket)) == [(me, "FULL_CONTROL")]  # unchanged
