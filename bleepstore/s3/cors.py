"""Bucket CORS: the ``CORSConfiguration`` document and how a browser request is matched
against it (AWS's rules, docs/decisions.md "CORS and POST Object"). Pure.

Invariants:
- a configuration is validated whole before anything is stored, with AWS's errors: 1..100
  ``CORSRule``, each with at least one ``AllowedOrigin`` and ``AllowedMethod``; methods are
  GET, PUT, POST, DELETE, HEAD (case-sensitive); at most one ``*`` in an ``AllowedOrigin`` or
  ``AllowedHeader``, none in an ``ExposeHeader``;
- rules keep their order and their values as sent (GetBucketCors gives them back so); the
  stored form is JSON (``to_json`` / ``from_json``), rendered as XML only on the way out;
- the first rule that matches decides; ``*`` matches any run of characters (the empty one
  too) and a pattern is anchored at both ends; origins are compared case-sensitively,
  header names case-insensitively.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lxml import etree

from bleepstore.errors import InvalidArgument, InvalidRequest, MalformedXML
from bleepstore.s3.xml import S3NS, Element, children, local_name, parse_document, raw_text

MAX_RULES = 100
MAX_ID_LENGTH = 255
MAX_DOCUMENT_BYTES = 64 * 1024  # "The document is limited to 64 KB in size."
METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
PREFLIGHT_VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
_RULE_CHILDREN = frozenset({"ID", "AllowedOrigin", "AllowedMethod", "AllowedHeader",
                            "ExposeHeader", "MaxAgeSeconds"})
_MAX_AGE = re.compile(r"[0-9]{1,10}")


@dataclass(frozen=True)
class CorsRule:
    allowed_origins: tuple[str, ...]
    allowed_methods: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_seconds: int | None = None
    id: str | None = None


Rules = tuple[CorsRule, ...]


# --- the document ------------------------------------------------------------------------

def parse_configuration(body: bytes) -> Rules:
    """A PutBucketCors body -> the validated rules, or AWS's 400."""
    root = parse_document(body)
    if local_name(root) != "CORSConfiguration":
        raise MalformedXML()
    rules = tuple(_rule(el) for el in children(root, "CORSRule"))
    # NOTE: [BS] AWS documents "up to 100 rules" without its error; a schema violation is
    # what a client gets for the other structural limits, so it is MalformedXML here too.
    if not rules or len(rules) > MAX_RULES:
        raise MalformedXML()
    for rule in rules:
        validate_rule(rule)
    return rules


def _rule(el: Element) -> CorsRule:
    values: dict[str, list[str]] = {name: [] for name in _RULE_CHILDREN}
    for item in el:
        name = local_name(item)
        if not name:
            continue
        if name not in _RULE_CHILDREN:
            raise MalformedXML()
        values[name].append(raw_text(item).strip())
    if not values["AllowedOrigin"] or not values["AllowedMethod"]:
        raise MalformedXML()
    if len(values["ID"]) > 1 or len(values["MaxAgeSeconds"]) > 1:
        raise MalformedXML()
    max_age = None
    if values["MaxAgeSeconds"]:
        text = values["MaxAgeSeconds"][0]
        if not _MAX_AGE.fullmatch(text) or int(text) > 2**31 - 1:
            raise MalformedXML()
        max_age = int(text)
    return CorsRule(tuple(values["AllowedOrigin"]), tuple(values["AllowedMethod"]),
                    tuple(values["AllowedHeader"]), tuple(values["ExposeHeader"]), max_age,
                    values["ID"][0] if values["ID"] else None)


def validate_rule(rule: CorsRule) -> None:
    """AWS's semantic checks of one rule, in AWS's order of elements."""
    for method in rule.allowed_methods:
        if method not in METHODS:
            raise InvalidRequest("Found unsupported HTTP method in CORS config. "
                                 f"Unsupported method is {method}")
    for origin in rule.allowed_origins:
        if origin.count("*") > 1:
            raise InvalidRequest(f'AllowedOrigin "{origin}" can not have more than one '
                                 "wildcard.")
    for header in rule.allowed_headers:
        if header.count("*") > 1:
            raise InvalidRequest(f'AllowedHeader "{header}" can not have more than one '
                                 "wildcard.")
    for header in rule.expose_headers:
        if "*" in header:
            raise InvalidRequest(f'ExposeHeader "{header}" contains wildcard. We currently '
                                 "do not support wildcard for ExposeHeader.")
    if rule.id is not None and len(rule.id) > MAX_ID_LENGTH:
        raise InvalidArgument("ID length should not exceed allowed limit of 255",
                              ArgumentName="ID", ArgumentValue=rule.id)


