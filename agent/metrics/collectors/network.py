"""Collector `network`: each pod's interface counters, seen from inside the pod, named as
cAdvisor names its container_network_* counters."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from agent.metrics.registry import CollectorEntry
from agent.metrics.scrape import LINK_LABELS, POD_LABELS, Scrape

# (name after podbw_network_, Link field, what it counts)
LINK_COUNTERS = (
    ("receive_bytes_total", "rx_bytes", "Bytes received"),
    ("receive_packets_total", "rx_packets", "Packets received"),
    ("receive_errors_total", "rx_errors", "Receive errors"),
    ("receive_packets_dropped_total", "rx_dropped", "Packets dropped on receive"),
    ("transmit_bytes_total", "tx_bytes", "Bytes transmitted"),
    ("transmit_packets_total", "tx_packets", "Packets transmitted"),
    ("transmit_errors_total", "tx_errors", "Transmit errors"),
    ("transmit_packets_dropped_total", "tx_dropped", "Packets dropped on transmit"),
)


def collect(scrape: Scrape) -> Iterator[Metric]:
    capped = f"at most {scrape.max_interfaces} interfaces per pod"
    samples = scrape.counted_samples
    for part, attr, what in LINK_COUNTERS:
        family = CounterMetricFamily(
            f"podbw_network_{part}",
            f"{what} by the pod's interface, as seen inside the pod ({capped}; {scrape.sampled}).",
            labels=LINK_LABELS,
        )
        for sample in samples:
            pod = sample.pod
            for link in sample.links:
                family.add_metric((pod.namespace, pod.name, link.name), getattr(link, attr))
        yield family
    omitted = GaugeMetricFamily(
        "podbw_network_interfaces_omitted",
        f"Interfaces of the pod left out of podbw_network_* because it has more than "
        f"{scrape.max_interfaces} (--max-interfaces-per-pod); only pods with some ({scrape.sampled}).",
        labels=POD_LABELS,
    )
    for sample in samples:
        if sample.links_omitted:
            omitted.add_metric((sample.pod.namespace, sample.pod.name), sample.links_omitted)
    yield omitted


COLLECTOR = CollectorEntry("network", "interface counters of each pod (podbw_network_*)", True, collect)
