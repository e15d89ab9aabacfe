"""Object and bucket tags: parsing (the ``Tagging`` XML, the ``x-amz-tagging`` header) and
AWS's limits, with AWS's errors. Pure.

Invariants: a tag set keeps the order it was sent in; keys are unique; a key is 1-128 and a
value 0-256 Unicode characters of letters, numbers, spaces and ``+ - = . _ : / @``; object
tag sets hold at most 10 tags, bucket tag sets at most 50; ``aws:`` keys are the system's.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import parse_qsl

from bleepstore.errors import BadRequest, InvalidArgument, InvalidTag, MalformedXML
from bleepstore.s3.xml import Element, child, children, local_name, parse_document, raw_text

Tags = tuple[tuple[str, str], ...]
OBJECT_TAG_LIMIT = 10
BUCKET_TAG_LIMIT = 50
_EXTRA = frozenset("+-=._:/@")


def _allowed(text: str) -> bool:
    return all(ch in _EXTRA or unicodedata.category(ch)[0] in "LNZ" for ch in text)


def validate(tags: Tags, *, limit: int = OBJECT_TAG_LIMIT) -> Tags:
    if len(tags) > limit:
        if limit == OBJECT_TAG_LIMIT:
            raise BadRequest("Object tags cannot be greater than 10")
        raise InvalidTag(f"Bucket tag count cannot be greater than {limit}")
    seen: set[str] = set()
    for key, value in tags:
        if len(key) > 128:
            raise InvalidTag("The TagKey you have provided is too long, max 128")
        if len(value) > 256:
            raise InvalidTag("The TagValue you have provided is too long, max 256")
        if not key or not _allowed(key):
            raise InvalidTag("The TagKey you have provided is invalid")
        if not _allowed(value):
            raise InvalidTag("The TagValue you have provided is invalid")
        if key.lower().startswith("aws:"):
            raise InvalidTag("System tags cannot be added/updated by requester")
        if key in seen:
            raise InvalidTag("Cannot provide multiple Tags with the same key")
        seen.add(key)
    return tags


def _tag(el: Element) -> tuple[str, str]:
    key_el, value_el = child(el, "Key"), child(el, "Value")
    if key_el is None or value_el is None:
        raise MalformedXML()
    return raw_text(key_el), raw_text(value_el)


def parse_tagging(body: bytes, *, limit: int = OBJECT_TAG_LIMIT) -> Tags:
    """A ``Tagging`` document (``TagSet`` of ``Tag``: ``Key``, ``Value``)."""
    root = parse_document(body)
    if local_name(root) != "Tagging":
        raise MalformedXML()
    tag_set = child(root, "TagSet")
    if tag_set is None:
        raise MalformedXML()
    return validate(tuple(_tag(el) for el in children(tag_set, "Tag")), limit=limit)


def parse_header(value: str | None) -> Tags:
    """``x-amz-tagging``: URL query encoding (``k1=v1&k2=v2``); absent or empty: none."""
    if not value:
        return ()
    try:
        pairs = parse_qsl(value, keep_blank_values=True, strict_parsing=True,
                          max_num_fields=OBJECT_TAG_LIMIT + 1)
    except ValueError:
        raise InvalidTag("The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded "
                         "URL query parameters without tag name duplicates.") from None
    return validate(tuple(pairs))


def tagging_directive(value: str | None) -> str:
    """CopyObject's ``x-amz-tagging-directive``: COPY (default) or REPLACE."""
    directive = (value or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise InvalidArgument("Unknown tag directive.", ArgumentName="x-amz-tagging-directive",
                              ArgumentValue=value or "")
    return directive
