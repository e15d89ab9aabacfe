"""The ``Range`` header (s3-api.md §10). Pure.

Invariants:
- ``parse_range`` returns ``None`` (serve the whole object, 200) or ``(first, last)`` with
  ``0 <= first <= last < size`` (serve 206), or raises ``InvalidRange`` (416) carrying
  ``Content-Range: bytes */<size>``.
- Syntax it does not understand (other units, multiple ranges, ``a-b`` with a > b,
  garbage) is ignored, as S3 does. A satisfiable-looking range on an empty object is 416.
"""

from __future__ import annotations

import re

from bleepstore.errors import InvalidRange

_SPEC = re.compile(r"([0-9]*)-([0-9]*)")
_UNIT = "bytes="


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
        n = int(m[2])
        if n == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return max(0, size - n), size - 1
    first = int(m[1])
    last = int(m[2]) if m[2] else size - 1
    if m[2] and first > last:
        return None
    if first >= size:
        raise _unsatisfiable(header, size)
    return first, min(last, size - 1)
