"""AWS Signature Version 4 verification for S3 (auth.md §1-§5; the signing primitives and
the chunk math of §6.3/§6.4 are in ``sigv4_signing``).

Sans-I/O: the caller hands in a ``SigningRequest`` (raw path and query exactly as received,
a lowercase header getter) and a credential lookup; ``authenticate`` returns an ``AuthResult``
or raises an ``S3Error``.

Invariants:
- validation happens in the order the spec lists, so the first problem decides the error;
- signatures are compared with ``hmac.compare_digest`` only (``sigv4_signing.same``);
- the canonical request is built from the raw request target, never from a decoded path,
  and hashed as the bytes the client sent (header values are given as their text,
  undecodable bytes as surrogates: ``canonical_bytes``);
- a signed request is fully verified by ``authenticate``, before any body byte is read:
  header auth requires ``x-amz-content-sha256`` [S3], and every ``x-amz-*`` header present
  must be signed [S3].
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bleepstore.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidRequest,
    RequestTimeTooSkewed,
    S3Error,
    S3NotImplemented,
    SignatureDoesNotMatch,
)
from bleepstore.model import Credential
from bleepstore.s3.numbers import INT32_MAX, parse_saturated
from bleepstore.s3.sigv4_signing import (
    ALGORITHM,
    canonical_bytes,
    canonical_query,
    canonical_uri,
    raw_canonical_uri,
    same,
    sign,
    signing_key,
    string_to_sign,
)

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_VALUES = frozenset({"STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                              "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                              "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"})
ECDSA_VALUES = frozenset({"STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
                          "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER"})
MAX_EXPIRES = 604800
ISO_BASIC = "%Y%m%dT%H%M%SZ"

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TS_RE = re.compile(r"\d{8}T\d{6}Z")
_DATE_RE = re.compile(r"\d{8}")

PRESIGN_PARAMS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-Date",
                  "X-Amz-SignedHeaders", "X-Amz-Expires")
PRESIGN_MARKERS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature")
MSG_TWO_MECHANISMS = (
    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature "
    "query string parameter or the Authorization header should be specified"
)
MSG_NO_DATE = "AWS authentication requires a valid Date or x-amz-date header"
MSG_CREDENTIAL_DATE = "Invalid credential date. Date is not the same as X-Amz-Date."
MSG_PRESIGN_MISSING = (
    "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
    "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
)
MSG_EXPIRES_NOT_A_NUMBER = "X-Amz-Expires should be a number"
MSG_EXPIRES_NEGATIVE = "X-Amz-Expires must be non-negative"
MSG_EXPIRES_OVER_A_WEEK = (
    "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires "
    "must be less than 604800 seconds"
)
MSG_NO_CONTENT_SHA256 = "Missing required header for this request: x-amz-content-sha256"
MSG_BAD_SHA256 = (
    "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, "
    "or a valid sha256 value."
)


# --- request model -----------------------------------------------------------------------

@dataclass(frozen=True)
class SigningRequest:
    method: str
    raw_path: str  # path of the raw request target, still percent-encoded
    raw_query: str
    # lowercase name -> value or None; values as the client signed them, i.e. the text of
    # the wire bytes (web/environ.py ``wire_text``), not the WSGI latin-1 view
    get_header: Callable[[str], str | None]
    query: Mapping[str, str]  # first occurrence of each decoded parameter
    header_names: tuple[str, ...]  # lowercase names of every header present


@dataclass(frozen=True)
class AuthResult:
    credential: Credential | None  # None = anonymous
    mode: str  # "anonymous" | "header" | "presigned"
    content_sha256: str | None
    signing_key: bytes = b""
    timestamp: str = ""
    scope: str = ""
    signature: str = ""  # seed signature for aws-chunked
    canonical_request: str = ""
    string_to_sign: str = ""


@dataclass(frozen=True)
class _Parsed:
    """The parts of a signed request common to header and presigned auth."""

    access_key: str
    date: str
    region: str
    signed_headers: str
    signature: str
    timestamp: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/s3/aws4_request"


def authenticate(
    req: SigningRequest,
    lookup: Callable[[str], Credential | None],
    *,
    now: datetime,
    clock_skew_s: int = 900,
    server_region: str = "us-east-1",
    enforce_region: bool = False,
) -> AuthResult:
    """Choose the auth mode (§1) and verify the request; raise the spec's error otherwise."""
    authorization = req.get_header("authorization")
    region = server_region if enforce_region else None
    # NOTE: X-Amz-Credential or X-Amz-Signature without X-Amz-Algorithm is a broken presigned
    # URL (§4 step 1), not an anonymous request.
    if any(p in req.query for p in PRESIGN_MARKERS):
        if authorization is not None:
            raise InvalidArgument(MSG_TWO_MECHANISMS, ArgumentName="Authorization")
        return _presigned(req, lookup, now, clock_skew_s, region)
    if authorization is not None:
        if not authorization.startswith(ALGORITHM + " "):
            raise InvalidArgument("Unsupported Authorization Type", ArgumentName="Authorization")
        return _header(req, authorization, lookup, now, clock_skew_s, region)
    # NOTE: SigV2 query auth (AWSAccessKeyId + Signature) is refused like a SigV2 header,
    # rather than silently treated as anonymous.
    if "Signature" in req.query and "AWSAccessKeyId" in req.query:
        raise InvalidArgument("Unsupported Authorization Type", ArgumentName="Authorization")
    declared = req.get_header("x-amz-content-sha256")
    if declared is not None:
        check_content_sha256(declared)
    return AuthResult(credential=None, mode="anonymous", content_sha256=declared)


