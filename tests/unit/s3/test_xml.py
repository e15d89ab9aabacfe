"""bleepstore.s3.xml: hardened parsing, request-body parsers and text helpers.

Renderers are tested in test_xml_render.py.
"""

from __future__ import annotations

import string
import urllib.parse
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from bleepstore.errors import InvalidArgument, MalformedACLError, MalformedXML
from bleepstore.s3 import xml as X

S3NS = "http://s3.amazonaws.com/doc/2006-03-01/"


# --- hostile input -----------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<Delete><Object><Key>&lol4;</Key></Object></Delete>"""
XXE = (b'<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
       b"<Delete><Object><Key>&e;</Key></Object></Delete>")
HOSTILE = {
    "billion-laughs": BILLION_LAUGHS,
    "xxe": XXE,
    "external-dtd": b'<!DOCTYPE Delete SYSTEM "file:///etc/passwd"><Delete/>',
    "param-entity": b'<!DOCTYPE d [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x">%p;]><Delete/>',
    "plain-doctype": b"<!DOCTYPE Delete><Delete><Object><Key>k</Key></Object></Delete>",
    "deep-10000": b"<a>" * 10000 + b"</a>" * 10000,
    "deep-33": b"<Delete>" + b"<x>" * 32 + b"</x>" * 32 + b"</Delete>",
    "undefined-entity": b"<Delete><Object><Key>&nope;</Key></Object></Delete>",
    "bad-utf8": b"<Delete><Object><Key>\xff</Key></Object></Delete>",
    "char-ref-nul": b"<Delete><Object><Key>&#0;</Key></Object></Delete>",
    "unclosed": b"<Delete><Object>",
    "two-roots": b"<Delete/><Delete/>",
    "not-xml": b"hello",
    "empty": b"",
    "whitespace": b"  \n",
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_bodies_raise_the_s3_error(body: bytes) -> None:
    with pytest.raises(MalformedXML):
        X.parse_delete(body)
    with pytest.raises(MalformedACLError):
        X.parse_document(body, MalformedACLError)


def test_xxe_never_reads_the_file() -> None:
    with pytest.raises(MalformedXML) as info:
        X.parse_delete(XXE)
    assert "root:" not in str(info.value) and "root:" not in repr(info.value.__cause__)


def test_depth_limit_is_32() -> None:
    ok = b"<a>" * 32 + b"</a>" * 32
    assert X.local_name(X.parse_document(ok)) == "a"
    with pytest.raises(MalformedXML):
        X.parse_document(b"<a>" * 33 + b"</a>" * 33)


# --- request parsers -------------------------------------------------------------------


def delete_body(*objects: str, quiet: str | None = None, ns: bool = True) -> bytes:
    head = f'<Delete xmlns="{S3NS}">' if ns else "<Delete>"
    q = f"<Quiet>{quiet}</Quiet>" if quiet is not None else ""
    return (head + q + "".join(objects) + "</Delete>").encode()


DELETE_OK = [
    (delete_body("<Object><Key>a</Key></Object>"), (False, [("a", None)])),
    (delete_body("<Object><Key>a</Key></Object>", ns=False), (False, [("a", None)])),
    (delete_body("<Object><Key>a</Key><VersionId> null </VersionId></Object>", quiet=" true "),
     (True, [("a", "null")])),
    (delete_body("<Object><Key> sp ace </Key></Object>", quiet="FALSE"),
     (False, [(" sp ace ", None)])),
    (delete_body("<Object><Key>x<!-- c -->y</Key></Object>", quiet="1"), (True, [("xy", None)])),
    (delete_body("<Object><Key></Key></Object>", "<Object><Key>b&amp;c</Key><Junk/></Object>"),
     (False, [("", None), ("b&c", None)])),
    (b'<s:Delete xmlns:s="%s"><s:Object><s:Key>k</s:Key></s:Object></s:Delete>'
     % S3NS.encode(), (False, [("k", None)])),
    (delete_body(*["<Object><Key>k</Key></Object>"] * 1000), (False, [("k", None)] * 1000)),
]


@pytest.mark.parametrize("body,expected", DELETE_OK)
def test_parse_delete(body: bytes, expected: Any) -> None:
    assert X.parse_delete(body) == expected


DELETE_BAD = {
    "no-object": delete_body(),
    "1001-objects": delete_body(*["<Object><Key>k</Key></Object>"] * 1001),
    "object-without-key": delete_body("<Object><VersionId>v</VersionId></Object>"),
    "wrong-root": b"<Remove><Object><Key>k</Key></Object></Remove>",
    "bad-quiet": delete_body("<Object><Key>k</Key></Object>", quiet="yes"),
}


@pytest.mark.parametrize("body", DELETE_BAD.values(), ids=DELETE_BAD.keys())
def test_parse_delete_rejects(body: bytes) -> None:
    with pytest.raises(MalformedXML):
        X.parse_delete(body)


_xml_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffe\uffff")
    .filter(X.is_xml_safe), max_size=40,
)


@given(st.lists(st.tuples(_xml_text, st.none() | _xml_text.map(str.strip)),
                min_size=1, max_size=20), st.booleans())
