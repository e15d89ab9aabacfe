"""POST Object's form authentication and POST policy (s3/post_policy.py), pure: AWS's SigV4
example and botocore as oracles, SigV2, the policy language and AWS's answers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config

from bleepstore import errors
from bleepstore.model import Credential
from bleepstore.s3 import post_policy as pp
from bleepstore.s3.post_policy import Condition, FormFields

AKID, SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CRED = Credential(AKID, SECRET, "owner-id", "owner")

# AWS's "Example: Browser-Based Upload using HTTP POST (Using AWS Signature Version 4)":
# the policy has CRLF line ends; the page gives its base64 text and this signature.
AWS_POLICY = (
    "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAg"
    "ICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAi"
    "dXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25f"
    "cmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxf"
    "dXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQog"
    "ICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRl"
    "LWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAi"
    "Il0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMt"
    "ZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEy"
    "NTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9")
AWS_SIGNATURE = "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e"
AWS_FORM = [
    ("key", "user/user1/${filename}"), ("acl", "public-read"),
    ("success_action_redirect", "http://sigv4examplebucket.s3.amazonaws.com/successful_upload.html"),
    ("Content-Type", "image/jpeg"), ("x-amz-meta-uuid", "14365123651274"),
    ("x-amz-server-side-encryption", "AES256"),
    ("X-Amz-Credential", f"{AKID}/20151229/us-east-1/s3/aws4_request"),
    ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Date", "20151229T000000Z"),
    ("x-amz-meta-tag", ""), ("Policy", AWS_POLICY), ("X-Amz-Signature", AWS_SIGNATURE)]


def lookup(key: str) -> Credential | None:
    return CRED if key == AKID else None


def replaced(form: list[tuple[str, str]], name: str, value: str | None) -> FormFields:
    items = [(n, v) for n, v in form if n.lower() != name.lower()]
    return FormFields(items + ([(name, value)] if value is not None else []))


def encode(policy: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(policy).encode()).decode()


# --- authentication ----------------------------------------------------------------------

def test_aws_sigv4_example_verifies() -> None:
    auth = pp.authenticate(FormFields(AWS_FORM), lookup)
    assert (auth.credential, auth.version) == (CRED, 4)


def test_aws_example_policy_as_aws_evaluates_it() -> None:
    policy = pp.parse_policy(AWS_POLICY)
    assert policy.expiration == datetime(2015, 12, 30, 12, tzinfo=UTC)
    form = pp.expand_filename(FormFields(AWS_FORM), "C:\\Pictures\\cat.jpg")
    assert form.get("key") == "user/user1/cat.jpg"
    pp.check_conditions(policy, form, "sigv4examplebucket", 4)
    with pytest.raises(errors.AccessDenied) as exc:
        pp.check_conditions(policy, form, "otherbucket", 4)
    assert exc.value.msg == ('Invalid according to Policy: Policy Condition failed: '
                             '["eq", "$bucket", "sigv4examplebucket"]')
    with pytest.raises(errors.AccessDenied) as exc:
        pp.check_expiration(policy, datetime(2015, 12, 30, 12, 0, 1, tzinfo=UTC))
    assert exc.value.msg == "Invalid according to Policy: Policy expired."
    pp.check_expiration(policy, datetime(2015, 12, 30, 12, tzinfo=UTC))  # the instant itself


def test_botocore_offline_vector() -> None:
    """botocore's generate_presigned_post("sigv4examplebucket", "user/user1/photo.jpg") with
    the clock at 2015-12-29T00:00:00Z and AWS's example credentials (recomputed offline)."""
    policy = (
        "eyJleHBpcmF0aW9uIjogIjIwMTUtMTItMjlUMDE6MDA6MDBaIiwgImNvbmRpdGlvbnMiOiBbeyJidWNrZXQi"
        "OiAic2lndjRleGFtcGxlYnVja2V0In0sIHsia2V5IjogInVzZXIvdXNlcjEvcGhvdG8uanBnIn0sIHsieC1h"
        "bXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwgeyJ4LWFtei1jcmVkZW50aWFsIjogIkFLSUFJ"
        "T1NGT0ROTjdFWEFNUExFLzIwMTUxMjI5L3VzLWVhc3QtMS9zMy9hd3M0X3JlcXVlc3QifSwgeyJ4LWFtei1k"
        "YXRlIjogIjIwMTUxMjI5VDAwMDAwMFoifV19")
    form = FormFields([
        ("key", "user/user1/photo.jpg"), ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
        ("x-amz-credential", f"{AKID}/20151229/us-east-1/s3/aws4_request"),
        ("x-amz-date", "20151229T000000Z"), ("policy", policy),
        ("x-amz-signature", "3364624b39010d9b06f5d9b8c9a18a6e478d261c048159c92f2fd6fa885f14e6")])
    assert pp.authenticate(form, lookup).version == 4
    pp.check_conditions(pp.parse_policy(policy), form, "sigv4examplebucket", 4)


