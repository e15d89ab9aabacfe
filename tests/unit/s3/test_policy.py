"""bleepstore.s3.policy (with policy_parse, policy_conditions, policy_actions) and
bleepstore.s3.public_access: parsing with AWS's messages, wildcard matching, condition
operators, evaluation order, the public access block, "public"."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bleepstore.errors import MalformedPolicy, MalformedXML
from bleepstore.model import ALL_USERS, AUTHENTICATED_USERS, Acl, Grant, Grantee, Owner
from bleepstore.s3 import public_access as pa
from bleepstore.s3.policy import (
    Caller,
    Decision,
    Request,
    evaluate,
    matches_every_key,
    matches_some_key,
)
from bleepstore.s3.policy_actions import actions_for
from bleepstore.s3.policy_conditions import Condition, glob, holds
from bleepstore.s3.policy_parse import MAX_POLICY_BYTES, parse_operator, parse_policy
from bleepstore.s3.router import Op

BUCKET = "photos"
ALICE, BOB = "a" * 64, "b" * 64  # canonical ids (BleepStore accounts)
ALICE_KEY, BOB_KEY = "AKALICE", "AKBOB"
ACCOUNTS = {ALICE: ALICE, BOB: BOB, ALICE_KEY: ALICE, BOB_KEY: BOB}
ANON, A, B = Caller(), Caller(ALICE, ALICE_KEY), Caller(BOB, BOB_KEY)


def stmt(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                            "Resource": f"arn:aws:s3:::{BUCKET}/*"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def doc(*statements: dict[str, Any], **top: Any) -> bytes:
    return json.dumps({"Version": "2012-10-17", **top,
                       "Statement": list(statements) or [stmt()]}).encode()


def parse(body: bytes) -> Any:
    return parse_policy(body, BUCKET, ACCOUNTS.get)


def message(body: bytes) -> str:
    with pytest.raises(MalformedPolicy) as exc:
        parse(body)
    assert exc.value.code == "MalformedPolicy" and exc.value.status == 400
    return exc.value.msg


def ask(policy_body: bytes, caller: Caller = ANON, actions: tuple[str, ...] = ("s3:getobject",),
        key: str | None = "k", context: dict[str, tuple[str, ...]] | None = None,
        any_key: bool = False) -> Decision:
    ctx = context or {}
    return evaluate(parse(policy_body), Request(caller, actions, BUCKET, key, any_key,
                                                ctx.get))


# --------------------------------------------------------------------- parsing: errors


FIRST = "Policies must be valid JSON and the first byte must be '{'"
JSON = "This policy contains invalid Json"


@pytest.mark.parametrize("body,expected", [
    (b"", FIRST), (b" {}", FIRST), (b"[]", FIRST), (b"\xef\xbb\xbf{}", FIRST),
    (b"{", JSON), (b'{"Statement": [],}', JSON), (b'{"a": NaN}', JSON),
    (b'{"\xff": 1}', JSON), (b"{" + b'"x":' * 1 + b"[" * 5000 + b"]" * 5000 + b"}", JSON),
    (b"{}", "Missing required field Statement"),
    (b'{"Version": "2012-10-17"}', "Missing required field Statement"),
    (b'{"Statement": []}', "Could not parse the policy: Statement is empty!"),
    (doc(Foo=1), "Unknown field Foo"),
    (doc(Version="2020-01-01"), "The policy must contain a valid version string"),
    (doc(Version=["2012-10-17"]), "The policy must contain a valid version string"),
    (doc(Id=5), "Invalid policy syntax."),
    (b'{"Statement": ["x"]}', "Invalid policy syntax."),
    (b'{"Statement": "x"}', "Invalid policy syntax."),
    (doc(stmt(Effect=None)), "Missing required field Effect"),
    (doc(stmt(Effect="Permit")), "Invalid effect: Permit"),
    (doc(stmt(Effect=1)), "Invalid effect: 1"),
    (doc(stmt(Sid=3)), "Invalid policy syntax."),
    (doc(stmt(Foo="x")), "Unknown field Foo"),
    (doc(stmt(Principal=None)), "Missing required field Principal"),
    (doc(stmt(Principal="bob")), "Invalid principal in policy"),
    (doc(stmt(Principal={})), "Invalid principal in policy"),
    (doc(stmt(Principal={"Group": "x"})), "Invalid principal in policy"),
    (doc(stmt(Principal={"AWS": "123456789012"})), "Invalid principal in policy"),
    (doc(stmt(Principal={"AWS": "arn:aws:iam::123456789012:root"})),
     "Invalid principal in policy"),
    (doc(stmt(Principal={"AWS": f"arn:aws:iam::{ALICE}:role/x"})),
     "Invalid principal in policy"),
    (doc(stmt(Principal={"AWS": f"arn:aws:iam::{ALICE}:user/{BOB_KEY}"})),
     "Invalid principal in policy"),
    (doc(stmt(Principal={"AWS": f"arn:aws:iam::{ALICE}:user/{ALICE}"})),
     "Invalid principal in policy"),
    (doc(stmt(Principal={"CanonicalUser": "c" * 64})), "Invalid principal in policy"),
    (doc(stmt(Principal={"CanonicalUser": "bob"})), "Invalid principal in policy"),
    (doc(stmt(Principal={"Service": ""})), "Invalid principal in policy"),
    (doc(stmt(Principal={"AWS": []})), "Missing required field Principal cannot be empty!"),
    (doc(stmt(Principal={"AWS": 5})), "Invalid policy syntax."),
    (doc(stmt(Action=None)), "Missing required field Action"),
    (doc(stmt(Action=[])), "Missing required field Action cannot be empty!"),
    (doc(stmt(Action="s3:GetObjectt")), "Policy has invalid action"),
    (doc(stmt(Action="s3:Foo*")), "Policy has invalid action"),
    (doc(stmt(Action="iam:PassRole")), "Policy has invalid action"),
    (doc(stmt(Action="GetObject")), "Policy has invalid action"),
    (doc(stmt(Action=5)), "Invalid policy syntax."),
    (doc(stmt(Resource=None)), "Missing required field Resource"),
    (doc(stmt(Resource="*")), "Policy has invalid resource"),
    (doc(stmt(Resource="arn:aws:s3:::other/*")), "Policy has invalid resource"),
    (doc(stmt(Resource="arn:aws:s3:::photosx/*")), "Policy has invalid resource"),
    (doc(stmt(Resource="arn:aws:s3:::pho*/*")), "Policy has invalid resource"),
    (doc(stmt(Resource=["arn:aws:s3:::photos/*", "arn:aws:s3:::other"])),
     "Policy has invalid resource"),
    (doc(stmt(Action="s3:ListBucket")),
     "Action does not apply to any resource(s) in statement"),
    (doc(stmt(Resource="arn:aws:s3:::photos")),
     "Action does not apply to any resource(s) in statement"),
    (doc(stmt(Action="s3:ListAllMyBuckets")),
     "Action does not apply to any resource(s) in statement"),
    (doc(stmt(Condition={"StringEqualz": {"aws:username": "x"}})),
     "Invalid Condition type : StringEqualz"),
    (doc(stmt(Condition={"stringequals": {"aws:username": "x"}})),
     "Invalid Condition type : stringequals"),
    (doc(stmt(Condition={"NullIfExists": {"aws:username": "true"}})),
     "Invalid Condition type : NullIfExists"),
    (doc(stmt(Condition={"ForSomeValues:StringLike": {"aws:username": "x"}})),
     "Invalid Condition type : ForSomeValues:StringLike"),
    (doc(stmt(Condition={"StringEquals": {"foo:bar": "x"}})),
     "Policy has an invalid condition key"),
    (doc(stmt(Condition={"StringEquals": {"s3:FakeKeyDoesNotExist": "x"}})),
     "Policy has an invalid condition key"),
    (doc(stmt(Condition={"StringEquals": {"s3:ExistingObjectTag/": "x"}})),
     "Policy has an invalid condition key"),
    (doc(stmt(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.300/8"}})),
     "Invalid IP address in Conditions"),
    (doc(stmt(Condition={"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "nope"]}})),
     "Invalid IP address in Conditions"),
    (doc(stmt(Condition={"StringLike": {"s3:prefix": "home/*"}})),
     "Conditions do not apply to combination of actions and resources in statement"),
    (doc(stmt(Condition={"StringLike": {"aws:username": {"a": 1}}})), "Invalid policy syntax."),
    (doc(stmt(Condition={"StringLike": "x"})), "Invalid policy syntax."),
    (doc(stmt(Condition="x")), "Invalid policy syntax."),
    (doc(stmt(NotAction="s3:PutObject")), "Statement/policy already has instance of Action"),
    (doc(stmt(NotPrincipal="*")), "Statement/policy already has instance of Principal"),
    (b'{"Statement": {"Effect": "Allow", "Effect": "Deny"}}',
     "Statement/policy already has instance of Effect"),
    (doc(stmt(Sid="one"), stmt(Sid="one")),
     "Statement IDs (SID) in a single policy must be unique."),
])
def test_malformed_policies_get_aws_messages(body: bytes, expected: str) -> None:
    assert message(body) == expected


def test_size_limit_counts_the_document_without_insignificant_whitespace() -> None:
    filler = "x" * (MAX_POLICY_BYTES - 300)
    fits = doc(stmt(Sid=filler))
    assert len(fits) <= MAX_POLICY_BYTES
    parse(fits)
    pretty = json.dumps(json.loads(fits), indent=8).encode()  # wider than 20 KB, same JSON
    assert len(pretty) > MAX_POLICY_BYTES
    parse(pretty)
    assert message(doc(stmt(Sid="x" * MAX_POLICY_BYTES))) == (
        "Policy exceeds the maximum allowed document size.")
    assert message(b"{" + b" " * 70000 + b"}") == (
        "Policy exceeds the maximum allowed document size.")


# --------------------------------------------------------------------- parsing: forms


def test_accepted_forms() -> None:
    policy = parse(json.dumps({"Statement": stmt(Sid="only")}).encode())  # one object
    assert policy.version == "2008-10-17" and policy.id is None  # AWS's default version
    assert [s.sid for s in policy.statements] == ["only"]
    p = parse(doc(stmt(Principal={"AWS": ["*"]}, Action=["S3:GetObject", "s3:Get*", "*"],
                       Resource=["arn:aws:s3:::photos", "arn:aws-cn:s3:::photos/a/*"]),
                  Id="policy-1"))
    st = p.statements[0]
    assert p.id == "policy-1" and st.principal is not None and st.principal.everyone
    assert st.actions == ("s3:getobject", "s3:get*", "s3:*")
    assert st.resources == ("photos", "photos/a/*")


def test_principal_forms_name_accounts_by_id_or_access_key() -> None:
    names = [ALICE, ALICE_KEY, f"arn:aws:iam::{ALICE}:root", f"arn:aws:iam::{ALICE_KEY}:root",
             f"arn:aws:iam::{ALICE}:user/{ALICE_KEY}", f"arn:aws:iam::{ALICE}:user/a/b/{ALICE_KEY}"]
    for name in names:
        body = doc(stmt(Principal={"AWS": name}))
        assert ask(body, A) is Decision.ALLOW, name
        assert ask(body, B) is Decision.NONE and ask(body, ANON) is Decision.NONE, name
    canonical = doc(stmt(Principal={"CanonicalUser": BOB}))
    assert ask(canonical, B) is Decision.ALLOW and ask(canonical, A) is Decision.NONE
    service = doc(stmt(Principal={"Service": "logging.s3.amazonaws.com"}))
    assert ask(service, A) is Decision.NONE and ask(service, ANON) is Decision.NONE


def test_stored_policies_are_parsed_without_looking_principals_up() -> None:
    body = doc(stmt(Principal={"AWS": "123456789012"}))
    parse_policy(body, BUCKET)  # no identity: the form is enough
    with pytest.raises(MalformedPolicy):
        parse_policy(body, BUCKET, ACCOUNTS.get)


# --------------------------------------------------------------------- wildcards


@pytest.mark.parametrize("pattern,text,expected", [
    ("*", "", True), ("*", "abc", True), ("a*", "a", True), ("a*c", "abbbc", True),
    ("a*c", "abbb", False), ("a?c", "abc", True), ("a?c", "ac", False), ("?", "", False),
    ("a*b*c", "aXbYc", True), ("a*b*c", "acb", False), ("*.jpg", "x/y.jpg", True),
    ("photos/a*", "photos/a/b/c", True), ("photos/*/x", "photos/x", False),
    ("**", "x", True), ("a", "A", False), ("*a*a*a*a*b", "a" * 300, False),
    ("x*", "*", False), ("*", "*", True), ("?*?", "ab", True),
])
def test_glob(pattern: str, text: str, expected: bool) -> None:
    assert glob(pattern, text) is expected


@pytest.mark.parametrize("pattern,some,every", [
    ("photos/*", True, True), ("photos/a*", True, False), ("photos", False, False),
    ("photos/", False, False), ("pho*", True, True), ("photos?*", True, True),
    ("photos/?", True, False), ("photos/**", True, True), ("other/*", False, False),
    ("*", True, True), ("photos/*/x", True, False),
])
def test_key_patterns_over_unknown_keys(pattern: str, some: bool, every: bool) -> None:
    assert matches_some_key(pattern, BUCKET) is some
    assert matches_every_key(pattern, BUCKET) is every


# --------------------------------------------------------------------- conditions


def cond(operator: str, key: str, *values: str) -> Condition:
    parsed = parse_operator(operator)
    assert parsed is not None
    return Condition(parsed[0], parsed[1], parsed[2], key, values)


def check(c: Condition, *values: str) -> bool:
    return holds(c, lambda k: values if values and k == c.key else None)


@pytest.mark.parametrize("operator,expected,request_values,result", [
    ("StringEquals", ("a", "b"), ("b",), True), ("StringEquals", ("a",), ("A",), False),
    ("StringEquals", ("a",), (), False), ("StringNotEquals", ("a",), ("b",), True),
    ("StringNotEquals", ("a", "b"), ("b",), False), ("StringNotEquals", ("a",), (), True),
    ("StringEqualsIgnoreCase", ("ABC",), ("abc",), True),
    ("StringNotEqualsIgnoreCase", ("ABC",), ("abc",), False),
    ("StringLike", ("home/*",), ("home/x",), True), ("StringLike", ("home/*",), ("x",), False),
    ("StringLike", ("a?c",), ("abc",), True), ("StringNotLike", ("home/*",), ("x",), True),
    ("StringNotLike", ("home/*",), (), True), ("StringLikeIfExists", ("a",), (), True),
    ("StringLikeIfExists", ("a",), ("b",), False),
    ("NumericLessThan", ("10",), ("9",), True), ("NumericLessThan", ("10",), ("10",), False),
    ("NumericLessThanEquals", ("10",), ("10",), True),
    ("NumericGreaterThan", ("1.5",), ("2",), True), ("NumericEquals", ("5",), ("5.0",), True),
    ("NumericNotEquals", ("5",), ("6",), True), ("NumericEquals", ("5",), ("five",), False),
    ("NumericGreaterThanEquals", ("5",), ("5",), True),
    ("DateLessThan", ("2030-01-01T00:00:00Z",), ("2026-12-02T14:00:00Z",), True),
    ("DateGreaterThan", ("2030-01-01T00:00:00Z",), ("2026-12-02T14:00:00Z",), False),
    ("DateEquals", ("1700000000",), ("2023-11-14T22:13:20Z",), True),
    ("DateNotEquals", ("2020-01-01",), ("2020-01-01T00:00:00Z",), False),
    ("Bool", ("false",), ("false",), True), ("Bool", ("False",), ("false",), True),
    ("Bool", ("true",), ("false",), False), ("Bool", ("true",), (), False),
    ("BinaryEquals", ("aGVsbG8=",), ("aGVsbG8=",), True),
    ("BinaryEquals", ("aGVsbG8=",), ("not base64!",), False),
    ("IpAddress", ("10.0.0.0/8",), ("10.1.2.3",), True),
    ("IpAddress", ("10.0.0.0/8",), ("11.0.0.1",), False),
    ("IpAddress", ("127.0.0.1",), ("::ffff:127.0.0.1",), True),
    ("IpAddress", ("2001:db8::/32",), ("2001:db8::1",), True),
    ("IpAddress", ("10.0.0.0/8",), ("2001:db8::1",), False),
    ("IpAddress", ("10.0.0.0/8",), ("not-an-ip",), False),
    ("NotIpAddress", ("10.0.0.0/8",), ("10.1.2.3",), False),
    ("NotIpAddress", ("10.0.0.0/8", "192.168.0.0/16"), ("127.0.0.1",), True),
    ("NotIpAddress", ("10.0.0.0/8",), (), True),
    ("ArnLike", ("arn:aws:iam::*:root",), ("arn:aws:iam::1:root",), True),
    ("ArnNotEquals", ("arn:aws:iam::1:root",), ("arn:aws:iam::1:root",), False),
    ("Null", ("true",), (), True), ("Null", ("true",), ("x",), False),
    ("Null", ("false",), ("x",), True),
    ("ForAnyValue:StringEquals", ("a", "b"), ("x", "b"), True),
    ("ForAnyValue:StringEquals", ("a",), (), False),
    ("ForAllValues:StringEquals", ("a", "b"), ("a", "b"), True),
    ("ForAllValues:StringEquals", ("a", "b"), ("a", "c"), False),
    ("ForAllValues:StringEquals", ("a",), (), True),
    ("ForAllValues:StringNotEquals", ("a",), ("b", "c"), True),
    ("ForAnyValue:StringNotEquals", ("a",), ("a", "c"), True),
    ("ForAnyValue:StringNotEquals", ("a",), ("a",), False),
])
def test_condition_operators(operator: str, expected: tuple[str, ...],
                             request_values: tuple[str, ...], result: bool) -> None:
    assert check(cond(operator, "aws:k", *expected), *request_values) is result


def test_condition_key_names_are_case_insensitive_but_tag_keys_are_not() -> None:
    body = doc(stmt(Condition={"StringEquals": {"AWS:UserName": "alice",
                                                "s3:ExistingObjectTag/Team": "blue"}}))
    c = {"aws:username": ("alice",), "s3:existingobjecttag/Team": ("blue",)}
    assert ask(body, context=c) is Decision.ALLOW
    c_lower = {"aws:username": ("alice",), "s3:existingobjecttag/team": ("blue",)}
    assert ask(body, context=c_lower) is Decision.NONE


def test_conditions_and_within_a_block_and_across_blocks() -> None:
    body = doc(stmt(Condition={"StringEquals": {"aws:username": "alice", "aws:userid": "AK"},
                               "Bool": {"aws:SecureTransport": "true"}}))
    full = {"aws:username": ("alice",), "aws:userid": ("AK",), "aws:securetransport": ("true",)}
    assert ask(body, context=full) is Decision.ALLOW
    for drop in full:
        partial = {k: v for k, v in full.items() if k != drop}
        assert ask(body, context=partial) is Decision.NONE


# --------------------------------------------------------------------- evaluation order


def test_explicit_deny_wins_over_any_allow() -> None:
    allow, deny = stmt(), stmt(Effect="Deny", Principal={"AWS": ALICE})
    assert ask(doc(allow), A) is Decision.ALLOW
    assert ask(doc(allow, deny), A) is Decision.DENY
    assert ask(doc(deny, allow), A) is Decision.DENY
    assert ask(doc(allow, deny), B) is Decision.ALLOW
    assert ask(doc(deny), B) is Decision.NONE  # nothing said: the ACLs decide


def test_every_needed_action_must_be_allowed_and_any_denied_one_denies() -> None:
    body = doc(stmt(Action="s3:PutObject"))
    assert ask(body, actions=("s3:putobject",)) is Decision.ALLOW
    assert ask(body, actions=("s3:putobject", "s3:putobjectacl")) is Decision.NONE
    deny_acl = doc(stmt(Action="s3:PutObject"), stmt(Effect="Deny", Action="s3:PutObjectAcl"))
    assert ask(deny_acl, actions=("s3:putobject", "s3:putobjectacl")) is Decision.DENY


def test_not_elements() -> None:
    not_principal = doc(stmt(Principal=None, NotPrincipal={"AWS": ALICE}, Effect="Deny"))
    assert ask(not_principal, A) is Decision.NONE
    assert ask(not_principal, B) is Decision.DENY and ask(not_principal, ANON) is Decision.DENY
    not_action = doc(stmt(Action=None, NotAction="s3:DeleteObject"))
    assert ask(not_action, actions=("s3:getobject",)) is Decision.ALLOW
    assert ask(not_action, actions=("s3:deleteobject",)) is Decision.NONE
    not_resource = doc(stmt(Resource=None, NotResource="arn:aws:s3:::photos/secret/*"))
    assert ask(not_resource, key="public/x") is Decision.ALLOW
    assert ask(not_resource, key="secret/x") is Decision.NONE


def test_resources_match_bucket_or_object_exactly() -> None:
    body = doc(stmt(Action="s3:*", Resource=["arn:aws:s3:::photos", "arn:aws:s3:::photos/a?/*"]))
    assert ask(body, actions=("s3:listbucket",), key=None) is Decision.ALLOW
    assert ask(body, key="ab/c") is Decision.ALLOW
    assert ask(body, key="abc/d") is Decision.NONE
    assert ask(body, key="ab") is Decision.NONE


def test_actions_match_case_insensitively_with_wildcards() -> None:
    body = doc(stmt(Action="s3:Get*"))
    assert ask(body, actions=("s3:getobjectversion",)) is Decision.ALLOW
    assert ask(body, actions=("s3:putobject",)) is Decision.NONE


def test_unknown_keys_a_deny_may_hit_some_an_allow_must_cover_every() -> None:
    deny_part = doc(stmt(Action="s3:DeleteObject"),
                    stmt(Effect="Deny", Action="s3:DeleteObject",
                         Resource="arn:aws:s3:::photos/keep/*"))
    assert ask(deny_part, actions=("s3:deleteobject",), key=None,
               any_key=True) is Decision.DENY
    allow_part = doc(stmt(Action="s3:DeleteObject", Resource="arn:aws:s3:::photos/tmp/*"))
    assert ask(allow_part, actions=("s3:deleteobject",), key=None,
               any_key=True) is Decision.NONE
    allow_all = doc(stmt(Action="s3:DeleteObject"))
    assert ask(allow_all, actions=("s3:deleteobject",), key=None,
               any_key=True) is Decision.ALLOW
    not_resource = doc(stmt(Effect="Deny", Action="s3:DeleteObject", Resource=None,
                            NotResource="arn:aws:s3:::photos/*"))
    assert ask(not_resource, actions=("s3:deleteobject",), key=None,
               any_key=True) is Decision.NONE


# --------------------------------------------------------------------- operations


def no_headers(name: str) -> str | None:
    return None


@pytest.mark.parametrize("op,query,headers,versioned,expected", [
    (Op.GET_OBJECT, {}, {}, False, ("s3:getobject",)),
    (Op.GET_OBJECT, {"versionId": "v"}, {}, False, ("s3:getobjectversion",)),
    (Op.HEAD_OBJECT, {}, {}, False, ("s3:getobject",)),
    (Op.DELETE_OBJECT, {"versionId": "v"}, {}, False, ("s3:deleteobjectversion",)),
    (Op.PUT_OBJECT, {}, {"x-amz-acl": "private"}, False, ("s3:putobject", "s3:putobjectacl")),
    (Op.PUT_OBJECT, {}, {"x-amz-tagging": "a=b"}, False,
     ("s3:putobject", "s3:putobjecttagging")),
    (Op.COPY_OBJECT, {}, {"x-amz-grant-read": "id=x"}, False,
     ("s3:putobject", "s3:putobjectacl")),
    (Op.UPLOAD_PART, {}, {}, False, ("s3:putobject",)),
    (Op.COMPLETE_MULTIPART_UPLOAD, {}, {}, False, ("s3:putobject",)),
    (Op.ABORT_MULTIPART_UPLOAD, {}, {}, False, ("s3:abortmultipartupload",)),
    (Op.LIST_PARTS, {}, {}, False, ("s3:listmultipartuploadparts",)),
    (Op.DELETE_OBJECTS, {}, {}, False, ("s3:deleteobject",)),
    (Op.DELETE_OBJECTS, {}, {}, True, ("s3:deleteobject", "s3:deleteobjectversion")),
    (Op.LIST_OBJECTS_V2, {}, {}, False, ("s3:listbucket",)),
    (Op.HEAD_BUCKET, {}, {}, False, ("s3:listbucket",)),
    (Op.LIST_OBJECT_VERSIONS, {}, {}, False, ("s3:listbucketversions",)),
    (Op.GET_OBJECT_ACL, {"versionId": "v"}, {}, False, ("s3:getobjectversionacl",)),
    (Op.PUT_BUCKET_POLICY, {}, {}, False, ("s3:putbucketpolicy",)),
    (Op.DELETE_PUBLIC_ACCESS_BLOCK, {}, {}, False, ("s3:putbucketpublicaccessblock",)),
    (Op.DELETE_BUCKET_TAGGING, {}, {}, False, ("s3:putbuckettagging",)),
    (Op.LIST_BUCKETS, {}, {}, False, ()), (Op.CREATE_BUCKET, {}, {}, False, ()),
])
def test_actions_for_operations(op: Op, query: dict[str, str], headers: dict[str, str],
                                versioned: bool, expected: tuple[str, ...]) -> None:
    assert actions_for(op, query, headers.get, versioned=versioned) == expected


def test_every_operation_is_mapped_to_known_actions() -> None:
    from bleepstore.s3.policy_actions import KNOWN_ACTIONS
    for op in Op:
        for action in actions_for(op, {"versionId": "v"}, lambda h: "x"):
            assert action in KNOWN_ACTIONS, (op, action)
        if op not in (Op.LIST_BUCKETS, Op.CREATE_BUCKET):
            assert actions_for(op, {}, no_headers), op


# --------------------------------------------------------------------- public access block


PAB = b'<PublicAccessBlockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">%s' \
      b'</PublicAccessBlockConfiguration>'


def test_public_access_block_xml_and_json() -> None:
    block = pa.parse_configuration(
        PAB % b"<BlockPublicAcls>true</BlockPublicAcls><RestrictPublicBuckets>TRUE"
              b"</RestrictPublicBuckets><IgnorePublicAcls>false</IgnorePublicAcls>")
    assert block == pa.PublicAccessBlock(block_public_acls=True, restrict_public_buckets=True)
    assert pa.from_json(pa.to_json(block)) == block
    assert pa.from_json(None) == pa.NONE
    assert pa.parse_configuration(PAB % b"") == pa.NONE
    assert pa.render_configuration(block) == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<PublicAccessBlockConfiguration '
        b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><BlockPublicAcls>true'
        b'</BlockPublicAcls><IgnorePublicAcls>false</IgnorePublicAcls><BlockPublicPolicy>false'
        b'</BlockPublicPolicy><RestrictPublicBuckets>true</RestrictPublicBuckets>'
        b'</PublicAccessBlockConfiguration>')
    assert pa.render_policy_status(True).endswith(
        b'<PolicyStatus xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsPublic>true'
        b'</IsPublic></PolicyStatus>')


@pytest.mark.parametrize("body", [
    b"", b"<Other/>", PAB % b"<BlockPublicAcls>yes</BlockPublicAcls>",
    PAB % b"<BlockPublicAcls>true</BlockPublicAcls><BlockPublicAcls>true</BlockPublicAcls>",
    PAB % b"<Unknown>true</Unknown>", b"<PublicAccessBlockConfiguration>",
])
def test_malformed_public_access_block(body: bytes) -> None:
    with pytest.raises(MalformedXML):
        pa.parse_configuration(body)


def test_public_acls() -> None:
    owner = Owner(ALICE)
    public = Acl(owner, (Grant(Grantee("CanonicalUser", id=ALICE), "FULL_CONTROL"),
                         Grant(Grantee("Group", uri=ALL_USERS), "READ"),
                         Grant(Grantee("Group", uri=AUTHENTICATED_USERS), "WRITE")))
    assert pa.without_public_grants(public).grants == public.grants[:1]
    private = Acl(owner, public.grants[:1])
    assert pa.without_public_grants(private) is private
    for headers, expected in [({"x-amz-acl": "public-read"}, True),
                              ({"x-amz-acl": "authenticated-read"}, True),
                              ({"x-amz-acl": "public-read-write"}, True),
                              ({"x-amz-acl": "log-delivery-write"}, False),
                              ({"x-amz-acl": "private"}, False),
                              ({"x-amz-grant-read": f'uri="{ALL_USERS}"'}, True),
                              ({"x-amz-grant-write": f"uri={AUTHENTICATED_USERS}"}, True),
                              ({"x-amz-grant-read": f'id="{BOB}"'}, False), ({}, False)]:
        assert pa.headers_grant_public(headers.get) is expected, headers
    grant = ('<AccessControlPolicy><Owner><ID>x</ID></Owner><AccessControlList><Grant>'
             '<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="Group">'
             '<URI>{}</URI></Grantee><Permission>READ</Permission></Grant>'
             '</AccessControlList></AccessControlPolicy>')
    assert pa.acl_body_is_public(grant.format(ALL_USERS).encode())
    assert pa.acl_body_is_public(grant.format(f" {AUTHENTICATED_USERS} ").encode())
    assert not pa.acl_body_is_public(grant.format("http://acs.amazonaws.com/groups/s3/"
                                                  "LogDelivery").encode())
    assert not pa.acl_body_is_public(b"<not xml")


@pytest.mark.parametrize("statement,public", [
    (stmt(), True),
    (stmt(Principal={"AWS": "*"}), True),
    (stmt(Principal={"AWS": ALICE}), False),
    (stmt(Effect="Deny"), False),
    (stmt(Principal=None, NotPrincipal={"AWS": ALICE}), True),
    (stmt(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}), False),
    (stmt(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/7"}}), True),
    (stmt(Condition={"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "0.0.0.0/0"]}}), True),
    (stmt(Condition={"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}), False),
    (stmt(Condition={"IpAddress": {"aws:SourceIp": "2001:db8::/31"}}), True),
    (stmt(Condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}), True),
    (stmt(Condition={"StringEquals": {"aws:SourceVpce": "vpce-1"}}), False),
    (stmt(Condition={"StringLike": {"aws:SourceVpc": "vpc-*"}}), True),
    (stmt(Condition={"StringEquals": {"aws:PrincipalAccount": ALICE}}), False),
    (stmt(Condition={"StringEqualsIfExists": {"aws:PrincipalAccount": ALICE}}), True),
    (stmt(Condition={"StringEquals": {"aws:username": "alice"}}), True),
    (stmt(Condition={"Bool": {"aws:SecureTransport": "true"}}), True),
])
def test_meaning_of_public_for_policies(statement: dict[str, Any], public: bool) -> None:
    assert pa.policy_is_public(parse(doc(statement))) is public
