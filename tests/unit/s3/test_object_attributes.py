"""GetObjectAttributes: the header parsing and the response document."""

from __future__ import annotations

import pytest
from lxml import etree

from bleepstore.core.attributes import requested_attributes
from bleepstore.errors import InvalidArgument
from bleepstore.s3 import xml_render as render


def test_requested_attributes() -> None:
    assert requested_attributes(" ETag,ObjectSize , ETag") == {"ETag", "ObjectSize"}


@pytest.mark.parametrize("raw", [None, "", " , "])
def test_missing_or_empty(raw: str | None) -> None:
    with pytest.raises(InvalidArgument) as exc:
        requested_attributes(raw)
    assert "either missing or empty" in exc.value.msg


@pytest.mark.parametrize("raw", ["etag", "ETag,Bogus"])
def test_invalid_name(raw: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        requested_attributes(raw)
    assert exc.value.msg == "Invalid attribute name specified."


def test_document_order() -> None:
    page = render.ObjectPartsPage(total=3, part_number_marker=1, next_part_number_marker=2,
                                  max_parts=1, is_truncated=True, parts=[(2, 10)])
    body = render.object_attributes(etag="abc-3", checksum=("CRC32", "AAAAAA==-3", "COMPOSITE"),
                                     parts=page, storage_class="STANDARD", size=30)
    root = etree.fromstring(body)
    assert etree.QName(root).localname == "GetObjectAttributesResponse"
    names = [etree.QName(el).localname for el in root]
    assert names == ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
    parts = [etree.QName(el).localname for el in root[2]]
    assert parts == ["PartsCount", "PartNumberMarker", "NextPartNumberMarker", "MaxParts",
                     "IsTruncated", "Part"]
    assert [etree.QName(el).localname for el in root[1]] == ["ChecksumCRC32", "ChecksumType"]
    assert root[0].text == "abc-3"


def test_empty_document() -> None:
    root = etree.fromstring(render.object_attributes(size=0))
    assert [etree.QName(el).localname for el in root] == ["ObjectSize"]
