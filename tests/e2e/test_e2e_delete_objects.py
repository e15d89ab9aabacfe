"""DeleteObjects end to end (s3-api.md §8.5): quiet/verbose results in request order,
the 1000-key limit, integrity headers (Content-MD5 or a flexible checksum), per-key errors."""

from __future__ import annotations

import base64
import hashlib
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from xml.sax.saxutils import escape

import pytest
from lxml import etree
from support.server import Server
from support.signed import RawResponse, send

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def delete_body(keys: list[str], quiet: bool | None = None,
                versions: dict[str, str] | None = None) -> bytes:
    parts = ['<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">']
    if quiet is not None:
        parts.append(f"<Quiet>{str(quiet).lower()}</Quiet>")
    for key in keys:
        version = (versions or {}).get(key)
        vid = f"<VersionId>{escape(version)}</VersionId>" if version else ""
        parts.append(f"<Object><Key>{escape(key)}</Key>{vid}</Object>")
    parts.append("</Delete>")
    return "".join(parts).encode()


def post_delete(server: Server, bucket: str, body: bytes, *, md5: bool = False,
                crc32: bool = False, headers: dict[str, str] | None = None) -> RawResponse:
    hdrs = dict(headers or {})
    if md5:
        hdrs["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
    if crc32:
        hdrs["x-amz-checksum-crc32"] = base64.b64encode(
            zlib.crc32(body).to_bytes(4, "big")).decode()
    return send(server.endpoint, "POST", f"/{bucket}?delete", body=body, headers=hdrs)


def error_of(resp: RawResponse) -> tuple[int, str]:
    return resp.status, etree.fromstring(resp.body).findtext("Code") or ""


def put_keys(s3: Any, bucket: str, keys: list[str]) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"."), keys))


def remaining(s3: Any, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o["Key"] for p in pages for o in p.get("Contents", [])]


def test_verbose_reports_every_key_in_request_order(s3: Any, bucket: str) -> None:
    put_keys(s3, bucket, ["b", "a", " spaced ", "ü/x"])
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "b"}, {"Key": "missing"}, {"Key": " spaced "}, {"Key": "ü/x"},
        {"Key": "a", "VersionId": "null"}]})
    assert [d["Key"] for d in out["Deleted"]] == ["b", "missing", " spaced ", "ü/x", "a"]
    assert out["Deleted"][-1].get("VersionId") == "null"
    assert "VersionId" not in out["Deleted"][0]
    assert "Errors" not in out
    assert remaining(s3, bucket) == []


def test_quiet_mode_lists_only_errors(s3: Any, bucket: str) -> None:
    put_keys(s3, bucket, ["k1", "k2", "keep"])
    out = s3.delete_objects(Bucket=bucket, Delete={"Quiet": True, "Objects": [
        {"Key": "k1"}, {"Key": "k2", "VersionId": "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"},
        {"Key": "nope"}]})
    assert "Deleted" not in out
    assert out["Errors"] == [{"Key": "k2", "VersionId": "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
                              "Code": "NoSuchVersion",
                              "Message": "The specified version does not exist."}]
    assert remaining(s3, bucket) == ["k2", "keep"]


def test_raw_result_xml_shape(server: Server, s3: Any, bucket: str) -> None:
    put_keys(s3, bucket, ["x"])
    body = delete_body(["x", "y"], versions={"y": "v1"})
    resp = post_delete(server, bucket, body, md5=True)
    assert resp.status == 200 and resp.headers["content-type"] == "application/xml"
    root = etree.fromstring(resp.body)
    assert root.tag == NS + "DeleteResult"
    assert [el.tag.replace(NS, "") for el in root] == ["Deleted", "Error"]
    assert [el.tag.replace(NS, "") for el in root[1]] == ["Key", "VersionId", "Code",
                                                          "Message"]
    assert root[1].findtext(NS + "Key") == "y" and root[1].findtext(NS + "Code") == \
        "NoSuchVersion"


def test_thousand_keys_ok_and_1001_is_malformed(server: Server, s3: Any, bucket: str) -> None:
    keys = [f"many/{i:04d}" for i in range(1000)]
    put_keys(s3, bucket, keys[::10])  # 100 real keys; the other 900 do not exist
    too_many = delete_body(keys + ["one-more"])
    assert error_of(post_delete(server, bucket, too_many, md5=True)) == (400, "MalformedXML")
    assert len(remaining(s3, bucket)) == 100
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys],
                                                   "Quiet": False})
    assert len(out["Deleted"]) == 1000 and remaining(s3, bucket) == []


