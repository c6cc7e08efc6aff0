"""Metrics settings: how often statistics are read, how far back the peak gauge looks, and
which collectors run."""

from __future__ import annotations

from dataclasses import dataclass, make_dataclass
from typing import Any

from agent.metrics.collectors import COLLECTORS
from agent.model.option import setting
from agent.model.value_parsers import boolean, integer_between, seconds_between


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


def _collector_fields() -> list[tuple[str, type, Any]]:
    fields: list[tuple[str, type, Any]] = [
        (
            entry.name,
            bool,
            setting(
                entry.enabled_by_default, f"--collector.{entry.name}", f"export {entry.help}", boolean,
                switch=True, negatable=True,
            ),
        )
        for entry in COLLECTORS
    ]
    fields.append((
        "unlimited_pods",
        bool,
        setting(
            True, "--collector.unlimited-pods",
            "export interface counters and throughput of pods without any limit too (off: only their state and info)",
            boolean, switch=True, negatable=True,
        ),
    ))
    return fields


def _enabled(self: Any) -> frozenset[str]:
    """Names of the collectors switched on."""
    return frozenset(entry.name for entry in COLLECTORS if getattr(self, entry.name))


CollectorSettings = make_dataclass(
    "CollectorSettings", _collector_fields(), frozen=True, namespace={"enabled": property(_enabled)}
)
CollectorSettings.__doc__ = """Which collectors run, one `--[no-]collector.<name>` switch each, derived from the
registry in agent.metrics.collectors (as node_exporter derives its flags from collector.go)."""
CollectorSettings.__module__ = __name__
