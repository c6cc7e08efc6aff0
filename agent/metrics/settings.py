"""Sampling settings: how often statistics are read and how far back the peak gauge looks."""

from __future__ import annotations

from dataclasses import dataclass

from agent.model.option import setting
from agent.model.value_parsers import seconds_between


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
