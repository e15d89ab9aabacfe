"""SigV2 verification: AWS's published examples, botocore's HmacV1 signers as an oracle,
the string to sign piece by piece, and every error in AWS's order."""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import botocore.auth
import botocore.credentials
import pytest
from botocore.awsrequest import AWSRequest
from hypothesis import given
from hypothesis import strategies as st

from bleepstore import errors
from bleepstore.model import Credential
from bleepstore.s3 import sigv2
from bleepstore.s3.sigv4 import SigningRequest
from bleepstore.web.environ import header_getter, header_names

AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CRED = Credential(AKID, SECRET, owner_id="o" * 64, display_name="example")
INACTIVE = Credential("AKIDINACTIVE", SECRET, "o", "x", active=False)
BOTO_CREDS = botocore.credentials.Credentials(AKID, SECRET)


def lookup(akid: str) -> Credential | None:
    return {AKID: CRED, INACTIVE.access_key_id: INACTIVE}.get(akid)


def make(method: str, path: str, query: str, headers: dict[str, str]) -> SigningRequest:
    """A request as the front builds it, through a WSGI environ (repeated headers arrive
    joined with ``,``, as gunicorn joins them)."""
    env: dict[str, Any] = {}
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key
        env[key] = value
    first: dict[str, str] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        first.setdefault(k, v)
    return SigningRequest(method, path, query, header_getter(env), first, header_names(env))


def at(date: str) -> datetime:
    return email.utils.parsedate_to_datetime(date).astimezone(UTC)


def expect(exc: type[errors.S3Error], fn: Callable[[], Any], **extra: str) -> errors.S3Error:
    with pytest.raises(exc) as info:
        fn()
    for k, v in extra.items():
        assert info.value.extra.get(k) == v, (k, info.value.extra)
    return info.value


def auth(req: SigningRequest, now: datetime, **kw: Any) -> Any:
    return sigv2.authenticate(req, lookup, now=now, **kw)


# --- AWS's published examples ----------------------------------------------------------------
# "Signing and authenticating REST requests (AWS signature version 2)", Authentication
# examples: each request, the StringToSign the page prints, and its signature.

AWS_EXAMPLES = [
    pytest.param(
        "GET", "/photos/puppy.jpg", "", "awsexamplebucket1",
        {"date": "Tue, 27 Mar 2007 19:36:42 +0000"},
        "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg",
        "qgk2+6Sv9/oM7G3qLEjTH1a1l1g=", id="object-get"),
    pytest.param(
        "PUT", "/photos/puppy.jpg", "", "awsexamplebucket1",
        {"content-type": "image/jpeg", "content-length": "94328",
         "date": "Tue, 27 Mar 2007 21:15:45 +0000"},
        "PUT\n\nimage/jpeg\nTue, 27 Mar 2007 21:15:45 +0000\n/awsexamplebucket1/photos/puppy.jpg",
        "iqRzw+ileNPu1fhspnRs8nOjjIA=", id="object-put"),
    pytest.param(
        "GET", "/", "prefix=photos&max-keys=50&marker=puppy", "awsexamplebucket1",
        {"user-agent": "Mozilla/5.0", "date": "Tue, 27 Mar 2007 19:42:41 +0000"},
        "GET\n\n\nTue, 27 Mar 2007 19:42:41 +0000\n/awsexamplebucket1/",
        "m0WP8eCtspQl5Ahe6L1SozdX9YA=", id="list"),
    pytest.param(
        "GET", "/", "acl", "awsexamplebucket1",
        {"date": "Tue, 27 Mar 2007 19:44:46 +0000"},
        "GET\n\n\nTue, 27 Mar 2007 19:44:46 +0000\n/awsexamplebucket1/?acl",
        "82ZHiFIjc+WbcwFKGUVEQspPn+0=", id="fetch-acl"),
    pytest.param(
        "PUT", "/db-backup.dat.gz", "", "static.example.com",
        {"user-agent": "curl/7.15.5", "date": "Tue, 27 Mar 2007 21:06:08 +0000",
         "x-amz-acl": "public-read", "content-type": "application/x-download",
         "content-md5": "4gJE4saaMU4BqNR0kLY+lw==",
         "x-amz-meta-reviewedby": "joe@example.com,jane@example.com",
         "x-amz-meta-filechecksum": "0x02661779", "x-amz-meta-checksumalgorithm": "crc32",
         "content-disposition": "attachment; filename=database.dat", "content-encoding": "gzip",
         "content-length": "5913339"},
        "PUT\n4gJE4saaMU4BqNR0kLY+lw==\napplication/x-download\n"
        "Tue, 27 Mar 2007 21:06:08 +0000\nx-amz-acl:public-read\n"
        "x-amz-meta-checksumalgorithm:crc32\nx-amz-meta-filechecksum:0x02661779\n"
        "x-amz-meta-reviewedby:joe@example.com,jane@example.com\n"
        "/static.example.com/db-backup.dat.gz",
        "jtBQa0Aq+DkULFI8qrpwIjGEx0E=", id="upload"),
    pytest.param(
        "GET", "/", "", None, {"date": "Wed, 28 Mar 2007 01:29:59 +0000"},
        "GET\n\n\nWed, 28 Mar 2007 01:29:59 +0000\n/",
        "qGdzdERIC03wnaRNKh6OqZehG9s=", id="list-all-my-buckets"),
    pytest.param(
        "GET", "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re", "", None,
        {"date": "Wed, 28 Mar 2007 01:49:49 +0000"},
        "GET\n\n\nWed, 28 Mar 2007 01:49:49 +0000\n/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
        "DNEZGsoieTZ92F3bUfSPQcbGmlM=", id="unicode-keys"),
]


