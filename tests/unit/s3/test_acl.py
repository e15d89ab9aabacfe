"""bleepstore.s3.acl: canned ACLs, grant headers, XML policies, JSON storage, authorization."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bleepstore.errors import (
    AccessDenied,
    InternalError,
    InvalidArgument,
    InvalidRequest,
    MalformedACLError,
    UnresolvableGrantByEmailAddress,
)
from bleepstore.model import (
    ALL_USERS,
    AUTHENTICATED_USERS,
    GROUP_URIS,
    LOG_DELIVERY,
    PERMISSIONS,
    Acl,
    Grant,
    Grantee,
    Owner,
    Principal,
)
from bleepstore.s3 import acl as A
from bleepstore.s3.xml_render import access_control_policy

OWNER = Owner("a" * 64, "alice")
BOWNER = Owner("b" * 64, "bob")
CAROL = "c" * 64
NAMES = {OWNER.id: "alice", BOWNER.id: "bob", CAROL: "carol"}
XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


def names(cid: str) -> str | None:
    return NAMES.get(cid)


def user(o: Owner) -> Grantee:
    return Grantee("CanonicalUser", id=o.id, display_name=o.display_name)


def group(uri: str) -> Grantee:
    return Grantee("Group", uri=uri)


OWNER_FC = Grant(user(OWNER), "FULL_CONTROL")


def test_owner_id_for() -> None:
    # auth.md §9: lowercase hex SHA-256 of the access key id.
    assert A.owner_id_for("AKIDEXAMPLE") == hashlib.sha256(b"AKIDEXAMPLE").hexdigest()
    assert A.owner_id_for("") == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


# --- canned ACLs -------------------------------------------------------------------------

CANNED = [
    ("private", True, (OWNER_FC,)),
    ("private", False, (OWNER_FC,)),
    ("aws-exec-read", False, (OWNER_FC,)),
    ("public-read", True, (OWNER_FC, Grant(group(ALL_USERS), "READ"))),
    ("public-read-write", False, (OWNER_FC, Grant(group(ALL_USERS), "READ"),
                                  Grant(group(ALL_USERS), "WRITE"))),
    ("authenticated-read", True, (OWNER_FC, Grant(group(AUTHENTICATED_USERS), "READ"))),
    ("bucket-owner-read", False, (OWNER_FC, Grant(user(BOWNER), "READ"))),
    ("bucket-owner-full-control", False, (OWNER_FC, Grant(user(BOWNER), "FULL_CONTROL"))),
    ("bucket-owner-read", True, (OWNER_FC,)),            # object-only value on a bucket
    ("bucket-owner-full-control", True, (OWNER_FC,)),
    ("log-delivery-write", True, (OWNER_FC, Grant(group(LOG_DELIVERY), "WRITE"),
                                  Grant(group(LOG_DELIVERY), "READ_ACP"))),
    ("log-delivery-write", False, (OWNER_FC,)),          # bucket-only value on an object
]


@pytest.mark.parametrize("name,for_bucket,grants", CANNED)
def test_canned_acl(name: str, for_bucket: bool, grants: tuple[Grant, ...]) -> None:
    acl = A.canned_acl(name, OWNER, bucket_owner=BOWNER, for_bucket=for_bucket)
    assert acl == Acl(OWNER, grants)


@pytest.mark.parametrize("name", ["bucket-owner-read", "bucket-owner-full-control"])
def test_bucket_owner_grant_left_out_when_same_principal(name: str) -> None:
    acl = A.canned_acl(name, OWNER, bucket_owner=OWNER, for_bucket=False)
    assert acl == A.default_acl(OWNER)
    assert A.canned_acl(name, OWNER, bucket_owner=None, for_bucket=False) == A.default_acl(OWNER)


@pytest.mark.parametrize("name", ["", "Private", "public", "bogus"])
def test_canned_acl_unknown(name: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        A.canned_acl(name, OWNER, bucket_owner=None, for_bucket=True)
    assert info.value.extra["ArgumentName"] == "x-amz-acl"


# --- grant headers -----------------------------------------------------------------------


def from_headers(headers: dict[str, str], *, for_bucket: bool = False) -> Acl | None:
    return A.acl_from_headers(headers.get, OWNER, bucket_owner=BOWNER, for_bucket=for_bucket,
                              display_names=names)


def test_no_acl_headers_gives_none() -> None:
    assert from_headers({"content-type": "x"}) is None


def test_canned_header() -> None:
    assert from_headers({"x-amz-acl": "public-read"}, for_bucket=True) == Acl(
        OWNER, (OWNER_FC, Grant(group(ALL_USERS), "READ")))


GRANT_OK: list[tuple[dict[str, str], tuple[Grant, ...]]] = [
    ({"x-amz-grant-read": f'uri="{ALL_USERS}"'}, (Grant(group(ALL_USERS), "READ"),)),
    ({"x-amz-grant-read": f"uri={ALL_USERS}"}, (Grant(group(ALL_USERS), "READ"),)),
    ({"x-amz-grant-write": f'id="{CAROL}"'},
     (Grant(Grantee("CanonicalUser", id=CAROL, display_name="carol"), "WRITE"),)),
    ({"x-amz-grant-full-control": f'ID="{CAROL.upper()}" , uri="{LOG_DELIVERY}"'},
     (Grant(Grantee("CanonicalUser", id=CAROL, display_name="carol"), "FULL_CONTROL"),
      Grant(group(LOG_DELIVERY), "FULL_CONTROL"))),
    ({"x-amz-grant-read-acp": f'id="{"d" * 64}"'},        # unknown id: accepted, no name
     (Grant(Grantee("CanonicalUser", id="d" * 64), "READ_ACP"),)),
    ({"x-amz-grant-write-acp": f'uri="{AUTHENTICATED_USERS}"',
      "x-amz-grant-read": f'uri="{ALL_USERS}", uri="{AUTHENTICATED_USERS}"'},
     (Grant(group(ALL_USERS), "READ"), Grant(group(AUTHENTICATED_USERS), "READ"),
      Grant(group(AUTHENTICATED_USERS), "WRITE_ACP"))),
]


@pytest.mark.parametrize("headers,grants", GRANT_OK)
def test_grant_headers(headers: dict[str, str], grants: tuple[Grant, ...]) -> None:
    assert from_headers(headers) == Acl(OWNER, grants)  # the owner is not added implicitly


GRANT_BAD: list[tuple[dict[str, str], type[Exception]]] = [
    ({"x-amz-acl": "private", "x-amz-grant-read": f'uri="{ALL_USERS}"'}, InvalidRequest),
    ({"x-amz-grant-read": 'emailAddress="a@example.com"'}, UnresolvableGrantByEmailAddress),
    ({"x-amz-grant-read": 'uri="http://acs.amazonaws.com/groups/global/Nobody"'},
     InvalidArgument),
    ({"x-amz-grant-read": 'id="not-hex"'}, InvalidArgument),
    ({"x-amz-grant-read": 'name="x"'}, InvalidArgument),
    ({"x-amz-grant-read": ""}, InvalidArgument),
    ({"x-amz-grant-read": f'uri="{ALL_USERS}",'}, InvalidArgument),
    ({"x-amz-grant-read": f'uri="{ALL_USERS}" id="{CAROL}"'}, InvalidArgument),
    ({"x-amz-grant-read": 'uri="unterminated'}, InvalidArgument),
    ({"x-amz-grant-read": f"{ALL_USERS}"}, InvalidArgument),
    ({"x-amz-acl": "nope"}, InvalidArgument),
]


@pytest.mark.parametrize("headers,error", GRANT_BAD)
def test_grant_header_errors(headers: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        from_headers(headers)


def test_both_canned_and_grants_message() -> None:
    with pytest.raises(InvalidRequest) as info:
        from_headers({"x-amz-acl": "private", "x-amz-grant-write": f'id="{CAROL}"'})
    assert info.value.msg == "Specifying both Canned ACLs and Header Grants is not allowed"


_grantee_items = st.one_of(
    st.sampled_from(GROUP_URIS).map(lambda u: (f'uri="{u}"', group(u))),
    st.sampled_from(sorted(NAMES)).map(
        lambda i: (f'id="{i}"', Grantee("CanonicalUser", id=i, display_name=NAMES[i]))),
)


@given(st.lists(_grantee_items, min_size=1, max_size=8), st.sampled_from([",", ", ", " ,  "]))
def test_grant_header_property(items: list[tuple[str, Grantee]], sep: str) -> None:
    value = sep.join(text for text, _ in items)
    parsed = A.parse_grant_header("x-amz-grant-read", value, names)
    assert parsed == [g for _, g in items]


# --- XML policies ------------------------------------------------------------------------


def policy(grants: str, owner: str = OWNER.id, root: str = "AccessControlPolicy") -> bytes:
    return (f'<{root} xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Owner><ID>{owner}</ID><DisplayName>whoever</DisplayName></Owner>"
            f"<AccessControlList>{grants}</AccessControlList></{root}>").encode()


def grant(grantee: str, permission: str = "READ", kind: str = "CanonicalUser") -> str:
    return (f'<Grant><Grantee {XSI} xsi:type="{kind}">{grantee}</Grantee>'
            f"<Permission>{permission}</Permission></Grant>")


ROUND_TRIP = [
    A.default_acl(OWNER),
    Acl(OWNER, ()),
    Acl(OWNER, (OWNER_FC, Grant(group(ALL_USERS), "READ"), Grant(group(LOG_DELIVERY), "WRITE"),
                Grant(Grantee("CanonicalUser", id=CAROL, display_name="carol"), "WRITE_ACP"),
                Grant(Grantee("CanonicalUser", id="e" * 64), "READ_ACP"))),
    *[A.canned_acl(n, OWNER, bucket_owner=BOWNER, for_bucket=b) for n, b, _ in CANNED],
]


@pytest.mark.parametrize("acl", ROUND_TRIP)
def test_policy_xml_round_trip(acl: Acl) -> None:
    assert A.acl_from_xml(access_control_policy(acl), OWNER, names) == acl


@pytest.mark.parametrize("acl", ROUND_TRIP)
def test_json_round_trip(acl: Acl) -> None:
    text = A.acl_to_json(acl)
    assert A.acl_from_json(text, BOWNER) == acl
    assert text.index('"grants"') < text.index('"owner"')  # keys sorted


def test_json_format_and_default() -> None:
    acl = Acl(OWNER, (OWNER_FC, Grant(group(ALL_USERS), "READ")))
    assert A.acl_to_json(acl) == (
        '{"grants":[{"grantee":{"display_name":"alice","id":"' + OWNER.id + '",'
        '"type":"CanonicalUser"},"permission":"FULL_CONTROL"},'
        '{"grantee":{"type":"Group","uri":"' + ALL_USERS + '"},"permission":"READ"}],'
        '"owner":{"display_name":"alice","id":"' + OWNER.id + '"}}')
    assert A.acl_from_json("{}", BOWNER) == A.default_acl(BOWNER)
    assert A.acl_from_json("", BOWNER) == A.default_acl(BOWNER)


@pytest.mark.parametrize("text", ["not json", '{"grants": [{"grantee": 1}]}', "[1]",
                                  '{"owner": {"display_name": "x"}}'])
def test_json_corrupt(text: str) -> None:
    with pytest.raises(InternalError):
        A.acl_from_json(text, OWNER)


def test_xml_keeps_stored_owner_and_ignores_client_display_names() -> None:
    body = policy(grant(f"<ID>{CAROL}</ID><DisplayName>mallory</DisplayName>"))
    acl = A.acl_from_xml(body, OWNER, names)
    assert acl.owner == OWNER
    assert acl.grants == (Grant(Grantee("CanonicalUser", id=CAROL, display_name="carol"), "READ"),)


def test_xml_without_namespace_and_group() -> None:
    body = (f"<AccessControlPolicy><Owner><ID>{OWNER.id}</ID></Owner><AccessControlList>"
            + grant(f"<URI> {ALL_USERS} </URI>", "WRITE", "Group")
            + "</AccessControlList></AccessControlPolicy>").encode()
    assert A.acl_from_xml(body, OWNER, names).grants == (Grant(group(ALL_USERS), "WRITE"),)


XML_BAD: list[tuple[bytes, type[Exception]]] = [
    (b"<AccessControlPolicy>", MalformedACLError),
    (b"", MalformedACLError),
    (policy("", root="Policy"), MalformedACLError),
    (b"<AccessControlPolicy><AccessControlList/></AccessControlPolicy>",
     MalformedACLError),                                               # no Owner
    (f"<AccessControlPolicy><Owner><ID>{OWNER.id}</ID></Owner></AccessControlPolicy>".encode(),
     MalformedACLError),                                               # no AccessControlList
    (policy("", owner=""), MalformedACLError),
    (policy(f"<Grant><Grantee><ID>{CAROL}</ID></Grantee><Permission>READ</Permission></Grant>"),
     MalformedACLError),                                               # no xsi:type
    (policy(grant("<DisplayName>x</DisplayName>")), MalformedACLError),  # no ID
    (policy(grant("<URI>http://example.com/g</URI>", kind="Group")),
     InvalidArgument),                                  # [S3] "Invalid group uri", Group/URI
    (policy(grant("<URI></URI>", kind="Group")), MalformedACLError),
    (policy(grant(f"<ID>{CAROL}</ID>", permission="ALL")), MalformedACLError),
    (policy("<Grant><Permission>READ</Permission></Grant>"), MalformedACLError),
    (policy(grant(f"<ID>{CAROL}</ID>", kind="Martian")), MalformedACLError),
    (policy(grant(f"<ID>{CAROL}</ID>") * 101), MalformedACLError),
    (policy(grant("<EmailAddress>a@b.c</EmailAddress>", kind="AmazonCustomerByEmail")),
     UnresolvableGrantByEmailAddress),
    (policy(grant("<ID>xyz</ID>")), InvalidArgument),
    (policy("", owner=BOWNER.id), AccessDenied),
    (b'<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + policy("&e;"),
     MalformedACLError),
]


@pytest.mark.parametrize("body,error", XML_BAD)
def test_xml_errors(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        A.acl_from_xml(body, OWNER, names)


def test_xml_100_grants_allowed() -> None:
    acl = A.acl_from_xml(policy(grant(f"<ID>{CAROL}</ID>") * 100), OWNER, names)
    assert len(acl.grants) == 100


# --- authorization (§13.4) ------------------------------------------------------------------

ANON = Principal()
ALICE = Principal(OWNER.id, "alice")
CAROL_P = Principal(CAROL, "carol")
DAVE = Principal("d" * 64, "dave")


def acl_with(*grants: Grant) -> Acl:
    return Acl(OWNER, grants)


CAROL_USER = Grantee("CanonicalUser", id=CAROL)
TRUTH: list[tuple[Acl, Principal, str, bool]] = [
    # the owner always, even with no grants at all (never locked out of *_ACP)
    *[(acl_with(), ALICE, p, True) for p in PERMISSIONS],
    (acl_with(), ANON, "READ", False),
    (acl_with(), CAROL_P, "READ", False),
    # canonical-user grants
    (acl_with(Grant(CAROL_USER, "READ")), CAROL_P, "READ", True),
    (acl_with(Grant(CAROL_USER, "READ")), CAROL_P, "WRITE", False),
    (acl_with(Grant(CAROL_USER, "READ")), DAVE, "READ", False),
    (acl_with(Grant(CAROL_USER, "READ")), ANON, "READ", False),
    *[(acl_with(Grant(CAROL_USER, "FULL_CONTROL")), CAROL_P, p, True) for p in PERMISSIONS],
    (acl_with(Grant(CAROL_USER, "WRITE_ACP")), CAROL_P, "READ_ACP", False),
    # AllUsers: anyone, including anonymous
    (acl_with(Grant(group(ALL_USERS), "READ")), ANON, "READ", True),
    (acl_with(Grant(group(ALL_USERS), "READ")), DAVE, "READ", True),
    (acl_with(Grant(group(ALL_USERS), "READ")), ANON, "WRITE", False),
    (acl_with(Grant(group(ALL_USERS), "FULL_CONTROL")), ANON, "WRITE_ACP", True),
    # AuthenticatedUsers: any signed caller, never anonymous
    (acl_with(Grant(group(AUTHENTICATED_USERS), "WRITE")), DAVE, "WRITE", True),
    (acl_with(Grant(group(AUTHENTICATED_USERS), "WRITE")), ANON, "WRITE", False),
    # LogDelivery grants nothing to callers
    (acl_with(Grant(group(LOG_DELIVERY), "WRITE")), DAVE, "WRITE", False),
    (acl_with(Grant(group(LOG_DELIVERY), "WRITE")), ANON, "WRITE", False),
    # a grant to the id "anonymous" never matches the anonymous principal
    (acl_with(Grant(Grantee("CanonicalUser", id="anonymous"), "READ")), ANON, "READ", False),
]


@pytest.mark.parametrize("acl,principal,permission,expected", TRUTH)
def test_allowed(acl: Acl, principal: Principal, permission: str, expected: bool) -> None:
    assert A.allowed(acl, principal, permission) is expected


def test_anonymous_owned_acl_never_matches_anonymous() -> None:
    acl = Acl(Owner("anonymous"), ())
    assert A.allowed(acl, ANON, "READ") is False

