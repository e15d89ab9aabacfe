"""Reading what the client sent from the WSGI environ, as the wire had it.

Invariants: the raw request target (``RAW_URI`` under gunicorn) is the source of truth
for bucket, key and the SigV4 canonical path — never the decoded PATH_INFO.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO
from urllib.parse import quote

from gunicorn.http.errors import ChunkMissingTerminator, NoMoreData, ParseException

from bleepstore import errors

Environ = dict[str, Any]
# Set by the S3 front for every request: the idle limit of one body read, in seconds.
READ_TIMEOUT_KEY = "bleepstore.body_read_timeout_s"
# Set by BleepStore's gunicorn worker when the client waits for ``100 Continue``: a
# callable that sends it (once). Called by the first read of the body, so a request
# refused before that (auth, ACL, a bad header) never makes the client send its body.
CONTINUE_KEY = "bleepstore.send_continue"


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
    """Header lookup by name, any case; None when the header was not sent.

    NOTE: an empty ``Content-Type`` is a header that was sent, empty (a client may sign
    it: SigV4 then needs it present, ``content-type:``). gunicorn sets CONTENT_TYPE only
    for a header it received. An empty CONTENT_LENGTH stays "absent".
    The environ is read once into a dict: a request looks headers up 25-50 times.
    """
    headers = {k[5:].lower().replace("_", "-"): str(v) for k, v in environ.items()
               if k.startswith("HTTP_")}
    for name, key in (("content-type", "CONTENT_TYPE"), ("content-length", "CONTENT_LENGTH")):
        value = environ.get(key)
        if value is None or (value == "" and key == "CONTENT_LENGTH"):
            headers.pop(name, None)
        else:
            headers[name] = str(value)
    by_name = headers.get

    def get(name: str) -> str | None:
        name = name.lower()
        if "_" in name:  # an underscore matches a dash in the WSGI name, as CGI maps them
            name = name.replace("_", "-")
        return by_name(name)
    return get


def wire_text(value: str) -> str:
    """The text of a header value as the client wrote it, for signature checks.

    WSGI hands header values over as latin-1 decoded strings, so ``value.encode("latin-1")``
    is the bytes that came over the wire; clients sign those bytes (botocore: the UTF-8 of
    the value it sends). Bytes that are not UTF-8 come back as surrogates: encoding the
    result with ``("utf-8", "surrogateescape")`` gives the wire bytes exactly. ASCII and
    text that is not a latin-1 string (never from a WSGI server) are returned unchanged.
    """
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value


def signing_header_getter(get: Callable[[str], str | None]) -> Callable[[str], str | None]:
    """``get`` with values as the client signed them (``wire_text``): what SigV4 and SigV2
    canonicalise, so a non-ASCII ``x-amz-meta-*`` value is checked over the raw bytes."""
    def signed(name: str) -> str | None:
        value = get(name)
        return None if value is None else wire_text(value)
    return signed


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


def header_names(environ: Environ) -> tuple[str, ...]:
    """Lowercase names of the headers present (what SigV4's signed-header rule checks)."""
    names = [k[5:].lower().replace("_", "-") for k in environ if k.startswith("HTTP_")]
    names += [n for n, k in (("content-type", "CONTENT_TYPE"), ("content-length", "CONTENT_LENGTH"))
              if environ.get(k)]
    return tuple(names)


def under_gunicorn(environ: Environ) -> bool:
    return str(environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn")


def timed_read(environ: Environ, stream: BinaryIO, size: int) -> bytes:
    """One read of the request body that a stalled client cannot block forever.

    NOTE: gunicorn's gthread worker never times out a body read, so a client that sends
    its headers and then goes silent would hold a worker thread (and a staged temp file)
    for good. The socket gets ``server.body_read_timeout_s`` for the duration of the read;
    a timeout is RequestTimeout, and gunicorn closes the connection because the body read
    failed (its framing is lost).

    NOTE: gunicorn undoes HTTP chunked framing inside ``read()`` and raises its own parser
    errors there (they used to escape as 500s). As for aws-chunked (auth.md §6.2), a body
    that ends early is IncompleteBody and broken framing is InvalidRequest; a transfer
    coding gunicorn would pass through undecoded (``gzip, chunked``) was refused (501) by
    the S3 front before.
    """
    timeout = environ.get(READ_TIMEOUT_KEY)
    sock = environ.get("gunicorn.socket") if timeout is not None else None
    prior = sock.gettimeout() if sock is not None else None
    if sock is not None:
        sock.settimeout(timeout)
    try:
        return stream.read(size)
    except TimeoutError as exc:
        raise errors.RequestTimeout() from exc
    except NoMoreData as exc:  # the client closed mid-body
        raise errors.IncompleteBody() from exc
    except ParseException as exc:
        # A missing chunk terminator shorter than CRLF is the end of input, not bad bytes.
        if isinstance(exc, ChunkMissingTerminator) and len(getattr(exc, "term", b"")) < 2:
            raise errors.IncompleteBody() from exc
        raise errors.InvalidRequest("Malformed chunked encoding") from exc
    finally:
        if sock is not None:
            try:
                sock.settimeout(prior)
            except OSError:  # the socket is already gone
                pass
