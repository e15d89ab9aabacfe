"""SigV4 verification: AWS published vectors, botocore as an oracle, and every §1-§5 error."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import botocore.auth
import botocore.credentials
import pytest
from botocore.awsrequest import AWSRequest

from bleepstore import errors
from bleepstore.model import Credential
from bleepstore.s3 import sigv4, sigv4_signing
from bleepstore.s3.sigv4 import SigningRequest, authenticate

VECTORS = json.loads((Path(__file__).parent / "vectors" / "sigv4_aws_examples.json").read_text())
AKID, SECRET = VECTORS["access_key"], VECTORS["secret_key"]
NOW = datetime(2013, 5, 24, tzinfo=UTC)
EMPTY = hashlib.sha256(b"").hexdigest()
CRED = Credential(AKID, SECRET, owner_id="o" * 64, display_name="example")
INACTIVE = Credential("AKIDINACTIVE", SECRET, "o", "x", active=False)


def lookup(akid: str) -> Credential | None:
    return {AKID: CRED, INACTIVE.access_key_id: INACTIVE}.get(akid)


def make(method: str, path: str, query: str, headers: dict[str, str]) -> SigningRequest:
    lowered = {k.lower(): v for k, v in headers.items()}
    first: dict[str, str] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        first.setdefault(k, v)
    return SigningRequest(method, path, query, lowered.get, first, tuple(lowered))


def auth_header(
    signature: str,
    signed: str,
    *,
    akid: str = AKID,
    scope: str = "20130524/us-east-1/s3/aws4_request",
) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential={akid}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )


def tiny_sign(
    method: str,
    canon_path: str,
    canon_query: str,
    headers: dict[str, str],
    signed: str,
    payload: str,
    timestamp: str,
    region: str = "us-east-1",
) -> str:
    """An independent minimal SigV4 signer (inputs already canonical)."""
    hdrs = "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in signed.split(";"))
    creq = f"{method}\n{canon_path}\n{canon_query}\n{hdrs}\n{signed}\n{payload}"
    scope = f"{timestamp[:8]}/{region}/s3/aws4_request"
    sts = f"AWS4-HMAC-SHA256\n{timestamp}\n{scope}\n{hashlib.sha256(creq.encode()).hexdigest()}"
    key = ("AWS4" + SECRET).encode()
    for part in (timestamp[:8], region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()


def get_object(**override: str | None) -> dict[str, str]:
    """Headers of the AWS GetObject example, with overrides (None deletes a header)."""
    ex = VECTORS["header_examples"][0]
    headers = dict(ex["headers"])
    headers["authorization"] = auth_header(ex["signature"], ex["signed_headers"])
    for k, v in override.items():
        name = k.replace("_", "-")
        if v is None:
            headers.pop(name, None)
        else:
            headers[name] = v
    return headers


def expect(exc: type[errors.S3Error], fn: Callable[[], Any], **extra: str) -> errors.S3Error:
    with pytest.raises(exc) as info:
        fn()
    for k, v in extra.items():
        assert info.value.extra.get(k) == v, (k, info.value.extra)
    return info.value


# --- canonicalisation tables --------------------------------------------------------------


@pytest.mark.parametrize(
    "data,encode_slash,expected",
    [
        (b"AZaz09-_.~", True, "AZaz09-_.~"),
        (b"a b", False, "a%20b"),
        (b"a/b", False, "a/b"),
        (b"a/b", True, "a%2Fb"),
        (b"+=&?#%", True, "%2B%3D%26%3F%23%25"),
        ("ü".encode(), False, "%C3%BC"),
        (b"\x00\xff", False, "%00%FF"),
        (b"*'()!$", False, "%2A%27%28%29%21%24"),
    ],
)
def test_uri_encode(data: bytes, encode_slash: bool, expected: str) -> None:
    assert sigv4_signing.uri_encode(data, encode_slash=encode_slash) == expected


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("", "/"),
        ("/", "/"),
        ("/test.txt", "/test.txt"),
        ("/test$file.text", "/test%24file.text"),
        ("/a%20b", "/a%20b"),
        ("/a%2fb", "/a/b"),
        ("/a+b", "/a%2Bb"),
        ("/100%", "/100%25"),
        ("/100%zz", "/100%25zz"),
        ("/%7Etilde", "/~tilde"),
        ("/a//b/./../c/", "/a//b/./../c/"),
        ("/%C3%BC", "/%C3%BC"),
        ("/%c3%bc", "/%C3%BC"),
    ],
)
def test_canonical_uri(raw: str, expected: str) -> None:
    assert sigv4_signing.canonical_uri(raw) == expected
    assert sigv4_signing.raw_canonical_uri(raw) == (raw or "/")


@pytest.mark.parametrize(
    "raw,drop,expected",
    [
        ("", False, ""),
        ("acl", False, "acl="),
        ("acl=", False, "acl="),
        ("max-keys=2&prefix=J", False, "max-keys=2&prefix=J"),
        ("prefix=J&max-keys=2", False, "max-keys=2&prefix=J"),
        ("a=2&a=1&&b", False, "a=1&a=2&b="),
        ("prefix=a+b", False, "prefix=a%2Bb"),
        ("prefix=a%20b&delimiter=/", False, "delimiter=%2F&prefix=a%20b"),
        ("k=v=w", False, "k=v%3Dw"),
        ("X-Amz-Signature=abc&x=1", True, "x=1"),
        ("X-Amz-Signature=abc&x=1", False, "X-Amz-Signature=abc&x=1"),
        ("%7e=%7E", False, "~=~"),
        ("b=1&B=1&_=1", False, "B=1&_=1&b=1"),
    ],
)
def test_canonical_query(raw: str, drop: bool, expected: str) -> None:
    assert sigv4_signing.canonical_query(raw, drop_signature=drop) == expected


def test_signing_key_vector_and_cache() -> None:
    key = sigv4_signing.signing_key(SECRET, "20130524", "us-east-1")
    assert key.hex() == VECTORS["signing_key_hex"]
    assert sigv4_signing.signing_key(SECRET, "20130524", "us-east-1") is key
    assert sigv4_signing.signing_key.cache_info().maxsize == 1024


# --- AWS published examples ---------------------------------------------------------------


@pytest.mark.parametrize("ex", VECTORS["header_examples"], ids=lambda e: e["name"])
def test_aws_header_examples(ex: dict[str, Any]) -> None:
    headers = dict(ex["headers"], authorization=auth_header(ex["signature"], ex["signed_headers"]))
    result = authenticate(make(ex["method"], ex["path"], ex["query"], headers), lookup, now=NOW)
    assert (result.mode, result.credential) == ("header", CRED)
    assert result.signing_key.hex() == VECTORS["signing_key_hex"]
    assert result.signature == ex["signature"]
    assert result.scope == "20130524/us-east-1/s3/aws4_request"
    assert result.content_sha256 == ex["headers"]["x-amz-content-sha256"]
    if ex["canonical_request_sha256"]:
        assert (
            hashlib.sha256(result.canonical_request.encode()).hexdigest()
            == ex["canonical_request_sha256"]
        )
        assert result.string_to_sign.endswith(ex["canonical_request_sha256"])
    if "body" in ex:
        assert (
            hashlib.sha256(ex["body"].encode()).hexdigest() == ex["headers"]["x-amz-content-sha256"]
        )
    bad = dict(headers, authorization=auth_header("0" * 64, ex["signed_headers"]))
    expect(
        errors.SignatureDoesNotMatch,
        lambda: authenticate(make(ex["method"], ex["path"], ex["query"], bad), lookup, now=NOW),
    )


def test_aws_presigned_example() -> None:
    ex = VECTORS["presigned_example"]
    req = make(ex["method"], ex["path"], ex["query"], ex["headers"])
    for now in (NOW, NOW + timedelta(seconds=86400)):
        result = authenticate(req, lookup, now=now)
        assert (result.mode, result.content_sha256, result.signature) == (
            "presigned",
            "UNSIGNED-PAYLOAD",
            ex["signature"],
        )
    expect(
        errors.AccessDenied,
        lambda: authenticate(req, lookup, now=NOW + timedelta(seconds=86401)),
        **{
            "X-Amz-Expires": "86400",
            "Expires": "2013-05-25T00:00:00Z",
            "ServerTime": "2013-05-25T00:00:01Z",
        },
    )


# --- botocore as an oracle ----------------------------------------------------------------

BOTO_CREDS = botocore.credentials.Credentials(AKID, SECRET)
KEYS = [
    "plain.txt",
    "a b",
    "ünïcødé/файл",
    "a+b",
    "100%",
    "~tilde",
    "a//b",
    "dir/",
    "x?y#z",
    "a=b&c",
    "*(){}!$'",
    "semi;colon:,",
    "",
]
QUERIES = [
    "",
    "acl",
    "uploads",
    "prefix=a%2Fb&delimiter=%2F",
    "list-type=2&prefix=a%2Bb",
    "tagging&versionId=abc",
    "a=2&a=1",
    "response-content-type=text%2Fplain",
]


def botocore_request(
    key: str,
    query: str,
    method: str = "PUT",
    body: bytes = b"hello",
    signer: str = "header",
    extra: dict[str, str] | None = None,
) -> tuple[SigningRequest, datetime]:
    path = "/bucket/" + quote(key, safe="/~")
    url = "http://s3.localhost:9000" + path + ("?" + query if query else "")
    request = AWSRequest(method=method, url=url, data=body, headers=dict(extra or {}))
    if signer == "header":
        botocore.auth.S3SigV4Auth(BOTO_CREDS, "s3", "us-east-1").add_auth(request)
    elif signer == "generic":
        botocore.auth.SigV4Auth(BOTO_CREDS, "s3", "us-east-1").add_auth(request)
    else:
        botocore.auth.S3SigV4QueryAuth(BOTO_CREDS, "s3", "us-east-1", expires=3600).add_auth(
            request
        )
    parts = urlsplit(request.url)
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers["host"] = parts.netloc
    req = make(method, parts.path, parts.query, headers)
    stamp = headers.get("x-amz-date") or req.query["X-Amz-Date"]
    return req, datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def with_(req: SigningRequest, **changes: Any) -> SigningRequest:
    """Rebuild ``req`` with a new path/query/method/headers, keeping ``query`` consistent."""
    headers = changes.pop("headers", None)
    new = replace(req, **changes)
    if headers is not None:
        new = replace(new, get_header=headers.get)
    return make(
        new.method,
        new.raw_path,
        new.raw_query,
        headers if headers is not None else _all_headers(req),
    )


def _all_headers(req: SigningRequest) -> dict[str, str]:
    names = [
        "host",
        "authorization",
        "x-amz-date",
        "x-amz-content-sha256",
        "content-md5",
        "content-type",
        "x-amz-meta-a",
    ]
    return {n: v for n in names if (v := req.get_header(n)) is not None}


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("query", QUERIES)
def test_botocore_header_auth_accepts(key: str, query: str) -> None:
    req, now = botocore_request(key, query)
    result = authenticate(req, lookup, now=now)
    assert result.mode == "header"
    assert result.content_sha256 == hashlib.sha256(b"hello").hexdigest()


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("query", ["", "acl", "a=2&a=1", "response-content-type=text%2Fplain"])
def test_botocore_presigned_accepts(key: str, query: str) -> None:
    req, now = botocore_request(key, query, method="GET", body=b"", signer="query")
    result = authenticate(req, lookup, now=now + timedelta(seconds=3600))
    assert (result.mode, result.content_sha256) == ("presigned", "UNSIGNED-PAYLOAD")
    expect(
        errors.AccessDenied, lambda: authenticate(req, lookup, now=now + timedelta(seconds=3601))
    )


def _flip(text: str, i: int) -> str:
    c = text[i]
    new = "Z" if c != "Z" else "Y"
    if c in "0123456789abcdef":
        new = "0" if c != "0" else "1"  # keep a hex string hex
    return text[:i] + new + text[i + 1 :]


@pytest.mark.parametrize("signer", ["header", "query"])
@pytest.mark.parametrize("key", ["a b/ü+%", "dir/"])
def test_botocore_tampering_rejected(signer: str, key: str) -> None:
    req, now = botocore_request(
        key, "acl&a=1", method="GET", body=b"", signer=signer, extra={"x-amz-meta-a": "v"}
    )
    if signer == "query":
        now += timedelta(seconds=1)
    authenticate(req, lookup, now=now)
    headers = _all_headers(req)
    tampered = [
        with_(req, method="PUT"),
        with_(req, raw_query=req.raw_query + "&b=1"),
        with_(req, raw_query=req.raw_query.replace("acl", "acm")),
        with_(req, raw_path=req.raw_path + "x"),
        with_(req, raw_path=req.raw_path + "/"),
        with_(req, headers=dict(headers, host="s3.localhost:9001")),
    ]
    tampered += [with_(req, raw_path=_flip(req.raw_path, i)) for i in range(len(req.raw_path))]
    if signer == "header":
        auth = headers["authorization"]
        tampered += [
            with_(req, headers=dict(headers, authorization=_flip(auth, len(auth) - i)))
            for i in range(1, 65)
        ]
        tampered.append(with_(req, headers=dict(headers, **{"x-amz-meta-a": "w"})))
        sha = headers["x-amz-content-sha256"]
        tampered.append(
            with_(req, headers=dict(headers, **{"x-amz-content-sha256": _flip(sha, 5)}))
        )
        stamp = headers["x-amz-date"]
        tampered.append(with_(req, headers=dict(headers, **{"x-amz-date": _flip(stamp, 14)})))
    else:
        sig_at = req.raw_query.index("X-Amz-Signature=") + len("X-Amz-Signature=")
        tampered += [with_(req, raw_query=_flip(req.raw_query, sig_at + i)) for i in range(64)]
        tampered.append(
            with_(req, raw_query=req.raw_query.replace("X-Amz-Expires=3600", "X-Amz-Expires=3601"))
        )
    for bad in tampered:
        with pytest.raises(errors.SignatureDoesNotMatch):
            authenticate(bad, lookup, now=now)
            print("accepted tampered request:", bad.method, bad.raw_path, bad.raw_query)


def test_header_auth_requires_x_amz_content_sha256() -> None:
    """[S3] a generic SigV4 signer leaves the payload hash out: refused before any body read."""
    req, now = botocore_request("k", "", body=b"payload", signer="generic")
    assert req.get_header("x-amz-content-sha256") is None
    err = expect(errors.InvalidRequest, lambda: authenticate(req, lookup, now=now))
    assert err.msg == "Missing required header for this request: x-amz-content-sha256"


@pytest.mark.parametrize("signer", ["header", "presigned"])
@pytest.mark.parametrize("added", ["x-amz-acl", "x-amz-copy-source", "x-amz-meta-a",
                                   "x-amz-checksum-crc32", "x-amz-server-side-encryption",
                                   "x-amz-grant-read", "x-amz-tagging",
                                   "x-amz-metadata-directive", "X-Amz-Storage-Class"])
def test_unsigned_x_amz_header_is_refused(signer: str, added: str) -> None:
    """[S3] every x-amz-* header present must be signed, in both modes."""
    req, now = botocore_request("k", "", body=b"", signer=signer)
    assert authenticate(req, lookup, now=now).credential == CRED
    get = req.get_header
    extra = {added.lower(): "v"}
    tampered = replace(req, get_header=lambda n: extra.get(n) or get(n),
                       header_names=req.header_names + (added.lower(),))
    err = expect(errors.AccessDenied, lambda: authenticate(tampered, lookup, now=now),
                 HeadersNotSigned=added.lower())
    assert err.msg == "There were headers present in the request which were not signed"


def test_signed_x_amz_headers_are_accepted() -> None:
    req, now = botocore_request("k", "", body=b"", signer="presigned",
                                extra={"x-amz-acl": "private"})
    assert "x-amz-acl" in req.header_names
    assert authenticate(req, lookup, now=now).credential == CRED


# --- §1 mode choice -----------------------------------------------------------------------


def test_anonymous() -> None:
    result = authenticate(make("GET", "/b/k", "", {"host": "h"}), lookup, now=NOW)
    assert (result.mode, result.credential, result.content_sha256) == ("anonymous", None, None)
    result = authenticate(
        make("PUT", "/b/k", "", {"host": "h", "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}),
        lookup,
        now=NOW,
    )
    assert result.content_sha256 == "UNSIGNED-PAYLOAD"
    expect(
        errors.InvalidArgument,
        lambda: authenticate(
            make("PUT", "/b/k", "", {"host": "h", "x-amz-content-sha256": "nope"}), lookup, now=NOW
        ),
    )


@pytest.mark.parametrize(
    "query,headers,exc,extra",
    [
        (
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            get_object(),
            errors.InvalidArgument,
            {"ArgumentName": "Authorization"},
        ),
        (
            "",
            get_object(authorization="AWS AKIAIOSFODNN7EXAMPLE:c2lnbmF0dXJl"),
            errors.InvalidArgument,
            {"ArgumentName": "Authorization"},
        ),
        ("", get_object(authorization="Bearer xyz"), errors.InvalidArgument, {}),
        ("", get_object(authorization="AWS4-HMAC-SHA256"), errors.InvalidArgument, {}),
        (
            "AWSAccessKeyId=AKID&Signature=abc&Expires=1",
            get_object(authorization=None),
            errors.InvalidArgument,
            {},
        ),
    ],
)
def test_mode_errors(
    query: str, headers: dict[str, str], exc: type[errors.S3Error], extra: dict[str, str]
) -> None:
    expect(
        exc,
        lambda: authenticate(make("GET", "/test.txt", query, headers), lookup, now=NOW),
        **extra,
    )


# --- §2 header auth errors ----------------------------------------------------------------

SIG = VECTORS["header_examples"][0]["signature"]
SH = VECTORS["header_examples"][0]["signed_headers"]
CRED_SCOPE = f"Credential={AKID}/20130524/us-east-1/s3/aws4_request"
HEADER_ERRORS: list[tuple[str, dict[str, str | None], type[errors.S3Error], dict[str, str]]] = [
    (
        "missing Signature",
        {"authorization": f"AWS4-HMAC-SHA256 {CRED_SCOPE}, SignedHeaders={SH}"},
        errors.AuthorizationHeaderMalformed,
        {},
    ),
    (
        "missing SignedHeaders",
        {"authorization": f"AWS4-HMAC-SHA256 {CRED_SCOPE}, Signature={SIG}"},
        errors.AuthorizationHeaderMalformed,
        {},
    ),
    (
        "missing Credential",
        {"authorization": f"AWS4-HMAC-SHA256 SignedHeaders={SH}, Signature={SIG}"},
        errors.AuthorizationHeaderMalformed,
        {},
    ),
    (
        "duplicate",
        {"authorization": auth_header(SIG, SH) + f", Signature={SIG}"},
        errors.AuthorizationHeaderMalformed,
        {},
    ),
    (
        "unknown component",
        {"authorization": auth_header(SIG, SH) + ", Foo=bar"},
        errors.AuthorizationHeaderMalformed,
        {},
    ),
    (
        "uppercase sig",
        {"authorization": auth_header(SIG.upper(), SH)},
        errors.AuthorizationHeaderMalformed,
        {},
    ),
    (
        "short sig",
        {"authorization": auth_header(SIG[:-1], SH)},
        errors.AuthorizationHeaderMalformed,
        {},
    ),
    (
        "empty signed headers",
        {"authorization": auth_header(SIG, "")},
        errors.AuthorizationHeaderMalformed,
        {},
    ),
    (
        "4-field scope",
        {"authorization": auth_header(SIG, SH, scope="20130524/us-east-1/s3")},
        errors.AuthorizationHeaderMalformed,
        {},
    ),
    (
        "bad scope date",
        {"authorization": auth_header(SIG, SH, scope="2013052/us-east-1/s3/aws4_request")},
        errors.AuthorizationHeaderMalformed,
        {},
    ),
    (
        "service",
        {"authorization": auth_header(SIG, SH, scope="20130524/us-east-1/ec2/aws4_request")},
        errors.AuthorizationHeaderMalformed,
        {},
    ),
    (
        "terminator",
        {"authorization": auth_header(SIG, SH, scope="20130524/us-east-1/s3/aws4_req")},
        errors.AuthorizationHeaderMalformed,
        {},
    ),
    (
        "scope date != x-amz-date",
        {"authorization": auth_header(SIG, SH, scope="20130523/us-east-1/s3/aws4_request")},
        errors.AuthorizationHeaderMalformed,
        {},
    ),
    ("no date at all", {"x-amz-date": None}, errors.AccessDenied, {}),
    (
        "malformed header wins over missing date",
        {"x-amz-date": None, "authorization": f"AWS4-HMAC-SHA256 {CRED_SCOPE}"},
        errors.AuthorizationHeaderMalformed,
        {},
    ),
    (
        "scope date checked before key lookup",
        {
            "authorization": auth_header(
                SIG, SH, akid="AKIDUNKNOWN", scope="20130523/us-east-1/s3/aws4_request"
            )
        },
        errors.AuthorizationHeaderMalformed,
        {},
    ),
    ("bad x-amz-date", {"x-amz-date": "2013-05-24T00:00:00Z"}, errors.AccessDenied, {}),
    ("impossible x-amz-date", {"x-amz-date": "20131324T000000Z"}, errors.AccessDenied, {}),
    ("bad Date header", {"x-amz-date": None, "date": "yesterday"}, errors.AccessDenied, {}),
    ("bad content sha", {"x-amz-content-sha256": "abc"}, errors.InvalidArgument, {}),
    ("uppercase content sha", {"x-amz-content-sha256": EMPTY.upper()}, errors.InvalidArgument, {}),
    (
        "ecdsa",
        {"x-amz-content-sha256": "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"},
        errors.S3NotImplemented,
        {},
    ),
    (
        "ecdsa trailer",
        {"x-amz-content-sha256": "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER"},
        errors.S3NotImplemented,
        {},
    ),
    (
        "unknown key",
        {"authorization": auth_header(SIG, SH, akid="AKIDUNKNOWN")},
        errors.InvalidAccessKeyId,
        {"AWSAccessKeyId": "AKIDUNKNOWN"},
    ),
    (
        "inactive key",
        {"authorization": auth_header(SIG, SH, akid="AKIDINACTIVE")},
        errors.InvalidAccessKeyId,
        {"AWSAccessKeyId": "AKIDINACTIVE"},
    ),
    (
        "host not signed",
        {"authorization": auth_header(SIG, "range;x-amz-content-sha256;x-amz-date")},
        errors.SignatureDoesNotMatch,
        {},
    ),
    ("signed header missing", {"range": None}, errors.SignatureDoesNotMatch, {}),
    (
        "header value changed",
        {"range": "bytes=0-10"},
        errors.SignatureDoesNotMatch,
        {"AWSAccessKeyId": AKID, "SignatureProvided": SIG},
    ),
]


@pytest.mark.parametrize(
    "name,override,exc,extra", HEADER_ERRORS, ids=[e[0] for e in HEADER_ERRORS]
)
def test_header_errors(
    name: str, override: dict[str, str | None], exc: type[errors.S3Error], extra: dict[str, str]
) -> None:
    headers = get_object(**{k.replace("-", "_"): v for k, v in override.items()})
    err = expect(
        exc, lambda: authenticate(make("GET", "/test.txt", "", headers), lookup, now=NOW), **extra
    )
    assert err.status in (400, 403, 501)


def test_header_error_messages_and_elements() -> None:
    headers = get_object(
        authorization=auth_header(SIG, SH, scope="20130523/us-east-1/s3/aws4_request")
    )
    err = expect(
        errors.AuthorizationHeaderMalformed,
        lambda: authenticate(make("GET", "/test.txt", "", headers), lookup, now=NOW),
    )
    assert err.msg == "Invalid credential date. Date is not the same as X-Amz-Date."
    err = expect(
        errors.AccessDenied,
        lambda: authenticate(
            make("GET", "/test.txt", "", get_object(x_amz_date=None)), lookup, now=NOW
        ),
    )
    assert err.msg == "AWS authentication requires a valid Date or x-amz-date header"
    err = expect(
        errors.SignatureDoesNotMatch,
        lambda: authenticate(
            make("GET", "/test.txt", "", get_object(range="bytes=0-10")), lookup, now=NOW
        ),
    )
    assert list(err.extra) == [
        "AWSAccessKeyId",
        "StringToSign",
        "SignatureProvided",
        "CanonicalRequest",
    ]
    assert "range:bytes=0-10\n" in err.extra["CanonicalRequest"]
    assert err.extra["StringToSign"].startswith("AWS4-HMAC-SHA256\n20130524T000000Z\n")


def test_region_enforcement() -> None:
    scope = "20130524/eu-west-1/s3/aws4_request"
    hdrs = get_object()
    sig = tiny_sign("GET", "/test.txt", "", hdrs, SH, EMPTY, "20130524T000000Z", "eu-west-1")
    req = make("GET", "/test.txt", "", dict(hdrs, authorization=auth_header(sig, SH, scope=scope)))
    assert authenticate(req, lookup, now=NOW).scope == scope  # any region when not enforced
    expect(
        errors.AuthorizationHeaderMalformed,
        lambda: authenticate(req, lookup, now=NOW, enforce_region=True),
        Region="us-east-1",
    )
    expect(
        errors.AuthorizationHeaderMalformed,
        lambda: authenticate(req, lookup, now=NOW, enforce_region=True, server_region="ap-south-1"),
        Region="ap-south-1",
    )
    authenticate(req, lookup, now=NOW, enforce_region=True, server_region="eu-west-1")


@pytest.mark.parametrize(
    "delta,ok", [(0, True), (900, True), (-900, True), (901, False), (-901, False), (86400, False)]
)
def test_clock_skew(delta: int, ok: bool) -> None:
    req = make("GET", "/test.txt", "", get_object())
    now = NOW + timedelta(seconds=delta)
    if ok:
        authenticate(req, lookup, now=now)
        return
    expect(
        errors.RequestTimeTooSkewed,
        lambda: authenticate(req, lookup, now=now),
        RequestTime="20130524T000000Z",
        ServerTime=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        MaxAllowedSkewMilliseconds="900000",
    )


def test_clock_skew_configurable() -> None:
    req = make("GET", "/test.txt", "", get_object())
    expect(
        errors.RequestTimeTooSkewed,
        lambda: authenticate(req, lookup, now=NOW + timedelta(seconds=61), clock_skew_s=60),
        MaxAllowedSkewMilliseconds="60000",
    )


def test_date_header_fallback() -> None:
    hdrs = {
        "host": "examplebucket.s3.amazonaws.com",
        "date": "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-content-sha256": EMPTY,
    }
    signed = "date;host;x-amz-content-sha256"
    sig = tiny_sign("GET", "/test.txt", "", hdrs, signed, EMPTY, "20130524T000000Z")
    req = make("GET", "/test.txt", "", dict(hdrs, authorization=auth_header(sig, signed)))
    assert authenticate(req, lookup, now=NOW).timestamp == "20130524T000000Z"


def test_header_whitespace_and_repeats() -> None:
    hdrs = {
        "host": "h",
        "x-amz-date": "20130524T000000Z",
        "x-amz-content-sha256": EMPTY,
        "x-amz-meta-a": "  a   b \t c ",
        "x-amz-meta-b": "1,2",
    }
    signed = "host;x-amz-content-sha256;x-amz-date;x-amz-meta-a;x-amz-meta-b"
    sig = tiny_sign("GET", "/k", "", hdrs, signed, EMPTY, "20130524T000000Z")
    req = make("GET", "/k", "", dict(hdrs, authorization=auth_header(sig, signed)))
    result = authenticate(req, lookup, now=NOW)
    assert "x-amz-meta-a:a b c\nx-amz-meta-b:1,2\n" in result.canonical_request


@pytest.mark.parametrize(
    "raw,signed_path",
    [
        ("/b/a%2Fb", "/b/a/b"),  # canonical form signed
        ("/b/a%2Fb", "/b/a%2Fb"),  # raw form signed (fallback)
        ("/b/a%2fb", "/b/a%2fb"),
        ("/b/%7Ex", "/b/%7Ex"),
        ("/b/%7Ex", "/b/~x"),
    ],
)
def test_raw_path_fallback(raw: str, signed_path: str) -> None:
    hdrs = {"host": "h", "x-amz-date": "20130524T000000Z", "x-amz-content-sha256": EMPTY}
    signed = "host;x-amz-content-sha256;x-amz-date"
    sig = tiny_sign("GET", signed_path, "", hdrs, signed, EMPTY, "20130524T000000Z")
    req = make("GET", raw, "", dict(hdrs, authorization=auth_header(sig, signed)))
    assert authenticate(req, lookup, now=NOW).canonical_request.split("\n")[1] == signed_path


def test_lone_percent_signed_as_literal() -> None:
    hdrs = {"host": "h", "x-amz-date": "20130524T000000Z", "x-amz-content-sha256": EMPTY}
    signed = "host;x-amz-content-sha256;x-amz-date"
    sig = tiny_sign("GET", "/b/100%25", "", hdrs, signed, EMPTY, "20130524T000000Z")
    authenticate(
        make("GET", "/b/100%", "", dict(hdrs, authorization=auth_header(sig, signed))),
        lookup,
        now=NOW,
    )


@pytest.mark.parametrize(
    "value",
    [
        "UNSIGNED-PAYLOAD",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        EMPTY,
    ],
)
def test_content_sha256_values_signed_verbatim(value: str) -> None:
    hdrs = {"host": "h", "x-amz-date": "20130524T000000Z", "x-amz-content-sha256": value}
    signed = "host;x-amz-content-sha256;x-amz-date"
    sig = tiny_sign("PUT", "/b/k", "", hdrs, signed, value, "20130524T000000Z")
    result = authenticate(
        make("PUT", "/b/k", "", dict(hdrs, authorization=auth_header(sig, signed))), lookup, now=NOW
    )
    assert result.content_sha256 == value
    assert result.canonical_request.endswith("\n" + value)


# --- §4 presigned errors ------------------------------------------------------------------

PRESIGN = dict(parse_qsl(VECTORS["presigned_example"]["query"]))


def presigned(**override: str | None) -> SigningRequest:
    params = dict(PRESIGN)
    for k, v in override.items():
        name = k.replace("_", "-")
        if v is None:
            params.pop(name)
        else:
            params[name] = v
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())
    return make("GET", "/test.txt", query, {"host": "examplebucket.s3.amazonaws.com"})


PQE = errors.AuthorizationQueryParametersError
PRESIGN_ERRORS: list[tuple[str, dict[str, str | None], type[errors.S3Error], str | None]] = [
    *[
        (f"missing {p}", {p.replace("-", "_"): None}, PQE, sigv4.MSG_PRESIGN_MISSING)
        for p in sigv4.PRESIGN_PARAMS
    ],
    ("algorithm", {"X_Amz_Algorithm": "AWS4-HMAC-SHA1"}, PQE, None),
    ("credential fields", {"X_Amz_Credential": f"{AKID}/20130524/us-east-1/s3"}, PQE, None),
    (
        "credential service",
        {"X_Amz_Credential": f"{AKID}/20130524/us-east-1/sts/aws4_request"},
        PQE,
        None,
    ),
    ("date format", {"X_Amz_Date": "2013-05-24T00:00:00Z"}, PQE, None),
    ("credential date", {"X_Amz_Date": "20130525T000000Z"}, PQE, None),
    # Out-of-range X-Amz-Expires is S3's 400 AuthorizationQueryParametersError with its own
    # messages, never a 403 (docs/decisions.md).
    ("expires text", {"X_Amz_Expires": "abc"}, PQE, "X-Amz-Expires should be a number"),
    ("expires empty", {"X_Amz_Expires": ""}, PQE, "X-Amz-Expires should be a number"),
    ("expires plus", {"X_Amz_Expires": "+60"}, PQE, "X-Amz-Expires should be a number"),
    ("expires fraction", {"X_Amz_Expires": "1.5"}, PQE, "X-Amz-Expires should be a number"),
    ("expires negative", {"X_Amz_Expires": "-1"}, PQE, "X-Amz-Expires must be non-negative"),
    ("expires negative big", {"X_Amz_Expires": "-604801"}, PQE,
     "X-Amz-Expires must be non-negative"),
    ("expires negative huge", {"X_Amz_Expires": "-" + "9" * 40}, PQE,
     "X-Amz-Expires should be a number"),
    (
        "expires too big",
        {"X_Amz_Expires": "604801"},
        PQE,
        "X-Amz-Expires must be less than a week (in seconds); that is, the given "
        "X-Amz-Expires must be less than 604800 seconds",
    ),
    (
        "expires int32 max",
        {"X_Amz_Expires": "2147483647"},
        PQE,
        "X-Amz-Expires must be less than a week (in seconds); that is, the given "
        "X-Amz-Expires must be less than 604800 seconds",
    ),
    (
        "unknown key",
        {"X_Amz_Credential": "AKIDUNKNOWN/20130524/us-east-1/s3/aws4_request"},
        errors.InvalidAccessKeyId,
        None,
    ),
    ("host not signed", {"X_Amz_SignedHeaders": "range"}, errors.SignatureDoesNotMatch, None),
    ("bad signature", {"X_Amz_Signature": "0" * 64}, errors.SignatureDoesNotMatch, None),
    ("non-ascii signature", {"X_Amz_Signature": "é" * 64}, errors.SignatureDoesNotMatch, None),
    ("expires changed", {"X_Amz_Expires": "86399"}, errors.SignatureDoesNotMatch, None),
    # order: earlier steps win
    (
        "missing + unknown key",
        {
            "X_Amz_Expires": None,
            "X_Amz_Credential": "AKIDUNKNOWN/20130524/us-east-1/s3/aws4_request",
        },
        PQE,
        None,
    ),
    (
        "bad expires + unknown key",
        {
            "X_Amz_Expires": "x",
            "X_Amz_Credential": "AKIDUNKNOWN/20130524/us-east-1/s3/aws4_request",
        },
        PQE,
        None,
    ),
]


@pytest.mark.parametrize(
    "name,override,exc,message", PRESIGN_ERRORS, ids=[e[0] for e in PRESIGN_ERRORS]
)
def test_presigned_errors(
    name: str, override: dict[str, str | None], exc: type[errors.S3Error], message: str | None
) -> None:
    err = expect(exc, lambda: authenticate(presigned(**override), lookup, now=NOW))
    if message:
        assert err.msg == message


@pytest.mark.parametrize("value", ["-1", "-7", "604801", "609901", "abc"])
def test_presigned_expires_out_of_range_is_400_before_the_key(value: str) -> None:
    """An out-of-range X-Amz-Expires is refused as a malformed parameter (400), before the
    key lookup, expiry and signature: never 403 AccessDenied."""
    req = presigned(X_Amz_Expires=value,
                    X_Amz_Credential="AKIDUNKNOWN/20130524/us-east-1/s3/aws4_request")
    err = expect(PQE, lambda: authenticate(req, lookup, now=NOW + timedelta(days=30)))
    assert err.status == 400 and err.code == "AuthorizationQueryParametersError"


@pytest.mark.parametrize("value,message", [
    ("-1", sigv4.MSG_EXPIRES_NEGATIVE), ("604801", sigv4.MSG_EXPIRES_OVER_A_WEEK),
])
def test_presigned_expires_messages_are_s3s(value: str, message: str) -> None:
    err = expect(PQE, lambda: authenticate(presigned(X_Amz_Expires=value), lookup, now=NOW))
    assert err.msg == message and err.extra == {}


def test_presigned_expires_zero_and_a_week_are_in_range() -> None:
    """0 is valid and already expired (403); 604800 is the largest valid value."""
    err = expect(
        errors.AccessDenied,
        lambda: authenticate(presigned(X_Amz_Expires="0"), lookup,
                             now=NOW + timedelta(seconds=1)),
        **{"X-Amz-Expires": "0", "Expires": "2013-05-24T00:00:00Z",
           "ServerTime": "2013-05-24T00:00:01Z"},
    )
    assert err.msg == "Request has expired" and err.status == 403
    # in range: the request gets as far as the signature (the vector signed 86400)
    expect(errors.SignatureDoesNotMatch,
           lambda: authenticate(presigned(X_Amz_Expires="604800"), lookup, now=NOW))


def test_presigned_time_window() -> None:
    future = presigned(X_Amz_Date="20130524T001501Z")  # 901 s ahead of NOW
    err = expect(errors.AccessDenied, lambda: authenticate(future, lookup, now=NOW))
    assert err.msg == "Request is not valid yet"
    expired = presigned(X_Amz_Signature="0" * 64)  # expiry wins over the signature
    err = expect(
        errors.AccessDenied,
        lambda: authenticate(expired, lookup, now=NOW + timedelta(days=2)),
        **{
            "X-Amz-Expires": "86400",
            "Expires": "2013-05-25T00:00:00Z",
            "ServerTime": "2013-05-26T00:00:00Z",
        },
    )
    assert err.msg == "Request has expired"
    assert list(err.extra) == ["X-Amz-Expires", "Expires", "ServerTime"]
    expect(
        errors.AuthorizationQueryParametersError,
        lambda: authenticate(
            presigned(X_Amz_Credential=f"{AKID}/20130524/eu-west-1/s3/aws4_request"),
            lookup,
            now=NOW,
            enforce_region=True,
        ),
        Region="us-east-1",
    )


def test_presigned_security_token_is_signed_not_validated() -> None:
    params = dict(PRESIGN)
    del params["X-Amz-Signature"]
    params["X-Amz-Security-Token"] = "tok/en+="
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())
    canon = sigv4_signing.canonical_query(query, drop_signature=True)
    hdrs = {"host": "examplebucket.s3.amazonaws.com"}
    sig = tiny_sign("GET", "/test.txt", canon, hdrs, "host", "UNSIGNED-PAYLOAD", "20130524T000000Z")
    req = make("GET", "/test.txt", query + "&X-Amz-Signature=" + sig, hdrs)
    assert authenticate(req, lookup, now=NOW).mode == "presigned"


# --- chunk signature chain ----------------------------------------------------------------


def test_chain_does_not_advance_on_failure() -> None:
    key = sigv4_signing.signing_key(SECRET, "20130524", "us-east-1")
    chain = sigv4_signing.ChunkSignatureChain(
        key, "20130524T000000Z", "20130524/us-east-1/s3/aws4_request", "0" * 64
    )
    expect(errors.SignatureDoesNotMatch, lambda: chain.verify_chunk(EMPTY, "1" * 64))
    assert chain.previous == "0" * 64
    expect(errors.SignatureDoesNotMatch, lambda: chain.verify_trailer(b"x:y\n", "1" * 64))
