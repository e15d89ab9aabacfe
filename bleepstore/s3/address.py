"""Which resource a raw request target names (s3-api.md §2.1-§2.3), and the paths that are
not S3 at all (§2.2 service endpoints, the web console). Pure.

Invariants:
- Bucket and key are percent-decoded separately from the raw target, ``+`` stays literal,
  and the key is never normalised (``a//b``, ``./x``, a trailing ``/`` are distinct keys);
  bytes that are not UTF-8 after decoding are 400 InvalidURI (path) or InvalidArgument.
- Query parameters: first occurrence wins, names are case-sensitive, blank values kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from bleepstore.errors import InvalidArgument, InvalidURI
from bleepstore.s3.names import validate_bucket_name


@dataclass(frozen=True)
class Address:
    """The resource a request names. ``bucket is None`` = service; ``key is None`` = bucket."""

    bucket: str | None
    key: str | None
    virtual_host: bool


RESERVED_SERVICE_PATHS = frozenset(
    {"/health", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"})


CONSOLE_PATH = "/console"


def is_console_path(raw_path: str) -> bool:
    """``/console`` and everything under ``/console/`` (the web console, web/console/)."""
    return raw_path == CONSOLE_PATH or raw_path.startswith(CONSOLE_PATH + "/")


def is_service_endpoint(raw_path: str, *, console: bool = False) -> bool:
    """True for the §2.2 service paths, and the console's when it is enabled (the caller
    also checks: path-style, no S3 auth)."""
    return (raw_path in RESERVED_SERVICE_PATHS or raw_path.startswith("/docs/")
            or (console and is_console_path(raw_path)))


def split_target(raw_target: str) -> tuple[str, str]:
    """Split a raw request target at the first ``?`` into (raw path, raw query)."""
    path, _, query = raw_target.partition("?")
    return path, query


def _decode(raw: str, what: str) -> str:
    # NOTE: WSGI strings are latin-1 views of the wire bytes, so latin-1 recovers them;
    # a str holding code points above U+00FF cannot come from WSGI and is taken as text.
    if raw.isascii() and "%" not in raw:
        return raw  # nothing to decode (most names and values)
    try:
        data = raw.encode("latin-1")
    except UnicodeEncodeError:
        data = raw.encode("utf-8", "surrogateescape")
    try:
        return unquote_to_bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        if what == "path":  # [S3] a key S3 cannot read is the URI it cannot parse
            raise InvalidURI() from None
        raise InvalidArgument(f"The {what} is not valid UTF-8 after percent-decoding",
                              ArgumentName=what) from None


def decode_path_segment(raw: str) -> str:
    """Percent-decode a raw bucket or key (``+`` literal); bad UTF-8 -> 400 InvalidURI."""
    return _decode(raw, "path")


def parse_query(raw_query: str) -> dict[str, str]:
    """Decode a raw query string; the first occurrence of a name wins, blanks are kept."""
    params: dict[str, str] = {}
    for piece in raw_query.split("&"):
        if not piece:
            continue
        raw_name, _, raw_value = piece.partition("=")
        name = _decode(raw_name, "query")
        if name not in params:
            params[name] = _decode(raw_value, "query")
    return params


def _strip_port(host: str) -> str:
    if host.startswith("["):
        end = host.find("]")
        return host if end < 0 else host[: end + 1]
    return host.partition(":")[0]


def resolve_address(host: str | None, raw_path: str, domains: Sequence[str]) -> Address:
    """§2.1 virtual-hosted vs path-style, §2.3 bucket/key extraction."""
    h = _strip_port(host.strip().lower()) if host else ""
    path = raw_path[1:] if raw_path.startswith("/") else raw_path
    lowered = [d.lower() for d in domains if d]
    matches = [d for d in lowered if len(h) > len(d) + 1 and h.endswith("." + d)]
    if matches and h not in lowered:  # a host equal to a domain is path-style
        bucket = h[: -len(max(matches, key=len)) - 1]
        validate_bucket_name(bucket)
        return Address(bucket, decode_path_segment(path) if path else None, True)
    if not path:
        return Address(None, None, False)
    raw_bucket, _, raw_key = path.partition("/")
    key = decode_path_segment(raw_key) if raw_key else None
    return Address(decode_path_segment(raw_bucket), key, False)
