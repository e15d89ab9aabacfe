"""Which process holds which TCP connection, read from /proc (no ``ss`` needed)."""

from __future__ import annotations

import os
from collections.abc import Iterable

ESTABLISHED = "01"


def established_by_pid(port: int, pids: Iterable[int]) -> dict[int, int]:
    """Established connections to local ``port`` held by each of ``pids``."""
    owner: dict[str, int] = {}
    counts: dict[int, int] = {}
    for pid in pids:
        counts[pid] = 0
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owner[target[len("socket:["):-1]] = pid
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == ESTABLISHED and fields[9] in owner:
                counts[owner[fields[9]]] += 1
    return counts
