"""The S3 front: request ids, raw-URI addressing, authentication and routing, in the
pipeline order of s3-api.md §3.1, as one Falcon middleware; and CORS: preflights
(``OPTIONS``) answered from the bucket's rules, ``Access-Control-*`` on actual responses.

Invariants: every request gets its ids first, so every response (errors included)
carries them; routing never falls through to another operation; Falcon's own routing
only picks the resource *shape* (service/bucket/object) from a synthetic path; a
preflight is never authenticated and never reaches an operation. With the console on, an
unsigned request carrying the console's CSRF header is its session's user, or 403: never
anonymous (web/console/session.py); without that header the cookie means nothing.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import falcon

from bleepstore import errors
from bleepstore.config import Config
from bleepstore.model import Credential, Principal
from bleepstore.s3 import cors, sigv2
from bleepstore.s3.address import (
    Address,
    is_service_endpoint,
    parse_query,
    resolve_address,
    split_target,
)
from bleepstore.s3.headers import check_transfer_encoding
from bleepstore.s3.names import validate_key
from bleepstore.s3.router import route
from bleepstore.s3.sigv4 import (
    PRESIGN_MARKERS,
    AuthResult,
    SigningRequest,
    authenticate,
    check_content_sha256,
)
from bleepstore.storage.owner import INTERNAL_PATH
from bleepstore.web.console.session import (
    COOKIE_NAME,
    CSRF_HEADER,
    ActiveSession,
    csrf_matches,
    same_origin,
)
from bleepstore.web.context import request_id_var
from bleepstore.web.environ import (
    READ_TIMEOUT_KEY,
    header_getter,
    header_names,
    raw_target,
    signing_header_getter,
    under_gunicorn,
)

log = logging.getLogger("bleepstore.s3")

PRESIGN_PARAM = "X-Amz-Algorithm"
SERVICE_SHAPE = {None: "/", "bucket": "/b", "object": "/b/k"}
# The Access-Control-Request-Method values S3's preflight takes (case-sensitive).
PREFLIGHT_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
MSG_PREFLIGHT_NO_BUCKET = "CORSResponse: Bucket not found"
MSG_PREFLIGHT_NOT_ALLOWED = (
    "CORSResponse: This CORS request is not allowed. This is usually because the evalution "
    "of Origin, request method / Access-Control-Request-Method or "
    "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.")
# (bucket, kind) -> the bucket's configuration document of that kind, or None
BucketConfig = Callable[[str, str], str | None]
# the values of the console's session cookie -> the valid session among them, or None
ConsoleSessions = Callable[[list[str] | None], ActiveSession | None]
# a presigned request (SigV4 or SigV2) is authenticated by its query, never by a cookie
CONSOLE_SKIPS_QUERY = (*PRESIGN_MARKERS, "Signature", "AWSAccessKeyId")
MSG_CONSOLE_SESSION = ("The console session is not valid (logged out, expired, or the "
                       "x-bleepstore-csrf header or Origin does not match): log in again.")
SIGNED_STREAMING = frozenset({"STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                              "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"})


def preflight_error(get: Callable[[str], str | None], service_root: bool) -> errors.S3Error:
    """S3's answer to an ``OPTIONS`` (a CORS preflight) on a bucket without a CORS
    configuration (or before one is looked up).

    Without an ``Origin`` it is 400 BadRequest; with one, 400 for an unknown
    ``Access-Control-Request-Method``, else 403 AccessForbidden naming the method asked
    about (``OPTIONS`` when none) and ``ResourceType`` BUCKET, on a key too."""
    if not get("origin"):
        return errors.BadRequest()
    asked = get("access-control-request-method") or "OPTIONS"
    if asked not in PREFLIGHT_METHODS:
        return errors.BadRequest(f"Invalid Access-Control-Request-Method: {asked}")
    message = MSG_PREFLIGHT_NO_BUCKET if service_root else None
    return errors.AccessForbidden(message, Method=asked, ResourceType="BUCKET")


def new_request_id() -> str:
    return secrets.token_bytes(8).hex().upper()


def new_host_id() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


class S3Front:
    """Falcon middleware; ``lookup`` resolves an access key to its credential;
    ``bucket_config`` reads a bucket's CORS rules (the store's ``get_bucket_config``);
    ``console_sessions`` (None: no console) checks a console session cookie."""

    def __init__(self, config: Config, lookup: Callable[[str], Credential | None],
                 bucket_config: BucketConfig,
                 console_sessions: ConsoleSessions | None = None) -> None:
        self.config = config
        self.lookup = lookup
        self._bucket_config = bucket_config
        self._console = console_sessions
        self._owner_placement = (config.metadata.engine == "raft"
                                 and config.cluster.data_placement == "owner")

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        ctx = req.context
        ctx.start = time.monotonic()
        ctx.request_id, ctx.host_id = new_request_id(), new_host_id()
        ctx.token = request_id_var.set(ctx.request_id)
        ctx.op = None
        ctx.address = None
        ctx.preflight = False
        ctx.principal = Principal()
        env = req.env
        env[READ_TIMEOUT_KEY] = float(self.config.server.body_read_timeout_s)
        ctx.header = header_getter(env)
        raw_path, raw_query = split_target(raw_target(env))
        ctx.raw_path, ctx.raw_query = raw_path, raw_query
        if self._outside_s3(req, ctx, raw_path, raw_query):
            return
        if req.method == "OPTIONS":
            # NOTE: S3 answers a preflight before authentication and routing, so an
            # OPTIONS on a presigned URL is a CORS answer, not SignatureDoesNotMatch or 405
            # (docs/decisions.md). The bucket's rules are read in process_resource.
            self._begin_preflight(req, ctx, raw_path)
            return
        # NOTE: [S3] before anything reads a body: gunicorn removes only the chunked framing
        # and would hand over the rest (``gzip, chunked``) as is.
        check_transfer_encoding(ctx.header("transfer-encoding"))
        query = parse_query(raw_query)
        ctx.query = query
        address = resolve_address(ctx.header("host"), raw_path,
                                  self.config.server.virtual_host_domains)
        ctx.address = address
        # NOTE: signatures are checked over header values as the client sent their bytes
        # (a non-ASCII x-amz-meta-* value is UTF-8 on the wire, latin-1 in the environ).
        ctx.sreq = SigningRequest(req.method, raw_path, raw_query,
                                  signing_header_getter(ctx.header), query, header_names(env))
        ctx.auth = self._console_auth(req, ctx) or self._authenticate(ctx.sreq, address)
        cred = ctx.auth.credential
        if cred is not None:
            ctx.principal = Principal(cred.owner_id, cred.display_name, cred.access_key_id)
        ctx.op = route(req.method, address, query, ctx.header("x-amz-copy-source") is not None)
        if address.key is not None:
            validate_key(address.key)
        req.path = self._shape(address)

    def _outside_s3(self, req: falcon.Request, ctx: Any, raw_path: str,
                    raw_query: str) -> bool:
        """The admin port, node-to-node calls and the unsigned service endpoints (probes,
        metrics, console) skip S3's authentication and routing: True, with ``req.path`` set."""
        ctx.admin = self._admin_port(req.env)
        if ctx.admin:
            # NOTE: the admin port serves nothing but /admin/...; S3 never sees it.
            known = raw_path.startswith("/admin/")
            req.path = raw_path if known else "/admin/_not_found"
            ctx.service = True
            return True
        if raw_path == INTERNAL_PATH and self._owner_placement:
            ctx.service = True  # node to node, with the cluster secret (web/cluster.py)
            req.path = raw_path
            return True
        ctx.service = (is_service_endpoint(raw_path, console=self._console is not None)
                       and ctx.header("authorization") is None
                       and PRESIGN_PARAM not in raw_query and not sigv2.query_signed(raw_query)
                       and not self._virtual(ctx.header))
        if ctx.service:
            req.path = raw_path
        return bool(ctx.service)

    # --- CORS: preflights and the headers of actual requests (s3/cors.py) -----------------

    def _begin_preflight(self, req: falcon.Request, ctx: Any, raw_path: str) -> None:
        """Refuse what needs no rules (400s, the service root); else route the OPTIONS to
        its resource shape, where ``process_resource`` answers it from the bucket's rules."""
        root = self._service_root(ctx, raw_path)
        err = preflight_error(ctx.header, root)
        if root or ctx.address is None or not isinstance(err, errors.AccessForbidden):
            raise err
        ctx.preflight = True
        req.path = self._shape(ctx.address)

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         params: dict[str, Any]) -> None:
        if req.context.preflight:
            self._answer_preflight(req.context, resp)
            resp.complete = True

    def _rules(self, bucket: str | None) -> cors.Rules | None:
        if bucket is None:
            return None
        document = self._bucket_config(bucket, "cors")
        return cors.from_json(document) if document is not None else None

    def _answer_preflight(self, ctx: Any, resp: falcon.Response) -> None:
        """200 with the matched rule's headers; 403 when the bucket has no rules or none
        allows the origin, the method asked about and every header asked about."""
        address: Address = ctx.address
        rules = self._rules(address.bucket)
        if rules is None:
            raise preflight_error(ctx.header, False)
        origin = ctx.header("origin") or ""
        method = ctx.header("access-control-request-method") or "OPTIONS"
        asked = cors.requested_headers(ctx.header("access-control-request-headers"))
        found = cors.match(rules, origin, method, asked)
        if found is None:
            raise errors.AccessForbidden(
                MSG_PREFLIGHT_NOT_ALLOWED, Method=method,
                ResourceType="OBJECT" if address.key is not None else "BUCKET")
        resp.status = falcon.HTTP_200
        for name, value in cors.response_headers(found, origin, preflight=True, headers=asked):
            resp.set_header(name, value)
        resp.content_length = 0

    def _cors_headers(self, req: falcon.Request, resp: falcon.Response) -> None:
        """An actual request from an allowed origin gets the rule's headers, on errors too
        (as on S3): matched on the origin and the method (``Access-Control-Request-Method``
        when the request carries one), never on its headers."""
        ctx = req.context
        header: Callable[[str], str | None] | None = getattr(ctx, "header", None)
        address = getattr(ctx, "address", None)
        if (header is None or req.method == "OPTIONS" or getattr(ctx, "service", True)
                or address is None):
            return
        origin = header("origin")
        if not origin:
            return
        try:
            rules = self._rules(address.bucket)
        except Exception:  # a header is never worth a failed response
            log.warning("CORS rules of %s unreadable", address.bucket, exc_info=True)
            return
        if rules is None:
            return
        method = header("access-control-request-method") or req.method
        found = cors.match(rules, origin, method)
        if found is not None:
            for name, value in cors.response_headers(found, origin, preflight=False):
                resp.set_header(name, value)

    def _console_auth(self, req: falcon.Request, ctx: Any) -> AuthResult | None:
        """The console's session as the credential of an unsigned request that carries the
        CSRF header (None: not such a request, authenticate it as usual). The header must
        match the session's token and an ``Origin`` must be the request's own: a page of
        another site can neither read the token nor set the header without a preflight."""
        csrf = ctx.header(CSRF_HEADER)
        if (self._console is None or csrf is None or ctx.header("authorization") is not None
                or any(p in ctx.query for p in CONSOLE_SKIPS_QUERY)):
            return None
        active = self._console(req.get_cookie_values(COOKIE_NAME))
        if (active is None or not csrf_matches(csrf, active)
                or not same_origin(ctx.header("origin"), req.scheme, ctx.header("host"))):
            raise errors.AccessDenied(MSG_CONSOLE_SESSION)
        declared = ctx.header("x-amz-content-sha256")
        if declared is not None:
            check_content_sha256(declared)
            if declared in SIGNED_STREAMING:  # chunk signatures need a signing key
                raise errors.InvalidArgument(
                    "A console request cannot send a signed streaming payload.",
                    ArgumentName="x-amz-content-sha256", ArgumentValue=declared)
        # NOTE: seen by bucket policies as a SigV4 header request (s3:authtype REST-HEADER,
        # s3:signatureversion AWS4-HMAC-SHA256, which follows from a scope): a policy that
        # refuses SigV2 must not refuse the console. No signing key: nothing is verified
        # with it (signed streaming is refused above).
        scope = f"{datetime.now(UTC):%Y%m%d}/{self.config.server.region}/s3/aws4_request"
        return AuthResult(active.credential, "header", declared, scope=scope)

    def _authenticate(self, sreq: SigningRequest, address: Address) -> AuthResult:
        """SigV4 (the default everywhere), or SigV2 for an ``AWS`` Authorization header or a
        ``Signature`` query parameter; either way before any lookup or body byte, and the
        same credential lookup, so both authenticate the same principal."""
        now = datetime.now(UTC)
        auth = self.config.auth
        if sigv2.applies(sreq):
            return sigv2.authenticate(
                sreq, self.lookup, now=now, clock_skew_s=auth.clock_skew_s,
                virtual_bucket=address.bucket if address.virtual_host else None)
        return authenticate(sreq, self.lookup, now=now, clock_skew_s=auth.clock_skew_s,
                            server_region=self.config.server.region,
                            enforce_region=auth.enforce_region)

    def _admin_port(self, env: dict[str, Any]) -> bool:
        admin_port = self.config.server.admin_port
        if admin_port is None:
            return False
        sock = env.get("gunicorn.socket")
        try:
            port = int(sock.getsockname()[1]) if sock is not None else int(env["SERVER_PORT"])
        except (OSError, KeyError, ValueError, TypeError, IndexError):
            return False
        return port == admin_port

    def _service_root(self, ctx: Any, raw_path: str) -> bool:
        """True when the request names no bucket; sets ``ctx.address`` when it resolves."""
        try:
            ctx.address = resolve_address(ctx.header("host"), raw_path,
                                          self.config.server.virtual_host_domains)
        except errors.S3Error:
            return False
        return bool(ctx.address.bucket is None)

    def _virtual(self, get: Callable[[str], str | None]) -> bool:
        try:
            return resolve_address(get("host"), "/", self.config.server.virtual_host_domains
                                   ).virtual_host
        except errors.S3Error:
            return True

    @staticmethod
    def _shape(address: Address) -> str:
        if address.bucket is None:
            return "/"
        return "/b" if address.key is None else "/b/k"

    def process_response(self, req: falcon.Request, resp: falcon.Response,
                         resource: Any, req_succeeded: bool) -> None:
        ctx = req.context
        self._cors_headers(req, resp)
        resp.set_header("x-amz-request-id", ctx.request_id)
        resp.set_header("x-amz-id-2", ctx.host_id)
        if not under_gunicorn(req.env):
            resp.set_header("Server", "BleepStore")
            resp.set_header("Date", falcon.dt_to_http(datetime.now(UTC)))
        token = getattr(ctx, "token", None)
        if token is not None:
            request_id_var.reset(token)
