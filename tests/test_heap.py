"""Freezing the long-lived heap keeps it out of collections without stopping the collection of new garbage."""

from __future__ import annotations

import gc
import weakref

from engine.heap import settle_long_lived


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_settled_objects_are_not_scanned_and_new_cycles_are_still_collected() -> None:
    kept = [Node() for _ in range(1000)]
    try:
        frozen = settle_long_lived()
        assert frozen >= len(kept)
        assert not any(gc.is_tracked(k) and k in gc.get_objects() for k in kept[:3])  # out of every generation
        a, b = Node(), Node()
        a.other, b.other = b, a  # a reference cycle created after the freeze
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