def check_content_sha256(value: str) -> None:
    """Validate an x-amz-content-sha256 value (§3.1 HashedPayload)."""
    if value == UNSIGNED_PAYLOAD or value in STREAMING_VALUES or _HEX64.fullmatch(value):
        return
    if value in ECDSA_VALUES:
        raise S3NotImplemented("The ECDSA (SigV4a) streaming payload signature is not implemented.")
    raise InvalidArgument(MSG_BAD_SHA256, ArgumentName="x-amz-content-sha256", ArgumentValue=value)


# --- header auth (§2) --------------------------------------------------------------------

def _malformed(detail: str, **extra: str) -> AuthorizationHeaderMalformed:
    return AuthorizationHeaderMalformed(f"The authorization header is malformed; {detail}", **extra)


def _parse_authorization(value: str, region: str | None) -> _Parsed:
    """§2.1: parse ``AWS4-HMAC-SHA256 ...`` and check its scope (timestamp left empty)."""
    parts: dict[str, str] = {}
    for item in value[len(ALGORITHM) + 1:].split(","):
        key, eq, val = item.strip().partition("=")
        if not eq or key not in ("Credential", "SignedHeaders", "Signature") or key in parts:
            raise _malformed("incorrect component " + repr(item.strip()))
        parts[key] = val.strip()
    for key in ("Credential", "SignedHeaders", "Signature"):
        if key not in parts:
            raise _malformed(f"missing {key}")
    if not _HEX64.fullmatch(parts["Signature"]):
        raise _malformed("the Signature is malformed")
    if not _valid_signed_headers(parts["SignedHeaders"]):
        raise _malformed("the SignedHeaders are malformed")
    akid, date, cred_region = _scope(parts["Credential"], region, AuthorizationHeaderMalformed,
                                     "The authorization header is malformed; ")
    return _Parsed(akid, date, cred_region, parts["SignedHeaders"], parts["Signature"], "")


def _valid_signed_headers(value: str) -> bool:
    return bool(value) and all(value.split(";"))


def _scope(credential: str, region: str | None, error: type[S3Error],
           prefix: str) -> tuple[str, str, str]:
    """-> (access_key, date, region) of a well-formed 5-field scope, else raise ``error``."""
    fields = credential.split("/")
    if (len(fields) != 5 or not fields[0] or not fields[2] or not _DATE_RE.fullmatch(fields[1])
            or fields[3] != "s3" or fields[4] != "aws4_request"):
        raise error(prefix + 'the Credential is mal-formed; expecting '
                    '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".')
    if region is not None and fields[2] != region:
        raise error(f"{prefix}the region '{fields[2]}' is wrong; expecting '{region}'",
                    Region=region)
    return fields[0], fields[1], fields[2]


