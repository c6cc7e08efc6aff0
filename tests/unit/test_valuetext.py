"""quote_value: short, one-line text of any value, whose cost does not grow with the value."""

from __future__ import annotations

import datetime
import tracemalloc
from types import MappingProxyType

import pytest

from agent.model.valuetext import SHOWN_CHARS, quote_value


def shared_bomb(levels: int, fanout: int = 9) -> list:
    """What PyYAML builds from a billion-laughs file: fanout**levels leaves, shared references."""
    node: list = ["lol"] * fanout
    for _ in range(levels - 1):
        node = [node] * fanout
    return node


def deeply_nested(depth: int) -> list:
    node: list = []
    for _ in range(depth):
        node = [node]
    return node


def self_referencing_list() -> list:
    node: list = [1]
    node.append(node)
    return node


def self_referencing_dict() -> dict:
    node: dict = {"a": 1}
    node["self"] = node
    return node


SMALL = [
    ("10M", "'10M'"),
    ("a\nb", "'a\\nb'"),
    ("x" * 41, "'" + "x" * 40 + "'... (41 chars)"),
    (None, "None (NoneType)"),
    (True, "True (bool)"),
    (1, "1 (int)"),
    (1.5, "1.5 (float)"),
    (b"\x00ab", "b'\\x00ab' (bytes)"),
    ([], "[] (list of 0 items)"),
    (["k", "v"], "['k', 'v'] (list of 2 items)"),
    ((1,), "(1) (tuple of 1 item)"),
    ({"x": 1}, "{'x': 1} (dict of 1 item)"),
    (MappingProxyType({"x": [1]}), "{'x': [1]} (mappingproxy of 1 item)"),
    (frozenset(), "{} (frozenset of 0 items)"),
    (datetime.date(2024, 1, 1), "datetime.date(2024, 1, 1) (date)"),
    (2**200, "<int of 201 bits> (int)"),
    (object(), "<object> (object)"),
]


@pytest.mark.parametrize(("value", "shown"), SMALL)
def test_small_values_are_shown_whole(value: object, shown: str) -> None:
    assert quote_value(value) == shown


LARGE = [
    pytest.param(shared_bomb(6), "[[[[[['lol', 'lol', 'lol', 'lol', 'lol',...", "list of 9 items", id="alias-bomb"),
    pytest.param(list(range(1_000_000)), "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 1...", "list of 1000000 items", id="huge-list"),
    pytest.param({i: "v" for i in range(100_000)}, "{0: 'v', 1: 'v', 2: 'v', 3: 'v', 4: 'v',...", "dict of 100000 items", id="huge-dict"),
    pytest.param(deeply_nested(100_000), "[" * 40 + "...", "list of 1 item", id="deeply-nested"),
    pytest.param(self_referencing_list(), "[1, [1, [1, [1, [1, [1, [1, [1, [1, [1, ...", "list of 2 items", id="self-list"),
    pytest.param(self_referencing_dict(), "{'a': 1, 'self': {'a': 1, 'self': {'a': ...", "dict of 2 items", id="self-dict"),
    pytest.param(["x" * 10_000_000], "['" + "x" * 38 + "...", "list of 1 item", id="huge-string-inside"),
    pytest.param(b"\xff" * 10_000_000, "b'" + "\\xff" * 9 + "\\x...", "bytes", id="huge-bytes"),
    pytest.param(10**50_000, "<int of 166097 bits>", "int", id="huge-int"),
]


@pytest.mark.parametrize(("value", "prefix", "kind"), LARGE)
def test_large_values_are_cut_before_they_are_formatted(value: object, prefix: str, kind: str) -> None:
    tracemalloc.start()
    try:
        shown = quote_value(value)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert shown == f"{prefix} ({kind})"
    # repr() of the bomb alone would be 3.7 MB; the cut text needs a few hundred bytes.
    assert peak_bytes < 64 * 1024, peak_bytes


def test_the_shown_part_is_bounded_for_every_container_shape() -> None:
    for value in (shared_bomb(4), deeply_nested(50), self_referencing_dict(), {("t",) * 100: "v"}):
        shown, _, _ = quote_value(value).rpartition(" (")
        assert len(shown) <= SHOWN_CHARS + len("...")
