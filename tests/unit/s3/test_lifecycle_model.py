"""Rule evaluation (s3/lifecycle.py) against a plain model of AWS's documented rules.

The model is written from the user guide's sentences, not from the implementation: dates are
``datetime`` arithmetic (midnight UTC for a real day) or exact fractions (a shortened day),
filters are set inclusions, and "the shorter expiration policy is honoured".
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from hypothesis import example, given
from hypothesis import strategies as st

from bleepstore.s3 import lifecycle as lc
from bleepstore.s3 import lifecycle_due as lcd

REAL_DAY = 86_400_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = 1_600_000_000_000  # 2020-09-13, milliseconds


def model_next_midnight(t_ms: int, day_ms: int) -> int:
    """Round up to the next midnight: a real one for a real day, a multiple otherwise."""
    if day_ms == REAL_DAY:
        moment = EPOCH + timedelta(milliseconds=t_ms)
        midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        if midnight < moment:
            midnight += timedelta(days=1)
        return (midnight - EPOCH) // timedelta(milliseconds=1)
    return math.ceil(Fraction(t_ms, day_ms)) * day_ms


def model_matches(flt: lc.Filter, v: lcd.VersionState) -> bool:
    if flt.prefix and v.key[:len(flt.prefix)] != flt.prefix:
        return False
    if not set(flt.tags) <= set(v.tags):
        return False
    if flt.greater_than is not None and v.size <= flt.greater_than:
        return False
    return flt.less_than is None or v.size < flt.less_than


def model_when(r: lc.Rule, v: lcd.VersionState, day_ms: int) -> int | None:
    """When rule ``r`` acts on ``v`` (None: it never does)."""
    def age(start: int, days: int) -> int:
        return model_next_midnight(start + days * day_ms, day_ms)

    if not v.is_current:  # noncurrent: NoncurrentVersionExpiration, both limits exceeded
        if r.noncurrent_days is None or v.noncurrent_since_ms is None:
            return None
        if r.newer_noncurrent and v.newer_noncurrent < r.newer_noncurrent:
            return None
        return age(v.noncurrent_since_ms, r.noncurrent_days)
    if v.delete_marker:  # an expired object delete marker: the only version left
        if not v.sole:
            return None
        if r.expired_marker is True:
            return age(v.last_modified_ms, 0)
        return age(v.last_modified_ms, r.days) if r.days else None
    if r.days:
        return age(v.last_modified_ms, r.days)
    if r.date:
        return int((datetime.fromisoformat(r.date.replace("Z", "+00:00")) - EPOCH)
                   / timedelta(milliseconds=1))
    return None


def model_action(rules: list[lc.Rule], v: lcd.VersionState, now_ms: int,
                 day_ms: int) -> str | None:
    times = [t for r in rules if r.enabled and model_matches(r.filter, v)
             if (t := model_when(r, v, day_ms)) is not None]
    if not times or min(times) > now_ms:
        return None
    return "expire" if v.is_current and not v.delete_marker else "delete-version"


_keys = st.sampled_from(("a", "a/b", "logs/x", "logs/", "b"))
_tagsets = st.lists(st.sampled_from((("env", "dev"), ("env", "prod"), ("t", ""), ("x", "1"))),
                    max_size=3, unique_by=lambda t: t[0]).map(tuple)


@st.composite
def filters(draw: st.DrawFn) -> lc.Filter:
    prefix = draw(st.none() | st.sampled_from(("", "a", "logs/", "a/")))
    tags = draw(_tagsets)
    gt = draw(st.none() | st.integers(0, 20))
    lt = draw(st.none() | st.integers((gt or 0) + 1, 40))
    return lc.Filter("and", prefix, tags, gt, lt)


@st.composite
def rules(draw: st.DrawFn) -> lc.Rule:
    kind = draw(st.sampled_from(("days", "date", "marker", "noncurrent", "mixed")))
    days = draw(st.integers(1, 40)) if kind in ("days", "mixed") else None
    date = (f"2020-09-{draw(st.integers(1, 30)):02d}T00:00:00.000Z" if kind == "date"
            else None)
    marker = draw(st.booleans()) if kind == "marker" else None
    noncurrent = draw(st.integers(1, 40)) if kind in ("noncurrent", "mixed") else None
    newer = draw(st.none() | st.integers(1, 4)) if noncurrent else None
    return lc.Rule(draw(st.sampled_from("rstu")), draw(st.booleans()), draw(filters()), days,
                   date, marker, noncurrent, newer)


@st.composite
def versions(draw: st.DrawFn) -> lcd.VersionState:
    is_current = draw(st.booleans())
    marker = draw(st.booleans())
    lm = T0 + draw(st.integers(0, 40 * REAL_DAY))
    since = None if is_current else lm + draw(st.integers(0, 10 * REAL_DAY))
    return lcd.VersionState(
        draw(_keys), 0 if marker else draw(st.integers(0, 50)), () if marker else draw(_tagsets),
        lm, is_current, since, marker, 0 if is_current else draw(st.integers(0, 6)),
        draw(st.booleans()) if is_current else False)


@given(st.lists(rules(), min_size=1, max_size=4), versions(),
       st.integers(T0, T0 + 120 * REAL_DAY), st.sampled_from((REAL_DAY, 1000, 3_600_000, 7)))
@example([lc.Rule("r", True, lc.Filter("all"), days=1)],
         lcd.VersionState("k", 1, (), REAL_DAY - 1, True), 2 * REAL_DAY, REAL_DAY)
def test_action_matches_the_model(rs: list[lc.Rule], v: lcd.VersionState, now: int,
                                  day_ms: int) -> None:
    assert lcd.action_for(rs, v, now, day_ms) == model_action(rs, v, now, day_ms)


@given(st.integers(0, 2**45), st.integers(1, 3650), st.sampled_from((REAL_DAY, 1000, 7)))
def test_age_is_never_early_and_at_most_a_day_late(t: int, days: int, day_ms: int) -> None:
    at = lcd.after_days(t, days, day_ms)
    assert at == model_next_midnight(t + days * day_ms, day_ms)
    assert t + days * day_ms <= at < t + (days + 1) * day_ms and at % day_ms == 0
