"""The annotations file: parsing, shape errors with pod and key named, and the merge."""

from __future__ import annotations

import json
import tracemalloc

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model import bounded_yaml, overrides
from agent.model.bounded_yaml import MAX_DEPTH, MAX_SCALAR_CHARS
from agent.model.overrides import (
    MAX_OVERRIDES_CHARS,
    OverridesError,
    parse_overrides,
    pod_key_problem,
)

PROPERTY = settings(max_examples=300, deadline=None)


@pytest.mark.parametrize("text", ["", "   \n", "# nothing here\n", "---\n", "~\n", "null"])
def test_empty_file_means_no_overrides(text: str) -> None:
    assert parse_overrides(text) == {}


def test_typical_file() -> None:
    text = """\
# live limits for two pods
shop/web-0:
  kubernetes.io/ingress-bandwidth: 10M
  kubernetes.io/egress-bandwidth: "1G"
  podbw.io/egress-latency: 5ms
batch/job-x:
  kubernetes.io/egress-bandwidth: 1000000
  podbw.io/egress-burst: 1.5
shop/empty: {}
"""
    assert parse_overrides(text) == {
        "shop/web-0": {
            "kubernetes.io/ingress-bandwidth": "10M",
            "kubernetes.io/egress-bandwidth": "1G",
            "podbw.io/egress-latency": "5ms",
        },
        "batch/job-x": {
            "kubernetes.io/egress-bandwidth": "1000000",
            "podbw.io/egress-burst": "1.5",
        },
        "shop/empty": {},
    }


@pytest.mark.parametrize(
    ("yaml_value", "expected"),
    [("10M", "10M"), ("1e3", "1e3"), ("1000", "1000"), ("1.5", "1.5"), ("'10M'", "10M"), ("0x10", "16")],
)
def test_numbers_become_strings(yaml_value: str, expected: str) -> None:
    assert parse_overrides(f"a/b: {{k: {yaml_value}}}") == {"a/b": {"k": expected}}


SHAPE_ERRORS = [
    ("- a/b", "expected a mapping of pod keys (`namespace/name` or a netns name) to annotations, got ['a/b']"),
    ("just a string", "expected a mapping of pod keys"),
    ("42", "expected a mapping of pod keys"),
    ("a/b/c: {k: v}", "top-level key 'a/b/c' has more than one `/`: expected `namespace/name` or a netns file name"),
    ("/b: {k: v}", "top-level key '/b' must be `namespace/name` with neither part empty"),
    ("a/: {k: v}", "top-level key 'a/' must be `namespace/name` with neither part empty"),
    ("1: {k: v}", "top-level key 1 (int) must be `namespace/name` or a netns file name"),
    ("..: {k: v}", "top-level key '..' is not a netns file name (nor `namespace/name`)"),
    ("a/b:", "pod 'a/b' must map annotation keys to values, got None"),
    ("a/b: [k, v]", "pod 'a/b' must map annotation keys to values"),
    ("a/b: 10M", "pod 'a/b' must map annotation keys to values"),
    ("a/b: {1: v}", "pod 'a/b': annotation key 1 (int) must be a string"),
    ("a/b: {k: [1]}", "pod 'a/b', annotation 'k': value must be a string or a number"),
    ("a/b: {k: {x: 1}}", "pod 'a/b', annotation 'k': value must be a string or a number"),
    ("a/b: {k: {x: [1]}}", "pod 'a/b', annotation 'k': value must be a string or a number"),  # 4 levels deep
    ("a/b: {k: null}", "pod 'a/b', annotation 'k': value must be a string or a number, got None"),
    ("a/b: {k: }", "pod 'a/b', annotation 'k': value must be a string or a number, got None"),
    ("a/b: {k: true}", "pod 'a/b', annotation 'k': value must be a string or a number, got True"),
    ("a/b: {k: 2024-01-01}", "pod 'a/b', annotation 'k': value must be a string or a number"),
    ("a/b: {k: !!binary aGk=}", "pod 'a/b', annotation 'k': value must be a string or a number, got b'hi' (bytes)"),
    ("netns-1: {k: [1]}", "pod 'netns-1', annotation 'k': value must be a string or a number"),
]


