"""The one listing algorithm (s3-api.md §9.3) plus continuation tokens (§9.1).

Invariants:
- Sources yield items in ascending key order, where keys compare as UTF-8 bytes, which
  is the same as Python's code point order for ``str`` (lone surrogates never occur:
  ``names.validate_key`` rejects them).
- Every key and every common prefix is one entry; a common prefix is emitted at most once
  per page and skipped when it is <= ``after``; ``max_keys == 0`` gives an empty,
  untruncated page; ``is_truncated`` is true exactly when one more entry would follow, and
  ``next_marker`` is then the last entry emitted.
- All keys sharing a common prefix form one contiguous run, so once a prefix is emitted
  (or skipped) the walk SEEKS past the run instead of reading it: the number of ``scan``
  calls is O(entries / batch + common prefixes), independent of how many keys a common
  prefix hides. Rows read stay proportional to the entries returned too: after a batch
  that was mostly hidden keys ending in a seek, the next scan is small (``SEEK_BATCH``),
  so a page of 1,000 huge prefixes reads ~8 rows per prefix, not a full batch each.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from bleepstore.errors import InvalidArgument
from bleepstore.model import ObjectMeta, Page
from bleepstore.s3.numbers import INT32_MAX, parse_saturated

MAX_CODE_POINT = "\U0010ffff"
MIN_BATCH = 32
SEEK_BATCH = 8  # scan size while seeking from one huge common prefix to the next
SPARSE = 24  # a batch with fewer than one entry per SPARSE rows was mostly hidden keys


class Keyed(Protocol):
    @property
    def key(self) -> str: ...


T = TypeVar("T", bound=Keyed)
T_co = TypeVar("T_co", bound=Keyed, covariant=True)
C = TypeVar("C")


class KeySource(Protocol[T_co]):
    """Items with unique keys (objects). ``scan`` returns up to ``limit`` items whose key
    is > ``start_after`` (no bound when None) and starts with ``prefix``, ascending."""

    def scan(self, start_after: str | None, prefix: str, limit: int) -> Sequence[T_co]: ...


class CursorSource(Protocol[T, C]):
    """Items that may share a key (uploads: key, then initiated, then upload id).

    ``scan`` returns items strictly after position ``start_after`` (from the start when
    None) whose key starts with ``prefix``, ascending; ``cursor_of(item)`` is the item's
    position; ``cursor_after_key(k)`` is the position after every item with key <= k.
    """

    def scan(self, start_after: C | None, prefix: str, limit: int) -> Sequence[T]: ...

    def cursor_of(self, item: T) -> C: ...

    def cursor_after_key(self, key: str) -> C: ...


@dataclass(frozen=True)
class Listing(Generic[T]):
    """One page. ``last_item`` is the final entry when that entry is an item (not a
    common prefix) and the page is truncated: uploads need its upload id for markers."""

    contents: tuple[T, ...]
    common_prefixes: tuple[str, ...]
    is_truncated: bool
    next_marker: str | None
    last_item: T | None = None


@dataclass(frozen=True)
class _ByKey(Generic[T]):
    """Adapts a ``KeySource`` (position = key) to ``CursorSource``."""

    source: KeySource[T]

    def scan(self, start_after: str | None, prefix: str, limit: int) -> Sequence[T]:
        return self.source.scan(start_after, prefix, limit)

    def cursor_of(self, item: T) -> str:
        return item.key

    def cursor_after_key(self, key: str) -> str:
        return key


def prefix_upper_bound(prefix: str) -> str | None:
    """Smallest string greater than every string starting with ``prefix`` (None: no bound).

    Increments the last code point, dropping trailing U+10FFFF (carry) and jumping over
    the surrogate block, which has no UTF-8 encoding.
    """
    chars = list(prefix)
    while chars:
        point = ord(chars.pop()) + 1
        if point <= 0x10FFFF:
            if 0xD800 <= point <= 0xDFFF:
                point = 0xE000
            return "".join(chars) + chr(point)
    return None


def common_prefix(key: str, prefix: str, delimiter: str | None) -> str | None:
    """The §9.3 common prefix ``key`` rolls up into, or None when it is listed itself."""
    if not delimiter:
        return None
    i = key.find(delimiter, len(prefix))
    return None if i < 0 else key[: i + len(delimiter)]


def _seek_key(done: str) -> str:
    # NOTE: no finite string sorts after every key starting with ``done``; done+U+10FFFF
    # passes all real keys. A key continuing with U+10FFFF is still skipped correctly by
    # the ``done`` check, just read instead of jumped over.
    return done + MAX_CODE_POINT


class _Walk(Generic[T, C]):
    """The mutable state of building one page."""

    def __init__(self, source: CursorSource[T, C], prefix: str, delimiter: str | None,
                 max_keys: int, after: str | None) -> None:
        self.source, self.prefix, self.delimiter = source, prefix, delimiter or None
        self.max_keys, self.after = max_keys, after
        self.contents: list[T] = []
        self.prefixes: list[str] = []
        self.last: T | str | None = None
        self.done: str | None = None  # latest common prefix emitted or skipped

    def result(self, truncated: bool) -> Listing[T]:
        last = self.last if truncated else None
        marker = last if isinstance(last, str) or last is None else last.key
        return Listing(tuple(self.contents), tuple(self.prefixes), truncated, marker,
                       None if isinstance(last, str) else last)

    def take(self, item: T) -> bool:
        """Account for one item; False when it is an entry beyond ``max_keys``."""
        cp = common_prefix(item.key, self.prefix, self.delimiter)
        if cp is not None and (cp == self.done or (self.after is not None and cp <= self.after)):
            self.done = cp
            return True
        if len(self.contents) + len(self.prefixes) >= self.max_keys:
            return False
        if cp is None:
            self.contents.append(item)
            self.last = item
        else:
            self.prefixes.append(cp)
            self.last = self.done = cp
        return True

    @property
    def entries(self) -> int:
        return len(self.contents) + len(self.prefixes)

    def next_cursor(self, last: T) -> tuple[C, bool]:
        """Where the next scan starts after a full batch ending with ``last``, and whether
        that is a seek past the rest of a common prefix."""
        cp = common_prefix(last.key, self.prefix, self.delimiter)
        if cp is not None and cp == self.done and last.key < _seek_key(cp):
            return self.source.cursor_after_key(_seek_key(cp)), True
        return self.source.cursor_of(last), False

    def first_cursor(self, start: C | None) -> C | None:
        """Skip straight past the group ``after`` lies in: its prefix is <= after."""
        if self.after is None:
            return start
        cp = common_prefix(self.after, self.prefix, self.delimiter)
        if cp is not None and self.after.startswith(self.prefix):
            self.done = cp
            if self.after < _seek_key(cp):
                return self.source.cursor_after_key(_seek_key(cp))
        return start if start is not None else self.source.cursor_after_key(self.after)


def build_page_from(source: CursorSource[T, C], *, prefix: str, delimiter: str | None,
                    max_keys: int, after: str | None, start: C | None = None) -> Listing[T]:
    """Build one page from a cursor source. ``after`` is the key-level continuation point
    (common prefixes <= it are skipped); ``start`` optionally refines where the scan
    begins (uploads: key-marker + upload-id-marker), default: after every key <= after."""
    walk = _Walk(source, prefix, delimiter, max_keys, after)
    if max_keys <= 0:
        return walk.result(False)
    full = size = max(max_keys + 1, MIN_BATCH)
    cursor = walk.first_cursor(start)
    while True:
        items = source.scan(cursor, prefix, size)
        before = walk.entries
        for item in items:
            if not walk.take(item):
                return walk.result(True)
        if len(items) < size:
            return walk.result(False)
        cursor, seeking = walk.next_cursor(items[-1])
        useful = walk.entries - before
        # NOTE: scans return whole lists, so every row of a batch costs; while seeking
        # through huge common prefixes keep batches small, otherwise grow back to full.
        sparse = useful <= 1 or useful * SPARSE < len(items)
        size = min(SEEK_BATCH, full) if seeking and sparse else min(full, size * 2)


def build_page(source: KeySource[T], *, prefix: str, delimiter: str | None, max_keys: int,
               after: str | None) -> Listing[T]:
    """Build one page from a source of uniquely keyed items (objects)."""
    return build_page_from(_ByKey(source), prefix=prefix, delimiter=delimiter,
                           max_keys=max_keys, after=after)


def to_page(listing: Listing[ObjectMeta]) -> Page:
    """The model's ``Page`` for an object listing."""
    return Page(listing.contents, listing.common_prefixes, listing.is_truncated,
                listing.next_marker)


