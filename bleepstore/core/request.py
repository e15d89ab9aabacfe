"""The framework-free request/response shapes that core operations work on.

Invariants: ``S3Request`` is built by the web layer after routing and authentication;
core never sees Falcon or WSGI. A response body is either small bytes (XML) or a
``stream`` with a known ``content_length`` (object data, never read whole).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bleepstore.model import EventOrigin, Principal
from bleepstore.s3.checksums import DigestResult
from bleepstore.s3.router import Op


class Payload(Protocol):
    """The decoded request payload (aws-chunked removed), verified at ``finish()``."""

    declared_length: int | None  # decoded length when known up front

    def read(self, size: int) -> bytes: ...

    def finish(self) -> DigestResult: ...


@dataclass
class S3Request:
    op: Op
    method: str
    bucket: str
    key: str
    query: Mapping[str, str]
    header: Callable[[str], str | None]  # lowercase name -> value
    header_items: Iterable[tuple[str, str]]  # (lowercase name, value), all headers
    principal: Principal
    payload: Payload
    request_id: str = ""
    host: str = ""
    scheme: str = "http"
    virtual_host: bool = False
    raw_path: str = ""
    source_ip: str = ""  # REMOTE_ADDR: the peer (aws:SourceIp)
    auth_mode: str = "anonymous"  # "anonymous" | "header" | "presigned"
    signature_version: str = ""  # "AWS4-HMAC-SHA256" | "AWS" (SigV2) | "" (anonymous)


def origin_of(req: S3Request) -> EventOrigin:
    """What a change made by ``req`` tells its events (the outbox's ``request_id``)."""
    return EventOrigin(req.request_id, req.op.value)


@dataclass
class S3Response:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    stream: Any = None  # a BlobReader: file-like + iterable + close()
    content_length: int | None = None
    content_type: str | None = None

    def header(self, name: str, value: str | None) -> S3Response:
        if value is not None:
            self.headers.append((name, value))
        return self


def xml_response(body: bytes, status: int = 200) -> S3Response:
    return S3Response(status=status, body=body, content_type="application/xml")


def empty(status: int = 200) -> S3Response:
    return S3Response(status=status, body=b"" if status not in (204, 304) else None)


def query_flag(query: Mapping[str, str], name: str) -> bool:
    return name in query
