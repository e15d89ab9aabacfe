"""Bucket CORS against a real server (every server kind): Put/Get/DeleteBucketCors with
AWS's answers, preflights answered from the rules without authentication, and the
Access-Control-* headers on actual requests (errors included), as S3 sends them."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
from typing import Any
from xml.etree import ElementTree

import pytest
from botocore.exceptions import ClientError
from support.server import Server
from support.signed import RawResponse, send

pytestmark = pytest.mark.usefixtures("metadata_feature")

APP = "https://app.example"
PREFLIGHT_VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
NOT_ALLOWED = ("CORSResponse: This CORS request is not allowed. This is usually because the "
               "evalution of Origin, request method / Access-Control-Request-Method or "
               "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.")
RULES = [
    {"ID": "app", "AllowedOrigins": [APP, "https://*.app.example"],
     "AllowedMethods": ["GET", "PUT", "HEAD"], "AllowedHeaders": ["content-type", "x-amz-*"],
     "ExposeHeaders": ["ETag", "x-amz-meta-note"], "MaxAgeSeconds": 600},
    {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]},
]


def fields(resp: RawResponse) -> dict[str, str]:
    root = ElementTree.fromstring(resp.body)
    return {el.tag: el.text or "" for el in root}


def expect_error(resp: RawResponse, status: int, code: str) -> dict[str, str]:
    assert resp.status == status, resp.body[:600]
    got = fields(resp)
    assert got["Code"] == code, got
    return got


def cors_headers(resp: RawResponse) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k.startswith("access-control-")}


def options(server: Server, target: str, **headers: str) -> RawResponse:
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    return send(server.endpoint, "OPTIONS", target, headers=hdrs, sign=False)


@pytest.fixture
def configured(s3: Any, bucket: str) -> str:
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    s3.put_object(Bucket=bucket, Key="obj", Body=b"payload", Metadata={"note": "hi"})
    return bucket


# --- the configuration -------------------------------------------------------------------

def test_put_get_delete_round_trip(server: Server, s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_cors(Bucket=bucket)
    err = exc.value.response["Error"]
    assert (err["Code"], err["Message"], err["BucketName"]) == (
        "NoSuchCORSConfiguration", "The CORS configuration does not exist", bucket)
    resp = s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == RULES
    raw = send(server.endpoint, "GET", f"/{bucket}?cors")
    assert raw.status == 200 and raw.headers["content-type"] == "application/xml"
    root = ElementTree.fromstring(raw.body)
    assert root.tag == "{http://s3.amazonaws.com/doc/2006-03-01/}CORSConfiguration"
    assert len(root) == 2
    assert s3.delete_bucket_cors(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.delete_bucket_cors(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError):
        s3.get_bucket_cors(Bucket=bucket)


def put_raw(server: Server, bucket: str, xml: bytes, *, md5: bool = True,
            sign: bool = True) -> RawResponse:
    headers = {"Content-MD5": base64.b64encode(hashlib.md5(xml).digest()).decode()} if md5 else {}
    return send(server.endpoint, "PUT", f"/{bucket}?cors", body=xml, headers=headers, sign=sign)


def rule_xml(origin: str = "*", method: str = "GET", extra: str = "") -> bytes:
    return (f"<CORSConfiguration><CORSRule><AllowedOrigin>{origin}</AllowedOrigin>"
            f"<AllowedMethod>{method}</AllowedMethod>{extra}</CORSRule>"
            "</CORSConfiguration>").encode()


@pytest.mark.parametrize("xml,code,message", [
    (rule_xml(method="PATCH"), "InvalidRequest",
     "Found unsupported HTTP method in CORS config. Unsupported method is PATCH"),
    (rule_xml(origin="*example*.com"), "InvalidRequest",
     'AllowedOrigin "*example*.com" can not have more than one wildcard.'),
    (rule_xml(extra="<ExposeHeader>*</ExposeHeader>"), "InvalidRequest",
     'ExposeHeader "*" contains wildcard. We currently do not support wildcard for '
     "ExposeHeader."),
    (b"<CORSConfiguration></CORSConfiguration>", "MalformedXML", None),
    (b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule>"
     b"</CORSConfiguration>", "MalformedXML", None),
])
def test_invalid_configurations(server: Server, s3: Any, bucket: str, xml: bytes, code: str,
                                message: str | None) -> None:
    got = expect_error(put_raw(server, bucket, xml), 400, code)
    if message is not None:
        assert got["Message"] == message
    with pytest.raises(ClientError):
        s3.get_bucket_cors(Bucket=bucket)


def test_put_needs_a_body_checksum_size_limit_and_the_owner(server: Server, s3: Any,
                                                            bucket: str) -> None:
    got = expect_error(put_raw(server, bucket, rule_xml(), md5=False), 400, "InvalidRequest")
    assert got["Message"] == "Missing required header for this request: Content-MD5"
    big = rule_xml(extra="".join(f"<AllowedHeader>h{i:05d}</AllowedHeader>"
                                 for i in range(3000)))
    assert len(big) > 64 * 1024
    expect_error(put_raw(server, bucket, big), 400, "MaxMessageLengthExceeded")
    expect_error(put_raw(server, bucket, rule_xml(), sign=False), 403, "AccessDenied")
    expect_error(send(server.endpoint, "GET", f"/{bucket}?cors", sign=False), 403,
                 "AccessDenied")
    with pytest.raises(ClientError):
        s3.get_bucket_cors(Bucket=bucket)
    assert put_raw(server, bucket, rule_xml()).status == 200


# --- preflights --------------------------------------------------------------------------

def test_preflight_without_configuration(server: Server, s3: Any, bucket: str) -> None:
    resp = options(server, f"/{bucket}/obj", Origin=APP, Access_Control_Request_Method="GET")
    got = expect_error(resp, 403, "AccessForbidden")
    assert got["Message"] == "CORSResponse: CORS is not enabled for this bucket."
    assert (got["Method"], got["ResourceType"]) == ("GET", "BUCKET")


def test_preflight_answered_from_the_rules(server: Server, configured: str) -> None:
    resp = options(server, f"/{configured}/a/new/key", Origin=APP,
                   Access_Control_Request_Method="PUT",
                   Access_Control_Request_Headers="Content-Type,X-Amz-Date,x-amz-meta-note")
    assert resp.status == 200, resp.body
    assert resp.body == b""
    assert cors_headers(resp) == {
        "access-control-allow-origin": APP,
        "access-control-allow-methods": "GET, PUT, HEAD",
        "access-control-allow-headers": "content-type, x-amz-date, x-amz-meta-note",
        "access-control-expose-headers": "ETag, x-amz-meta-note",
        "access-control-max-age": "600",
        "access-control-allow-credentials": "true"}
    assert resp.headers["vary"] == PREFLIGHT_VARY
    sub = options(server, f"/{configured}", Origin="https://eu.app.example",
                  Access_Control_Request_Method="HEAD")
    assert sub.status == 200 and sub.headers["access-control-allow-origin"] == (
        "https://eu.app.example")


def test_wildcard_rule_answers_a_star(server: Server, configured: str) -> None:
    resp = options(server, f"/{configured}/obj", Origin="http://elsewhere:8080",
                   Access_Control_Request_Method="GET")
    assert resp.status == 200
    assert cors_headers(resp) == {"access-control-allow-origin": "*",
                                  "access-control-allow-methods": "GET"}
    assert resp.headers["vary"] == PREFLIGHT_VARY


@pytest.mark.parametrize("target,resource,headers", [
    ("/{b}/obj", "OBJECT", {"Origin": "http://elsewhere", "Access-Control-Request-Method": "PUT"}),
    ("/{b}", "BUCKET", {"Origin": "http://elsewhere", "Access-Control-Request-Method": "PUT"}),
    ("/{b}/obj", "OBJECT", {"Origin": APP, "Access-Control-Request-Method": "DELETE"}),
    ("/{b}/obj", "OBJECT", {"Origin": APP, "Access-Control-Request-Method": "PUT",
                            "Access-Control-Request-Headers": "authorization"}),
    ("/{b}/obj", "OBJECT", {"Origin": "http://app.example",  # another scheme
                            "Access-Control-Request-Method": "GET",
                            "Access-Control-Request-Headers": "x-amz-date"}),
    ("/{b}/obj", "OBJECT", {"Origin": APP}),  # no method asked about: OPTIONS
])
def test_preflight_refused(server: Server, configured: str, target: str, resource: str,
                           headers: dict[str, str]) -> None:
    resp = send(server.endpoint, "OPTIONS", target.format(b=configured), headers=headers,
                sign=False)
    got = expect_error(resp, 403, "AccessForbidden")
    assert got["Message"] == NOT_ALLOWED
    method = headers.get("Access-Control-Request-Method", "OPTIONS")
    assert (got["Method"], got["ResourceType"]) == (method, resource)
    assert cors_headers(resp) == {} and "vary" not in resp.headers


def test_preflight_without_origin_is_400(server: Server, configured: str) -> None:
    resp = options(server, f"/{configured}/obj", Access_Control_Request_Method="GET")
    got = expect_error(resp, 400, "BadRequest")
    assert got["Message"] == "Insufficient information. Origin request header needed."


def test_preflight_of_a_presigned_url(server: Server, s3: Any, configured: str) -> None:
    url = s3.generate_presigned_url("put_object", Params={"Bucket": configured, "Key": "p"},
                                    ExpiresIn=300)
    target = url.split(server.endpoint.split("//")[1], 1)[1]
    resp = options(server, target, Origin=APP, Access_Control_Request_Method="PUT",
                   Access_Control_Request_Headers="content-type")
    assert resp.status == 200
    assert resp.headers["access-control-allow-origin"] == APP


# --- actual requests ---------------------------------------------------------------------

def test_actual_request_from_an_allowed_origin(server: Server, configured: str) -> None:
    resp = send(server.endpoint, "GET", f"/{configured}/obj", headers={"Origin": APP})
    assert (resp.status, resp.body) == (200, b"payload")
    assert cors_headers(resp) == {
        "access-control-allow-origin": APP,
        "access-control-allow-methods": "GET, PUT, HEAD",
        "access-control-expose-headers": "ETag, x-amz-meta-note",
        "access-control-max-age": "600",
        "access-control-allow-credentials": "true"}
    assert resp.headers["vary"] == PREFLIGHT_VARY
    head = send(server.endpoint, "HEAD", f"/{configured}/obj", headers={"Origin": APP})
    assert head.headers["access-control-allow-origin"] == APP


def test_actual_request_not_allowed_gets_no_cors_headers(server: Server, s3: Any,
                                                         configured: str) -> None:
    plain = send(server.endpoint, "GET", f"/{configured}/obj")
    assert plain.status == 200 and cors_headers(plain) == {} and "vary" not in plain.headers
    # a DELETE no rule allows is still served (S3 refuses only preflights), without headers
    resp = send(server.endpoint, "DELETE", f"/{configured}/obj", headers={"Origin": APP})
    assert resp.status == 204 and cors_headers(resp) == {} and "vary" not in resp.headers
    assert "Contents" not in s3.list_objects_v2(Bucket=configured)
    # the method asked about decides an actual request that carries one
    resp = send(server.endpoint, "GET", f"/{configured}", headers={
        "Origin": APP, "Access-Control-Request-Method": "DELETE"})
    assert resp.status == 200 and cors_headers(resp) == {}


def test_error_responses_carry_the_headers(server: Server, configured: str) -> None:
    missing = send(server.endpoint, "GET", f"/{configured}/nope", headers={"Origin": APP})
    expect_error(missing, 404, "NoSuchKey")
    assert missing.headers["access-control-allow-origin"] == APP
    anonymous = send(server.endpoint, "GET", f"/{configured}/obj", headers={"Origin": APP},
                     sign=False)
    expect_error(anonymous, 403, "AccessDenied")
    assert anonymous.headers["access-control-expose-headers"] == "ETag, x-amz-meta-note"


def test_refused_signature_carries_the_headers(server: Server, configured: str) -> None:
    """A request refused before routing (here its signature) is answered with the bucket's
    CORS headers too, as S3 does, so a page can read why."""
    # NOTE: every worker must have served a routed request when app.py does not pass
    # the rules reader to the front (it then takes it from the S3 resource).
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: send(server.endpoint, "GET", f"/{configured}/obj"), range(24)))
    forged = send(server.endpoint, "GET", f"/{configured}/obj", headers={"Origin": APP},
                  secret_key="not-the-secret")
    expect_error(forged, 403, "SignatureDoesNotMatch")
    assert forged.headers["access-control-allow-origin"] == APP
    assert forged.headers["vary"] == PREFLIGHT_VARY
