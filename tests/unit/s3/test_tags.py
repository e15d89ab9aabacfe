"""Tag sets: the Tagging XML, the x-amz-tagging header and AWS's limits and errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bleepstore import errors
from bleepstore.s3 import tags as t
from bleepstore.s3 import xml_render


def doc(*pairs: tuple[str, str]) -> bytes:
    tags = "".join(f"<Tag><Key>{k}</Key><Value>{v}</Value></Tag>" for k, v in pairs)
    return f'<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>{tags}</TagSet>' \
           f"</Tagging>".encode()


def test_a_document_keeps_order_and_unicode() -> None:
    assert t.parse_tagging(doc(("b", "2"), ("a", ""), ("é ü", "x:y/z@w+=-._"))) == (
        ("b", "2"), ("a", ""), ("é ü", "x:y/z@w+=-._"))


@pytest.mark.parametrize("pairs, error, message", [
    ([("k" * 129, "v")], errors.InvalidTag, "The TagKey you have provided is too long, max 128"),
    ([("k", "v" * 257)], errors.InvalidTag,
     "The TagValue you have provided is too long, max 256"),
    ([("", "v")], errors.InvalidTag, "The TagKey you have provided is invalid"),
    ([("a*b", "v")], errors.InvalidTag, "The TagKey you have provided is invalid"),
    ([("k", "v;")], errors.InvalidTag, "The TagValue you have provided is invalid"),
    ([("aws:x", "v")], errors.InvalidTag, "System tags cannot be added/updated by requester"),
    ([("k", "1"), ("k", "2")], errors.InvalidTag,
     "Cannot provide multiple Tags with the same key"),
    ([(f"k{i}", "v") for i in range(11)], errors.BadRequest,
     "Object tags cannot be greater than 10"),
])
def test_aws_limits(pairs: list[tuple[str, str]], error: type[errors.S3Error],
                    message: str) -> None:
    with pytest.raises(error) as exc:
        t.parse_tagging(doc(*pairs))
    assert exc.value.msg == message


def test_bucket_tag_sets_hold_fifty() -> None:
    fifty = tuple((f"k{i}", "v") for i in range(50))
    assert t.parse_tagging(doc(*fifty), limit=t.BUCKET_TAG_LIMIT) == fifty
    with pytest.raises(errors.InvalidTag):
        t.parse_tagging(doc(*fifty, ("one", "more")), limit=t.BUCKET_TAG_LIMIT)


@pytest.mark.parametrize("body", [b"", b"<Tagging/>", b"<Other><TagSet/></Other>",
                                  b"<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>",
                                  b"not xml"])
def test_malformed_documents(body: bytes) -> None:
    with pytest.raises(errors.MalformedXML):
        t.parse_tagging(body)


def test_the_header_is_a_url_query() -> None:
    assert t.parse_header(None) == () and t.parse_header("") == ()
    assert t.parse_header("a=1&b=&c%2Fd=%C3%A9+x") == (("a", "1"), ("b", ""), ("c/d", "é x"))
    with pytest.raises(errors.InvalidTag):
        t.parse_header("a=1&a=2")
    with pytest.raises(errors.BadRequest):
        t.parse_header("&".join(f"k{i}=v" for i in range(11)))


def test_the_tagging_directive() -> None:
    assert t.tagging_directive(None) == "COPY" and t.tagging_directive("replace") == "REPLACE"
    with pytest.raises(errors.InvalidArgument):
        t.tagging_directive("MERGE")


_chars = st.characters(whitelist_categories=("L", "N", "Zs"), max_codepoint=0x2FFF) \
    | st.sampled_from("+-=._:/@")


@given(st.dictionaries(st.text(_chars, min_size=1, max_size=20).filter(
    lambda k: not k.lower().startswith("aws:") and k.strip() == k),
    st.text(_chars, max_size=20).filter(lambda v: v.strip() == v), max_size=10))
def test_render_then_parse_round_trips(tags: dict[str, str]) -> None:
    pairs = tuple(tags.items())
    assert t.parse_tagging(xml_render.tagging(pairs)) == pairs