def to_json(rules: Rules) -> str:
    """The stored form: a list of objects with only the members that were set."""
    out: list[dict[str, Any]] = []
    for r in rules:
        item: dict[str, Any] = {"AllowedOrigins": list(r.allowed_origins),
                                "AllowedMethods": list(r.allowed_methods)}
        if r.allowed_headers:
            item["AllowedHeaders"] = list(r.allowed_headers)
        if r.expose_headers:
            item["ExposeHeaders"] = list(r.expose_headers)
        if r.max_age_seconds is not None:
            item["MaxAgeSeconds"] = r.max_age_seconds
        if r.id is not None:
            item["ID"] = r.id
        out.append(item)
    return json.dumps(out, separators=(",", ":"))


@lru_cache(maxsize=64)
def from_json(document: str) -> Rules:
    """Rules from the stored form (cached: every browser request of a bucket reads them)."""
    return tuple(CorsRule(tuple(i["AllowedOrigins"]), tuple(i["AllowedMethods"]),
                          tuple(i.get("AllowedHeaders", ())), tuple(i.get("ExposeHeaders", ())),
                          i.get("MaxAgeSeconds"), i.get("ID"))
                 for i in json.loads(document))


def render(rules: Rules) -> bytes:
    """GetBucketCors: ``CORSConfiguration`` with each rule's members in botocore's model
    order (ID, AllowedHeader, AllowedMethod, AllowedOrigin, ExposeHeader, MaxAgeSeconds)."""
    ns = "{" + S3NS + "}"
    root = etree.Element(ns + "CORSConfiguration", nsmap={None: S3NS})
    for r in rules:
        el = etree.SubElement(root, ns + "CORSRule")
        members: list[tuple[str, Sequence[str]]] = [
            ("ID", (r.id,) if r.id is not None else ()), ("AllowedHeader", r.allowed_headers),
            ("AllowedMethod", r.allowed_methods), ("AllowedOrigin", r.allowed_origins),
            ("ExposeHeader", r.expose_headers)]
        for name, values in members:
            for value in values:
                etree.SubElement(el, ns + name).text = value
        if r.max_age_seconds is not None:
            etree.SubElement(el, ns + "MaxAgeSeconds").text = str(r.max_age_seconds)
    body: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


# --- matching ----------------------------------------------------------------------------

def wildcard_match(pattern: str, value: str, *, fold: bool = False) -> bool:
    """``*`` (at most one, validated at PUT) stands for any run of characters."""
    if fold:
        pattern, value = pattern.lower(), value.lower()
    head, star, tail = pattern.partition("*")
    if not star:
        return pattern == value
    return (len(value) >= len(head) + len(tail) and value.startswith(head)
            and value.endswith(tail))


def requested_headers(value: str | None) -> tuple[str, ...]:
    """``Access-Control-Request-Headers`` -> lowercase names, in the order sent."""
    if not value:
        return ()
    return tuple(n.strip().lower() for n in value.split(",") if n.strip())


@dataclass(frozen=True)
class Match:
    rule: CorsRule
    any_origin: bool  # the origin matched a bare ``*``: answer ``*``, without credentials


def match(rules: Rules, origin: str, method: str,
          headers: Sequence[str] = ()) -> Match | None:
    """The first rule allowing ``origin``, ``method`` and every requested header."""
    for rule in rules:
        pattern = next((p for p in rule.allowed_origins if wildcard_match(p, origin)), None)
        if pattern is None or method not in rule.allowed_methods:
            continue
        if all(any(wildcard_match(a, h, fold=True) for a in rule.allowed_headers)
               for h in headers):
            return Match(rule, pattern == "*")
    return None


def response_headers(found: Match, origin: str, *, preflight: bool,
                     headers: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The ``Access-Control-*`` headers (and ``Vary``) S3 answers for a matched rule: to a
    preflight with the requested headers, to an actual request without them."""
    rule = found.rule
    out = [("Access-Control-Allow-Origin", "*" if found.any_origin else origin),
           ("Access-Control-Allow-Methods", ", ".join(rule.allowed_methods))]
    if preflight and headers:
        out.append(("Access-Control-Allow-Headers", ", ".join(headers)))
    if rule.expose_headers:
        out.append(("Access-Control-Expose-Headers", ", ".join(rule.expose_headers)))
    if rule.max_age_seconds is not None:
        out.append(("Access-Control-Max-Age", str(rule.max_age_seconds)))
    if not found.any_origin:
        out.append(("Access-Control-Allow-Credentials", "true"))
    out.append(("Vary", PREFLIGHT_VARY))
    return out
