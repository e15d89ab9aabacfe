"""Per-request context readable by logging (observability.md §6)."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("bleepstore_request_id", default="")
