"""Bucket policies: the IAM policy language subset S3 bucket policies use. Parsing with
AWS's ``MalformedPolicy`` messages, and the evaluation of one request against a policy. Pure.

Invariants:
- ``parse_policy`` accepts only what ``evaluate`` understands; anything else is
  ``MalformedPolicy`` with AWS's message, never another exception;
- resources are this bucket's ARNs only, kept as the part after ``arn:aws:s3:::``
  (``bucket`` or ``bucket/key-pattern``); actions are S3 actions, kept lowercase;
- action names and condition key names match case-insensitively (IAM's rule; the tag key
  after ``/`` in ``s3:ExistingObjectTag/<key>`` keeps its case), resources, principals and
  condition values case-sensitively (``StringEqualsIgnoreCase`` and ``Bool`` aside);
- ``evaluate`` is IAM's order for one resource policy: an explicit Deny wins, else a
  matching Allow allows, else ``Decision.NONE`` (the caller falls back to the ACLs);
- policy variables (``${aws:username}``) are not substituted: they are literal text.
"""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bleepstore.errors import MalformedPolicy
from bleepstore.s3.router import Op

MAX_POLICY_BYTES = 20 * 1024  # AWS: "Bucket policies are limited to 20 KB in size"
RAW_LIMIT = 64 * 1024  # a body larger than this is refused before it is parsed
VERSIONS = ("2012-10-17", "2008-10-17")
RESOURCE_PREFIXES = ("arn:aws:s3:::", "arn:aws-cn:s3:::", "arn:aws-us-gov:s3:::")
IAM_ARN = re.compile(r"arn:aws:iam::([^:/]+):(root|user/(?:[^/]+/)*([^/]+))")

MSG_FIRST_BYTE = "Policies must be valid JSON and the first byte must be '{'"
MSG_JSON = "This policy contains invalid Json"
MSG_SIZE = "Policy exceeds the maximum allowed document size."
MSG_SYNTAX = "Invalid policy syntax."
MSG_RESOURCE = "Policy has invalid resource"
MSG_ACTION = "Policy has invalid action"
MSG_PRINCIPAL = "Invalid principal in policy"
MSG_NOT_APPLICABLE = "Action does not apply to any resource(s) in statement"
MSG_CONDITION_KEY = "Policy has an invalid condition key"
MSG_CONDITION_MISMATCH = ("Conditions do not apply to combination of actions and resources "
                          "in statement")
MSG_IP = "Invalid IP address in Conditions"

