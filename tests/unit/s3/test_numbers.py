"""Bounded decimal parsing (issue 9 item 7): tables, properties against ``int()`` as the
model, and the hostile-input helpers that use it or sit beside it (ranges, page sizes,
transfer codings, response overrides)."""

from __future__ import annotations

import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bleepstore import errors
from bleepstore.s3.headers import check_transfer_encoding, override_value
from bleepstore.s3.listing import parse_max_keys
from bleepstore.s3.numbers import INT32_MAX, INT64_MAX, parse_bounded, parse_saturated
from bleepstore.s3.ranges import parse_copy_source_range, parse_range

HUGE = "9" * 5000  # past int()'s 4,300-digit limit: int(HUGE) raises ValueError
assert len(HUGE) > sys.get_int_max_str_digits()

SATURATED: list[tuple[str, int, bool, int | None]] = [  # (text, ceiling, signed, result)
    ("0", 10, False, 0),
    ("7", 10, False, 7),
    ("10", 10, False, 10),
    ("11", 10, False, 11),
    ("12", 10, False, 11),
    ("100", 10, False, 11),
    ("007", 10, False, 7),
    ("0" * 5000, 10, False, 0),
    ("0" * 5000 + "3", 10, False, 3),
    (HUGE, 10, False, 11),
    ("1" + "0" * 4400, INT64_MAX, False, INT64_MAX + 1),
    (str(INT64_MAX), INT64_MAX, False, INT64_MAX),
    (str(INT64_MAX + 1), INT64_MAX, False, INT64_MAX + 1),
    ("-5", 10, True, -5),
    ("-0", 10, True, 0),
    ("-" + HUGE, 10, True, -11),
    ("-5", 10, False, None),  # a sign only where the caller allows one
    ("", 10, False, None),
    ("-", 10, True, None),
    ("--1", 10, True, None),
    ("+1", 10, True, None),
    (" 1", 10, False, None),
    ("1 ", 10, False, None),
    ("1\n", 10, False, None),
    ("1_000", 10000, False, None),
    ("1.5", 10, False, None),
    ("1e3", 10000, False, None),
    ("0x10", 100, False, None),
    ("\u00b2", 10, False, None),  # "²": str.isdigit() is True
    ("\u0663", 10, False, None),  # "٣": int() accepts it
    ("\uff11", 10, False, None),  # fullwidth "1": int() accepts it too
]


@pytest.mark.parametrize("text,ceiling,signed,result", SATURATED)
def test_parse_saturated_table(text: str, ceiling: int, signed: bool,
                               result: int | None) -> None:
    assert parse_saturated(text, ceiling, signed=signed) == result


@given(st.integers(min_value=-(10**40), max_value=10**40), st.integers(0, 10**20),
       st.integers(0, 30))
@example(value=INT32_MAX + 1, ceiling=INT32_MAX, zeros=0)
@example(value=-(INT32_MAX + 1), ceiling=INT32_MAX, zeros=3)
def test_parse_saturated_is_int_clamped(value: int, ceiling: int, zeros: int) -> None:
    text = ("-" if value < 0 else "") + "0" * zeros + str(abs(value))
    expected = max(-(ceiling + 1), min(value, ceiling + 1))
    assert parse_saturated(text, ceiling, signed=True) == expected
    assert parse_saturated(text, ceiling) == (None if value < 0 else expected)


@given(st.text(max_size=40))
def test_parse_saturated_accepts_only_ascii_decimals(text: str) -> None:
    plain = text.isascii() and text.removeprefix("-").isdigit()
    assert (parse_saturated(text, INT64_MAX, signed=True) is not None) == plain


def test_a_megabyte_of_digits_is_scanned_never_converted() -> None:
    assert parse_saturated("9" * 1_000_000, INT64_MAX) == INT64_MAX + 1
    assert parse_saturated("0" * 1_000_000 + "12", INT64_MAX) == 12


class Refused(errors.InvalidArgument):
    pass


BOUNDED: list[tuple[str | None, int, int, int | None]] = [  # None result: refused
    ("1", 1, 10000, 1),
    ("10000", 1, 10000, 10000),
    ("0", 1, 10000, None),
    ("10001", 1, 10000, None),
    (HUGE, 1, 10000, None),
    ("00000000000000000000042", 1, 10000, 42),
    (None, 1, 10000, None),
    ("", 1, 10000, None),
    ("-1", 1, 10000, None),
    ("-1", -5, 5, -1),
    ("-" + HUGE, -5, 5, None),
    ("\u00b2", 0, 10, None),
    (str(INT32_MAX), 0, INT32_MAX, INT32_MAX),
    (str(INT32_MAX + 1), 0, INT32_MAX, None),
]


@pytest.mark.parametrize("text,low,high,result", BOUNDED)
def test_parse_bounded_table(text: str | None, low: int, high: int,
                             result: int | None) -> None:
    if result is None:
        with pytest.raises(Refused):
            parse_bounded(text, low, high, lambda: Refused("no"))
    else:
        assert parse_bounded(text, low, high, lambda: Refused("no")) == result


