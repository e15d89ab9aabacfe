"""Credential lookups with an in-process cache (auth.md §9).

Invariants: every lookup first reads the store's credential generation, which ``apply()``
bumps in the transaction of every credential change; when it moved, the whole cache is
dropped, so a removed or disabled key is refused by the next request in every worker
(and on every node: the bump travels inside the replicated command). ``ttl`` is only a
backstop for changes made outside ``apply()``. Inactive keys look exactly like unknown ones.
"""

from __future__ import annotations

import secrets
import string
import threading
import time
from collections.abc import Callable

from bleepstore.model import Credential
from bleepstore.s3.acl import owner_id_for
from bleepstore.s3.headers import now_iso

SECRET_ALPHABET = string.ascii_letters + string.digits + "/+"


def new_access_key() -> str:
    """``AKBS`` + 16 of A-Z0-9 (cluster.md §10.4)."""
    alphabet = string.ascii_uppercase + string.digits
    return "AKBS" + "".join(secrets.choice(alphabet) for _ in range(16))


def new_secret() -> str:
    """40 characters of [A-Za-z0-9/+] from ``secrets`` (auth.md §9)."""
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(40))


def new_credential(display_name: str | None = None, description: str | None = None, *,
                   access_key: str | None = None, secret_key: str | None = None) -> Credential:
    """A new active user: fresh keys unless given, named after its key unless named."""
    key = access_key or new_access_key()
    return Credential(key, secret_key or new_secret(), owner_id_for(key), display_name or key,
                      True, now_iso(), description)


class CredentialCache:
    """Thread-safe; one per worker process, shared by its threads."""

    def __init__(self, load: Callable[[str], Credential | None],
                 generation: Callable[[], int], ttl_s: float) -> None:
        self._load = load
        self._generation = generation
        self._ttl = ttl_s
        self._entries: dict[str, tuple[float, Credential | None]] = {}
        self._seen = -1  # the generation the entries were loaded at (or after)
        self._lock = threading.Lock()

    def __call__(self, access_key_id: str) -> Credential | None:
        # NOTE: one indexed one-row SELECT per lookup (~4 µs, decisions.md). PRAGMA
        # data_version would cost as much, changes on every write, and misses commits
        # made by this thread's own connection (e.g. as group-commit leader).
        generation = self._generation()
        now = time.monotonic()
        with self._lock:
            if generation != self._seen:
                self._entries.clear()
                self._seen = generation
            hit = self._entries.get(access_key_id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        cred = self._load(access_key_id)
        if cred is not None and not cred.active:
            cred = None
        with self._lock:
            # a thread that saw a newer generation meanwhile has cleared the cache: a row
            # read before that change must not be put back
            if self._seen == generation:
                if len(self._entries) > 10000:
                    self._entries.clear()
                self._entries[access_key_id] = (now, cred)
        return cred