_OBJECT_ACTIONS = """AbortMultipartUpload BypassGovernanceRetention DeleteObject
DeleteObjectTagging DeleteObjectVersion DeleteObjectVersionTagging GetObject GetObjectAcl
GetObjectAttributes GetObjectLegalHold GetObjectRetention GetObjectTagging GetObjectTorrent
GetObjectVersion GetObjectVersionAcl GetObjectVersionAttributes GetObjectVersionForReplication
GetObjectVersionTagging GetObjectVersionTorrent InitiateReplication ListMultipartUploadParts
ObjectOwnerOverrideToBucketOwner PutObject PutObjectAcl PutObjectLegalHold PutObjectRetention
PutObjectTagging PutObjectVersionAcl PutObjectVersionTagging ReplicateDelete ReplicateObject
ReplicateTags RestoreObject"""
_BUCKET_ACTIONS = """CreateBucket DeleteBucket DeleteBucketOwnershipControls DeleteBucketPolicy
DeleteBucketWebsite GetAccelerateConfiguration GetAnalyticsConfiguration GetBucketAcl
GetBucketCORS GetBucketLocation GetBucketLogging GetBucketNotification
GetBucketObjectLockConfiguration GetBucketOwnershipControls GetBucketPolicy
GetBucketPolicyStatus GetBucketPublicAccessBlock GetBucketRequestPayment GetBucketTagging
GetBucketVersioning GetBucketWebsite GetEncryptionConfiguration
GetIntelligentTieringConfiguration GetInventoryConfiguration GetLifecycleConfiguration
GetMetricsConfiguration GetReplicationConfiguration ListBucket ListBucketMultipartUploads
ListBucketVersions PutAccelerateConfiguration PutAnalyticsConfiguration PutBucketAcl
PutBucketCORS PutBucketLogging PutBucketNotification PutBucketObjectLockConfiguration
PutBucketOwnershipControls PutBucketPolicy PutBucketPublicAccessBlock PutBucketRequestPayment
PutBucketTagging PutBucketVersioning PutBucketWebsite PutEncryptionConfiguration
PutIntelligentTieringConfiguration PutInventoryConfiguration PutLifecycleConfiguration
PutMetricsConfiguration PutReplicationConfiguration"""
_ACCOUNT_ACTIONS = """ListAllMyBuckets GetAccountPublicAccessBlock PutAccountPublicAccessBlock
CreateJob ListJobs ListAccessPoints ListStorageLensConfigurations"""
# Lowercase S3 action -> the kind of resource it applies to.
KNOWN_ACTIONS: dict[str, str] = {
    **{"s3:" + a.lower(): "account" for a in _ACCOUNT_ACTIONS.split()},
    **{"s3:" + a.lower(): "bucket" for a in _BUCKET_ACTIONS.split()},
    **{"s3:" + a.lower(): "object" for a in _OBJECT_ACTIONS.split()},
}
_S3_KEYS = frozenset("""prefix delimiter max-keys x-amz-acl x-amz-grant-read x-amz-grant-write
x-amz-grant-read-acp x-amz-grant-write-acp x-amz-grant-full-control x-amz-copy-source
x-amz-metadata-directive x-amz-server-side-encryption x-amz-server-side-encryption-aws-kms-key-id
x-amz-server-side-encryption-customer-algorithm x-amz-storage-class
x-amz-website-redirect-location x-amz-content-sha256 x-amz-object-ownership versionid
locationconstraint authtype signatureversion signatureage tlsversion requestobjecttagkeys
object-lock-mode object-lock-retain-until-date object-lock-remaining-retention-days
object-lock-legal-hold resourceaccount accesspointnetworkorigin dataaccesspointaccount
dataaccesspointarn if-match if-none-match objectcreationoperation x-amz-checksum-algorithm
existingjobpriority existingjoboperation jobsuspendedcause requestjobpriority
requestjoboperation""".split())
_S3_KEY_FAMILIES = ("existingobjecttag/", "requestobjecttag/")
_LIST_KEYS = frozenset({"s3:prefix", "s3:delimiter", "s3:max-keys"})
_LIST_ACTIONS = frozenset({"s3:listbucket", "s3:listbucketversions"})
_STRING = ("StringEquals", "StringNotEquals", "StringEqualsIgnoreCase",
           "StringNotEqualsIgnoreCase", "StringLike", "StringNotLike")
_NUMERIC = ("NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals",
            "NumericGreaterThan", "NumericGreaterThanEquals")
_DATE = ("DateEquals", "DateNotEquals", "DateLessThan", "DateLessThanEquals",
         "DateGreaterThan", "DateGreaterThanEquals")
OPERATORS = frozenset((*_STRING, *_NUMERIC, *_DATE, "Bool", "BinaryEquals", "IpAddress",
                       "NotIpAddress", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike",
                       "Null"))
NEGATED = frozenset({"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike",
                     "NumericNotEquals", "DateNotEquals", "NotIpAddress", "ArnNotEquals",
                     "ArnNotLike"})
_STATEMENT_FIELDS = frozenset({"Sid", "Effect", "Principal", "NotPrincipal", "Action",
                               "NotAction", "Resource", "NotResource", "Condition"})
_PRINCIPAL_TYPES = frozenset({"AWS", "CanonicalUser", "Service", "Federated"})

# An account id or access key -> the canonical id of the BleepStore account it names.
Identity = Callable[[str], str | None]
Lookup = Callable[[str], Sequence[str] | None]
GRANT_HEADERS = ("x-amz-grant-full-control", "x-amz-grant-read", "x-amz-grant-write",
                 "x-amz-grant-read-acp", "x-amz-grant-write-acp")


