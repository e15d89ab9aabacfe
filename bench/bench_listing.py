"""Listing benchmark: how long does a 1,000-key page take at 10k and at 1M objects?

Fills a temporary SQLite metadata database directly (``SqliteStore`` + its schema, one
``executemany`` transaction), then times ``bleepstore.core.listing``'s page building plus
the ``ListBucketResult`` rendering for three pages of 1,000 entries:

- ``first``: the first page, no delimiter;
- ``middle``: ``start-after`` the middle key, no delimiter;
- ``delimiter``: ``delimiter=/`` over 1,000 "directories" (one seek per common prefix).

Keys are ``DDDD/FFFFFF`` with 1,000 directories, so every size yields 1,000 common
prefixes. Prints a table and a JSON line. Not part of the test suite.

    python bench/bench_listing.py                 # 10,000 and 1,000,000 rows
    python bench/bench_listing.py --sizes 10000   # quick run
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bleepstore.core.listing import _page
from bleepstore.metadata.commands import CreateBucket
from bleepstore.metadata.rows import OBJECT_COLS, cols, placeholders
from bleepstore.metadata.sqlite import SqliteStore
from bleepstore.model import Bucket, Owner
from bleepstore.s3 import xml_listings

BUCKET = "bench"
DIRS = 1000
PAGE = 1000
OWNER = Owner("0" * 64, "bench")
NOW = "2026-02-22T12:00:00.000Z"


def key_for(i: int, per_dir: int) -> str:
    return f"{i // per_dir:04d}/{i % per_dir:06d}"


def rows(n: int) -> Iterator[tuple[Any, ...]]:
    per_dir = max(1, n // DIRS)
    etag = '"d41d8cd98f00b204e9800998ecf8427e"'
    for i in range(n):
        yield (BUCKET, key_for(i, per_dir), 0, etag, "application/octet-stream", None, None,
               None, None, None, "STANDARD", "{}", "{}", NOW, f"{i:032x}", None, None, None,
               None)


def fill(path: Path, n: int) -> tuple[SqliteStore, float]:
    store = SqliteStore(path, synchronous="OFF")
    store.migrate()
    store.apply(CreateBucket(Bucket(BUCKET, "us-east-1", OWNER.id, OWNER.display_name, "{}",
                                    NOW), max_buckets=100, allow_existing_own=True))
    started = time.perf_counter()
    conn = store.conn()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(f"INSERT INTO objects ({cols(OBJECT_COLS)}) "
                     f"VALUES ({placeholders(OBJECT_COLS)})", rows(n))
    conn.execute("UPDATE stats SET object_count = ? WHERE id = 1", (n,))
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    return store, time.perf_counter() - started


def list_page(store: SqliteStore, *, delimiter: str | None, after: str | None) -> int:
    """One ListObjectsV2 page as the server builds it: snapshot scan + XML rendering."""
    svc: Any = SimpleNamespace(store=store)
    page = _page(svc, BUCKET, "", delimiter, PAGE, after)
    body = xml_listings.list_objects_v2(
        BUCKET, page, prefix="", delimiter=delimiter, max_keys=PAGE, encoding_type="url",
        start_after=after, continuation_token=None, next_continuation_token=None,
        fetch_owner=False, owner_of=lambda _: OWNER)
    assert len(page.contents) + len(page.common_prefixes) == PAGE, "short page"
    return len(body)


def timed(fn: Callable[[], int], repeats: int) -> dict[str, float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return {"first_ms": round(samples[0], 2), "median_ms": round(statistics.median(samples), 2)}


def bench(n: int, workdir: Path, repeats: int) -> dict[str, Any]:
    store, fill_s = fill(workdir / f"meta-{n}.db", n)
    middle = key_for(n // 2, max(1, n // DIRS))
    cases = {
        "first": lambda: list_page(store, delimiter=None, after=None),
        "middle": lambda: list_page(store, delimiter=None, after=middle),
        "delimiter": lambda: list_page(store, delimiter="/", after=None),
    }
    result: dict[str, Any] = {"rows": n, "fill_s": round(fill_s, 2)}
    for name, fn in cases.items():
        result[name] = timed(fn, repeats)
    store.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-listing-") as tmp:
        results = [bench(n, Path(tmp), args.repeats) for n in args.sizes]
    print(f"{'rows':>10} {'fill s':>8} | {'first page ms':>14} {'middle page ms':>15} "
          f"{'delimiter ms':>13}   (median of {args.repeats}; first run in brackets)")
    for r in results:
        cells = [f"{r[c]['median_ms']:>7.2f} [{r[c]['first_ms']:>6.2f}]"
                 for c in ("first", "middle", "delimiter")]
        print(f"{r['rows']:>10} {r['fill_s']:>8.2f} | {cells[0]:>14} {cells[1]:>15} "
              f"{cells[2]:>13}")
    print(json.dumps({"benchmark": "listing", "page_size": PAGE, "results": results}))


if __name__ == "__main__":
    main()
