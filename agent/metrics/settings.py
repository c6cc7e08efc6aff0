"""Sampling settings: how often statistics are read and how far back the peak gauge looks."""

from __future__ import annotations

from dataclasses import dataclass

from agent.model.option import setting
from agent.model.value_parsers import integer_between, seconds_between


@dataclass(frozen=True)
class SamplingSettings:
    interval_s: float = setting(
        1.0, "--sample-interval", "statistics sampling period in seconds", seconds_between(0.01, 60),
        metavar="SECONDS",
    )
    """Statistics sampling period; throughput is the mean over one interval."""
    peak_window_s: float = setting(
        60.0, "--peak-window", "trailing window of the peak throughput gauge in seconds", seconds_between(0, 86400),
        metavar="SECONDS",
    )
    """Trailing window of podbw_throughput_peak_bytes_per_second."""
    max_interfaces_per_pod: int = setting(
        8, "--max-interfaces-per-pod", "interfaces exported per pod; the rest are counted, not exported",
        integer_between(1, 1024), metavar="COUNT",
    )
    """Interfaces exported per pod (eight series each); the rest are counted in
    podbw_network_interfaces_omitted, so a pod that makes thousands cannot flood the exposition."""
