"""Parsing bucket policies with AWS's ``MalformedPolicy`` messages. Pure.

Invariants: ``parse_policy`` accepts only what ``policy.evaluate`` understands; anything
else is ``MalformedPolicy`` with AWS's message, never another exception; resources are
this bucket's ARNs only, kept as the part after ``arn:aws:s3:::`` (``bucket`` or
``bucket/key-pattern``); actions are S3 actions, kept lowercase; action names and
condition key names are matched case-insensitively (IAM's rule; the tag key after ``/`` in
``s3:ExistingObjectTag/<key>`` keeps its case).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from bleepstore.errors import MalformedPolicy
from bleepstore.s3.policy import IAM_ARN, Identity, Policy, Principals, Statement
from bleepstore.s3.policy_actions import KNOWN_ACTIONS
from bleepstore.s3.policy_conditions import OPERATORS, Condition, glob, network

MAX_POLICY_BYTES = 20 * 1024  # AWS: "Bucket policies are limited to 20 KB in size"
RAW_LIMIT = 64 * 1024  # a body larger than this is refused before it is parsed
VERSIONS = ("2012-10-17", "2008-10-17")
RESOURCE_PREFIXES = ("arn:aws:s3:::", "arn:aws-cn:s3:::", "arn:aws-us-gov:s3:::")

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
_STATEMENT_FIELDS = frozenset({"Sid", "Effect", "Principal", "NotPrincipal", "Action",
                               "NotAction", "Resource", "NotResource", "Condition"})
_PRINCIPAL_TYPES = frozenset({"AWS", "CanonicalUser", "Service", "Federated"})


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
            if key == "aws:sourceip" and any(network(v) is None for v in values):
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
