"""Decimal integers from the wire, parsed in bounded time (issue 9 item 7). Pure.

Every number a client sends (query parameters, headers, the ``Range`` header) is parsed
here, never by calling ``int()`` on the raw text.

Invariants:
- a number is ASCII digits only, with one leading ``-`` where the caller allows a sign:
  ``"²"``, ``"٣"``, ``"+1"``, ``" 1"``, ``"1_0"`` are not numbers, although ``int()`` or
  ``str.isdigit()`` accept some of them; leading zeros are fine (``"007"`` is 7);
- ``int()`` never sees more digits than ``ceiling`` has, so no input reaches Python's
  4,300-digit limit (a ValueError, which used to escape as a 500) or costs more than a
  scan of the text: a larger magnitude comes back as exactly ``ceiling + 1``;
- ``parse_bounded`` raises the caller's S3 error; nothing here returns a status.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from bleepstore.errors import S3Error

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

_UNSIGNED = re.compile(r"[0-9]+")
_SIGNED = re.compile(r"-?[0-9]+")


def parse_saturated(text: str, ceiling: int, *, signed: bool = False) -> int | None:
    """``text`` as an int whose magnitude is capped at ``ceiling + 1``, or None when it
    is not a decimal number. ``ceiling`` must be >= 0."""
    if (_SIGNED if signed else _UNSIGNED).fullmatch(text) is None:
        return None
    digits = text.lstrip("-").lstrip("0") or "0"
    too_long = len(digits) > len(str(ceiling))
    magnitude = ceiling + 1 if too_long else min(int(digits), ceiling + 1)
    return -magnitude if text.startswith("-") else magnitude


def parse_bounded(text: str | None, low: int, high: int,
                  error: Callable[[], S3Error]) -> int:
    """``text`` as an int in ``low..high`` (inclusive); absent, not a number or out of
    range raises ``error()``."""
    ceiling = max(abs(low), abs(high))
    value = None if text is None else parse_saturated(text, ceiling, signed=low < 0)
    if value is None or not low <= value <= high:
        raise error()
    return value
