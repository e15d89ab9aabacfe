"""The server's JSON access-log records, found by request id."""

from __future__ import annotations

import json
import time
from typing import Any

from support.server import Server


def access_records(srv: Server, request_ids: set[str],
                   timeout: float = 15.0) -> dict[str, dict[str, Any]]:
    """request id -> its access-log record. A record is written when its response ends,
    so it may trail the response by a moment: wait up to ``timeout`` for all of them."""
    deadline = time.monotonic() + timeout
    while True:
        found = {}
        for line in srv.log_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("logger") == "bleepstore.access" and rec.get("request_id") in request_ids:
                found[rec["request_id"]] = rec
        if set(found) == request_ids or time.monotonic() > deadline:
            return found
        time.sleep(0.02)
