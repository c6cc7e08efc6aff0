"""Durations for the latency annotations: Go's ParseDuration syntax, whole microseconds."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model.duration import MAX_DURATION_CHARS, DurationError, parse_duration_us

PROPERTY = settings(max_examples=300, deadline=None)

VALID = [
    ("5ms", 5000),
    ("200us", 200),
    ("200\u00b5s", 200),  # MICRO SIGN
    ("200\u03bcs", 200),  # GREEK SMALL LETTER MU
    ("1.5ms", 1500),
    (".5ms", 500),
    ("5.ms", 5000),
    ("1us", 1),
    ("1ns", 1),  # rounded up to whole microseconds
    ("1001ns", 2),
    ("1000ns", 1),
    ("0.0001ns", 1),
    ("0.5us", 1),
    ("1s500ms", 1_500_000),
    ("1s1ms1us", 1_001_001),
    ("10s", 10_000_000),
    ("9.999999s", 9_999_999),
    ("0.1m", 6_000_000),
    ("0.001h", 3_600_000),
    ("0h0m1s", 1_000_000),
    ("5ms5ms", 10_000),  # Go allows a unit twice
    ("005ms", 5000),
    ("0.000001s", 1),
]


@pytest.mark.parametrize(("text", "micros"), VALID)
def test_valid_durations_in_microseconds(text: str, micros: int) -> None:
    result = parse_duration_us(text)
    assert type(result) is int
    assert result == micros


INVALID = [
    ("", "empty"),
    ("0", "missing unit"),
    ("5", "missing unit"),
    ("1ms30", "missing unit"),
    ("5 ms", "whitespace"),
    (" 5ms", "whitespace"),
    ("5ms\n", "whitespace"),
    ("5ms\u00a0", "whitespace"),
    ("-5ms", "a sign is not allowed"),
    ("+5ms", "a sign is not allowed"),
    ("ms", "expected a number at position 0"),
    (".ms", "expected a number at position 0"),
    ("5ms.s", "expected a number at position 3"),
    ("1..5ms", "missing unit"),
    ("5MS", "unknown unit 'MS'"),
    ("5S", "unknown unit 'S'"),
    ("5mss", "unknown unit 'mss'"),
    ("5sec", "unknown unit 'sec'"),
    ("5d", "unknown unit 'd'"),
    ("5\u00b5", "unknown unit"),
    ("\uff15ms", "expected a number at position 0"),  # a full-width digit is no digit
    ("1_0ms", "unknown unit '_'"),
    ("0s", "at least 1us"),
    ("0ms0us", "at least 1us"),
    ("10.000001s", "at most 10s"),
    ("11s", "at most 10s"),
    ("1m30s", "at most 10s"),
    ("1h", "at most 10s"),
    ("99999999999999999999999999999h", "at most 10s"),
    ("1" * MAX_DURATION_CHARS + "s", "longer than 32 characters"),
    ("5ms" * 10_000, "longer than 32 characters"),
]


@pytest.mark.parametrize(("text", "why"), INVALID)
def test_invalid_durations_name_value_and_reason(text: str, why: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration_us(text)
    message = str(info.value)
    assert why in message
    assert repr(text[:40]) in message
    assert "\n" not in message


@pytest.mark.parametrize("value", [None, 5, 0.005, b"5ms"])
def test_non_string_input_is_a_duration_error(value: object) -> None:
    with pytest.raises(DurationError, match="expected a string"):
        parse_duration_us(value)  # type: ignore[arg-type]


def test_duration_error_is_a_value_error() -> None:
    assert issubclass(DurationError, ValueError)


# --- properties -----------------------------------------------------------------------------

_UNIT_NS = {"ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3, "ms": 10**6, "s": 10**9,
            "m": 60 * 10**9, "h": 3600 * 10**9}
_GROUP = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def reference_duration_us(text: str) -> int | None:
    """Independent: the whole string must be a run of regex groups; the sum in exact ns."""
    if not text or len(text) > 32:
        return None
    total_ns = Fraction(0)
    pos = 0
    while pos < len(text):
        match = _GROUP.match(text, pos)
        if match is None or (not match.group(1) and not match.group(2)):
            return None
        # A unit must not run on into more letters ("mss", "msx"): Go takes them all as the unit.
        if match.end() < len(text) and not (text[match.end()].isascii() and
                                            (text[match.end()].isdigit() or text[match.end()] == ".")):
            return None
        whole, fraction = match.group(1) or "0", match.group(2) or ""
        total_ns += Fraction(int(whole + fraction), 10 ** len(fraction)) * _UNIT_NS[match.group(3)]
        pos = match.end()
    micros = math.ceil(total_ns / 1000)
    return micros if 1 <= micros <= 10_000_000 else None


def _group(whole: str, fraction: str | None, unit: str) -> str:
    if not whole and not fraction:
        whole = "1"
    return (whole if fraction is None else f"{whole}.{fraction}") + unit


_DIGIT_RUNS = st.text("0123456789", max_size=4)
_GROUPS = st.builds(_group, _DIGIT_RUNS, st.none() | _DIGIT_RUNS, st.sampled_from(sorted(_UNIT_NS)))
valid_durations = st.lists(_GROUPS, min_size=1, max_size=3).map("".join)


@PROPERTY
@given(st.text() | st.text("0123456789.nsumh\u00b5\u03bc+- ", max_size=40))
def test_any_text_is_microseconds_or_a_duration_error(text: str) -> None:
    try:
        result = parse_duration_us(text)
    except DurationError:
        return
    assert type(result) is int
    assert 1 <= result <= 10_000_000
    assert reference_duration_us(text) == result


@PROPERTY
@given(valid_durations)
def test_agrees_with_the_reference_on_generated_durations(text: str) -> None:
    expected = reference_duration_us(text)
    if expected is None:
        with pytest.raises(DurationError):
            parse_duration_us(text)
    else:
        assert parse_duration_us(text) == expected