def test_parse_delete_round_trips(entries: list[tuple[str, str | None]], quiet: bool) -> None:
    root = etree.Element(f"{{{S3NS}}}Delete", nsmap={None: S3NS})
    etree.SubElement(root, f"{{{S3NS}}}Quiet").text = "true" if quiet else "false"
    for key, vid in entries:
        o = etree.SubElement(root, f"{{{S3NS}}}Object")
        etree.SubElement(o, f"{{{S3NS}}}Key").text = key
        if vid is not None:
            etree.SubElement(o, f"{{{S3NS}}}VersionId").text = vid
    assert X.parse_delete(etree.tostring(root, encoding="UTF-8")) == (quiet, entries)


def cmu(*parts: str) -> bytes:
    body = "".join(parts)
    return f'<CompleteMultipartUpload xmlns="{S3NS}">{body}</CompleteMultipartUpload>'.encode()


CMU_OK = [
    (cmu('<Part><PartNumber>1</PartNumber><ETag>"e1"</ETag></Part>'), [(1, '"e1"', {})]),
    (cmu("<Part><ETag> e2 </ETag><PartNumber> 2 </PartNumber></Part>",
         "<Part><PartNumber>1</PartNumber><ETag>e1</ETag>"
         "<ChecksumCRC32>AAAAAA==</ChecksumCRC32><ChecksumSHA256>x</ChecksumSHA256>"
         "<ChecksumType>COMPOSITE</ChecksumType></Part>"),
     [(2, "e2", {}), (1, "e1", {"CRC32": "AAAAAA==", "SHA256": "x"})]),
    (cmu(*["<Part><PartNumber>5</PartNumber><ETag>e</ETag></Part>"] * 10000),
     [(5, "e", {})] * 10000),
]


@pytest.mark.parametrize("body,expected", CMU_OK)
def test_parse_complete_multipart(body: bytes, expected: Any) -> None:
    assert X.parse_complete_multipart(body) == expected


CMU_BAD = {
    "no-part": cmu(),
    "missing-number": cmu("<Part><ETag>e</ETag></Part>"),
    "missing-etag": cmu("<Part><PartNumber>1</PartNumber></Part>"),
    "non-integer": cmu("<Part><PartNumber>1.5</PartNumber><ETag>e</ETag></Part>"),
    "negative": cmu("<Part><PartNumber>-1</PartNumber><ETag>e</ETag></Part>"),
    "plus-sign": cmu("<Part><PartNumber>+1</PartNumber><ETag>e</ETag></Part>"),
    "huge-digits": cmu(f"<Part><PartNumber>{'9' * 5000}</PartNumber><ETag>e</ETag></Part>"),
    "10001-parts": cmu(*["<Part><PartNumber>1</PartNumber><ETag>e</ETag></Part>"] * 10001),
    "wrong-root": b"<Complete><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part></Complete>",
}


@pytest.mark.parametrize("body", CMU_BAD.values(), ids=CMU_BAD.keys())
def test_parse_complete_multipart_rejects(body: bytes) -> None:
    with pytest.raises(MalformedXML):
        X.parse_complete_multipart(body)


@pytest.mark.parametrize("body,expected", [
    (b"", None),
    (b"  ", None),
    (b"<CreateBucketConfiguration/>", None),
    (f'<CreateBucketConfiguration xmlns="{S3NS}"><LocationConstraint> eu-west-1 '
     f"</LocationConstraint></CreateBucketConfiguration>".encode(), "eu-west-1"),
    (b"<CreateBucketConfiguration><LocationConstraint/></CreateBucketConfiguration>", None),
])
def test_parse_create_bucket_configuration(body: bytes, expected: str | None) -> None:
    assert X.parse_create_bucket_configuration(body) == expected


@pytest.mark.parametrize("body", [b"<Other/>", b"<CreateBucketConfiguration>", BILLION_LAUGHS])
def test_parse_create_bucket_configuration_rejects(body: bytes) -> None:
    with pytest.raises(MalformedXML):
        X.parse_create_bucket_configuration(body)


# --- text helpers ----------------------------------------------------------------------


@pytest.mark.parametrize("value,encoded", [
    ("", ""),
    ("abcXYZ019-_.~/", "abcXYZ019-_.~/"),
    ("a b", "a%20b"),
    ("a+b", "a%2Bb"),
    ("é", "%C3%A9"),
    ("\x01\n", "%01%0A"),
    ("%", "%25"),
    ("日本/", "%E6%97%A5%E6%9C%AC/"),
    ("😀", "%F0%9F%98%80"),
])
def test_url_encode_listing(value: str, encoded: str) -> None:
    assert X.url_encode_listing(value) == encoded


@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_url_encode_listing_round_trips(value: str) -> None:
    encoded = X.url_encode_listing(value)
    assert set(encoded) <= set(string.ascii_letters + string.digits + "-_.~/%")
    assert urllib.parse.unquote(encoded) == value
    assert urllib.parse.unquote_plus(encoded) == value  # how botocore decodes


@pytest.mark.parametrize("value,ok", [
    ("plain", True), ("tab\tlf\ncr\r", True), ("é😀", True),
    ("\x00", False), ("\x1f", False), ("\ufffe", False), ("\ud800", False),
])
def test_xml_safe(value: str, ok: bool) -> None:
    if ok:
        assert X.xml_safe(value, "prefix") == value
    else:
        with pytest.raises(InvalidArgument) as info:
            X.xml_safe(value, "prefix")
        assert info.value.extra == {"ArgumentName": "prefix"}
