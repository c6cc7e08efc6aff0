"""Collector `pod_info`: one series per pod naming its uid, namespace pin and host interface."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import InfoMetricFamily
from prometheus_client.metrics_core import Metric

from agent.metrics.registry import CollectorEntry
from agent.metrics.scrape import POD_LABELS, Scrape

POD_INFO_LABELS = (*POD_LABELS, "uid", "netns", "host_interface")


def collect(scrape: Scrape) -> Iterator[Metric]:
    pod_info = InfoMetricFamily(
        "podbw_pod", f"One series per pod podbw samples, value 1 ({scrape.sampled}).", labels=POD_INFO_LABELS
    )
    for sample in scrape.samples:
        pod = sample.pod
        pod_info.add_metric(
            (pod.namespace, pod.name),
            {"uid": pod.uid, "netns": pod.netns_path, "host_interface": sample.shaping.host_interface},
        )
    yield pod_info


COLLECTOR = CollectorEntry("pod_info", "one info series per pod (podbw_pod_info)", True, collect)