@pytest.mark.parametrize("method,path,query,vbucket,headers,sts,signature", AWS_EXAMPLES)
def test_aws_examples(method: str, path: str, query: str, vbucket: str | None,
                      headers: dict[str, str], sts: str, signature: str) -> None:
    assert sigv2.sign(SECRET, sts) == signature
    req = make(method, path, query, {**headers, "authorization": f"AWS {AKID}:{signature}"})
    result = auth(req, at(headers["date"]), virtual_bucket=vbucket)
    assert (result.credential, result.mode, result.string_to_sign) == (CRED, "header", sts)
    assert result.content_sha256 is None
    # one bit off anywhere in the signature and it fails
    bad = signature[:5] + ("A" if signature[5] != "A" else "B") + signature[6:]
    req = make(method, path, query, {**headers, "authorization": f"AWS {AKID}:{bad}"})
    err = expect(errors.SignatureDoesNotMatch, lambda: auth(req, at(headers["date"]),
                                                            virtual_bucket=vbucket))
    assert err.extra["StringToSign"] == sts


def test_aws_example_delete_with_x_amz_date() -> None:
    """The page's DELETE example: both Date and x-amz-date, its signature computed with the
    x-amz-date value on the Date line (accepted, [BS]); AWS's rule (empty Date line,
    x-amz-date among the x-amz-* headers) is what a mismatch reports."""
    sts = "DELETE\n\n\nTue, 27 Mar 2007 21:20:26 +0000\n/awsexamplebucket1/photos/puppy.jpg"
    assert sigv2.sign(SECRET, sts) == "XbyTlbQdu9Xw5o8P4iMwPktxQd8="
    headers = {"user-agent": "dotnet", "host": "s3.us-west-1.amazonaws.com",
               "date": "Tue, 27 Mar 2007 21:20:27 +0000",
               "x-amz-date": "Tue, 27 Mar 2007 21:20:26 +0000",
               "authorization": f"AWS {AKID}:XbyTlbQdu9Xw5o8P4iMwPktxQd8="}
    req = make("DELETE", "/awsexamplebucket1/photos/puppy.jpg", "", headers)
    assert auth(req, at(headers["x-amz-date"])).string_to_sign == sts
    req = make("DELETE", "/awsexamplebucket1/photos/puppy.jpg", "",
               {**headers, "authorization": f"AWS {AKID}:XbyTlbQdu9Xw5o8P4iMwPktxQd9="})
    err = expect(errors.SignatureDoesNotMatch, lambda: auth(req, at(headers["x-amz-date"])))
    assert err.extra["StringToSign"] == (
        "DELETE\n\n\n\nx-amz-date:Tue, 27 Mar 2007 21:20:26 +0000\n"
        "/awsexamplebucket1/photos/puppy.jpg")