class Decision(enum.Enum):
    ALLOW = "Allow"
    DENY = "Deny"
    NONE = "None"  # the policy says nothing: the ACLs decide


@dataclass(frozen=True)
class Principals:
    """A ``Principal`` / ``NotPrincipal`` element. ``everyone``: ``"*"`` or AWS ``"*"``."""

    everyone: bool = False
    aws: tuple[str, ...] = ()
    canonical: tuple[str, ...] = ()


@dataclass(frozen=True)
class Condition:
    base: str  # the operator without qualifier and IfExists, e.g. "StringLike"
    qualifier: str | None  # "ForAnyValue" | "ForAllValues" | None
    if_exists: bool
    key: str  # normalised (``condition_key``)
    values: tuple[str, ...]


@dataclass(frozen=True)
class Statement:
    effect: str  # "Allow" | "Deny"
    sid: str | None = None
    principal: Principals | None = None
    not_principal: Principals | None = None
    actions: tuple[str, ...] | None = None
    not_actions: tuple[str, ...] | None = None
    resources: tuple[str, ...] | None = None
    not_resources: tuple[str, ...] | None = None
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Policy:
    version: str
    id: str | None
    statements: tuple[Statement, ...]


@dataclass(frozen=True)
class Caller:
    """Who asks: the BleepStore account (canonical owner id) and its access key; an
    anonymous caller has ``account`` None."""

    account: str | None = None
    access_key: str = ""


@dataclass(frozen=True)
class Request:
    """One authorization question. ``key`` None: the bucket itself. ``any_key``: a request
    over keys not known up front (DeleteObjects, POST uploads): a Deny applies when it may
    apply to some key of the bucket, an Allow only when it covers every key."""

    caller: Caller
    actions: tuple[str, ...]  # lowercase, every one needed
    bucket: str
    key: str | None = None
    any_key: bool = False
    lookup: Lookup = field(default=lambda key: None)  # condition key -> request values


# ------------------------------------------------------------------------- parsing


def _fail(message: str) -> MalformedPolicy:
    return MalformedPolicy(message)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for name, value in pairs:
        if name in seen:
            raise _fail(f"Statement/policy already has instance of {name}")
        seen[name] = value
    return seen


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _load_json(raw: bytes) -> Any:
    if len(raw) > RAW_LIMIT:
        raise _fail(MSG_SIZE)
    if raw[:1] != b"{":
        raise _fail(MSG_FIRST_BYTE)
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_pairs,
                          parse_constant=_no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError too
        raise _fail(MSG_JSON) from None


def _strings(value: Any, name: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(i, str) for i in items):
        raise _fail(MSG_SYNTAX)
    if not items:
        raise _fail(f"Missing required field {name} cannot be empty!")
    return tuple(items)


def parse_policy(raw: bytes, bucket: str, identity: Identity | None = None) -> Policy:
    """Validate a PutBucketPolicy body for ``bucket``. ``identity`` resolves the accounts
    principals name (unknown -> "Invalid principal in policy"); without it (a stored policy)
    only their form is checked."""
    doc = _load_json(raw)
    if not isinstance(doc, dict):
        raise _fail(MSG_SYNTAX)
    try:  # NOTE: AWS counts the document without insignificant whitespace
        compact = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    except (ValueError, RecursionError):
        raise _fail(MSG_JSON) from None
    if len(compact) > MAX_POLICY_BYTES:
        raise _fail(MSG_SIZE)
    for name in doc:
        if name not in ("Version", "Id", "Statement"):
            raise _fail(f"Unknown field {name}")
    version = doc.get("Version", "2008-10-17")
    if version not in VERSIONS:
        raise _fail("The policy must contain a valid version string")
    pid = doc.get("Id")
    if pid is not None and not isinstance(pid, str):
        raise _fail(MSG_SYNTAX)
    if "Statement" not in doc:
        raise _fail("Missing required field Statement")
    items = doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]
    if not items:
        raise _fail("Could not parse the policy: Statement is empty!")
    statements = tuple(_statement(item, bucket, identity) for item in items)
    sids = [s.sid for s in statements if s.sid]
    if len(sids) != len(set(sids)):
        raise _fail("Statement IDs (SID) in a single policy must be unique.")
    return Policy(version, pid, statements)


