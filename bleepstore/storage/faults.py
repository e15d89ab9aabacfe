"""Crash-test fault hook (storage.md §5.7).

Invariants:
- ``fault_point(name)`` kills the current process with SIGKILL (no cleanup, no atexit,
  no buffered flush) when ``BLEEPSTORE_FAULT`` equals ``name``, and does nothing otherwise.
- The environment is read at call time, so tests can arm it per subprocess.
- Points: ``blob.before_rename`` / ``blob.after_rename`` (every blob write, local backend),
  ``assemble.middle`` (after the first part of a CompleteMultipartUpload assembly),
  ``complete.after_commit`` (CompleteMultipartUpload committed, response not yet sent).
"""

from __future__ import annotations

import os
import signal


def fault_point(name: str) -> None:
    """Die here, right now, if the crash test armed this point."""
    if os.environ.get("BLEEPSTORE_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