def test_aws_example_query_string_auth() -> None:
    """The page's query-string example. Its signature is the one for bucket ``johnsmith``
    (the bucket of earlier versions of the page; the renamed ``awsexamplebucket1`` gives
    another)."""
    sts = "GET\n\n\n1175139620\n/johnsmith/photos/puppy.jpg"
    assert sigv2.sign(SECRET, sts) == "NpgCjnDzrM+WFzoENXmpNDUsSn8="
    query = (f"AWSAccessKeyId={AKID}&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D"
             "&Expires=1175139620")
    req = make("GET", "/photos/puppy.jpg", query, {"host": "johnsmith.s3.amazonaws.com"})
    now = datetime.fromtimestamp(1175139620 - 60, UTC)
    result = auth(req, now, virtual_bucket="johnsmith")
    assert (result.mode, result.string_to_sign) == ("presigned", sts)
    later = datetime.fromtimestamp(1175139621, UTC)
    err = expect(errors.AccessDenied, lambda: auth(req, later, virtual_bucket="johnsmith"),
                 Expires="2007-03-29T03:40:20Z", ServerTime="2007-03-29T03:40:21Z")
    assert err.msg == "Request has expired"
    assert list(err.extra) == ["Expires", "ServerTime"]


# --- the string to sign ----------------------------------------------------------------------

@pytest.mark.parametrize("query,expected", [
    ("", ""),
    ("acl", "?acl"),
    ("acl=", "?acl"),
    ("prefix=a&max-keys=5&list-type=2&encoding-type=url", ""),
    ("uploadId=abc&partNumber=3", "?partNumber=3&uploadId=abc"),
    ("versionId=v%2B1&acl", "?acl&versionId=v+1"),
    ("tagging&x-id=GetObjectTagging", "?tagging"),
    ("response-content-disposition=attachment%3B%20filename%3D%22a%20b%22"
     "&response-content-type=text%2Fplain",
     '?response-content-disposition=attachment; filename="a b"'
     "&response-content-type=text/plain"),
    ("uploads&delete&cors&restore&website&versioning&location&logging&lifecycle&policy",
     "?cors&delete&lifecycle&location&logging&policy&restore&uploads&versioning&website"),
    ("AWSAccessKeyId=AK&Signature=x&Expires=1&torrent", "?torrent"),
    ("Acl&ACL", ""),  # names are case-sensitive
])
def test_canonical_subresources(query: str, expected: str) -> None:
    assert sigv2.canonical_subresources(query) == expected


def test_subresources_encoded() -> None:
    """The [BS] alternative s3cmd signs: decoded values encoded again, so it binds the same
    values however the client spelt them on the wire."""
    query = "uploadId=a%2fb+c&partNumber=1&acl=&response-content-type=text/pl%61in"
    assert sigv2.canonical_subresources(query) == \
        "?acl&partNumber=1&response-content-type=text/plain&uploadId=a/b+c"
    assert sigv2.canonical_subresources(query, encoded=True) == \
        "?acl=&partNumber=1&response-content-type=text%2Fplain&uploadId=a%2Fb%2Bc"
    assert sigv2.canonical_subresources("uploadId=a%252F", encoded=True) == "?uploadId=a%252F"


@pytest.mark.parametrize("path,query,vbucket,expected", [
    ("/bucket/key", "", None, "/bucket/key"),
    ("", "", None, "/"),
    ("/", "", "b", "/b/"),
    ("", "", "b", "/b/"),
    ("/a%20b/c+d", "acl", "b", "/b/a%20b/c+d?acl"),
    ("/b/%7Ek", "", None, "/b/%7Ek"),  # no re-encoding: the path as sent
])
def test_canonical_resource(path: str, query: str, vbucket: str | None,
                            expected: str) -> None:
    assert sigv2.canonical_resource(path, query, virtual_bucket=vbucket) == expected


def test_canonical_amz_headers_fold_sort_join() -> None:
    headers = [("X-Amz-Meta-B", " two "), ("x-amz-acl", "private"), ("Content-Type", "x"),
               ("x-amz-meta-b", "three"), ("X-AMZ-META-A", "one\r\n  folded"),
               ("x-amzn-trace-id", "not amz-")]
    assert sigv2.canonical_amz_headers(headers) == (
        "x-amz-acl:private\nx-amz-meta-a:one folded\nx-amz-meta-b:two,three\n")
    assert sigv2.canonical_amz_headers([]) == ""


