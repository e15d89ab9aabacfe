"""Reading what the client sent from the WSGI environ, as the wire had it.

Invariants: the raw request target (``RAW_URI`` under gunicorn) is the source of truth
for bucket, key and the SigV4 canonical path — never the decoded PATH_INFO.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO
from urllib.parse import quote

from bleepstore import errors

Environ = dict[str, Any]
# Set by the S3 front for every request: the idle limit of one body read, in seconds.
READ_TIMEOUT_KEY = "bleepstore.body_read_timeout_s"


def raw_target(environ: Environ) -> str:
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        if raw.startswith(("http://", "https://")):  # absolute-form request target
            after_scheme = raw.split("://", 1)[1]
            slash = after_scheme.find("/")
            raw = after_scheme[slash:] if slash >= 0 else "/"
        return str(raw)
    # NOTE: last resort (e.g. in-process test clients): re-encode the decoded path.
    path = environ.get("PATH_INFO", "") or "/"
    path = quote(path.encode("latin-1"), safe="/-_.~!$&'()*+,;=:@")
    query = environ.get("QUERY_STRING", "")
    return f"{path}?{query}" if query else path


def header_getter(environ: Environ) -> Callable[[str], str | None]:
    def get(name: str) -> str | None:
        if name == "content-type":
            value = environ.get("CONTENT_TYPE")
        elif name == "content-length":
            value = environ.get("CONTENT_LENGTH")
        else:
            value = environ.get("HTTP_" + name.upper().replace("-", "_"))
        return None if value is None or (value == "" and name in (
            "content-type", "content-length")) else str(value)
    return get


def header_items(environ: Environ) -> list[tuple[str, str]]:
    items = []
    for k, v in environ.items():
        if k.startswith("HTTP_"):
            items.append((k[5:].lower().replace("_", "-"), str(v)))
    if environ.get("CONTENT_TYPE"):
        items.append(("content-type", str(environ["CONTENT_TYPE"])))
    if environ.get("CONTENT_LENGTH"):
        items.append(("content-length", str(environ["CONTENT_LENGTH"])))
    return items


def under_gunicorn(environ: Environ) -> bool:
    return str(environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn")


def timed_read(environ: Environ, stream: BinaryIO, size: int) -> bytes:
    """One read of the request body that a stalled client cannot block forever.

    NOTE: gunicorn's gthread worker never times out a body read, so a client that sends
    its headers and then goes silent would hold a worker thread (and a staged temp file)
    for good. The socket gets ``server.body_read_timeout_s`` for the duration of the read;
    a timeout is RequestTimeout, and gunicorn closes the connection because the body read
    failed (its framing is lost).
    """
    sock = environ.get("gunicorn.socket")
    timeout = environ.get(READ_TIMEOUT_KEY)
    if sock is None or timeout is None:
        return stream.read(size)
    prior = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        return stream.read(size)
    except TimeoutError as exc:
        raise errors.RequestTimeout() from exc
    finally:
        try:
            sock.settimeout(prior)
        except OSError:  # the socket is already gone
            pass
