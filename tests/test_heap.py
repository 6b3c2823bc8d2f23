"""`service.heap.settle`: a full collection at a moment the daemon chooses, then a freeze, so
that the collections the interpreter starts itself walk only newer objects."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from reconciler.service import heap


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of this test process collects as usual


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    """Two objects that refer to each other and to nothing else: only the collector frees them."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_what_survives_a_settle_is_left_out_of_later_collections() -> None:
    kept = _Node()
    heap.settle()
    assert gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects())  # generations 0 to 2: not frozen ones


def test_garbage_frozen_before_is_collected_by_the_next_settle() -> None:
    gone = _cycle()
    gc.freeze()  # as a settle would have, had the cycle been made just before it
    gc.collect()
    assert gone() is not None  # a plain collection leaves frozen objects alone
    heap.settle()
    assert gone() is None