# ---------------------------------------------------------------- tokens and limits

def encode_token(value: str) -> str:
    """URL-safe base64 of the UTF-8 bytes, without padding (§9.1)."""
    return base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii").rstrip("=")


def decode_token(token: str) -> str:
    """Inverse of ``encode_token``; anything else is ``InvalidArgument``."""
    try:
        raw = token.encode("ascii")
        if not raw:
            raise ValueError("empty token")
        data = base64.b64decode(raw + b"=" * (-len(raw) % 4), altchars=b"-_", validate=True)
        return data.decode("utf-8")
    except (ValueError, binascii.Error):  # UnicodeError is a ValueError
        raise InvalidArgument("The continuation token provided is incorrect",
                              ArgumentName="continuation-token") from None


def parse_max_keys(value: str | None, name: str = "max-keys", default: int = 1000,
                   cap: int = 1000) -> int:
    """Parse a page-size parameter: default when absent, capped, 0 allowed."""
    if value is None:
        return default
    number = parse_saturated(value, INT32_MAX, signed=True)
    if number is None or number > INT32_MAX:
        raise InvalidArgument(f"Provided {name} not an integer or within integer range",
                              ArgumentName=name, ArgumentValue=value)
    if number < 0:
        raise InvalidArgument(f"Argument {name} must be an integer between 0 and {INT32_MAX}",
                              ArgumentName=name, ArgumentValue=value)
    return min(number, cap)
