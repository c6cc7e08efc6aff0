"""Collector `limit`: the TBF parameters podbw put in the kernel, for directions in state applied."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from agent.metrics.registry import CollectorEntry
from agent.metrics.scrape import DIRECTION_LABELS, Scrape
from agent.model.direction import ShapingState

# (name, TbfParams field, what it is)
LIMIT_FAMILIES = (
    ("podbw_limit_rate_bytes_per_second", "rate_bytes_per_s", "Rate limit podbw applied, in bytes per second (bytes, not bits)"),
    ("podbw_limit_burst_bytes", "burst_bytes", "Token bucket size podbw applied, in bytes"),
    ("podbw_limit_queue_bytes", "limit_bytes", "Queue limit podbw applied, in bytes"),
)


def collect(scrape: Scrape) -> Iterator[Metric]:
    for name, attr, what in LIMIT_FAMILIES:
        family = GaugeMetricFamily(name, f"{what} ({scrape.sampled}).", labels=DIRECTION_LABELS)
        for sample in scrape.samples:
            pod = sample.pod
            for direction, status in sample.shaping.directions.items():
                if status.state == ShapingState.APPLIED and status.params is not None:
                    family.add_metric((pod.namespace, pod.name, direction.value), getattr(status.params, attr))
        yield family


COLLECTOR = CollectorEntry("limit", "the limits in the kernel (podbw_limit_*)", True, collect)