def _statement(item: Any, bucket: str, identity: Identity | None) -> Statement:
    if not isinstance(item, dict):
        raise _fail(MSG_SYNTAX)
    for name in item:
        if name not in _STATEMENT_FIELDS:
            raise _fail(f"Unknown field {name}")
    for name in ("Principal", "Action", "Resource"):
        if name in item and "Not" + name in item:
            raise _fail(f"Statement/policy already has instance of {name}")
    effect, sid = item.get("Effect"), item.get("Sid")
    if effect is None:
        raise _fail("Missing required field Effect")
    if effect not in ("Allow", "Deny"):
        raise _fail(f"Invalid effect: {effect if isinstance(effect, str) else json.dumps(effect)}")
    if sid is not None and not isinstance(sid, str):
        raise _fail(MSG_SYNTAX)
    principal = _either(item, "Principal", lambda v: _principals(v, identity))
    actions = _either(item, "Action", _actions)
    resources = _either(item, "Resource", lambda v: _resources(v, bucket))
    conditions = _conditions(item.get("Condition"))
    st = Statement(effect, sid or None, principal[0], principal[1], actions[0], actions[1],
                   resources[0], resources[1], conditions)
    _check_applicable(st)
    return st


def _either(item: dict[str, Any], name: str, parse: Callable[[Any], Any]) -> tuple[Any, Any]:
    if name in item:
        return parse(item[name]), None
    if "Not" + name in item:
        return None, parse(item["Not" + name])
    raise _fail(f"Missing required field {name}")


def _principals(value: Any, identity: Identity | None) -> Principals:
    if value == "*":
        return Principals(everyone=True)
    if not isinstance(value, dict) or not value:
        raise _fail(MSG_PRINCIPAL)
    aws: tuple[str, ...] = ()
    canonical: tuple[str, ...] = ()
    for kind, raw in value.items():
        if kind not in _PRINCIPAL_TYPES:
            raise _fail(MSG_PRINCIPAL)
        names = _strings(raw, "Principal")
        if kind == "AWS":
            aws = tuple(_aws_principal(n, identity) for n in names)
        elif kind == "CanonicalUser":
            canonical = tuple(_canonical_principal(n, identity) for n in names)
        elif not all(names):  # Service / Federated: valid, never a BleepStore caller
            raise _fail(MSG_PRINCIPAL)
    return Principals("*" in aws, tuple(a for a in aws if a != "*"), canonical)


def _aws_principal(name: str, identity: Identity | None) -> str:
    if name == "*":
        return name
    arn = IAM_ARN.fullmatch(name)
    account = arn.group(1) if arn else name
    if not account or ":" in account or name.startswith("arn:") and arn is None:
        raise _fail(MSG_PRINCIPAL)
    if identity is not None:
        owner = identity(account)
        user = arn.group(3) if arn is not None else None
        # NOTE: a BleepStore account has one user, named by its access key
        if owner is None or user is not None and (user == owner or identity(user) != owner):
            raise _fail(MSG_PRINCIPAL)
    return name


def _canonical_principal(name: str, identity: Identity | None) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", name):
        raise _fail(MSG_PRINCIPAL)
    if identity is not None and identity(name) != name:
        raise _fail(MSG_PRINCIPAL)
    return name


def _actions(value: Any) -> tuple[str, ...]:
    out = []
    for name in _strings(value, "Action"):
        lowered = name.lower()
        if lowered == "*":
            lowered = "s3:*"
        if not re.fullmatch(r"s3:[a-z0-9*?]+", lowered) or not any(
                glob(lowered, known) for known in KNOWN_ACTIONS):
            raise _fail(MSG_ACTION)
        out.append(lowered)
    return tuple(out)


