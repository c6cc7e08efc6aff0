"""Kubernetes quantities: the apimachinery grammar, exact values, and the rate/burst ranges."""

from __future__ import annotations

import re
from decimal import Context, Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model.quantity import (
    MAX_BURST_BITS,
    MAX_QUANTITY_CHARS,
    QuantityError,
    parse_burst_bits,
    parse_quantity,
    parse_rate_bits_per_s,
)

PROPERTY = settings(max_examples=300, deadline=None)

VALID = [
    ("1", Fraction(1)),
    ("0", Fraction(0)),
    ("-0", Fraction(0)),
    ("007", Fraction(7)),
    ("1.5", Fraction(3, 2)),
    ("1.", Fraction(1)),
    (".5", Fraction(1, 2)),
    ("-.5", Fraction(-1, 2)),
    ("+1k", Fraction(1000)),
    ("-1k", Fraction(-1000)),
    ("1e3", Fraction(1000)),
    ("1E3", Fraction(1000)),
    ("1e+3", Fraction(1000)),
    ("1E+3", Fraction(1000)),
    ("1e-3", Fraction(1, 1000)),
    ("1e03", Fraction(1000)),
    ("1e0", Fraction(1)),
    ("1.5e3", Fraction(1500)),
    (".5E2", Fraction(50)),
    ("1e30", Fraction(10**30)),
    ("1e-30", Fraction(1, 10**30)),
    ("1E", Fraction(10**18)),
    ("1n", Fraction(1, 10**9)),
    ("1u", Fraction(1, 10**6)),
    ("1m", Fraction(1, 1000)),
    ("10m", Fraction(1, 100)),
    ("1k", Fraction(10**3)),
    ("10M", Fraction(10**7)),
    ("1.5G", Fraction(15 * 10**8)),
    ("1T", Fraction(10**12)),
    ("1P", Fraction(10**15)),
    ("1Ki", Fraction(1024)),
    ("1Mi", Fraction(2**20)),
    ("100Mi", Fraction(100 * 2**20)),
    ("1Gi", Fraction(2**30)),
    ("1Ti", Fraction(2**40)),
    ("1Pi", Fraction(2**50)),
    ("1Ei", Fraction(2**60)),
    ("0.5Ki", Fraction(512)),
    ("1.G", Fraction(10**9)),  # apimachinery allows an empty fraction before a suffix too
    ("0.1", Fraction(1, 10)),  # exact: never 0.1000000000000000055...
    ("1" * MAX_QUANTITY_CHARS, Fraction(int("1" * MAX_QUANTITY_CHARS))),
]


@pytest.mark.parametrize(("text", "value"), VALID)
def test_valid_quantities_have_exact_values(text: str, value: Fraction) -> None:
    result = parse_quantity(text)
    assert type(result) is Fraction
    assert result == value


INVALID = [
    ("10Mbps", "unknown suffix 'Mbps'"),
    ("10K", "unknown suffix 'K'"),
    ("10Kb", "unknown suffix 'Kb'"),
    ("10ki", "unknown suffix 'ki'"),
    ("10KI", "unknown suffix 'KI'"),
    ("10mi", "unknown suffix 'mi'"),
    ("10mbit", "unknown suffix 'mbit'"),
    ("mbit", "no digits"),
    ("10 M", "whitespace"),
    (" 10M", "whitespace"),
    ("10M ", "whitespace"),
    ("10M\n", "whitespace"),
    ("\t10M", "whitespace"),
    ("", "empty"),
    ("10M\u00a0", "non-ASCII"),
    ("\uff11\uff10M", "non-ASCII"),  # full-width digits: Python's int() would accept them
    ("\u0661", "non-ASCII"),  # Arabic-Indic one
    ("1..5", "unknown suffix '.5'"),
    ("1.5.", "unknown suffix '.'"),
    (".", "no digits"),
    ("+", "no digits"),
    ("-", "no digits"),
    ("+-1", "no digits"),
    ("--1", "no digits"),
    ("e3", "no digits"),
    ("E", "no digits"),
    ("k", "no digits"),
    ("1e", "unknown suffix 'e'"),
    ("1e+", "unknown suffix 'e+'"),
    ("1e-", "unknown suffix 'e-'"),
    ("1e3k", "unknown suffix 'e3k'"),
    ("1e3.5", "unknown suffix 'e3.5'"),
    ("1Ee3", "unknown suffix 'Ee3'"),
    ("1e1_0", "unknown suffix"),
    ("1_000", "unknown suffix"),  # Python's int() would accept it
    ("0x10", "unknown suffix 'x10'"),
    ("1Ki5", "unknown suffix 'Ki5'"),
    ("1kk", "unknown suffix 'kk'"),
    ("1e999999999", "exponent 999999999 is out of range"),
    ("1e-999999999", "exponent -999999999 is out of range"),
    ("1e31", "exponent 31 is out of range"),
    ("1E-31", "exponent -31 is out of range"),
    ("1" * (MAX_QUANTITY_CHARS + 1), "longer than 64 characters"),
    ("1" * 10_000, "longer than 64 characters"),
    ("10M" * 5000, "longer than 64 characters"),
    ("inf", "no digits"),
    ("NaN", "no digits"),
]


