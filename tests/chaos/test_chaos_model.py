"""The chaos test's model of legal final states (chaos_load.candidates), table-driven."""

from __future__ import annotations

import math

import pytest
from chaos_load import Op, State, candidates

A: State = ("sha-a", '"a"')
B: State = ("sha-b", '"b"')
C: State = ("sha-c", '"c"')
INF = math.inf


def op(state: State, start: float, end: float | None) -> Op:
    """end=None: unknown outcome."""
    return Op("delete" if state is None else "put", "k", state, start,
              INF if end is None else end, end is not None)


@pytest.mark.parametrize("ops,legal", [
    ([], {None}),
    ([op(A, 0, 1)], {A}),
    ([op(A, 0, 1), op(B, 2, 3)], {B}),                    # sequential: the later ack wins
    ([op(A, 0, 3), op(B, 1, 2)], {A, B}),                 # overlapping acks: either order
    ([op(A, 0, 1), op(None, 2, 3)], {None}),              # acked delete after acked put
    ([op(A, 0, 1), op(B, 2, None)], {A, B}),              # later unknown write: maybe
    ([op(A, 2, 3), op(B, 0, None)], {A, B}),              # unknown may land after A's ack
    ([op(A, 0, None)], {None, A}),                        # only unknowns: absent is legal
    ([op(A, 0, 1), op(B, 2, 3), op(C, 4, 5)], {C}),
    ([op(A, 0, 1), op(None, 2, None), op(C, 4, 5)], {None, C}),  # may apply after C
    ([op(A, 0, 1), op(B, 2, None), op(C, 4, 5)], {B, C}),  # B may still be in flight
])
def test_candidates(ops: list[Op], legal: set[State]) -> None:
    assert candidates(ops)[0] == legal