@pytest.mark.parametrize(("text", "why"), SHAPE_ERRORS)
def test_shape_errors_name_pod_and_key(text: str, why: str) -> None:
    with pytest.raises(OverridesError) as info:
        parse_overrides(text)
    assert why in str(info.value)


def test_yaml_syntax_error_has_the_line_number() -> None:
    text = "a/b:\n  k: v\n  j: [1, 2\nc/d: {}\n"
    with pytest.raises(OverridesError, match=r"YAML error at line \d+, column \d+") as info:
        parse_overrides(text)
    assert "line 4" in str(info.value)
    with pytest.raises(OverridesError, match="YAML error at line 1, column 5: mapping values"):
        parse_overrides("a: b: c")


def test_bad_character_has_the_line_number() -> None:
    with pytest.raises(OverridesError, match=r"YAML error at line 3: character U\+0000"):
        parse_overrides("a/b:\n  k: v\n\x00\n")


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(OverridesError, match="nested too deeply"):
        parse_overrides("[" * 1_000)


# --- pod keys: `namespace/name`, or the bare netns file name of a pod found without CRI --------

BARE_KEYS = ["web-0", "cni-6f1c2a4e-0b1d-4c55-9e8e-3d3c2e0e8a11", "a.b", "...", "ünïcode", "x" * 255, "é" * 127]


@pytest.mark.parametrize("pod_key", BARE_KEYS)
def test_a_netns_name_is_a_pod_key(pod_key: str) -> None:
    text = yaml.safe_dump({pod_key: {"kubernetes.io/ingress-bandwidth": "10M"}}, allow_unicode=True)
    assert parse_overrides(text) == {pod_key: {"kubernetes.io/ingress-bandwidth": "10M"}}
    assert pod_key_problem(pod_key) is None


def test_both_kinds_of_keys_in_one_file() -> None:
    text = "shop/web-0: {kubernetes.io/ingress-bandwidth: 10M}\nnetns-7: {kubernetes.io/egress-bandwidth: 5M}\n"
    assert parse_overrides(text) == {
        "shop/web-0": {"kubernetes.io/ingress-bandwidth": "10M"},
        "netns-7": {"kubernetes.io/egress-bandwidth": "5M"},
    }


POD_KEY_PROBLEMS = [
    ("ns/name", None),
    ("name", None),
    ("", "is not a netns file name (nor `namespace/name`)"),
    (".", "is not a netns file name (nor `namespace/name`)"),
    ("..", "is not a netns file name (nor `namespace/name`)"),
    ("a\0b", "must not contain a NUL character"),
    ("x" * 256, "is 256 bytes long: a netns file name has at most 255"),
    ("é" * 128, "is 256 bytes long: a netns file name has at most 255"),
    ("\ud800", None),  # a lone surrogate (YAML's "\ud800") is measured, not an exception
    ("a/b/c", "has more than one `/`: expected `namespace/name` or a netns file name"),
    ("/", "must be `namespace/name` with neither part empty"),
    ("ns/", "must be `namespace/name` with neither part empty"),
    ("/name", "must be `namespace/name` with neither part empty"),
    (1, "must be `namespace/name` or a netns file name"),
    (None, "must be `namespace/name` or a netns file name"),
    ((1, 2), "must be `namespace/name` or a netns file name"),
]


@pytest.mark.parametrize(("pod_key", "problem"), POD_KEY_PROBLEMS)
def test_pod_key_problems(pod_key: object, problem: str | None) -> None:
    assert pod_key_problem(pod_key) == problem


def test_a_bad_pod_key_names_itself_and_rejects_the_file() -> None:
    with pytest.raises(OverridesError, match=r"top-level key '\.\.' is not a netns file name"):
        parse_overrides("good: {k: v}\n..: {k: v}\n")
    with pytest.raises(OverridesError, match=r"top-level key 'xxxxxxxxxx.*\.\.\. \(256 chars\) is 256 bytes long"):
        parse_overrides(f"{'x' * 256}: {{k: v}}\n")


# --- refused: anchors, aliases, merge keys, and beyond the bounds ----------------------------


