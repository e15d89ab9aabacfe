"""Loading buckets/objects together with the access decision: the bucket policy, the public
access block and the ACLs (s3-api.md §13.4, §3.1; docs/decisions.md, Bucket policies).

Invariants:
- existence is never leaked to a caller who may not list the bucket — a missing key answers
  NoSuchKey only when the caller may list it (ACL READ, or s3:ListBucket from the policy);
- every dispatched request runs inside ``authorization``: before the operation starts, an
  explicit Deny in the bucket's policy for the request's own actions and resource is 403
  AccessDenied, and so is a public ACL sent to a BlockPublicAcls bucket; the owner's
  Get/Put/DeleteBucketPolicy are never denied (AWS's lock-out safeguard for the root user);
- every later check is "a policy Allow, else the ACL": the ACL without its public grants
  when the bucket has IgnorePublicAcls; an Allow counts for other accounts (anonymous
  included) only while the bucket does not have RestrictPublicBuckets with a public policy;
- ``require`` (the object-ACL check of ``read_version`` / ``version_of``) weighs the decision
  for the request's own object, or, in CopyObject / UploadPartCopy, for the copy source
  (s3:GetObject or s3:GetObjectVersion, in the source bucket's policy).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from bleepstore import errors
from bleepstore.core.request import Payload, S3Request
from bleepstore.core.services import Services
from bleepstore.model import Acl, Bucket, ObjectMeta, Owner, Principal
from bleepstore.s3.acl import acl_from_json, allowed
from bleepstore.s3.checksums import DigestResult
from bleepstore.s3.policy import Caller, Decision, Policy, evaluate
from bleepstore.s3.policy import Request as PolicyRequest
from bleepstore.s3.policy_actions import ANY_KEY_OPS, GRANT_HEADERS, actions_for, is_object_op
from bleepstore.s3.policy_parse import parse_policy
from bleepstore.s3.public_access import (
    NONE,
    PublicAccessBlock,
    acl_body_is_public,
    from_json,
    headers_grant_public,
    policy_is_public,
    without_public_grants,
)
from bleepstore.s3.router import Op

POLICY_KIND, BLOCK_KIND = "policy", "public_access_block"
COPY_OPS = frozenset({Op.COPY_OBJECT, Op.UPLOAD_PART_COPY})
POLICY_OPS = frozenset({Op.GET_BUCKET_POLICY, Op.PUT_BUCKET_POLICY, Op.DELETE_BUCKET_POLICY})
# [S3] s3:ExistingObjectTag/<key> exists for these only (not for PutObject / DeleteObject).
TAG_OPS = frozenset({Op.GET_OBJECT, Op.HEAD_OBJECT, Op.GET_OBJECT_ACL, Op.PUT_OBJECT_ACL,
                     Op.GET_OBJECT_TAGGING, Op.PUT_OBJECT_TAGGING, Op.DELETE_OBJECT_TAGGING,
                     Op.GET_OBJECT_ATTRIBUTES})
ACL_WRITES = frozenset({Op.PUT_OBJECT, Op.COPY_OBJECT, Op.CREATE_MULTIPART_UPLOAD,
                        Op.PUT_BUCKET_ACL, Op.PUT_OBJECT_ACL, Op.POST_OBJECT})
LIST_OPS = frozenset({Op.LIST_OBJECTS, Op.LIST_OBJECTS_V2, Op.LIST_OBJECT_VERSIONS})
TAG_KEY = "s3:existingobjecttag/"
HEADER_KEYS = tuple((h, "s3:" + h) for h in (
    "x-amz-acl", *GRANT_HEADERS, "x-amz-copy-source", "x-amz-metadata-directive",
    "x-amz-storage-class", "x-amz-server-side-encryption", "x-amz-content-sha256",
    "x-amz-server-side-encryption-aws-kms-key-id", "x-amz-website-redirect-location",
    "x-amz-object-ownership")) + (("user-agent", "aws:useragent"), ("referer", "aws:referer"))
AUTH_TYPES = {"header": "REST-HEADER", "presigned": "REST-QUERY-STRING"}
ACL_BODY_LIMIT = 2 * 1024 * 1024  # as inputs.XML_LIMIT: larger bodies are refused anyway

Where = tuple[str, str, str | None]  # (bucket, key, version id): whose tags a key reads


def bucket_owner(bucket: Bucket) -> Owner:
    return Owner(bucket.owner_id, bucket.owner_display)


def bucket_acl(bucket: Bucket) -> Acl:
    return acl_from_json(bucket.acl, bucket_owner(bucket))


def object_acl(obj: ObjectMeta, bucket: Bucket) -> Acl:
    return acl_from_json(obj.acl, bucket_owner(bucket))


# ------------------------------------------------------------------- bucket configuration


@dataclass(frozen=True)
class Rules:
    """What a bucket's configuration says about access."""

    policy: Policy | None
    public: bool  # the policy is public (AWS's meaning)
    block: PublicAccessBlock


