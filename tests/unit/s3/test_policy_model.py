"""Property tests for bleepstore.s3.policy: ``evaluate`` against a plain model of IAM's rules
for one resource policy, written independently from the raw JSON (regex wildcards, sets of
names, direct condition semantics); unknown-key (bulk) requests against per-key answers; the
parser fed random JSON and random bytes (MalformedPolicy or a policy, nothing else)."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bleepstore.errors import MalformedPolicy
from bleepstore.s3.policy import Caller, Decision, Policy, Request, evaluate
from bleepstore.s3.policy_parse import parse_policy

BUCKET = "bkt"
ALICE, BOB = "a" * 64, "b" * 64
KEYS = {ALICE: "AKALICE", BOB: "AKBOB"}
IDENTITY = {ALICE: ALICE, BOB: BOB, "AKALICE": ALICE, "AKBOB": BOB}.get
CALLERS = [Caller(), Caller(ALICE, "AKALICE"), Caller(BOB, "AKBOB")]
ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket", "s3:Get*",
           "s3:*Object", "s3:*", "s3:?etObject"]
REQUEST_ACTIONS = ["s3:getobject", "s3:putobject", "s3:deleteobject", "s3:listbucket",
                   "s3:getobjectacl"]
OBJECT_PATTERNS = ["bkt/*", "bkt/a*", "bkt/a?c", "bkt/*/x", "bkt/a/*", "bkt/?", "bkt/abc"]
KEY_NAMES = ["a", "abc", "a/x", "b/x", "zz", "a/b/x", "?", "*"]
PRINCIPALS: list[Any] = ["*", {"AWS": "*"}, {"AWS": ALICE}, {"AWS": "AKBOB"},
                         {"AWS": f"arn:aws:iam::{ALICE}:root"},
                         {"AWS": f"arn:aws:iam::{BOB}:user/AKBOB"}, {"CanonicalUser": BOB},
                         {"AWS": [ALICE, "AKBOB"]}]
CONDITIONS: list[Any] = [
    {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.1.0/24"]}},
    {"Bool": {"aws:SecureTransport": "true"}},
    {"StringEquals": {"aws:username": ["alice", "bob"]}},
    {"StringNotEquals": {"aws:username": "alice"}},
    {"StringLike": {"aws:UserAgent": "aws-cli/*"}},
    {"StringNotLikeIfExists": {"aws:Referer": "*.example.com"}},
    {"Null": {"aws:username": "true"}},
    {"StringEquals": {"aws:username": "bob"}, "Bool": {"aws:SecureTransport": "false"}},
]
CONTEXTS = st.fixed_dictionaries({}, optional={
    "aws:sourceip": st.sampled_from([("10.1.2.3",), ("192.168.1.9",), ("127.0.0.1",)]),
    "aws:securetransport": st.sampled_from([("true",), ("false",)]),
    "aws:username": st.sampled_from([("alice",), ("bob",), ("carol",)]),
    "aws:useragent": st.sampled_from([("aws-cli/2.0",), ("boto3",)]),
    "aws:referer": st.sampled_from([("www.example.com",), ("evil.test",)]),
})


# --------------------------------------------------------------------- the model


def wild(pattern: str, text: str, *, fold: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.DOTALL | (re.IGNORECASE if fold else 0)) is not None


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def caller_names(caller: Caller) -> set[str]:
    if caller.account is None:
        return {"*"}
    a, k = caller.account, caller.access_key
    return {"*", a, k, f"arn:aws:iam::{a}:root", f"arn:aws:iam::{k}:root",
            f"arn:aws:iam::{a}:user/{k}"}


def model_principal(element: Any, caller: Caller) -> bool:
    if element == "*":
        return True
    names = caller_names(caller)
    if any(n in names for n in listed(element.get("AWS", []))):
        return True
    return caller.account is not None and caller.account in listed(element.get("CanonicalUser",
                                                                                []))


def model_condition(operator: str, key: str, expected: list[str],
                    ctx: dict[str, tuple[str, ...]]) -> bool:
    got = ctx.get(key.lower())
    if operator == "Null":
        return (expected[0] == "true") == (got is None)
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    negated = "Not" in base
    if got is None:
        return if_exists or negated
    value = got[0]
    if base in ("IpAddress", "NotIpAddress"):
        hit = any(ipaddress.ip_address(value) in ipaddress.ip_network(e) for e in expected)
    elif base in ("StringLike", "StringNotLike"):
        hit = any(wild(e, value) for e in expected)
    elif base == "Bool":
        hit = value.lower() == expected[0].lower()
    else:
        hit = value in expected
    return not hit if negated else hit


def model_resource(statement: dict[str, Any], bucket: str, key: str | None) -> bool:
    target = bucket if key is None else f"{bucket}/{key}"
    name = "Resource" if "Resource" in statement else "NotResource"
    hit = any(wild(r.removeprefix("arn:aws:s3:::"), target) for r in listed(statement[name]))
    return hit if name == "Resource" else not hit


def model_statement(s: dict[str, Any], caller: Caller, action: str, key: str | None,
                    ctx: dict[str, tuple[str, ...]]) -> bool:
    if "Principal" in s and not model_principal(s["Principal"], caller):
        return False
    if "NotPrincipal" in s and model_principal(s["NotPrincipal"], caller):
        return False
    acts = [a.lower() for a in listed(s.get("Action", s.get("NotAction")))]
    hit = any(wild(a, action, fold=True) for a in acts)
    if hit != ("Action" in s):
        return False
    if not model_resource(s, BUCKET, key):
        return False
    return all(model_condition(op, k, listed(v), ctx)
               for op, block in s.get("Condition", {}).items() for k, v in block.items())


def model(document: dict[str, Any], caller: Caller, actions: tuple[str, ...], key: str | None,
          ctx: dict[str, tuple[str, ...]]) -> Decision:
    allowed = 0
    for action in actions:
        hits = [s["Effect"] for s in document["Statement"]
                if model_statement(s, caller, action, key, ctx)]
        if "Deny" in hits:
            return Decision.DENY
        allowed += "Allow" in hits
    return Decision.ALLOW if allowed == len(actions) else Decision.NONE


# --------------------------------------------------------------------- strategies


@st.composite
def statements(draw: st.DrawFn) -> dict[str, Any]:
    s: dict[str, Any] = {"Effect": draw(st.sampled_from(["Allow", "Deny"]))}
    s["NotPrincipal" if draw(st.booleans()) and draw(st.booleans()) else "Principal"] = draw(
        st.sampled_from(PRINCIPALS))
    s["NotAction" if draw(st.integers(0, 4)) == 0 else "Action"] = draw(
        st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=3))
    # a bucket ARN beside the object patterns: every action applies to some resource
    resources = ["arn:aws:s3:::bkt"] + [f"arn:aws:s3:::{p}" for p in draw(
        st.lists(st.sampled_from(OBJECT_PATTERNS), min_size=1, max_size=3))]
    s["NotResource" if draw(st.integers(0, 4)) == 0 else "Resource"] = resources
    if draw(st.booleans()):
        s["Condition"] = draw(st.sampled_from(CONDITIONS))
    return s


POLICIES = st.lists(statements(), min_size=1, max_size=5).map(
    lambda sts: {"Version": "2012-10-17", "Statement": sts})


def compile_policy(document: dict[str, Any]) -> Policy:
    return parse_policy(json.dumps(document).encode(), BUCKET, IDENTITY)


# --------------------------------------------------------------------- properties


@given(POLICIES, st.sampled_from(CALLERS),
       st.lists(st.sampled_from(REQUEST_ACTIONS), min_size=1, max_size=2, unique=True),
       st.one_of(st.none(), st.sampled_from(KEY_NAMES)), CONTEXTS)
def test_evaluate_agrees_with_the_model(document: dict[str, Any], caller: Caller,
                                        actions: list[str], key: str | None,
                                        ctx: dict[str, tuple[str, ...]]) -> None:
    policy = compile_policy(document)
    got = evaluate(policy, Request(caller, tuple(actions), BUCKET, key, False, ctx.get))
    assert got is model(document, caller, tuple(actions), key, ctx)


@given(POLICIES, st.sampled_from(CALLERS), st.sampled_from(REQUEST_ACTIONS[:3]), CONTEXTS)
def test_unknown_keys_never_get_more_than_each_key(document: dict[str, Any], caller: Caller,
                                                   action: str,
                                                   ctx: dict[str, tuple[str, ...]]) -> None:
    policy = compile_policy(document)
    bulk = evaluate(policy, Request(caller, (action,), BUCKET, None, True, ctx.get))
    each = [evaluate(policy, Request(caller, (action,), BUCKET, k, False, ctx.get))
            for k in KEY_NAMES]
    if bulk is Decision.ALLOW:
        assert all(d is Decision.ALLOW for d in each)
    if Decision.DENY in each:
        assert bulk is Decision.DENY


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.sampled_from(["*", "Allow", "Deny", "s3:GetObject", "arn:aws:s3:::bkt/*", ALICE,
                       "2012-10-17", "10.0.0.0/8", "aws:SourceIp", "StringEquals"])
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["Version", "Id", "Statement", "Sid", "Effect", "Principal",
                         "NotPrincipal", "Action", "NotAction", "Resource", "NotResource",
                         "Condition", "AWS", "CanonicalUser", "StringEquals", "IpAddress",
                         "aws:SourceIp", "s3:prefix", "Bool", "Null", "x"]) | st.text(max_size=6),
        children, max_size=5),
    max_leaves=30)


def parses_or_refuses(raw: bytes) -> None:
    try:
        policy = parse_policy(raw, BUCKET, IDENTITY)
    except MalformedPolicy as exc:
        assert exc.msg
        return
    for caller in CALLERS:  # whatever parsed evaluates, without raising
        evaluate(policy, Request(caller, ("s3:getobject",), BUCKET, "k"))


@given(JSON)
def test_parser_on_random_json(value: Any) -> None:
    parses_or_refuses(json.dumps(value).encode())


@given(st.dictionaries(st.sampled_from(["Version", "Id", "Statement"]), JSON, max_size=3),
       st.lists(st.dictionaries(st.sampled_from(["Sid", "Effect", "Principal", "Action",
                                                 "Resource", "Condition", "NotAction"]),
                                JSON, max_size=6), max_size=3))
def test_parser_on_policy_shaped_json(top: dict[str, Any], items: list[Any]) -> None:
    parses_or_refuses(json.dumps({**top, "Statement": items}).encode())


@given(st.binary(max_size=200))
def test_parser_on_random_bytes(raw: bytes) -> None:
    parses_or_refuses(raw)
    parses_or_refuses(b"{" + raw)
