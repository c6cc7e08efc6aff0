"""Collector `limit`: the TBF parameters podbw put in the kernel, for directions in state applied."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from agent.metrics.registry import CollectorEntry
from agent.metrics.scrape import DIRECTION_LABELS, Scrape

SOURCE_LABELS = (*DIRECTION_LABELS, "source")
from agent.model.direction import ShapingState
from agent.model.precedence import rate_source

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
    sources = GaugeMetricFamily(
        "podbw_limit_source",
        "1 for where the rate limit in the kernel came from: the annotations file (file), the pod's "
        "annotation in the Kubernetes API (pod), its namespace's podbw.io/default-* (namespace), or the "
        f"pod's annotation as CRI reported it at creation (cri) ({scrape.sampled}).",
        labels=SOURCE_LABELS,
    )
    for sample in scrape.samples:
        pod = sample.pod
        for direction, status in sample.shaping.directions.items():
            source = rate_source(pod.annotation_sources, direction)
            if status.state == ShapingState.APPLIED and source is not None:
                sources.add_metric((pod.namespace, pod.name, direction.value, source), 1.0)
    yield sources


COLLECTOR = CollectorEntry("limit", "the limits in the kernel (podbw_limit_*)", True, collect)