def _resources(value: Any, bucket: str) -> tuple[str, ...]:
    out = []
    for name in _strings(value, "Resource"):
        prefix = next((p for p in RESOURCE_PREFIXES if name.startswith(p)), None)
        path = name[len(prefix):] if prefix is not None else ""
        if path != bucket and not path.startswith(bucket + "/"):
            raise _fail(MSG_RESOURCE)
        out.append(path)
    return tuple(out)


def parse_operator(name: str) -> tuple[str, str | None, bool] | None:
    """``ForAnyValue:StringLikeIfExists`` -> ("StringLike", "ForAnyValue", True)."""
    qualifier, sep, base = name.partition(":")
    if not sep:
        qualifier, base = "", name
    elif qualifier not in ("ForAnyValue", "ForAllValues"):
        return None
    if_exists = base not in OPERATORS and base.endswith("IfExists")
    base = base.removesuffix("IfExists") if if_exists else base
    if base not in OPERATORS or base == "Null" and (if_exists or qualifier):
        return None
    return base, qualifier or None, if_exists


def condition_key(name: str) -> str:
    """Key names are case-insensitive; a tag key after ``/`` keeps its case."""
    service, slash, rest = name.partition("/")
    return service.lower() + slash + rest


def _valid_key(key: str) -> bool:
    service, _, name = key.partition(":")
    if service == "aws":
        return bool(name)
    if service != "s3":
        return False
    family = next((f for f in _S3_KEY_FAMILIES if name.startswith(f)), None)
    return name in _S3_KEYS or family is not None and len(name) > len(family)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise _fail(MSG_SYNTAX)


def _conditions(block: Any) -> tuple[Condition, ...]:
    if block is None:
        return ()
    if not isinstance(block, dict):
        raise _fail(MSG_SYNTAX)
    out = []
    for op_name, keys in block.items():
        parsed = parse_operator(op_name)
        if parsed is None:
            raise _fail(f"Invalid Condition type : {op_name}")
        if not isinstance(keys, dict):
            raise _fail(MSG_SYNTAX)
        for name, raw in keys.items():
            key = condition_key(name)
            if not _valid_key(key):
                raise _fail(MSG_CONDITION_KEY)
            values = tuple(_value(v) for v in (raw if isinstance(raw, list) else [raw]))
            if key == "aws:sourceip" and any(_network(v) is None for v in values):
                raise _fail(MSG_IP)
            out.append(Condition(parsed[0], parsed[1], parsed[2], key, values))
    return tuple(out)


def _check_applicable(st: Statement) -> None:
    """AWS's two cross-checks: a list condition key with a named non-list action, and an
    action that applies to none of the statement's resource kinds."""
    named = [a for a in st.actions or () if "*" not in a and "?" not in a]
    if any(c.key in _LIST_KEYS for c in st.conditions) and any(
            a not in _LIST_ACTIONS for a in named):
        raise _fail(MSG_CONDITION_MISMATCH)
    if st.actions is None or st.resources is None:
        return
    kinds = {"object" if "/" in r else "bucket" for r in st.resources}
    for pattern in st.actions:
        if not any(kind in kinds for known, kind in KNOWN_ACTIONS.items()
                   if glob(pattern, known)):
            raise _fail(MSG_NOT_APPLICABLE)


# ------------------------------------------------------------------------- matching


def glob(pattern: str, text: str) -> bool:
    """IAM wildcards: ``*`` any run of characters, ``?`` exactly one. O(len * len)."""
    p = t = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] in ("?", text[t]) and pattern[p] != "*":
            p, t = p + 1, t + 1
        elif p < len(pattern) and pattern[p] == "*":
            star, mark, p = p, t, p + 1
        elif star >= 0:
            mark += 1
            p, t = star + 1, mark
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def _states_after(pattern: str, prefix: str) -> set[int]:
    """Positions of ``pattern`` reachable once ``prefix`` is consumed (an NFA run)."""
    def closure(states: set[int]) -> set[int]:
        out = set(states)
        for s in states:
            while s < len(pattern) and pattern[s] == "*":
                s += 1
                out.add(s)
        return out

    states = closure({0})
    for ch in prefix:
        nxt = set()
        for s in states:
            if s < len(pattern):
                if pattern[s] == "*":
                    nxt.add(s)
                elif pattern[s] in ("?", ch):
                    nxt.add(s + 1)
        states = closure(nxt)
    return states


