"""Credential lookups with a short in-process cache (auth.md §9).

Invariants: entries live ``ttl`` seconds, so disabling or deleting a key takes effect
on every worker within that time; inactive keys look exactly like unknown ones.
"""

from __future__ import annotations

import secrets
import string
import threading
import time
from collections.abc import Callable

from bleepstore.model import Credential

SECRET_ALPHABET = string.ascii_letters + string.digits + "/+"


def new_access_key() -> str:
    """``AKBS`` + 16 of A-Z0-9 (cluster.md §10.4)."""
    alphabet = string.ascii_uppercase + string.digits
    return "AKBS" + "".join(secrets.choice(alphabet) for _ in range(16))


def new_secret() -> str:
    """40 characters of [A-Za-z0-9/+] from ``secrets`` (auth.md §9)."""
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(40))


class CredentialCache:
    def __init__(self, load: Callable[[str], Credential | None], ttl_s: float) -> None:
        self._load = load
        self._ttl = ttl_s
        self._entries: dict[str, tuple[float, Credential | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, access_key_id: str) -> Credential | None:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(access_key_id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        cred = self._load(access_key_id)
        if cred is not None and not cred.active:
            cred = None
        with self._lock:
            if len(self._entries) > 10000:
                self._entries.clear()
            self._entries[access_key_id] = (now, cred)
        return cred