@given(st.integers(-(10**12), 10**12), st.integers(-1000, 1000), st.integers(0, 1000))
def test_parse_bounded_matches_a_range_check(value: int, low: int, width: int) -> None:
    high = low + width
    if low <= value <= high:
        assert parse_bounded(str(value), low, high, lambda: Refused("no")) == value
    else:
        with pytest.raises(Refused):
            parse_bounded(str(value), low, high, lambda: Refused("no"))


# --- the callers: page sizes, Range, x-amz-copy-source-range -----------------------------

@pytest.mark.parametrize("value,result", [
    (None, 1000), ("0", 0), ("5", 5), ("1000", 1000), ("2147483647", 1000),
    ("2147483648", "not an integer"), (HUGE, "not an integer"), ("abc", "not an integer"),
    ("\u00b2", "not an integer"), ("-1", "between 0"), ("-" + HUGE, "between 0"),
])
def test_parse_max_keys(value: str | None, result: int | str) -> None:
    if isinstance(result, int):
        assert parse_max_keys(value) == result
        return
    with pytest.raises(errors.InvalidArgument) as exc:
        parse_max_keys(value, "max-uploads")
    assert result in exc.value.msg and exc.value.extra["ArgumentName"] == "max-uploads"


@pytest.mark.parametrize("header,size,result", [
    (f"bytes={HUGE}-", 10, "416"),
    (f"bytes=0-{HUGE}", 10, (0, 9)),
    (f"bytes=-{HUGE}", 10, (0, 9)),
    (f"bytes={HUGE}-0", 10, None),  # first > last: ignored
    (f"bytes={HUGE}-{HUGE}", 10, "416"),
    (f"bytes=0-{HUGE}", 0, "416"),
    (f"bytes={'0' * 5000}5-7", 10, (5, 7)),
])
def test_parse_range_with_huge_offsets(header: str, size: int,
                                       result: tuple[int, int] | None | str) -> None:
    if result == "416":
        with pytest.raises(errors.InvalidRange):
            parse_range(header, size)
    else:
        assert parse_range(header, size) == result


@pytest.mark.parametrize("value,size,result", [
    (None, 10, None),
    ("bytes=0-9", 10, (0, 9)),
    (" bytes=2-3 ", 10, (2, 3)),
    ("bytes=0-10", 10, "not valid for source object of size: 10"),
    (f"bytes=0-{HUGE}", 10, "not valid for source object"),
    (f"bytes={HUGE}-{HUGE}", 10, "not valid for source object"),
    (f"bytes={HUGE}-1", 10, "must be of the form"),
    ("bytes=5-4", 10, "must be of the form"),
    ("bytes=\u0663-\u0664", 10, "must be of the form"),
    ("bytes=0-", 10, "must be of the form"),
    ("bytes=-5", 10, "must be of the form"),
    ("items=0-1", 10, "must be of the form"),
])
def test_parse_copy_source_range(value: str | None, size: int,
                                 result: tuple[int, int] | None | str) -> None:
    if isinstance(result, str):
        with pytest.raises(errors.InvalidArgument) as exc:
            parse_copy_source_range(value, size)
        assert result in exc.value.msg
        assert exc.value.extra["ArgumentName"] == "x-amz-copy-source-range"
    else:
        assert parse_copy_source_range(value, size) == result


# --- beside the numbers: transfer codings and response overrides -------------------------

@pytest.mark.parametrize("value", [None, "chunked", "Chunked", " chunked\t", "CHUNKED"])
def test_plain_chunked_is_the_only_transfer_coding(value: str | None) -> None:
    check_transfer_encoding(value)


@pytest.mark.parametrize("value", ["gzip, chunked", "identity, chunked", "deflate,chunked",
                                   "compress, chunked", "chunked, chunked", "gzip", "br",
                                   "chunked, gzip", "", ","])
def test_other_transfer_codings_are_not_implemented(value: str) -> None:
    with pytest.raises(errors.S3NotImplemented) as exc:
        check_transfer_encoding(value)
    assert exc.value.status == 501 and exc.value.extra == {"Header": "Transfer-Encoding"}


@pytest.mark.parametrize("value", ["text/plain\r\nX-Injected: 1", "a\nb", "a\rb", "\x00",
                                   "\x1b[0m", "\x7f", "\x85", "\x9f"])
def test_override_with_control_characters_is_invalid_argument(value: str) -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        override_value(value, "response-content-type")
    assert exc.value.extra["ArgumentName"] == "response-content-type"


@pytest.mark.parametrize("value,wire", [
    ("text/plain", b"text/plain"),
    ("text/plain;\tcharset=utf-8", b"text/plain;\tcharset=utf-8"),
    ('attachment; filename="\u20ac.txt"', 'attachment; filename="\u20ac.txt"'.encode()),
    ("caf\u00e9", "caf\u00e9".encode()),
    ("", b""),
])
def test_override_goes_out_as_utf8(value: str, wire: bytes) -> None:
    assert override_value(value, "response-content-disposition").encode("latin-1") == wire


@given(st.text())
def test_override_is_a_valid_header_value_or_refused(value: str) -> None:
    """What gunicorn sends: SP, HTAB, VCHAR and obs-text, one byte per character."""
    try:
        out = override_value(value, "response-expires")
    except errors.InvalidArgument:
        return
    data = out.encode("latin-1")
    assert all(b in (0x09, 0x20) or 0x21 <= b <= 0x7E or b >= 0x80 for b in data)
