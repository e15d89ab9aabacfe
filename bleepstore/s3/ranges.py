"""The ``Range`` header (s3-api.md §10) and ``x-amz-copy-source-range`` (§14.3). Pure.

Invariants:
- ``parse_range`` returns ``None`` (serve the whole object, 200) or ``(first, last)`` with
  ``0 <= first <= last < size`` (serve 206), or raises ``InvalidRange`` (416) carrying
  ``Content-Range: bytes */<size>``.
- Syntax it does not understand (other units, multiple ranges, ``a-b`` with a > b,
  garbage) is ignored, as S3 does. A satisfiable-looking range on an empty object is 416.
- ``parse_copy_source_range`` returns ``(first, last)`` within the source, or raises
  ``InvalidArgument``; it never ignores a value.
- Offsets of any length are accepted (never a 500): they saturate at 2**63 (``numbers``),
  past every object size. NOTE: so two offsets that both exceed 2**63 - 1 compare equal.
"""

from __future__ import annotations

import re

from bleepstore.errors import InvalidArgument, InvalidRange
from bleepstore.s3.numbers import INT64_MAX, parse_saturated

_SPEC = re.compile(r"([0-9]*)-([0-9]*)")
_COPY_RANGE = re.compile(r"bytes=([0-9]+)-([0-9]+)")
_UNIT = "bytes="


def _offset(digits: str) -> int:
    value = parse_saturated(digits, INT64_MAX)
    assert value is not None  # callers pass a [0-9]+ regex group
    return value


def _unsatisfiable(header: str, size: int) -> InvalidRange:
    err = InvalidRange(RangeRequested=header, ActualObjectSize=size)
    err.with_header("Content-Range", f"bytes */{size}")
    return err


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Resolve a ``Range`` header against an object of ``size`` bytes (inclusive bounds)."""
    if header is None:
        return None
    text = header.strip()
    if text[: len(_UNIT)].lower() != _UNIT or "," in text:
        return None
    m = _SPEC.fullmatch(text[len(_UNIT):].strip())
    if m is None or (not m[1] and not m[2]):
        return None
    if not m[1]:  # suffix range: the last n bytes
        n = _offset(m[2])
        if n == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return max(0, size - n), size - 1
    first = _offset(m[1])
    last = _offset(m[2]) if m[2] else size - 1
    if m[2] and first > last:
        return None
    if first >= size:
        raise _unsatisfiable(header, size)
    return first, min(last, size - 1)


def parse_copy_source_range(value: str | None, size: int) -> tuple[int, int] | None:
    """UploadPartCopy's ``bytes=first-last`` against a source of ``size`` bytes."""
    if value is None:
        return None
    m = _COPY_RANGE.fullmatch(value.strip())
    if m is None or _offset(m[1]) > _offset(m[2]):
        raise InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where "
            "first and last are the zero-based offsets of the first and last bytes to copy",
            ArgumentName="x-amz-copy-source-range", ArgumentValue=value)
    first, last = _offset(m[1]), _offset(m[2])
    if last >= size:
        raise InvalidArgument(
            f"Range specified is not valid for source object of size: {size}",
            ArgumentName="x-amz-copy-source-range", ArgumentValue=value)
    return first, last
