"""The annotations file: parsing, shape errors with pod and key named, and the merge."""

from __future__ import annotations

from types import MappingProxyType

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model import overrides
from agent.model.overrides import (
    MAX_OVERRIDES_CHARS,
    OverridesError,
    merge_annotations,
    parse_overrides,
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
    ("- a/b", "expected a mapping of `namespace/name`"),
    ("just a string", "expected a mapping of `namespace/name`"),
    ("42", "expected a mapping of `namespace/name`"),
    ("web-0: {k: v}", "top-level key 'web-0' must be `namespace/name`"),
    ("a/b/c: {k: v}", "top-level key 'a/b/c' must be `namespace/name`"),
    ("/b: {k: v}", "top-level key '/b' must be `namespace/name`"),
    ("a/: {k: v}", "top-level key 'a/' must be `namespace/name`"),
    ("1: {k: v}", "top-level key 1 (int) must be `namespace/name`"),
    ("a/b:", "pod 'a/b' must map annotation keys to values, got None"),
    ("a/b: [k, v]", "pod 'a/b' must map annotation keys to values"),
    ("a/b: 10M", "pod 'a/b' must map annotation keys to values"),
    ("a/b: {1: v}", "pod 'a/b': annotation key 1 (int) must be a string"),
    ("a/b: {k: [1]}", "pod 'a/b', annotation 'k': value must be a string or a number"),
    ("a/b: {k: {x: 1}}", "pod 'a/b', annotation 'k': value must be a string or a number"),
    ("a/b: {k: null}", "pod 'a/b', annotation 'k': value must be a string or a number, got None"),
    ("a/b: {k: }", "pod 'a/b', annotation 'k': value must be a string or a number, got None"),
    ("a/b: {k: true}", "pod 'a/b', annotation 'k': value must be a string or a number, got True"),
    ("a/b: {k: 2024-01-01}", "pod 'a/b', annotation 'k': value must be a string or a number"),
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


def test_merge_override_wins_per_key() -> None:
    cri = {"a": "1", "b": "2"}
    merged = merge_annotations(cri, {"b": "20", "c": "30"})
    assert merged == {"a": "1", "b": "20", "c": "30"}
    assert cri == {"a": "1", "b": "2"}  # not modified


@pytest.mark.parametrize("override", [None, {}])
def test_merge_without_override_is_a_copy(override: dict[str, str] | None) -> None:
    cri = MappingProxyType({"a": "1"})
    merged = merge_annotations(cri, override)
    assert merged == {"a": "1"}
    assert type(merged) is dict


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
    for pod_key, annotations in result.items():
        assert pod_key.count("/") == 1
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())
