"""A plain in-memory model of S3's listing rules (s3-api.md §9.3), for e2e comparisons.

Deliberately naive: sort every key, filter, roll up, slice. Python compares ``str`` by
code point, which equals UTF-8 byte order for keys without lone surrogates.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelPage:
    keys: tuple[str, ...]
    prefixes: tuple[str, ...]
    is_truncated: bool
    last: str | None  # last entry (key or common prefix) of a truncated page

    @property
    def count(self) -> int:
        return len(self.keys) + len(self.prefixes)


def model_page(keys: Iterable[str], *, prefix: str = "", delimiter: str | None = None,
               max_keys: int = 1000, after: str | None = None) -> ModelPage:
    """One page of keys (> after, starting with prefix) rolled up on ``delimiter``.

    ``max_keys == 0`` is an empty, untruncated page (s3-api.md §9.3).
    """
    if max_keys == 0:
        return ModelPage((), (), False, None)
    entries: list[tuple[str, bool]] = []  # (value, is_common_prefix)
    seen: set[str] = set()
    for key in sorted(keys):
        if not key.startswith(prefix) or (after is not None and key <= after):
            continue
        rest = key[len(prefix):]
        i = rest.find(delimiter) if delimiter else -1
        if i < 0:
            entries.append((key, False))
            continue
        cp = prefix + rest[:i + len(delimiter or "")]
        if cp in seen or (after is not None and cp <= after):
            continue
        seen.add(cp)
        entries.append((cp, True))
    page = entries[:max_keys]
    truncated = len(entries) > max_keys
    return ModelPage(tuple(v for v, cp in page if not cp), tuple(v for v, cp in page if cp),
                     truncated, page[-1][0] if truncated and page else None)


# ------------------------------------------------------------ random scenarios

TOKENS = ["a", "b", "/", "%", "_", "+", " ", "A", "é", "日", "😀", "-", ".", "~", "a/",
          "ab/", "%2F", "\uff5e", "=", "&"]


@dataclass
class Scenario:
    api: str  # v2-boto, v1-boto, v2-raw, v1-raw
    prefix: str
    delimiter: str | None
    max_keys: int
    start: str | None
    encode: bool


def random_keys(rng: random.Random, n: int) -> list[str]:
    keys: set[str] = set()
    while len(keys) < n:
        keys.add("".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 5))))
    return sorted(keys)


def random_scenario(rng: random.Random, keys: list[str]) -> Scenario:
    prefix = rng.choice(["", "", rng.choice(keys)[:rng.randint(1, 3)], rng.choice(TOKENS)])
    start = rng.choice([None, None, rng.choice(keys)[:rng.randint(1, 4)], rng.choice(keys)])
    return Scenario(api=rng.choice(["v2-boto", "v1-boto", "v2-raw", "v1-raw"]),
                    prefix=prefix, delimiter=rng.choice([None, None, "/", "/", "a", "%", "_/",
                                                         "é", "😀", "+"]),
                    max_keys=rng.choice([1, 2, 3, 5, 8, 13, 40, 1000]), start=start,
                    encode=rng.random() < 0.5)