def test_botocore_presigned_post_verifies_and_tampering_does_not() -> None:
    client = boto3.client("s3", endpoint_url="http://127.0.0.1:1", aws_access_key_id=AKID,
                          aws_secret_access_key=SECRET, region_name="us-east-1",
                          config=Config(signature_version="s3v4"))
    post = client.generate_presigned_post(
        "bkt", "uploads/${filename}", Fields={"acl": "private"},
        Conditions=[{"acl": "private"}, ["content-length-range", 1, 1024]], ExpiresIn=600)
    items = list(post["fields"].items())
    auth = pp.authenticate(FormFields(items), lookup)
    assert auth.version == 4
    policy = pp.parse_policy(post["fields"]["policy"])
    pp.check_conditions(policy, pp.expand_filename(FormFields(items), "a.txt"), "bkt", 4)
    assert policy.length_range() == (1, 1024)
    other = encode({**json.loads(base64.b64decode(post["fields"]["policy"])),
                    "conditions": [{"bucket": "bkt"}]})
    with pytest.raises(errors.SignatureDoesNotMatch) as exc:
        pp.authenticate(replaced(items, "policy", other), lookup)
    assert exc.value.extra["StringToSign"] == other
    assert exc.value.extra["SignatureProvided"] == post["fields"]["x-amz-signature"]
    assert bytes.fromhex(exc.value.extra["StringToSignBytes"].replace(" ", "")) == other.encode()
    assert list(exc.value.extra) == ["AWSAccessKeyId", "StringToSign", "SignatureProvided",
                                     "StringToSignBytes"]


def test_sigv2_form() -> None:
    policy = encode({"expiration": "2030-01-01T00:00:00Z", "conditions": [{"bucket": "b"}]})
    signature = base64.b64encode(hmac.new(SECRET.encode(), policy.encode(), hashlib.sha1)
                                 .digest()).decode()
    form = [("key", "k"), ("AWSAccessKeyId", AKID), ("policy", policy),
            ("signature", signature)]
    assert pp.authenticate(FormFields(form), lookup).version == 2
    assert pp.authenticate(FormFields([(n.lower(), v) for n, v in form]), lookup).version == 2
    with pytest.raises(errors.SignatureDoesNotMatch):
        pp.authenticate(replaced(form, "signature", signature[::-1]), lookup)


@pytest.mark.parametrize("drop,named", [
    ("X-Amz-Algorithm", "X-Amz-Algorithm"), ("X-Amz-Credential", "X-Amz-Credential"),
    ("X-Amz-Date", "X-Amz-Date"), ("X-Amz-Signature", "X-Amz-Signature"),
    ("Policy", "Policy")])
def test_missing_sigv4_field(drop: str, named: str) -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        pp.authenticate(replaced(AWS_FORM, drop, None), lookup)
    assert exc.value.msg == (f"Bucket POST must contain a field named '{named}'.  If it is "
                             "specified, please check the order of the fields.")
    assert exc.value.extra == {"ArgumentName": named, "ArgumentValue": ""}


def test_missing_algorithm_is_named_before_credential() -> None:
    form = replaced([(n, v) for n, v in AWS_FORM if n != "X-Amz-Credential"],
                    "X-Amz-Algorithm", None)
    with pytest.raises(errors.InvalidArgument) as exc:
        pp.authenticate(form, lookup)
    assert exc.value.extra["ArgumentName"] == "X-Amz-Algorithm"


