"""Durations for the latency annotations, in Go's time.ParseDuration syntax (`5ms`, `1m30s`).

A subset: no sign, no bare `0`; whole microseconds, since that is what TBF's latency takes.
"""

from __future__ import annotations

import math
from fractions import Fraction

from agent.model.valuetext import quote_value

MAX_DURATION_CHARS = 32
"""Checked before parsing: real values are a few characters; this bounds all work."""
MIN_DURATION_US = 1
MAX_DURATION_US = 10_000_000
"""10 s of queue is already far beyond useful; more is almost surely a typo."""

_DIGITS = frozenset("0123456789")
_UNIT_NS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # MICRO SIGN, as Go accepts
    "\u03bcs": 1_000,  # GREEK SMALL LETTER MU, as Go accepts
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_UNIT_HELP = "units: ns, us, ms, s, m, h"


class DurationError(ValueError):
    """A value that is not a duration, or one outside the accepted range."""


def _fail(value: object, why: str) -> DurationError:
    return DurationError(f"invalid duration {quote_value(value)}: {why}")


def parse_duration_us(text: str) -> int:
    """The duration in microseconds, rounded up; 1 us ..= 10 s."""
    if not isinstance(text, str):
        raise _fail(text, "expected a string")
    if len(text) > MAX_DURATION_CHARS:
        raise _fail(text, f"longer than {MAX_DURATION_CHARS} characters")
    if not text:
        raise _fail(text, "empty")
    if any(c.isspace() for c in text):
        raise _fail(text, "contains whitespace")
    if text[0] in "+-":
        raise _fail(text, "a sign is not allowed")

    total_ns = Fraction(0)
    pos = 0
    while pos < len(text):
        group_start = start = pos
        while pos < len(text) and text[pos] in _DIGITS:
            pos += 1
        whole = text[start:pos]
        fraction = ""
        if pos < len(text) and text[pos] == ".":
            pos += 1
            start = pos
            while pos < len(text) and text[pos] in _DIGITS:
                pos += 1
            fraction = text[start:pos]
        if not whole and not fraction:
            raise _fail(text, f"expected a number at position {group_start}")
        # Like Go: the unit is every character up to the next digit or dot.
        start = pos
        while pos < len(text) and text[pos] != "." and text[pos] not in _DIGITS:
            pos += 1
        unit = text[start:pos]
        if not unit:
            raise _fail(text, f"missing unit ({_UNIT_HELP})")
        unit_ns = _UNIT_NS.get(unit)
        if unit_ns is None:
            raise _fail(text, f"unknown unit {unit!r} ({_UNIT_HELP})")
        total_ns += Fraction(int(whole + fraction), 10 ** len(fraction)) * unit_ns

    duration_us = math.ceil(total_ns / 1_000)
    if duration_us < MIN_DURATION_US:
        raise _fail(text, f"must be at least {MIN_DURATION_US}us")
    if duration_us > MAX_DURATION_US:
        raise _fail(text, f"must be at most 10s ({MAX_DURATION_US}us)")
    return duration_us
