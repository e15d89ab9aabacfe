"""Dates, ETags and the stored Content-Encoding (s3-api.md §4.2, §4.3, §8.1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bleepstore.s3.headers import (
    etag_matches,
    http_date,
    iso_from_datetime,
    iso_to_epoch_seconds,
    normalize_etag,
    now_iso,
    parse_http_date,
    quote_etag,
    stored_content_encoding,
)


def test_http_date_truncates_milliseconds() -> None:
    assert http_date("2026-02-22T12:00:00.999Z") == "Sun, 22 Feb 2026 12:00:00 GMT"
    assert http_date("1994-11-06T08:49:37.000Z") == "Sun, 06 Nov 1994 08:49:37 GMT"


def test_iso_from_datetime_shape() -> None:
    dt = datetime(2026, 2, 22, 12, 0, 0, 123456, tzinfo=UTC)
    assert iso_from_datetime(dt) == "2026-02-22T12:00:00.123Z"
    other_zone = dt.astimezone(timezone(timedelta(hours=5)))
    assert iso_from_datetime(other_zone) == "2026-02-22T12:00:00.123Z"


def test_now_iso_round_trips() -> None:
    value = now_iso()
    assert len(value) == 24 and value.endswith("Z")
    assert iso_from_datetime(datetime.fromisoformat(value.replace("Z", "+00:00"))) == value


def test_epoch_seconds_whole() -> None:
    assert iso_to_epoch_seconds("1970-01-01T00:00:01.999Z") == 1
    assert iso_to_epoch_seconds("2026-02-22T12:00:00.000Z") == 1771761600


EXPECTED = datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)


@pytest.mark.parametrize("value", [
    "Sun, 06 Nov 1994 08:49:37 GMT",     # IMF-fixdate
    "Sunday, 06-Nov-94 08:49:37 GMT",    # RFC 850
    "Sun Nov  6 08:49:37 1994",          # asctime
    "  Sun, 06 Nov 1994 08:49:37 GMT ",
])
def test_parse_http_date_formats(value: str) -> None:
    assert parse_http_date(value) == EXPECTED


@pytest.mark.parametrize("value", [
    "", "garbage", "2026-02-22T12:00:00Z", "Sun, 06 Nov 1994 08:49:37 UTC",
    "Sun, 31 Feb 1994 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT",
    "Xyz, 06 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT",
    "Sun, 6 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:60 GMT",
])
def test_parse_http_date_invalid_is_none(value: str) -> None:
    assert parse_http_date(value) is None


def test_rfc850_pivot() -> None:
    parsed = parse_http_date("Tuesday, 01-Jan-30 00:00:00 GMT")
    assert parsed is not None and parsed.year == 2030


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1)))
def test_http_date_round_trip(dt: datetime) -> None:
    iso = iso_from_datetime(dt.replace(tzinfo=UTC))
    parsed = parse_http_date(http_date(iso))
    assert parsed is not None
    assert int(parsed.timestamp()) == iso_to_epoch_seconds(iso)


@pytest.mark.parametrize("raw, normal", [
    ('"ABCdef"', "abcdef"), ('W/"abc"', "abc"), ("abc", "abc"), (' "abc" ', "abc"),
    ('"e5a8c5272b26fc10581a21089559b006-2"', "e5a8c5272b26fc10581a21089559b006-2"),
])
def test_normalize_etag(raw: str, normal: str) -> None:
    assert normalize_etag(raw) == normal


@pytest.mark.parametrize("header, matches", [
    ('"abc"', True), ("abc", True), ('W/"ABC"', True), ("*", True), (' "x", "abc" ', True),
    ('"x", *', True), ('"x"', False), ("", False), ('""', False), ('"ab"', False),
])
def test_etag_matches(header: str, matches: bool) -> None:
    assert etag_matches(header, '"abc"') is matches


def test_quote_etag() -> None:
    assert quote_etag("d41d8cd98f00b204e9800998ecf8427e") == '"d41d8cd98f00b204e9800998ecf8427e"'


@pytest.mark.parametrize("sent, stored", [
    (None, None), ("", None), (" \t", None),
    ("gzip", "gzip"),
    # without an aws-chunked token the header is stored byte for byte
    ("deflate, gzip", "deflate, gzip"), ("deflate,gzip", "deflate,gzip"),
    ("deflate ,  gzip", "deflate ,  gzip"), ("GZip", "GZip"), ("gzip,,br", "gzip,,br"),
    # aws-chunked is the request's framing: only that token goes, the rest stays as sent
    ("aws-chunked", None), ("AWS-Chunked", None), ("aws-chunked,", None),
    ("aws-chunked,gzip", "gzip"), ("aws-chunked, gzip", "gzip"),
    ("gzip,aws-chunked", "gzip"), ("gzip, aws-chunked", "gzip"),
    ("aws-chunked, deflate, gzip", "deflate, gzip"),
    ("deflate, aws-chunked, gzip", "deflate, gzip"),
    ("deflate,aws-chunked,gzip", "deflate,gzip"),
    ("aws-chunked , deflate ,gzip", "deflate ,gzip"),
])
def test_stored_content_encoding(sent: str | None, stored: str | None) -> None:
    assert stored_content_encoding(sent) == stored
