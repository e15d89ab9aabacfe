"""Hardened XML request parsing and the small text helpers shared with the renderers.

Pure (no I/O). Invariants:
- every request body goes through ``parse_document``: one lxml parser configuration with
  entities unresolved, no network, no DTD loading, no huge trees; any DOCTYPE and any
  document nested deeper than ``MAX_DEPTH`` is rejected (s3-api.md §4.5);
- every failure surfaces as the S3 error class the caller names (default ``MalformedXML``),
  never as an lxml exception;
- elements are matched by local name, whatever their namespace; scalar values are trimmed,
  except object keys, which are taken verbatim (see ``parse_delete``).

Renderers live in ``bleepstore.s3.xml_render``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from lxml import etree

from bleepstore.errors import InvalidArgument, MalformedXML, NotImplemented_, S3Error

S3NS = "http://s3.amazonaws.com/doc/2006-03-01/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
MAX_DEPTH = 32
MAX_DELETE_OBJECTS = 1000
MAX_PARTS = 10000
CHECKSUM_ELEMENTS = {
    "ChecksumCRC32": "CRC32",
    "ChecksumCRC32C": "CRC32C",
    "ChecksumCRC64NVME": "CRC64NVME",
    "ChecksumSHA1": "SHA1",
    "ChecksumSHA256": "SHA256",
}

# Code points XML 1.0 cannot carry: C0 controls except TAB/LF/CR, surrogates, U+FFFE/FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_DIGITS = re.compile(r"[0-9]+")

Element = Any  # lxml has no type stubs here; elements are opaque to mypy.


def _parser() -> Any:
    # NOTE: a fresh parser per call: lxml parsers are not safe to share across threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_document(body: bytes, error_cls: type[S3Error] = MalformedXML) -> Element:
    """Parse ``body`` and return the root element, or raise ``error_cls``.

    Rejects empty bodies, syntax errors, any DOCTYPE (which is how billion-laughs and
    external-entity attacks arrive) and nesting deeper than ``MAX_DEPTH``.
    """
    if not body or not body.strip():
        raise error_cls()
    try:
        root = etree.fromstring(body, _parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise error_cls() from exc
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise error_cls()
    _check_depth(root, error_cls)
    return root


def _check_depth(root: Element, error_cls: type[S3Error]) -> None:
    depth = 0
    for event, _ in etree.iterwalk(root, events=("start", "end")):
        depth += 1 if event == "start" else -1
        if depth > MAX_DEPTH:
            raise error_cls()


def local_name(el: Element) -> str:
    """The local name of an element (``{ns}Key`` -> ``Key``); "" for non-elements."""
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2]


def children(el: Element, name: str) -> Iterator[Element]:
    """Direct child elements with local name ``name``, in document order."""
    return (c for c in el if local_name(c) == name)


def child(el: Element, name: str) -> Element | None:
    """The first direct child named ``name``, or None."""
    return next(children(el, name), None)


def raw_text(el: Element) -> str:
    """All text inside ``el`` (comments are stripped by the parser), not trimmed."""
    return "".join(el.itertext())


def text(el: Element) -> str:
    """Trimmed scalar text of ``el``."""
    return raw_text(el).strip()


def child_text(el: Element, name: str) -> str | None:
    """Trimmed text of the first child ``name``, or None when it is absent."""
    c = child(el, name)
    return None if c is None else text(c)


# --- helpers shared with the renderers -------------------------------------------------


def is_xml_safe(value: str) -> bool:
    """True when XML 1.0 can carry every code point of ``value``."""
    return _NOT_XML.search(value) is None


def xml_safe(value: str, name: str) -> str:
    """Return ``value`` unchanged, or raise ``InvalidArgument`` naming parameter ``name``.

    Callers validate user echo parameters (prefix, marker, delimiter, start-after ...) with
    this before doing work; renderers use it too, so an unsafe value becomes an S3 error,
    never an lxml ``ValueError``. With ``encoding-type=url`` listing values are percent-
    encoded first and are always safe.
    """
    if not is_xml_safe(value):
        raise InvalidArgument(
            f"{name} contains characters that cannot be represented in XML",
            ArgumentName=name,
        )
    return value


def scrub(value: str) -> str:
    """Replace code points XML cannot carry with U+FFFD (used by the error renderer)."""
    return _NOT_XML.sub("\ufffd", value)


def url_encode_listing(value: str) -> str:
    """Percent-encode for ``encoding-type=url`` (s3-api.md §9.4).

    Every UTF-8 byte outside ``A-Za-z0-9-_.~/`` becomes ``%XX`` (uppercase hex); space is
    ``%20`` and ``+`` is ``%2B``. Never raises: lone surrogates are encoded as their
    (invalid) UTF-8 bytes rather than crash a listing.
    """
    # quote() keeps exactly A-Za-z0-9 and "_.-~" unencoded, plus the safe "/".
    return quote(value.encode("utf-8", "surrogatepass"), safe="/")


# --- request bodies --------------------------------------------------------------------


def _root(body: bytes, name: str, error_cls: type[S3Error] = MalformedXML) -> Element:
    root = parse_document(body, error_cls)
    if local_name(root) != name:
        raise error_cls()
    return root


def parse_create_bucket_configuration(body: bytes) -> str | None:
    """``CreateBucketConfiguration/LocationConstraint`` text; None when absent or empty.

    An empty (or all-whitespace) body means "no configuration" and gives None.
    """
    if not body.strip():
        return None
    root = _root(body, "CreateBucketConfiguration")
    return child_text(root, "LocationConstraint") or None


def _parse_quiet(root: Element) -> bool:
    value = child_text(root, "Quiet")
    if value is None:
        return False
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0", ""):
        return False
    raise MalformedXML()


def parse_delete(body: bytes) -> tuple[bool, list[tuple[str, str | None]]]:
    """Parse a DeleteObjects body into ``(quiet, [(key, version_id)])`` (s3-api.md §8.5).

    Root must be ``Delete`` with 1..1000 ``Object`` elements, each with a ``Key``.
    Keys are returned raw; the caller validates each one.
    """
    # NOTE: keys are not trimmed (unlike other scalars, §4.5): " a " and "a" are different
    # S3 keys, and trimming would delete the wrong object.
    root = _root(body, "Delete")
    quiet = _parse_quiet(root)
    entries: list[tuple[str, str | None]] = []
    for obj in children(root, "Object"):
        if len(entries) == MAX_DELETE_OBJECTS:
            raise MalformedXML()
        key_el = child(obj, "Key")
        if key_el is None:
            raise MalformedXML()
        entries.append((raw_text(key_el), child_text(obj, "VersionId")))
    if not entries:
        raise MalformedXML()
    return quiet, entries


def parse_versioning(body: bytes) -> str:
    """PutBucketVersioning: -> "Enabled" or "Suspended". MFA delete is not supported: a
    document asking for it is refused (501), one saying Disabled is accepted."""
    root = _root(body, "VersioningConfiguration")
    status = child_text(root, "Status")
    if status not in ("Enabled", "Suspended"):
        raise MalformedXML()
    if child_text(root, "MfaDelete") not in (None, "Disabled"):
        raise NotImplemented_(ArgumentName="MfaDelete")
    return status


def _parse_part(part: Element) -> tuple[int, str, dict[str, str]]:
    number = child_text(part, "PartNumber")
    etag = child_text(part, "ETag")
    if number is None or etag is None or not _DIGITS.fullmatch(number):
        raise MalformedXML()
    try:
        part_number = int(number)
    except ValueError as exc:  # more digits than int() accepts
        raise MalformedXML() from exc
    checksums = {
        alg: text(c)
        for c in part
        if (alg := CHECKSUM_ELEMENTS.get(local_name(c))) is not None
    }
    return part_number, etag, checksums


def parse_complete_multipart(body: bytes) -> list[tuple[int, str, dict[str, str]]]:
    """Parse a CompleteMultipartUpload body (s3-api.md §14.4, validation step 2).

    Returns ``[(part_number, etag_as_given, {ALG: value})]`` in document order; ordering
    and existence checks are the caller's. No ``Part``, a missing or non-integer
    ``PartNumber``, a missing ``ETag`` or more than 10000 parts -> ``MalformedXML``.
    """
    root = _root(body, "CompleteMultipartUpload")
    parts: list[tuple[int, str, dict[str, str]]] = []
    for part in children(root, "Part"):
        if len(parts) == MAX_PARTS:
            raise MalformedXML()
        parts.append(_parse_part(part))
    if not parts:
        raise MalformedXML()
    return parts