@lru_cache(maxsize=256)
def stored_policy(document: str, bucket: str) -> tuple[Policy, bool]:
    """A stored policy, parsed (and whether it is public); cached by its text."""
    try:
        policy = parse_policy(document.encode("utf-8"), bucket)
    except errors.MalformedPolicy as exc:  # validated when stored: this is not input
        raise errors.InternalError("stored bucket policy is corrupt") from exc
    return policy, policy_is_public(policy)


def bucket_rules(svc: Services, name: str) -> Rules:
    docs = svc.store.get_bucket_configs(name, BLOCK_KIND, POLICY_KIND)
    block = from_json(docs.get(BLOCK_KIND))
    document = docs.get(POLICY_KIND)
    if document is None:
        return Rules(None, False, block)
    policy, public = stored_policy(document, name)
    return Rules(policy, public, block)


def _seen(acl: Acl, block: PublicAccessBlock) -> Acl:
    return without_public_grants(acl) if block.ignore_public_acls else acl


# ------------------------------------------------------------------- the request scope


def _context(req: S3Request) -> dict[str, tuple[str, ...]]:
    """The condition keys of a request (lowercase names; docs/decisions.md lists them)."""
    now, p = datetime.now(UTC), req.principal
    ctx: dict[str, tuple[str, ...]] = {
        "aws:securetransport": ("true" if req.scheme == "https" else "false",),
        "aws:currenttime": (now.strftime("%Y-%m-%dT%H:%M:%SZ"),),
        "aws:epochtime": (str(int(now.timestamp())),),
        "aws:userid": ("anonymous" if p.is_anonymous else p.access_key,),
        "aws:principaltype": ("Anonymous" if p.is_anonymous else "User",)}
    if req.source_ip:
        ctx["aws:sourceip"] = (req.source_ip,)
    if not p.is_anonymous:
        ctx["aws:principalaccount"] = (p.id,)
        ctx["aws:principalarn"] = (f"arn:aws:iam::{p.id}:user/{p.access_key}",)
        if p.display_name:
            ctx["aws:username"] = (p.display_name,)
    if req.op is Op.POST_OBJECT and not p.is_anonymous:
        ctx["s3:authtype"] = ("POST",)  # signed by its form
    elif req.auth_mode in AUTH_TYPES:
        ctx["s3:authtype"] = (AUTH_TYPES[req.auth_mode],)
        ctx["s3:signatureversion"] = (req.signature_version,)
    for header, key in HEADER_KEYS:
        value = req.header(header)
        if value is not None:
            ctx[key] = (value,)
    for name in ("prefix", "delimiter", "max-keys"):
        if name in req.query and req.op in LIST_OPS:
            ctx["s3:" + name] = (req.query[name],)
    if "versionId" in req.query:
        ctx["s3:versionid"] = (req.query["versionId"],)
    tagging = req.header("x-amz-tagging")
    if tagging is not None:
        pairs = parse_qsl(tagging, keep_blank_values=True)
        ctx["s3:requestobjecttagkeys"] = tuple(k for k, _ in pairs)
        ctx.update({"s3:requestobjecttag/" + k: (v,) for k, v in pairs})
    return ctx


