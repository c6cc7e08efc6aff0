"""Collector `qdisc`: statistics of podbw's own qdiscs, named as node_exporter's qdisc
collector names them, with the backlog's unit in its name."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from agent.metrics.registry import CollectorEntry
from agent.metrics.scrape import DIRECTION_LABELS, Scrape

QDISC_LABELS = (*DIRECTION_LABELS, "kind")
# (name after podbw_qdisc_, Qdisc field, what it counts, family type)
QDISC_FAMILIES = (
    ("bytes_total", "bytes", "Bytes sent by", CounterMetricFamily),
    ("packets_total", "packets", "Packets sent by", CounterMetricFamily),
    ("drops_total", "drops", "Packets dropped by", CounterMetricFamily),
    ("overlimits_total", "overlimits", "Overlimit events (packet had to wait for tokens) of", CounterMetricFamily),
    ("requeues_total", "requeues", "Requeues of", CounterMetricFamily),
    ("backlog_bytes", "backlog_bytes", "Bytes queued in", GaugeMetricFamily),
    ("backlog_packets", "backlog_packets", "Packets queued in", GaugeMetricFamily),
)


def collect(scrape: Scrape) -> Iterator[Metric]:
    for part, attr, what, family_type in QDISC_FAMILIES:
        family = family_type(
            f"podbw_qdisc_{part}",
            f"{what} podbw's qdisc enforcing the pod's limit ({scrape.sampled}).",
            labels=QDISC_LABELS,
        )
        for sample in scrape.samples:
            pod = sample.pod
            for direction, ds in sample.directions.items():
                if ds.qdisc is not None:
                    family.add_metric((pod.namespace, pod.name, direction.value, ds.qdisc.kind), getattr(ds.qdisc, attr))
        yield family


COLLECTOR = CollectorEntry("qdisc", "statistics of podbw's qdiscs (podbw_qdisc_*)", True, collect)
