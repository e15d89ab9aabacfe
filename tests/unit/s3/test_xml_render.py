"""bleepstore.s3.xml_render and xml_listings: element order against s3-api.md, and a real
boto3 client.

The boto3 client is real; only its HTTP exchange is stubbed (``before-send``), so the
botocore parser, the S3 customisations (encoding-type=url decoding) and the output shapes
all run on our bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from lxml import etree

from bleepstore.errors import InvalidArgument
from bleepstore.model import (
    ALL_USERS,
    Acl,
    Bucket,
    Grant,
    Grantee,
    ObjectMeta,
    Owner,
    Page,
    Part,
    Upload,
)
from bleepstore.s3 import xml_listings
from bleepstore.s3 import xml_render as R

S3NS = "http://s3.amazonaws.com/doc/2006-03-01/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
DECL = b'<?xml version="1.0" encoding="UTF-8"?>'
TS = "2026-02-22T12:00:00.123Z"
OWNER = Owner("a" * 64, "bleepstore")
OTHER = Owner("b" * 64, "other")
UPLOAD = Upload("0" * 32, "bkt", "dir/a b+c", OWNER.id, OWNER.display_name, TS,
                checksum_algorithm="CRC32")
PARTS = (Part(UPLOAD.upload_id, 1, 5242880, '"p1"', TS, "r1", checksum_value="AAAAAA=="),
         Part(UPLOAD.upload_id, 2, 1, '"p2"', TS, "r2"))


def root_of(body: bytes, *, ns: bool = True) -> Any:
    assert body.startswith(DECL + b"\n")
    root = etree.fromstring(body)
    assert etree.QName(root).namespace == (S3NS if ns else None)
    if ns:
        assert root.nsmap.get(None) == S3NS
    return root


def names(el: Any) -> list[str]:
    return [etree.QName(c).localname for c in el]


def sub(el: Any, name: str) -> Any:
    found = el.find(f"{{{S3NS}}}{name}")
    assert found is not None, name
    return found


def obj(key: str) -> ObjectMeta:
    return ObjectMeta("bkt", key, 3, '"abc"', TS, "ref", storage_class="GLACIER")


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def client_returning(body: bytes) -> Any:
    """A real boto3 S3 client whose HTTP exchange answers 200 with ``body``."""
    client = boto3.client(
        "s3", region_name="us-east-1", endpoint_url="http://localhost:1",
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 0}),
    )

    def send(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, 200, {"content-type": "application/xml"}, _Raw(body))

    client.meta.events.register("before-send.s3", send)
    return client


CONTENTS = ["Key", "LastModified", "ETag", "Size", "StorageClass"]
OWNER_ELS = ["ID", "DisplayName"]


# --- ListBuckets -------------------------------------------------------------------------

BUCKETS = [Bucket("alpha", "us-east-1", OWNER.id, OWNER.display_name, "{}", TS),
           Bucket("beta", "eu-west-1", OWNER.id, OWNER.display_name, "{}", TS)]


@pytest.mark.parametrize("buckets,token,prefix,top", [
    ([], None, None, ["Owner", "Buckets"]),
    (BUCKETS, "tok", "a", ["Owner", "Buckets", "ContinuationToken", "Prefix"]),
])
def test_list_buckets_order(buckets: list[Bucket], token: str | None, prefix: str | None,
                            top: list[str]) -> None:
    root = root_of(R.list_buckets(OWNER, buckets, continuation_token=token, prefix=prefix))
    assert names(root) == top
    assert names(sub(root, "Owner")) == OWNER_ELS
    assert [names(b) for b in sub(root, "Buckets")] == [
        ["Name", "CreationDate", "BucketRegion"]] * len(buckets)


def test_list_buckets_empty_sends_buckets_element() -> None:
    assert b"<Buckets/>" in R.list_buckets(OWNER, [])


def test_list_buckets_boto3() -> None:
    body = R.list_buckets(OWNER, BUCKETS, continuation_token="tok", prefix="a")
    out = client_returning(body).list_buckets()
    assert [b["Name"] for b in out["Buckets"]] == ["alpha", "beta"]
    assert out["Buckets"][1]["BucketRegion"] == "eu-west-1"
    assert out["Owner"] == {"ID": OWNER.id, "DisplayName": "bleepstore"}
    assert out["ContinuationToken"] == "tok" and out["Prefix"] == "a"
    assert out["Buckets"][0]["CreationDate"].microsecond == 123000


# --- small documents ---------------------------------------------------------------------


@pytest.mark.parametrize("region,expected", [
    ("us-east-1", b'<LocationConstraint xmlns="%s"/>' % S3NS.encode()),
    ("eu-west-1", b'<LocationConstraint xmlns="%s">eu-west-1</LocationConstraint>' % S3NS.encode()),
])
def test_location_constraint(region: str, expected: bytes) -> None:
    assert R.location_constraint(region) == DECL + b"\n" + expected


@pytest.mark.parametrize("body,root_name,children", [
    (R.versioning_configuration(None), "VersioningConfiguration", []),
    (R.tagging(()), "Tagging", ["TagSet"]),
    (R.copy_object_result('"e"', TS), "CopyObjectResult", ["LastModified", "ETag"]),
    (R.copy_part_result('"e"', TS), "CopyPartResult", ["LastModified", "ETag"]),
    (R.initiate_multipart_upload("b", "k", "u"), "InitiateMultipartUploadResult",
     ["Bucket", "Key", "UploadId"]),
    (R.complete_multipart_upload("http://h/b/k", "b", "k", '"e-2"'),
     "CompleteMultipartUploadResult", ["Location", "Bucket", "Key", "ETag"]),
])
def test_small_documents(body: bytes, root_name: str, children: list[str]) -> None:
    root = root_of(body)
    assert etree.QName(root).localname == root_name
    assert names(root) == children


def test_etag_rendered_quoted_as_stored() -> None:
    assert b'<ETag>"e"</ETag>' in R.copy_object_result('"e"', TS)


def test_complete_multipart_keep_alive_mode_has_no_declaration() -> None:
    body = R.complete_multipart_upload("http://h/b/k", "b", "k", '"e-2"', declaration=False)
    assert body.startswith(b"<CompleteMultipartUploadResult ")
    etree.fromstring(b"   " + body)  # still parses after keep-alive whitespace


def test_complete_multipart_boto3() -> None:
    body = R.complete_multipart_upload("http://localhost:1/b/k", "b", "k", '"abc-2"')
    out = client_returning(body).complete_multipart_upload(
        Bucket="b", Key="k", UploadId="u",
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]})
    assert (out["Location"], out["Bucket"], out["Key"], out["ETag"]) == (
        "http://localhost:1/b/k", "b", "k", '"abc-2"')


# --- ACL ---------------------------------------------------------------------------------

ACL = Acl(OWNER, (Grant(Grantee("CanonicalUser", id=OWNER.id, display_name="bleepstore"),
                        "FULL_CONTROL"),
                  Grant(Grantee("CanonicalUser", id=OTHER.id), "READ_ACP"),
                  Grant(Grantee("Group", uri=ALL_USERS), "READ")))


def test_access_control_policy_order_and_xsi() -> None:
    root = root_of(R.access_control_policy(ACL))
    assert names(root) == ["Owner", "AccessControlList"]
    assert names(sub(root, "Owner")) == OWNER_ELS
    grants = list(sub(root, "AccessControlList"))
    assert [names(g) for g in grants] == [["Grantee", "Permission"]] * 3
    grantees = [sub(g, "Grantee") for g in grants]
    assert [g.get(f"{{{XSI}}}type") for g in grantees] == [
        "CanonicalUser", "CanonicalUser", "Group"]
    assert [names(g) for g in grantees] == [["ID", "DisplayName"], ["ID"], ["URI"]]
    assert all(g.nsmap.get("xsi") == XSI for g in grantees)
    assert [sub(g, "Permission").text for g in grants] == ["FULL_CONTROL", "READ_ACP", "READ"]


def test_get_bucket_acl_boto3() -> None:
    out = client_returning(R.access_control_policy(ACL)).get_bucket_acl(Bucket="b")
    assert out["Owner"] == {"ID": OWNER.id, "DisplayName": "bleepstore"}
    assert out["Grants"] == [
        {"Grantee": {"ID": OWNER.id, "DisplayName": "bleepstore", "Type": "CanonicalUser"},
         "Permission": "FULL_CONTROL"},
        {"Grantee": {"ID": OTHER.id, "Type": "CanonicalUser"}, "Permission": "READ_ACP"},
        {"Grantee": {"URI": ALL_USERS, "Type": "Group"}, "Permission": "READ"},
    ]


# --- listings ------------------------------------------------------------------------------

PAGE = Page((obj("a b+c/é"), obj("plain")), ("dir x/",), True, "dir x/")
EMPTY = Page((), (), False, None)


def v2(page: Page, **kw: Any) -> bytes:
    args: dict[str, Any] = {"prefix": None, "delimiter": None, "max_keys": 1000,
                            "encoding_type": None, "start_after": None, "continuation_token": None,
                            "next_continuation_token": None, "fetch_owner": False,
                            "owner_of": lambda o: OTHER}
    args.update(kw)
    return xml_listings.list_objects_v2("bkt", page, **args)


def v1(page: Page, **kw: Any) -> bytes:
    args: dict[str, Any] = {"prefix": None, "delimiter": None, "max_keys": 1000,
                            "encoding_type": None, "marker": None, "owner_of": lambda o: OTHER}
    args.update(kw)
    return xml_listings.list_objects_v1("bkt", page, **args)


def test_list_objects_v2_full_order() -> None:
    root = root_of(v2(PAGE, prefix="", delimiter="/", max_keys=3, encoding_type="url",
                      start_after="s", continuation_token="ct", next_continuation_token="nt",
                      fetch_owner=True))
    assert names(root) == ["Name", "Prefix", "ContinuationToken", "NextContinuationToken",
                           "KeyCount", "MaxKeys", "Delimiter", "EncodingType", "StartAfter",
                           "IsTruncated", "Contents", "Contents", "CommonPrefixes"]
    assert names(sub(root, "Contents")) == CONTENTS + ["Owner"]
    assert names(sub(sub(root, "Contents"), "Owner")) == OWNER_ELS
    assert sub(root, "KeyCount").text == "3" and sub(root, "IsTruncated").text == "true"
    assert sub(sub(root, "Contents"), "StorageClass").text == "GLACIER"


def test_list_objects_v2_minimal() -> None:
    body = v2(EMPTY)
    root = root_of(body)
    assert names(root) == ["Name", "Prefix", "KeyCount", "MaxKeys", "IsTruncated"]
    assert sub(root, "Prefix").text is None and sub(root, "KeyCount").text == "0"
    assert sub(root, "IsTruncated").text == "false"


def test_list_objects_v2_encoding_applies_to_named_elements_only() -> None:
    root = root_of(v2(PAGE, prefix="a b", delimiter=" ", encoding_type="url", start_after="x+y",
                      continuation_token="c+t", next_continuation_token="n t"))
    assert sub(root, "Prefix").text == "a%20b"
    assert sub(root, "Delimiter").text == "%20"
    assert sub(root, "StartAfter").text == "x%2By"
    assert sub(root, "ContinuationToken").text == "c+t"        # tokens are never encoded
    assert sub(root, "NextContinuationToken").text == "n t"
    assert sub(sub(root, "Contents"), "Key").text == "a%20b%2Bc/%C3%A9"
    assert sub(sub(root, "CommonPrefixes"), "Prefix").text == "dir%20x/"
    plain = root_of(v2(PAGE, prefix="a b"))
    assert sub(plain, "Prefix").text == "a b"
    assert sub(sub(plain, "Contents"), "Key").text == "a b+c/é"


def test_list_objects_v2_control_chars() -> None:
    with pytest.raises(InvalidArgument):
        v2(EMPTY, prefix="a\x01")
    assert sub(root_of(v2(EMPTY, prefix="a\x01", encoding_type="url")), "Prefix").text == "a%01"


def test_list_objects_v2_boto3_decodes() -> None:
    body = v2(PAGE, prefix="a b", delimiter="/", max_keys=3, encoding_type="url",
              next_continuation_token="nt", fetch_owner=True)
    out = client_returning(body).list_objects_v2(Bucket="bkt", Prefix="a b", Delimiter="/")
    assert [c["Key"] for c in out["Contents"]] == ["a b+c/é", "plain"]
    assert out["CommonPrefixes"] == [{"Prefix": "dir x/"}]
    assert out["Prefix"] == "a b" and out["KeyCount"] == 3 and out["IsTruncated"] is True
    assert out["NextContinuationToken"] == "nt"
    assert out["Contents"][0]["ETag"] == '"abc"' and out["Contents"][0]["Size"] == 3
    assert out["Contents"][0]["Owner"] == {"ID": OTHER.id, "DisplayName": "other"}


@pytest.mark.parametrize("page,delimiter,expect_next", [
    (PAGE, "/", True), (PAGE, None, False), (EMPTY, "/", False),
])
def test_list_objects_v1_order(page: Page, delimiter: str | None, expect_next: bool) -> None:
    root = root_of(v1(page, delimiter=delimiter, encoding_type="url", max_keys=3))
    top = ["Name", "Prefix", "Marker"] + (["NextMarker"] if expect_next else [])
    top += ["MaxKeys"] + (["Delimiter"] if delimiter else []) + ["EncodingType", "IsTruncated"]
    top += ["Contents"] * len(page.contents) + ["CommonPrefixes"] * len(page.common_prefixes)
    assert names(root) == top
    for c in root.iterfind(f"{{{S3NS}}}Contents"):
        assert names(c) == CONTENTS + ["Owner"]  # Owner always in v1
    if expect_next:
        assert sub(root, "NextMarker").text == "dir%20x/"


def test_list_objects_v1_boto3() -> None:
    body = v1(PAGE, delimiter="/", encoding_type="url", marker="m k", max_keys=3)
    out = client_returning(body).list_objects(Bucket="bkt", Delimiter="/")
    assert out["Marker"] == "m k" and out["NextMarker"] == "dir x/"
    assert [c["Key"] for c in out["Contents"]] == ["a b+c/é", "plain"]


def mpu(**kw: Any) -> bytes:
    args: dict[str, Any] = {"key_marker": None, "upload_id_marker": None, "next_key_marker": None,
                                "next_upload_id_marker": None, "delimiter": None, "prefix": None,
                                "encoding_type": None, "max_uploads": 1000, "is_truncated": False}
    args.update(kw)
    return xml_listings.list_multipart_uploads("bkt", [UPLOAD], ["d x/"], **args)


def test_list_multipart_uploads_order() -> None:
    root = root_of(mpu(key_marker="k m", upload_id_marker="u", next_key_marker="n k",
                       next_upload_id_marker="nu", delimiter="/", prefix="p",
                       encoding_type="url", is_truncated=True))
    assert names(root) == ["Bucket", "KeyMarker", "UploadIdMarker", "NextKeyMarker",
                           "NextUploadIdMarker", "Delimiter", "Prefix", "EncodingType",
                           "MaxUploads", "IsTruncated", "Upload", "CommonPrefixes"]
    up = sub(root, "Upload")
    assert names(up) == ["Key", "UploadId", "Initiator", "Owner", "StorageClass", "Initiated",
                         "ChecksumAlgorithm", "ChecksumType"]
    assert sub(up, "ChecksumType").text == "COMPOSITE"  # CRC32's default
    assert names(sub(up, "Initiator")) == OWNER_ELS == names(sub(up, "Owner"))
    assert sub(root, "KeyMarker").text == "k%20m" and sub(root, "NextKeyMarker").text == "n%20k"
    assert sub(up, "Key").text == "dir/a%20b%2Bc"


def test_list_multipart_uploads_minimal() -> None:
    root = root_of(mpu(next_key_marker="ignored"))
    assert names(root)[:5] == ["Bucket", "KeyMarker", "UploadIdMarker", "MaxUploads",
                               "IsTruncated"]
    out = client_returning(mpu()).list_multipart_uploads(Bucket="bkt")
    assert out["Uploads"][0]["Key"] == "dir/a b+c"
    assert out["Uploads"][0]["Initiator"]["ID"] == OWNER.id


def test_list_parts_order() -> None:
    root = root_of(xml_listings.list_parts(UPLOAD, PARTS, part_number_marker=0, max_parts=2,
                                          is_truncated=True))
    assert names(root) == ["Bucket", "Key", "UploadId", "Initiator", "Owner", "StorageClass",
                           "ChecksumAlgorithm", "ChecksumType", "PartNumberMarker",
                           "NextPartNumberMarker", "MaxParts", "IsTruncated", "Part", "Part"]
    parts = list(root.iterfind(f"{{{S3NS}}}Part"))
    assert names(parts[0]) == ["PartNumber", "LastModified", "ETag", "Size", "ChecksumCRC32"]
    assert names(parts[1]) == ["PartNumber", "LastModified", "ETag", "Size"]
    assert sub(root, "NextPartNumberMarker").text == "2"


def test_list_parts_empty() -> None:
    plain = Upload("0" * 32, "bkt", "k", OWNER.id, OWNER.display_name, TS)
    root = root_of(xml_listings.list_parts(plain, [], part_number_marker=7, max_parts=1000,
                                          is_truncated=False))
    assert "ChecksumAlgorithm" not in names(root) and "Part" not in names(root)
    assert "ChecksumType" not in names(root)
    assert sub(root, "NextPartNumberMarker").text == "0"


def test_list_parts_boto3() -> None:
    body = xml_listings.list_parts(UPLOAD, PARTS, part_number_marker=0, max_parts=2,
                                   is_truncated=True)
    out = client_returning(body).list_parts(Bucket="bkt", Key=UPLOAD.key, UploadId="u")
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in out["Parts"]] == [
        (1, '"p1"', 5242880), (2, '"p2"', 1)]
    assert out["Parts"][0]["ChecksumCRC32"] == "AAAAAA=="
    assert out["ChecksumAlgorithm"] == "CRC32" and out["NextPartNumberMarker"] == 2
    assert out["ChecksumType"] == "COMPOSITE"
    assert out["Initiator"]["ID"] == OWNER.id and out["IsTruncated"] is True


# --- DeleteObjects -------------------------------------------------------------------------

ENTRIES = [R.DeletedEntry("a"), R.DeleteErrorEntry("b", "InvalidArgument", "bad", None),
           R.DeletedEntry("c", "null"), R.DeleteErrorEntry("d", "NoSuchVersion", "nv", "v1")]


@pytest.mark.parametrize("quiet,top", [
    (False, ["Deleted", "Error", "Deleted", "Error"]), (True, ["Error", "Error"]),
])
def test_delete_result_order(quiet: bool, top: list[str]) -> None:
    root = root_of(R.delete_result(ENTRIES, quiet))
    assert names(root) == top
    shapes = [names(e) for e in root]
    expected = {False: [["Key"], ["Key", "Code", "Message"], ["Key", "VersionId"],
                        ["Key", "VersionId", "Code", "Message"]],
                True: [["Key", "Code", "Message"], ["Key", "VersionId", "Code", "Message"]]}
    assert shapes == expected[quiet]


def test_delete_result_empty_quiet() -> None:
    assert names(root_of(R.delete_result([R.DeletedEntry("a")], True))) == []


def test_delete_objects_boto3() -> None:
    out = client_returning(R.delete_result(ENTRIES, False)).delete_objects(
        Bucket="b", Delete={"Objects": [{"Key": k} for k in "abcd"]})
    assert out["Deleted"] == [{"Key": "a"}, {"Key": "c", "VersionId": "null"}]
    assert out["Errors"] == [
        {"Key": "b", "Code": "InvalidArgument", "Message": "bad"},
        {"Key": "d", "VersionId": "v1", "Code": "NoSuchVersion", "Message": "nv"}]


# --- errors --------------------------------------------------------------------------------


def test_error_document_order_and_no_namespace() -> None:
    body = R.error_document("NoSuchKey", "The specified key does not exist.",
                            {"Key": "k", "BucketName": "b"}, "/b/k", "4442587FB7D0A2F9", "aGk=")
    root = root_of(body, ns=False)
    assert root.tag == "Error" and root.nsmap == {}
    assert names(root) == ["Code", "Message", "Key", "BucketName", "Resource", "RequestId",
                           "HostId"]
    assert [c.text for c in root] == ["NoSuchKey", "The specified key does not exist.", "k",
                                      "b", "/b/k", "4442587FB7D0A2F9", "aGk="]


def test_error_document_scrubs_unrepresentable_characters() -> None:
    body = R.error_document("InvalidArgument", "m", {"ArgumentValue": "a\x00b"}, "/b/\x01",
                            "R", "H", declaration=False)
    assert body.startswith(b"<Error>")
    root = etree.fromstring(body)
    assert root.findtext("ArgumentValue") == "a\ufffdb"
    assert root.findtext("Resource") == "/b/\ufffd"


def test_renderers_raise_s3_error_on_unrepresentable_text() -> None:
    with pytest.raises(InvalidArgument):
        R.list_buckets(OWNER, [], prefix="\x07")


# --- multipart checksums -------------------------------------------------------------------


def test_copy_part_result_with_checksum() -> None:
    body = R.copy_part_result('"e"', TS, "CRC32C", "yZRlqg==")
    assert names(root_of(body)) == ["LastModified", "ETag", "ChecksumCRC32C"]
    out = client_returning(body).upload_part_copy(
        Bucket="b", Key="k", UploadId="u", PartNumber=1, CopySource="b/src")
    assert out["CopyPartResult"]["ChecksumCRC32C"] == "yZRlqg=="
    assert names(root_of(R.copy_part_result('"e"', TS, "CRC32C", None))) == [
        "LastModified", "ETag"]


@pytest.mark.parametrize("value,kind", [("AAAAAA==-3", "COMPOSITE"),
                                        ("AAAAAA==", "FULL_OBJECT")])
def test_complete_multipart_with_checksum(value: str, kind: str) -> None:
    body = R.complete_multipart_upload("http://localhost:1/b/k", "b", "k", '"abc-3"',
                                       checksum_algorithm="CRC32", checksum_value=value)
    assert names(root_of(body)) == ["Location", "Bucket", "Key", "ETag", "ChecksumCRC32",
                                    "ChecksumType"]
    out = client_returning(body).complete_multipart_upload(
        Bucket="b", Key="k", UploadId="u",
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]})
    assert (out["ChecksumCRC32"], out["ChecksumType"]) == (value, kind)


def test_list_parts_full_object_type() -> None:
    full = Upload("0" * 32, "bkt", "k", OWNER.id, OWNER.display_name, TS,
                  checksum_algorithm="CRC32", checksum_type="FULL_OBJECT")
    root = root_of(xml_listings.list_parts(full, PARTS, part_number_marker=0, max_parts=2,
                                          is_truncated=False))
    assert sub(root, "ChecksumType").text == "FULL_OBJECT"
    nvme = Upload("0" * 32, "bkt", "k", OWNER.id, OWNER.display_name, TS,
                  checksum_algorithm="CRC64NVME")  # no stored type: the algorithm's default
    root = root_of(xml_listings.list_parts(nvme, [], part_number_marker=0, max_parts=2,
                                          is_truncated=False))
    assert sub(root, "ChecksumType").text == "FULL_OBJECT"
