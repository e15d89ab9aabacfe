"""Worker CPU pinning (bleepstore/cpus.py): the master's pick, and a thread's affinity as
pin / unpin / repin leave it (real sched_setaffinity on threads of this process; the
pytest thread itself is never pinned)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bleepstore import cpus
from bleepstore.storage.local import LocalBackend
from bleepstore.storage.localio import WRITE_BEHIND_AFTER

ALL = frozenset(os.sched_getaffinity(0))
needs_two = pytest.mark.skipif(len(ALL) < 2, reason="pinning needs 2 or more CPUs")


def test_pick_takes_the_least_used_cpu_lowest_first() -> None:
    assert cpus.pick([0, 1], []) == 0
    assert cpus.pick([0, 1], [0]) == 1
    assert cpus.pick([0, 1], [0, 1]) == 0
    assert cpus.pick([0, 1], [0, 0, 1]) == 1
    assert cpus.pick([2, 3], [None, 0, 2]) == 3  # unpinned and foreign CPUs count for none


def _in_thread(body: Callable[[], Any]) -> Any:
    """``body``'s result, run on a thread of its own (pinning is per thread)."""
    out: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(body())
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return out[0]


def _mine() -> frozenset[int]:
    return frozenset(os.sched_getaffinity(0))


@needs_two
def test_pin_narrows_the_thread_and_the_threads_it_starts(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(cpus, "_usable", None)
    cpu = max(ALL)

    def body() -> tuple[frozenset[int], frozenset[int]]:
        cpus.pin(cpu)
        return _mine(), _in_thread(_mine)

    assert _in_thread(body) == ({cpu}, {cpu})
    assert _mine() == ALL  # the calling thread is untouched


@needs_two
def test_unpin_widens_to_the_set_before_pin_and_repin_narrows_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "_usable", None)
    cpu = min(ALL)

    def body() -> list[Any]:
        seen: list[Any] = [cpus.unpin_this_thread()]  # not pinned yet: nothing to do
        cpus.pin(cpu)
        token = cpus.unpin_this_thread()
        seen += [token, _mine(), cpus.unpin_this_thread()]  # already wide: None
        cpus.repin_this_thread(token)
        seen.append(_mine())
        cpus.repin_this_thread(None)
        seen.append(_mine())
        return seen

    assert _in_thread(body) == [None, {cpu}, ALL, None, {cpu}, {cpu}]


@needs_two
@pytest.mark.parametrize("end", ["finish", "abort"])
def test_a_large_write_runs_wide_and_gives_its_thread_the_cpu_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, end: str) -> None:
    monkeypatch.setattr(cpus, "_usable", None)
    cpu = max(ALL)
    backend = LocalBackend(tmp_path)

    def body() -> list[Any]:
        cpus.pin(cpu)
        writer = backend.open_writer("object")
        writer.write(b"x" * WRITE_BEHIND_AFTER)
        writer.write(b"y" * 1024)  # starts the write-behind lanes
        lanes = [lane._thread.native_id for lane in writer._behind._lanes]  # type: ignore[attr-defined]
        during = [_mine(), *(frozenset(os.sched_getaffinity(tid)) for tid in lanes)]
        getattr(writer, end)()
        return [during, _mine()]

    during, after = _in_thread(body)
    assert during == [ALL, ALL, ALL]
    assert after == {cpu}