def test_string_to_sign_bytes() -> None:
    assert sigv2.string_to_sign_bytes("GET\n/ü") == "47 45 54 0a 2f c3 bc"


# --- botocore as an oracle -------------------------------------------------------------------

def boto_v2(method: str, path: str, query: str = "", *, body: bytes = b"",
            headers: dict[str, str] | None = None, presign: bool = False,
            expires: int = 3600, auth_path: str | None = None,
            host: str = "s3.localhost:9000") -> tuple[SigningRequest, datetime]:
    """Sign with botocore's HmacV1Auth (``signature_version="s3"``) or HmacV1QueryAuth."""
    url = f"http://{host}{path}" + ("?" + query if query else "")
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    request.auth_path = auth_path
    now = datetime.now(UTC).replace(microsecond=0)
    if presign:
        botocore.auth.HmacV1QueryAuth(BOTO_CREDS, expires=expires).add_auth(request)
    else:
        botocore.auth.HmacV1Auth(BOTO_CREDS).add_auth(request)
    parts = urlsplit(request.url)
    sent = {k.lower(): (v.decode() if isinstance(v, bytes) else v)
            for k, v in request.headers.items()}
    sent["host"] = parts.netloc
    return make(method, parts.path, parts.query, sent), now


BOTO_CASES = [
    ("GET", "/", ""),
    ("GET", "/bucket/", "encoding-type=url&prefix=a%2Fb&delimiter=%2F"),
    ("PUT", "/bucket/a%20b/%C3%BC%2Bc", ""),
    ("GET", "/bucket/key", "acl"),
    ("PUT", "/bucket/key", "uploadId=a%2Fb%2Bc%3D&partNumber=2"),
    ("GET", "/bucket/key", "response-content-disposition=attachment%3B%20filename%3D%22x%22"),
    ("POST", "/bucket", "delete"),
    ("DELETE", "/bucket/%7Etilde%21%28%29", ""),
]


@pytest.mark.parametrize("method,path,query", BOTO_CASES)
@pytest.mark.parametrize("presign", [False, True])
def test_botocore_signed_requests_verify(method: str, path: str, query: str,
                                         presign: bool) -> None:
    headers = {"x-amz-meta-who": "me", "Content-Type": "text/plain"} if method == "PUT" else {}
    req, now = boto_v2(method, path, query, body=b"data", headers=headers, presign=presign)
    result = auth(req, now)
    assert result.credential == CRED
    assert result.mode == ("presigned" if presign else "header")


def test_botocore_bucket_auth_path_with_trailing_slash() -> None:
    """boto3 signs ``/bucket/`` for a path-style request sent to ``/bucket`` [BS]."""
    req, now = boto_v2("GET", "/bucket", "encoding-type=url", auth_path="/bucket/")
    assert auth(req, now).string_to_sign.endswith("\n/bucket/")
    # a virtual-hosted request has its own resource and no such second form
    req, now = boto_v2("GET", "/", "", auth_path="/bucket/", host="bucket.localhost")
    assert auth(req, now, virtual_bucket="bucket").string_to_sign.endswith("\n/bucket/")
    req, now = boto_v2("GET", "/k", "", auth_path="/bucket/k", host="bucket.localhost")
    expect(errors.SignatureDoesNotMatch, lambda: auth(req, now, virtual_bucket="other"))


def test_presign_hoisted_headers() -> None:
    """botocore's V2 presign moves the Content-Type and x-amz-* headers it signed into the
    query; the request may send them as headers (same values) or not at all."""
    req, now = boto_v2("PUT", "/bucket/k", presign=True,
                       headers={"Content-Type": "text/plain", "x-amz-acl": "public-read"})
    assert "content-type=text%2Fplain" in req.raw_query
    assert "x-amz-acl=public-read" in req.raw_query
    bare = make("PUT", req.raw_path, req.raw_query, {"host": "s3.localhost:9000"})
    assert auth(bare, now).credential == CRED
    same = make("PUT", req.raw_path, req.raw_query,
                {"host": "s3.localhost:9000", "content-type": "text/plain",
                 "x-amz-acl": "public-read"})
    assert auth(same, now).credential == CRED
    for changed in ({"content-type": "text/html"}, {"x-amz-acl": "public-read-write"}):
        other = make("PUT", req.raw_path, req.raw_query,
                     {"host": "s3.localhost:9000", **changed})
        expect(errors.SignatureDoesNotMatch, partial(auth, other, now))


