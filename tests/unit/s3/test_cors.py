"""Bucket CORS rules (s3/cors.py), pure: the CORSConfiguration document with AWS's errors,
the first-match evaluation of a browser request, and the headers S3 answers with."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from bleepstore import errors
from bleepstore.s3 import cors
from bleepstore.s3.cors import CorsRule, Match

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def doc(*rules: str, ns: str = NS) -> bytes:
    return f"<CORSConfiguration {ns}>{''.join(rules)}</CORSConfiguration>".encode()


def rule(origins: tuple[str, ...] = ("*",), methods: tuple[str, ...] = ("GET",),
         extra: str = "") -> str:
    body = "".join(f"<AllowedOrigin>{o}</AllowedOrigin>" for o in origins)
    body += "".join(f"<AllowedMethod>{m}</AllowedMethod>" for m in methods)
    return f"<CORSRule>{body}{extra}</CORSRule>"


# --- the document ------------------------------------------------------------------------

def test_parse_keeps_order_values_and_only_what_was_set() -> None:
    body = doc(
        rule(("http://www.example.com", "http://*.example.com"), ("PUT", "POST", "DELETE"),
             "<AllowedHeader>*</AllowedHeader><ExposeHeader>x-amz-server-side-encryption"
             "</ExposeHeader><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>3000"
             "</MaxAgeSeconds><ID>first</ID>"),
        rule(("*",), ("GET",)), ns="")
    rules = cors.parse_configuration(body)
    assert rules == (
        CorsRule(("http://www.example.com", "http://*.example.com"), ("PUT", "POST", "DELETE"),
                 ("*",), ("x-amz-server-side-encryption", "ETag"), 3000, "first"),
        CorsRule(("*",), ("GET",)))


def test_stored_form_and_rendering_round_trip() -> None:
    rules = cors.parse_configuration(doc(
        rule(("https://a.example", ""), ("GET", "HEAD"),
             "<ID>x</ID><AllowedHeader>X-Amz-*</AllowedHeader><MaxAgeSeconds>0</MaxAgeSeconds>"),
        rule()))
    stored = cors.to_json(rules)
    assert cors.from_json(stored) == rules
    assert '"MaxAgeSeconds":0' in stored and "ExposeHeaders" not in stored
    rendered = cors.render(rules)
    assert rendered.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<CORSConfiguration '
                               b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/">')
    assert cors.parse_configuration(rendered) == rules
    first = etree.fromstring(rendered)[0]
    assert [el.tag.rpartition("}")[2] for el in first] == [
        "ID", "AllowedHeader", "AllowedMethod", "AllowedMethod", "AllowedOrigin",
        "AllowedOrigin", "MaxAgeSeconds"]


@pytest.mark.parametrize("body", [
    doc(),  # no rule at all
    doc(*[rule()] * 101),  # past AWS's 100
    doc("<CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule>"),
    doc("<CORSRule><AllowedOrigin>*</AllowedOrigin></CORSRule>"),
    doc("<CORSRule/>"),
    doc(rule(extra="<MaxAgeSeconds>soon</MaxAgeSeconds>")),
    doc(rule(extra="<MaxAgeSeconds>-1</MaxAgeSeconds>")),
    doc(rule(extra="<MaxAgeSeconds>1</MaxAgeSeconds><MaxAgeSeconds>2</MaxAgeSeconds>")),
    doc(rule(extra="<ID>a</ID><ID>b</ID>")),
    doc(rule(extra="<AllowedHeaders>*</AllowedHeaders>")),
    b"<CORSConfig><CORSRule/></CORSConfig>",
    b"not xml",
])
def test_structural_problems_are_malformed_xml(body: bytes) -> None:
    with pytest.raises(errors.MalformedXML):
        cors.parse_configuration(body)


def test_one_hundred_rules_are_allowed() -> None:
    assert len(cors.parse_configuration(doc(*[rule()] * 100))) == 100


@pytest.mark.parametrize("method", ["get", "OPTIONS", "PATCH", "", "*"])
def test_unsupported_method_is_invalid_request(method: str) -> None:
    with pytest.raises(errors.InvalidRequest) as exc:
        cors.parse_configuration(doc(rule(methods=("GET", method))))
    assert exc.value.msg == ("Found unsupported HTTP method in CORS config. Unsupported method "
                             f"is {method}")


@pytest.mark.parametrize("extra,message", [
    ("", 'AllowedOrigin "*example*.com" can not have more than one wildcard.'),
    ("<AllowedHeader>x-*-*</AllowedHeader>",
     'AllowedHeader "x-*-*" can not have more than one wildcard.'),
    ("<ExposeHeader>x-amz-*</ExposeHeader>",
     'ExposeHeader "x-amz-*" contains wildcard. We currently do not support wildcard for '
     "ExposeHeader."),
])
def test_wildcard_limits(extra: str, message: str) -> None:
    origins = ("*example*.com",) if not extra else ("*",)
    with pytest.raises(errors.InvalidRequest) as exc:
        cors.parse_configuration(doc(rule(origins, extra=extra)))
    assert exc.value.msg == message


def test_id_longer_than_255_is_refused() -> None:
    assert cors.parse_configuration(doc(rule(extra=f"<ID>{'i' * 255}</ID>")))[0].id == "i" * 255
    with pytest.raises(errors.InvalidArgument):
        cors.parse_configuration(doc(rule(extra=f"<ID>{'i' * 256}</ID>")))


# --- matching ----------------------------------------------------------------------------

@pytest.mark.parametrize("pattern,value,expected", [
    # ceph s3-tests test_cors_origin_response (not fails_on_aws)
    ("*suffix", "foo.suffix", True), ("*suffix", "foo.bar", False),
    ("*suffix", "foo.suffix.get", False), ("start*end", "startend", True),
    ("start*end", "start1end", True), ("start*end", "start12end", True),
    ("start*end", "0start12end", False), ("prefix*", "prefix", True),
    ("prefix*", "prefix.suffix", True), ("prefix*", "bla.prefix", False),
    ("*.put", "foo.put", True), ("*", "", True), ("*", "anything", True),
    ("http://*.origin.com", "http://test.origin.com", True),
    ("http://*.origin.com", "http://test.origin.com/", False),
    ("http://www.example.com", "https://www.example.com", False),
    ("http://www.example.com", "http://www.example.com:80", False),
    ("ab*ba", "aba", False),  # head and tail may not overlap
    ("http://A.example", "http://a.example", False),  # origins are case-sensitive
])
def test_wildcard_match(pattern: str, value: str, expected: bool) -> None:
    assert cors.wildcard_match(pattern, value) is expected


@given(st.text("ab*", max_size=6).filter(lambda p: p.count("*") <= 1), st.text("ab", max_size=8))
def test_wildcard_match_agrees_with_a_regex(pattern: str, value: str) -> None:
    regex = "".join(".*" if c == "*" else re.escape(c) for c in pattern)
    assert cors.wildcard_match(pattern, value) is bool(re.fullmatch(regex, value, re.S))


RULES = (
    CorsRule(("https://app.example",), ("GET", "PUT"), ("x-amz-*", "content-type"),
             ("ETag",), 600),
    CorsRule(("https://app.example",), ("DELETE",)),
    CorsRule(("*",), ("GET", "HEAD"), ("*",)),
)


def test_first_matching_rule_decides() -> None:
    found = cors.match(RULES, "https://app.example", "GET", ("X-Amz-Date", "Content-Type"))
    assert found == Match(RULES[0], any_origin=False)
    # the first rule refuses the header, the wildcard one allows it
    assert cors.match(RULES, "https://app.example", "GET", ("authorization",)) == Match(
        RULES[2], any_origin=True)
    assert cors.match(RULES, "https://app.example", "DELETE") == Match(RULES[1], False)
    assert cors.match(RULES, "https://other.example", "PUT") is None
    assert cors.match(RULES, "https://app.example", "POST") is None
    assert cors.match(RULES, "https://app.example", "get") is None  # methods are exact


def test_a_rule_without_allowed_headers_allows_no_requested_header() -> None:
    assert cors.match(RULES[1:2], "https://app.example", "DELETE", ("x-amz-date",)) is None
    assert cors.match(RULES[1:2], "https://app.example", "DELETE", ()) is not None


def test_requested_headers_are_lowercase_names_in_order() -> None:
    assert cors.requested_headers("X-Amz-Date, content-type,,AUTHORIZATION ") == (
        "x-amz-date", "content-type", "authorization")
    assert cors.requested_headers(None) == ()
    assert cors.requested_headers("") == ()


def test_preflight_and_actual_response_headers() -> None:
    found = Match(RULES[0], any_origin=False)
    asked = ("x-amz-date", "content-type")
    assert cors.response_headers(found, "https://app.example", preflight=True,
                                 headers=asked) == [
        ("Access-Control-Allow-Origin", "https://app.example"),
        ("Access-Control-Allow-Methods", "GET, PUT"),
        ("Access-Control-Allow-Headers", "x-amz-date, content-type"),
        ("Access-Control-Expose-Headers", "ETag"),
        ("Access-Control-Max-Age", "600"),
        ("Access-Control-Allow-Credentials", "true"),
        ("Vary", "Origin, Access-Control-Request-Headers, Access-Control-Request-Method")]
    actual = dict(cors.response_headers(found, "https://app.example", preflight=False))
    assert "Access-Control-Allow-Headers" not in actual
    assert actual["Access-Control-Expose-Headers"] == "ETag"


def test_any_origin_answers_a_star_without_credentials() -> None:
    headers = dict(cors.response_headers(Match(RULES[2], True), "http://x:1", preflight=True))
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in headers
    assert "Access-Control-Max-Age" not in headers and "Access-Control-Allow-Headers" not in headers
