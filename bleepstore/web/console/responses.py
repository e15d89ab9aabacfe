"""JSON in and out for the console, its error documents and its security headers.

Invariants: every response under /console carries the security headers (CSP, nosniff,
no referrer, no framing), API responses are never cached; every error on a console path
(a console error, an S3 error raised by a helper, Falcon's 404/405, anything unexpected)
is a JSON ``{"error", "message"}`` document, never XML, a Falcon page or a traceback.
JSON bodies are read bounded (64 KiB).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import falcon

from bleepstore import errors
from bleepstore.s3.address import is_console_path
from bleepstore.web.errors import handle_http_error, handle_s3_error, handle_unexpected

log = logging.getLogger("bleepstore.console")

MAX_JSON_BYTES = 64 * 1024
API_PREFIX = "/console/api/"
SECURITY_HEADERS = (
    ("Content-Security-Policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
              411: "length_required", 413: "too_large", 415: "unsupported_media_type"}
Handler = Callable[[falcon.Request, falcon.Response, Any, Any], None]


class ConsoleError(Exception):
    """Raised anywhere in the console; rendered as ``{"error": code, "message": ...}``."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def bad_request(message: str) -> ConsoleError:
    return ConsoleError(400, "bad_request", message)


def send_json(resp: falcon.Response, status: int, body: Any) -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = "application/json"
    resp.data = json.dumps(body, sort_keys=True).encode()


def json_body(req: falcon.Request) -> dict[str, Any]:
    """The request's JSON object (empty body: ``{}``); 400 when too big or not an object."""
    if (req.content_length or 0) > MAX_JSON_BYTES:
        raise bad_request(f"The body is larger than {MAX_JSON_BYTES} bytes.")
    raw = req.bounded_stream.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise bad_request(f"The body is larger than {MAX_JSON_BYTES} bytes.")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise bad_request("The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise bad_request("The body must be a JSON object.")
    return body


def is_console_request(req: falcon.Request) -> bool:
    ctx = req.context
    return bool(getattr(ctx, "service", False) and not getattr(ctx, "admin", False)
                and is_console_path(getattr(ctx, "raw_path", "")))


def _snake(code: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", code).lower()


def handle_console_error(req: falcon.Request, resp: falcon.Response, ex: ConsoleError,
                         params: Any) -> None:
    send_json(resp, ex.status, {**ex.extra, "error": ex.code, "message": ex.message})


def _s3_error_json(req: falcon.Request, resp: falcon.Response, ex: errors.S3Error) -> None:
    for name, value in ex.headers.items():
        resp.set_header(name, value)
    send_json(resp, ex.status, {"error": _snake(ex.code), "message": ex.msg})


def _http_error_json(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError) -> None:
    status = ex.status_code
    if ex.headers:
        resp.set_headers(ex.headers)
    code = HTTP_CODES.get(status, "error" if status < 500 else "internal_error")
    path = getattr(req.context, "raw_path", req.path)
    message = {404: f"Nothing is at {path}.",
               405: f"{req.method} is not allowed on {path}."}.get(status, ex.title or code)
    send_json(resp, status, {"error": code, "message": message})


def _unexpected_json(req: falcon.Request, resp: falcon.Response, ex: Exception) -> None:
    log.error("unexpected error handling %s %s", req.method,
              getattr(req.context, "raw_path", req.path), exc_info=ex)
    send_json(resp, 500, {"error": "internal_error", "message": "Internal server error."})


def _either(console: Callable[[falcon.Request, falcon.Response, Any], None],
            other: Handler) -> Handler:
    def handle(req: falcon.Request, resp: falcon.Response, ex: Any, params: Any) -> None:
        if is_console_request(req):
            console(req, resp, ex)
        else:
            other(req, resp, ex, params)

    return handle


def install_error_handlers(app: falcon.App[Any, Any]) -> None:
    """Make the app's error handlers answer JSON on console paths (and as before elsewhere)."""
    app.add_error_handler(Exception, _either(_unexpected_json, handle_unexpected))
    app.add_error_handler(falcon.HTTPError, _either(_http_error_json, handle_http_error))
    app.add_error_handler(errors.S3Error, _either(_s3_error_json, handle_s3_error))
    app.add_error_handler(ConsoleError, handle_console_error)


class ConsoleHeaders:
    """Falcon middleware: the security headers of every console response."""

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        if not is_console_request(req):
            return
        for name, value in SECURITY_HEADERS:
            resp.set_header(name, value)
        api = req.context.raw_path.startswith(API_PREFIX)
        if api or resp.get_header("Cache-Control") is None or not req_succeeded:
            resp.set_header("Cache-Control", "no-store")
