"""Lifecycle configuration (s3/lifecycle.py): every refusal with AWS's code and message,
GET's rendering round-trips, and when each action falls due (AWS's midnight rounding).
The last section drives the pass itself (core/lifecycle.py) on a real SQLite store and local
blob store in ``tmp_path``: the re-check before each delete, and resuming at the cursor."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bleepstore import errors
from bleepstore.config import (
    LifecycleConfig,
    LocalStorageConfig,
    MetadataConfig,
    SqliteConfig,
    load,
)
from bleepstore.core import lifecycle as pass_module
from bleepstore.core.lifecycle import run_pass as lifecycle_pass
from bleepstore.metadata.commands import (
    CreateBucket,
    PutBucketConfig,
    PutBucketVersioning,
    PutObject,
)
from bleepstore.model import Bucket, ObjectMeta, ObjectVersion
from bleepstore.runtime import build_services
from bleepstore.s3 import lifecycle as lc
from bleepstore.s3 import lifecycle_due as lcd
from bleepstore.s3.headers import now_iso

DAY = 86_400_000
V2_PREFIX = lc.MSG_V2_PREFIX


def doc(*rules: str, root: str = "LifecycleConfiguration") -> bytes:
    ns = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
    return f"<{root}{ns}>{''.join(rules)}</{root}>".encode()


def rule(body: str, *, status: str = "Enabled", scope: str = "<Filter/>",
         rule_id: str | None = None) -> str:
    ident = f"<ID>{rule_id}</ID>" if rule_id is not None else ""
    return f"<Rule>{ident}{scope}<Status>{status}</Status>{body}</Rule>"


EXPIRE_1 = "<Expiration><Days>1</Days></Expiration>"


def parse(body: bytes, header: str | None = None) -> lc.Configuration:
    ids = iter(f"gen-{i}" for i in range(10_000))
    return lc.parse_configuration(body, lambda: next(ids), header)


def refusal(body: bytes, header: str | None = None) -> errors.S3Error:
    with pytest.raises(errors.S3Error) as exc:
        parse(body, header)
    return exc.value


def ms(text: str) -> int:
    return lcd.iso_to_ms(text)


# --- refusals -----------------------------------------------------------------------------

MALFORMED = [
    b"",
    b"<LifecycleConfiguration><Rule>",
    doc(rule(EXPIRE_1), root="LifeCycleConfiguration"),
    b'<!DOCTYPE x [<!ENTITY a "b">]><LifecycleConfiguration/>',
    doc(rule(EXPIRE_1) + "<Other/>"),
    doc(rule(EXPIRE_1 + "<Unknown/>")),
    doc(rule(EXPIRE_1 + EXPIRE_1)),
    doc(rule(EXPIRE_1, status="enabled")),
    doc(rule(EXPIRE_1, status="invalid")),
    doc("<Rule><Filter/>" + EXPIRE_1 + "</Rule>"),  # no Status
    doc(rule(EXPIRE_1, scope="")),  # neither Filter nor Prefix
    doc(rule(EXPIRE_1, scope="<Prefix>a</Prefix><Filter/>")),
    doc(rule(EXPIRE_1, scope="<Filter><Prefix>a</Prefix><Prefix>b</Prefix></Filter>")),
    doc(rule(EXPIRE_1, scope="<Filter><Prefix>a</Prefix>"
                             "<ObjectSizeGreaterThan>1</ObjectSizeGreaterThan></Filter>")),
    doc(rule(EXPIRE_1, scope="<Filter><And><Prefix>a</Prefix></And></Filter>")),
    doc(rule(EXPIRE_1, scope="<Filter><And><Tag><Key>k</Key><Value>v</Value></Tag></And>"
                             "</Filter>")),
    doc(rule(EXPIRE_1, scope="<Filter><Tag><Value>v</Value></Tag></Filter>")),
    doc(rule(EXPIRE_1, scope="<Filter><Tag><Key></Key><Value>v</Value></Tag></Filter>")),
    doc(rule(EXPIRE_1, scope="<Filter><ObjectSizeLessThan>ten</ObjectSizeLessThan></Filter>")),
    doc(rule("<Expiration/>")),
    doc(rule("<Expiration><Days>1</Days><Date>2030-01-01T00:00:00Z</Date></Expiration>")),
    doc(rule("<Expiration><Days>1</Days>"
             "<ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>")),
    doc(rule("<Expiration><Days>one</Days></Expiration>")),
    doc(rule("<Expiration><Days>1.5</Days></Expiration>")),
    doc(rule("<Expiration><Days>2147483648</Days></Expiration>")),
    doc(rule("<Expiration><Date>2030-01-01</Date></Expiration>")),
    doc(rule("<Expiration><Date>Fri, 01 Jan 2016 00:00:00 GMT</Date></Expiration>")),
    doc(rule("<Expiration><ExpiredObjectDeleteMarker>yes</ExpiredObjectDeleteMarker>"
             "</Expiration>")),
    doc(rule("<NoncurrentVersionExpiration/>")),
    doc(rule("<NoncurrentVersionExpiration><NewerNoncurrentVersions>2"
             "</NewerNoncurrentVersions></NoncurrentVersionExpiration>")),
    doc(rule("<AbortIncompleteMultipartUpload/>")),
    doc(rule("<Transition><Days>30</Days><StorageClass>STANDARD</StorageClass></Transition>")),
    doc(rule("<Transition><Days>30</Days><StorageClass>glacier</StorageClass></Transition>")),
    doc(rule("<Transition><StorageClass>GLACIER</StorageClass></Transition>")),
    doc(rule("<Transition><Days>1</Days><Date>2030-01-01T00:00:00Z</Date>"
             "<StorageClass>GLACIER</StorageClass></Transition>")),
    doc(rule("<NoncurrentVersionTransition><StorageClass>GLACIER</StorageClass>"
             "</NoncurrentVersionTransition>")),
]


@pytest.mark.parametrize("body", MALFORMED)
def test_documents_outside_the_schema_are_malformed_xml(body: bytes) -> None:
    err = refusal(body)
    assert (err.code, err.status) == ("MalformedXML", 400)


def _positive(name: str, action: str) -> str:
    return f"'{name}' for {action} action must be a positive integer"


INVALID = [
    (doc(rule(EXPIRE_1, rule_id="x" * 256)), "InvalidArgument",
     "ID length should not exceed allowed limit of 255"),
    (doc(rule(EXPIRE_1, rule_id="a"), rule(EXPIRE_1, rule_id="a")), "InvalidArgument",
     "Rule ID must be unique. Found same ID for more than one rule"),
    (doc(rule("<Expiration><Days>0</Days></Expiration>")), "InvalidArgument",
     _positive("Days", "Expiration")),
    (doc(rule("<Expiration><Days>-3</Days></Expiration>")), "InvalidArgument",
     _positive("Days", "Expiration")),
    (doc(rule("<Expiration><Date>2030-01-01T00:00:01Z</Date></Expiration>")),
     "InvalidArgument", "'Date' must be at midnight GMT"),
    (doc(rule("<Expiration><Date>2030-01-01T00:00:00+01:00</Date></Expiration>")),
     "InvalidArgument", "'Date' must be at midnight GMT"),
    (doc(rule("<NoncurrentVersionExpiration><NoncurrentDays>0</NoncurrentDays>"
              "</NoncurrentVersionExpiration>")), "InvalidArgument",
     _positive("NoncurrentDays", "NoncurrentVersionExpiration")),
    (doc(rule("<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
              "<NewerNoncurrentVersions>0</NewerNoncurrentVersions>"
              "</NoncurrentVersionExpiration>")), "InvalidArgument",
     _positive("NewerNoncurrentVersions", "NoncurrentVersionExpiration")),
    (doc(rule("<AbortIncompleteMultipartUpload><DaysAfterInitiation>0</DaysAfterInitiation>"
              "</AbortIncompleteMultipartUpload>")), "InvalidArgument",
     _positive("DaysAfterInitiation", "AbortIncompleteMultipartUpload")),
    (doc(), "InvalidRequest", "At least one lifecycle rule must be specified."),
    (doc(*[rule(EXPIRE_1)] * 1001), "InvalidRequest",
     "The number of lifecycle rules must not exceed the allowed limit of 1000 rules."),
    (doc(rule("")), "InvalidRequest", "At least one action needs to be specified in a rule"),
    (doc(rule(EXPIRE_1, scope="<Prefix>a</Prefix>"), rule(EXPIRE_1, scope="<Filter/>")),
     "InvalidRequest", "Filter element can only be used in Lifecycle V2."),
    (doc(rule(EXPIRE_1), rule(EXPIRE_1, scope="<Prefix>a</Prefix>")), "InvalidRequest",
     V2_PREFIX),
    (doc(rule("<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
              "<NewerNoncurrentVersions>2</NewerNoncurrentVersions>"
              "</NoncurrentVersionExpiration>", scope="<Prefix></Prefix>")),
     "InvalidRequest", "NewerNoncurrentVersions element can only be used in Lifecycle V2."),
    (doc(rule(EXPIRE_1, scope="<Prefix>logs/</Prefix>"),
         rule(EXPIRE_1, scope="<Prefix>logs/a</Prefix>")), "InvalidRequest",
     "Found overlapping prefixes 'logs/' and 'logs/a' for same action type 'Expiration'"),
    (doc(rule(EXPIRE_1, scope="<Filter><And><Prefix>a</Prefix><Tag><Key>k</Key>"
                              "<Value>1</Value></Tag><Tag><Key>k</Key><Value>2</Value></Tag>"
                              "</And></Filter>")),
     "InvalidRequest", "Duplicate Tag Keys are not allowed."),
    (doc(rule(EXPIRE_1, scope="<Filter><ObjectSizeLessThan>0</ObjectSizeLessThan></Filter>")),
     "InvalidRequest", "'ObjectSizeLessThan' should be between 1 and 1099511627776000."),
    (doc(rule(EXPIRE_1, scope="<Filter><ObjectSizeGreaterThan>-1</ObjectSizeGreaterThan>"
                              "</Filter>")),
     "InvalidRequest", "'ObjectSizeGreaterThan' should be between 0 and 1099511627776000."),
    (doc(rule(EXPIRE_1, scope="<Filter><ObjectSizeGreaterThan>1099511627776001"
                              "</ObjectSizeGreaterThan></Filter>")),
     "InvalidRequest", "'ObjectSizeGreaterThan' should be between 0 and 1099511627776000."),
    (doc(rule(EXPIRE_1, scope="<Filter><And><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan>"
                              "<ObjectSizeLessThan>10</ObjectSizeLessThan></And></Filter>")),
     "InvalidRequest",
     "'ObjectSizeLessThan' has to be a value greater than 'ObjectSizeGreaterThan'."),
    (doc(rule("<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker>"
              "</Expiration>", scope="<Filter><Tag><Key>k</Key><Value>v</Value></Tag>"
                                     "</Filter>")),
     "InvalidRequest", "ExpiredObjectDeleteMarker cannot be specified with Tags."),
    (doc(rule("<Expiration><ExpiredObjectDeleteMarker>false</ExpiredObjectDeleteMarker>"
              "</Expiration>",
              scope="<Filter><ObjectSizeLessThan>5</ObjectSizeLessThan></Filter>")),
     "InvalidRequest", "ExpiredObjectDeleteMarker cannot be specified with Object Size."),
    (doc(rule("<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
              "</AbortIncompleteMultipartUpload>",
              scope="<Filter><And><Prefix>p</Prefix><Tag><Key>k</Key><Value>v</Value></Tag>"
                    "</And></Filter>")),
     "InvalidRequest", "AbortIncompleteMultipartUpload cannot be specified with Tags."),
    (doc(rule("<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
              "</AbortIncompleteMultipartUpload>",
              scope="<Filter><ObjectSizeGreaterThan>5</ObjectSizeGreaterThan></Filter>")),
     "InvalidRequest", "AbortIncompleteMultipartUpload cannot be specified with Object Size."),
]


@pytest.mark.parametrize(("body", "code", "message"), INVALID)
def test_refusals_carry_aws_codes_and_messages(body: bytes, code: str, message: str) -> None:
    err = refusal(body)
    assert (err.code, err.status, err.msg) == (code, 400, message)


def test_transitions_are_refused_as_a_storage_class_this_store_does_not_offer() -> None:
    for action in ("<Transition><Days>30</Days><StorageClass>GLACIER</StorageClass>"
                   "</Transition>",
                   "<Transition><Date>2030-01-01T00:00:00Z</Date>"
                   "<StorageClass>DEEP_ARCHIVE</StorageClass></Transition>",
                   "<NoncurrentVersionTransition><NoncurrentDays>3</NoncurrentDays>"
                   "<StorageClass>STANDARD_IA</StorageClass></NoncurrentVersionTransition>"):
        err = refusal(doc(rule(EXPIRE_1 + action)))
        assert (err.code, err.status) == ("InvalidStorageClass", 400)
        assert err.msg == "The storage class you specified is not valid"
        assert err.extra["StorageClassRequested"] in lc.TRANSITION_CLASSES
    # every other fault is found first
    late = refusal(doc(rule("<Transition><Days>30</Days><StorageClass>GLACIER</StorageClass>"
                            "</Transition>"), rule("<Expiration><Days>0</Days></Expiration>")))
    assert late.code == "InvalidArgument"


def test_minimum_object_size_header() -> None:
    assert parse(doc(rule(EXPIRE_1))).min_object_size == "all_storage_classes_128K"
    assert parse(doc(rule(EXPIRE_1)), "varies_by_storage_class").min_object_size == \
        "varies_by_storage_class"
    err = refusal(doc(rule(EXPIRE_1)), "small")
    assert (err.code, err.msg) == ("InvalidRequest",
                                   "Invalid TransitionDefaultMinimumObjectSize found: small")


# --- what is accepted ---------------------------------------------------------------------


def test_accepted_forms() -> None:
    assert len(parse(doc(*[rule(EXPIRE_1)] * 1000)).rules) == 1000
    config = parse(doc(
        rule(EXPIRE_1, rule_id="x" * 255),
        rule("<Expiration><Date>2030-01-01T05:00:00+05:00</Date></Expiration>",
             scope="<Filter><Prefix>a b/</Prefix></Filter>"),
        rule("<Expiration><ExpiredObjectDeleteMarker>1</ExpiredObjectDeleteMarker>"
             "</Expiration>", status="Disabled"),
        rule(EXPIRE_1, scope="<Filter><And><Prefix></Prefix><Tag><Key>k</Key></Tag></And>"
                             "</Filter>"),
        rule(EXPIRE_1, scope="<Filter><And><Tag><Key>a</Key><Value>1</Value></Tag>"
                             "<Tag><Key>b</Key><Value>2</Value></Tag></And></Filter>"),
        rule("<NoncurrentVersionExpiration><NoncurrentDays>3</NoncurrentDays>"
             "<NewerNoncurrentVersions>500</NewerNoncurrentVersions>"
             "</NoncurrentVersionExpiration>", rule_id=""),
    ))
    r = config.rules
    assert r[0].id == "x" * 255 and r[0].days == 1 and r[0].filter.shape == "all"
    assert r[1].date == "2030-01-01T00:00:00.000Z" and r[1].filter.prefix == "a b/"
    assert r[2].expired_marker is True and not r[2].enabled and r[2].id == "gen-1"
    assert r[3].filter == lc.Filter("and", "", (("k", ""),))
    assert r[4].filter.tags == (("a", "1"), ("b", "2"))
    assert (r[5].noncurrent_days, r[5].newer_noncurrent, r[5].id) == (3, 500, "gen-4")


def test_lifecycle_v1_prefixes_may_overlap_across_action_kinds_and_v2_filters_always() -> None:
    abort = ("<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
             "</AbortIncompleteMultipartUpload>")
    parse(doc(rule(EXPIRE_1, scope="<Prefix>a</Prefix>"),
              rule(abort, scope="<Prefix>ab</Prefix>"),
              rule(EXPIRE_1, scope="<Prefix>b</Prefix>")))
    parse(doc(rule(EXPIRE_1, scope="<Filter><Prefix>a</Prefix></Filter>"),
              rule(EXPIRE_1, scope="<Filter><Prefix>ab</Prefix></Filter>")))
    err = refusal(doc(rule(EXPIRE_1, scope="<Prefix></Prefix>"),
                      rule(EXPIRE_1, scope="<Prefix>x</Prefix>")))
    assert err.msg == "Found overlapping prefixes '' and 'x' for same action type 'Expiration'"


# --- rendering ----------------------------------------------------------------------------

ROUND_TRIP = doc(
    rule(EXPIRE_1, scope="<Prefix>legacy/</Prefix>", rule_id="one"),
    rule("<Expiration><Date>2031-05-06T00:00:00.000Z</Date></Expiration>", rule_id="two",
         scope="<Prefix>l2/</Prefix>"),
)


def test_get_gives_rules_back_as_sent() -> None:
    config = parse(ROUND_TRIP)
    body = lc.render(config)
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<LifecycleConfiguration '
                           b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/">')
    assert b"<Rule><ID>one</ID><Prefix>legacy/</Prefix><Status>Enabled</Status>" in body
    assert b"<Filter>" not in body
    assert parse(body) == config
    v2 = parse(doc(rule(EXPIRE_1, rule_id="e"),
                   rule("<Expiration><ExpiredObjectDeleteMarker>false</ExpiredObjectDeleteMarker>"
                        "</Expiration>", rule_id="m", scope="<Filter><Prefix></Prefix></Filter>")))
    out = lc.render(v2)
    assert b"<ID>e</ID><Filter/><Status>Enabled</Status><Expiration><Days>1</Days>" in out
    assert b"<Filter><Prefix></Prefix></Filter>" in out
    assert b"<ExpiredObjectDeleteMarker>false</ExpiredObjectDeleteMarker>" in out
    assert parse(out) == v2 and lc.from_json(lc.to_json(v2)) == v2


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8)
_tags = st.lists(st.tuples(_text.filter(bool), _text), max_size=3,
                 unique_by=lambda t: t[0]).map(tuple)
_size = st.integers(0, lc.MAX_SIZE)


@st.composite
def filters(draw: st.DrawFn) -> lc.Filter:
    shape = draw(st.sampled_from(("all", "prefix", "tag", "gt", "lt", "and")))
    if shape == "prefix":
        return lc.Filter("prefix", draw(_text))
    if shape == "tag":
        return lc.Filter("tag", tags=(draw(_tags.filter(lambda t: len(t) == 1))[0],))
    if shape == "gt":
        return lc.Filter("gt", greater_than=draw(_size))
    if shape == "lt":
        return lc.Filter("lt", less_than=draw(st.integers(1, lc.MAX_SIZE)))
    if shape == "all":
        return lc.Filter("all")
    prefix, tags = draw(st.none() | _text), draw(_tags)
    gt = draw(st.none() | st.integers(0, 1000))
    lt = draw(st.none() | st.integers((gt or 0) + 1, 2000))
    predicates = (prefix is not None) + len(tags) + (gt is not None) + (lt is not None)
    if predicates < 2:
        return lc.Filter("and", "p", (("k", "v"),))
    return lc.Filter("and", prefix, tags, gt, lt)


@st.composite
def rules(draw: st.DrawFn) -> lc.Rule:
    flt = draw(filters())
    expiration = draw(st.sampled_from(("days", "date", "marker", None)))
    plain = not flt.tags and not flt.uses_sizes
    if expiration == "marker" and not plain:
        expiration = "days"
    days = draw(st.integers(1, 5000)) if expiration == "days" else None
    date = (f"{draw(st.integers(1971, 2999))}-0{draw(st.integers(1, 9))}-1"
            f"{draw(st.integers(0, 9))}T00:00:00.000Z" if expiration == "date" else None)
    marker = draw(st.booleans()) if expiration == "marker" else None
    noncurrent = draw(st.none() | st.integers(1, 900))
    newer = draw(st.none() | st.integers(1, 100)) if noncurrent is not None else None
    abort = draw(st.none() | st.integers(1, 90)) if plain else None
    if (days, date, marker, noncurrent, abort) == (None, None, None, None, None):
        days = 1
    return lc.Rule(draw(_text.filter(bool)), draw(st.booleans()), flt, days, date, marker,
                   noncurrent, newer, abort)


@given(st.lists(rules(), min_size=1, max_size=5, unique_by=lambda r: r.id),
       st.sampled_from(lc.MIN_SIZES))
def test_render_then_parse_is_the_identity(rs: list[lc.Rule], min_size: str) -> None:
    config = lc.Configuration(tuple(rs), min_size)
    assert lc.parse_configuration(lc.render(config), lambda: "unused", min_size) == config
    assert lc.from_json(lc.to_json(config)) == config


# --- when actions fall due ----------------------------------------------------------------


def test_days_round_up_to_the_next_midnight_utc() -> None:
    # AWS's example: created 1/15/2014 10:30 UTC + 3 days -> 1/19/2014 00:00 UTC
    assert lcd.after_days(ms("2014-01-15T10:30:00.000Z"), 3, DAY) == ms("2014-01-19T00:00:00Z")
    # the troubleshooting page: 00:05 on January 2, one day -> 00:00 on January 4
    assert lcd.after_days(ms("2014-01-02T00:05:00.000Z"), 1, DAY) == ms("2014-01-04T00:00:00Z")
    # a time already at midnight is its own ceiling
    assert lcd.after_days(ms("2014-01-15T00:00:00.000Z"), 3, DAY) == ms("2014-01-18T00:00:00Z")
    assert lcd.after_days(ms("2014-01-15T00:00:00.001Z"), 3, DAY) == ms("2014-01-19T00:00:00Z")
    # a one-second day (tests): 12.300 s + 1 day -> 14.000 s
    assert lcd.after_days(12_300, 1, 1000) == 14_000
    assert lcd.round_up(12_000, 1000) == 12_000


def _rule(**kw: object) -> lc.Rule:
    fields: dict[str, object] = {"id": "r", "enabled": True, "filter": lc.Filter("all"), **kw}
    return lc.Rule(**fields)  # type: ignore[arg-type]


def current(key: str = "k", *, lm: str = "2014-01-15T10:30:00.000Z", size: int = 10,
            tags: tuple[tuple[str, str], ...] = ()) -> lcd.VersionState:
    return lcd.VersionState(key, size, tags, ms(lm), True, sole=True)


def test_current_versions_expire_by_days_or_date() -> None:
    three = [_rule(days=3)]
    before, at = ms("2014-01-18T23:59:59.999Z"), ms("2014-01-19T00:00:00Z")
    assert lcd.action_for(three, current(), before, DAY) is None
    assert lcd.action_for(three, current(), at, DAY) == lcd.EXPIRE
    assert lcd.due(three, current(), DAY) == lcd.Due(at, lcd.EXPIRE, "r")
    dated = [_rule(date="2020-06-01T00:00:00.000Z")]
    assert lcd.action_for(dated, current(), ms("2020-05-31T23:59:59Z"), DAY) is None
    assert lcd.action_for(dated, current(), ms("2020-06-01T00:00:00Z"), DAY) == lcd.EXPIRE
    # a date in the past applies to objects written after it too
    assert lcd.action_for(dated, current(lm="2025-01-01T00:00:00.000Z"),
                         ms("2025-01-01T00:00:01Z"), DAY) == lcd.EXPIRE


def test_filters_disabled_rules_and_the_shortest_expiration() -> None:
    now = ms("2030-01-01T00:00:00Z")
    cases = [
        (lc.Filter("prefix", "logs/"), current("logs/a"), True),
        (lc.Filter("prefix", "logs/"), current("log/a"), False),
        (lc.Filter("legacy", ""), current("x"), True),
        (lc.Filter("tag", tags=(("env", "dev"),)), current(tags=(("a", "b"), ("env", "dev"))),
         True),
        (lc.Filter("tag", tags=(("env", "dev"),)), current(tags=(("env", "prod"),)), False),
        (lc.Filter("tag", tags=(("env", ""),)), current(tags=(("env", ""),)), True),
        (lc.Filter("gt", greater_than=10), current(size=10), False),
        (lc.Filter("gt", greater_than=10), current(size=11), True),
        (lc.Filter("lt", less_than=10), current(size=10), False),
        (lc.Filter("lt", less_than=10), current(size=9), True),
        (lc.Filter("and", "a/", (("x", "1"), ("y", "2")), 1, 100),
         current("a/b", size=50, tags=(("y", "2"), ("x", "1"))), True),
        (lc.Filter("and", "a/", (("x", "1"), ("y", "2"))), current("a/b", tags=(("x", "1"),)),
         False),
    ]
    for flt, version, expected in cases:
        assert (lcd.action_for([_rule(filter=flt, days=1)], version, now, DAY) is not None) \
            == expected, (flt, version)
    assert lcd.action_for([_rule(days=1, enabled=False)], current(), now, DAY) is None
    both = [_rule(id="long", days=30), _rule(id="short", days=3), _rule(id="tie", days=3)]
    assert lcd.due(both, current(), DAY) == lcd.Due(ms("2014-01-19T00:00:00Z"), lcd.EXPIRE,
                                                  "short")


def _history(*entries: tuple[str, bool], key: str = "k",
             tags: tuple[tuple[str, str], ...] = ()) -> list[ObjectVersion]:
    """(last_modified, is a delete marker), newest first."""
    return [ObjectVersion(ObjectMeta("b", key, 0 if marker else 5, '"e"', lm, "ref",
                                     tags=tags), marker, i == 0, 100 - i)
            for i, (lm, marker) in enumerate(entries)]


def test_states_of_a_history() -> None:
    states = lcd.states_of(_history(("2014-01-03T00:00:00.000Z", False),
                                   ("2014-01-02T11:30:00.000Z", True),
                                   ("2014-01-01T00:00:00.000Z", False), tags=(("a", "b"),)))
    assert [(s.is_current, s.delete_marker, s.newer_noncurrent, s.sole) for s in states] == [
        (True, False, 0, False), (False, True, 0, False), (False, False, 1, False)]
    assert states[1].noncurrent_since_ms == ms("2014-01-03T00:00:00Z")
    assert states[2].noncurrent_since_ms == ms("2014-01-02T11:30:00Z")
    assert (states[1].size, states[1].tags, states[2].size, states[2].tags) == (
        0, (), 5, (("a", "b"),))
    assert lcd.states_of(_history(("2014-01-01T00:00:00.000Z", True)))[0].sole


def test_noncurrent_days_count_from_the_successor() -> None:
    # AWS's example: photo.gif deleted 1/2/2014 11:30 UTC, NoncurrentDays 5 -> 1/8/2014 00:00
    states = lcd.states_of(_history(("2014-01-02T11:30:00.000Z", True),
                                   ("2013-06-01T00:00:00.000Z", False)))
    five = [_rule(noncurrent_days=5)]
    assert lcd.due(five, states[1], DAY) == lcd.Due(ms("2014-01-08T00:00:00Z"),
                                                   lcd.DELETE_VERSION, "r")
    assert lcd.due(five, states[0], DAY) is None  # a marker over a version: no action


def test_newer_noncurrent_versions_keeps_the_newest_n() -> None:
    lms = [f"2014-01-{d:02d}T12:00:00.000Z" for d in range(10, 0, -1)]  # 10 versions
    states = lcd.states_of(_history(*[(lm, False) for lm in lms]))
    keep3 = [_rule(noncurrent_days=1, newer_noncurrent=3)]
    now = ms("2014-02-01T00:00:00Z")
    actions = [lcd.action_for(keep3, s, now, DAY) for s in states]
    assert actions == [None] * 4 + [lcd.DELETE_VERSION] * 6  # current + 3 kept
    # both must be exceeded: old enough AND more than N newer
    early = ms("2014-01-08T23:59:59Z")  # the 5th-newest version is due at 01-09 00:00
    assert [lcd.action_for(keep3, s, early, DAY) for s in states].count(lcd.DELETE_VERSION) == 5


def test_expired_delete_markers() -> None:
    lone = lcd.states_of(_history(("2014-01-02T11:30:00.000Z", True)))[0]
    covering = lcd.states_of(_history(("2014-01-02T11:30:00.000Z", True),
                                     ("2014-01-01T00:00:00.000Z", False)))[0]
    marker_rule = [_rule(expired_marker=True)]
    assert lcd.due(marker_rule, lone, DAY) == lcd.Due(ms("2014-01-03T00:00:00Z"),
                                                     lcd.DELETE_VERSION, "r")
    assert lcd.due(marker_rule, covering, DAY) is None
    assert lcd.due([_rule(expired_marker=False)], lone, DAY) is None
    # Days cleans up lone markers once they are old enough; Date never touches markers
    assert lcd.due([_rule(days=2)], lone, DAY) == lcd.Due(ms("2014-01-05T00:00:00Z"),
                                                        lcd.DELETE_VERSION, "r")
    assert lcd.due([_rule(date="2000-01-01T00:00:00.000Z")], lone, DAY) is None
    # a marker has no tags and size 0
    assert lcd.due([_rule(expired_marker=True, filter=lc.Filter("lt", less_than=1))], lone,
                  DAY) is not None
    assert lcd.due([_rule(days=1, filter=lc.Filter("tag", tags=(("a", "b"),)))], lone,
                  DAY) is None


def test_incomplete_uploads_and_phases() -> None:
    abort = [_rule(id="a", abort_days=2, filter=lc.Filter("prefix", "up/")),
             _rule(id="b", abort_days=7)]
    initiated = ms("2014-01-15T10:30:00.000Z")
    assert lcd.abort_due(abort, "up/x", initiated, DAY) == lcd.Due(
        ms("2014-01-18T00:00:00Z"), "abort", "a")
    assert lcd.abort_due(abort, "other", initiated, DAY) == lcd.Due(
        ms("2014-01-23T00:00:00Z"), "abort", "b")
    assert lcd.abort_due([_rule(abort_days=2, enabled=False)], "x", initiated, DAY) is None
    assert lcd.phases([_rule(date="2020-01-01T00:00:00.000Z")]) == (True, False, False)
    assert lcd.phases([_rule(days=1)]) == (True, True, False)
    assert lcd.phases([_rule(noncurrent_days=1), _rule(abort_days=1)]) == (False, True, True)
    assert lcd.phases([_rule(days=1, enabled=False)]) == (False, False, False)


def test_iso_to_ms() -> None:
    assert lcd.iso_to_ms("1970-01-01T00:00:01.234Z") == 1234
    assert lcd.iso_to_ms("2014-01-19T00:00:00Z") == int(
        datetime(2014, 1, 19, tzinfo=UTC).timestamp() * 1000)


# --- the pass (core/lifecycle.py) on a real SQLite store and local blob store -------------


@pytest.fixture
def svc(tmp_path: Path) -> Any:
    cfg = replace(load(environ={}),
                  metadata=MetadataConfig(sqlite=SqliteConfig(path=str(tmp_path / "m.db"))),
                  lifecycle=LifecycleConfig(day_seconds=3600, batch_size=2))
    cfg = replace(cfg, storage=replace(cfg.storage,
                                       local=LocalStorageConfig(str(tmp_path / "objects"))))
    services = build_services(cfg)
    services.store.migrate()
    services.store.apply(CreateBucket(Bucket("bkt", "us-east-1", "o", "o", "{}", OLD), 10, False))
    return services


OLD = "2020-01-01T00:00:00.000Z"


def _put(svc: Any, key: str, body: bytes = b"x", when: str = OLD) -> str:
    writer = svc.storage.open_writer("object")
    writer.write(body)
    staged = writer.finish()
    svc.store.apply(PutObject(ObjectMeta("bkt", key, len(body), '"e"', when, staged.data_ref),
                              when, when, inline_data=staged.inline))
    return str(staged.data_ref)


def _configure(svc: Any, *rs: lc.Rule) -> None:
    svc.store.apply(PutBucketConfig("bkt", "lifecycle", lc.to_json(lc.Configuration(rs))))


def test_pass_spares_a_key_overwritten_after_it_was_read(svc: Any) -> None:
    _put(svc, "k")
    _configure(svc, _rule(days=1))
    stale = svc.store.lifecycle_current("bkt", "", 10)[0]
    fresh_ref = _put(svc, "k", b"new", now_iso())  # a client overwrites it meanwhile
    batch = pass_module._Batch(svc, "bkt", [], 0, 1000, 10)
    assert pass_module._delete(batch, [("k", None)], {"k": stale}) == 0
    assert svc.store.get_object("bkt", "k").data_ref == fresh_ref
    assert lifecycle_pass(svc) == {}  # and the pass finds it not due
    svc.store.apply(PutBucketVersioning("bkt", "Enabled"))
    _put(svc, "v")
    _put(svc, "v", b"2")  # one noncurrent version
    _configure(svc, _rule(noncurrent_days=1))
    with svc.store.snapshot():
        seen = svc.store.current_versions("bkt", ["v"])
        old = svc.store.lifecycle_history("bkt", "", 10)[0]
    _put(svc, "v", b"3")  # the current version changed: the decision is left for later
    assert pass_module._delete(batch, [("v", old.version_id)], seen) == 0
    assert len(svc.store.lifecycle_history("bkt", "", 10)) == 2
    assert lifecycle_pass(svc) == {"noncurrent_deleted": 2}


def test_pass_resumes_at_its_cursor(svc: Any) -> None:
    for i in range(7):
        _put(svc, f"k{i}")
    _configure(svc, _rule(days=1))
    batches = iter([True, True, False])  # the lease is lost after two batches (2 rows each)
    assert lifecycle_pass(svc, lambda: next(batches)) == {"expired": 4}
    state = json.loads(svc.store.node_meta("lifecycle"))
    assert state["cursors"] == {"bkt": ["current", "k3"]}
    assert lifecycle_pass(svc) == {"expired": 3}
    state = json.loads(svc.store.node_meta("lifecycle"))
    assert state["cursors"] == {} and state["last_pass"]["expired"] == 3
    assert svc.store.lifecycle_current("bkt", "", 10) == []
