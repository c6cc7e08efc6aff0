"""What changed between two snapshots of keyed objects (a resync's pods, a relist's objects)."""

from __future__ import annotations

from typing import Hashable, Mapping, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def snapshot_diff(old: Mapping[K, V], new: Mapping[K, V]) -> tuple[list[V], list[tuple[V | None, V]]]:
    """(the values whose key is gone, in `old`'s order; (old value or None, new value) for each
    key added or whose value changed, in `new`'s order)."""
    gone = [value for key, value in old.items() if key not in new]
    came = [(old.get(key), value) for key, value in new.items() if old.get(key) != value]
    return gone, came
