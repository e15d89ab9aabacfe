"""``retry_superseded``: a read whose row was superseded is redone, within a bound."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bleepstore import errors
from bleepstore.core.stale import STALE_RETRIES, BlobSuperseded, retry_superseded


def flaky(failures: int) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def operation() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise BlobSuperseded("ref")
        return "served"

    return calls, operation


def test_superseded_reads_are_redone_until_one_finds_its_blob() -> None:
    calls, operation = flaky(STALE_RETRIES - 1)
    assert retry_superseded(operation) == "served"
    assert len(calls) == STALE_RETRIES


def test_a_key_that_never_holds_still_is_503_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    calls, operation = flaky(STALE_RETRIES)
    with pytest.raises(errors.ServiceUnavailable):
        retry_superseded(operation)
    assert len(calls) == STALE_RETRIES
    assert "gave up after" in caplog.text


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def operation() -> None:
        calls.append(1)
        raise errors.NoSuchKey()

    with pytest.raises(errors.NoSuchKey):
        retry_superseded(operation)
    assert calls == [1]
