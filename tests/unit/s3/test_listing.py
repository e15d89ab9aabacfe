"""Listing (s3-api.md §9.3) against an independent in-memory model, tokens, max-keys."""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bleepstore.s3.listing as listing
from bleepstore.errors import InvalidArgument
from bleepstore.model import ObjectMeta, Page
from bleepstore.s3.listing import (
    Listing,
    build_page,
    build_page_from,
    decode_token,
    encode_token,
    parse_max_keys,
    prefix_upper_bound,
    to_page,
)

# ---------------------------------------------------------------- the model (independent)

Entry = tuple[str, str]  # ("key" | "prefix", value)


def model_entries(keys: Sequence[str], prefix: str, delimiter: str | None,
                  after: str | None) -> list[Entry]:
    """Plain S3 rules: filter, roll up, drop prefixes <= after, dedupe; no paging."""
    out: list[Entry] = []
    seen: set[str] = set()
    for key in sorted(set(keys), key=lambda k: k.encode("utf-8")):
        if not key.startswith(prefix) or (after is not None and key <= after):
            continue
        rest = key[len(prefix):]
        if delimiter and delimiter in rest:
            cp = prefix + rest[: rest.index(delimiter) + len(delimiter)]
            if (after is not None and cp <= after) or cp in seen:
                continue
            seen.add(cp)
            out.append(("prefix", cp))
        else:
            out.append(("key", key))
    return out


def model_page(keys: Sequence[str], prefix: str, delimiter: str | None, max_keys: int,
               after: str | None) -> tuple[list[Entry], bool]:
    entries = model_entries(keys, prefix, delimiter, after)
    return entries[:max_keys], max_keys > 0 and len(entries) > max_keys


# ---------------------------------------------------------------- an in-memory source

@dataclass(frozen=True)
class Item:
    key: str