def _header_timestamp(req: SigningRequest) -> str:
    """§2.2: x-amz-date, else the Date header converted to ISO 8601 basic."""
    amz = req.get_header("x-amz-date")
    if amz is not None:
        if _parse_basic(amz.strip()) is None:
            raise AccessDenied(MSG_NO_DATE)
        return amz.strip()
    date = req.get_header("date")
    if date is None:
        raise AccessDenied(MSG_NO_DATE)
    try:
        parsed = email.utils.parsedate_to_datetime(date)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        utc = parsed.astimezone(UTC)  # OverflowError past year 9999 (e.g. 9999-12-31 -2359)
    except (TypeError, ValueError, OverflowError):
        raise AccessDenied(MSG_NO_DATE) from None
    # NOTE: %Y is not zero-padded below year 1000 on every platform; basic format needs 4.
    return f"{utc.year:04d}{utc:%m%dT%H%M%SZ}"


def _parse_basic(value: str) -> datetime | None:
    if not _TS_RE.fullmatch(value):
        return None
    try:  # the digits by position: strptime costs ~10 us a request
        return datetime(int(value[0:4]), int(value[4:6]), int(value[6:8]), int(value[9:11]),
                        int(value[11:13]), int(value[13:15]), tzinfo=UTC)
    except ValueError:
        return None


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _header(req: SigningRequest, authorization: str, lookup: Callable[[str], Credential | None],
            now: datetime, skew: int, region: str | None) -> AuthResult:
    parsed = _parse_authorization(authorization, region)
    timestamp = _header_timestamp(req)
    parsed = replace(parsed, timestamp=timestamp)
    if parsed.date != timestamp[:8]:
        raise AuthorizationHeaderMalformed(MSG_CREDENTIAL_DATE)
    declared = req.get_header("x-amz-content-sha256")
    if declared is None:
        # NOTE: [S3] without the declared payload hash the signature cannot be checked
        # before the body is read, and nothing may happen before it is checked.
        raise InvalidRequest(MSG_NO_CONTENT_SHA256)
    check_content_sha256(declared)
    cred = _lookup(lookup, parsed.access_key)
    request_time = _parse_basic(timestamp)
    assert request_time is not None  # validated by _header_timestamp
    if abs((now - request_time).total_seconds()) > skew:
        raise RequestTimeTooSkewed(RequestTime=timestamp, ServerTime=_iso(now),
                                   MaxAllowedSkewMilliseconds=skew * 1000)
    _check_signed_headers(req, parsed)
    key = signing_key(cred.secret_key, parsed.date, parsed.region)
    result = AuthResult(cred, "header", declared, key, timestamp, parsed.scope, parsed.signature)
    return _verify(result, req, parsed, declared, drop_signature=False)


def _lookup(lookup: Callable[[str], Credential | None], akid: str) -> Credential:
    cred = lookup(akid)
    if cred is None or not cred.active:
        raise InvalidAccessKeyId(AWSAccessKeyId=akid)
    return cred


def _check_signed_headers(req: SigningRequest, parsed: _Parsed) -> None:
    """§2.3: host must be signed, every signed header must be present, and every
    ``x-amz-*`` header present must be signed [S3] — else a captured request or a
    presigned URL could be replayed with, say, an added x-amz-copy-source or x-amz-acl."""
    names = parsed.signed_headers.split(";")
    missing = "host" not in names or any(req.get_header(n.lower()) is None for n in names)
    if missing:
        raise SignatureDoesNotMatch(
            "There were headers present in the request which were not signed"
            if "host" not in names else "A signed header is missing from the request",
            AWSAccessKeyId=parsed.access_key, SignatureProvided=parsed.signature)
    signed = {n.lower() for n in names}
    unsigned = [n for n in req.header_names if n.startswith("x-amz-") and n not in signed]
    if unsigned:
        raise AccessDenied("There were headers present in the request which were not signed",
                           HeadersNotSigned=", ".join(sorted(unsigned)))


# --- signature check shared by all modes (§3) -------------------------------------------

def _canonical_request(req: SigningRequest, path: str, parsed: _Parsed,
                       hashed_payload: str, drop_signature: bool) -> str:
    names = parsed.signed_headers.split(";")
    headers = "".join(f"{n.lower()}:{' '.join((req.get_header(n.lower()) or '').split())}\n"
                      for n in names)
    query = canonical_query(req.raw_query, drop_signature=drop_signature)
    return f"{req.method}\n{path}\n{query}\n{headers}\n{parsed.signed_headers}\n{hashed_payload}"


