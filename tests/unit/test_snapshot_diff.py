"""snapshot_diff, table-driven: what went, what came or changed, in which order."""

from __future__ import annotations

import pytest

from agent.model.snapshot_diff import snapshot_diff

CASES = [
    # (old, new, gone, came)
    ({}, {}, [], []),
    ({"a": 1}, {"a": 1}, [], []),
    ({}, {"a": 1, "b": 2}, [], [(None, 1), (None, 2)]),
    ({"a": 1, "b": 2}, {}, [1, 2], []),
    ({"a": 1}, {"a": 3}, [], [(1, 3)]),
    ({"a": 1, "b": 2, "c": 3}, {"c": 4, "d": 5, "a": 1}, [2], [(3, 4), (None, 5)]),  # came in new's order
    ({"b": 2, "a": 1}, {}, [2, 1], []),  # gone in old's order
]


@pytest.mark.parametrize(("old", "new", "gone", "came"), CASES)
def test_snapshot_diff(old: dict, new: dict, gone: list, came: list) -> None:
    assert snapshot_diff(old, new) == (gone, came)