class _Scope:
    """One request's access decisions, with the bucket rows, configurations and object
    tags they read, each loaded once."""

    def __init__(self, svc: Services, req: S3Request) -> None:
        self.svc, self.req = svc, req
        self._buckets: dict[str, Bucket | None] = {}
        self._rules: dict[str, Rules] = {}
        self._tags: dict[Where, tuple[tuple[str, str], ...]] = {}
        self._decisions: dict[tuple[Any, ...], Decision] = {}
        self._contexts: dict[int, tuple[S3Request, dict[str, tuple[str, ...]]]] = {}

    def context(self, req: S3Request) -> dict[str, tuple[str, ...]]:
        """The condition keys of ``req`` (the dispatched request, or the one an operation
        derived from it, e.g. a POST upload as its form's signer); built when first asked:
        only a bucket with a policy needs them."""
        if id(req) not in self._contexts:
            self._contexts[id(req)] = (req, _context(req))  # holding req keeps its id
        return self._contexts[id(req)][1]

    def bucket(self, name: str) -> Bucket | None:
        if name not in self._buckets:
            self._buckets[name] = self.svc.store.get_bucket(name)
        return self._buckets[name]

    def rules(self, name: str) -> Rules:
        if name not in self._rules:
            self._rules[name] = bucket_rules(self.svc, name)
        return self._rules[name]

    def _object_tags(self, where: Where) -> tuple[tuple[str, str], ...]:
        if where not in self._tags:
            bucket, key, version = where
            if version is None:
                obj = self.svc.store.get_object(bucket, key)
                self._tags[where] = obj.tags if obj is not None else ()
            else:
                entry = self.svc.store.get_object_version(bucket, key, version)
                self._tags[where] = (entry.meta.tags if entry is not None
                                     and not entry.delete_marker else ())
        return self._tags[where]

    def _lookup(self, req: S3Request, where: Where | None) -> Any:
        def lookup(key: str) -> tuple[str, ...] | None:
            if key.startswith(TAG_KEY):
                wanted = key[len(TAG_KEY):]
                tags = self._object_tags(where) if where is not None else ()
                return next(((v,) for k, v in tags if k == wanted), None)
            return self.context(req).get(key)
        return lookup

    def decide(self, req: S3Request, bucket: Bucket, key: str | None,
               actions: tuple[str, ...], *, any_key: bool = False,
               where: Where | None = None) -> Decision:
        """The policy's word on ``req.principal`` doing ``actions`` over ``bucket`` /
        ``key`` (a Deny is returned, not raised)."""
        rules = self.rules(bucket.name)
        if rules.policy is None or not actions:
            return Decision.NONE
        principal = req.principal
        caller = Caller(None if principal.is_anonymous else principal.id, principal.access_key)
        memo = (id(self.context(req)), bucket.name, key, actions, any_key, caller, where)
        if memo not in self._decisions:
            decision = evaluate(rules.policy, PolicyRequest(
                caller, actions, bucket.name, key, any_key, self._lookup(req, where)))
            if (decision is Decision.ALLOW and rules.block.restrict_public_buckets
                    and rules.public and caller.account != bucket.owner_id):
                decision = Decision.NONE  # RestrictPublicBuckets: the owner's account only
            self._decisions[memo] = decision
        return self._decisions[memo]

    def primary(self, req: S3Request, bucket: Bucket, *, raising: bool = True) -> Decision:
        """The decision for the request's own actions and resource; a Deny raises."""
        if req.op in POLICY_OPS and req.principal.id == bucket.owner_id and raising:
            return Decision.NONE  # NOTE: the root user's lock-out safeguard (AWS)
        actions = actions_for(req.op, req.query, req.header,
                              versioned=bucket.versioning is not None)
        key = req.key if is_object_op(req.op) and req.key else None
        where = ((bucket.name, req.key, req.query.get("versionId"))
                 if req.op in TAG_OPS and req.key else None)
        decision = self.decide(req, bucket, key, actions,
                               any_key=req.op in ANY_KEY_OPS and key is None, where=where)
        if raising and (decision is Decision.DENY or req.op in ACL_WRITES and self.rules(
                bucket.name).block.block_public_acls and headers_grant_public(req.header)):
            raise errors.AccessDenied()  # a Deny, or a public ACL on a BlockPublicAcls bucket
        return decision

    def read(self, principal: Principal, bucket: Bucket, key: str,
             version: str | None) -> Decision:
        """A read of one object: the request's own object, or a copy source."""
        req = self.req
        if principal != req.principal:
            req = dataclasses.replace(req, principal=principal)
        if req.op not in COPY_OPS and (bucket.name, key) == (req.bucket, req.key):
            return self.primary(req, bucket)
        action = "s3:getobjectversion" if version is not None else "s3:getobject"
        decision = self.decide(req, bucket, key, (action,), where=(bucket.name, key, version))
        if decision is Decision.DENY:
            raise errors.AccessDenied()
        return decision

    def implicit_read(self, principal: Principal) -> tuple[Decision, PublicAccessBlock]:
        """``require`` without a resource: the copy source in a copy, else the request's."""
        req = self.req
        if req.op in COPY_OPS:
            from bleepstore.core.copy import parse_copy_source  # NOTE: copy imports us

            src = parse_copy_source(req.header("x-amz-copy-source") or "")
            bucket = self.bucket(src.bucket)
            key, version = src.key, src.version_id
        else:
            bucket, key, version = self.bucket(req.bucket), req.key, None
        if bucket is None:
            return Decision.NONE, NONE
        return self.read(principal, bucket, key, version), self.rules(bucket.name).block

    def precheck(self) -> None:
        """Before the operation: the policy's Deny, and BlockPublicAcls."""
        req = self.req
        if not req.bucket or req.op is Op.CREATE_BUCKET:
            return  # no bucket policy governs ListBuckets / CreateBucket
        bucket = self.bucket(req.bucket)
        if bucket is None:
            return  # the operation answers NoSuchBucket
        self.primary(req, bucket)
        if (req.op in (Op.PUT_BUCKET_ACL, Op.PUT_OBJECT_ACL)
                and self.rules(bucket.name).block.block_public_acls):
            req.payload = _PublicAclGuard(req.payload)  # an AccessControlPolicy body


