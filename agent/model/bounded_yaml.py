"""A YAML loader for files anyone may edit: no anchors, aliases or merge keys, and bounded
nodes, nesting and scalar length, all checked while composing, before Python objects exist.

Aliases are what make a 370-byte "billion laughs" file expand to gigabytes; the bounds keep
the cost of any accepted file proportional to its size, and small.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import AliasEvent, ScalarEvent
from yaml.nodes import MappingNode, Node

MAX_NODES = 100_000
"""Scalars plus collections: ~10k pods of four annotations each. Composing 100k nodes costs
~65 MiB and ~2 s here, so a 1 MiB file of `[a,a,...]` (500k nodes) is refused part way."""
MAX_DEPTH = 4
"""Collections inside collections: the format needs 2 (file -> pod -> values); up to 4 leaves
room for a shape error that names the pod and annotation, e.g. for `{k: [1]}`."""
MAX_SCALAR_CHARS = 1024
"""Pod keys, annotation keys and values are a few hundred characters at most (Kubernetes caps
names at 253 and keys at 317); 1024 also keeps int conversion far from its 4300-digit limit."""
_SHOWN_NAME_CHARS = 40

_MERGE_TAG = "tag:yaml.org,2002:merge"


class RefusedYAML(yaml.MarkedYAMLError):
    """Valid YAML that this loader refuses (anchors, aliases, merge keys, beyond a bound)."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem=problem, problem_mark=mark)


def _shown(name: str) -> str:
    return name if len(name) <= _SHOWN_NAME_CHARS else name[:_SHOWN_NAME_CHARS] + "..."


class BoundedSafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses what an annotations file never needs, at its line/column."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nodes = 0
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            raise RefusedYAML(f"alias *{_shown(event.anchor)}: anchors and aliases are not allowed", event.start_mark)
        if event.anchor is not None:
            raise RefusedYAML(f"anchor &{_shown(event.anchor)}: anchors and aliases are not allowed", event.start_mark)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise RefusedYAML(f"more than {MAX_NODES} nodes", event.start_mark)
        if isinstance(event, ScalarEvent):
            if len(event.value) > MAX_SCALAR_CHARS:
                raise RefusedYAML(
                    f"a scalar of {len(event.value)} characters is longer than {MAX_SCALAR_CHARS}", event.start_mark
                )
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise RefusedYAML(f"nested too deeply (more than {MAX_DEPTH} levels)", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def flatten_mapping(self, node: MappingNode) -> None:
        for key_node, _value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                raise RefusedYAML("merge keys (<<) are not allowed", key_node.start_mark)
        super().flatten_mapping(node)

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as err:
            # A timestamp such as 2024-13-45 matches YAML's pattern but not the calendar.
            raise yaml.constructor.ConstructorError(
                None, None, f"invalid {node.tag.rsplit(':', 1)[-1]} value: {err}", node.start_mark
            ) from None


def load_bounded(text: str) -> Any:
    """The single YAML document in text, as yaml.safe_load would build it, or YAMLError."""
    loader = BoundedSafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
