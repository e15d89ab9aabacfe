"""Browser form uploads: POST Object (issue 15 item 5; docs/decisions.md "CORS and POST
Object").

The credentials are inside the body, so this is the one write whose body is read before
anyone is authenticated. The fields before the file are read under ``s3/post_form.py``'s
bound (20 KB, as AWS); signature, policy, bucket and ACL are all checked before the first
file byte is read; the file is then streamed into the blob writer exactly as PutObject
streams its body (never held in memory) and committed the same way.

Invariants: a forged, expired or uncovered form, or an unsigned one to a bucket that does
not let anonymous users write, stores nothing and reads no file byte; a size outside the
policy's ``content-length-range`` aborts the staged blob before anything references it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote, urlencode, urlsplit

from lxml import etree

from bleepstore import errors
from bleepstore.core import gc
from bleepstore.core.access import bucket_for, writer_owner
from bleepstore.core.inputs import (
    MAX_SINGLE_PAYLOAD,
    acl_for_new_resource,
    content_headers,
    receive,
    reject_unsupported_headers,
)
from bleepstore.core.objects import commit_object
from bleepstore.core.request import Payload, S3Request, S3Response, empty, origin_of
from bleepstore.core.services import Services
from bleepstore.metadata.commands import PutObject
from bleepstore.model import ObjectMeta, Principal
from bleepstore.s3 import post_form, post_policy, tags
from bleepstore.s3.acl import acl_to_json
from bleepstore.s3.checksums import (
    DigestResult,
    IntegritySpec,
    PayloadDigester,
    header_name,
    integrity_from_headers,
)
from bleepstore.s3.headers import now_iso
from bleepstore.s3.names import user_metadata_from_headers, validate_key, validate_storage_class
from bleepstore.s3.post_policy import FormFields

READ = 256 * 1024
TRAILING_DRAIN = 64 * 1024  # what may follow the file (a submit button) is read, not used
MSG_NO_KEY = ("Bucket POST must contain a field named 'key'.  If it is specified, please "
              "check the order of the fields.")
# Request headers whose meaning a form field takes over (the request's own Content-Type is
# the multipart one): read from the form only.
_FORM_ONLY = frozenset({"content-type", "content-encoding", "content-disposition",
                        "content-language", "cache-control", "expires", "content-md5"})


class _Form:
    """The request body pulled through the multipart parser."""

    def __init__(self, payload: Payload, parser: post_form.FormParser) -> None:
        self._payload, self._parser = payload, parser

    def event(self) -> post_form.Event:
        while True:
            event = self._parser.next_event()
            if event is not post_form.NEED_DATA:
                return event
            self._parser.receive_data(self._payload.read(READ))

    def fields(self) -> tuple[list[tuple[str, str]], post_form.FileStart]:
        fields: list[tuple[str, str]] = []
        while True:
            event = self.event()
            if isinstance(event, post_form.Field):
                fields.append((event.name, event.value))
            elif isinstance(event, post_form.FileStart):
                return fields, event

    def finish(self, *, verify: bool) -> None:
        """After the file: what follows is not used. A request signed by its headers is read
        to its end and its payload claims verified (the form did not bind the body); else
        a little is drained, so the connection can serve the next request."""
        if verify:
            self._payload.finish()
            return
        left = TRAILING_DRAIN
        while left > 0 and (data := self._payload.read(min(READ, left))):
            left -= len(data)


class _FilePayload:
    """The file part as a ``Payload`` for ``inputs.receive``: digests for the form's
    Content-MD5 / x-amz-checksum-* fields, and the policy's minimum size at ``finish``."""

    declared_length: int | None = None

    def __init__(self, form: _Form, spec: IntegritySpec, min_size: int, *,
                 verify_request: bool) -> None:
        self._form = form
        self._verify_request = verify_request
        self._digester = PayloadDigester(spec)
        self._min = min_size
        self._pending = b""
        self._ended = False

    def read(self, size: int) -> bytes:
        while not self._pending and not self._ended:
            event = self._form.event()
            if isinstance(event, post_form.FileData):
                self._pending = event.data
            else:
                self._ended = True
        out, self._pending = self._pending[:size], self._pending[size:]
        self._digester.update(out)
        return out

    def finish(self) -> DigestResult:
        while self.read(READ):
            pass
        if self._digester.size < self._min:
            raise errors.EntityTooSmall(ProposedSize=self._digester.size,
                                        MinSizeAllowed=self._min)
        self._form.finish(verify=self._verify_request)
        return self._digester.finish()


def _form_header(form: FormFields, real: Callable[[str], str | None]
                 ) -> Callable[[str], str | None]:
    """A header getter that sees the form's fields where PutObject reads headers:
    ``acl`` for ``x-amz-acl``, the content headers, every ``x-amz-*``."""
    def get(name: str) -> str | None:
        if name == "x-amz-acl":
            return form.get("acl")
        if name in _FORM_ONLY or name.startswith("x-amz-"):
            return form.get(name)
        return real(name)
    return get


def _as_writer(req: S3Request, form: FormFields, principal: Principal, key: str) -> S3Request:
    """The request as the write path sees it: the form's signer, key and fields."""
    items = [(n, v) for n, v in req.header_items
             if n not in _FORM_ONLY and not n.startswith("x-amz-")]
    items += [(n.lower(), v) for n, v in form.items if n.lower().startswith("x-amz-")]
    return dataclasses.replace(req, principal=principal, key=key,
                               header=_form_header(form, req.header), header_items=items)