@given(key=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                   min_size=1, max_size=30),
       meta=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20),
       presign=st.booleans())
def test_botocore_oracle_property(key: str, meta: str, presign: bool) -> None:
    """Any key and x-amz-meta value botocore signs verifies here, and the same request with
    the value changed (or the header added to a URL) does not."""
    path = "/bucket/" + quote(key, safe="/~")
    headers = {"x-amz-meta-v": meta} if meta else {}
    req, now = boto_v2("PUT", path, headers=headers, presign=presign)
    assert auth(req, now).credential == CRED
    sent = {"host": "s3.localhost:9000", "x-amz-meta-v": meta + "x"}
    if not presign:
        sent["date"] = req.get_header("date") or ""
        sent["authorization"] = req.get_header("authorization") or ""
    tampered = make("PUT", req.raw_path, req.raw_query, sent)
    expect(errors.SignatureDoesNotMatch, lambda: auth(tampered, now))


def test_s3cmd_signer_oracle() -> None:
    """s3cmd's own V2 signer (x-amz-date, an empty Date line, sub-resource values encoded)."""
    crypto = pytest.importorskip("S3.Crypto")
    from S3.BaseUtils import s3_quote
    from S3.Config import Config as S3Config
    from S3.SortedDict import SortedDict

    cfg = S3Config()
    saved = (cfg.access_key, cfg.secret_key)
    cfg.access_key, cfg.secret_key = AKID, SECRET
    try:
        stamp = email.utils.formatdate(usegmt=True)
        headers = SortedDict(ignore_case=True)
        headers["x-amz-date"] = stamp
        headers["x-amz-meta-a"] = "b c"
        params = {"uploadId": "x/y+z", "partNumber": "2"}
        signed = crypto.sign_request_v2("PUT", "/bucket/a b/ü", params, headers)
        path = s3_quote("/bucket/a b/ü", quote_backslashes=False, unicode_output=True)
        query = crypto.format_param_str(params)[1:]
    finally:
        cfg.access_key, cfg.secret_key = saved
    req = make("PUT", path, query, {k.lower(): v for k, v in signed.items()})
    result = auth(req, at(stamp))
    assert result.credential == CRED
    assert result.string_to_sign.endswith("?partNumber=2&uploadId=x%2Fy%2Bz")


# --- header auth: errors in AWS's order ------------------------------------------------------

DATE = "Tue, 27 Mar 2007 19:36:42 +0000"
NOW = at(DATE)
GOOD = "qgk2+6Sv9/oM7G3qLEjTH1a1l1g="  # the object-get example


def example(**override: str | None) -> SigningRequest:
    headers: dict[str, str] = {"date": DATE, "authorization": f"AWS {AKID}:{GOOD}"}
    for k, v in override.items():
        name = k.replace("_", "-")
        if v is None:
            headers.pop(name, None)
        else:
            headers[name] = v
    return make("GET", "/awsexamplebucket1/photos/puppy.jpg", "", headers)


@pytest.mark.parametrize("value,message", [
    (f"AWS  {AKID}:{GOOD}", sigv2.MSG_ONE_SPACE),
    ("AWS", sigv2.MSG_ONE_SPACE),
    (f"AWS {AKID}", sigv2.MSG_BAD_HEADER),
    (f"AWS {AKID}:", sigv2.MSG_BAD_HEADER),
    (f"AWS {AKID}:{GOOD}:x", sigv2.MSG_BAD_HEADER),
])
def test_malformed_header(value: str, message: str) -> None:
    err = expect(errors.InvalidArgument, lambda: auth(example(authorization=value), NOW),
                 ArgumentName="Authorization", ArgumentValue=value)
    assert err.msg == message


