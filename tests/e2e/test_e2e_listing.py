"""ListObjectsV2 and ListObjects (v1) end to end against a model of S3's rules (§9).

Model-based: a seeded random key set full of awkward characters, random prefix /
delimiter / max-keys / start-after, paged through boto3 (encoding-type=url, decoded by
botocore as clients do) and through signed raw requests (with and without encoding),
every page compared with ``support.listing_model``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import botocore.exceptions
import pytest
from lxml import etree
from support.listing_model import ModelPage, Scenario, model_page, random_keys, random_scenario
from support.server import Server
from support.signed import RawResponse, query_string, send

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
ENCODED = re.compile(r"(?:[A-Za-z0-9\-_.~/]|%[0-9A-F]{2})*")


def put_many(s3: Any, bucket: str, keys: Iterable[str]) -> None:
    def put(key: str) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, keys))


def list_raw(server: Server, bucket: str, params: dict[str, str]) -> RawResponse:
    query = query_string(params)
    return send(server.endpoint, "GET", f"/{bucket}?{query}" if query else f"/{bucket}")


def xml_of(resp: RawResponse) -> Any:
    assert resp.status == 200, resp.body
    assert resp.headers["content-type"] == "application/xml"
    return etree.fromstring(resp.body)


def texts(root: Any, path: str) -> list[str]:
    return [el.text or "" for el in root.iterfind(path)]


def one(root: Any, name: str) -> str | None:
    el = root.find(NS + name)
    return None if el is None else (el.text or "")


def error_code(exc: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


# ------------------------------------------------------------------ model-based paging


@dataclass
class Got:
    keys: list[str]
    prefixes: list[str]
    truncated: bool
    next_after: str | None  # what a client continues from (token or marker)
    key_count: int | None


def _boto_page(s3: Any, bucket: str, sc: Scenario, after: str | None, token: str | None) -> Got:
    args: dict[str, Any] = {"Bucket": bucket, "Prefix": sc.prefix, "MaxKeys": sc.max_keys}
    if sc.delimiter:
        args["Delimiter"] = sc.delimiter
    if sc.api == "v2-boto":
        if token:
            args["ContinuationToken"] = token
        elif after is not None:
            args["StartAfter"] = after
        r = s3.list_objects_v2(**args)
        nxt = r.get("NextContinuationToken")
    else:
        if after is not None:
            args["Marker"] = after
        r = s3.list_objects(**args)
        assert r.get("Marker", "") == (after or "")
        keys = [o["Key"] for o in r.get("Contents", [])]
        nxt = r.get("NextMarker") or (keys[-1] if r["IsTruncated"] and keys else None)
        assert ("NextMarker" in r) == bool(r["IsTruncated"] and sc.delimiter)
    return Got([o["Key"] for o in r.get("Contents", [])],
               [p["Prefix"] for p in r.get("CommonPrefixes", [])], r["IsTruncated"], nxt,
               r.get("KeyCount"))


def _raw_page(server: Server, bucket: str, sc: Scenario, after: str | None,
              token: str | None) -> Got:
    params = {"prefix": sc.prefix, "max-keys": str(sc.max_keys)}
    if sc.delimiter:
        params["delimiter"] = sc.delimiter
    if sc.encode:
        params["encoding-type"] = "url"
    if sc.api == "v2-raw":
        params["list-type"] = "2"
        if token:
            params["continuation-token"] = token
        elif after is not None:
            params["start-after"] = after
    elif after is not None:
        params["marker"] = after
    root = xml_of(list_raw(server, bucket, params))
    dec = unquote if sc.encode else (lambda v: v)
    keys = texts(root, f"{NS}Contents/{NS}Key")
    prefixes = texts(root, f"{NS}CommonPrefixes/{NS}Prefix")

    def echo(name: str) -> str | None:
        value = one(root, name)
        return None if value is None else dec(value)
    assert echo("Delimiter") == sc.delimiter
    if sc.api == "v2-raw":
        assert echo("StartAfter") == (None if token else after)
    else:
        assert echo("Marker") == (after or "")  # always present in v1
    if sc.encode:
        markers = [one(root, n) or "" for n in ("Prefix", "Delimiter", "StartAfter",
                                                "Marker", "NextMarker")]
        for value in keys + prefixes + markers:
            assert ENCODED.fullmatch(value), value
        assert one(root, "EncodingType") == "url"
    else:
        assert one(root, "EncodingType") is None
    assert dec(one(root, "Prefix") or "") == sc.prefix
    truncated = one(root, "IsTruncated") == "true"
    if sc.api == "v2-raw":
        nxt = one(root, "NextContinuationToken")
        count = int(one(root, "KeyCount") or -1)
    else:
        marker = one(root, "NextMarker")
        nxt = dec(marker) if marker is not None else (dec(keys[-1]) if truncated else None)
        count = None
    return Got([dec(k) for k in keys], [dec(p) for p in prefixes], truncated, nxt, count)


def check_scenario(s3: Any, server: Server, bucket: str, keys: list[str], sc: Scenario) -> int:
    after, token, pages = sc.start, None, 0
    while pages < 40:
        want: ModelPage = model_page(keys, prefix=sc.prefix, delimiter=sc.delimiter,
                                     max_keys=sc.max_keys, after=after)
        fetch = _boto_page if sc.api.endswith("boto") else _raw_page
        got = fetch(s3 if sc.api.endswith("boto") else server, bucket, sc, after, token)  # type: ignore[arg-type]
        where = f"{sc} page {pages} after={after!r}"
        assert got.keys == list(want.keys), where
        assert got.prefixes == list(want.prefixes), where
        assert got.truncated == want.is_truncated, where
        if got.key_count is not None:
            assert got.key_count == want.count, where
        pages += 1
        if not want.is_truncated:
            assert got.next_after is None, where
            return pages
        assert got.next_after is not None, where
        if sc.api.startswith("v2"):
            token = got.next_after
        else:
            assert got.next_after == want.last, where
        after = want.last
    return pages


def direct_only(server: Any) -> None:
    """Heavy tests whose proxy or gateway runs would add time but no coverage: a listing is
    answered from the metadata, so a gateway run only adds a thousand upstream writes."""
    if getattr(server, "via", None) == "nginx" or server.backend != "local":
        pytest.skip("covered by the direct run")


def test_listing_matches_model(s3: Any, server: Server, bucket: str) -> None:
    seed = 7 if getattr(server, "via", None) == "nginx" else 20260222  # one set per route
    rng = random.Random(seed)
    keys = random_keys(rng, 220)
    put_many(s3, bucket, keys)
    total_pages = 0
    for _ in range(24):
        total_pages += check_scenario(s3, server, bucket, keys, random_scenario(rng, keys))
    assert total_pages > 16  # paging really happened


# ------------------------------------------------------------------ literal matching

LITERAL_KEYS = ["a%b", "a%", "axb", "a_b", "aXb", "A_b", "a+b", "a b", "a%20b", "A%b",
                "é/1", "É/1", "e/1"]


@pytest.mark.parametrize("prefix,expected", [
    ("a%", ["a%", "a%20b", "a%b"]),
    ("a_", ["a_b"]),
    ("a+", ["a+b"]),
    ("a ", ["a b"]),
    ("A", ["A%b", "A_b"]),
    ("é", ["é/1"]),
    ("%", []),
])
def test_prefix_is_literal_and_case_sensitive(s3: Any, bucket: str, prefix: str,
                                              expected: list[str]) -> None:
    put_many(s3, bucket, LITERAL_KEYS)
    got = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    assert [o["Key"] for o in got.get("Contents", [])] == expected
    assert got["Prefix"] == prefix
    v1 = s3.list_objects(Bucket=bucket, Prefix=prefix)
    assert [o["Key"] for o in v1.get("Contents", [])] == expected


def test_markers_with_wildcard_characters_are_literal(s3: Any, bucket: str) -> None:
    put_many(s3, bucket, LITERAL_KEYS)
    ordered = sorted(LITERAL_KEYS)
    for marker in ["a%", "a_", "A%b", "a b"]:
        want = [k for k in ordered if k > marker]
        got = s3.list_objects_v2(Bucket=bucket, StartAfter=marker)
        assert [o["Key"] for o in got.get("Contents", [])] == want, marker
        assert got["StartAfter"] == marker
        v1 = s3.list_objects(Bucket=bucket, Marker=marker)
        assert [o["Key"] for o in v1.get("Contents", [])] == want, marker


def test_utf8_byte_order_not_utf16(s3: Any, bucket: str) -> None:
    # UTF-16 order would put U+1F600 (surrogates D83D..) before U+FF5E; UTF-8 puts it after.
    keys = ["\U0001F600", "\uff5e", "z", "é", "\u00ff", "\u0100", "\ufffd", "Z", "~"]
    put_many(s3, bucket, keys)
    got = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert got == sorted(keys, key=lambda k: k.encode("utf-8"))
    assert got[-2:] == ["\ufffd", "\U0001F600"]


# ------------------------------------------------------------------ XML shape and params


def test_v2_xml_elements_in_spec_order_and_url_encoded(server: Server, s3: Any,
                                                      bucket: str) -> None:
    put_many(s3, bucket, ["dir é/a+b c.txt", "dir é/sub/x", "dir é/z%", "other"])
    root = xml_of(list_raw(server, bucket, {
        "list-type": "2", "prefix": "dir é/", "delimiter": "/", "max-keys": "2",
        "encoding-type": "url", "start-after": "dir é/a"}))
    names = [el.tag.replace(NS, "") for el in root]
    assert names == ["Name", "Prefix", "NextContinuationToken", "KeyCount", "MaxKeys",
                     "Delimiter", "EncodingType", "StartAfter", "IsTruncated", "Contents",
                     "CommonPrefixes"]
    assert one(root, "Prefix") == "dir%20%C3%A9/"
    assert one(root, "StartAfter") == "dir%20%C3%A9/a"
    assert one(root, "Delimiter") == "/"
    assert one(root, "KeyCount") == "2" and one(root, "MaxKeys") == "2"
    assert texts(root, f"{NS}Contents/{NS}Key") == ["dir%20%C3%A9/a%2Bb%20c.txt"]
    assert texts(root, f"{NS}CommonPrefixes/{NS}Prefix") == ["dir%20%C3%A9/sub/"]
    contents = root.find(NS + "Contents")
    assert [el.tag.replace(NS, "") for el in contents] == [
        "Key", "LastModified", "ETag", "Size", "StorageClass"]
    assert contents.find(NS + "ETag").text == '"' + __import__("hashlib").md5(
        b"dir \xc3\xa9/a+b c.txt").hexdigest() + '"'
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                        contents.find(NS + "LastModified").text)
    token = one(root, "NextContinuationToken")
    page2 = xml_of(list_raw(server, bucket, {
        "list-type": "2", "prefix": "dir é/", "delimiter": "/", "encoding-type": "url",
        "continuation-token": token or ""}))
    assert one(page2, "ContinuationToken") == token  # tokens are echoed, never encoded
    assert texts(page2, f"{NS}Contents/{NS}Key") == ["dir%20%C3%A9/z%25"]
    assert one(page2, "IsTruncated") == "false" and one(page2, "NextContinuationToken") is None


def test_v1_xml_markers_encoded_and_owner_always_present(server: Server, s3: Any,
                                                        bucket: str) -> None:
    put_many(s3, bucket, ["p q/1", "p q/2", "r+s/1", "t"])
    root = xml_of(list_raw(server, bucket, {
        "delimiter": "/", "max-keys": "1", "marker": "p q/1", "encoding-type": "url"}))
    assert [el.tag.replace(NS, "") for el in root] == [
        "Name", "Prefix", "Marker", "NextMarker", "MaxKeys", "Delimiter", "EncodingType",
        "IsTruncated", "CommonPrefixes"]
    assert one(root, "Marker") == "p%20q/1"
    assert one(root, "NextMarker") == "r%2Bs/"
    assert texts(root, f"{NS}CommonPrefixes/{NS}Prefix") == ["r%2Bs/"]
    plain = xml_of(list_raw(server, bucket, {}))
    assert one(plain, "Marker") == "" and one(plain, "Prefix") == ""
    assert one(plain, "NextMarker") is None and one(plain, "KeyCount") is None
    owners = texts(plain, f"{NS}Contents/{NS}Owner/{NS}ID")
    assert len(owners) == 4 and all(re.fullmatch("[0-9a-f]{64}", o) for o in owners)


def test_echoes_as_sent_or_url_encoded(server: Server, s3: Any, bucket: str) -> None:
    """The Prefix (and marker, delimiter, start-after) echo is the value as sent; with
    encoding-type=url it is percent-encoded, so a value XML cannot carry is encoded, not
    refused (docs/decisions.md). Without encoding-type such a value stays InvalidArgument."""
    s3.put_object(Bucket=bucket, Key="a b/1", Body=b"x")
    plain = xml_of(list_raw(server, bucket, {"prefix": "a b/"}))
    assert one(plain, "Prefix") == "a b/" and texts(plain, f"{NS}Contents/{NS}Key") == ["a b/1"]
    encoded = xml_of(list_raw(server, bucket, {"prefix": "a b/", "encoding-type": "url"}))
    assert one(encoded, "Prefix") == "a%20b/"
    odd = {"prefix": "\x01p", "marker": "\x02m", "delimiter": "\x03", "encoding-type": "url"}
    v1 = xml_of(list_raw(server, bucket, odd))
    assert [one(v1, n) for n in ("Prefix", "Marker", "Delimiter", "EncodingType")] == [
        "%01p", "%02m", "%03", "url"]
    assert one(v1, "IsTruncated") == "false" and one(v1, "Contents") is None
    v2 = xml_of(list_raw(server, bucket, {"list-type": "2", "prefix": "\x01", "start-after":
                                          "\x04", "encoding-type": "url"}))
    assert (one(v2, "Prefix"), one(v2, "StartAfter"), one(v2, "KeyCount")) == ("%01", "%04", "0")
    for params in ({"prefix": "\x01"}, {"list-type": "2", "start-after": "\x04"}):
        resp = list_raw(server, bucket, params)
        assert resp.status == 400 and etree.fromstring(resp.body).findtext("Code") == (
            "InvalidArgument"), params


def test_fetch_owner(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    me = s3.list_buckets()["Owner"]
    plain = s3.list_objects_v2(Bucket=bucket)["Contents"][0]
    assert "Owner" not in plain
    owned = s3.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"][0]
    assert owned["Owner"]["ID"] == me["ID"]
    assert owned["Owner"]["DisplayName"] == me["DisplayName"]
    assert owned["Size"] == 1 and owned["StorageClass"] == "STANDARD"


def test_max_keys_default_cap_and_zero(s3: Any, server: Server, bucket: str) -> None:
    direct_only(server)
    keys = [f"k{i:04d}" for i in range(1003)]
    put_many(s3, bucket, keys)
    default = s3.list_objects_v2(Bucket=bucket)
    assert default["KeyCount"] == 1000 and default["MaxKeys"] == 1000
    assert default["IsTruncated"] is True
    assert default["Contents"][-1]["Key"] == "k0999"
    capped = s3.list_objects_v2(Bucket=bucket, MaxKeys=5000)
    assert capped["KeyCount"] == 1000 and capped["MaxKeys"] == 1000
    rest = s3.list_objects_v2(Bucket=bucket, ContinuationToken=capped["NextContinuationToken"])
    assert [o["Key"] for o in rest["Contents"]] == ["k1000", "k1001", "k1002"]
    assert rest["IsTruncated"] is False
    v1 = s3.list_objects(Bucket=bucket, MaxKeys=1001)
    assert len(v1["Contents"]) == 1000 and v1["IsTruncated"] is True and v1["MaxKeys"] == 1000
    zero = s3.list_objects_v2(Bucket=bucket, MaxKeys=0)
    assert zero["KeyCount"] == 0 and zero["IsTruncated"] is False and "Contents" not in zero
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                         PaginationConfig={"PageSize": 400})
    assert [o["Key"] for p in pages for o in p["Contents"]] == keys


@pytest.mark.parametrize("params,argument", [
    ({"list-type": "2", "max-keys": "-1"}, "max-keys"),
    ({"list-type": "2", "max-keys": "ten"}, "max-keys"),
    ({"max-keys": "1.5"}, "max-keys"),
    ({"list-type": "2", "continuation-token": "!!not-a-token"}, "continuation-token"),
    # [S3] an empty token is not an absent one: the same 400 (docs/decisions.md)
    ({"list-type": "2", "continuation-token": ""}, "continuation-token"),
    ({"list-type": "2", "continuation-token": "", "start-after": "a"}, "continuation-token"),
    ({"list-type": "2", "encoding-type": "base64"}, "encoding-type"),
    ({"encoding-type": "URL2"}, "encoding-type"),
    ({"list-type": "3"}, None),
])
def test_bad_listing_parameters_are_invalid_argument(server: Server, bucket: str,
                                                     params: dict[str, str],
                                                     argument: str | None) -> None:
    resp = list_raw(server, bucket, params)
    assert resp.status == 400, resp.body
    root = etree.fromstring(resp.body)
    assert root.findtext("Code") == "InvalidArgument"
    if argument:
        assert root.findtext("ArgumentName") == argument


def test_listing_missing_bucket_and_empty_bucket(s3: Any, bucket: str) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.list_objects_v2(Bucket="no-such-bucket-here")
    assert error_code(exc) == "NoSuchBucket"
    empty = s3.list_objects_v2(Bucket=bucket, Prefix="x", Delimiter="/")
    assert empty["KeyCount"] == 0 and "Contents" not in empty
    assert "CommonPrefixes" not in empty and empty["IsTruncated"] is False
    assert empty["Name"] == bucket


def test_common_prefix_hiding_many_keys_counts_once(s3: Any, bucket: str) -> None:
    keys = [f"big/{i:03d}" for i in range(120)] + ["a", "c/1", "c/2", "z"]
    put_many(s3, bucket, keys)
    first = s3.list_objects_v2(Bucket=bucket, Delimiter="/", MaxKeys=2)
    assert [o["Key"] for o in first["Contents"]] == ["a"]
    assert [p["Prefix"] for p in first["CommonPrefixes"]] == ["big/"]
    second = s3.list_objects_v2(Bucket=bucket, Delimiter="/", MaxKeys=2,
                                ContinuationToken=first["NextContinuationToken"])
    assert [p["Prefix"] for p in second["CommonPrefixes"]] == ["c/"]
    assert [o["Key"] for o in second["Contents"]] == ["z"]
    assert second["IsTruncated"] is False
    v1 = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=1, Marker="big/")
    assert [p["Prefix"] for p in v1["CommonPrefixes"]] == ["c/"] and "Contents" not in v1
    assert v1["NextMarker"] == "c/" and v1["IsTruncated"] is True
    v1_rest = s3.list_objects(Bucket=bucket, Delimiter="/", Marker=v1["NextMarker"])
    assert [o["Key"] for o in v1_rest["Contents"]] == ["z"] and v1_rest["IsTruncated"] is False


def test_continuation_token_wins_over_start_after(s3: Any, bucket: str) -> None:
    put_many(s3, bucket, ["a", "b", "c", "d"])
    first = s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
    assert [o["Key"] for o in first["Contents"]] == ["a"]
    both = s3.list_objects_v2(Bucket=bucket, StartAfter="c",
                              ContinuationToken=first["NextContinuationToken"])
    assert [o["Key"] for o in both["Contents"]] == ["b", "c", "d"]
    assert both["StartAfter"] == "c"  # still echoed
    assert both["ContinuationToken"] == first["NextContinuationToken"]


def test_whitespace_and_markup_in_keys_survive_xml(server: Server, s3: Any,
                                                   bucket: str) -> None:
    keys = ["cr\rx", "crlf\r\ny", "nl\nz", "tab\tw", "amp&<>\"'", " lead", "trail "]
    put_many(s3, bucket, keys)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == sorted(keys)
    raw = texts(xml_of(list_raw(server, bucket, {"list-type": "2"})), f"{NS}Contents/{NS}Key")
    assert raw == sorted(keys)  # CR is escaped, so XML parsers do not fold it away
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    assert [d["Key"] for d in out["Deleted"]] == keys
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
