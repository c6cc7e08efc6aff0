"""Collector `throughput`: sampled mean and peak throughput of each pod and direction.

Exporters usually leave rates to PromQL; these exist because a sampler running every second
sees bursts that a 15 s scrape of the counters cannot.
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from agent.metrics.registry import CollectorEntry
from agent.metrics.scrape import DIRECTION_LABELS, Scrape


def collect(scrape: Scrape) -> Iterator[Metric]:
    for name, attr, documentation in (
        ("podbw_throughput_bytes_per_second", "throughput_bytes_per_s",
         "Pod throughput in bytes per second (bytes, not bits), mean over the last sample "
         f"interval, from interface counters ({scrape.sampled})."),
        ("podbw_throughput_peak_bytes_per_second", "peak_bytes_per_s",
         f"Highest {scrape.interval_text} mean throughput in bytes per second (bytes, not bits) over the "
         f"trailing peak window: bursts a slower scrape cannot see ({scrape.sampled})."),
    ):
        family = GaugeMetricFamily(name, documentation, labels=DIRECTION_LABELS)
        for sample in scrape.counted_samples:
            pod = sample.pod
            for direction, ds in sample.directions.items():
                family.add_metric((pod.namespace, pod.name, direction.value), getattr(ds, attr))
        yield family


COLLECTOR = CollectorEntry("throughput", "sampled mean and peak throughput (podbw_throughput_*)", True, collect)
