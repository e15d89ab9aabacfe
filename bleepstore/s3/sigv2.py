"""AWS Signature Version 2 verification for S3: ``Authorization: AWS <key>:<signature>``
and query-string auth (``AWSAccessKeyId``, ``Expires``, ``Signature``).

Sans-I/O like ``sigv4``: the caller hands in the same ``SigningRequest`` (raw path and query
exactly as received) plus the virtual-hosted bucket, if any; ``authenticate`` returns an
``AuthResult`` or raises the ``S3Error`` AWS answers with.

StringToSign (AWS "Signing and authenticating REST requests")::

    HTTP-Verb + "\\n" + Content-MD5 + "\\n" + Content-Type + "\\n"
    + Date (Expires, for query auth) + "\\n"
    + CanonicalizedAmzHeaders (one "\\n"-terminated line each) + CanonicalizedResource

Invariants:
- validation runs in AWS's order (the form of the header or query, the date, the clock skew
  or expiry, the access key, the signature), so the first problem decides the error;
- signatures are compared with ``hmac.compare_digest`` only;
- every ``x-amz-*`` header the request carries is part of the string to sign (there is no
  SignedHeaders list in V2), so SigV4's rule that every ``x-amz-*`` header must be signed
  holds by construction: an added or altered one changes the string and fails the check;
- the payload is unsigned: Content-MD5, a declared ``x-amz-content-sha256`` and flexible
  checksums are still verified by the payload reader, and the check happens before any
  body byte is read.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_from_bytes, unquote_to_bytes

from bleepstore.errors import (
    AccessDenied,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidRequest,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)
from bleepstore.model import Credential
from bleepstore.s3.sigv4 import (
    MSG_NO_DATE,
    MSG_TWO_MECHANISMS,
    PRESIGN_MARKERS,
    AuthResult,
    SigningRequest,
    check_content_sha256,
)

SCHEME = "AWS"
QUERY_PARAMS = ("AWSAccessKeyId", "Signature", "Expires")
# Sub-resources that belong in CanonicalizedResource: AWS's list (with the response-*
# overrides), plus what botocore's HmacV1Auth and s3cmd's sign_request_v2 sign, so that
# every one of their requests canonicalises the same here.
SUBRESOURCES = frozenset({
    "accelerate", "acl", "analytics", "cors", "delete", "inventory", "lifecycle", "location",
    "logging", "metrics", "notification", "object-lock", "partNumber", "policy", "replication",
    "requestPayment", "restore", "select", "select-type", "tagging", "torrent", "uploadId",
    "uploads", "versionId", "versioning", "versions", "website",
    "response-cache-control", "response-content-disposition", "response-content-encoding",
    "response-content-language", "response-content-type", "response-expires",
})
# Query auth only: botocore moves the Content-Type, Content-MD5 and x-amz-* headers it
# signed into the URL's query; a request that does not send them as headers is checked
# with those values.
_HOISTABLE = ("content-md5", "content-type")
SIGNED_STREAMING = ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")

MSG_ONE_SPACE = "Authorization header is invalid -- one and only one ' ' (space) required"
MSG_BAD_HEADER = "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature"
MSG_QUERY_MISSING = (
    "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters"
)
MSG_BAD_EXPIRES = "Invalid date (should be seconds since epoch): "
MSG_SIGNED_CHUNKS = ("Signed aws-chunked payloads (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) "
                     "require AWS Signature Version 4")

_FOLD_RE = re.compile(r"[ \t]*\r?\n[ \t]*")  # obsolete line folding -> one space
_EXPIRES_RE = re.compile(r"[+-]?[0-9]{1,19}")
_ISO_BASIC_RE = re.compile(r"\d{8}T\d{6}Z")
_EXPIRES_MAX = 2**31 - 1  # AWS reads Expires up to an int32 (2038-01-19)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST_INSTANT = -62135596800  # 0001-01-01T00:00:00Z: earlier is not a date here


# --- choosing the mode -------------------------------------------------------------------

def _scheme(authorization: str) -> str:
    return authorization.partition(" ")[0].upper()


def applies(req: SigningRequest) -> bool:
    """True when the request is SigV2's to answer: an ``AWS`` Authorization scheme (without
    SigV4 query parameters, which SigV4 refuses as two mechanisms), or a ``Signature`` query
    parameter (with anything else in the query or header, as two mechanisms)."""
    if "Signature" in req.query:
        return True
    authorization = req.get_header("authorization")
    return (authorization is not None and _scheme(authorization) == SCHEME
            and not any(p in req.query for p in PRESIGN_MARKERS))


def query_signed(raw_query: str) -> bool:
    """Whether a raw query string carries a ``Signature`` parameter (V2 query auth)."""
    return any(segment.partition("=")[0] == "Signature" for segment in raw_query.split("&"))


def authenticate(
    req: SigningRequest,
    lookup: Callable[[str], Credential | None],
    *,
    now: datetime,
    clock_skew_s: int = 900,
    virtual_bucket: str | None = None,
) -> AuthResult:
    """Verify a request for which ``applies`` holds; raise AWS's error otherwise."""
    authorization = req.get_header("authorization")
    if "Signature" in req.query:
        if authorization is not None:
            raise InvalidArgument(MSG_TWO_MECHANISMS, ArgumentName="Authorization",
                                  ArgumentValue=authorization)
        if any(p in req.query for p in PRESIGN_MARKERS):
            raise InvalidArgument(MSG_TWO_MECHANISMS, ArgumentName="Authorization")
        return _query(req, lookup, now, virtual_bucket)
    assert authorization is not None
    return _header(req, authorization, lookup, now, clock_skew_s, virtual_bucket)