def matches_some_key(pattern: str, bucket: str) -> bool:
    """True when ``pattern`` matches ``bucket/k`` for some non-empty key ``k``."""
    return any(s < len(pattern) for s in _states_after(pattern, bucket + "/"))


def matches_every_key(pattern: str, bucket: str) -> bool:
    """True when ``pattern`` matches ``bucket/k`` for every non-empty key ``k``."""
    return any(s < len(pattern) and set(pattern[s:]) == {"*"}
               for s in _states_after(pattern, bucket + "/"))


def _principal_matches(p: Principals, caller: Caller) -> bool:
    if p.everyone:
        return True
    if caller.account is None:
        return False
    if caller.account in p.canonical:
        return True
    mine = (caller.account, caller.access_key)
    for name in p.aws:
        arn = IAM_ARN.fullmatch(name)
        if arn is None:
            if name in mine:
                return True
        elif arn.group(1) in mine and (arn.group(3) is None
                                       or arn.group(3) == caller.access_key):
            return True
    return False


def _resource_matches(st: Statement, req: Request) -> bool:
    if not req.any_key:
        target = req.bucket if req.key is None else f"{req.bucket}/{req.key}"
        if st.resources is not None:
            return any(glob(r, target) for r in st.resources)
        return not any(glob(r, target) for r in st.not_resources or ())
    # NOTE: unknown keys: a Deny applies if it may hit some key, an Allow only if it
    # covers every key, so a bulk request never gets more than each key would.
    some, every = matches_some_key, matches_every_key
    if st.effect == "Allow":
        if st.resources is not None:
            return any(every(r, req.bucket) for r in st.resources)
        return not any(some(r, req.bucket) for r in st.not_resources or ())
    if st.resources is not None:
        return any(some(r, req.bucket) for r in st.resources)
    return not any(every(r, req.bucket) for r in st.not_resources or ())


def _matches(st: Statement, req: Request, action: str) -> bool:
    if st.principal is not None and not _principal_matches(st.principal, req.caller):
        return False
    if st.not_principal is not None and _principal_matches(st.not_principal, req.caller):
        return False
    if st.actions is not None and not any(glob(a, action) for a in st.actions):
        return False
    if st.not_actions is not None and any(glob(a, action) for a in st.not_actions):
        return False
    return _resource_matches(st, req) and all(holds(c, req.lookup) for c in st.conditions)


def evaluate(policy: Policy, req: Request) -> Decision:
    """Deny if any needed action is explicitly denied, Allow if every one is allowed."""
    allowed = 0
    for action in req.actions:
        verdict = Decision.NONE
        for st in policy.statements:
            if _matches(st, req, action):
                if st.effect == "Deny":
                    return Decision.DENY
                verdict = Decision.ALLOW
        allowed += verdict is Decision.ALLOW
    return Decision.ALLOW if req.actions and allowed == len(req.actions) else Decision.NONE


# ------------------------------------------------------------------------- conditions


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def _in_network(value: str, expected: str) -> bool:
    net = _network(expected)
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return net is not None and ip.version == net.version and ip in net


def _number(text: str) -> Decimal | None:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _instant(text: str) -> float | None:
    number = _number(text)
    if number is not None:
        return float(number)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _binary(value: str, expected: str) -> bool:
    try:
        return base64.b64decode(value, validate=True) == base64.b64decode(expected,
                                                                          validate=True)
    except (binascii.Error, ValueError):
        return False


def _ordered(parse: Callable[[str], Any], test: Callable[[Any, Any], bool]
             ) -> Callable[[str, str], bool]:
    def compare(value: str, expected: str) -> bool:
        left, right = parse(value), parse(expected)
        return left is not None and right is not None and bool(test(left, right))
    return compare


def _string_like(value: str, expected: str) -> bool:
    return glob(expected, value)


def _ignore_case(value: str, expected: str) -> bool:
    return value.casefold() == expected.casefold()