def _authorize(svc: Services, req: S3Request, form: FormFields,
               bucket: str) -> tuple[Principal, tuple[int, int] | None] | None:
    """The form's signer and the size range its policy allows, or None when the form is
    unsigned (the request's own principal then writes); raises before any file byte."""
    auth = post_policy.authenticate(form, svc.store.get_credential,
                                    server_region=svc.config.server.region,
                                    enforce_region=svc.config.auth.enforce_region)
    if auth.credential is None or auth.version is None:
        return None
    policy = post_policy.parse_policy(form.get("policy") or "")
    post_policy.check_expiration(policy, datetime.now(UTC))
    post_policy.check_conditions(policy, form, bucket, auth.version)
    cred = auth.credential
    return Principal(cred.owner_id, cred.display_name, cred.access_key_id), policy.length_range()


def post_object(svc: Services, req: S3Request) -> S3Response:
    boundary = post_form.boundary_of(req.header("content-type"))
    reader = _Form(req.payload, post_form.FormParser(boundary))
    items, start = reader.fields()
    form = post_policy.expand_filename(FormFields(items), start.filename)
    key = form.get("key")
    if not key:
        raise errors.InvalidArgument(MSG_NO_KEY, ArgumentName="key", ArgumentValue="")
    signed = _authorize(svc, req, form, req.bucket)
    principal, size_range = signed if signed is not None else (req.principal, None)
    validate_key(key)
    wreq = _as_writer(req, form, principal, key)
    reject_unsupported_headers(wreq)
    bucket = bucket_for(svc, wreq, "WRITE")
    acl = acl_for_new_resource(svc, wreq, writer_owner(principal, bucket), bucket)
    storage_class = validate_storage_class(form.get("x-amz-storage-class") or "STANDARD")
    user_meta = user_metadata_from_headers(wreq.header_items)
    tagging = form.get("tagging")
    tag_set = tags.parse_tagging(tagging.encode("utf-8")) if tagging else ()
    low, high = size_range if size_range is not None else (0, MAX_SINGLE_PAYLOAD)
    spec = integrity_from_headers(wreq.header)
    file = _FilePayload(reader, spec, low,
                        verify_request=signed is None and not principal.is_anonymous)
    staged, digest = receive(file, svc.storage.open_writer("object"),
                             min(high, MAX_SINGLE_PAYLOAD))
    now = now_iso()
    meta = ObjectMeta(
        bucket=bucket.name, key=key, size=staged.size, etag=f'"{staged.md5_hex}"',
        last_modified=now, data_ref=staged.data_ref, content=content_headers(wreq),
        storage_class=storage_class, acl=acl_to_json(acl), user_metadata=user_meta,
        checksum_algorithm=digest.checksum_algorithm, checksum_value=digest.checksum_b64,
        tags=tag_set)
    # NOTE: always written directly, also under queue.consistency sync/async: the write
    # tasks replay PutObject payloads only (docs/decisions.md "CORS and POST Object").
    replaced, version_id = commit_object(svc, PutObject(meta, now, svc.gc_not_before(),
                                                        origin=origin_of(req),
                                                        inline_data=staged.inline))
    gc.collect_now(svc, [replaced])
    resp = _answer(req, form, bucket.name, key, meta.etag)
    if version_id is not None:
        resp.header("x-amz-version-id", version_id)
    if digest.checksum_algorithm and digest.checksum_b64:
        resp.header(header_name(digest.checksum_algorithm), digest.checksum_b64)
    return resp


# --- the answer --------------------------------------------------------------------------

def object_url(req: S3Request, bucket: str, key: str) -> str:
    """The object's URL as S3 gives it in ``Location``: the key with ``/`` encoded too."""
    path = quote(key, safe="")
    prefix = "" if req.virtual_host else "/" + bucket
    return f"{req.scheme}://{req.host}{prefix}/{path}"


def _redirect_target(form: FormFields) -> str | None:
    """``success_action_redirect`` (or the older ``redirect``) when S3 can use it: an
    absolute http(s) URL; anything else is ignored, as S3 does."""
    value = form.get("success_action_redirect") or form.get("redirect")
    if not value:
        return None
    parts = urlsplit(value)
    return value if parts.scheme in ("http", "https") and parts.netloc else None


def post_response(location: str, bucket: str, key: str, etag: str) -> bytes:
    """``PostResponse`` (201), without a namespace, as S3 sends it."""
    root = etree.Element("PostResponse")
    for name, value in (("Location", location), ("Bucket", bucket), ("Key", key),
                        ("ETag", etag)):
        etree.SubElement(root, name).text = value
    body: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


def _answer(req: S3Request, form: FormFields, bucket: str, key: str, etag: str) -> S3Response:
    location = object_url(req, bucket, key)
    redirect = _redirect_target(form)
    if redirect is not None:
        query = urlencode([("bucket", bucket), ("key", key), ("etag", etag)])
        target = redirect + ("&" if "?" in redirect else "?") + query
        return empty(303).header("Location", target).header("ETag", etag)
    status = form.get("success_action_status")
    if status == "201":
        return S3Response(status=201, body=post_response(location, bucket, key, etag),
                          content_type="application/xml",
                          headers=[("ETag", etag), ("Location", location)])
    return empty(200 if status == "200" else 204).header("ETag", etag).header(
        "Location", location)
