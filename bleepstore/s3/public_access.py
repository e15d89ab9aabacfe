"""The public access block (the four flags of PutPublicAccessBlock) and AWS's meaning of
"public" for ACLs and bucket policies (GetBucketPolicyStatus, BlockPublicPolicy,
RestrictPublicBuckets). Pure.

Invariants:
- an ACL is public when it grants anything to AllUsers or AuthenticatedUsers;
- a policy is public when an Allow statement applies to everyone (``"*"``, AWS ``"*"`` or a
  ``NotPrincipal``) and no condition pins it to fixed values of the keys AWS lists
  (``aws:SourceIp`` with a CIDR no wider than /8 for IPv4 and /32 for IPv6, the source and
  principal keys, the KMS key id and access point keys); a value with ``*``, ``?`` or a
  policy variable is not fixed;
- the stored form is compact JSON with the four flags, every flag present.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lxml import etree

from bleepstore.errors import MalformedXML, S3Error
from bleepstore.model import ALL_USERS, AUTHENTICATED_USERS, Acl, Grant
from bleepstore.s3.policy import Policy, Statement
from bleepstore.s3.policy_actions import GRANT_HEADERS
from bleepstore.s3.policy_conditions import Condition
from bleepstore.s3.xml import S3NS, children, local_name, parse_document, text

DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
PUBLIC_GROUPS = (ALL_USERS, AUTHENTICATED_USERS)
PUBLIC_CANNED = frozenset({"public-read", "public-read-write", "authenticated-read"})
FIXED_VALUE_KEYS = frozenset({
    "aws:sourceip", "aws:sourcearn", "aws:sourcevpc", "aws:sourcevpce", "aws:sourceowner",
    "aws:sourceaccount", "aws:userid", "aws:principalorgid", "aws:principalarn",
    "aws:principalaccount", "s3:x-amz-server-side-encryption-aws-kms-key-id",
    "s3:dataaccesspointarn", "s3:dataaccesspointaccount"})
LIMITING_OPERATORS = frozenset({"StringEquals", "StringEqualsIgnoreCase", "StringLike",
                                "ArnEquals", "ArnLike", "IpAddress"})


@dataclass(frozen=True)
class PublicAccessBlock:
    """A bucket's PublicAccessBlockConfiguration; all False = no configuration."""

    block_public_acls: bool = False
    ignore_public_acls: bool = False
    block_public_policy: bool = False
    restrict_public_buckets: bool = False


# XML / JSON element name -> field, in AWS's order.
FLAGS = (("BlockPublicAcls", "block_public_acls"), ("IgnorePublicAcls", "ignore_public_acls"),
         ("BlockPublicPolicy", "block_public_policy"),
         ("RestrictPublicBuckets", "restrict_public_buckets"))
_FIELD = dict(FLAGS)
NONE = PublicAccessBlock()


def _flag(raw: str) -> bool:
    lowered = raw.lower()
    if lowered not in ("true", "false"):
        raise MalformedXML()
    return lowered == "true"


def parse_configuration(body: bytes) -> PublicAccessBlock:
    """A ``PublicAccessBlockConfiguration`` body; a flag left out is false."""
    root = parse_document(body)
    if local_name(root) != "PublicAccessBlockConfiguration":
        raise MalformedXML()
    values: dict[str, bool] = {}
    for el in root:
        name = _FIELD.get(local_name(el))
        if name is None or name in values:
            raise MalformedXML()
        values[name] = _flag(text(el))
    return PublicAccessBlock(**values)


def to_json(pab: PublicAccessBlock) -> str:
    return json.dumps({name: getattr(pab, attr) for name, attr in FLAGS},
                      separators=(",", ":"))


def from_json(document: str | None) -> PublicAccessBlock:
    if document is None:
        return NONE
    stored: dict[str, Any] = json.loads(document)
    return PublicAccessBlock(**{attr: bool(stored.get(name)) for name, attr in FLAGS})


def _document(root_name: str, items: list[tuple[str, bool]]) -> bytes:
    ns = "{" + S3NS + "}"
    root = etree.Element(ns + root_name, nsmap={None: S3NS})
    for name, value in items:
        etree.SubElement(root, ns + name).text = "true" if value else "false"
    return DECLARATION + bytes(etree.tostring(root, encoding="UTF-8"))


def render_configuration(pab: PublicAccessBlock) -> bytes:
    return _document("PublicAccessBlockConfiguration",
                     [(name, getattr(pab, attr)) for name, attr in FLAGS])


def render_policy_status(is_public: bool) -> bytes:
    # NOTE: lowercase: botocore reads only "true" as True (AWS's sample shows TRUE)
    return _document("PolicyStatus", [("IsPublic", is_public)])


# --------------------------------------------------------------------------- ACLs


def is_public_grant(grant: Grant) -> bool:
    return grant.grantee.type == "Group" and grant.grantee.uri in PUBLIC_GROUPS


def without_public_grants(acl: Acl) -> Acl:
    """The ACL as IgnorePublicAcls sees it."""
    if not any(is_public_grant(g) for g in acl.grants):
        return acl
    return Acl(acl.owner, tuple(g for g in acl.grants if not is_public_grant(g)))


def headers_grant_public(header: Callable[[str], str | None]) -> bool:
    """True when ``x-amz-acl`` or an ``x-amz-grant-*`` header makes the resource public."""
    canned = header("x-amz-acl")
    if canned is not None and canned.strip() in PUBLIC_CANNED:
        return True
    return any(group in (header(name) or "") for name in GRANT_HEADERS
               for group in PUBLIC_GROUPS)


def acl_body_is_public(body: bytes) -> bool:
    """True when an AccessControlPolicy body grants to a public group (a body that does not
    parse is not public: the ACL operation refuses it itself)."""
    try:
        root = parse_document(body)
    except S3Error:
        return False
    return any(text(uri) in PUBLIC_GROUPS for grant_list in children(root, "AccessControlList")
               for grant in children(grant_list, "Grant")
               for grantee in children(grant, "Grantee")
               for uri in children(grantee, "URI"))


# --------------------------------------------------------------------------- policies


def _fixed(key: str, value: str) -> bool:
    if "*" in value or "?" in value or "${" in value:
        return False
    if key != "aws:sourceip":
        return True
    try:
        net = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return False
    return net.prefixlen >= (8 if net.version == 4 else 32)


def _limits(c: Condition) -> bool:
    return (c.base in LIMITING_OPERATORS and not c.if_exists and c.qualifier != "ForAllValues"
            and c.key in FIXED_VALUE_KEYS and bool(c.values)
            and all(_fixed(c.key, v) for v in c.values))


def _for_everyone(st: Statement) -> bool:
    if st.principal is not None:
        return st.principal.everyone
    return st.not_principal is not None and not st.not_principal.everyone


def statement_is_public(st: Statement) -> bool:
    return st.effect == "Allow" and _for_everyone(st) and not any(
        _limits(c) for c in st.conditions)


def policy_is_public(policy: Policy) -> bool:
    """GetBucketPolicyStatus's IsPublic (AWS's "The meaning of public")."""
    return any(statement_is_public(st) for st in policy.statements)