_SCOPE: ContextVar[_Scope | None] = ContextVar("bleepstore_access_scope", default=None)


@contextmanager
def authorization(svc: Services, req: S3Request) -> Iterator[None]:
    """Run one request's operation under its access scope (web dispatch wraps every one)."""
    scope = _Scope(svc, req)
    token = _SCOPE.set(scope)
    try:
        scope.precheck()
        yield
    finally:
        _SCOPE.reset(token)


class _PublicAclGuard:
    """The payload of a PutBucketAcl / PutObjectAcl on a BlockPublicAcls bucket: the body
    passes through, and once it is complete a public AccessControlPolicy is refused."""

    def __init__(self, inner: Payload) -> None:
        self._inner = inner
        self.declared_length = inner.declared_length
        self._body = bytearray()

    def read(self, size: int) -> bytes:
        data = self._inner.read(size)
        if len(self._body) <= ACL_BODY_LIMIT:
            self._body += data
        return data

    def finish(self) -> DigestResult:
        result = self._inner.finish()
        if acl_body_is_public(bytes(self._body)):
            raise errors.AccessDenied()
        return result


# ------------------------------------------------------------------- the checks


def load_bucket(svc: Services, req: S3Request) -> Bucket:
    scope = _SCOPE.get()
    bucket = (scope.bucket(req.bucket) if scope is not None
              else svc.store.get_bucket(req.bucket))
    if bucket is None:
        raise errors.NoSuchBucket(BucketName=req.bucket)
    expected = req.header("x-amz-expected-bucket-owner")
    if expected is not None and expected != bucket.owner_id:
        raise errors.AccessDenied()
    return bucket


def require(acl: Acl, principal: Principal, permission: str) -> None:
    """The object-ACL check (see the module invariants for which object's policy counts)."""
    scope = _SCOPE.get()
    if scope is not None:
        decision, block = scope.implicit_read(principal)
        if decision is Decision.ALLOW:
            return
        acl = _seen(acl, block)
    if not allowed(acl, principal, permission):
        raise errors.AccessDenied()


def policy_decision(req: S3Request, bucket: Bucket) -> Decision:
    """The policy's word on the request itself, without the owner's safeguard."""
    scope = _SCOPE.get()
    return scope.primary(req, bucket, raising=False) if scope is not None else Decision.NONE


def access_rules(svc: Services, bucket: str) -> Rules:
    scope = _SCOPE.get()
    return scope.rules(bucket) if scope is not None else bucket_rules(svc, bucket)


def bucket_for(svc: Services, req: S3Request, permission: str) -> Bucket:
    """Load the bucket and demand ``permission`` on it ("OWNER" = owner only), unless the
    bucket policy allows the request."""
    bucket = load_bucket(svc, req)
    scope = _SCOPE.get()
    block = NONE
    if scope is not None:
        if scope.primary(req, bucket) is Decision.ALLOW:
            return bucket
        block = scope.rules(bucket.name).block
    if permission == "OWNER":
        if req.principal.id != bucket.owner_id:
            raise errors.AccessDenied()
    elif not allowed(_seen(bucket_acl(bucket), block), req.principal, permission):
        raise errors.AccessDenied()
    return bucket


def may_list(svc: Services, principal: Principal, bucket: Bucket) -> bool:
    """s3:ListBucket from the policy, else READ on the bucket ACL."""
    scope = _SCOPE.get()
    block = NONE
    if scope is not None:
        req = scope.req if principal == scope.req.principal else dataclasses.replace(
            scope.req, principal=principal)
        decision = scope.decide(req, bucket, None, ("s3:listbucket",))
        if decision is not Decision.NONE:
            return decision is Decision.ALLOW
        block = scope.rules(bucket.name).block
    return allowed(_seen(bucket_acl(bucket), block), principal, "READ")


def readable_object(svc: Services, principal: Principal, bucket: Bucket, key: str,
                    permission: str = "READ") -> ObjectMeta:
    obj = svc.store.get_object(bucket.name, key)
    scope = _SCOPE.get()
    decision = scope.read(principal, bucket, key, None) if scope is not None \
        else Decision.NONE
    if obj is None:
        if may_list(svc, principal, bucket):
            raise errors.NoSuchKey(Key=key)
        raise errors.AccessDenied()
    if decision is Decision.ALLOW:
        return obj
    acl = object_acl(obj, bucket)
    if scope is not None:
        acl = _seen(acl, scope.rules(bucket.name).block)
    if not allowed(acl, principal, permission):
        raise errors.AccessDenied()
    return obj


def writer_owner(principal: Principal, bucket: Bucket) -> Owner:
    """Owner of a new object: the writer, or the bucket owner for anonymous writes."""
    if principal.is_anonymous:
        return bucket_owner(bucket)
    return Owner(principal.id, principal.display_name)
