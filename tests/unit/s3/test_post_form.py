"""POST Object's multipart/form-data parser (s3/post_form.py), pure: the same events however
the body is split, bounded memory before and during the file, AWS's errors."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bleepstore import errors
from bleepstore.errors import MalformedPOSTRequest, MaxPostPreDataLengthExceeded
from bleepstore.s3 import post_form
from bleepstore.s3.post_form import (
    NEED_DATA,
    Field,
    FileData,
    FileEnd,
    FileStart,
    FormParser,
)

B = "----WebKitFormBoundary7MA4YWxkTrZu0gW"


def body(fields: Sequence[tuple[str, str]], file: bytes | None = b"content", *,
         boundary: str = B, filename: str | None = "photo.jpg",
         after: Sequence[tuple[str, str]] = (("submit", "Upload"),),
         preamble: bytes = b"") -> bytes:
    """A body as browsers and ``requests`` write it (CRLF everywhere, no padding)."""
    out = [preamble]
    for name, value in fields:
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                   .encode() + value.encode() + b"\r\n")
    if file is not None:
        fn = f'; filename="{filename}"' if filename is not None else ""
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"{fn}\r\n'
                   "Content-Type: image/jpeg\r\n\r\n".encode() + file + b"\r\n")
    for name, value in after:
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                   f"{value}\r\n".encode())
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


def parse(chunks: Sequence[bytes], boundary: str = B, **kw: int
          ) -> tuple[list[Field], FileStart, bytes]:
    """Feed ``chunks`` (then EOF) and collect: the fields, the file's start, its bytes."""
    parser = FormParser(boundary, **kw)
    fields: list[Field] = []
    start: FileStart | None = None
    data = bytearray()
    pending = [*chunks, b""]
    while True:
        event = parser.next_event()
        if event is NEED_DATA:
            assert pending, "parser asked for data after the end"
            parser.receive_data(pending.pop(0))
        elif isinstance(event, Field):
            fields.append(event)
        elif isinstance(event, FileStart):
            start = event
        elif isinstance(event, FileData):
            assert event.data
            data += event.data
        else:
            assert isinstance(event, FileEnd) and start is not None
            return fields, start, bytes(data)


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a]


FIELDS = [("key", "user/${filename}"), ("Policy", "eyJ9"), ("x-amz-meta-note", "héllo wörld"),
          ("empty", ""), ("multi", "line one\r\nline two")]


def test_fields_then_file_then_nothing_else() -> None:
    fields, start, data = parse([body(FIELDS, b"\x00\xffJPEG\r\n--not-it\r\n")])
    assert [(f.name, f.value) for f in fields] == FIELDS
    assert start == FileStart("file", "photo.jpg", "image/jpeg")
    assert data == b"\x00\xffJPEG\r\n--not-it\r\n"


def test_one_byte_at_a_time() -> None:
    raw = body(FIELDS, b"abc" * 100)
    assert parse([raw[i:i + 1] for i in range(len(raw))]) == parse([raw])


def test_file_without_filename_and_empty_file() -> None:
    _, start, data = parse([body([("key", "k")], b"", filename=None)])
    assert (start.filename, data) == (None, b"")
    assert parse([body([("key", "k")], b"", filename="")])[1].filename == ""


def test_fields_after_the_file_are_never_read() -> None:
    raw = body([("key", "k")], b"data", after=())
    garbage = raw[:-len(f"--{B}--\r\n")] + f"--{B}\r\nno headers at all".encode()
    assert parse([garbage])[2] == b"data"


def test_preamble_padding_quotes_and_header_case() -> None:
    raw = (f"preamble text\r\n--{B}  \t\r\ncontent-disposition: FORM-DATA; NAME=\"key\"\r\n\r\n"
           f"k\r\n--{B}\r\nContent-Disposition: form-data;\r\n name=\"File\"; "
           f'filename="C:\\\\dir\\\\a \\"b\\".txt"\r\n\r\nxyz\r\n--{B}--').encode()
    fields, start, data = parse([raw])
    assert fields == [Field("key", "k")]
    assert start == FileStart("File", 'C:\\dir\\a "b".txt', None)
    assert data == b"xyz"


def test_a_file_part_that_is_not_form_data_is_a_field() -> None:
    raw = (f'--{B}\r\nContent-Disposition: attachment; name="file"\r\n\r\nnot the file\r\n'
           f'--{B}\r\nContent-Disposition: form-data; name="file"\r\n\r\nreal\r\n--{B}--\r\n')
    fields, _, data = parse([raw.encode()])
    assert fields == [Field("file", "not the file")] and data == b"real"


@pytest.mark.parametrize("content", [
    b"\r", b"\r\n", b"\r\n-", b"\r\n--", f"\r\n--{B[:-1]}".encode(),  # delimiter prefixes
    f"\n--{B}\r\n".encode(),  # a bare LF never ends a part
    f"--{B}".encode(),  # a boundary not preceded by CRLF is content
    f"x\r\n-{B}".encode(),
])
def test_crlf_edge_cases_stay_content(content: bytes) -> None:
    raw = body([("key", "k")], content)
    for chunks in ([raw], [raw[i:i + 1] for i in range(len(raw))],
                   split_at(raw, range(0, len(raw), 7))):
        assert parse(chunks)[2] == content