def bomb_text(levels: int = 9, fanout: int = 9) -> str:
    """The classic "billion laughs": fanout**levels leaves from a few hundred bytes."""
    lines = ["- &a [" + ",".join(['"lol"'] * fanout) + "]"]
    for level in range(1, levels):
        lines.append(f"- &{chr(97 + level)} [" + ",".join([f"*{chr(96 + level)}"] * fanout) + "]")
    return "\n".join(lines) + "\n"


REFUSED = [
    (bomb_text(), "refused at line 1, column 3: anchor &a: anchors and aliases are not allowed"),
    ("a/b: &x {k: v}", "refused at line 1, column 6: anchor &x: anchors and aliases are not allowed"),
    ("a/b: {k: &v 10M}", "refused at line 1, column 10: anchor &v: anchors and aliases are not allowed"),
    ("a/b: {k: *v}", "refused at line 1, column 10: alias *v: anchors and aliases are not allowed"),
    ("a/b:\n  k: !!str &v 1\n", "refused at line 2, column 6: anchor &v: anchors and aliases are not allowed"),
    (f"a/b: &{'n' * 100} {{}}", f"anchor &{'n' * 40}...: anchors and aliases are not allowed"),
    ("a/b: {<<: {k: v}}", "refused at line 1, column 7: merge keys (<<) are not allowed"),
    ("a/b:\n  <<: {k: v}\n  j: w\n", "refused at line 2, column 3: merge keys (<<) are not allowed"),
    ("a/b: {k: {x: {y: [1]}}}", "refused at line 1, column 18: nested too deeply (more than 4 levels)"),
    ("[[[[[[[[[[", "refused at line 1, column 5: nested too deeply (more than 4 levels)"),
    (f"a/b: {{k: {'9' * 1025}}}", "refused at line 1, column 10: a scalar of 1025 characters is longer than 1024"),
    (f"a/b: {{'{'k' * 1025}': v}}", "refused at line 1, column 7: a scalar of 1025 characters is longer than 1024"),
]


@pytest.mark.parametrize(("text", "why"), REFUSED)
def test_refused_constructs_are_named_with_line_and_column(text: str, why: str) -> None:
    with pytest.raises(OverridesError) as info:
        parse_overrides(text)
    assert why in str(info.value)
    assert "\n" not in str(info.value)


def test_the_bomb_is_small_and_refused_at_its_first_anchor() -> None:
    text = bomb_text()
    assert len(text.encode()) < 400
    with pytest.raises(OverridesError, match="^annotations file: refused at line 1, column 3: anchor &a"):
        parse_overrides(text)


def test_the_longest_scalar_and_deepest_nesting_allowed() -> None:
    assert MAX_SCALAR_CHARS == 1024 and MAX_DEPTH == 4
    assert parse_overrides(f"a/b: {{k: {'9' * 1024}}}") == {"a/b": {"k": "9" * 1024}}
    # A hex int of 1024 characters is ~1230 decimal digits: well inside int-to-text's limit.
    assert len(parse_overrides(f"a/b: {{k: 0x{'f' * 1022}}}")["a/b"]["k"]) == 1231


def test_the_node_bound_is_inclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    # The top mapping, the pod key, its mapping, 2 keys and 2 values: 7 nodes.
    monkeypatch.setattr(bounded_yaml, "MAX_NODES", 7)
    assert parse_overrides("a/b: {k: v, j: w}") == {"a/b": {"k": "v", "j": "w"}}
    with pytest.raises(OverridesError, match="refused at line 1, column 19: more than 7 nodes"):
        parse_overrides("a/b: {k: v, j: w, i: u}")


def test_a_flow_list_of_a_megabyte_is_refused_part_way() -> None:
    assert bounded_yaml.MAX_NODES == 100_000
    text = "[" + ",".join(["a"] * 500_000) + "]"
    with pytest.raises(OverridesError, match=r"refused at line 1, column 200000: more than 100000 nodes"):
        parse_overrides(text)