def test_scheme_is_case_insensitive_and_empty_key_is_a_key() -> None:
    assert auth(example(authorization=f"aws {AKID}:{GOOD}"), NOW).credential == CRED
    expect(errors.InvalidAccessKeyId, lambda: auth(example(authorization=f"AWS :{GOOD}"), NOW),
           AWSAccessKeyId="")


@pytest.mark.parametrize("headers", [
    {"date": None},
    {"date": "yesterday"},
    {"x_amz_date": "not a date"},  # x-amz-date wins even when Date is fine
    {"date": None, "x_amz_date": ""},
])
def test_missing_or_bad_date(headers: dict[str, str | None]) -> None:
    err = expect(errors.AccessDenied, lambda: auth(example(**headers), NOW))
    assert err.msg == "AWS authentication requires a valid Date or x-amz-date header"


def test_date_forms_accepted() -> None:
    """RFC 1123 with GMT, and ISO 8601 basic, read as dates (the signature then decides)."""
    for value in ("Tue, 27 Mar 2007 19:36:42 GMT", "20070327T193642Z"):
        expect(errors.SignatureDoesNotMatch, partial(auth, example(date=value), NOW))


def test_clock_skew() -> None:
    err = expect(errors.RequestTimeTooSkewed,
                 lambda: auth(example(), NOW + timedelta(minutes=16)),
                 RequestTime=DATE, ServerTime="2007-03-27T19:52:42Z",
                 MaxAllowedSkewMilliseconds="900000")
    assert err.status == 403
    assert auth(example(), NOW + timedelta(minutes=14)).credential == CRED
    assert auth(example(), NOW - timedelta(minutes=14)).credential == CRED
    expect(errors.RequestTimeTooSkewed, lambda: auth(example(), NOW - timedelta(seconds=61),
                                                     clock_skew_s=60))


def test_skew_is_checked_before_the_key_and_the_key_before_the_signature() -> None:
    unknown = example(authorization="AWS AKIDUNKNOWN:" + GOOD)
    expect(errors.RequestTimeTooSkewed, lambda: auth(unknown, NOW + timedelta(hours=1)))
    expect(errors.InvalidAccessKeyId, lambda: auth(unknown, NOW), AWSAccessKeyId="AKIDUNKNOWN")
    inactive = example(authorization="AWS AKIDINACTIVE:" + GOOD)
    expect(errors.InvalidAccessKeyId, lambda: auth(inactive, NOW))


def test_signature_mismatch_elements_in_aws_order() -> None:
    err = expect(errors.SignatureDoesNotMatch,
                 lambda: auth(example(authorization=f"AWS {AKID}:bm9wZQ=="), NOW))
    sts = "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg"
    assert err.status == 403
    assert err.extra == {"AWSAccessKeyId": AKID, "StringToSign": sts,
                         "SignatureProvided": "bm9wZQ==",
                         "StringToSignBytes": sigv2.string_to_sign_bytes(sts)}
    assert list(err.extra) == ["AWSAccessKeyId", "StringToSign", "SignatureProvided",
                               "StringToSignBytes"]
    assert err.extra["StringToSignBytes"].startswith("47 45 54 0a 0a 0a 54 75 65")


@pytest.mark.parametrize("tamper", [
    {"x_amz_meta_added": "1"},  # an x-amz-* header is always part of the string
    {"x_amz_acl": "public-read"},
    {"x_amz_copy_source": "/other/key"},
    {"content_type": "text/plain"},
    {"content_md5": "1B2M2Y8AsgTpgAmY7PhCfg=="},
    {"date": "Tue, 27 Mar 2007 19:36:43 +0000"},
    {"authorization": f"AWS {AKID}:{GOOD.lower()}"},
    {"authorization": f"AWS {AKID}:{GOOD}ü"},  # not even ASCII: a mismatch, no crash
])
def test_tampered_request_is_rejected(tamper: dict[str, str]) -> None:
    expect(errors.SignatureDoesNotMatch, lambda: auth(example(**tamper), NOW))


