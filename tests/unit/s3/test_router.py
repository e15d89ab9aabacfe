"""Addressing and dispatch (s3-api.md §2)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bleepstore.errors import (
    InvalidArgument,
    InvalidBucketName,
    InvalidURI,
    MethodNotAllowed,
    S3Error,
    S3NotImplemented,
)
from bleepstore.s3.address import (
    RESERVED_SERVICE_PATHS,
    Address,
    decode_path_segment,
    is_service_endpoint,
    parse_query,
    resolve_address,
    split_target,
)
from bleepstore.s3.router import UNSUPPORTED_SUBRESOURCES, Op, route

DOMAINS = ["localhost", "s3.example.com", "example.com"]


# ---------------------------------------------------------------- target / query

@pytest.mark.parametrize("target, expected", [
    ("/b/k?acl", ("/b/k", "acl")), ("/b/k", ("/b/k", "")), ("/?a=1?b", ("/", "a=1?b")),
    ("/b/k?", ("/b/k", "")),
])
def test_split_target(target: str, expected: tuple[str, str]) -> None:
    assert split_target(target) == expected


def test_parse_query() -> None:
    assert parse_query("acl") == {"acl": ""}
    assert parse_query("uploads=&prefix=a+b%20c&prefix=second") == {
        "uploads": "", "prefix": "a+b c"}
    assert parse_query("") == {}
    assert parse_query("&&x-id=GetObject&") == {"x-id": "GetObject"}
    assert parse_query("a=b=c") == {"a": "b=c"}
    assert parse_query("Acl&acl=1") == {"Acl": "", "acl": "1"}
    assert parse_query("p=%C3%A9%2F") == {"p": "é/"}
    with pytest.raises(InvalidArgument):
        parse_query("p=%FF")


@pytest.mark.parametrize("raw, decoded", [
    ("a%2Fb", "a/b"), ("a+b", "a+b"), ("%20", " "), ("caf%C3%A9", "café"),
    ("%F0%9F%98%80", "\U0001f600"), ("100%", "100%"), ("%zz", "%zz"),
    ("caf\xc3\xa9", "café"),   # WSGI latin-1 view of raw UTF-8 bytes
    ("a//b", "a//b"), ("./x", "./x"),
])
def test_decode_path_segment(raw: str, decoded: str) -> None:
    assert decode_path_segment(raw) == decoded


@pytest.mark.parametrize("raw", ["%FF", "%C3", "%ED%A0%80", "\xff", "ok%C3%28"])
def test_decode_path_segment_invalid_utf8(raw: str) -> None:
    """[S3] 400 InvalidURI "Couldn't parse the specified URI." (docs/decisions.md)."""
    with pytest.raises(InvalidURI) as exc:
        decode_path_segment(raw)
    assert (exc.value.status, exc.value.code) == (400, "InvalidURI")
    assert exc.value.msg == "Couldn't parse the specified URI."


@given(st.text(st.characters(codec="utf-8"), min_size=1))
def test_decode_path_segment_round_trip(text: str) -> None:
    assert decode_path_segment(quote(text, safe="")) == text
    assert decode_path_segment(quote(text, safe="/+")) == text


# ---------------------------------------------------------------- addressing

@pytest.mark.parametrize("host, path, expected", [
    ("photos.localhost:9010", "/a/b.jpg", Address("photos", "a/b.jpg", True)),
    ("localhost:9010", "/photos/a/b.jpg", Address("photos", "a/b.jpg", False)),
    ("10.0.0.5:9010", "/photos/a/b.jpg", Address("photos", "a/b.jpg", False)),
    ("my.bucket.localhost", "/", Address("my.bucket", None, True)),
    ("my.bucket.localhost", "", Address("my.bucket", None, True)),
    ("Photos.LOCALHOST", "/k", Address("photos", "k", True)),
    ("bkt.s3.example.com", "/k", Address("bkt", "k", True)),      # longest domain wins
    ("s3.example.com", "/b/k", Address("b", "k", False)),         # = domain: path-style
    ("bkt.example.com", "/k/", Address("bkt", "k/", True)),
    ("bkt.localhost", "//k", Address("bkt", "/k", True)),
    ("bkt.localhost", "/a%2Fb+c", Address("bkt", "a/b+c", True)),
    ("bkt.localhost", "/%3F", Address("bkt", "?", True)),
    ("other.org", "/b/k", Address("b", "k", False)),
    (None, "/b/k", Address("b", "k", False)),
    ("", "/", Address(None, None, False)),
    (None, "/", Address(None, None, False)),
    ("localhost", "/bucket", Address("bucket", None, False)),
    ("localhost", "/bucket/", Address("bucket", None, False)),
    ("localhost", "/bucket//", Address("bucket", "/", False)),
    ("localhost", "/bucket/a//b", Address("bucket", "a//b", False)),
    ("localhost", "/bucket/../x", Address("bucket", "../x", False)),
    ("localhost", "/bucket/dir/", Address("bucket", "dir/", False)),
    ("localhost", "/bu%63ket/k%2Fj", Address("bucket", "k/j", False)),
    ("localhost", "/bucket%2Fkey", Address("bucket/key", None, False)),
    ("[::1]:9010", "/b/k", Address("b", "k", False)),
    ("[::1]", "/b/k", Address("b", "k", False)),
    (".localhost", "/b/k", Address("b", "k", False)),
    ("xlocalhost", "/b/k", Address("b", "k", False)),
])
def test_resolve_address(host: str | None, path: str, expected: Address) -> None:
    assert resolve_address(host, path, DOMAINS) == expected


def test_virtual_host_invalid_bucket() -> None:
    with pytest.raises(InvalidBucketName) as exc:
        resolve_address("my..bucket.localhost", "/k", DOMAINS)
    assert exc.value.extra == {"BucketName": "my..bucket"}
    with pytest.raises(InvalidBucketName):
        resolve_address("ab.localhost", "/", DOMAINS)


def test_path_style_invalid_bucket_is_not_rejected_here() -> None:
    assert resolve_address("localhost", "/AB/k", DOMAINS) == Address("AB", "k", False)


@pytest.mark.parametrize("host, path", [
    ("localhost", "/b/%FF"), ("localhost", "/%FF/k"), ("localhost", "/b/a%C3"),
    ("bkt.localhost", "/%FF"),
])
def test_resolve_address_invalid_utf8(host: str, path: str) -> None:
    with pytest.raises(InvalidURI):
        resolve_address(host, path, DOMAINS)


@pytest.mark.parametrize("path, reserved", [
    ("/health", True), ("/healthz", True), ("/readyz", True), ("/metrics", True),
    ("/docs", True), ("/docs/", True), ("/docs/index.html", True), ("/openapi.json", True),
    ("/health/", False), ("/metrics/k", False), ("/docsx", False), ("/", False),
    ("/bucket/health", False),
])
def test_service_endpoints(path: str, reserved: bool) -> None:
    assert is_service_endpoint(path) is reserved
    assert len(RESERVED_SERVICE_PATHS) == 6


# ---------------------------------------------------------------- dispatch

SERVICE = Address(None, None, False)
BUCKET = Address("b", None, False)
OBJECT = Address("b", "k", False)

ROUTES: list[tuple[str, Address, str, bool, Op]] = [
    ("GET", SERVICE, "", False, Op.LIST_BUCKETS),
    ("GET", SERVICE, "acl", False, Op.LIST_BUCKETS),
    ("GET", BUCKET, "acl", False, Op.GET_BUCKET_ACL),
    ("GET", BUCKET, "location", False, Op.GET_BUCKET_LOCATION),
    ("GET", BUCKET, "uploads", False, Op.LIST_MULTIPART_UPLOADS),
    ("GET", BUCKET, "versioning", False, Op.GET_BUCKET_VERSIONING),
    ("PUT", BUCKET, "versioning", False, Op.PUT_BUCKET_VERSIONING),
    ("GET", BUCKET, "versions", False, Op.LIST_OBJECT_VERSIONS),
    ("PUT", OBJECT, "acl&versionId=null", False, Op.PUT_OBJECT_ACL),
    ("PUT", OBJECT, "tagging&versionId=null", False, Op.PUT_OBJECT_TAGGING),
    ("DELETE", OBJECT, "tagging", False, Op.DELETE_OBJECT_TAGGING),
    ("GET", BUCKET, "tagging", False, Op.GET_BUCKET_TAGGING),
    ("DELETE", BUCKET, "tagging", False, Op.DELETE_BUCKET_TAGGING),
    ("GET", BUCKET, "policyStatus", False, Op.GET_BUCKET_POLICY_STATUS),
    ("PUT", BUCKET, "publicAccessBlock", False, Op.PUT_PUBLIC_ACCESS_BLOCK),
    ("DELETE", BUCKET, "cors", False, Op.DELETE_BUCKET_CORS),
    ("GET", BUCKET, "lifecycle", False, Op.GET_BUCKET_LIFECYCLE),
    ("GET", BUCKET, "list-type=2", False, Op.LIST_OBJECTS_V2),
    ("GET", BUCKET, "list-type=2&prefix=a&encoding-type=url", False, Op.LIST_OBJECTS_V2),
    ("GET", BUCKET, "", False, Op.LIST_OBJECTS),
    ("GET", BUCKET, "prefix=a&x-id=ListObjects&marker=m", False, Op.LIST_OBJECTS),
    ("GET", BUCKET, "versionId=1", False, Op.LIST_OBJECTS),
    ("GET", BUCKET, "acl&list-type=1", False, Op.GET_BUCKET_ACL),
    ("HEAD", BUCKET, "", False, Op.HEAD_BUCKET),
    ("PUT", BUCKET, "acl", False, Op.PUT_BUCKET_ACL),
    ("PUT", BUCKET, "", False, Op.CREATE_BUCKET),
    ("PUT", BUCKET, "", True, Op.CREATE_BUCKET),
    ("DELETE", BUCKET, "", False, Op.DELETE_BUCKET),
    ("POST", BUCKET, "delete", False, Op.DELETE_OBJECTS),
    ("POST", BUCKET, "delete=", False, Op.DELETE_OBJECTS),
    ("GET", OBJECT, "acl", False, Op.GET_OBJECT_ACL),
    ("GET", OBJECT, "uploadId=u", False, Op.LIST_PARTS),
    ("GET", OBJECT, "uploadId=u&max-parts=2&part-number-marker=1", False, Op.LIST_PARTS),
    ("GET", OBJECT, "tagging", False, Op.GET_OBJECT_TAGGING),
    ("GET", OBJECT, "attributes", False, Op.GET_OBJECT_ATTRIBUTES),
    ("GET", OBJECT, "attributes&versionId=null", False, Op.GET_OBJECT_ATTRIBUTES),
    ("GET", OBJECT, "", False, Op.GET_OBJECT),
    ("GET", OBJECT, "partNumber=1", False, Op.GET_OBJECT),          # deviation from §2.4
    ("GET", OBJECT, "versionId=null&response-content-type=x", False, Op.GET_OBJECT),
    ("GET", OBJECT, "x-id=GetObject", False, Op.GET_OBJECT),
    ("HEAD", OBJECT, "", False, Op.HEAD_OBJECT),
    ("HEAD", OBJECT, "partNumber=2", False, Op.HEAD_OBJECT),        # deviation from §2.4
    ("PUT", OBJECT, "acl", False, Op.PUT_OBJECT_ACL),
    ("PUT", OBJECT, "acl", True, Op.PUT_OBJECT_ACL),
    ("PUT", OBJECT, "partNumber=1&uploadId=u", True, Op.UPLOAD_PART_COPY),
    ("PUT", OBJECT, "uploadId=u&partNumber=1", False, Op.UPLOAD_PART),
    ("PUT", OBJECT, "", True, Op.COPY_OBJECT),
    ("PUT", OBJECT, "", False, Op.PUT_OBJECT),
    ("PUT", OBJECT, "x-id=PutObject", False, Op.PUT_OBJECT),
    ("DELETE", OBJECT, "uploadId=u", False, Op.ABORT_MULTIPART_UPLOAD),
    ("DELETE", OBJECT, "", False, Op.DELETE_OBJECT),
    ("DELETE", OBJECT, "versionId=null", False, Op.DELETE_OBJECT),
    ("POST", OBJECT, "uploads", False, Op.CREATE_MULTIPART_UPLOAD),
    ("POST", OBJECT, "uploadId=u", False, Op.COMPLETE_MULTIPART_UPLOAD),
]


@pytest.mark.parametrize("method, address, query, copy, op", ROUTES)
def test_route(method: str, address: Address, query: str, copy: bool, op: Op) -> None:
    assert route(method, address, parse_query(query), copy) is op


def _raises(method: str, address: Address, query: str, copy: bool = False) -> S3Error:
    with pytest.raises(S3Error) as exc:
        route(method, address, parse_query(query), copy)
    return exc.value


@pytest.mark.parametrize("address", [BUCKET, OBJECT])
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"])
@pytest.mark.parametrize("name", sorted(UNSUPPORTED_SUBRESOURCES))
def test_unsupported_subresources(address: Address, method: str, name: str) -> None:
    err = _raises(method, address, f"{name}&acl")
    assert isinstance(err, S3NotImplemented) and err.status == 501
    assert err.extra == {"ArgumentName": name}


@pytest.mark.parametrize("address, method, query, argument", [
    (OBJECT, "PUT", "versionId=1", "versionId"),
    (BUCKET, "PUT", "versionId=1", "versionId"),
    (OBJECT, "PUT", "versionId=1&uploadId=2&partNumber=1", "versionId"),
    (OBJECT, "GET", "acl&cors", "cors"),
    (OBJECT, "PUT", "policy", "policy"),
    (OBJECT, "DELETE", "lifecycle", "lifecycle"),
    (BUCKET, "GET", "attributes", "attributes"),
])
def test_not_implemented(address: Address, method: str, query: str, argument: str) -> None:
    err = _raises(method, address, query)
    assert isinstance(err, S3NotImplemented)
    assert err.extra == {"ArgumentName": argument}


def test_browser_post_is_post_object() -> None:
    assert route("POST", BUCKET, {}, False) is Op.POST_OBJECT


@pytest.mark.parametrize("method, address, query, resource, allow", [
    ("PUT", SERVICE, "", "SERVICE", "GET"),
    ("DELETE", SERVICE, "", "SERVICE", "GET"),
    ("PATCH", BUCKET, "", "BUCKET", "GET, HEAD, PUT, POST, DELETE"),
    ("OPTIONS", OBJECT, "", "OBJECT", "GET, HEAD, PUT, POST, DELETE"),
    ("POST", OBJECT, "", "OBJECT", "GET, HEAD, PUT, POST, DELETE"),
    ("DELETE", OBJECT, "acl", "OBJECT", "GET, PUT"),
    ("POST", OBJECT, "tagging", "OBJECT", "GET, PUT, DELETE"),
    ("PUT", OBJECT, "attributes", "OBJECT", "GET"),
    ("HEAD", OBJECT, "attributes", "OBJECT", "GET"),
    ("POST", OBJECT, "acl", "OBJECT", "GET, PUT"),
    ("HEAD", OBJECT, "acl", "OBJECT", "GET, PUT"),
    ("PUT", OBJECT, "uploads", "OBJECT", "POST"),
    ("GET", OBJECT, "uploads", "OBJECT", "POST"),
    ("DELETE", OBJECT, "partNumber=1", "OBJECT", "GET, HEAD, PUT"),
    ("POST", OBJECT, "partNumber=1&uploadId=u", "OBJECT", "GET, HEAD, PUT"),
    ("GET", OBJECT, "location", "OBJECT", ""),
    ("DELETE", BUCKET, "acl", "BUCKET", "GET, PUT"),
    ("HEAD", BUCKET, "list-type=2", "BUCKET", "GET"),
    ("GET", BUCKET, "delete", "BUCKET", "POST"),
    ("POST", BUCKET, "uploads", "BUCKET", "GET"),
    ("PUT", BUCKET, "location", "BUCKET", "GET"),
    ("DELETE", BUCKET, "uploads", "BUCKET", "GET"),
    ("GET", BUCKET, "uploadId=u", "BUCKET", ""),
])
def test_method_not_allowed(method: str, address: Address, query: str, resource: str,
                            allow: str) -> None:
    err = _raises(method, address, query)
    assert isinstance(err, MethodNotAllowed) and err.status == 405
    assert err.extra == {"Method": method, "ResourceType": resource}
    assert err.headers == {"Allow": allow}


@pytest.mark.parametrize("query, copy, missing", [
    ("partNumber=1", False, "uploadId"), ("partNumber=1", True, "uploadId"),
    ("uploadId=u", False, "partNumber"), ("uploadId=u", True, "partNumber"),
])
def test_part_upload_missing_companion(query: str, copy: bool, missing: str) -> None:
    err = _raises("PUT", OBJECT, query, copy)
    assert isinstance(err, InvalidArgument)
    assert err.extra == {"ArgumentName": missing}


@pytest.mark.parametrize("value", ["1", "", "3", "02"])
def test_list_type_must_be_2(value: str) -> None:
    err = _raises("GET", BUCKET, f"list-type={value}")
    assert isinstance(err, InvalidArgument)
    assert err.extra == {"ArgumentName": "list-type", "ArgumentValue": value}


def test_op_values_are_aws_names() -> None:
    assert len(Op) == 48
    for op in Op:
        assert op.value[0].isupper() and op.value.isalnum()
    assert Op.PUT_OBJECT.value == "PutObject"


@given(method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "get"]),
       names=st.lists(st.sampled_from(["acl", "location", "uploads", "uploadId", "partNumber",
                                        "delete", "versioning", "tagging", "list-type",
                                        "x-id", "prefix", "versionId", "cors"]), max_size=4),
       address=st.sampled_from([SERVICE, BUCKET, OBJECT]), copy=st.booleans())
def test_route_total(method: str, names: list[str], address: Address, copy: bool) -> None:
    """Every request either routes or raises an S3Error; DELETE never silently drops a
    sub-resource."""
    query = {n: "2" for n in names}
    try:
        op = route(method, address, query, copy)
    except S3Error:
        return
    if op is Op.DELETE_OBJECT or op is Op.DELETE_BUCKET:
        assert not set(names) & {"acl", "tagging", "uploads", "uploadId", "partNumber",
                                 "delete", "versioning", "list-type", "location"}
