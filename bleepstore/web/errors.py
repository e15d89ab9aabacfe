"""The one place where errors become responses (s3-api.md §5).

Invariants: a client never sees a Falcon error page or a traceback; HEAD, 204 and 304
responses carry no body; any unexpected exception is logged and becomes InternalError;
an error answered before a small body was read first reads the rest of it (bounded), so
the client gets the error rather than a connection reset.
"""

from __future__ import annotations

import logging
from typing import Any

import falcon

from bleepstore import errors
from bleepstore.s3 import xml_render as render
from bleepstore.web.environ import timed_read

log = logging.getLogger("bleepstore.s3")

DRAIN_LIMIT = 1024 * 1024  # unread body an error response still reads before answering

_STATUS_ERRORS: dict[int, type[errors.S3Error]] = {
    400: errors.InvalidRequest,
    404: errors.NoSuchKey,
    405: errors.MethodNotAllowed,
    411: errors.MissingContentLength,
    413: errors.EntityTooLarge,
}


def _resource(req: falcon.Request) -> str:
    address = getattr(req.context, "address", None)
    if address is not None and address.bucket is not None:
        return str("/" + address.bucket + ("/" + address.key if address.key is not None else ""))
    return str(getattr(req.context, "raw_path", req.path))


def _settle_body(req: falcon.Request) -> None:
    """Read what is left of a small request body that an early error leaves unread.

    NOTE: gunicorn drains at most 64 KiB of an unread body, then closes the socket with
    the rest unread; the kernel answers with a reset that can destroy the error response
    before the client reads it (nginx in front then reports 502). A body declared larger
    than DRAIN_LIMIT is never waited for: EntityTooLarge answers from the headers alone.
    """
    env = req.env
    stream = env.get("wsgi.input")
    length = str(env.get("CONTENT_LENGTH") or "")
    chunked = "chunked" in str(env.get("HTTP_TRANSFER_ENCODING", "")).lower()
    if stream is None or not (length or chunked):
        return
    if length.isdigit() and int(length) > DRAIN_LIMIT:
        return
    left = DRAIN_LIMIT
    try:
        while left > 0:
            data = timed_read(env, stream, min(64 * 1024, left))
            if not data:
                return
            left -= len(data)
    except Exception:  # noqa: S110  the client went away or broke the framing
        return


def render_error(req: falcon.Request, resp: falcon.Response, err: errors.S3Error) -> None:
    if not isinstance(err, errors.RequestTimeout):  # a stalled body is not waited for again
        _settle_body(req)
    resp.status = falcon.code_to_http_status(err.status)
    for name, value in err.headers.items():
        resp.set_header(name, value)
    req.context.error_code = err.code
    if req.method == "HEAD":
        resp.data = None
        return
    body = render.error_document(err.code, err.msg, err.extra, _resource(req),
                                 getattr(req.context, "request_id", ""),
                                 getattr(req.context, "host_id", ""))
    resp.content_type = "application/xml"
    resp.data = body


def handle_s3_error(req: falcon.Request, resp: falcon.Response, ex: errors.S3Error,
                    params: Any) -> None:
    render_error(req, resp, ex)


def handle_http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError,
                      params: Any) -> None:
    code = int(str(ex.status).split()[0]) if not isinstance(ex.status, int) else ex.status
    cls = _STATUS_ERRORS.get(code, errors.InternalError)
    err = cls()
    if cls is errors.MethodNotAllowed:
        err = errors.MethodNotAllowed(Method=req.method, ResourceType="OBJECT")
        allow = dict(ex.headers or {}).get("Allow")
        if allow:
            err.with_header("Allow", allow)
    render_error(req, resp, err)


def handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception,
                      params: Any) -> None:
    log.error("unexpected error handling %s %s", req.method,
              getattr(req.context, "raw_path", req.path), exc_info=ex)
    render_error(req, resp, errors.InternalError())
