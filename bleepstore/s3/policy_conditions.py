"""Bucket policy conditions: IAM's condition operators and wildcards, and whether a
condition holds for a request's values. Pure.

Invariants: values of one key are ORed, a negated operator holds when no value matches;
a key the request lacks fails a positive operator and satisfies a negated one,
``...IfExists`` and ``ForAllValues``; ``Null`` tests presence; an operand that does not
parse (a number, a date, an address, base64) never matches.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

_STRING = ("StringEquals", "StringNotEquals", "StringEqualsIgnoreCase",
           "StringNotEqualsIgnoreCase", "StringLike", "StringNotLike")
_NUMERIC = ("NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals",
            "NumericGreaterThan", "NumericGreaterThanEquals")
_DATE = ("DateEquals", "DateNotEquals", "DateLessThan", "DateLessThanEquals",
         "DateGreaterThan", "DateGreaterThanEquals")
OPERATORS = frozenset((*_STRING, *_NUMERIC, *_DATE, "Bool", "BinaryEquals", "IpAddress",
                       "NotIpAddress", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike",
                       "Null"))
NEGATED = frozenset({"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike",
                     "NumericNotEquals", "DateNotEquals", "NotIpAddress", "ArnNotEquals",
                     "ArnNotLike"})

# A condition key -> the request's values for it (None: the request has none).
Lookup = Callable[[str], Sequence[str] | None]


@dataclass(frozen=True)
class Condition:
    base: str  # the operator without qualifier and IfExists, e.g. "StringLike"
    qualifier: str | None  # "ForAnyValue" | "ForAllValues" | None
    if_exists: bool
    key: str  # normalised (``policy_parse.condition_key``)
    values: tuple[str, ...]


def glob(pattern: str, text: str) -> bool:
    """IAM wildcards: ``*`` any run of characters, ``?`` exactly one. O(len * len)."""
    p = t = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] in ("?", text[t]) and pattern[p] != "*":
            p, t = p + 1, t + 1
        elif p < len(pattern) and pattern[p] == "*":
            star, mark, p = p, t, p + 1
        elif star >= 0:
            mark += 1
            p, t = star + 1, mark
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The network ``text`` names (an address is a /32 or /128), or None."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def _in_network(value: str, expected: str) -> bool:
    net = network(expected)
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return net is not None and ip.version == net.version and ip in net


def _number(text: str) -> Decimal | None:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _instant(text: str) -> float | None:
    number = _number(text)
    if number is not None:
        return float(number)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _binary(value: str, expected: str) -> bool:
    try:
        return base64.b64decode(value, validate=True) == base64.b64decode(expected,
                                                                          validate=True)
    except (binascii.Error, ValueError):
        return False


def _ordered(parse: Callable[[str], Any], test: Callable[[Any, Any], bool]
             ) -> Callable[[str, str], bool]:
    def compare(value: str, expected: str) -> bool:
        left, right = parse(value), parse(expected)
        return left is not None and right is not None and bool(test(left, right))
    return compare


def _string_like(value: str, expected: str) -> bool:
    return glob(expected, value)


def _ignore_case(value: str, expected: str) -> bool:
    return value.casefold() == expected.casefold()


def _bool(value: str, expected: str) -> bool:
    return value.lower() == expected.lower()


_COMPARE: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": operator.eq, "StringEqualsIgnoreCase": _ignore_case,
    "StringLike": _string_like, "Bool": _bool, "BinaryEquals": _binary,
    "IpAddress": _in_network, "ArnEquals": _string_like, "ArnLike": _string_like,
    "NumericEquals": _ordered(_number, operator.eq),
    "NumericLessThan": _ordered(_number, operator.lt),
    "NumericLessThanEquals": _ordered(_number, operator.le),
    "NumericGreaterThan": _ordered(_number, operator.gt),
    "NumericGreaterThanEquals": _ordered(_number, operator.ge),
    "DateEquals": _ordered(_instant, operator.eq),
    "DateLessThan": _ordered(_instant, operator.lt),
    "DateLessThanEquals": _ordered(_instant, operator.le),
    "DateGreaterThan": _ordered(_instant, operator.gt),
    "DateGreaterThanEquals": _ordered(_instant, operator.ge),
}
_POSITIVE = {"StringNotEquals": "StringEquals", "StringNotEqualsIgnoreCase":
             "StringEqualsIgnoreCase", "StringNotLike": "StringLike",
             "NumericNotEquals": "NumericEquals", "DateNotEquals": "DateEquals",
             "NotIpAddress": "IpAddress", "ArnNotEquals": "ArnEquals",
             "ArnNotLike": "ArnLike"}


def holds(c: Condition, lookup: Lookup) -> bool:
    """IAM's condition semantics: values of one key are ORed (a negated operator holds when
    no value matches); a key the request lacks fails a positive operator and satisfies a
    negated one, ``...IfExists`` and ``ForAllValues``; ``Null`` tests presence."""
    found = lookup(c.key)
    missing = not found
    if c.base == "Null":
        return any((v.lower() == "true") == missing for v in c.values)
    if missing:
        return c.if_exists or c.qualifier == "ForAllValues" or (
            c.qualifier is None and c.base in NEGATED)
    negated = c.base in NEGATED
    compare = _COMPARE[_POSITIVE.get(c.base, c.base)]

    def one(value: str) -> bool:
        hit = any(compare(value, e) for e in c.values)
        return not hit if negated else hit

    values = list(found or ())
    if c.qualifier == "ForAllValues" or c.qualifier is None and negated:
        return all(one(v) for v in values)
    return any(one(v) for v in values)