def _bool(value: str, expected: str) -> bool:
    return value.lower() == expected.lower()


_COMPARE: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": operator.eq, "StringEqualsIgnoreCase": _ignore_case,
    "StringLike": _string_like, "Bool": _bool, "BinaryEquals": _binary,
    "IpAddress": _in_network, "ArnEquals": _string_like, "ArnLike": _string_like,
    "NumericEquals": _ordered(_number, operator.eq),
    "NumericLessThan": _ordered(_number, operator.lt),
    "NumericLessThanEquals": _ordered(_number, operator.le),
    "NumericGreaterThan": _ordered(_number, operator.gt),
    "NumericGreaterThanEquals": _ordered(_number, operator.ge),
    "DateEquals": _ordered(_instant, operator.eq),
    "DateLessThan": _ordered(_instant, operator.lt),
    "DateLessThanEquals": _ordered(_instant, operator.le),
    "DateGreaterThan": _ordered(_instant, operator.gt),
    "DateGreaterThanEquals": _ordered(_instant, operator.ge),
}
_POSITIVE = {"StringNotEquals": "StringEquals", "StringNotEqualsIgnoreCase":
             "StringEqualsIgnoreCase", "StringNotLike": "StringLike",
             "NumericNotEquals": "NumericEquals", "DateNotEquals": "DateEquals",
             "NotIpAddress": "IpAddress", "ArnNotEquals": "ArnEquals",
             "ArnNotLike": "ArnLike"}


def holds(c: Condition, lookup: Lookup) -> bool:
    """IAM's condition semantics: values of one key are ORed (a negated operator holds when
    no value matches); a key the request lacks fails a positive operator and satisfies a
    negated one, ``...IfExists`` and ``ForAllValues``; ``Null`` tests presence."""
    found = lookup(c.key)
    missing = not found
    if c.base == "Null":
        return any((v.lower() == "true") == missing for v in c.values)
    if missing:
        return c.if_exists or c.qualifier == "ForAllValues" or (
            c.qualifier is None and c.base in NEGATED)
    negated = c.base in NEGATED
    compare = _COMPARE[_POSITIVE.get(c.base, c.base)]

    def one(value: str) -> bool:
        hit = any(compare(value, e) for e in c.values)
        return not hit if negated else hit

    values = list(found or ())
    if c.qualifier == "ForAllValues" or c.qualifier is None and negated:
        return all(one(v) for v in values)
    return any(one(v) for v in values)


# ------------------------------------------------------------------------- operations