@pytest.mark.parametrize("form,named", [
    ([("AWSAccessKeyId", AKID), ("policy", "e30=")], "Signature"),
    ([("signature", "x"), ("policy", "e30=")], "AWSAccessKeyId"),
    ([("signature", "x"), ("AWSAccessKeyId", AKID)], "Policy"),
])
def test_missing_sigv2_field(form: list[tuple[str, str]], named: str) -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        pp.authenticate(FormFields(form), lookup)
    assert exc.value.extra["ArgumentName"] == named


def test_no_signature_fields_is_anonymous() -> None:
    for form in ([], [("key", "k")], [("key", "k"), ("policy", AWS_POLICY)]):
        assert pp.authenticate(FormFields(form), lookup) == pp.FormAuth(None)


@pytest.mark.parametrize("name,value,error,message", [
    ("X-Amz-Algorithm", "AWS4-HMAC-SHA1", errors.InvalidArgument,
     'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"'),
    ("X-Amz-Credential", "AKID/20151229/us-east-1/s3", errors.InvalidArgument,
     'the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/'
     'aws4_request".'),
    ("X-Amz-Credential", "/20151229/us-east-1/s3/aws4_request", errors.InvalidArgument,
     "a non-empty Access Key (AKID) must be provided in the credential."),
    ("X-Amz-Date", "2015-12-29", errors.InvalidArgument,
     "X-Amz-Date must be formated via ISO8601 Long format"),
    ("X-Amz-Credential", "NOBODY/20151229/us-east-1/s3/aws4_request", errors.InvalidAccessKeyId,
     "The AWS Access Key Id you provided does not exist in our records."),
    ("X-Amz-Signature", AWS_SIGNATURE[::-1], errors.SignatureDoesNotMatch, None),
    ("X-Amz-Signature", "é" * 64, errors.SignatureDoesNotMatch, None),
])
def test_sigv4_refusals(name: str, value: str, error: type[errors.S3Error],
                        message: str | None) -> None:
    with pytest.raises(error) as exc:
        pp.authenticate(replaced(AWS_FORM, name, value), lookup)
    if message is not None:
        assert exc.value.msg == message


def test_region_is_checked_only_when_enforced() -> None:
    form = FormFields(AWS_FORM)
    assert pp.authenticate(form, lookup, server_region="eu-west-1").version == 4
    with pytest.raises(errors.InvalidArgument) as exc:
        pp.authenticate(form, lookup, server_region="eu-west-1", enforce_region=True)
    assert exc.value.msg == "the region 'us-east-1' is wrong; expecting 'eu-west-1'"
    assert exc.value.extra["Region"] == "eu-west-1"


def test_inactive_key_is_unknown() -> None:
    inactive = Credential(AKID, SECRET, "owner-id", "owner", active=False)
    with pytest.raises(errors.InvalidAccessKeyId):
        pp.authenticate(FormFields(AWS_FORM), lambda _: inactive)


# --- the policy document -----------------------------------------------------------------

EXP = "2030-01-01T00:00:00Z"


