"""ACL inputs as S3 answers them (docs/decisions.md): grant order, non-canonical ids,
canned ACL with grant headers, and the arguments S3's errors name.

S3's answers pinned here were recorded against AWS in LocalStack's snapshot
tests/aws/services/s3/test_s3.snapshot.json (TestS3::test_s3_bucket_acl and
test_s3_bucket_acl_exceptions), and reported in versity/versitygw#1384 and aws/aws-cli#2651.
"""

from __future__ import annotations

import pytest

from bleepstore.errors import AccessDenied, InvalidArgument, InvalidRequest, MalformedACLError
from bleepstore.model import ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY, Grant, Grantee, Owner
from bleepstore.s3 import acl as A

OWNER = Owner("a" * 64, "alice")
CAROL = "c" * 64
XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


def names(cid: str) -> str | None:
    return {OWNER.id: "alice", CAROL: "carol"}.get(cid)


def from_headers(headers: dict[str, str], *, for_bucket: bool = True) -> A.Acl | None:
    return A.acl_from_headers(headers.get, OWNER, bucket_owner=None, for_bucket=for_bucket,
                              display_names=names)


def order(acl: A.Acl | None) -> list[tuple[str, str]]:
    assert acl is not None
    return [(g.grantee.id or g.grantee.uri, g.permission) for g in acl.grants]


def policy(owner: str, *grantees: tuple[str, str]) -> bytes:
    grants = "".join(f"<Grant><Grantee {XSI} {g}</Grantee><Permission>{p}</Permission></Grant>"
                     for g, p in grantees)
    return (f'<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Owner><ID>{owner}</ID></Owner><AccessControlList>{grants}"
            f"</AccessControlList></AccessControlPolicy>").encode()


def canonical(cid: str) -> str:
    return f'xsi:type="CanonicalUser"><ID>{cid}</ID>'


def group(uri: str) -> str:
    return f'xsi:type="Group"><URI>{uri}</URI>'


# --- order of the grants ------------------------------------------------------------------


def test_canned_acls_put_the_owner_first() -> None:
    assert order(from_headers({"x-amz-acl": "public-read"})) == [
        (OWNER.id, "FULL_CONTROL"), (ALL_USERS, "READ")]
    assert order(from_headers({"x-amz-acl": "log-delivery-write"})) == [
        (OWNER.id, "FULL_CONTROL"), (LOG_DELIVERY, "WRITE"), (LOG_DELIVERY, "READ_ACP")]


def test_grant_headers_list_only_their_grants_in_order() -> None:
    got = from_headers({"x-amz-grant-read": f'uri="{LOG_DELIVERY}", id="{CAROL}"',
                        "x-amz-grant-write-acp": f'uri="{AUTHENTICATED_USERS}"'})
    assert order(got) == [(LOG_DELIVERY, "READ"), (CAROL, "READ"),
                          (AUTHENTICATED_USERS, "WRITE_ACP")]  # no owner grant added


def test_an_access_control_policy_keeps_its_order() -> None:
    body = policy(OWNER.id, (group(LOG_DELIVERY), "WRITE"), (canonical(OWNER.id), "FULL_CONTROL"))
    assert order(A.acl_from_xml(body, OWNER, names)) == [
        (LOG_DELIVERY, "WRITE"), (OWNER.id, "FULL_CONTROL")]


# --- errors and the arguments they name ---------------------------------------------------


def test_canned_acl_with_grant_headers_is_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as info:
        from_headers({"x-amz-acl": "private", "x-amz-grant-read": f'uri="{LOG_DELIVERY}"'})
    assert info.value.msg == "Specifying both Canned ACLs and Header Grants is not allowed"


@pytest.mark.parametrize("value,message,argument", [
    ('id="wrong-id"', "Invalid id", ("id", "wrong-id")),
    ("id=0123", "Invalid id", ("id", "0123")),
    ('uri="http://acs.amazonaws.com/groups/s3/FakeGroup"', "Invalid group uri",
     ("uri", "http://acs.amazonaws.com/groups/s3/FakeGroup")),
    ('fakekey="1234"', "Argument format not recognized", ("x-amz-grant-write", 'fakekey="1234"')),
    (f'id="{CAROL}",  fakekey=1 ', "Argument format not recognized",
     ("x-amz-grant-write", "fakekey=1")),
    ("fdjklasaj", "Argument format not recognized", ("x-amz-grant-write", "fdjklasaj")),
])
def test_grant_header_errors_name_what_s3_names(value: str, message: str,
                                                argument: tuple[str, str]) -> None:
    with pytest.raises(InvalidArgument) as info:
        from_headers({"x-amz-grant-write": value})
    assert info.value.msg == message
    assert (info.value.extra["ArgumentName"], info.value.extra["ArgumentValue"]) == argument


def test_a_non_canonical_id_is_refused_not_stored() -> None:
    with pytest.raises(InvalidArgument):
        from_headers({"x-amz-grant-read": "id=bob@example"})


@pytest.mark.parametrize("body,argument", [
    (policy(OWNER.id, (group("http://acs.amazonaws.com/groups/s3/FakeGroup"), "READ")),
     ("Group/URI", "http://acs.amazonaws.com/groups/s3/FakeGroup")),
    (policy(OWNER.id, (canonical("wrong-id"), "READ")), ("CanonicalUser/ID", "wrong-id")),
    (policy("wrong-id", (canonical(OWNER.id), "READ")), ("CanonicalUser/ID", "wrong-id")),
])
def test_policy_errors_name_what_s3_names(body: bytes, argument: tuple[str, str]) -> None:
    with pytest.raises(InvalidArgument) as info:
        A.acl_from_xml(body, OWNER, names)
    assert (info.value.extra["ArgumentName"], info.value.extra["ArgumentValue"]) == argument


def test_policy_schema_errors_and_another_owner_stay() -> None:
    with pytest.raises(MalformedACLError):
        A.acl_from_xml(policy(OWNER.id, (group(""), "READ")), OWNER, names)
    with pytest.raises(AccessDenied):
        A.acl_from_xml(policy(CAROL, (canonical(CAROL), "READ")), OWNER, names)


def test_display_names_come_from_known_ids_only() -> None:
    got = from_headers({"x-amz-grant-read": f'id="{CAROL.upper()}"'})
    assert got is not None and got.grants == (
        Grant(Grantee("CanonicalUser", id=CAROL, display_name="carol"), "READ"),)
