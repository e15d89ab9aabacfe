"""Access log and HTTP metrics, measured where a response really ends (observability.md
§3.2, §5): in the WSGI iterable's ``close()``, which gunicorn calls even on client aborts.

Invariants: object bodies keep flowing through gunicorn's ``sendfile`` — the file wrapper
is subclassed, never wrapped in a Python iterator; ``/metrics`` is never counted; query
credentials are redacted and no header value is ever logged (no cookie, no console CSRF
token), nor any request body (a console login's secret).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from bleepstore.logs import write_info_line
from bleepstore.s3.address import is_console_path
from bleepstore.web.client_ip import environ_client_ip, parse_trusted
from bleepstore.web.environ import raw_target
from bleepstore.web.metrics import Metrics

access = logging.getLogger("bleepstore.access")

SERVICE_TEMPLATES = frozenset({"/health", "/healthz", "/readyz", "/docs", "/openapi.json"})
_REDACT = re.compile(r"((?:^|&)(?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token)=)[^&]*",
                     re.IGNORECASE)
Finish = Callable[[int, bool], None]
METRICS_BEARER_KEY = "bleepstore.metrics_bearer"


class CountingInput:
    """Counts the request bytes the application actually read."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.count = 0

    def read(self, *args: Any) -> bytes:
        data: bytes = self._stream.read(*args)
        self.count += len(data)
        return data

    def readline(self, *args: Any) -> bytes:
        data: bytes = self._stream.readline(*args)
        self.count += len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


class ClosingIterator:
    def __init__(self, result: Iterable[bytes], finish: Finish) -> None:
        self._result = result
        self._finish = finish
        self._sent = 0
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._result:
            self._sent += len(chunk)
            yield chunk
        self._done = True

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._finish(self._sent, not self._done)


def file_wrapper_class(base: type) -> type:
    """A subclass of the server's file wrapper whose close() reports the response end."""

    class ObservedFileWrapper(base):  # type: ignore[misc]
        finish: Finish | None = None
        length = 0

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # gunicorn's (and wsgiref's) FileWrapper binds ``self.close = filelike.close``
            # per instance, which would shadow close() below: keep it as the inner close.
            self._inner_close = self.__dict__.pop("close", None)

        def close(self) -> None:
            try:
                inner = self._inner_close or getattr(super(), "close", None)
                if inner is not None:
                    inner()
            finally:
                if self.finish is not None:
                    self.finish(self.length, False)

    return ObservedFileWrapper


def path_template(environ: dict[str, Any], ctx: Any) -> str:
    if ctx is None:
        return "other"
    if getattr(ctx, "admin", False):
        return "/admin/..."
    if getattr(ctx, "service", False):
        raw = getattr(ctx, "raw_path", "")
        if raw.startswith("/docs"):
            return "/docs"
        if is_console_path(raw):
            return "/console"
        return raw if raw in SERVICE_TEMPLATES else "other"
    address = getattr(ctx, "address", None)
    if address is None or address.bucket is None:
        return "/" if address is not None else "other"
    return "/{bucket}" if address.key is None else "/{bucket}/{key}"


