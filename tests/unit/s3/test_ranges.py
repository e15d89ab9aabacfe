"""Range header (s3-api.md §10): exhaustive table + a property test against a model."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bleepstore.errors import InvalidRange
from bleepstore.s3.ranges import parse_range

E = "416"
TABLE: list[tuple[str | None, int, tuple[int, int] | None | str]] = [
    (None, 10, None),
    ("bytes=0-4", 10, (0, 4)),
    ("bytes=0-0", 10, (0, 0)),
    ("bytes=5-100", 10, (5, 9)),
    ("bytes=9-9", 10, (9, 9)),
    ("bytes=10-20", 10, E),
    ("bytes=10-", 10, E),
    ("bytes=3-", 10, (3, 9)),
    ("bytes=0-", 10, (0, 9)),
    ("bytes=-3", 10, (7, 9)),
    ("bytes=-10", 10, (0, 9)),
    ("bytes=-100", 10, (0, 9)),
    ("bytes=-0", 10, E),
    ("bytes=-0", 0, E),
    ("bytes=0-0", 0, E),
    ("bytes=0-", 0, E),
    ("bytes=-5", 0, E),
    ("bytes=5-2", 10, None),          # a > b: ignored
    ("bytes=5-2", 0, None),
    ("bytes=0-1,5-6", 10, None),      # multiple ranges: ignored
    ("bytes=0-1,", 10, None),
    ("items=0-1", 10, None),          # unknown unit
    ("bytes 0-1", 10, None),
    ("bytes=", 10, None),
    ("bytes=-", 10, None),
    ("bytes=a-b", 10, None),
    ("bytes=1-2-3", 10, None),
    ("bytes=+1-2", 10, None),
    ("bytes=\u0661-2", 10, None),     # non-ASCII digit
    ("", 10, None),
    ("BYTES=1-2", 10, (1, 2)),        # unit is case-insensitive (RFC 7233)
    ("bytes= 1-2 ", 10, (1, 2)),
    ("bytes=00-01", 10, (0, 1)),
    ("bytes=99999999999999999999-", 10, E),
]


@pytest.mark.parametrize("header, size, expected", TABLE)
def test_range_table(header: str | None, size: int,
                     expected: tuple[int, int] | None | str) -> None:
    if expected == E:
        with pytest.raises(InvalidRange) as exc:
            parse_range(header, size)
        assert exc.value.status == 416
        assert exc.value.extra == {"RangeRequested": header, "ActualObjectSize": str(size)}
        assert exc.value.headers == {"Content-Range": f"bytes */{size}"}
    else:
        assert parse_range(header, size) == expected


def model(header: str, size: int) -> tuple[int, int] | None | str:
    """A tiny independent model of §10."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", header, re.ASCII)
    if not m or m.group(0).count(",") or (m[1] == "" and m[2] == ""):
        return None
    if m[1] == "":
        n = int(m[2])
        return E if n == 0 or size == 0 else (max(0, size - n), size - 1)
    a, b = int(m[1]), (int(m[2]) if m[2] else None)
    if b is not None and a > b:
        return None
    if a >= size:
        return E
    return (a, size - 1 if b is None else min(b, size - 1))


nums = st.one_of(st.just(""), st.integers(0, 40).map(str))
headers = st.one_of(
    st.builds(lambda a, b: f"bytes={a}-{b}", nums, nums),
    st.text(alphabet="bytes=0123456789-,", max_size=12),
)


@given(headers, st.integers(0, 30))
@example("bytes=0-", 0)
@example("bytes=-1", 1)
def test_range_matches_model(header: str, size: int) -> None:
    expected = model(header, size)
    if expected == E:
        with pytest.raises(InvalidRange):
            parse_range(header, size)
        return
    got = parse_range(header, size)
    assert got == expected
    if got is not None:
        first, last = got
        assert 0 <= first <= last < size