# --- canonicalisation --------------------------------------------------------------------

def _wire_bytes(raw: str) -> bytes:
    """The bytes of a raw (latin-1 view of the wire) query part, percent-decoded."""
    try:
        data = raw.encode("latin-1")
    except UnicodeEncodeError:
        data = raw.encode("utf-8", "surrogateescape")
    return unquote_to_bytes(data)


def _text(raw: str) -> str:
    """Percent-decode a raw query part; bytes that are not UTF-8 survive as surrogates, and
    ``encode_sts`` turns them back into the same bytes."""
    return _wire_bytes(raw).decode("utf-8", "surrogateescape")


def canonical_amz_headers(headers: Iterable[tuple[str, str]]) -> str:
    """CanonicalizedAmzHeaders: lowercase names, sorted, one line each, values trimmed and
    the values of a repeated name joined with ``,`` (a WSGI environ already holds them so)."""
    merged: dict[str, list[str]] = {}
    for name, value in headers:
        lower = name.lower()
        if lower.startswith("x-amz-"):
            merged.setdefault(lower, []).append(_FOLD_RE.sub(" ", value.strip()))
    return "".join(f"{name}:{','.join(merged[name])}\n" for name in sorted(merged))


def canonical_subresources(raw_query: str, *, encoded: bool = False) -> str:
    """``?name[=value]&...`` of the sub-resources in the query, sorted by name (stable for a
    repeated name), or ``""``. Values are percent-decoded and an empty value is written as
    the bare name, as AWS describes. ``encoded`` is the form s3cmd signs: each decoded value
    percent-encoded again (all but ``A-Za-z0-9-_.~``), ``=`` kept when it was sent; it still
    binds exactly the decoded values."""
    picked: list[tuple[str, str]] = []
    for segment in raw_query.split("&"):
        raw_name, eq, raw_value = segment.partition("=")
        name = _text(raw_name)
        if name not in SUBRESOURCES:
            continue
        if encoded:
            value = quote_from_bytes(_wire_bytes(raw_value), safe="-_.~")
            picked.append((name, f"{name}={value}" if eq else name))
        else:
            value = _text(raw_value) if eq else ""
            picked.append((name, f"{name}={value}" if value else name))
    picked.sort(key=lambda item: item[0])
    return "?" + "&".join(text for _, text in picked) if picked else ""


