"""Desired shaping from pod annotations: per direction, never raising, errors kept apart."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.model.annotations import (
    ALL_KEYS,
    EGRESS_BANDWIDTH,
    EGRESS_BURST,
    EGRESS_LATENCY,
    INGRESS_BANDWIDTH,
    INGRESS_BURST,
    INGRESS_LATENCY,
    KEYS_BY_DIRECTION,
    DesiredDirection,
    desired_shaping,
)
from agent.model.direction import Direction, ShapingState
from agent.model.tbf import tbf_params
from agent.model.tbf_params import TbfParams

PROPERTY = settings(max_examples=300, deadline=None)
IN, OUT = Direction.INGRESS, Direction.EGRESS


def test_fixed_key_names() -> None:
    assert INGRESS_BANDWIDTH == "kubernetes.io/ingress-bandwidth"
    assert EGRESS_BANDWIDTH == "kubernetes.io/egress-bandwidth"
    assert INGRESS_BURST == "podbw.io/ingress-burst"
    assert EGRESS_BURST == "podbw.io/egress-burst"
    assert INGRESS_LATENCY == "podbw.io/ingress-latency"
    assert EGRESS_LATENCY == "podbw.io/egress-latency"
    assert KEYS_BY_DIRECTION == {
        IN: (INGRESS_BANDWIDTH, INGRESS_BURST, INGRESS_LATENCY),
        OUT: (EGRESS_BANDWIDTH, EGRESS_BURST, EGRESS_LATENCY),
    }
    assert sorted(ALL_KEYS) == sorted(k for keys in KEYS_BY_DIRECTION.values() for k in keys)


def test_state_of_a_desired_direction() -> None:
    params = TbfParams(1_250_000, 5000, 7500)
    assert DesiredDirection(IN, None).state is ShapingState.UNLIMITED
    assert DesiredDirection(IN, params).state is ShapingState.APPLIED
    assert DesiredDirection(IN, None, INGRESS_BANDWIDTH, "bad").state is ShapingState.INVALID
    assert DesiredDirection(IN, params, INGRESS_BANDWIDTH, "bad").state is ShapingState.INVALID


def test_desired_direction_is_frozen() -> None:
    desired = DesiredDirection(IN, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        desired.params = TbfParams(1, 2, 3)  # type: ignore[misc]


def test_no_annotations_is_unlimited_both_ways() -> None:
    assert desired_shaping({}) == {IN: DesiredDirection(IN, None), OUT: DesiredDirection(OUT, None)}


def test_burst_and_latency_alone_ask_for_nothing() -> None:
    result = desired_shaping(
        {INGRESS_BURST: "1M", INGRESS_LATENCY: "5ms", EGRESS_BURST: "garbage", EGRESS_LATENCY: "x"}
    )
    assert result[IN].state is ShapingState.UNLIMITED
    assert result[OUT].state is ShapingState.UNLIMITED


def test_unrelated_annotations_are_ignored() -> None:
    result = desired_shaping({"kubernetes.io/bandwidth": "10M", "podbw.io/other": "x"})
    assert {d.state for d in result.values()} == {ShapingState.UNLIMITED}


def test_rates_in_both_directions() -> None:
    result = desired_shaping({INGRESS_BANDWIDTH: "10M", EGRESS_BANDWIDTH: "1G"})
    assert result[IN] == DesiredDirection(IN, tbf_params(10**7))
    assert result[OUT] == DesiredDirection(OUT, tbf_params(10**9))
    assert result[IN].state is ShapingState.APPLIED


def test_one_direction_only() -> None:
    result = desired_shaping(MappingProxyType({EGRESS_BANDWIDTH: "100M"}))
    assert result[IN].state is ShapingState.UNLIMITED
    assert result[OUT].params == tbf_params(10**8)


def test_burst_and_latency_overrides_are_used_per_direction() -> None:
    result = desired_shaping(
        {
            INGRESS_BANDWIDTH: "100M",
            INGRESS_BURST: "1M",
            INGRESS_LATENCY: "5ms",
            EGRESS_BANDWIDTH: "100M",
            EGRESS_LATENCY: "200us",
        }
    )
    assert result[IN].params == tbf_params(10**8, burst_bits=10**6, latency_us=5000)
    assert result[IN].params == TbfParams(12_500_000, 125_000, 125_000 + 62_500)
    assert result[OUT].params == tbf_params(10**8, latency_us=200)


INVALID = [
    # annotations, direction at fault, error_key, text in the error
    ({INGRESS_BANDWIDTH: "10Mbps"}, IN, INGRESS_BANDWIDTH, "unknown suffix 'Mbps'"),
    ({INGRESS_BANDWIDTH: "10m"}, IN, INGRESS_BANDWIDTH, "below the minimum 1k"),
    ({INGRESS_BANDWIDTH: ""}, IN, INGRESS_BANDWIDTH, "empty"),
    ({EGRESS_BANDWIDTH: "2P"}, OUT, EGRESS_BANDWIDTH, "above the maximum 1P"),
    ({EGRESS_BANDWIDTH: "-10M"}, OUT, EGRESS_BANDWIDTH, "must be positive"),
    ({INGRESS_BANDWIDTH: "1P"}, IN, INGRESS_BANDWIDTH, "32-bit rate limit"),  # TbfError: rate
    ({INGRESS_BANDWIDTH: "10M", INGRESS_BURST: "10K"}, IN, INGRESS_BURST, "unknown suffix 'K'"),
    ({INGRESS_BANDWIDTH: "10M", INGRESS_BURST: "1k"}, IN, INGRESS_BURST, "below one full frame"),
    ({EGRESS_BANDWIDTH: "1k", EGRESS_BURST: "1M"}, OUT, EGRESS_BURST, "more than 60 s to refill"),
    ({EGRESS_BANDWIDTH: "10M", EGRESS_LATENCY: "5"}, OUT, EGRESS_LATENCY, "missing unit"),
    ({EGRESS_BANDWIDTH: "10M", EGRESS_LATENCY: "1h"}, OUT, EGRESS_LATENCY, "at most 10s"),
    ({EGRESS_BANDWIDTH: "34G", EGRESS_LATENCY: "2s"}, OUT, EGRESS_LATENCY, "queue limit"),
    # The rate is checked first: a bad rate is reported even when the burst is bad too.
    ({INGRESS_BANDWIDTH: "x", INGRESS_BURST: "y"}, IN, INGRESS_BANDWIDTH, "no digits"),
    ({INGRESS_BANDWIDTH: "10M", INGRESS_BURST: "y", INGRESS_LATENCY: "z"}, IN, INGRESS_BURST, "no digits"),
    # Non-string values (the type says str; a buggy caller must still not crash us).
    ({INGRESS_BANDWIDTH: 10_000_000}, IN, INGRESS_BANDWIDTH, "expected a string"),
    ({INGRESS_BANDWIDTH: None}, IN, INGRESS_BANDWIDTH, "expected a string"),
    ({INGRESS_BANDWIDTH: "10M", INGRESS_BURST: b"1M"}, IN, INGRESS_BURST, "expected a string"),
    ({INGRESS_BANDWIDTH: "10M", INGRESS_LATENCY: 5}, IN, INGRESS_LATENCY, "expected a string"),
]


@pytest.mark.parametrize(("annotations", "direction", "key", "why"), INVALID)
def test_invalid_values_make_only_their_direction_invalid(
    annotations: dict[str, object], direction: Direction, key: str, why: str
) -> None:
    other = OUT if direction is IN else IN
    other_rate_key = KEYS_BY_DIRECTION[other][0]
    result = desired_shaping({**annotations, other_rate_key: "10M"})  # type: ignore[dict-item]
    desired = result[direction]
    assert desired.state is ShapingState.INVALID
    assert desired.params is None
    assert desired.error_key == key
    assert why in desired.error
    assert result[other] == DesiredDirection(other, tbf_params(10**7))


def test_error_is_one_line_even_for_multiline_values() -> None:
    result = desired_shaping({INGRESS_BANDWIDTH: "10M\nkubernetes.io/egress-bandwidth: 1k"})
    assert result[IN].state is ShapingState.INVALID
    assert "\n" not in result[IN].error
    assert "\\n" in result[IN].error


def test_error_names_the_value_truncated() -> None:
    result = desired_shaping({INGRESS_BANDWIDTH: "1" * 10_000})
    assert result[IN].state is ShapingState.INVALID
    assert len(result[IN].error) < 200


# --- properties -----------------------------------------------------------------------------

_VALUES = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["10M", "1k", "1P", "100Mi", "1.5G", "5ms", "200us", "1M", "12k", "0", "-1"]),
    st.text("0123456789.kMGmunsEeKi+- ", max_size=8),
)
_KEYS = st.sampled_from(ALL_KEYS) | st.text(max_size=30)


def _check_direction(desired: DesiredDirection, direction: Direction, annotations: dict) -> None:
    rate_key, burst_key, latency_key = KEYS_BY_DIRECTION[direction]
    assert desired.direction is direction
    if rate_key not in annotations:
        assert desired == DesiredDirection(direction, None)
    elif desired.state is ShapingState.INVALID:
        assert desired.params is None
        assert desired.error_key in (rate_key, burst_key, latency_key)
        assert desired.error_key in annotations
        assert desired.error and "\n" not in desired.error
    else:
        assert desired.state is ShapingState.APPLIED
        assert desired.error_key == "" and desired.error == ""


@PROPERTY
@given(st.dictionaries(_KEYS, _VALUES, max_size=8))
def test_never_raises_and_directions_are_independent(annotations: dict[str, str]) -> None:
    result = desired_shaping(annotations)
    assert set(result) == {IN, OUT}
    for direction in Direction:
        _check_direction(result[direction], direction, annotations)
        # Only a direction's own keys matter to it.
        own = {k: v for k, v in annotations.items() if k in KEYS_BY_DIRECTION[direction]}
        assert desired_shaping(own)[direction] == result[direction]


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        _KEYS,
        st.one_of(
            st.none(),
            st.integers(),
            st.floats(),
            st.binary(max_size=4),
            st.lists(st.text(max_size=3), max_size=2),
            _VALUES,
        ),
        max_size=8,
    )
)
def test_never_raises_on_non_string_values(annotations: dict[str, object]) -> None:
    result = desired_shaping(annotations)  # type: ignore[arg-type]
    for direction in Direction:
        _check_direction(result[direction], direction, annotations)
