"""Bucket policies: the IAM policy language subset S3 bucket policies use — the parsed
policy, and the evaluation of one request against it. Pure. Parsing is in
``policy_parse``, conditions in ``policy_conditions``, the actions each operation needs in
``policy_actions``.

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

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from bleepstore.s3.policy_conditions import Condition, Lookup, glob, holds

IAM_ARN = re.compile(r"arn:aws:iam::([^:/]+):(root|user/(?:[^/]+/)*([^/]+))")

# An account id or access key -> the canonical id of the BleepStore account it names.
Identity = Callable[[str], str | None]


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