def canonical_resource(raw_path: str, raw_query: str, *, virtual_bucket: str | None = None,
                       encoded: bool = False) -> str:
    """CanonicalizedResource: ``/bucket`` for a virtual-hosted request, then the path as
    sent (still percent-encoded, ``/`` when empty), then the sub-resources."""
    path = raw_path or "/"
    prefix = "/" + virtual_bucket if virtual_bucket is not None else ""
    return prefix + path + canonical_subresources(raw_query, encoded=encoded)


def string_to_sign(method: str, content_md5: str, content_type: str, date_line: str,
                   amz_headers: Iterable[tuple[str, str]], resource: str) -> str:
    return (f"{method}\n{content_md5}\n{content_type}\n{date_line}\n"
            f"{canonical_amz_headers(amz_headers)}{resource}")


def encode_sts(sts: str) -> bytes:
    return sts.encode("utf-8", "surrogateescape")


def sign(secret: str, sts: str) -> str:
    """Base64 of HMAC-SHA1(secret, StringToSign)."""
    digest = hmac.new(secret.encode("utf-8"), encode_sts(sts), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def string_to_sign_bytes(sts: str) -> str:
    """``StringToSignBytes`` as AWS sends it: two hex digits per byte, space-separated."""
    return " ".join(f"{b:02x}" for b in encode_sts(sts))


# --- dates -------------------------------------------------------------------------------

def parse_http_date(value: str) -> datetime | None:
    """An RFC 1123 / RFC 850 / asctime date (``Date``, ``x-amz-date``) or ISO 8601 basic."""
    value = value.strip()
    if _ISO_BASIC_RE.fullmatch(value):
        try:
            return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _iso(dt: datetime) -> str:
    return f"{dt.year:04d}-{dt:%m-%dT%H:%M:%SZ}"


def parse_expires(value: str) -> int:
    """``Expires``: integer seconds since the epoch, else 403 AccessDenied naming it."""
    if not _EXPIRES_RE.fullmatch(value):
        raise AccessDenied(MSG_BAD_EXPIRES + value)
    expires = int(value)
    if not _FIRST_INSTANT <= expires <= _EXPIRES_MAX:
        raise AccessDenied(MSG_BAD_EXPIRES + value)
    return expires


# --- verification --------------------------------------------------------------------------

def _same(expected: str, provided: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), provided.encode("utf-8", "replace"))


def _lookup(lookup: Callable[[str], Credential | None], akid: str) -> Credential:
    cred = lookup(akid)
    if cred is None or not cred.active:
        raise InvalidAccessKeyId(AWSAccessKeyId=akid)
    return cred


def _declared_sha256(req: SigningRequest) -> str | None:
    """The payload hash a V2 request declares, if any: checked like SigV4's, and the signed
    aws-chunked modes refused, since their chunk signatures chain from a SigV4 signature."""
    declared = req.get_header("x-amz-content-sha256")
    if declared is not None:
        check_content_sha256(declared)
        if declared in SIGNED_STREAMING:
            raise InvalidRequest(MSG_SIGNED_CHUNKS)
    return declared


def _resources(req: SigningRequest, virtual_bucket: str | None) -> list[str]:
    """CanonicalizedResource candidates, AWS's form first. [BS] also accepted: sub-resource
    values encoded again (s3cmd signs them so), and ``/bucket/`` for a path-style request to
    ``/bucket`` (boto3's signer adds the slash; AWS refuses it)."""
    paths = [req.raw_path or "/"]
    if virtual_bucket is None and re.fullmatch(r"/[^/]+", req.raw_path):
        paths.append(req.raw_path + "/")
    out: list[str] = []
    for path in paths:
        for encoded in (False, True):
            resource = canonical_resource(path, req.raw_query, virtual_bucket=virtual_bucket,
                                          encoded=encoded)
            if resource not in out:
                out.append(resource)
    return out