def test_boto3_sends_only_a_flexible_checksum(s3: Any, bucket: str) -> None:
    seen: dict[str, str] = {}

    def capture(request: Any, **_: Any) -> None:
        seen.update({k.lower(): v for k, v in request.headers.items()})
    s3.meta.events.register("before-send.s3.DeleteObjects", capture)
    put_keys(s3, bucket, ["c"])
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "c"}]})
    assert "content-md5" not in seen
    assert any(h.startswith("x-amz-checksum-") for h in seen)
    assert remaining(s3, bucket) == []


@pytest.mark.parametrize("mode", ["md5", "crc32"])
def test_integrity_headers_are_verified(server: Server, s3: Any, bucket: str,
                                        mode: str) -> None:
    put_keys(s3, bucket, ["v"])
    body = delete_body(["v"])
    tampered = body.replace(b"<Key>v</Key>", b"<Key>w</Key>")
    good = {"md5": True} if mode == "md5" else {"crc32": True}
    header = "Content-MD5" if mode == "md5" else "x-amz-checksum-crc32"
    digest = post_delete(server, bucket, body, **good).status  # type: ignore[arg-type]
    assert digest == 200 and remaining(s3, bucket) == []
    put_keys(s3, bucket, ["w"])
    stale = {header: _digest(mode, body)}  # digest of the original body
    assert error_of(send(server.endpoint, "POST", f"/{bucket}?delete", body=tampered,
                         headers=stale)) == (400, "BadDigest")
    assert remaining(s3, bucket) == ["w"]


def _digest(mode: str, body: bytes) -> str:
    if mode == "md5":
        return base64.b64encode(hashlib.md5(body).digest()).decode()
    return base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("headers", [{}, {"x-amz-checksum-foo": "zz"},
                                     {"x-amz-checksum-type": "FULL_OBJECT"}])
def test_neither_md5_nor_checksum_is_invalid_request(server: Server, s3: Any, bucket: str,
                                                     headers: dict[str, str]) -> None:
    put_keys(s3, bucket, ["stay"])
    resp = post_delete(server, bucket, delete_body(["stay"]), headers=headers)
    assert error_of(resp) == (400, "InvalidRequest")
    assert b"Missing required header for this request: Content-MD5" in resp.body
    assert remaining(s3, bucket) == ["stay"]


def test_sha256_checksum_alone_is_enough(server: Server, s3: Any, bucket: str) -> None:
    put_keys(s3, bucket, ["s"])
    body = delete_body(["s"])
    sha = base64.b64encode(hashlib.sha256(body).digest()).decode()
    resp = post_delete(server, bucket, body, headers={"x-amz-checksum-sha256": sha})
    assert resp.status == 200 and remaining(s3, bucket) == []


@pytest.mark.parametrize("body,code", [
    (b"", "MissingRequestBodyError"),
    (b"<Delete><Object><Key>a</Key></Object>", "MalformedXML"),
    (b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></Delete>', "MalformedXML"),
    (b"<Remove><Object><Key>a</Key></Object></Remove>", "MalformedXML"),
    (b"<Delete><Object><VersionId>null</VersionId></Object></Delete>", "MalformedXML"),
    (b"<Delete><Quiet>maybe</Quiet><Object><Key>a</Key></Object></Delete>", "MalformedXML"),
    (b'<!DOCTYPE d [<!ENTITY x "a">]><Delete><Object><Key>&x;</Key></Object></Delete>',
     "MalformedXML"),
])
def test_malformed_bodies(server: Server, s3: Any, bucket: str, body: bytes,
                          code: str) -> None:
    put_keys(s3, bucket, ["a"])
    assert error_of(post_delete(server, bucket, body, md5=True)) == (400, code)
    assert remaining(s3, bucket) == ["a"]


def test_per_key_invalid_key_is_an_error_entry(server: Server, s3: Any, bucket: str) -> None:
    put_keys(s3, bucket, ["ok"])
    body = delete_body(["ok", "k" * 1025])
    resp = post_delete(server, bucket, body, md5=True)
    assert resp.status == 200
    root = etree.fromstring(resp.body)
    assert root.findtext(f"{NS}Deleted/{NS}Key") == "ok"
    assert root.findtext(f"{NS}Error/{NS}Code") in ("InvalidArgument", "KeyTooLongError")
    assert remaining(s3, bucket) == []


def test_missing_bucket_and_anonymous(server: Server, s3: Any, bucket: str) -> None:
    body = delete_body(["a"])
    assert error_of(post_delete(server, "no-such-bucket-del", body, md5=True)) == (
        404, "NoSuchBucket")
    put_keys(s3, bucket, ["a"])
    md5 = {"Content-MD5": _digest("md5", body)}
    anon = send(server.endpoint, "POST", f"/{bucket}?delete", body=body, headers=md5,
                sign=False)
    assert error_of(anon) == (403, "AccessDenied")
    assert remaining(s3, bucket) == ["a"]
