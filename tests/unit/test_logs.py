"""Log lines: JSON for machines, key=value text for humans, request id on every line."""

from __future__ import annotations

import json
import logging

from bleepstore.logs import JsonFormatter, RequestIdFilter, TextFormatter
from bleepstore.web.context import request_id_var


def record(msg: str = "hello %s", **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("bleepstore.s3", logging.INFO, __file__, 1, msg, ("world",), None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_json_line_has_the_contract_fields_and_request_id() -> None:
    token = request_id_var.set("4442587FB7D0A2F9")
    try:
        rec = record(bucket="b", status=200)
        assert RequestIdFilter().filter(rec)
    finally:
        request_id_var.reset(token)
    line = json.loads(JsonFormatter().format(rec))
    assert line["msg"] == "hello world" and line["level"] == "INFO"
    assert line["logger"] == "bleepstore.s3" and line["request_id"] == "4442587FB7D0A2F9"
    assert line["bucket"] == "b" and line["status"] == 200
    assert line["ts"].endswith("Z") and len(line["ts"]) == 24
    assert {"pid", "thread"} <= set(line)


def test_text_line_is_readable_key_value() -> None:
    text = TextFormatter().format(record(bucket="b", status=404))
    assert "INFO bleepstore.s3: hello world" in text
    assert "bucket=b" in text and "status=404" in text
    assert "{" not in text


def test_exceptions_are_kept_in_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    out = JsonFormatter().format(rec)
    assert "\n" not in out
    assert "ValueError: boom" in json.loads(out)["exc"]
