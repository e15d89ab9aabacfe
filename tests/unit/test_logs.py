"""Log lines: JSON for machines, key=value text for humans, request id on every line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bleepstore.logs import JsonFormatter, RequestIdFilter, TextFormatter, write_info_line
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


@pytest.fixture
def sole_handler() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A logger tree whose one handler is BleepStore's JSON handler, as setup_logging
    installs it (on a private root, so pytest's own handlers are not in the way)."""
    root = logging.RootLogger(logging.INFO)
    manager = logging.Manager(root)
    logger = manager.getLogger("bleepstore.access")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler._bleepstore = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    yield logger, stream, handler


FIELDS = {"request_id": "2A46311B8C20A0C5", "method": "GET", "path": "/b/k", "query": "",
          "status": 200, "bytes_out": 4096, "user_agent": None, "aborted": False,
          "key": "ключ \"quoted\"\n"}


def _without_clock(line: str) -> dict[str, object]:
    out = json.loads(line)
    assert out.pop("ts").endswith("Z")
    return out


def test_the_direct_access_line_is_the_line_logging_would_write(sole_handler) -> None:
    logger, stream, _ = sole_handler
    assert write_info_line(logger, "GET /b/k 200", FIELDS)
    logger.info("%s %s %s", "GET", "/b/k", 200, extra=FIELDS)
    direct, standard = stream.getvalue().splitlines()
    assert _without_clock(direct) == _without_clock(standard)
    assert list(json.loads(direct)) == list(json.loads(standard))  # same key order


def test_the_direct_line_takes_the_request_id_of_the_context(sole_handler) -> None:
    logger, stream, _ = sole_handler
    token = request_id_var.set("4442587FB7D0A2F9")
    try:
        assert write_info_line(logger, "m", {"request_id": "", "status": 500})
        logger.info("m", extra={"request_id": "", "status": 500})
    finally:
        request_id_var.reset(token)
    direct, standard = (_without_clock(x) for x in stream.getvalue().splitlines())
    assert direct == standard and direct["request_id"] == "4442587FB7D0A2F9"


@pytest.mark.parametrize("change", ["second handler", "logger filter", "level", "disabled",
                                    "text format", "handler filter", "not propagating"])
def test_anything_else_in_the_way_leaves_the_line_to_logging(sole_handler, change) -> None:
    logger, stream, handler = sole_handler
    other = logging.StreamHandler(io.StringIO())
    if change == "second handler":
        logger.addHandler(other)
    elif change == "logger filter":
        logger.addFilter(lambda record: True)
    elif change == "level":
        logger.setLevel(logging.WARNING)
    elif change == "disabled":
        logger.disabled = True
    elif change == "text format":
        handler.setFormatter(TextFormatter())
    elif change == "handler filter":
        handler.addFilter(lambda record: False)
    elif change == "not propagating":
        logger.propagate = False
    assert not write_info_line(logger, "GET /b/k 200", FIELDS)
    assert stream.getvalue() == ""


def test_a_failing_stream_leaves_the_line_to_logging(sole_handler) -> None:
    logger, stream, _ = sole_handler
    stream.close()
    assert not write_info_line(logger, "GET /b/k 200", FIELDS)
