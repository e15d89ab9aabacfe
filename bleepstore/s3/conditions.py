"""Conditional requests (s3-api.md §11, §8.6 step 3, §8.1). Pure.

Invariants:
- Reads follow RFC 7232 precedence: If-Match, else If-Unmodified-Since; then
  If-None-Match, else If-Modified-Since. Failures of the first pair raise
  ``PreconditionFailed``; the second pair answers 304 (returned, not raised).
- Copy-source conditions use the same precedence but never yield 304: every failure is
  ``PreconditionFailed``.
- Dates compare at whole seconds; an unparseable date counts as an absent header.
- ``get(name)`` is any header lookup returning ``None`` when the header is absent.
- Writes (PutObject, CompleteMultipartUpload) are not reads: ``If-Match`` is one ETag (or
  ``*``) compared whole, never a list and never a weak match; ``If-None-Match`` is ``*``
  only (docs/decisions.md, "Conditional writes").
"""

from __future__ import annotations

from collections.abc import Callable

from bleepstore.errors import NoSuchKey, PreconditionFailed, S3NotImplemented
from bleepstore.s3.headers import etag_matches, iso_to_epoch_seconds, parse_http_date

HeaderGetter = Callable[[str], "str | None"]


def _date_seconds(value: str | None) -> int | None:
    if value is None:
        return None
    parsed = parse_http_date(value)
    return None if parsed is None else int(parsed.timestamp())


def _check(get: HeaderGetter, names: tuple[str, str, str, str], etag: str,
           last_modified_iso: str) -> str | None:
    """Return the name of the first failing condition (in precedence order) or None."""
    if_match, if_unmodified, if_none_match, if_modified = names
    modified = iso_to_epoch_seconds(last_modified_iso)
    match_value = get(if_match)
    if match_value is not None:
        if not etag_matches(match_value, etag):
            return if_match
    else:
        since = _date_seconds(get(if_unmodified))
        if since is not None and modified > since:
            return if_unmodified
    none_match_value = get(if_none_match)
    if none_match_value is not None:
        if etag_matches(none_match_value, etag):
            return if_none_match
    else:
        since = _date_seconds(get(if_modified))
        if since is not None and modified <= since:
            return if_modified
    return None


_READ = ("If-Match", "If-Unmodified-Since", "If-None-Match", "If-Modified-Since")
_COPY = ("x-amz-copy-source-if-match", "x-amz-copy-source-if-unmodified-since",
         "x-amz-copy-source-if-none-match", "x-amz-copy-source-if-modified-since")


def evaluate_read_conditions(get: HeaderGetter, etag: str,
                             last_modified_iso: str) -> int | None:
    """GetObject/HeadObject: ``None`` to proceed, ``304``, or raise ``PreconditionFailed``."""
    failed = _check(get, _READ, etag, last_modified_iso)
    if failed is None:
        return None
    if failed in _READ[:2]:
        raise PreconditionFailed(Condition=failed)
    return 304


def evaluate_copy_source_conditions(get: HeaderGetter, etag: str,
                                    last_modified_iso: str) -> None:
    """CopyObject/UploadPartCopy source conditions: raise ``PreconditionFailed`` on failure."""
    failed = _check(get, _COPY, etag, last_modified_iso)
    if failed is not None:
        raise PreconditionFailed(Condition=failed)


def validate_write_condition_headers(if_none_match: str | None) -> None:
    """PutObject/CompleteMultipartUpload accept only ``If-None-Match: *`` (§3.4): anything
    else is 501, as S3 answers it (with its ``additionalMessage``)."""
    if if_none_match is not None and if_none_match.strip() != "*":
        raise S3NotImplemented(
            Header="If-None-Match",
            additionalMessage="We don't accept the provided value of If-None-Match header "
                              "for this API")


def write_etag_matches(if_match: str, current_etag: str) -> bool:
    """A write's ``If-Match`` against the current ETag: ``*``, or that one ETag.

    NOTE: S3 compares the header as one value: ``"a", "b"`` never matches (not even when
    one of them is current) and ``W/"a"`` is not ``"a"`` (a write needs a strong match).
    Surrounding quotes are optional, case is ignored (ETags are hex).
    """
    value = if_match.strip()
    if value == "*":
        return True
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    stored = current_etag.strip().strip('"')
    return bool(value) and value.lower() == stored.lower()


def check_write_preconditions(if_match: str | None, if_none_match: str | None,
                              current_etag: str | None, *, key: str | None = None) -> None:
    """PutObject/CompleteMultipartUpload conditionals against the current object
    (``current_etag`` None = absent). Runs again inside the commit's transaction.

    If-Match is checked first: no object -> ``NoSuchKey``; mismatch -> 412 If-Match.
    Then ``If-None-Match: *`` with an existing object -> 412 If-None-Match.
    """
    if if_match is not None:
        if current_etag is None:
            raise NoSuchKey(Key=key)
        if not write_etag_matches(if_match, current_etag):
            raise PreconditionFailed(Condition="If-Match")
    if if_none_match is not None and current_etag is not None:
        raise PreconditionFailed(Condition="If-None-Match")
