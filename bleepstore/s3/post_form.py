"""POST Object's ``multipart/form-data`` body (RFC 7578 over RFC 2046 §5.1), parsed
incrementally and sans-I/O, in the manner of h11: ``receive_data(bytes)`` (``b""`` at the
end of the body), then ``next_event()`` until it says ``NEED_DATA``.

Events: a ``Field`` for each part before the file, ``FileStart`` when the part named
``file`` begins, its content as ``FileData`` chunks, ``FileEnd``. Anything after the file
part is never looked at (S3 ignores the fields that follow the file).

Invariants:
- everything before the file's content (preamble, boundaries, part headers, field values)
  is at most ``max_pre_data`` bytes (AWS: 20 KB) and is buffered; the file is not: a
  ``FileData`` leaves at most one delimiter's length minus one byte behind, so memory stays
  bounded by the size of the chunks fed, whatever the file's size;
- events do not depend on how the body is split into ``receive_data`` calls;
- a delimiter is ``CRLF--boundary`` as RFC 2046 says (a bare LF never ends a part), the
  first one may start the body; transport padding after a boundary is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from bleepstore import errors

MAX_PRE_DATA = 20 * 1024
MAX_BOUNDARY = 70
_LINE_LIMIT = 1024  # a boundary line's transport padding, before its CRLF
_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)


# NOTE: errors.py has no class for these two POST codes; they are here until it does.
MSG_NOT_MULTIPART = "Bucket POST must be of the enclosure-type multipart/form-data"
MSG_ONE_FILE = "POST requires exactly one file upload per request."


@dataclass(frozen=True)
class Field:
    name: str  # as sent (names are matched case-insensitively by the caller)
    value: str


@dataclass(frozen=True)
class FileStart:
    name: str
    filename: str | None  # None: the part had no ``filename`` parameter at all
    content_type: str | None


@dataclass(frozen=True)
class FileData:
    data: bytes


@dataclass(frozen=True)
class FileEnd:
    pass


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()
Event = Field | FileStart | FileData | FileEnd | _NeedData


def boundary_of(content_type: str | None) -> str:
    """The boundary of a ``multipart/form-data`` Content-Type: 412 when the body is not
    multipart/form-data (S3's answer), 400 MalformedPOSTRequest without a usable boundary."""
    media, _, rest = (content_type or "").partition(";")
    if media.strip().lower() != "multipart/form-data":
        raise errors.PreconditionFailed(Condition=MSG_NOT_MULTIPART)
    params = _params(";" + rest)
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= MAX_BOUNDARY or not boundary.isascii():
        raise errors.MalformedPOSTRequest()
    return boundary


def _params(text: str) -> dict[str, str]:
    """``; name=value; name="quoted"`` -> lowercase names to unquoted values."""
    out: dict[str, str] = {}
    for name, value in _PARAM.findall(text):
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
        out.setdefault(name.lower(), value)
    return out


def _part_headers(block: bytes) -> dict[str, str]:
    """A part's header block (without the blank line): lowercase names, folded lines."""
    headers: dict[str, str] = {}
    last = None
    for line in block.decode("utf-8", "replace").split("\r\n"):
        if line[:1] in (" ", "\t") and last is not None:
            headers[last] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise errors.MalformedPOSTRequest()
        last = name.strip().lower()
        headers.setdefault(last, value.strip())
    return headers


class FormParser:
    """One POST body; see the module docstring for the protocol."""

    PREAMBLE, BOUNDARY_LINE, HEADERS, VALUE, FILE, DONE = range(6)
    _state_names: ClassVar[tuple[str, ...]] = ("PREAMBLE", "BOUNDARY_LINE", "HEADERS",
                                               "VALUE", "FILE", "DONE")

    def __init__(self, boundary: str, *, max_pre_data: int = MAX_PRE_DATA) -> None:
        self._dash = b"--" + boundary.encode("ascii")
        self._delimiter = b"\r\n" + self._dash
        self._max = max_pre_data
        self._buf = bytearray()
        self._eof = False
        self._state = self.PREAMBLE
        self._consumed = 0  # bytes before the file's content, consumed so far
        self._field = ""
        self._file_ended = False

    @property
    def state(self) -> str:
        return self._state_names[self._state]

    def receive_data(self, data: bytes) -> None:
        if self._state == self.DONE:
            return
        if not data:
            self._eof = True
        else:
            self._buf += data

    def next_event(self) -> Event:
        while True:
            state = self._state
            if state == self.DONE:
                return NEED_DATA if not self._file_ended else self._after_file()
            if state == self.FILE:
                return self._file()
            event = (self._preamble() if state == self.PREAMBLE else
                     self._boundary_line() if state == self.BOUNDARY_LINE else
                     self._headers() if state == self.HEADERS else self._value())
            if event is not None:
                return event
            if self._state == state:  # no progress: more bytes are needed
                return self._need_more()

    # --- before the file ------------------------------------------------------------------

    def _need_more(self) -> Event:
        if self._consumed + len(self._buf) > self._max:
            raise errors.MaxPostPreDataLengthExceeded(MaxPostPreDataLengthBytes=self._max)
        if self._eof:
            raise errors.MalformedPOSTRequest()
        return NEED_DATA

    def _consume(self, n: int) -> bytes:
        data = bytes(self._buf[:n])
        del self._buf[:n]
        self._consumed += n
        if self._consumed > self._max:
            raise errors.MaxPostPreDataLengthExceeded(MaxPostPreDataLengthBytes=self._max)
        return data

    def _preamble(self) -> Event | None:
        if self._buf.startswith(self._dash):
            self._consume(len(self._dash))
        else:
            at = self._buf.find(self._delimiter)
            if at < 0:
                return None
            self._consume(at + len(self._delimiter))
        self._state = self.BOUNDARY_LINE
        return None

    def _boundary_line(self) -> Event | None:
        """After a boundary: ``--`` closes the form; else padding, then CRLF."""
        if len(self._buf) < 2:
            return None
        if self._buf.startswith(b"--"):
            raise errors.InvalidArgument(MSG_ONE_FILE, ArgumentName="file", ArgumentValue=0)
        end = self._buf.find(b"\r\n")
        if end < 0:
            pending = self._buf[:-1] if self._buf.endswith(b"\r") else self._buf
            if len(self._buf) > _LINE_LIMIT or pending.strip(b" \t"):
                raise errors.MalformedPOSTRequest()
            return None
        if self._buf[:end].strip(b" \t"):
            raise errors.MalformedPOSTRequest()
        self._consume(end + 2)
        self._state = self.HEADERS
        return None

    def _headers(self) -> Event | None:
        if self._buf.startswith(b"\r\n"):
            block, size = b"", 2
        else:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return None
            block, size = bytes(self._buf[:end]), end + 4
        self._consume(size)
        headers = _part_headers(block)
        disposition, _, rest = headers.get("content-disposition", "").partition(";")
        params = _params(";" + rest)
        name = params.get("name")
        if name is None:
            raise errors.MalformedPOSTRequest()
        if disposition.strip().lower() == "form-data" and name.lower() == "file":
            self._state = self.FILE
            return FileStart(name, params.get("filename"), headers.get("content-type"))
        self._field = name
        self._state = self.VALUE
        return None

    def _value(self) -> Event | None:
        at = self._buf.find(self._delimiter)
        if at < 0:
            return None
        raw = self._consume(at)
        self._consume(len(self._delimiter))
        self._state = self.BOUNDARY_LINE
        try:
            return Field(self._field, raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise errors.MalformedPOSTRequest() from None

    # --- the file -------------------------------------------------------------------------

    def _file(self) -> Event:
        at = self._buf.find(self._delimiter)
        if at >= 0:
            data = bytes(self._buf[:at])
            self._buf.clear()
            self._state, self._file_ended = self.DONE, True
            return FileData(data) if data else self._after_file()
        keep = len(self._delimiter) - 1
        if len(self._buf) > keep:
            data = bytes(self._buf[:-keep])
            del self._buf[:-keep]
            return FileData(data)
        if self._eof:
            raise errors.MalformedPOSTRequest()
        return NEED_DATA

    def _after_file(self) -> Event:
        self._file_ended = False  # FileEnd once; NEED_DATA for ever after
        return FileEnd()