CONSTRUCTION_ERRORS = [
    # YAML's timestamp pattern, not the calendar's: once a ValueError that escaped the parser.
    ("a/b: {k: 2024-13-45}", "YAML error at line 1, column 10: invalid timestamp value: month must be in 1..12"),
    ("a/b: {k: 2024-01-01 10:00:00 +99:00}", "YAML error at line 1, column 10: invalid timestamp value: offset must be"),
    ("a/b: {k: !!binary abc}", "YAML error at line 1, column 10: failed to decode base64 data"),
    ("a/b: {k: !!python/object/apply:os.system [true]}", "could not determine a constructor for the tag"),
    ("a/b: {k: !local x}", "could not determine a constructor for the tag '!local'"),
    (f"a/b: {{k: !{'t' * 1000} x}}", "could not determine a constructor for the tag '!tttttt"),
    ("a/b: {[k]: v}", "found unhashable key"),
    ("a/b: {}\n---\nc/d: {}\n", "line 2, column 1: but found another document"),
]


@pytest.mark.parametrize(("text", "why"), CONSTRUCTION_ERRORS)
def test_values_yaml_cannot_build_are_overrides_errors(text: str, why: str) -> None:
    with pytest.raises(OverridesError) as info:
        parse_overrides(text)
    assert why in str(info.value)
    assert len(str(info.value)) < 300


def test_larger_than_1_mib_is_rejected_before_parsing() -> None:
    assert MAX_OVERRIDES_CHARS == 1024 * 1024
    with pytest.raises(OverridesError, match="larger than 1 MiB"):
        parse_overrides("a/b: {k: v}\n" + "#" * MAX_OVERRIDES_CHARS)


def test_size_cap_is_inclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    # A smaller cap keeps the test fast; the check is the same.
    monkeypatch.setattr(overrides, "MAX_OVERRIDES_CHARS", 12)
    assert parse_overrides("a/b: {k: 1}") == {"a/b": {"k": "1"}}  # 11 characters
    assert parse_overrides("a/b: {k: 1} ") == {"a/b": {"k": "1"}}  # 12
    with pytest.raises(OverridesError, match="larger than 1 MiB"):
        parse_overrides("a/b: {k: 1}  ")  # 13


@pytest.mark.parametrize("value", [None, b"a/b: {}", 42])
def test_non_text_input_is_an_error(value: object) -> None:
    with pytest.raises(OverridesError, match="expected text"):
        parse_overrides(value)  # type: ignore[arg-type]


def test_overrides_error_is_a_value_error() -> None:
    assert issubclass(OverridesError, ValueError)


# --- properties -----------------------------------------------------------------------------