_OBJECT_OPS: dict[Op, tuple[str, str | None]] = {
    Op.PUT_OBJECT: ("s3:putobject", None), Op.COPY_OBJECT: ("s3:putobject", None),
    Op.POST_OBJECT: ("s3:putobject", None),
    Op.GET_OBJECT: ("s3:getobject", "s3:getobjectversion"),
    Op.HEAD_OBJECT: ("s3:getobject", "s3:getobjectversion"),
    Op.DELETE_OBJECT: ("s3:deleteobject", "s3:deleteobjectversion"),
    Op.GET_OBJECT_ACL: ("s3:getobjectacl", "s3:getobjectversionacl"),
    Op.PUT_OBJECT_ACL: ("s3:putobjectacl", "s3:putobjectversionacl"),
    Op.GET_OBJECT_TAGGING: ("s3:getobjecttagging", "s3:getobjectversiontagging"),
    Op.PUT_OBJECT_TAGGING: ("s3:putobjecttagging", "s3:putobjectversiontagging"),
    Op.DELETE_OBJECT_TAGGING: ("s3:deleteobjecttagging", "s3:deleteobjectversiontagging"),
    Op.GET_OBJECT_ATTRIBUTES: ("s3:getobjectattributes", "s3:getobjectversionattributes"),
    Op.CREATE_MULTIPART_UPLOAD: ("s3:putobject", None),
    Op.UPLOAD_PART: ("s3:putobject", None), Op.UPLOAD_PART_COPY: ("s3:putobject", None),
    Op.COMPLETE_MULTIPART_UPLOAD: ("s3:putobject", None),
    Op.ABORT_MULTIPART_UPLOAD: ("s3:abortmultipartupload", None),
    Op.LIST_PARTS: ("s3:listmultipartuploadparts", None),
    Op.DELETE_OBJECTS: ("s3:deleteobject", None),
}
_BUCKET_OPS: dict[Op, str] = {
    Op.DELETE_BUCKET: "s3:deletebucket", Op.HEAD_BUCKET: "s3:listbucket",
    Op.GET_BUCKET_LOCATION: "s3:getbucketlocation", Op.GET_BUCKET_ACL: "s3:getbucketacl",
    Op.PUT_BUCKET_ACL: "s3:putbucketacl", Op.GET_BUCKET_VERSIONING: "s3:getbucketversioning",
    Op.PUT_BUCKET_VERSIONING: "s3:putbucketversioning",
    Op.LIST_OBJECT_VERSIONS: "s3:listbucketversions",
    Op.GET_BUCKET_TAGGING: "s3:getbuckettagging", Op.PUT_BUCKET_TAGGING: "s3:putbuckettagging",
    Op.DELETE_BUCKET_TAGGING: "s3:putbuckettagging",
    Op.GET_BUCKET_POLICY: "s3:getbucketpolicy", Op.PUT_BUCKET_POLICY: "s3:putbucketpolicy",
    Op.DELETE_BUCKET_POLICY: "s3:deletebucketpolicy",
    Op.GET_BUCKET_POLICY_STATUS: "s3:getbucketpolicystatus",
    Op.GET_PUBLIC_ACCESS_BLOCK: "s3:getbucketpublicaccessblock",
    Op.PUT_PUBLIC_ACCESS_BLOCK: "s3:putbucketpublicaccessblock",
    Op.DELETE_PUBLIC_ACCESS_BLOCK: "s3:putbucketpublicaccessblock",
    Op.GET_BUCKET_CORS: "s3:getbucketcors", Op.PUT_BUCKET_CORS: "s3:putbucketcors",
    Op.DELETE_BUCKET_CORS: "s3:putbucketcors",
    Op.GET_BUCKET_LIFECYCLE: "s3:getlifecycleconfiguration",
    Op.PUT_BUCKET_LIFECYCLE: "s3:putlifecycleconfiguration",
    Op.DELETE_BUCKET_LIFECYCLE: "s3:putlifecycleconfiguration",
    Op.LIST_OBJECTS: "s3:listbucket", Op.LIST_OBJECTS_V2: "s3:listbucket",
    Op.LIST_MULTIPART_UPLOADS: "s3:listbucketmultipartuploads",
}
ANY_KEY_OPS = frozenset({Op.DELETE_OBJECTS, Op.POST_OBJECT})
_ACL_WRITES = frozenset({Op.PUT_OBJECT, Op.COPY_OBJECT, Op.CREATE_MULTIPART_UPLOAD})


def is_object_op(op: Op) -> bool:
    return op in _OBJECT_OPS


def actions_for(op: Op, query: Mapping[str, str], header: Callable[[str], str | None],
                *, versioned: bool = False) -> tuple[str, ...]:
    """The IAM actions a request needs (AWS's "Required permissions" per operation); ()
    for the operations no bucket policy governs (ListBuckets, CreateBucket)."""
    if op in _BUCKET_OPS:
        return (_BUCKET_OPS[op],)
    if op not in _OBJECT_OPS:
        return ()
    plain, by_version = _OBJECT_OPS[op]
    if op is Op.DELETE_OBJECTS:  # NOTE: version ids are in the body: both when versioned
        return ("s3:deleteobject", "s3:deleteobjectversion") if versioned else (plain,)
    actions = [by_version if by_version and "versionId" in query else plain]
    if op in _ACL_WRITES:
        if header("x-amz-acl") is not None or any(
                header(h) is not None for h in GRANT_HEADERS):
            actions.append("s3:putobjectacl")
        if header("x-amz-tagging") is not None:
            actions.append("s3:putobjecttagging")
    return tuple(actions)
