"""The S3 front in process (webtest): routing rows, the error document, 405/501 rows, common
headers, and the Server/Date headers the app adds only when gunicorn does not."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import pytest
import webtest
from support.clients import boto3_client
from support.wsgiapp import ACCESS_KEY, HOST, SECRET_KEY, S3App

from bleepstore.s3.router import Op
from bleepstore.web import resources

S3NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
REQUEST_ID = re.compile(r"[0-9A-F]{16}")


def error(resp: webtest.TestResponse) -> dict[str, str]:
    """The <Error> children in document order (as an insertion-ordered dict)."""
    assert resp.content_type == "application/xml"
    assert resp.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(resp.body)
    assert root.tag == "Error"  # no namespace on errors [S3]
    return {child.tag: child.text or "" for child in root}


def assert_error(resp: webtest.TestResponse, status: int, code: str) -> dict[str, str]:
    assert resp.status_int == status, resp.body
    fields = error(resp)
    assert fields["Code"] == code
    names = list(fields)
    assert names[:2] == ["Code", "Message"] and fields["Message"]
    assert names[-3:] == ["Resource", "RequestId", "HostId"]
    assert fields["RequestId"] == resp.headers["x-amz-request-id"]
    assert fields["HostId"] == resp.headers["x-amz-id-2"]
    assert int(resp.headers["Content-Length"]) == len(resp.body)
    return fields


def test_list_buckets_and_common_headers(s3app: S3App) -> None:
    assert s3app.call("PUT", "/alpha").status_int == 200
    resp = s3app.call("GET", "/")
    assert resp.status_int == 200
    assert resp.content_type == "application/xml"
    root = ET.fromstring(resp.body)
    assert root.tag == f"{S3NS}ListAllMyBucketsResult"
    assert [e.text for e in root.iter(f"{S3NS}Name")] == ["alpha"]
    assert REQUEST_ID.fullmatch(resp.headers["x-amz-request-id"])
    assert len(base64.b64decode(resp.headers["x-amz-id-2"], validate=True)) == 32
    assert resp.headers["Server"] == "BleepStore"  # not under gunicorn: the app adds it
    assert parsedate_to_datetime(resp.headers["Date"]).tzname() == "UTC"
    assert resp.headers["Date"].endswith(" GMT")


def test_under_gunicorn_the_app_leaves_server_and_date_to_it(s3app: S3App) -> None:
    resp = s3app.call("GET", "/", environ={"SERVER_SOFTWARE": "gunicorn/27.0.1"})
    assert resp.status_int == 200
    assert "Server" not in resp.headers and "Date" not in resp.headers
    assert REQUEST_ID.fullmatch(resp.headers["x-amz-request-id"])


def test_error_document_shape(s3app: S3App) -> None:
    resp = s3app.call("GET", "/missing-bucket/some/key.txt")
    fields = assert_error(resp, 404, "NoSuchBucket")
    assert fields["BucketName"] == "missing-bucket"
    assert fields["Resource"] == "/missing-bucket/some/key.txt"
    assert resp.headers["Server"] == "BleepStore"
    s3app.call("PUT", "/alpha")
    fields = assert_error(s3app.call("GET", "/alpha/a%20b%2Fc"), 404, "NoSuchKey")
    assert fields["Key"] == "a b/c"
    assert fields["Resource"] == "/alpha/a b/c"  # the decoded request path


def test_head_errors_have_no_body(s3app: S3App) -> None:
    resp = s3app.call("HEAD", "/missing-bucket/k")
    assert resp.status_int == 404
    assert resp.body == b""
    assert REQUEST_ID.fullmatch(resp.headers["x-amz-request-id"])
    s3app.call("PUT", "/alpha")
    head = s3app.call("HEAD", "/alpha/nokey")
    assert (head.status_int, head.body) == (404, b"")


@pytest.mark.parametrize("method,target,allow", [
    ("PUT", "/", "GET"), ("DELETE", "/", "GET"), ("POST", "/", "GET"),
    ("POST", "/alpha/k", None), ("DELETE", "/alpha/k?acl", "GET, PUT"),
    ("POST", "/alpha/k?tagging", "GET, PUT, DELETE"), ("DELETE", "/alpha?acl", "GET, PUT"),
    ("GET", "/alpha?delete", "POST"), ("PATCH", "/alpha/k", None), ("PATCH", "/alpha", None),
])
def test_method_not_allowed_rows(s3app: S3App, method: str, target: str,
                                 allow: str | None) -> None:
    s3app.call("PUT", "/alpha")
    s3app.call("PUT", "/alpha/k", body=b"keep")
    fields = assert_error(s3app.call(method, target), 405, "MethodNotAllowed")
    assert fields["Method"] == method
    if allow is not None:
        assert s3app.call(method, target).headers["Allow"] == allow
    assert s3app.call("GET", "/alpha/k").body == b"keep"  # never fell through to a delete


def presigned_target(op: str, params: dict[str, str]) -> str:
    client = boto3_client(f"http://{HOST}", ACCESS_KEY, SECRET_KEY)
    url = urlsplit(client.generate_presigned_url(op, Params=params, ExpiresIn=600))
    return f"{url.path}?{url.query}"


@pytest.mark.parametrize("target", [
    "/alpha", "/alpha/k", "/alpha/k?acl", "/missing-bucket/k", "presigned", "/",
])
@pytest.mark.parametrize("sign", [False, True])
def test_options_is_a_refused_cors_preflight(s3app: S3App, target: str, sign: bool) -> None:
    """OPTIONS is S3's CORS preflight, answered before authentication and routing; with no
    CORS configuration (BleepStore has none) it is 400 without an Origin, else 403. Never
    405, and on a presigned URL never SignatureDoesNotMatch (docs/decisions.md)."""
    s3app.call("PUT", "/alpha")
    s3app.call("PUT", "/alpha/k", body=b"keep")
    if target == "presigned":
        target = presigned_target("get_object", {"Bucket": "alpha", "Key": "k"})
    fields = assert_error(s3app.call("OPTIONS", target, sign=sign), 400, "BadRequest")
    assert fields["Message"] == "Insufficient information. Origin request header needed."
    asked = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    fields = assert_error(s3app.call("OPTIONS", target, sign=sign, headers=asked), 403,
                          "AccessForbidden")
    assert fields["Message"] == ("CORSResponse: Bucket not found" if target == "/" else
                                 "CORSResponse: CORS is not enabled for this bucket.")
    assert list(fields)[2:4] == ["Method", "ResourceType"]
    assert (fields["Method"], fields["ResourceType"]) == ("GET", "BUCKET")
    bad = {"Origin": "https://app.example", "Access-Control-Request-Method": "get"}
    fields = assert_error(s3app.call("OPTIONS", target, sign=sign, headers=bad), 400,
                          "BadRequest")
    assert fields["Message"] == "Invalid Access-Control-Request-Method: get"
    assert s3app.call("GET", "/alpha/k").body == b"keep"


@pytest.mark.parametrize("method,target,argument", [
    ("GET", "/alpha?website", "website"), ("PUT", "/alpha?replication", "replication"),
    ("DELETE", "/alpha?encryption", "encryption"), ("GET", "/alpha/k?cors", "cors"),
    ("PUT", "/alpha/k?versionId=3", "versionId"), ("GET", "/alpha/k?torrent", "torrent"),
    ("POST", "/alpha/k?select&select-type=2", "select"),
])
def test_not_implemented_rows(s3app: S3App, method: str, target: str,
                              argument: str | None) -> None:
    s3app.call("PUT", "/alpha")
    fields = assert_error(s3app.call(method, target), 501, "NotImplemented")
    if argument is not None:
        assert fields["ArgumentName"] == argument


@pytest.mark.parametrize("target,argument", [
    ("/alpha?list-type=3", "list-type"), ("/alpha/k?partNumber=1", "uploadId"),
    ("/alpha/k?uploadId=abc", "partNumber"),
])
def test_invalid_argument_rows(s3app: S3App, target: str, argument: str) -> None:
    s3app.call("PUT", "/alpha")
    method = "GET" if "list-type" in target else "PUT"
    fields = assert_error(s3app.call(method, target), 400, "InvalidArgument")
    assert fields["ArgumentName"] == argument


def test_routing_reaches_each_shape(s3app: S3App) -> None:
    assert s3app.call("PUT", "/alpha").status_int == 200
    assert s3app.call("PUT", "/alpha/dir/k", body=b"v").status_int == 200
    assert b"<LocationConstraint" in s3app.call("GET", "/alpha?location").body
    assert b"<VersioningConfiguration" in s3app.call("GET", "/alpha?versioning").body
    assert b"<Key>dir/k</Key>" in s3app.call("GET", "/alpha?list-type=2&x-id=List").body
    assert b"<AccessControlPolicy" in s3app.call("GET", "/alpha/dir/k?acl").body
    assert b"<TagSet" in s3app.call("GET", "/alpha/dir/k?tagging").body
    vhost = s3app.call("GET", "/dir/k", host="alpha.localhost")
    assert (vhost.status_int, vhost.body) == (200, b"v")
    assert s3app.call("GET", "/alpha/dir/k", raw_uri=False).body == b"v"  # PATH_INFO fallback


def test_raw_target_is_the_canonical_path(s3app: S3App) -> None:
    """%2F in the raw target is a '/' in the key, and is signed as sent (auth.md §3.1)."""
    s3app.call("PUT", "/alpha")
    assert s3app.call("PUT", "/alpha/a%2Fb", body=b"slash").status_int == 200
    assert s3app.call("GET", "/alpha/a/b").body == b"slash"


def test_service_paths_without_auth(s3app: S3App) -> None:
    health = s3app.call("GET", "/health", sign=False)
    assert health.status_int == 200 and health.json["status"] == "ok"
    assert REQUEST_ID.fullmatch(health.headers["x-amz-request-id"])
    assert s3app.call("GET", "/healthz", sign=False).status_int == 200
    signed = s3app.call("GET", "/health")  # signed: an S3 request for bucket "health"
    assert_error(signed, 404, "NoSuchBucket")


def test_anonymous_access_follows_acls(s3app: S3App) -> None:
    s3app.call("PUT", "/alpha", headers={"x-amz-acl": "public-read"})
    s3app.call("PUT", "/alpha/pub", body=b"open", headers={"x-amz-acl": "public-read"})
    s3app.call("PUT", "/alpha/priv", body=b"closed")
    assert s3app.call("GET", "/alpha/pub", sign=False).body == b"open"
    assert b"<Key>priv</Key>" in s3app.call("GET", "/alpha", sign=False).body
    assert_error(s3app.call("GET", "/alpha/priv", sign=False), 403, "AccessDenied")
    assert_error(s3app.call("GET", "/", sign=False), 403, "AccessDenied")
    assert_error(s3app.call("PUT", "/alpha/x", body=b"x", sign=False), 403, "AccessDenied")
    assert_error(s3app.call("GET", "/alpha/pub?response-content-type=a/b", sign=False), 400,
                 "InvalidRequest")


def test_unexpected_exception_is_internal_error(s3app: S3App,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("secret detail /srv/path")

    monkeypatch.setitem(resources.OPERATIONS, Op.LIST_BUCKETS, boom)
    resp = s3app.call("GET", "/")
    fields = assert_error(resp, 500, "InternalError")
    assert fields["Resource"] == "/"
    assert b"secret detail" not in resp.body and b"Traceback" not in resp.body


def test_bad_utf8_in_path_is_invalid_uri(s3app: S3App) -> None:
    """[S3] a key that is not UTF-8 is 400 InvalidURI (docs/decisions.md)."""
    s3app.call("PUT", "/alpha")
    fields = assert_error(s3app.call("GET", "/alpha/%FF%FE"), 400, "InvalidURI")
    assert fields["Message"] == "Couldn't parse the specified URI."
    assert_error(s3app.call("PUT", "/alpha/ok%C3", body=b"x"), 400, "InvalidURI")
    assert_error(s3app.call("GET", "/alpha?prefix=%FF"), 400, "InvalidArgument")  # query
