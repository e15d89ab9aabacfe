"""Conditional requests (s3-api.md §11, §8.6 step 3, §8.1)."""

from __future__ import annotations

import pytest

from bleepstore.errors import NoSuchKey, PreconditionFailed, S3NotImplemented
from bleepstore.s3.conditions import (
    check_write_preconditions,
    evaluate_copy_source_conditions,
    evaluate_read_conditions,
    validate_write_condition_headers,
    write_etag_matches,
)

ETAG = '"abc123"'
LAST_MODIFIED = "2026-02-22T12:00:00.900Z"   # whole seconds: 12:00:00
SAME = "Sun, 22 Feb 2026 12:00:00 GMT"
BEFORE = "Sun, 22 Feb 2026 11:59:59 GMT"
AFTER = "Sun, 22 Feb 2026 12:00:01 GMT"
BAD_DATE = "yesterday"

OK = None
NM = 304
P = "412"

READ_TABLE: list[tuple[dict[str, str], int | str | None, str | None]] = [
    ({}, OK, None),
    ({"If-Match": ETAG}, OK, None),
    ({"If-Match": "abc123"}, OK, None),
    ({"If-Match": "*"}, OK, None),
    ({"If-Match": '"zzz", "ABC123"'}, OK, None),
    ({"If-Match": '"zzz"'}, P, "If-Match"),
    ({"If-Unmodified-Since": SAME}, OK, None),
    ({"If-Unmodified-Since": AFTER}, OK, None),
    ({"If-Unmodified-Since": BEFORE}, P, "If-Unmodified-Since"),
    ({"If-Unmodified-Since": BAD_DATE}, OK, None),
    # If-Match holding -> If-Unmodified-Since skipped
    ({"If-Match": ETAG, "If-Unmodified-Since": BEFORE}, OK, None),
    ({"If-Match": '"zzz"', "If-Unmodified-Since": AFTER}, P, "If-Match"),
    ({"If-None-Match": ETAG}, NM, None),
    ({"If-None-Match": "*"}, NM, None),
    ({"If-None-Match": 'W/"ABC123"'}, NM, None),
    ({"If-None-Match": '"zzz"'}, OK, None),
    ({"If-Modified-Since": SAME}, NM, None),
    ({"If-Modified-Since": AFTER}, NM, None),
    ({"If-Modified-Since": BEFORE}, OK, None),
    ({"If-Modified-Since": BAD_DATE}, OK, None),
    # If-None-Match present and not matching -> If-Modified-Since skipped
    ({"If-None-Match": '"zzz"', "If-Modified-Since": AFTER}, OK, None),
    ({"If-None-Match": ETAG, "If-Modified-Since": BEFORE}, NM, None),
    # 412 beats 304
    ({"If-Match": '"zzz"', "If-None-Match": ETAG}, P, "If-Match"),
    ({"If-Unmodified-Since": BEFORE, "If-Modified-Since": AFTER}, P, "If-Unmodified-Since"),
    ({"If-Match": ETAG, "If-None-Match": ETAG}, NM, None),
    ({"If-Match": ETAG, "If-Modified-Since": SAME}, NM, None),
    ({"If-Unmodified-Since": SAME, "If-Modified-Since": BEFORE}, OK, None),
]


@pytest.mark.parametrize("headers, outcome, condition", READ_TABLE)
def test_read_conditions(headers: dict[str, str], outcome: int | str | None,
                         condition: str | None) -> None:
    if outcome == P:
        with pytest.raises(PreconditionFailed) as exc:
            evaluate_read_conditions(headers.get, ETAG, LAST_MODIFIED)
        assert exc.value.extra == {"Condition": condition}
    else:
        assert evaluate_read_conditions(headers.get, ETAG, LAST_MODIFIED) == outcome


def _copy(headers: dict[str, str]) -> dict[str, str]:
    return {"x-amz-copy-source-" + k.lower(): v for k, v in headers.items()}


@pytest.mark.parametrize("headers, outcome, condition", READ_TABLE)
def test_copy_source_conditions_never_304(headers: dict[str, str], outcome: int | str | None,
                                          condition: str | None) -> None:
    copy_headers = _copy(headers)
    if outcome is OK:
        evaluate_copy_source_conditions(copy_headers.get, ETAG, LAST_MODIFIED)
        return
    with pytest.raises(PreconditionFailed) as exc:
        evaluate_copy_source_conditions(copy_headers.get, ETAG, LAST_MODIFIED)
    failed = exc.value.extra["Condition"]
    assert failed.startswith("x-amz-copy-source-if-")
    if condition is not None:
        assert failed == "x-amz-copy-source-" + condition.lower()