# PyYAML itself does not round-trip control characters such as U+0085 (a line break to YAML).
_TEXT_CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"))
_NAME = st.text(
    st.characters(blacklist_characters="/", blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
    min_size=1,
    max_size=10,
)
_POD_KEY = st.builds(lambda ns, name: f"{ns}/{name}", _NAME, _NAME)
_FILES = st.dictionaries(
    _POD_KEY,
    st.dictionaries(st.text(_TEXT_CHARS, max_size=20), st.text(_TEXT_CHARS, max_size=20), max_size=4),
    max_size=4,
)


@settings(max_examples=100, deadline=None)  # a YAML dump and load each: slow-ish
@given(_FILES)
def test_round_trips_what_yaml_dumps(document: dict[str, dict[str, str]]) -> None:
    assert parse_overrides(yaml.safe_dump(document, allow_unicode=True)) == document


@PROPERTY
@given(st.text(max_size=200) | st.text("ab/: {}[]-\n#'\"0123456789.", max_size=60))
def test_any_text_is_overrides_or_an_overrides_error(text: str) -> None:
    try:
        result = parse_overrides(text)
    except OverridesError as exc:
        assert str(exc).startswith("annotations file:")
        return
    assert_valid_overrides(result)


def assert_valid_overrides(result: object) -> None:
    assert type(result) is dict
    for pod_key, annotations in result.items():
        assert pod_key_problem(pod_key) is None
        assert type(annotations) is dict
        assert all(type(k) is str and type(v) is str for k, v in annotations.items())


# Generated YAML text: the constructs an attacker or a careless editor would write.
_ANCHOR = st.sampled_from(["a", "b", "c"])
_ALIAS = _ANCHOR.map(lambda name: f"*{name}")
_PLAIN = st.sampled_from([
    "10M", "1.5", "0x10", "1:20:30", "~", "null", "true", "2024-01-01", "2024-13-45",
    "2024-01-01 10:00:00 +99:00", "'q'", '"\\0"', '"\\ud800"', "<<", "=", ".inf", ".nan",
    "ns/pod", "netns-1", "..", "!!binary aGk=", "!!binary abc", "!!int 12", "!!str 5", "!!float 1e999",
    "!!timestamp 2024-01-01", "!!null ''", "!local x", "!!python/object/apply:os.system [true]",
])
_SCALAR = st.one_of(
    _PLAIN,
    st.text(_TEXT_CHARS, max_size=20).map(json.dumps),
    # Huge scalars; a hex int past ~3600 digits once broke int-to-text (its 4300-digit limit).
    st.integers(0, 5000).map(lambda n: "0x" + "f" * n),
    st.integers(0, 3000).map(lambda n: "x" * n),
)


def _collections(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    sequence = st.lists(children, max_size=5).map(lambda items: "[" + ", ".join(items) + "]")
    mapping = st.lists(st.tuples(children, children), max_size=5).map(
        lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
    )
    anchored = st.tuples(_ANCHOR, sequence | mapping | children).map(lambda t: f"&{t[0]} {t[1]}")
    merged = st.tuples(mapping | _ALIAS, mapping).map(lambda t: "{<<: " + t[0] + (", " + t[1][1:] if t[1] != "{}" else "}"))
    tags = st.sampled_from(["!!set", "!!omap", "!!pairs", "!!map", "!!seq", "!local"])
    tagged = st.tuples(tags, sequence | mapping).map(" ".join)
    return st.one_of(sequence, mapping, mapping, anchored, merged, tagged, _ALIAS)


_NODE = st.recursive(_SCALAR, _collections, max_leaves=25)
_DEEP = st.integers(1, 3000).flatmap(
    lambda depth: st.sampled_from(["[" * depth + "]" * depth, "{a: " * depth + "b" + "}" * depth, "- " * depth + "x"])
)
# Old code: fanout**levels leaves formatted by repr(); up to 9**6 keeps that a measurable few MB.
_BOMB = st.builds(bomb_text, levels=st.integers(2, 6), fanout=st.integers(2, 9))
_POD_KEY_TEXT = st.sampled_from(
    ["ns/a", "ns/b", "web-0", "cni-1", "a/b/c", "..", "<<", "&a ns/x", "*a", "? [x]", "!!binary aGk=", "'x/y'"]
)
_ANNOTATION_KEY_TEXT = st.sampled_from(["kubernetes.io/ingress-bandwidth", "podbw.io/egress-burst", "k", "1", "<<", "[k]"])
# Pod files of the right shape with odd scalars: these reach construction and the shape checks.
_POD_FILE = st.lists(
    st.tuples(_POD_KEY_TEXT, st.lists(st.tuples(_ANNOTATION_KEY_TEXT, _SCALAR | _NODE), max_size=4)), max_size=5
).map(lambda pods: "".join(f"{pod}:\n" + "".join(f"  {k}: {v}\n" for k, v in annotations) for pod, annotations in pods))
_BLOCK_FILE = st.lists(st.tuples(_POD_KEY_TEXT, _NODE), max_size=6).map(
    lambda entries: "".join(f"{key}: {node}\n" for key, node in entries)
)
_YAML_TEXT = st.one_of(_POD_FILE, _POD_FILE, _NODE, _DEEP, _BOMB, _BLOCK_FILE)

MEMORY_BOUND_BYTES = 32 * 1024 * 1024
"""Any of these texts is at most ~20 KB; what the parser builds from it must stay small."""


@settings(max_examples=300, deadline=None)
@given(_YAML_TEXT)
def test_generated_yaml_is_overrides_or_an_overrides_error_in_bounded_memory(text: str) -> None:
    tracemalloc.start()
    try:
        try:
            result = parse_overrides(text)
        except OverridesError as exc:
            result = exc
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < MEMORY_BOUND_BYTES, (len(text), peak_bytes)
    if isinstance(result, OverridesError):
        message = str(result)
        assert message.startswith("annotations file:") and "\n" not in message and len(message) < 400, message
    else:
        assert_valid_overrides(result)
