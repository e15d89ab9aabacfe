"""HTTP date, ETag and header-value helpers (s3-api.md §4.2, §4.3, §3.4, §8.2). Pure.

Invariants:
- Stored timestamps are ISO 8601 UTC with milliseconds (``2026-02-22T12:00:00.123Z``);
  ``iso_from_datetime`` always produces exactly that shape (truncating microseconds).
- ``http_date`` truncates the milliseconds; every conditional comparison works in whole
  seconds (``iso_to_epoch_seconds``).
- ``parse_http_date`` never raises: anything that is not IMF-fixdate, RFC 850 or asctime
  yields ``None`` so the caller treats the header as absent.
- ETags are compared after ``normalize_etag`` (no quotes, no ``W/``, lowercase).
- A request body is framed by ``Content-Length`` or by plain ``chunked`` alone; any other
  transfer coding is 501 (``check_transfer_encoding``).
- A ``response-*`` override becomes a header value only without control characters, so it
  can never split the header or be refused by the server (``override_value``).
- A stored ``Content-Encoding`` is the one sent, less only an ``aws-chunked`` token.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime

from bleepstore.errors import InvalidArgument, S3NotImplemented

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_TIME = r"(?P<H>[0-9]{2}):(?P<M>[0-9]{2}):(?P<S>[0-9]{2})"
_MON = r"(?P<mon>[A-Z][a-z]{2})"
_IMF = re.compile(
    rf"(?P<wd>[A-Z][a-z]{{2}}), (?P<d>[0-9]{{2}}) {_MON} (?P<y>[0-9]{{4}}) {_TIME} GMT")
_RFC850 = re.compile(
    rf"(?P<wd>[A-Z][a-z]+), (?P<d>[0-9]{{2}})-{_MON}-(?P<y>[0-9]{{2}}) {_TIME} GMT")
_ASCTIME = re.compile(
    rf"(?P<wd>[A-Z][a-z]{{2}}) {_MON} (?P<d>[ 0-9][0-9]) {_TIME} (?P<y>[0-9]{{4}})")
_WEEKDAYS = {_IMF: _DAYS, _RFC850: _LONG_DAYS, _ASCTIME: _DAYS}
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # C0 (but HTAB), DEL, C1


def iso_from_datetime(dt: datetime) -> str:
    """Format an aware (or naive-UTC) datetime as stored: ISO UTC with milliseconds."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z"


def now_iso() -> str:
    """The current time in the stored ISO format."""
    return iso_from_datetime(datetime.now(UTC))


def _parse_iso(iso_ts: str) -> datetime:
    dt = datetime.fromisoformat(iso_ts.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def iso_to_epoch_seconds(iso_ts: str) -> int:
    """Whole seconds since the epoch (milliseconds truncated)."""
    return calendar.timegm(_parse_iso(iso_ts).utctimetuple())


def http_date(iso_ts: str) -> str:
    """IMF-fixdate (``Sun, 22 Feb 2026 12:00:00 GMT``) from a stored ISO timestamp."""
    dt = _parse_iso(iso_ts)
    return (f"{_DAYS[dt.weekday()]}, {dt.day:02d} {_MONTHS[dt.month - 1]} {dt.year:04d} "
            f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} GMT")


def parse_http_date(value: str) -> datetime | None:
    """Parse IMF-fixdate, RFC 850 or asctime into an aware UTC datetime; else ``None``."""
    text = value.strip()
    for pattern, weekdays in _WEEKDAYS.items():
        m = pattern.fullmatch(text)
        if m is None:
            continue
        if m["wd"] not in weekdays or m["mon"] not in _MONTHS:
            return None
        year = int(m["y"])
        if pattern is _RFC850:
            # NOTE: fixed pivot instead of RFC 7231's "50 years from now" so the
            # function stays pure; two-digit years 70-99 are 19xx, 00-69 are 20xx.
            year += 1900 if year >= 70 else 2000
        try:
            return datetime(year, _MONTHS.index(m["mon"]) + 1, int(m["d"]),
                            int(m["H"]), int(m["M"]), int(m["S"]), tzinfo=UTC)
        except ValueError:
            return None
    return None


def normalize_etag(value: str) -> str:
    """Strip whitespace, a ``W/`` prefix and surrounding quotes; lowercase."""
    text = value.strip()
    if text[:2] in ("W/", "w/"):
        text = text[2:]
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = text[1:-1]
    return text.lower()


def etag_matches(header_value: str, etag: str) -> bool:
    """True when any comma-separated entry of the header is ``*`` or equals ``etag``."""
    wanted = normalize_etag(etag)
    for entry in header_value.split(","):
        if entry.strip() == "*":
            return True
        candidate = normalize_etag(entry)
        if candidate and candidate == wanted:
            return True
    return False


def quote_etag(hex_digest: str) -> str:
    """The wire (and stored) form of an ETag: the value in double quotes."""
    return f'"{hex_digest}"'


def stored_content_encoding(value: str | None) -> str | None:
    """The ``Content-Encoding`` an object keeps (s3-api.md §8.1, auth.md §6.2).

    The header as sent, byte for byte (``deflate, gzip`` stays ``deflate, gzip``), except
    that an ``aws-chunked`` token (the framing of the request, not a coding of the object)
    is cut out with its comma, the rest left as it was. Nothing left, or a blank header:
    None (nothing is stored).
    """
    if value is None or not value.strip(" \t"):
        return None
    pieces = value.split(",")
    kept = [p for p in pieces if p.strip(" \t").lower() != "aws-chunked"]
    if len(kept) == len(pieces):
        return value
    rest = ",".join(kept).strip(" \t")
    return rest if rest.strip(" \t,") else None


def check_transfer_encoding(value: str | None) -> None:
    """Refuse every transfer coding but plain ``chunked`` (501, as S3 does).

    NOTE: gunicorn removes only the chunked framing and hands over the rest as is: with
    ``gzip, chunked`` the stored object would be the compressed bytes.
    """
    if value is None:
        return
    codings = [c.strip(" \t").lower() for c in value.split(",")]
    if codings != ["chunked"]:
        raise S3NotImplemented(Header="Transfer-Encoding")


def override_value(value: str, param: str) -> str:
    """A ``response-*`` override as a header value (WSGI: one character per byte).

    Control characters are InvalidArgument (CR/LF would split the header, and the server
    refuses to send any of them); other text goes out as its UTF-8 bytes.
    """
    if _CONTROL.search(value):
        raise InvalidArgument(f"Invalid value for {param}: control characters are not allowed",
                              ArgumentName=param, ArgumentValue=value)
    return value.encode("utf-8", "replace").decode("latin-1")