@pytest.mark.parametrize(("text", "why"), INVALID)
def test_invalid_quantities_name_value_and_reason(text: str, why: str) -> None:
    with pytest.raises(QuantityError) as info:
        parse_quantity(text)
    message = str(info.value)
    assert why in message
    assert repr(text[:40]) in message
    assert "\n" not in message


def test_error_message_truncates_long_values() -> None:
    text = "9" * 10_000
    with pytest.raises(QuantityError) as info:
        parse_quantity(text)
    message = str(info.value)
    assert repr("9" * 40) + "... (10000 chars)" in message
    assert len(message) < 200


@pytest.mark.parametrize("value", [None, 10, 1.5, b"10M", ["10M"], True])
def test_non_string_input_is_a_quantity_error(value: object) -> None:
    with pytest.raises(QuantityError, match="expected a string"):
        parse_quantity(value)  # type: ignore[arg-type]


def test_quantity_error_is_a_value_error() -> None:
    assert issubclass(QuantityError, ValueError)


def test_huge_exponent_is_rejected_before_any_power_is_computed() -> None:
    # The exponent has the maximum length that fits; computing 10**(10**62) would never end.
    text = "1e" + "9" * (MAX_QUANTITY_CHARS - 2)
    with pytest.raises(QuantityError, match="out of range"):
        parse_quantity(text)


RATES = [
    ("1k", 1000),
    ("1000", 1000),
    ("999.5", 1000),  # rounded up, as apimachinery's Value() does
    ("999.0001", 1000),
    ("1.5k", 1500),
    ("1Ki", 1024),
    ("10M", 10**7),
    ("100Mi", 100 * 2**20),
    ("1.5G", 15 * 10**8),
    ("1e15", 10**15),
    ("1P", 10**15),
    ("1000T", 10**15),
    ("+10M", 10**7),
]


@pytest.mark.parametrize(("text", "bits_per_s"), RATES)
def test_rates_in_bits_per_s(text: str, bits_per_s: int) -> None:
    result = parse_rate_bits_per_s(text)
    assert type(result) is int
    assert result == bits_per_s


BAD_RATES = [
    ("10m", "below the minimum 1k"),  # milli: 0.01 bit/s
    ("999", "below the minimum 1k"),
    ("998.9", "below the minimum 1k"),
    ("0.5Ki", "below the minimum 1k"),
    ("1n", "below the minimum 1k"),
    ("2P", "above the maximum 1P"),
    ("1000000000000000.1", "above the maximum 1P"),  # rounds up past 1P
    ("1Pi", "above the maximum 1P"),
    ("1E", "above the maximum 1P"),
    ("-10M", "must be positive"),
    ("0", "must be positive"),
    ("-0", "must be positive"),
    ("-0.5", "must be positive"),
    ("10Mbps", "unknown suffix"),
    ("", "empty"),
]


@pytest.mark.parametrize(("text", "why"), BAD_RATES)
def test_rates_outside_1k_to_1p_are_errors(text: str, why: str) -> None:
    with pytest.raises(QuantityError, match=re.escape(why)):
        parse_rate_bits_per_s(text)


BURSTS = [
    ("8", 8),
    ("7.1", 8),
    ("12112", 12112),
    ("1k", 1000),
    ("10M", 10**7),
    ("1Mi", 2**20),
    (str(MAX_BURST_BITS), 2**32 * 8 - 1),
]