def test_tampered_path_method_query() -> None:
    headers = {"date": DATE, "authorization": f"AWS {AKID}:{GOOD}"}
    for method, path, query in [("DELETE", "/awsexamplebucket1/photos/puppy.jpg", ""),
                                ("GET", "/awsexamplebucket1/photos/kitten.jpg", ""),
                                ("GET", "/awsexamplebucket1/photos/puppy.jpg", "acl")]:
        req = make(method, path, query, headers)
        expect(errors.SignatureDoesNotMatch, partial(auth, req, NOW))
    # a parameter that is no sub-resource is not signed (AWS's rule)
    req = make("GET", "/awsexamplebucket1/photos/puppy.jpg", "x-id=GetObject", headers)
    assert auth(req, NOW).credential == CRED


def test_x_amz_date_rule_form() -> None:
    """AWS's rule: with x-amz-date the Date line is empty, x-amz-date is among the headers
    (what boto2 and s3cmd sign), whatever a Date header says."""
    stamp = "Tue, 27 Mar 2007 19:36:42 +0000"
    sts = f"GET\n\n\n\nx-amz-date:{stamp}\n/b/k"
    sig = sigv2.sign(SECRET, sts)
    for date in (None, "Wed, 01 Jan 2020 00:00:00 GMT"):
        headers = {"x-amz-date": stamp, "authorization": f"AWS {AKID}:{sig}"}
        if date:
            headers["date"] = date
        assert auth(make("GET", "/b/k", "", headers), NOW).string_to_sign == sts


def test_payload_hash_values() -> None:
    sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    for value in (sha, "UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"):
        sts = f"PUT\n\n\n{DATE}\nx-amz-content-sha256:{value}\n/b/k"
        req = make("PUT", "/b/k", "", {"date": DATE, "x-amz-content-sha256": value,
                                       "authorization": f"AWS {AKID}:{sigv2.sign(SECRET, sts)}"})
        assert auth(req, NOW).content_sha256 == value
    for value, exc in [("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", errors.InvalidRequest),
                       ("bogus", errors.InvalidArgument)]:
        req = make("PUT", "/b/k", "", {"date": DATE, "x-amz-content-sha256": value,
                                       "authorization": f"AWS {AKID}:{GOOD}"})
        expect(exc, partial(auth, req, NOW))


# --- query auth: errors in AWS's order -------------------------------------------------------

def presigned(expires: str = "1175139620", **params: str) -> SigningRequest:
    query = {"AWSAccessKeyId": AKID, "Expires": expires,
             "Signature": "NpgCjnDzrM+WFzoENXmpNDUsSn8=", **params}
    raw = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items() if v != "-")
    return make("GET", "/johnsmith/photos/puppy.jpg", raw, {})


QNOW = datetime.fromtimestamp(1175139000, UTC)


def test_presigned_path_style() -> None:
    assert auth(presigned(), QNOW).credential == CRED


@pytest.mark.parametrize("missing", ["AWSAccessKeyId", "Expires"])
def test_presigned_missing_parameter(missing: str) -> None:
    err = expect(errors.AccessDenied, lambda: auth(presigned(**{missing: "-"}), QNOW))
    assert err.msg == ("Query-string authentication requires the Signature, Expires and "
                       "AWSAccessKeyId parameters")


@pytest.mark.parametrize("value", ["soon", "1e9", " 1", "", "2147483648",
                                   "99999999999999999999", "١٢٣"])
def test_presigned_expires_not_a_date(value: str) -> None:
    err = expect(errors.AccessDenied, lambda: auth(presigned(expires=value), QNOW))
    assert err.msg == "Invalid date (should be seconds since epoch): " + value


def test_presigned_expiry_comes_before_the_key_and_the_signature() -> None:
    late = presigned(expires="1175138000", AWSAccessKeyId="AKIDUNKNOWN", Signature="x")
    expect(errors.AccessDenied, lambda: auth(late, QNOW), Expires="2007-03-29T03:13:20Z")
    unknown = presigned(AWSAccessKeyId="AKIDUNKNOWN", Signature="x")
    expect(errors.InvalidAccessKeyId, lambda: auth(unknown, QNOW), AWSAccessKeyId="AKIDUNKNOWN")
    expect(errors.SignatureDoesNotMatch, lambda: auth(presigned(Signature="x"), QNOW),
           SignatureProvided="x", StringToSign="GET\n\n\n1175139620\n/johnsmith/photos/puppy.jpg")