@pytest.mark.parametrize("text,message", [
    ("not base64!", "Invalid Policy: invalid Base64 encoding."),
    (base64.b64encode(b"{nope").decode(), "Invalid Policy: Invalid JSON."),
    (base64.b64encode(b"[]").decode(), "Invalid Policy: Invalid JSON."),
    (encode({"expiration": EXP, "conditions": [["content-length-range", 0, 512.0]]}),
     "Invalid Policy: Invalid JSON."),
    (encode({"Version": "2012", "expiration": EXP}), "Invalid Policy: Unexpected: 'version'"),
    (encode({"EXPIRATION": EXP, "conditions": []}), "Invalid Policy: Unexpected: 'expiration'"),
    (encode({"conditions": []}), "Invalid Policy: Policy missing expiration."),
    (encode({"expiration": EXP}), "Invalid Policy: Policy missing conditions."),
    (encode({"expiration": EXP, "conditions": {}}),
     "Invalid Policy: Invalid 'conditions' value: must be a List."),
    (encode({"expiration": "2011-09-13T07:52:58+02:00", "conditions": []}),
     "Invalid Policy: Invalid 'expiration' value: '2011-09-13T07:52:58+02:00'"),
    (encode({"expiration": "2015-10-17 03:15:59 UTC", "conditions": []}),
     "Invalid Policy: Invalid 'expiration' value: '2015-10-17 03:15:59 UTC'"),
    (encode({"expiration": "2015-02-30T00:00:00Z", "conditions": []}),
     "Invalid Policy: Invalid 'expiration' value: '2015-02-30T00:00:00Z'"),
    (encode({"expiration": EXP, "conditions": [{}]}),
     "Invalid Policy: Invalid Simple-Condition: Simple-Conditions must have exactly one "
     "property specified."),
    (encode({"expiration": EXP, "conditions": [{"bucket": "b", "key": "k"}]}),
     "Invalid Policy: Invalid Simple-Condition: Simple-Conditions must have exactly one "
     "property specified."),
    (encode({"expiration": EXP, "conditions": [{"Content-Length": 6199034}]}),
     "Invalid Policy: Invalid Simple-Condition: value must be a string."),
    (encode({"expiration": EXP, "conditions": [{"success_action_redirect": None}]}),
     "Invalid Policy: Invalid JSON."),
    (encode({"expiration": EXP, "conditions": [[]]}),
     "Invalid Policy: Invalid Condition: missing operation identifier."),
    (encode({"expiration": EXP, "conditions": [["in", "$key", "a"]]}),
     "Invalid Policy: Invalid Condition: unknown operation 'in'."),
    (encode({"expiration": EXP, "conditions": [["content-length-range", 0]]}),
     "Invalid Policy: Invalid content-length-range: wrong number of arguments."),
    (encode({"expiration": EXP, "conditions": [["eq", "$key"]]}),
     "Invalid Policy: Invalid eq: wrong number of arguments."),
    (encode({"expiration": EXP, "conditions": [["content-length-range", -1, 0]]}),
     "Invalid Policy: Invalid content-length-range: the bounds must not be negative."),
    (encode({"expiration": EXP, "conditions": ["starts-with"]}),
     "Invalid Policy: Invalid condition test: must be a List or Object."),
])
def test_policy_document_errors(text: str, message: str) -> None:
    with pytest.raises(errors.InvalidPolicyDocument) as exc:
        pp.parse_policy(text)
    assert (exc.value.status, exc.value.msg) == (400, message)


def test_conditions_parse_case_insensitively() -> None:
    policy = pp.parse_policy(encode({"expiration": "2030-01-01T00:00:00.123Z", "conditions": [
        {"bUcKeT": "b"}, ["StArTs-WiTh", "$KeY", "foo"], ["content-length-range", "5", "10"]]}))
    assert policy.conditions == (
        Condition("eq", "bucket", "b", '["eq", "$bUcKeT", "b"]'),
        Condition("starts-with", "key", "foo", '["StArTs-WiTh", "$KeY", "foo"]'),
        Condition("content-length-range", None, "", '["content-length-range", "5", "10"]', 5,
                  10))
    assert policy.length_range() == (5, 10)


def policy_of(*conditions: Any) -> pp.PostPolicy:
    return pp.parse_policy(encode({"expiration": EXP, "conditions": list(conditions)}))


def failed(policy: pp.PostPolicy, form: list[tuple[str, str]], bucket: str = "b",
           version: int = 4) -> str | None:
    try:
        pp.check_conditions(policy, FormFields(form), bucket, version)
    except errors.AccessDenied as exc:
        return exc.msg
    return None


FAILED = "Invalid according to Policy: Policy Condition failed: "


def test_eq_and_starts_with() -> None:
    policy = policy_of(["eq", "$key", "a/b"], ["starts-with", "$x-amz-meta-foo", "bar"])
    assert failed(policy, [("KEY", "a/b"), ("X-Amz-Meta-Foo", "barclamp")]) is None
    assert failed(policy, [("key", "A/b"), ("x-amz-meta-foo", "bar")]) == (
        FAILED + '["eq", "$key", "a/b"]')
    assert failed(policy, [("key", "a/b"), ("x-amz-meta-foo", "Bar")]) == (
        FAILED + '["starts-with", "$x-amz-meta-foo", "bar"]')