@pytest.mark.parametrize(("text", "bits"), BURSTS)
def test_bursts_in_bits(text: str, bits: int) -> None:
    assert parse_burst_bits(text) == bits


BAD_BURSTS = [
    ("7", "below one byte"),
    ("1", "below one byte"),
    ("1m", "below one byte"),
    ("0", "must be positive"),
    ("-1k", "must be positive"),
    (str(MAX_BURST_BITS + 1), "above the kernel's 4 GiB bucket"),
    ("32Gi", "above the kernel's 4 GiB bucket"),
    ("1E", "above the kernel's 4 GiB bucket"),
    ("1KB", "unknown suffix"),
]


@pytest.mark.parametrize(("text", "why"), BAD_BURSTS)
def test_bursts_outside_one_byte_to_u32_bytes_are_errors(text: str, why: str) -> None:
    with pytest.raises(QuantityError, match=re.escape(why)):
        parse_burst_bits(text)


# --- properties -----------------------------------------------------------------------------

_REFERENCE = re.compile(
    r"([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?"
)
_DECIMAL_EXPONENTS = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_EXPONENTS = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_EXACT = Context(prec=500, Emax=10**6, Emin=-(10**6))


def reference_quantity(text: str) -> Fraction | None:
    """An independent implementation: a regex for the grammar, Decimal arithmetic for the value."""
    if len(text) > 64:
        return None
    match = _REFERENCE.fullmatch(text)
    if match is None:
        return None
    sign, number, suffix = match.group(1), match.group(2), match.group(3) or ""
    value = Decimal(sign + number)
    if suffix in _BINARY_EXPONENTS:
        value = _EXACT.multiply(value, Decimal(2) ** _BINARY_EXPONENTS[suffix])
    elif suffix in _DECIMAL_EXPONENTS:
        value = value.scaleb(_DECIMAL_EXPONENTS[suffix], _EXACT)
    else:
        exponent = int(suffix[1:])
        if abs(exponent) > 30:
            return None
        value = value.scaleb(exponent, _EXACT)
    return Fraction(value)


_SUFFIXES = ["", *_DECIMAL_EXPONENTS, *_BINARY_EXPONENTS]


_SIGNS = st.sampled_from(["", "+", "-"])
_DIGIT_RUNS = st.text("0123456789", max_size=15)
_EXPONENTS = st.builds(
    lambda letter, sign, zeros, value: f"{letter}{sign}{zeros}{value}",
    st.sampled_from("eE"),
    _SIGNS,
    st.sampled_from(["", "0", "00"]),
    st.integers(0, 30),
)


def _quantity(sign: str, whole: str, fraction: str | None, suffix: str) -> str:
    if not whole and not fraction:
        whole = "0"
    number = whole if fraction is None else f"{whole}.{fraction}"
    return sign + number + suffix


valid_quantities = st.builds(
    _quantity, _SIGNS, _DIGIT_RUNS, st.none() | _DIGIT_RUNS, st.sampled_from(_SUFFIXES) | _EXPONENTS
)


_GRAMMAR_ALPHABET = "0123456789.+-eEinumkKMGTPb \n\u00b5\uff11"


@PROPERTY
@given(st.text() | st.text(_GRAMMAR_ALPHABET, max_size=70))
def test_any_text_is_a_fraction_or_a_quantity_error(text: str) -> None:
    try:
        result = parse_quantity(text)
    except QuantityError:
        return
    assert type(result) is Fraction


@PROPERTY
@given(valid_quantities)
def test_agrees_with_the_reference_on_valid_quantities(text: str) -> None:
    assert parse_quantity(text) == reference_quantity(text)


@PROPERTY
@given(st.text(_GRAMMAR_ALPHABET, max_size=70))
def test_accepts_exactly_what_the_reference_accepts(text: str) -> None:
    expected = reference_quantity(text)
    if expected is None:
        with pytest.raises(QuantityError):
            parse_quantity(text)
    else:
        assert parse_quantity(text) == expected


@PROPERTY
@given(valid_quantities)
def test_rate_is_the_quantity_rounded_up_or_an_error(text: str) -> None:
    value = parse_quantity(text)
    rounded_up = -(-value.numerator // value.denominator)
    if value > 0 and 1000 <= rounded_up <= 10**15:
        assert parse_rate_bits_per_s(text) == rounded_up
    else:
        with pytest.raises(QuantityError):
            parse_rate_bits_per_s(text)