class Observed:
    """WSGI middleware around the Falcon app."""

    def __init__(self, app: Any, metrics: Metrics | None, access_log: bool,
                 trusted_proxies: Sequence[str] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        self.trusted = parse_trusted(trusted_proxies)
        self._wrappers: dict[type, type] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/metrics":
            set_aside_metrics_bearer(environ)
            return self.app(environ, start_response)
        if not (self.metrics or self.access_log):
            return self.app(environ, start_response)
        start = time.monotonic()
        if self.metrics is not None:
            self.metrics.begin()
        counting = CountingInput(environ["wsgi.input"])
        environ["wsgi.input"] = counting
        state: dict[str, Any] = {"status": 0, "length": 0}

        def observed_start(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
            state["status"] = int(status[:3])
            for name, value in headers:
                if name.lower() == "content-length":
                    state["length"] = int(value)
            return start_response(status, headers, exc)

        def finish(sent: int, aborted: bool) -> None:
            self._record(environ, state["status"], time.monotonic() - start, counting.count,
                         sent, aborted)

        base = environ.get("wsgi.file_wrapper")
        if base is not None:
            wrapper = self._wrappers.get(base) or self._wrappers.setdefault(
                base, file_wrapper_class(base))
            environ["wsgi.file_wrapper"] = wrapper
        try:
            result = self.app(environ, observed_start)
        except BaseException:
            if self.metrics is not None:
                self.metrics.cancel()
            raise
        if base is not None and isinstance(result, environ["wsgi.file_wrapper"]):
            result.finish, result.length = finish, state["length"]
            return result
        return ClosingIterator(result, finish)

    def _record(self, environ: dict[str, Any], status: int, duration: float, bytes_in: int,
                bytes_out: int, aborted: bool) -> None:
        ctx = environ.get("bleepstore.context")
        op = getattr(ctx, "op", None)
        operation = op.value if op is not None else (
            None if getattr(ctx, "service", True) else "Unknown")
        error_code = getattr(ctx, "error_code", None)
        method = environ.get("REQUEST_METHOD", "")
        if self.metrics is not None:
            self.metrics.observe(method=method, path=path_template(environ, ctx), status=status,
                                 duration=duration, bytes_in=bytes_in, bytes_out=bytes_out,
                                 operation=operation, error_code=error_code)
        if self.access_log:
            self._log(environ, ctx, status, duration, bytes_in, bytes_out, aborted, operation,
                      error_code)

    def _log(self, environ: dict[str, Any], ctx: Any, status: int, duration: float,
             bytes_in: int, bytes_out: int, aborted: bool, operation: str | None,
             error_code: str | None) -> None:
        address = getattr(ctx, "address", None)
        principal = getattr(ctx, "principal", None)
        fields = {
            "request_id": getattr(ctx, "request_id", ""), "method": environ.get("REQUEST_METHOD"),
            "path": getattr(ctx, "raw_path", environ.get("PATH_INFO", "")),
            "query": _REDACT.sub(r"\1REDACTED", getattr(ctx, "raw_query", "")),
            "status": status, "duration_ms": round(duration * 1000, 3),
            "bytes_in": bytes_in, "bytes_out": bytes_out,
            "remote_addr": environ_client_ip(environ, self.trusted),
            "peer_addr": environ.get("REMOTE_ADDR"),
            "user_agent": environ.get("HTTP_USER_AGENT"), "operation": operation,
            "bucket": getattr(address, "bucket", None), "key": getattr(address, "key", None),
            "access_key": (principal.access_key or "anonymous") if principal else "anonymous",
            "host_id": getattr(ctx, "host_id", ""),
            "client_request_id": environ.get("HTTP_X_REQUEST_ID"), "aborted": aborted,
        }
        if status >= 400 and error_code:
            fields["error_code"] = error_code
        if not write_info_line(access, f"{fields['method']} {fields['path']} {status}", fields):
            access.info("%s %s %s", fields["method"], fields["path"], status, extra=fields)


def set_aside_metrics_bearer(environ: dict[str, Any]) -> None:
    """``GET /metrics`` with ``Authorization: Bearer ...``: move the token out of the
    headers, for ``MetricsResource`` (observability.metrics_token).

    NOTE: the front takes any ``Authorization`` for an S3 signature (a bucket may be called
    ``metrics``), which would make the scrape an S3 request; S3 never uses ``Bearer``, so
    on this one path it is the scraper's token, whatever else the request is.
    """
    value = environ.get("HTTP_AUTHORIZATION")
    if not isinstance(value, str):
        return
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() == "bearer" and raw_target(environ).partition("?")[0] == "/metrics":
        environ[METRICS_BEARER_KEY] = token.strip()
        del environ["HTTP_AUTHORIZATION"]