def test_a_condition_on_an_absent_field_fails_even_with_an_empty_prefix() -> None:
    policy = policy_of(["starts-with", "$Content-Type", ""])
    assert failed(policy, []) == FAILED + '["starts-with", "$Content-Type", ""]'
    assert failed(policy, [("content-type", "")]) is None


def test_a_field_without_a_dollar_never_matches() -> None:
    assert failed(policy_of(["eq", "key", "k"]), [("key", "k")]) == FAILED + '["eq", "key", "k"]'


def test_bucket_is_the_url_bucket_never_the_field() -> None:
    policy = policy_of({"bucket": "b"})
    assert failed(policy, [("bucket", "b")], bucket="other") == FAILED + '["eq", "$bucket", "b"]'
    assert failed(policy, [("bucket", "other")], bucket="b") is None


def test_content_type_lists() -> None:
    policy = policy_of(["starts-with", "$Content-Type", "image/"])
    assert failed(policy, [("Content-Type", "image/jpg,image/png,image/gif")]) is None
    assert failed(policy, [("Content-Type", "image/jpg,text/plain")]) is not None
    key_policy = policy_of(["starts-with", "$key", "a"])
    assert failed(key_policy, [("key", "a,b")]) is None  # other fields are plain strings


def test_content_length_range_that_is_not_a_number_fails() -> None:
    policy = policy_of(["content-length-range", "test", "10"])
    assert failed(policy, []) == FAILED + '["content-length-range", "test", "10"]'
    assert policy.length_range() is None


def test_repeated_fields_are_joined_with_commas() -> None:
    policy = policy_of({"x-amz-meta-tag": "Ninja,Stallman"})
    assert failed(policy, [("x-amz-meta-tag", "Ninja"), ("x-amz-meta-tag", "Stallman")]) is None


def test_every_field_must_be_covered() -> None:
    policy = policy_of({"key": "k"})
    assert failed(policy, [("key", "k"), ("X-Amz-Meta-Foo", "x")]) == (
        "Invalid according to Policy: Extra input fields: X-Amz-Meta-Foo")
    exempt4 = [("key", "k"), ("Policy", "p"), ("X-Amz-Signature", "s"), ("x-ignore-me", "1")]
    assert failed(policy, exempt4) is None
    assert failed(policy, [*exempt4, ("signature", "s")]) == (
        "Invalid according to Policy: Extra input fields: signature")
    exempt2 = [("key", "k"), ("policy", "p"), ("Signature", "s"), ("AWSAccessKeyId", "a")]
    assert failed(policy, exempt2, version=2) is None
    assert failed(policy, [*exempt2, ("x-amz-signature", "s")], version=2) is not None


def test_length_range_takes_the_tightest() -> None:
    policy = policy_of(["content-length-range", 0, 100], ["content-length-range", 10, 1000])
    assert policy.length_range() == (10, 100)
    assert policy_of({"key": "k"}).length_range() is None


def test_expand_filename() -> None:
    form = FormFields([("key", "u/${filename}"), ("Content-Disposition", "a; ${filename}"),
                       ("policy", "${filename}"), ("x-amz-signature", "${filename}")])
    out = pp.expand_filename(form, "/home/me/a b.txt")
    assert out.items == (("key", "u/a b.txt"), ("Content-Disposition", "a; a b.txt"),
                         ("policy", "${filename}"), ("x-amz-signature", "${filename}"))
    assert pp.expand_filename(form, None) is form  # no filename parameter: kept as is
    assert pp.expand_filename(form, "").get("key") == "u/"


def test_policy_expiration_instant() -> None:
    now = datetime.now(UTC)
    policy = pp.parse_policy(encode({
        "expiration": (now - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "conditions": []}))
    with pytest.raises(errors.AccessDenied):
        pp.check_expiration(policy, now)