def test_read_headers_ignored_for_copy() -> None:
    headers = {"If-Match": '"zzz"'}
    evaluate_copy_source_conditions(headers.get, ETAG, LAST_MODIFIED)


WRITE_TABLE: list[tuple[str | None, str | None, str | None, type[Exception] | None, str | None]] = [
    (None, None, None, None, None),
    (None, None, ETAG, None, None),
    (None, "*", None, None, None),
    (None, "*", ETAG, PreconditionFailed, "If-None-Match"),
    (ETAG, None, ETAG, None, None),
    ("*", None, ETAG, None, None),
    ('"zzz"', None, ETAG, PreconditionFailed, "If-Match"),
    (ETAG, None, None, NoSuchKey, None),
    ("*", None, None, NoSuchKey, None),
    (ETAG, "*", ETAG, PreconditionFailed, "If-None-Match"),
    ('"zzz"', "*", ETAG, PreconditionFailed, "If-Match"),
    (ETAG, "*", None, NoSuchKey, None),
    # [S3] a write's If-Match is one ETag compared whole (docs/decisions.md): a list never
    # matches, even one naming the current ETag; a weak ETag never matches.
    ("abc123", None, ETAG, None, None),
    ('"ABC123"', None, ETAG, None, None),
    (' "abc123" ', None, ETAG, None, None),
    ('"zzz", "abc123"', None, ETAG, PreconditionFailed, "If-Match"),
    ('"abc123", "zzz"', None, ETAG, PreconditionFailed, "If-Match"),
    ('"abc123", "abc123"', None, ETAG, PreconditionFailed, "If-Match"),
    ('*, "zzz"', None, ETAG, PreconditionFailed, "If-Match"),
    ('W/"abc123"', None, ETAG, PreconditionFailed, "If-Match"),
    ('w/"abc123"', None, ETAG, PreconditionFailed, "If-Match"),
    ('""', None, ETAG, PreconditionFailed, "If-Match"),
    ("", None, ETAG, PreconditionFailed, "If-Match"),
    ('W/"abc123"', None, None, NoSuchKey, None),
    ('"zzz", "abc123"', None, None, NoSuchKey, None),
]


@pytest.mark.parametrize("if_match, if_none_match, current, error, condition", WRITE_TABLE)
def test_write_preconditions(if_match: str | None, if_none_match: str | None,
                             current: str | None, error: type[Exception] | None,
                             condition: str | None) -> None:
    if error is None:
        check_write_preconditions(if_match, if_none_match, current, key="k")
        return
    with pytest.raises(error) as exc:
        check_write_preconditions(if_match, if_none_match, current, key="k")
    if isinstance(exc.value, PreconditionFailed):
        assert exc.value.extra == {"Condition": condition}
    else:
        assert isinstance(exc.value, NoSuchKey) and exc.value.extra == {"Key": "k"}


@pytest.mark.parametrize("header, current, matches", [
    ("*", ETAG, True), (" * ", ETAG, True), (ETAG, ETAG, True), ("abc123", ETAG, True),
    ('"ABC123"', ETAG, True), ('"abc123-2"', '"abc123-2"', True),
    ('"abc123"', '"abc123-2"', False), ('"abc123', ETAG, False), ('W/"abc123"', ETAG, False),
    ('"zzz", "abc123"', ETAG, False), ("abc123, abc123", ETAG, False), ("", ETAG, False),
])
def test_write_etag_matches(header: str, current: str, matches: bool) -> None:
    assert write_etag_matches(header, current) is matches


@pytest.mark.parametrize("value", [None, "*", " * "])
def test_write_condition_headers_ok(value: str | None) -> None:
    validate_write_condition_headers(value)


@pytest.mark.parametrize("value", ['"abc"', "", "W/*", "*, \"a\"", 'W/"abc"'])
def test_write_condition_headers_rejected(value: str) -> None:
    """[S3] If-None-Match with an ETag on a write is 501 NotImplemented, with S3's
    ``additionalMessage`` (aws-sdk-ruby#3144, versitygw#2108)."""
    with pytest.raises(S3NotImplemented) as exc:
        validate_write_condition_headers(value)
    assert exc.value.extra == {
        "Header": "If-None-Match",
        "additionalMessage": "We don't accept the provided value of If-None-Match header "
                             "for this API"}
    assert exc.value.status == 501
