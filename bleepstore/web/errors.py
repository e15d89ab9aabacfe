"""The one place where errors become responses (s3-api.md §5).

Invariants: a client never sees a Falcon error page or a traceback; HEAD, 204 and 304
responses carry no body; any unexpected exception is logged and becomes InternalError;
an error never waits for a request body it did not read: the worker closes such a
connection with a bounded lingering close (gunicorn_worker.py), so the client still reads
the error rather than a reset, and a slow client holds no thread.
"""

from __future__ import annotations

import logging
from typing import Any

import falcon

from bleepstore import errors
from bleepstore.s3 import xml_render as render

log = logging.getLogger("bleepstore.s3")

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


def render_error(req: falcon.Request, resp: falcon.Response, err: errors.S3Error) -> None:
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
