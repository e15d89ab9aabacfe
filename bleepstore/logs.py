"""Logging: one JSON object per line (or key=value text) on stderr (observability.md §5).

Invariants: every line written during a request carries its request id (read from a
ContextVar by a filter); secrets never reach a log line because nothing logs them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

from bleepstore.config import Config
from bleepstore.web.context import request_id_var

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get()
        return True


# json.dumps() with any option builds a new encoder per call: one, built once
_JSON = json.JSONEncoder(default=str, ensure_ascii=False)
_second: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    """``2026-12-03T04:05:06.789Z``; the part up to the second is computed once a second
    (an access line per request made this formatting a visible share of a GET)."""
    global _second
    whole = int(created)
    cached = _second
    if cached[0] != whole:
        cached = _second = (whole, datetime.fromtimestamp(whole, UTC).strftime(
            "%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{int((created - whole) * 1000):03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": _timestamp(record.created),
        "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
        "pid": record.process, "thread": record.thread,
    }
    out.update({key: value for key, value in record.__dict__.items()
                if key not in _STANDARD and key[0] != "_" and value is not None
                and value != ""})
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = _fields(record)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return _JSON.encode(out)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = _fields(record)
        head = f"{out.pop('ts')} {out.pop('level')} {out.pop('logger')}: {out.pop('msg')}"
        rest = " ".join(f"{k}={v}" for k, v in out.items() if k not in ("pid", "thread"))
        text = f"{head} {rest}".rstrip()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def write_info_line(logger: logging.Logger, msg: str, fields: dict[str, Any]) -> bool:
    """Write an INFO record of ``logger`` with ``fields`` as its extra, exactly as the
    BleepStore JSON handler would, without building a ``LogRecord``; only when that handler
    is the one handler the record would reach. False (nothing written) otherwise: the caller
    then logs normally. The access log writes a line per request, and the logging machinery
    around the line (caller lookup, record, filter, format) cost more than the line itself.
    """
    if logger.disabled or logger.filters or not logger.isEnabledFor(logging.INFO):
        return False
    handler = _sole_json_handler(logger)
    if handler is None:
        return False
    out: dict[str, Any] = {"ts": _timestamp(time.time()), "level": "INFO", "logger": logger.name,
                           "msg": msg, "pid": os.getpid(), "thread": threading.get_ident()}
    out.update({key: value for key, value in fields.items()
                if value is not None and value != "" and key[0] != "_"})
    if not out.get("request_id"):
        request_id = request_id_var.get()
        if request_id:
            out["request_id"] = request_id
    line = _JSON.encode(out) + handler.terminator
    try:
        with handler.lock:  # type: ignore[union-attr]
            handler.stream.write(line)
            handler.stream.flush()
    except Exception:
        return False
    return True


def _sole_json_handler(logger: logging.Logger) -> logging.StreamHandler | None:  # type: ignore[type-arg]
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        found.extend(current.handlers)
        if len(found) > 1 or not current.propagate:
            break
        current = current.parent
    if len(found) != 1:
        return None
    handler = found[0]
    if (not getattr(handler, "_bleepstore", False) or type(handler.formatter) is not JsonFormatter
            or handler.level > logging.INFO
            or any(type(f) is not RequestIdFilter for f in handler.filters)):
        return None
    return handler  # type: ignore[return-value]


_configured: tuple[int, str] | None = None
_lock = threading.Lock()


def formatter_for(fmt: str = "json") -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def setup_logging(cfg: Config) -> None:
    """Install the BleepStore handler on the root logger once per process."""
    global _configured
    key = (os.getpid(), cfg.logging.format + cfg.logging.level)
    with _lock:
        if _configured == key:
            return
        root = logging.getLogger()
        for h in list(root.handlers):
            if getattr(h, "_bleepstore", False):
                root.removeHandler(h)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter_for(cfg.logging.format))
        handler.addFilter(RequestIdFilter())
        handler._bleepstore = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.setLevel(cfg.logging.level.upper())
        _configured = key
