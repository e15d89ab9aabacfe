"""Access control lists: canned values, grant headers, XML policies, JSON storage, checks.

Pure (no I/O). Invariants (s3-api.md §13, storage.md §2.15):
- an ``Acl`` always names its owner; the owner is never granted anything implicitly in
  the grant list, but ``allowed`` always lets the owner through (§13.4 rule 1);
- grantees are ``CanonicalUser`` (64-hex id, lowercase) or ``Group`` (one of GROUP_URIS);
- user-supplied DisplayNames are never trusted: they come from ``display_names(id)``;
- JSON is written with sorted keys; ``"{}"`` means "owner FULL_CONTROL".
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

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
from bleepstore.s3.xml import (
    XSI,
    child,
    child_text,
    children,
    local_name,
    parse_document,
)

MAX_GRANTS = 100
CANNED_ACLS = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
)
# Header -> permission, in the order grants are built from headers.
GRANT_HEADERS = (
    ("x-amz-grant-full-control", "FULL_CONTROL"),
    ("x-amz-grant-read", "READ"),
    ("x-amz-grant-write", "WRITE"),
    ("x-amz-grant-read-acp", "READ_ACP"),
    ("x-amz-grant-write-acp", "WRITE_ACP"),
)
DisplayNames = Callable[[str], str | None]

_CANONICAL_ID = re.compile(r"[0-9a-f]{64}")
_GRANT_ITEM = re.compile(r'\s*([A-Za-z]+)\s*=\s*(?:"([^"]*)"|([^,"\s]+))\s*(,|$)')


def owner_id_for(access_key: str) -> str:
    """Canonical owner ID: lowercase hex SHA-256 of the access key ID (auth.md §9)."""
    return hashlib.sha256(access_key.encode("utf-8")).hexdigest()


def _user(owner: Owner) -> Grantee:
    return Grantee("CanonicalUser", id=owner.id, display_name=owner.display_name)


def _group(uri: str) -> Grantee:
    return Grantee("Group", uri=uri)


def default_acl(owner: Owner) -> Acl:
    """The ``private`` ACL: one FULL_CONTROL grant to the owner."""
    return Acl(owner, (Grant(_user(owner), "FULL_CONTROL"),))


# --- JSON storage (storage.md §2.15) ----------------------------------------------------


def _grantee_json(g: Grantee) -> dict[str, str]:
    if g.type == "Group":
        return {"type": "Group", "uri": g.uri}
    out = {"type": g.type, "id": g.id}
    if g.display_name:
        out["display_name"] = g.display_name
    return out


def acl_to_json(acl: Acl) -> str:
    """Serialize for the ``acl`` column (sorted keys, compact)."""
    doc = {
        "owner": {"id": acl.owner.id, "display_name": acl.owner.display_name},
        "grants": [
            {"grantee": _grantee_json(g.grantee), "permission": g.permission}
            for g in acl.grants
        ],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def acl_from_json(text: str, default_owner: Owner) -> Acl:
    """Load an ``acl`` column; ``"{}"`` (or "") is the default ACL of ``default_owner``.

    A stored document that cannot be read is an ``InternalError`` (stored data, not input).
    """
    try:
        doc: Any = json.loads(text) if text.strip() else {}
        if not doc:
            return default_acl(default_owner)
        o = doc.get("owner")
        owner = Owner(o["id"], o.get("display_name", "")) if o else default_owner
        grants = tuple(
            Grant(
                Grantee(
                    g["grantee"]["type"],
                    id=g["grantee"].get("id", ""),
                    display_name=g["grantee"].get("display_name", ""),
                    uri=g["grantee"].get("uri", ""),
                ),
                g["permission"],
            )
            for g in doc.get("grants", [])
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InternalError("stored ACL document is corrupt") from exc
    return Acl(owner, grants)


# --- canned ACLs and grant headers (§13.2) ------------------------------------------------


def canned_acl(
    name: str, owner: Owner, *, bucket_owner: Owner | None, for_bucket: bool
) -> Acl:
    """Expand an ``x-amz-acl`` value for a resource owned by ``owner``.

    Unknown -> ``InvalidArgument`` (ArgumentName ``x-amz-acl``). Object-only values on a
    bucket and ``log-delivery-write`` on an object are ``private`` [BS].
    """
    value = name.strip()
    if value not in CANNED_ACLS:
        raise InvalidArgument(None, ArgumentName="x-amz-acl", ArgumentValue=name)
    extra: list[Grant] = []
    if value == "public-read":
        extra = [Grant(_group(ALL_USERS), "READ")]
    elif value == "public-read-write":
        extra = [Grant(_group(ALL_USERS), "READ"), Grant(_group(ALL_USERS), "WRITE")]
    elif value == "authenticated-read":
        extra = [Grant(_group(AUTHENTICATED_USERS), "READ")]
    elif value == "log-delivery-write" and for_bucket:
        extra = [Grant(_group(LOG_DELIVERY), "WRITE"), Grant(_group(LOG_DELIVERY), "READ_ACP")]
    elif (value.startswith("bucket-owner-") and not for_bucket
          and bucket_owner is not None and bucket_owner.id != owner.id):
        perm = "READ" if value == "bucket-owner-read" else "FULL_CONTROL"
        extra = [Grant(_user(bucket_owner), perm)]
    return Acl(owner, default_acl(owner).grants + tuple(extra))


def _canonical_user(raw_id: str, display_names: DisplayNames, arg: str) -> Grantee:
    """A CanonicalUser grantee; an ID that is not 64 hex digits is 400 InvalidArgument
    "Invalid id" naming ``arg`` [S3] (never stored as an opaque grantee: S3 refuses it)."""
    cid = raw_id.strip().lower()
    if not _CANONICAL_ID.fullmatch(cid):
        raise InvalidArgument("Invalid id", ArgumentName=arg, ArgumentValue=raw_id)
    return Grantee("CanonicalUser", id=cid, display_name=display_names(cid) or "")


def _header_grantee(kind: str, value: str, item: str, header: str,
                    names: DisplayNames) -> Grantee:
    """One ``type=value`` of a grant header. [S3] errors name the grantee type (``id``,
    ``uri``) and its value, or, for an unknown type, the header and the whole item."""
    kind = kind.lower()
    if kind == "id":
        return _canonical_user(value, names, "id")
    if kind == "uri":
        if value not in GROUP_URIS:
            raise InvalidArgument("Invalid group uri", ArgumentName="uri", ArgumentValue=value)
        return _group(value)
    if kind == "emailaddress":
        raise UnresolvableGrantByEmailAddress(None, EmailAddress=value)
    raise InvalidArgument(
        "Argument format not recognized", ArgumentName=header, ArgumentValue=item
    )


def parse_grant_header(header: str, value: str, names: DisplayNames) -> list[Grantee]:
    """Parse ``type="value", type=value ...`` (type: id, uri, emailAddress)."""
    grantees: list[Grantee] = []
    pos, end = 0, len(value)
    while True:
        m = _GRANT_ITEM.match(value, pos)
        if m is None:
            raise InvalidArgument(
                "Argument format not recognized", ArgumentName=header, ArgumentValue=value
            )
        quoted, bare = m.group(2), m.group(3)
        item = m.group(0).strip().removesuffix(",").rstrip()  # e.g. 'fakekey="1234"'
        grantees.append(_header_grantee(m.group(1), quoted if bare is None else bare,
                                        item, header, names))
        pos = m.end()
        if pos >= end:
            if m.group(4) == ",":  # trailing comma
                raise InvalidArgument(
                    "Argument format not recognized", ArgumentName=header, ArgumentValue=value
                )
            return grantees


def acl_from_headers(
    get: Callable[[str], str | None],
    owner: Owner,
    *,
    bucket_owner: Owner | None,
    for_bucket: bool,
    display_names: DisplayNames,
) -> Acl | None:
    """ACL from ``x-amz-acl`` or ``x-amz-grant-*``; None when no ACL header is present.

    Grant headers give exactly the listed grants, in the order of ``GRANT_HEADERS`` then
    of each header's list; the owner is not added [S3]. A canned ACL together with any
    grant header is 400 InvalidRequest [S3] (docs/decisions.md).
    """
    canned = get("x-amz-acl")
    present = [(h, perm, v) for h, perm in GRANT_HEADERS if (v := get(h)) is not None]
    if canned is not None and present:
        raise InvalidRequest("Specifying both Canned ACLs and Header Grants is not allowed")
    if canned is not None:
        return canned_acl(canned, owner, bucket_owner=bucket_owner, for_bucket=for_bucket)
    if not present:
        return None
    grants = tuple(
        Grant(grantee, perm)
        for header, perm, value in present
        for grantee in parse_grant_header(header, value, display_names)
    )
    return Acl(owner, grants)


# --- AccessControlPolicy XML (§13.3) ---------------------------------------------------


def _xml_grantee(el: Any, names: DisplayNames) -> Grantee:
    kind = (el.get(f"{{{XSI}}}type") or "").strip()
    kind = kind.rpartition(":")[2]  # tolerate a prefixed QName value
    if kind == "CanonicalUser":
        cid = child_text(el, "ID")
        if not cid:
            raise MalformedACLError()
        return _canonical_user(cid, names, "CanonicalUser/ID")
    if kind == "Group":
        uri = child_text(el, "URI")
        if not uri:
            raise MalformedACLError()
        if uri not in GROUP_URIS:
            # [S3] an unknown group is not a schema error (docs/decisions.md)
            raise InvalidArgument("Invalid group uri", ArgumentName="Group/URI",
                                  ArgumentValue=uri)
        return _group(uri)
    if kind == "AmazonCustomerByEmail":
        raise UnresolvableGrantByEmailAddress(None, EmailAddress=child_text(el, "EmailAddress"))
    raise MalformedACLError()


def _xml_grant(el: Any, names: DisplayNames) -> Grant:
    grantee_el = child(el, "Grantee")
    permission = child_text(el, "Permission")
    if grantee_el is None or permission not in PERMISSIONS:
        raise MalformedACLError()
    return Grant(_xml_grantee(grantee_el, names), permission or "")


def acl_from_xml(body: bytes, current_owner: Owner, display_names: DisplayNames) -> Acl:
    """Parse an ``AccessControlPolicy`` body for PutBucketAcl / PutObjectAcl.

    ``Owner/ID`` must equal ``current_owner.id`` (else ``AccessDenied`` [BS]); the stored
    owner is kept. Everything malformed -> ``MalformedACLError``.
    """
    root = parse_document(body, MalformedACLError)
    if local_name(root) != "AccessControlPolicy":
        raise MalformedACLError()
    owner_el = child(root, "Owner")
    acl_el = child(root, "AccessControlList")
    if owner_el is None or acl_el is None:
        raise MalformedACLError()
    owner_id = child_text(owner_el, "ID")
    if not owner_id:
        raise MalformedACLError()
    if not _CANONICAL_ID.fullmatch(owner_id.strip().lower()):
        raise InvalidArgument("Invalid id", ArgumentName="CanonicalUser/ID",
                              ArgumentValue=owner_id)
    if owner_id.strip().lower() != current_owner.id:
        raise AccessDenied()
    grant_els = list(children(acl_el, "Grant"))
    if len(grant_els) > MAX_GRANTS:
        raise MalformedACLError()
    grants = tuple(_xml_grant(g, display_names) for g in grant_els)
    return Acl(current_owner, grants)


# --- authorization (§13.4) ---------------------------------------------------------------


def _matches(grantee: Grantee, principal: Principal) -> bool:
    if grantee.type == "Group":
        if grantee.uri == ALL_USERS:
            return True
        return grantee.uri == AUTHENTICATED_USERS and not principal.is_anonymous
    return not principal.is_anonymous and grantee.id == principal.id


def allowed(acl: Acl, principal: Principal, permission: str) -> bool:
    """True when ``principal`` holds ``permission`` on the resource guarded by ``acl``.

    The owner is always allowed; otherwise a grant of ``permission`` or FULL_CONTROL to
    the caller's ID, AuthenticatedUsers (any signed caller) or AllUsers (anyone).
    """
    if not principal.is_anonymous and principal.id == acl.owner.id:
        return True
    return any(
        g.permission in (permission, "FULL_CONTROL") and _matches(g.grantee, principal)
        for g in acl.grants
    )