def test_presigned_far_future_is_served_and_negative_is_expired() -> None:
    """No clock skew for query auth: a URL expiring in 2038 is fine; ``-1`` is a date."""
    sts = "GET\n\n\n2147483647\n/johnsmith/photos/puppy.jpg"
    far = presigned(expires="2147483647", Signature=sigv2.sign(SECRET, sts))
    assert auth(far, QNOW).credential == CRED
    expect(errors.AccessDenied, lambda: auth(presigned(expires="-1"), QNOW),
           Expires="1969-12-31T23:59:59Z")


@pytest.mark.parametrize("tamper", ["Expires", "path", "header", "subresource"])
def test_presigned_tampering(tamper: str) -> None:
    req, now = boto_v2("GET", "/bucket/k", presign=True)
    path, query, headers = req.raw_path, req.raw_query, {"host": "s3.localhost:9000"}
    if tamper == "Expires":
        expires = req.query["Expires"]
        query = query.replace(f"Expires={expires}", f"Expires={int(expires) + 1}")
    elif tamper == "path":
        path = "/bucket/other"
    elif tamper == "header":
        headers["x-amz-acl"] = "public-read"  # unsigned x-amz-* header added to a URL
    else:
        query += "&acl"
    expect(errors.SignatureDoesNotMatch, lambda: auth(make("GET", path, query, headers), now))


# --- choosing the mode -----------------------------------------------------------------------

@pytest.mark.parametrize("authorization,query,expected", [
    (f"AWS {AKID}:{GOOD}", "", True),
    (f"aws {AKID}:{GOOD}", "", True),
    ("AWS", "", True),
    (f"AWS4-HMAC-SHA256 Credential={AKID}/x", "", False),
    ("Bearer x", "", False),
    (None, "", False),
    (None, "AWSAccessKeyId=a&Expires=1&Signature=s", True),
    (None, "Signature=s", True),
    (None, "AWSAccessKeyId=a&Expires=1", False),  # unsigned on AWS: anonymous
    (None, "X-Amz-Signature=s", False),
    (f"AWS {AKID}:{GOOD}", "X-Amz-Algorithm=AWS4-HMAC-SHA256", False),  # SigV4's refusal
    ("AWS4-HMAC-SHA256 x", "Signature=s", True),  # two mechanisms, refused here
])
def test_applies(authorization: str | None, query: str, expected: bool) -> None:
    headers = {"authorization": authorization} if authorization is not None else {}
    assert sigv2.applies(make("GET", "/b/k", query, headers)) is expected


def test_query_signed() -> None:
    assert sigv2.query_signed("a=1&Signature=x")
    assert sigv2.query_signed("Signature")
    assert not sigv2.query_signed("X-Amz-Signature=x&AWSAccessKeyId=a")
    assert not sigv2.query_signed("")


@pytest.mark.parametrize("query,headers,extra", [
    ("AWSAccessKeyId=a&Expires=1&Signature=s", {"authorization": f"AWS {AKID}:{GOOD}"},
     {"ArgumentValue": f"AWS {AKID}:{GOOD}"}),
    ("Signature=s&X-Amz-Algorithm=AWS4-HMAC-SHA256", {}, {}),
])
def test_two_mechanisms(query: str, headers: dict[str, str], extra: dict[str, str]) -> None:
    err = expect(errors.InvalidArgument, lambda: auth(make("GET", "/b/k", query, headers), NOW),
                 ArgumentName="Authorization", **extra)
    assert err.msg.startswith("Only one auth mechanism allowed")


def test_non_utf8_subresource_value_signs_its_bytes() -> None:
    sts = "GET\n\n\n1175139620\n/b/k?response-content-type=\udcff"
    assert sigv2.encode_sts(sts).endswith(b"=\xff")
    sig = sigv2.sign(SECRET, sts)
    query = f"AWSAccessKeyId={AKID}&Expires=1175139620&Signature={quote(sig, safe='')}"
    req = make("GET", "/b/k", query + "&response-content-type=%FF", {})
    assert auth(req, QNOW).credential == CRED
    bad = make("GET", "/b/k", query + "&response-content-type=%FE", {})
    err = expect(errors.SignatureDoesNotMatch, lambda: auth(bad, QNOW))
    assert err.extra["StringToSign"].endswith("=\ufffd")
    assert err.extra["StringToSignBytes"].endswith("3d fe")