def _verify(req: SigningRequest, cred: Credential, access_key: str, signature: str,
            date_lines: list[tuple[str, list[tuple[str, str]]]],
            content: tuple[str, str], virtual_bucket: str | None, mode: str,
            declared: str | None) -> AuthResult:
    """Accept if any candidate string matches; else 403 naming AWS's own form."""
    first = ""
    for date_line, amz in date_lines:
        for resource in _resources(req, virtual_bucket):
            sts = string_to_sign(req.method, content[0], content[1], date_line, amz, resource)
            first = first or sts
            if _same(sign(cred.secret_key, sts), signature):
                return AuthResult(cred, mode, declared, signature=signature, string_to_sign=sts)
    raise SignatureDoesNotMatch(
        AWSAccessKeyId=access_key,
        StringToSign=encode_sts(first).decode("utf-8", "replace"),
        SignatureProvided=signature, StringToSignBytes=string_to_sign_bytes(first))


def _amz_headers(req: SigningRequest) -> list[tuple[str, str]]:
    return [(name, req.get_header(name) or "") for name in dict.fromkeys(req.header_names)
            if name.startswith("x-amz-")]


def _header(req: SigningRequest, authorization: str,
            lookup: Callable[[str], Credential | None], now: datetime, skew: int,
            virtual_bucket: str | None) -> AuthResult:
    _, space, rest = authorization.partition(" ")
    argument = {"ArgumentName": "Authorization", "ArgumentValue": authorization}
    if not space or rest.startswith(" "):
        raise InvalidArgument(MSG_ONE_SPACE, **argument)
    access_key, colon, signature = rest.partition(":")
    if not colon or not signature or ":" in signature:
        raise InvalidArgument(MSG_BAD_HEADER, **argument)
    amz_date = req.get_header("x-amz-date")
    date = req.get_header("date")
    request_date = amz_date if amz_date is not None else date
    request_time = parse_http_date(request_date) if request_date is not None else None
    if request_date is None or request_time is None:
        raise AccessDenied(MSG_NO_DATE)
    if abs((now - request_time).total_seconds()) > skew:
        raise RequestTimeTooSkewed(RequestTime=request_date, ServerTime=_iso(now),
                                   MaxAllowedSkewMilliseconds=skew * 1000)
    declared = _declared_sha256(req)
    cred = _lookup(lookup, access_key)
    amz = _amz_headers(req)
    if amz_date is None:
        date_lines = [(request_date, amz)]
    else:
        # [S3] with x-amz-date the Date line is empty and x-amz-date is signed among the
        # x-amz-* headers. [BS] AWS's own DELETE example puts x-amz-date on the Date line
        # instead (and not among the headers); that form is accepted too.
        without = [(n, v) for n, v in amz if n != "x-amz-date"]
        date_lines = [("", amz), (amz_date.strip(), without)]
    content = ((req.get_header("content-md5") or "").strip(),
               (req.get_header("content-type") or "").strip())
    return _verify(req, cred, access_key, signature, date_lines, content, virtual_bucket,
                   "header", declared)


def _query(req: SigningRequest, lookup: Callable[[str], Credential | None], now: datetime,
           virtual_bucket: str | None) -> AuthResult:
    q = req.query
    if any(p not in q for p in QUERY_PARAMS):
        raise AccessDenied(MSG_QUERY_MISSING)
    expires_text = q["Expires"]
    expires = parse_expires(expires_text)
    if now.timestamp() > expires:
        raise AccessDenied("Request has expired",
                           Expires=_iso(_EPOCH + timedelta(seconds=expires)),
                           ServerTime=_iso(now))
    declared = _declared_sha256(req)
    access_key = q["AWSAccessKeyId"]
    cred = _lookup(lookup, access_key)
    amz = _amz_headers(req)
    present = {name for name, _ in amz}
    amz += [(name, value) for name, value in _hoisted(q) if name not in present]
    content_md5, content_type = (_header_or_query(req, name) for name in _HOISTABLE)
    return _verify(req, cred, access_key, q["Signature"], [(expires_text, amz)],
                   (content_md5, content_type), virtual_bucket, "presigned", declared)


def _header_or_query(req: SigningRequest, name: str) -> str:
    value = req.get_header(name)
    return (value if value is not None else req.query.get(name, "")).strip()


def _hoisted(q: Mapping[str, str]) -> list[tuple[str, str]]:
    """``x-amz-*`` query parameters (lowercase, as botocore writes them) standing in for
    headers a presigned URL's signer signed."""
    return [(name, value) for name, value in q.items() if name.startswith("x-amz-")]
