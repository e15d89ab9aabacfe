"""What a data directory may contain: every file a server writes, by pattern (relative to
``data/``). Tests that attack keys and paths check every file against it."""

from __future__ import annotations

import re
from pathlib import Path

BLOB = re.compile(r"objects/blobs/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{32}")
# a completed multipart upload: a directory of links to its part files (storage/composite.py)
SEGMENT = re.compile(BLOB.pattern + r"/[0-9]{5}-(0|[1-9][0-9]*)")
ALLOWED = [BLOB, SEGMENT,
           re.compile(r"objects/multipart/[0-9a-f]{32}/[0-9]{5}-[0-9a-f]{32}"),
           re.compile(r"objects/\.tmp/[0-9a-f]{32}"),
           re.compile(r"metadata\.db(-wal|-shm|\.reserve|\.write-lock)?"),
           re.compile(r"([a-z]+/)?\.bleepstore\.lock"),
           re.compile(r"prometheus/[a-z_]+_[0-9]+\.db"), re.compile(r"spool/[^/]+"),
           # a cluster node (tests/support/cluster.py): its Raft journal, snapshot, socket
           re.compile(r"raft/raft\.(journal|journal\.meta|dump)"),
           re.compile(r"raft/sidecar\.sock")]


def blob_refs(objects: Path) -> set[str]:
    """The refs of the object blobs under ``objects/`` (a data dir's ``objects``): one per
    file blob and one per composite blob, whatever its number of files."""
    return {f"blobs/{a.name}/{b.name}/{blob.name}"
            for a in (objects / "blobs").glob("??") for b in a.glob("??") for blob in b.iterdir()}
