"""Kubernetes quantities (apimachinery `resource.Quantity`) parsed exactly, as the
bandwidth annotations use them: `10M` is 10 megabit/s.

Grammar (apimachinery `pkg/api/resource/quantity.go`):
    <sign?><digits>[.<digits>]<suffix?>   forms 1, 1.5, 1. and .5
    suffix: n u m k M G T P E | Ki Mi Gi Ti Pi Ei | e<signed int> | E<signed int>
Case-sensitive, no whitespace. A bare `E` is exa, `m` is milli.
"""

from __future__ import annotations

import math
from fractions import Fraction

from agent.model.valuetext import quote_value

MAX_QUANTITY_CHARS = 64
"""Checked before parsing: real values are a few characters; this bounds all work."""
MAX_EXPONENT = 30
"""`1e999999999` must be a quick error, never a huge power; 1e30 is far past any rate."""

MIN_RATE_BITS_PER_S = 1_000
MAX_RATE_BITS_PER_S = 10**15
"""1k..1P: containerd's accepted range for the bandwidth annotations."""
MIN_BURST_BITS = 8
MAX_BURST_BITS = 2**32 * 8 - 1
"""The kernel's TBF counts bytes in a u32; MTU sanity is the caller's job."""

_DIGITS = frozenset("0123456789")
_SUFFIX_MULTIPLIERS: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}
_SUFFIX_HELP = "suffixes are case-sensitive: n u m k M G T P E, Ki Mi Gi Ti Pi Ei, or e<exponent>"


class QuantityError(ValueError):
    """A value that is not a Kubernetes quantity, or one outside the accepted range."""


def _fail(value: object, why: str) -> QuantityError:
    return QuantityError(f"invalid quantity {quote_value(value)}: {why}")


def _is_digits(text: str) -> bool:
    return bool(text) and all(c in _DIGITS for c in text)


def _exponent_multiplier(text: str, suffix: str) -> Fraction:
    """`e3`, `E-2`, `e+10`: a signed decimal integer after e/E."""
    digits = suffix[1:]
    if digits[:1] in ("+", "-"):
        digits = digits[1:]
    if not _is_digits(digits):
        raise _fail(text, f"unknown suffix {suffix!r} ({_SUFFIX_HELP})")
    # Leading zeros are legal (Go's ParseInt), so compare the value, not the length.
    exponent = int(suffix[1:])
    if abs(exponent) > MAX_EXPONENT:
        raise _fail(text, f"exponent {exponent} is out of range (at most {MAX_EXPONENT} either way)")
    return Fraction(10) ** exponent


def parse_quantity(text: str) -> Fraction:
    """The exact value of a quantity string; QuantityError when it is not one."""
    if not isinstance(text, str):
        raise _fail(text, "expected a string")
    if len(text) > MAX_QUANTITY_CHARS:
        raise _fail(text, f"longer than {MAX_QUANTITY_CHARS} characters")
    if not text:
        raise _fail(text, "empty")
    if not text.isascii():
        raise _fail(text, "contains a non-ASCII character")
    if any(c.isspace() for c in text):
        raise _fail(text, "contains whitespace")

    pos = 0
    negative = text[0] == "-"
    if text[0] in "+-":
        pos = 1
    start = pos
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
        raise _fail(text, "no digits before the suffix")
    suffix = text[pos:]

    multiplier = _SUFFIX_MULTIPLIERS.get(suffix)
    if multiplier is None:
        if suffix[0] in "eE":
            multiplier = _exponent_multiplier(text, suffix)
        else:
            raise _fail(text, f"unknown suffix {suffix!r} ({_SUFFIX_HELP})")

    mantissa = Fraction(int(whole + fraction or "0"), 10 ** len(fraction))
    value = mantissa * multiplier
    return -value if negative else value


def _positive_whole(text: str, unit: str) -> int:
    """parse_quantity rounded up to an integer, as apimachinery's Value() does."""
    value = parse_quantity(text)
    if value <= 0:
        raise _fail(text, f"must be positive ({unit})")
    return math.ceil(value)


def parse_rate_bits_per_s(text: str) -> int:
    """A bandwidth annotation value in bits/s, within containerd's 1k..1P."""
    bits_per_s = _positive_whole(text, "bits per second")
    if bits_per_s < MIN_RATE_BITS_PER_S:
        raise _fail(
            text,
            f"{bits_per_s} bit/s is below the minimum 1k ({MIN_RATE_BITS_PER_S} bit/s); "
            "note `m` is milli, `M` is mega",
        )
    if bits_per_s > MAX_RATE_BITS_PER_S:
        raise _fail(text, f"{bits_per_s} bit/s is above the maximum 1P ({MAX_RATE_BITS_PER_S} bit/s)")
    return bits_per_s


def parse_burst_bits(text: str) -> int:
    """A burst annotation value in bits: at least one byte, at most what a u32 of bytes holds."""
    bits = _positive_whole(text, "bits")
    if bits < MIN_BURST_BITS:
        raise _fail(text, f"{bits} bits is below one byte ({MIN_BURST_BITS} bits)")
    if bits > MAX_BURST_BITS:
        raise _fail(text, f"{bits} bits is above the kernel's 4 GiB bucket ({MAX_BURST_BITS} bits)")
    return bits