def test_file_is_streamed_not_buffered() -> None:
    """What a feed brings comes out at once, save a possible delimiter prefix."""
    parser = FormParser(B)
    head = body([("key", "k")], None, after=())[:-len(f"--{B}--\r\n")]
    head += f'--{B}\r\nContent-Disposition: form-data; name="file"\r\n\r\n'.encode()
    parser.receive_data(head)
    assert isinstance(parser.next_event(), Field)
    assert isinstance(parser.next_event(), FileStart)
    out = 0
    for i in range(1, 200):
        parser.receive_data(b"z" * 4096)
        while (event := parser.next_event()) is not NEED_DATA:
            assert isinstance(event, FileData)
            out += len(event.data)
        assert out >= i * 4096 - len(B) - 4
    parser.receive_data(f"\r\n--{B}--".encode())
    rest = [parser.next_event(), parser.next_event()]
    assert isinstance(rest[-1], FileEnd)


def test_huge_field_is_refused_at_the_limit() -> None:
    parser = FormParser(B)
    parser.receive_data(f'--{B}\r\nContent-Disposition: form-data; name="key"\r\n\r\n'.encode())
    fed = 0
    with pytest.raises(MaxPostPreDataLengthExceeded) as exc:
        while True:
            assert parser.next_event() is NEED_DATA
            assert fed < 64 * 1024, "kept buffering past the limit"
            parser.receive_data(b"v" * 1024)
            fed += 1024
    assert fed <= post_form.MAX_PRE_DATA + 1024
    assert (exc.value.status, exc.value.code) == (400, "MaxPostPreDataLengthExceeded")
    assert exc.value.extra == {"MaxPostPreDataLengthBytes": "20480"}


def test_many_small_fields_count_towards_the_limit() -> None:
    raw = body([(f"x-ignore-{i}", "v" * 100) for i in range(200)])
    with pytest.raises(MaxPostPreDataLengthExceeded):
        parse([raw])
    assert parse([raw], max_pre_data=10**6)[2] == b"content"


def test_the_limit_counts_the_file_part_headers_not_its_content() -> None:
    raw = body([("key", "k")], b"f" * 100_000)
    marker = b"Content-Type: image/jpeg\r\n\r\n"
    before_file = raw.index(marker) + len(marker)
    assert len(parse([raw], max_pre_data=before_file)[2]) == 100_000
    with pytest.raises(MaxPostPreDataLengthExceeded):
        parse([raw], max_pre_data=before_file - 1)


def test_no_file_part() -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        parse([body([("key", "k")], None)])
    assert exc.value.msg == "POST requires exactly one file upload per request."
    assert exc.value.extra == {"ArgumentName": "file", "ArgumentValue": "0"}


@pytest.mark.parametrize("raw", [
    b"",  # empty body
    b"no boundary anywhere",
    f"--{B}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk".encode(),  # cut short
    f"--{B}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc".encode(),  # in the file
    f"--{B}\r\nContent-Disposition: form-data\r\n\r\nk\r\n--{B}--".encode(),  # no name
    f"--{B}\r\nno colon here\r\n\r\nk\r\n--{B}--".encode(),
    f"--{B}junk\r\n".encode(),  # a boundary line with more than padding
    f"--{B}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n\xff\r\n--{B}--"
    .encode("latin-1"),  # not UTF-8
])
def test_malformed_bodies(raw: bytes) -> None:
    with pytest.raises(MalformedPOSTRequest) as exc:
        parse([raw])
    assert (exc.value.status, exc.value.code) == (400, "MalformedPOSTRequest")


@pytest.mark.parametrize("content_type,boundary", [
    (f"multipart/form-data; boundary={B}", B),
    ('Multipart/Form-Data; charset=utf-8; boundary="a b:c"', "a b:c"),
    ("multipart/form-data;boundary=x", "x"),
])
def test_boundary_of(content_type: str, boundary: str) -> None:
    assert post_form.boundary_of(content_type) == boundary


@pytest.mark.parametrize("content_type", [None, "", "text/plain",
                                          "application/x-www-form-urlencoded",
                                          "multipart/mixed; boundary=x"])
def test_not_multipart_form_data_is_412(content_type: str | None) -> None:
    with pytest.raises(errors.PreconditionFailed) as exc:
        post_form.boundary_of(content_type)
    assert exc.value.extra == {
        "Condition": "Bucket POST must be of the enclosure-type multipart/form-data"}


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; b=1",
                                          f"multipart/form-data; boundary={'x' * 71}"])
def test_no_usable_boundary_is_malformed(content_type: str) -> None:
    with pytest.raises(MalformedPOSTRequest):
        post_form.boundary_of(content_type)


# --- property: any split of a valid body gives the same result -----------------------------

_names = st.text("abcdefghijklmnopqrstuvwxyz-_", min_size=1, max_size=12).filter(
    lambda n: n.lower() != "file")
_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(fields=st.lists(st.tuples(_names, _values), max_size=6),
       file=st.binary(max_size=300) | st.sampled_from([b"\r\n", b"\r\n--", b"--" + B.encode()]),
       cuts=st.lists(st.integers(0, 2000), max_size=12))
@example(fields=[], file=b"\r", cuts=[1, 2, 3])
def test_any_split_gives_the_same_fields_and_file(fields: list[tuple[str, str]], file: bytes,
                                                  cuts: list[int]) -> None:
    raw = body(fields, file)
    got_fields, start, data = parse(split_at(raw, cuts))
    assert [(f.name, f.value) for f in got_fields] == fields
    assert start.filename == "photo.jpg"
    assert data == file
