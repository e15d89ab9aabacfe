"""Versioning benchmark: does listing the current versions stay as fast with 10 versions of
every key as on a never-versioned bucket? And what does ListObjectVersions cost?

Fills two buckets in one temporary SQLite metadata database through the real ``apply()``
path (``PutObject`` commands, fsync off): ``plain`` (never versioned, N keys) and
``versioned`` (versioning Enabled, the same N keys written V times each). Then times, on
both, three ListObjectsV2 pages of 1,000 (first, middle, ``delimiter=/``) exactly as
``bench_listing.py`` builds them, and on the versioned bucket a full ListObjectVersions walk
in 1,000-entry pages (snapshot scans + XML rendering). Not part of the test suite.

    python bench/bench_versioning.py                       # 10,000 keys x 10 versions
    python bench/bench_versioning.py --keys 2000 --versions 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench_listing import DIRS, NOW, OWNER, key_for, timed

from bleepstore.core.listing import _page
from bleepstore.core.versioning import _VersionSource
from bleepstore.metadata.commands import CreateBucket, PutBucketVersioning, PutObject
from bleepstore.metadata.sqlite import SqliteStore
from bleepstore.model import Bucket, ObjectMeta
from bleepstore.s3 import xml_listings
from bleepstore.s3.listing import build_page_from

BUCKET = "versioned"
PAGE = 1000
ETAG = '"d41d8cd98f00b204e9800998ecf8427e"'


def fill(store: SqliteStore, bucket: str, keys: int, versions: int) -> float:
    store.apply(CreateBucket(Bucket(bucket, "us-east-1", OWNER.id, OWNER.display_name, "{}",
                                    NOW), max_buckets=100, allow_existing_own=True))
    if versions > 1:
        store.apply(PutBucketVersioning(bucket, "Enabled"))
    per_dir = max(1, keys // DIRS)
    started = time.perf_counter()
    for round_ in range(versions):
        for i in range(keys):
            meta = ObjectMeta(bucket, key_for(i, per_dir), 0, ETAG, NOW, f"{bucket}-{round_}-{i}")
            store.apply(PutObject(meta, NOW, NOW))
    return time.perf_counter() - started


def list_page(store: SqliteStore, bucket: str, *, delimiter: str | None,
              after: str | None) -> int:
    """One ListObjectsV2 page as the server builds it: snapshot scan + XML rendering."""
    page = _page(SimpleNamespace(store=store), bucket, "", delimiter, PAGE, after)  # type: ignore[arg-type]
    body = xml_listings.list_objects_v2(
        bucket, page, prefix="", delimiter=delimiter, max_keys=PAGE, encoding_type="url",
        start_after=after, continuation_token=None, next_continuation_token=None,
        fetch_owner=False, owner_of=lambda _: OWNER)
    assert len(page.contents) + len(page.common_prefixes) == PAGE, "short page"
    return len(body)


def walk_versions(store: SqliteStore, bucket: str) -> tuple[int, int]:
    """A whole ListObjectVersions walk: -> (pages, entries)."""
    source = _VersionSource(SimpleNamespace(store=store), bucket)  # type: ignore[arg-type]
    start, pages, entries = None, 0, 0
    while True:
        with store.snapshot():
            page = build_page_from(source, prefix="", delimiter=None, max_keys=PAGE,
                                   after=start[0] if start else None, start=start)
        xml_listings.list_object_versions(
            bucket, page.contents, page.common_prefixes, prefix="", key_marker=None,
            version_id_marker=None, next_key_marker=page.next_marker,
            next_version_id_marker=None, delimiter=None, max_keys=PAGE, encoding_type="url",
            is_truncated=page.is_truncated, owner_of=lambda _: OWNER)
        pages, entries = pages + 1, entries + len(page.contents)
        if not page.is_truncated or page.last_item is None:
            return pages, entries
        start = source.cursor_of(page.last_item)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    results: dict[str, Any] = {"keys": args.keys, "versions": args.versions}
    with tempfile.TemporaryDirectory(prefix="bench-versioning-") as tmp:
        store = SqliteStore(Path(tmp) / "meta.db", synchronous="OFF")
        store.migrate()
        results["fill_s"] = {"plain": round(fill(store, "plain", args.keys, 1), 2),
                             "versioned": round(fill(store, BUCKET, args.keys, args.versions),
                                                2)}
        store.conn().execute("ANALYZE")
        middle = key_for(args.keys // 2, max(1, args.keys // DIRS))
        for name in ("plain", BUCKET):
            results[name] = {case: timed(lambda n=name, d=delimiter, a=after:
                                         list_page(store, n, delimiter=d, after=a),
                                         args.repeats)
                             for case, delimiter, after in (("first", None, None),
                                                            ("middle", None, middle),
                                                            ("delimiter", "/", None))}
        started = time.perf_counter()
        pages, entries = walk_versions(store, BUCKET)
        walk_s = time.perf_counter() - started
        results["versions_walk"] = {"pages": pages, "entries": entries,
                                    "total_ms": round(walk_s * 1000, 1),
                                    "per_page_ms": round(walk_s * 1000 / pages, 2)}
        store.close()
    print(f"{args.keys} keys; versioned bucket: {args.versions} versions each "
          f"(fill {results['fill_s']['versioned']} s, plain {results['fill_s']['plain']} s)")
    print(f"{'ListObjectsV2 page of 1,000':<28} {'never versioned':>16} "
          f"{str(args.versions) + ' versions':>14}")
    for case in ("first", "middle", "delimiter"):
        print(f"  {case:<26} {results['plain'][case]['median_ms']:>13.2f} ms "
              f"{results[BUCKET][case]['median_ms']:>11.2f} ms")
    w = results["versions_walk"]
    print(f"ListObjectVersions walk: {w['entries']} entries in {w['pages']} pages, "
          f"{w['total_ms']} ms ({w['per_page_ms']} ms per page of {PAGE})")
    print(json.dumps({"benchmark": "versioning", **results}))


if __name__ == "__main__":
    main()