class ListSource:
    """Sorted list + bisect: what an indexed range scan does. Counts calls and rows."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = sorted(set(keys))
        self.calls = 0
        self.rows = 0

    def scan(self, start_after: str | None, prefix: str, limit: int) -> list[Item]:
        self.calls += 1
        i = bisect.bisect_left(self.keys, prefix)
        if start_after is not None:
            i = max(i, bisect.bisect_right(self.keys, start_after))
        out: list[Item] = []
        while i < len(self.keys) and len(out) < limit and self.keys[i].startswith(prefix):
            out.append(Item(self.keys[i]))
            i += 1
        self.rows += len(out)
        return out


def entries_of(page: Listing[Item]) -> list[Entry]:
    """Contents and prefixes merged back into listing order (they never interleave
    out of order: both are sorted and disjoint)."""
    merged = [("key", i.key) for i in page.contents] + [("prefix", p) for p in page.common_prefixes]
    return sorted(merged, key=lambda e: e[1])


@contextmanager
def min_batch(n: int) -> Iterator[None]:
    saved = listing.MIN_BATCH
    listing.MIN_BATCH = n
    try:
        yield
    finally:
        listing.MIN_BATCH = saved


def check_all_pages(keys: Sequence[str], prefix: str, delimiter: str | None, max_keys: int,
                    start_after: str | None) -> None:
    source = ListSource(keys)
    after = start_after
    collected: list[Entry] = []
    for _ in range(len(keys) + 2):
        page = build_page(source, prefix=prefix, delimiter=delimiter, max_keys=max_keys,
                          after=after)
        expected, truncated = model_page(keys, prefix, delimiter, max_keys, after)
        assert entries_of(page) == expected, (after, page)
        assert page.is_truncated is truncated
        collected += expected
        if not page.is_truncated:
            assert page.next_marker is None
            break
        assert page.next_marker == expected[-1][1]
        last = page.last_item
        assert (last.key if last else page.common_prefixes[-1]) == page.next_marker
        after = decode_token(encode_token(page.next_marker))
    else:
        pytest.fail("paging did not terminate")
    if max_keys > 0:
        assert collected == model_entries(keys, prefix, delimiter, start_after)


# ---------------------------------------------------------------- model-based tests

FRAGMENTS = ["a", "b", "/", "%", "_", "+", " ", "é", "\U0001f600", "\U0010ffff", "a/", "//",
             "-", ".", "\ue000", "z"]
keys_st = st.lists(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=5).map("".join),
                   max_size=40)
delims_st = st.sampled_from([None, "", "/", "//", "a/", "%", "é", "\U0001f600", "\U0010ffff",
                             "ab", "+"])
text_st = st.lists(st.sampled_from(FRAGMENTS), max_size=3).map("".join)


@settings(max_examples=400, deadline=None)
@given(keys=keys_st, prefix=text_st, delimiter=delims_st,
       max_keys=st.sampled_from([0, 1, 2, 3, 5, 1000]),
       start_after=st.one_of(st.none(), text_st), batch=st.sampled_from([1, 2, 32]))
def test_pages_match_model(keys: list[str], prefix: str, delimiter: str | None,
                           max_keys: int, start_after: str | None, batch: int) -> None:
    with min_batch(batch):
        check_all_pages(keys, prefix, delimiter, max_keys, start_after)


@settings(max_examples=200, deadline=None)
@given(keys=keys_st.filter(bool), data=st.data(), delimiter=delims_st,
       max_keys=st.integers(1, 4))
def test_prefix_taken_from_existing_keys(keys: list[str], data: st.DataObject,
                                         delimiter: str | None, max_keys: int) -> None:
    key = data.draw(st.sampled_from(keys))
    prefix = key[: data.draw(st.integers(0, len(key)))]
    with min_batch(1):
        check_all_pages(keys, prefix, delimiter, max_keys, None)


@pytest.mark.parametrize("seed", range(12))
def test_seeded_random_large(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = ["a", "b", "c", "/", "%", "_", "+", " ", "é", "\U0001f600", "\U0010ffff"]
    keys = ["".join(rng.choices(alphabet, k=rng.randint(1, 8))) for _ in range(600)]
    prefix = rng.choice(["", "a", "a/", "b/", "/", rng.choice(keys)[:2]])
    delimiter = rng.choice([None, "/", "a/", "%", "\U0001f600"])
    max_keys = rng.choice([1, 7, 50, 1000])
    start_after = rng.choice([None, "", "b", rng.choice(keys)])
    check_all_pages(keys, prefix, delimiter, max_keys, start_after)


def test_utf8_byte_order_equals_code_point_order() -> None:
    keys = ["a", "\x7f", "é", "\uffff"[:0] + "\ue000", "\U0001f600", "\U0010ffff", "Z", "a/"]
    assert sorted(keys) == sorted(keys, key=lambda k: k.encode("utf-8"))


# ---------------------------------------------------------------- regressions / edge cases

def test_max_keys_zero() -> None:
    page = build_page(ListSource(["a", "b"]), prefix="", delimiter=None, max_keys=0, after=None)
    assert page == Listing((), (), False, None, None)


def test_exact_fit_is_not_truncated() -> None:
    page = build_page(ListSource(["a", "b"]), prefix="", delimiter=None, max_keys=2, after=None)
    assert [i.key for i in page.contents] == ["a", "b"] and not page.is_truncated


def test_truncated_only_when_more_entries_follow() -> None:
    # "a/1" and "a/2" roll up into one prefix: after "a/" nothing else follows.
    page = build_page(ListSource(["0", "a/1", "a/2"]), prefix="", delimiter="/", max_keys=2,
                      after=None)
    assert page.common_prefixes == ("a/",) and not page.is_truncated


def test_after_inside_a_prefix_group_skips_the_group() -> None:
    page = build_page(ListSource(["a/1", "a/2", "a/3", "b"]), prefix="", delimiter="/",
                      max_keys=10, after="a/1")
    assert page.common_prefixes == () and [i.key for i in page.contents] == ["b"]


def test_key_equal_to_prefix_and_delimiter_in_prefix() -> None:
    keys = ["a/", "a/b", "a/b/c", "a/bc"]
    page = build_page(ListSource(keys), prefix="a/", delimiter="/", max_keys=10, after=None)
    assert [i.key for i in page.contents] == ["a/", "a/b", "a/bc"]
    assert page.common_prefixes == ("a/b/",)


def test_max_code_point_after_common_prefix_is_still_skipped() -> None:
    keys = ["a/\U0010ffff", "a/\U0010ffffz", "a/\U0010ffff\U0010ffff", "a/x", "b"]
    for batch in (1, 2, 32):
        with min_batch(batch):
            for max_keys in (1, 2, 3):
                check_all_pages(keys, "", "/", max_keys, None)
                check_all_pages(keys, "a", "/", max_keys, None)


def test_to_page_and_object_meta() -> None:
    metas = [ObjectMeta("bkt", k, 1, '"e"', "2026-01-01T00:00:00.000Z", "ref")
             for k in ("a", "b/1", "b/2", "c")]

    class Source:
        def scan(self, start_after: str | None, prefix: str, limit: int) -> list[ObjectMeta]:
            return [m for m in metas if (start_after is None or m.key > start_after)
                    and m.key.startswith(prefix)][:limit]

    page = to_page(build_page(Source(), prefix="", delimiter="/", max_keys=2, after=None))
    assert page == Page((metas[0],), ("b/",), True, "b/")


# ---------------------------------------------------------------- seeking (O(1) scans)

def test_seeks_past_a_huge_common_prefix() -> None:
    keys = ["a"] + [f"big/{i:05d}" for i in range(10_000)] + ["c", "d/1", "e"]
    source = ListSource(keys)
    page = build_page(source, prefix="", delimiter="/", max_keys=1000, after=None)
    assert [i.key for i in page.contents] == ["a", "c", "e"]
    assert page.common_prefixes == ("big/", "d/")
    assert source.calls <= 2
    assert source.rows <= 1001 + 3   # one batch inside big/, then the rest


def test_small_page_after_huge_prefix_reads_one_batch() -> None:
    keys = [f"big/{i:05d}" for i in range(10_000)] + ["c"]
    source = ListSource(keys)
    page = build_page(source, prefix="", delimiter="/", max_keys=1, after=None)
    assert page.common_prefixes == ("big/",) and page.is_truncated
    assert source.calls == 2 and source.rows <= listing.MIN_BATCH + 1
    # The continuation jumps over the whole group without reading it.
    source.calls = source.rows = 0
    page = build_page(source, prefix="", delimiter="/", max_keys=1, after=page.next_marker)
    assert [i.key for i in page.contents] == ["c"] and not page.is_truncated
    assert source.calls == 1 and source.rows == 1


def test_full_page_and_look_ahead_cost_one_scan() -> None:
    source = ListSource([f"k{i:03d}" for i in range(100)])
    page = build_page(source, prefix="", delimiter=None, max_keys=40, after=None)
    assert len(page.contents) == 40 and page.is_truncated
    assert source.calls == 1 and source.rows == 41


def test_many_huge_prefixes_cost_one_scan_each() -> None:
    keys = [f"{g}/{i:04d}" for g in "pqrst" for i in range(2_000)]
    source = ListSource(keys)
    page = build_page(source, prefix="", delimiter="/", max_keys=1000, after=None)
    assert page.common_prefixes == ("p/", "q/", "r/", "s/", "t/")
    assert source.calls == 6 and source.rows <= 5 * 1001


# ---------------------------------------------------------------- cursor source (uploads)

@dataclass(frozen=True)
class Upload:
    key: str
    upload_id: str


Cursor = tuple[str, tuple[int, str]]


class UploadSource:
    """Several uploads per key, ordered by (key, upload id)."""

    def __init__(self, uploads: Sequence[Upload]) -> None:
        self.items = sorted(set(uploads), key=lambda u: (u.key, u.upload_id))

    def cursor_of(self, item: Upload) -> Cursor:
        return (item.key, (0, item.upload_id))

    def cursor_after_key(self, key: str) -> Cursor:
        return (key, (1, ""))

    def scan(self, start_after: Cursor | None, prefix: str, limit: int) -> list[Upload]:
        return [u for u in self.items if u.key.startswith(prefix)
                and (start_after is None or self.cursor_of(u) > start_after)][:limit]


def upload_model(uploads: Sequence[Upload], prefix: str, delimiter: str | None,
                 key_marker: str | None, id_marker: str | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for u in sorted(set(uploads), key=lambda u: (u.key, u.upload_id)):
        if not u.key.startswith(prefix):
            continue
        if key_marker is not None and (u.key < key_marker or (u.key == key_marker and (
                id_marker is None or u.upload_id <= id_marker))):
            continue
        rest = u.key[len(prefix):]
        if delimiter and delimiter in rest:
            cp = prefix + rest[: rest.index(delimiter) + len(delimiter)]
            if (key_marker is None or cp > key_marker) and ("prefix", cp) not in out:
                out.append(("prefix", cp))
        else:
            out.append((u.key, u.upload_id))
    return out


@settings(max_examples=300, deadline=None)
@given(uploads=st.lists(st.builds(Upload, st.sampled_from(["a", "a/1", "a/2", "b", "b/x/y",
                                                             "c", "c/"]),
                                  st.sampled_from(["u1", "u2", "u3"])), max_size=20),
       prefix=st.sampled_from(["", "a", "b/", "c"]), delimiter=st.sampled_from([None, "/"]),
       max_keys=st.integers(1, 4), key_marker=st.sampled_from([None, "a", "a/1", "b", "c/"]),
       id_marker=st.sampled_from([None, "u1", "u2"]), batch=st.sampled_from([1, 2, 32]))
def test_upload_listing_pages(uploads: list[Upload], prefix: str, delimiter: str | None,
                              max_keys: int, key_marker: str | None, id_marker: str | None,
                              batch: int) -> None:
    source = UploadSource(uploads)
    expected = upload_model(uploads, prefix, delimiter, key_marker, id_marker)
    start = (source.cursor_of(Upload(key_marker, id_marker))
             if key_marker is not None and id_marker is not None else None)
    after, got = key_marker, []
    with min_batch(batch):
        for _ in range(len(uploads) + 2):
            page = build_page_from(source, prefix=prefix, delimiter=delimiter,
                                   max_keys=max_keys, after=after, start=start)
            got += sorted([(u.key, u.upload_id) for u in page.contents]
                          + [("prefix", p) for p in page.common_prefixes],
                          key=lambda e: e[1] if e[0] == "prefix" else e[0])
            assert len(page.contents) + len(page.common_prefixes) <= max_keys
            if not page.is_truncated:
                break
            after = page.next_marker
            start = source.cursor_of(page.last_item) if page.last_item else None
    assert sorted(got) == sorted(expected)
    assert len(got) == len(expected)


# ---------------------------------------------------------------- upper bound

@pytest.mark.parametrize("prefix, bound", [
    ("", None), ("a", "b"), ("ab", "ac"), ("a/", "a0"), ("a\U0010ffff", "b"),
    ("\U0010ffff", None), ("\U0010ffff\U0010ffff", None), ("\ud7ff", "\ue000"),
    ("x\ud7ff\U0010ffff", "x\ue000"), ("\U0001f600", "\U0001f601"), ("é", "ê"),
])
def test_prefix_upper_bound(prefix: str, bound: str | None) -> None:
    assert prefix_upper_bound(prefix) == bound


chars_st = st.characters(codec="utf-8")


@given(st.text(chars_st, max_size=4), st.text(chars_st, max_size=6))
def test_prefix_upper_bound_property(prefix: str, other: str) -> None:
    bound = prefix_upper_bound(prefix)
    if bound is None:
        assert prefix == "\U0010ffff" * len(prefix)
        return
    bound.encode("utf-8")  # never a surrogate
    as_bytes = other.encode("utf-8")
    below = as_bytes < bound.encode("utf-8")
    assert below == (other.startswith(prefix) or as_bytes < prefix.encode("utf-8"))


# ---------------------------------------------------------------- tokens

@given(st.text(chars_st, min_size=1))  # entries are never empty; "" is rejected
def test_token_round_trip(value: str) -> None:
    token = encode_token(value)
    assert "=" not in token and "+" not in token and "/" not in token
    assert decode_token(token) == value


@pytest.mark.parametrize("token", ["", "!!!", "a", "abcde", "é", "_w", "YQ=A",
                                   encode_token("a")[:-1] + "\x00"])
def test_bad_tokens(token: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        decode_token(token)
    assert exc.value.msg == "The continuation token provided is incorrect"
    assert exc.value.extra == {"ArgumentName": "continuation-token"}


def test_token_padding_tolerated() -> None:
    assert decode_token("YQ==") == "a" and decode_token("YQ") == "a"


# ---------------------------------------------------------------- max-keys

@pytest.mark.parametrize("value, expected", [
    (None, 1000), ("0", 0), ("5", 5), ("1000", 1000), ("1001", 1000), ("2147483647", 1000),
    ("007", 7),
])
def test_parse_max_keys(value: str | None, expected: int) -> None:
    assert parse_max_keys(value) == expected


@pytest.mark.parametrize("value", ["-1", "", "abc", "1.5", " 5", "+5", "2147483648", "\u0661",
                                   "1e3", "5 "])
def test_parse_max_keys_invalid(value: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_max_keys(value, name="max-uploads")
    assert exc.value.extra == {"ArgumentName": "max-uploads", "ArgumentValue": value}


def test_parse_max_keys_custom_default_and_cap() -> None:
    assert parse_max_keys(None, name="max-parts", default=10, cap=20) == 10
    assert parse_max_keys("50", name="max-parts", default=10, cap=20) == 20