def _verify(result: AuthResult, req: SigningRequest, parsed: _Parsed, hashed_payload: str,
            *, drop_signature: bool) -> AuthResult:
    """Compute the signature for ``hashed_payload`` (canonical path, then raw path)."""
    first: tuple[str, str] | None = None
    paths = [canonical_uri(req.raw_path)]
    if raw_canonical_uri(req.raw_path) != paths[0]:
        paths.append(raw_canonical_uri(req.raw_path))
    for path in paths:
        creq = _canonical_request(req, path, parsed, hashed_payload, drop_signature)
        sts = string_to_sign(parsed.timestamp, parsed.scope, creq)
        if same(sign(result.signing_key, sts), parsed.signature):
            return replace(result, canonical_request=creq, string_to_sign=sts)
        first = first or (creq, sts)
    assert first is not None
    # NOTE: an error document cannot carry surrogates: undecodable bytes show as U+FFFD.
    shown = canonical_bytes(first[0]).decode("utf-8", "replace")
    raise SignatureDoesNotMatch(AWSAccessKeyId=parsed.access_key, StringToSign=first[1],
                                SignatureProvided=parsed.signature, CanonicalRequest=shown)


# --- presigned URLs (§4) -----------------------------------------------------------------

def _presigned(req: SigningRequest, lookup: Callable[[str], Credential | None],
               now: datetime, skew: int, region: str | None) -> AuthResult:
    q = req.query
    if any(p not in q for p in PRESIGN_PARAMS):
        raise AuthorizationQueryParametersError(MSG_PRESIGN_MISSING)
    parsed, signed_at = _presign_params(q, region)
    expires = _presign_expires(q["X-Amz-Expires"])
    cred = _lookup(lookup, parsed.access_key)
    if (signed_at - now).total_seconds() > skew:
        raise AccessDenied("Request is not valid yet")
    expiry = signed_at + timedelta(seconds=expires)
    if now > expiry:
        raise AccessDenied("Request has expired", **{"X-Amz-Expires": str(expires),
                                                     "Expires": _iso(expiry),
                                                     "ServerTime": _iso(now)})
    _check_signed_headers(req, parsed)
    key = signing_key(cred.secret_key, parsed.date, parsed.region)
    result = AuthResult(cred, "presigned", UNSIGNED_PAYLOAD, key, parsed.timestamp,
                        parsed.scope, parsed.signature)
    return _verify(result, req, parsed, UNSIGNED_PAYLOAD, drop_signature=True)


def _presign_params(q: Mapping[str, str], region: str | None) -> tuple[_Parsed, datetime]:
    """§4 step 2: algorithm, credential, date and the credential date."""
    if q["X-Amz-Algorithm"] != ALGORITHM:
        raise AuthorizationQueryParametersError(
            'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    akid, date, cred_region = _scope(q["X-Amz-Credential"], region,
                                     AuthorizationQueryParametersError,
                                     "Error parsing the X-Amz-Credential parameter; ")
    timestamp = q["X-Amz-Date"]
    signed_at = _parse_basic(timestamp)
    if signed_at is None:
        raise AuthorizationQueryParametersError(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    if date != timestamp[:8]:
        raise AuthorizationQueryParametersError(
            "Error parsing the X-Amz-Credential parameter; " + MSG_CREDENTIAL_DATE)
    signed_headers = q["X-Amz-SignedHeaders"]
    if not _valid_signed_headers(signed_headers):
        raise AuthorizationQueryParametersError("X-Amz-SignedHeaders is malformed")
    return _Parsed(akid, date, cred_region, signed_headers, q["X-Amz-Signature"],
                   timestamp), signed_at


def _presign_expires(value: str) -> int:
    """§4 step 3: an integer in 0..604800, else 400 AuthorizationQueryParametersError with
    S3's own message (docs/decisions.md: an out-of-range value is a 400, not a 403)."""
    # NOTE: past the 32-bit integer range X-Amz-Expires is "not a number" (issue 9),
    # not "more than a week".
    expires = parse_saturated(value, INT32_MAX, signed=True)
    if expires is None or abs(expires) > INT32_MAX:
        raise AuthorizationQueryParametersError(MSG_EXPIRES_NOT_A_NUMBER)
    if expires < 0:
        raise AuthorizationQueryParametersError(MSG_EXPIRES_NEGATIVE)
    if expires > MAX_EXPIRES:
        raise AuthorizationQueryParametersError(MSG_EXPIRES_OVER_A_WEEK)
    return expires
