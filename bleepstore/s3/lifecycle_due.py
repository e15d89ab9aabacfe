"""When a lifecycle rule's action falls due for a version of a key, or for an incomplete
multipart upload (pure; the rules are ``s3.lifecycle``'s, the scans ``core/lifecycle.py``'s).

Invariants:
- Times are integer milliseconds since the epoch. A "day" is ``day_ms`` (86,400,000 in
  production; tests shorten it) and "midnight" a multiple of it: an age-based action falls due
  at the first midnight at or after ``time + days``, as AWS rounds up.
- Of several matching enabled rules the earliest action wins (the first listed on a tie: AWS
  honours the shorter expiration).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from bleepstore.model import ObjectVersion
from bleepstore.s3.lifecycle import Rule, Tag

EXPIRE, DELETE_VERSION = "expire", "delete-version"  # DeleteObject without / with versionId


@dataclass(frozen=True)
class VersionState:
    """What a rule reads of one version of a key (an object or a delete marker)."""

    key: str
    size: int  # a delete marker: 0
    tags: tuple[Tag, ...]  # a delete marker: none
    last_modified_ms: int
    is_current: bool  # the key's latest entry
    noncurrent_since_ms: int | None = None  # when the next newer entry was written
    delete_marker: bool = False
    newer_noncurrent: int = 0  # noncurrent entries (markers included) newer than this one
    sole: bool = False  # nothing else in the key's history: a lone marker is "expired"


@dataclass(frozen=True)
class Due:
    at_ms: int
    action: str  # EXPIRE or DELETE_VERSION
    rule_id: str


def iso_to_ms(iso: str) -> int:
    dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return int(dt.replace(tzinfo=dt.tzinfo or UTC).timestamp() * 1000 + 0.5)


@lru_cache(maxsize=4096)
def _date_ms(iso: str) -> int:
    return iso_to_ms(iso)


def round_up(t_ms: int, day_ms: int) -> int:
    """The first midnight at or after ``t_ms``."""
    return -(-t_ms // day_ms) * day_ms


def after_days(t_ms: int, days: int, day_ms: int) -> int:
    """``days`` after ``t_ms``, rounded up to the next midnight (AWS's age arithmetic)."""
    return round_up(t_ms + days * day_ms, day_ms)


def _rule_due(r: Rule, v: VersionState, day_ms: int) -> int | None:
    if v.is_current and not v.delete_marker:  # Expiration of the current version
        if r.days is not None:
            return after_days(v.last_modified_ms, r.days, day_ms)
        return _date_ms(r.date) if r.date is not None else None
    if v.is_current:  # a marker on top: only a lone one expires, by either form
        if not v.sole:
            return None
        if r.expired_marker:
            return round_up(v.last_modified_ms, day_ms)
        return after_days(v.last_modified_ms, r.days, day_ms) if r.days is not None else None
    if r.noncurrent_days is None or v.noncurrent_since_ms is None:
        return None
    if r.newer_noncurrent is not None and v.newer_noncurrent < r.newer_noncurrent:
        return None  # one of the N newest noncurrent versions: kept whatever its age
    return after_days(v.noncurrent_since_ms, r.noncurrent_days, day_ms)


def due(rules: Sequence[Rule], v: VersionState, day_ms: int) -> Due | None:
    """The earliest action an enabled, matching rule sets for ``v`` (the first listed on a
    tie: AWS honours the shorter expiration), or None."""
    best: tuple[int, str] | None = None
    for r in rules:
        if r.enabled and r.filter.matches(v.key, v.size, v.tags):
            at = _rule_due(r, v, day_ms)
            if at is not None and (best is None or at < best[0]):
                best = (at, r.id)
    if best is None:
        return None
    return Due(best[0], EXPIRE if v.is_current and not v.delete_marker else DELETE_VERSION,
               best[1])


def action_for(rules: Sequence[Rule], v: VersionState, now_ms: int, day_ms: int) -> str | None:
    """EXPIRE (delete without a version id: a delete marker when versioned),
    DELETE_VERSION (remove this very version or marker), or None: nothing is due yet."""
    d = due(rules, v, day_ms)
    return d.action if d is not None and d.at_ms <= now_ms else None


def abort_due(rules: Sequence[Rule], key: str, initiated_ms: int, day_ms: int) -> Due | None:
    """When an incomplete multipart upload of ``key`` is aborted (prefix rules only)."""
    best: tuple[int, str] | None = None
    for r in rules:
        if r.enabled and r.abort_days is not None and r.filter.matches(key, 0, ()):
            at = after_days(initiated_ms, r.abort_days, day_ms)
            if best is None or at < best[0]:
                best = (at, r.id)
    return Due(best[0], "abort", best[1]) if best is not None else None


def states_of(history: Sequence[ObjectVersion]) -> list[VersionState]:
    """A key's entries, newest first (its current row, if any, first) -> their states."""
    states: list[VersionState] = []
    for i, entry in enumerate(history):
        m = entry.meta
        states.append(VersionState(
            m.key, 0 if entry.delete_marker else m.size, () if entry.delete_marker else m.tags,
            iso_to_ms(m.last_modified), i == 0,
            iso_to_ms(history[i - 1].meta.last_modified) if i else None, entry.delete_marker,
            max(i - 1, 0), len(history) == 1))
    return states


def phases(rules: Sequence[Rule]) -> tuple[bool, bool, bool]:
    """Which scans the rules need: (current versions, version history, uploads)."""
    on = [r for r in rules if r.enabled]
    return (any(r.days is not None or r.date is not None for r in on),
            any(r.noncurrent_days is not None or r.expired_marker or r.days is not None
                for r in on),
            any(r.abort_days is not None for r in on))
