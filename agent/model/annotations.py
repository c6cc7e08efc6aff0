"""The annotation keys podbw reads, and the desired shaping they ask for (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from agent.model.direction import Direction, ShapingState
from agent.model.duration import DurationError, parse_duration_us
from agent.model.quantity import QuantityError, parse_burst_bits, parse_rate_bits_per_s
from agent.model.tbf import TbfError, tbf_params
from agent.model.tbf_params import TbfParams

INGRESS_BANDWIDTH = "kubernetes.io/ingress-bandwidth"
EGRESS_BANDWIDTH = "kubernetes.io/egress-bandwidth"
INGRESS_BURST = "podbw.io/ingress-burst"
EGRESS_BURST = "podbw.io/egress-burst"
INGRESS_LATENCY = "podbw.io/ingress-latency"
EGRESS_LATENCY = "podbw.io/egress-latency"

KEYS_BY_DIRECTION: dict[Direction, tuple[str, str, str]] = {
    Direction.INGRESS: (INGRESS_BANDWIDTH, INGRESS_BURST, INGRESS_LATENCY),
    Direction.EGRESS: (EGRESS_BANDWIDTH, EGRESS_BURST, EGRESS_LATENCY),
}
"""(rate key, burst key, latency key) per direction."""
ALL_KEYS: tuple[str, ...] = tuple(key for keys in KEYS_BY_DIRECTION.values() for key in keys)


@dataclass(frozen=True, slots=True)
class DesiredDirection:
    """What the annotations ask for in one direction."""

    direction: Direction
    params: TbfParams | None
    """The TBF wanted; None for no limit (or when the annotations are invalid)."""
    error_key: str = ""
    """The annotation at fault when invalid."""
    error: str = ""
    """One line saying what is wrong, for logs and `podbw pods`."""

    @property
    def state(self) -> ShapingState:
        """UNLIMITED, INVALID, or APPLIED meaning "wants a limit" (not yet "in the kernel")."""
        if self.error:
            return ShapingState.INVALID
        if self.params is None:
            return ShapingState.UNLIMITED
        return ShapingState.APPLIED


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _desired_direction(direction: Direction, annotations: Mapping[str, str]) -> DesiredDirection:
    rate_key, burst_key, latency_key = KEYS_BY_DIRECTION[direction]
    if rate_key not in annotations:
        # A burst or latency alone asks for no limit: there is nothing to shape at.
        return DesiredDirection(direction, None)
    key = rate_key
    try:
        rate_bits_per_s = parse_rate_bits_per_s(annotations[rate_key])
        burst_bits = None
        if burst_key in annotations:
            key = burst_key
            burst_bits = parse_burst_bits(annotations[burst_key])
        latency_us = None
        if latency_key in annotations:
            key = latency_key
            latency_us = parse_duration_us(annotations[latency_key])
        key = rate_key
        params = tbf_params(rate_bits_per_s, burst_bits, latency_us)
    except TbfError as exc:
        field_keys = {"rate": rate_key, "burst": burst_key, "latency": latency_key}
        key = field_keys.get(exc.field, rate_key)
        if key not in annotations:
            key = rate_key
        return DesiredDirection(direction, None, key, _one_line(exc))
    except (QuantityError, DurationError) as exc:
        return DesiredDirection(direction, None, key, _one_line(exc))
    return DesiredDirection(direction, params)


def desired_shaping(annotations: Mapping[str, str]) -> dict[Direction, DesiredDirection]:
    """The desired state of both directions; never raises. An invalid value makes only its own
    direction INVALID (nothing is shaped there), never the other one."""
    return {direction: _desired_direction(direction, annotations) for direction in Direction}
