"""GetObject/HeadObject ``partNumber`` windows (core/multipart.py ``part_range``), with the
store and request stubbed: which part numbers exist, and S3's errors for the others.

Past the object's parts S3 answers 416 InvalidPartNumber with ``PartNumberRequested`` and
``ActualPartCount`` (a non-multipart object has one part), not 400 InvalidPart; a value that
is not an integer in 1..10000 is 400 InvalidArgument (docs/decisions.md).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from bleepstore import errors
from bleepstore.core.multipart import part_range

WINDOWS = {1: (0, 5), 2: (5, 5), 3: (10, 1)}  # part -> (offset, size) of a 3-part object


def call(number: str | None, *, parts_count: int | None, size: int = 11,
         range_header: str | None = None) -> tuple[int, int] | None:
    store = SimpleNamespace(part_window=lambda ref, n: WINDOWS.get(n) if parts_count else None)
    svc: Any = SimpleNamespace(store=store)
    query = {} if number is None else {"partNumber": number}
    req: Any = SimpleNamespace(query=query,
                               header=lambda name: range_header if name == "range" else None)
    obj: Any = SimpleNamespace(parts_count=parts_count, size=size, data_ref="ref")
    return part_range(svc, req, obj)


def test_windows_of_existing_parts() -> None:
    assert call(None, parts_count=3) is None
    assert call("1", parts_count=3) == (0, 4)
    assert call("2", parts_count=3) == (5, 9)
    assert call("3", parts_count=3) == (10, 10)
    assert call("1", parts_count=None, size=10) == (0, 9)  # a plain object is part 1
    assert call("1", parts_count=None, size=0) is None


@pytest.mark.parametrize("number,parts_count,actual", [
    ("4", 3, 3), ("10000", 3, 3), ("2", None, 1), ("2", 0, 1), ("10000", None, 1),
])
def test_part_past_the_object_is_416_invalid_part_number(number: str, parts_count: int | None,
                                                         actual: int) -> None:
    with pytest.raises(errors.InvalidPartNumber) as info:
        call(number, parts_count=parts_count)
    err = info.value
    assert (err.status, err.code) == (416, "InvalidPartNumber")
    assert err.msg == "The requested partnumber is not satisfiable"
    assert err.extra == {"PartNumberRequested": str(int(number)), "ActualPartCount": str(actual)}
    assert list(err.extra) == ["PartNumberRequested", "ActualPartCount"]


@pytest.mark.parametrize("number", ["0", "10001", "-1", "abc", "", "1.5", "+1", "9" * 30])
@pytest.mark.parametrize("parts_count", [3, None])
def test_not_a_part_number_is_400_invalid_argument(number: str,
                                                   parts_count: int | None) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        call(number, parts_count=parts_count)
    err = info.value
    assert err.status == 400
    assert err.msg == "Part number must be an integer between 1 and 10000, inclusive"
    assert err.extra == {"ArgumentName": "partNumber", "ArgumentValue": number}


def test_range_with_part_number_is_invalid_request() -> None:
    with pytest.raises(errors.InvalidRequest):
        call("1", parts_count=3, range_header="bytes=0-1")
