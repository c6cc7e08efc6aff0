"""Collector `shaping_state`: the one-hot state of each pod's directions (five series each)."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from agent.metrics.registry import CollectorEntry
from agent.metrics.scrape import DIRECTION_LABELS, Scrape
from agent.model.direction import ShapingState

STATE_LABELS = (*DIRECTION_LABELS, "state")
STATES = tuple(ShapingState)


def collect(scrape: Scrape) -> Iterator[Metric]:
    state = GaugeMetricFamily(
        "podbw_shaping_state",
        f"1 for the current shaping state of the pod's direction, 0 for the other states ({scrape.sampled}).",
        labels=STATE_LABELS,
    )
    for sample in scrape.samples:
        pod = sample.pod
        for direction, status in sample.shaping.directions.items():
            current = status.state
            for s in STATES:
                state.add_metric((pod.namespace, pod.name, direction.value, s.value), 1.0 if s == current else 0.0)
    yield state


COLLECTOR = CollectorEntry(
    "shaping_state", "the one-hot shaping state of each pod and direction (podbw_shaping_state)", True, collect
)
