"""Prometheus collector: renders the latest Snapshot and the agent's health, nothing else.

A scrape does no netlink work, so any number of scrapers cost the node nothing extra. Families
are built fresh on every collect(): series of pods that are gone simply are not produced.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from agent.model.direction import ShapingState
from agent.model.health import HealthData, HistogramData
from agent.model.snapshot import Snapshot

POD_LABELS = ("namespace", "pod")
LINK_LABELS = (*POD_LABELS, "interface")
DIRECTION_LABELS = (*POD_LABELS, "direction")
QDISC_LABELS = (*DIRECTION_LABELS, "kind")
STATE_LABELS = (*DIRECTION_LABELS, "state")
POD_INFO_LABELS = (*POD_LABELS, "uid", "netns", "host_interface")

# (metric name part, LinkStats field, what it counts)
_LINK_COUNTERS = (
    ("receive_bytes", "rx_bytes", "Bytes received"),
    ("receive_packets", "rx_packets", "Packets received"),
    ("receive_errors", "rx_errors", "Receive errors"),
    ("receive_dropped", "rx_dropped", "Packets dropped on receive"),
    ("transmit_bytes", "tx_bytes", "Bytes transmitted"),
    ("transmit_packets", "tx_packets", "Packets transmitted"),
    ("transmit_errors", "tx_errors", "Transmit errors"),
    ("transmit_dropped", "tx_dropped", "Packets dropped on transmit"),
)
_QDISC_COUNTERS = (
    ("bytes", "bytes", "Bytes sent by"),
    ("packets", "packets", "Packets sent by"),
    ("drops", "drops", "Packets dropped by"),
    ("overlimits", "overlimits", "Overlimit events (packet had to wait for tokens) of"),
    ("requeues", "requeues", "Requeues of"),
)
_QDISC_GAUGES = (
    ("backlog_bytes", "backlog_bytes", "Bytes queued in"),
    ("backlog_packets", "backlog_packets", "Packets queued in"),
)
_STATES = tuple(ShapingState)


def _interval_text(interval_s: float) -> str:
    return f"{interval_s:g}s"


class PodbwCollector(Collector):
    """Custom collector over `snapshot()` (the sampler's latest) and `health()`."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot | None],
        health: Callable[[], HealthData],
        pods_count: Callable[[], int] | None = None,
        *,
        version: str,
        interval_s: float = 1.0,
    ) -> None:
        self._snapshot = snapshot
        self._health = health
        self._pods_count = pods_count
        self._version = version
        self._interval_s = interval_s
        """The configured sample interval, for HELP texts until a Snapshot exists."""

    def describe(self) -> Iterable:
        # Families without samples: the registry only needs the names, and registering must
        # not read a snapshot or the health recorder.
        return list(self._families(self._interval_s, None, None, None).values())

    def collect(self) -> Iterator:
        snapshot = self._snapshot()
        interval_s = snapshot.interval_s if snapshot is not None else self._interval_s
        if self._pods_count is not None:
            pods: int | None = self._pods_count()
        else:
            pods = len(snapshot.pods) if snapshot is not None else None
        families = self._families(interval_s, snapshot, self._health(), pods)
        yield from families.values()

    def _families(
        self,
        interval_s: float,
        snapshot: Snapshot | None,
        health: HealthData | None,
        pods: int | None,
    ) -> dict[str, Metric]:
        every = _interval_text(interval_s)
        sampled = f"sampled every {every}"
        f: dict[str, Any] = {}

        for part, _, what in _LINK_COUNTERS:
            name = f"podbw_network_{part}_total"
            f[name] = CounterMetricFamily(
                name,
                f"{what} by the pod's interface, as seen inside the pod ({sampled}).",
                labels=LINK_LABELS,
            )
        for part, _, what in _QDISC_COUNTERS:
            name = f"podbw_qdisc_{part}_total"
            f[name] = CounterMetricFamily(
                name,
                f"{what} podbw's qdisc enforcing the pod's limit ({sampled}).",
                labels=QDISC_LABELS,
            )
        for part, _, what in _QDISC_GAUGES:
            name = f"podbw_qdisc_{part}"
            f[name] = GaugeMetricFamily(
                name,
                f"{what} podbw's qdisc enforcing the pod's limit ({sampled}).",
                labels=QDISC_LABELS,
            )
        f["podbw_limit_rate_bytes_per_second"] = GaugeMetricFamily(
            "podbw_limit_rate_bytes_per_second",
            f"Rate limit podbw applied, in bytes per second (bytes, not bits) ({sampled}).",
            labels=DIRECTION_LABELS,
        )
        f["podbw_limit_burst_bytes"] = GaugeMetricFamily(
            "podbw_limit_burst_bytes",
            f"Token bucket size podbw applied, in bytes ({sampled}).",
            labels=DIRECTION_LABELS,
        )
        f["podbw_limit_queue_bytes"] = GaugeMetricFamily(
            "podbw_limit_queue_bytes",
            f"Queue limit podbw applied, in bytes ({sampled}).",
            labels=DIRECTION_LABELS,
        )
        f["podbw_throughput_bytes_per_second"] = GaugeMetricFamily(
            "podbw_throughput_bytes_per_second",
            "Pod throughput in bytes per second (bytes, not bits), mean over the last sample "
            f"interval, from interface counters ({sampled}).",
            labels=DIRECTION_LABELS,
        )
        f["podbw_throughput_peak_bytes_per_second"] = GaugeMetricFamily(
            "podbw_throughput_peak_bytes_per_second",
            f"Highest {every} mean throughput in bytes per second (bytes, not bits) over the "
            f"trailing peak window: bursts a slower scrape cannot see ({sampled}).",
            labels=DIRECTION_LABELS,
        )
        f["podbw_shaping_state"] = GaugeMetricFamily(
            "podbw_shaping_state",
            "1 for the current shaping state of the pod's direction, 0 for the other states "
            f"({sampled}).",
            labels=STATE_LABELS,
        )
        f["podbw_pod"] = InfoMetricFamily(
            "podbw_pod",
            f"One series per pod podbw samples, value 1 ({sampled}).",
            labels=POD_INFO_LABELS,
        )
        if snapshot is not None:
            _add_pods(snapshot, f)

        f["podbw_sample_duration_seconds"] = _histogram(
            "podbw_sample_duration_seconds",
            f"Duration of one sampling pass over all pods (a pass runs every {every}).",
            health.sample_duration if health is not None else None,
        )
        f["podbw_reconcile_latency_seconds"] = _histogram(
            "podbw_reconcile_latency_seconds",
            "Time from a pod namespace being seen to its limits being in the kernel.",
            health.reconcile_latency if health is not None else None,
        )
        errors = f["podbw_annotation_errors_total"] = CounterMetricFamily(
            "podbw_annotation_errors_total",
            "Invalid bandwidth annotation values found, by annotation key.",
            labels=("key",),
        )
        operations = f["podbw_shaping_operations_total"] = CounterMetricFamily(
            "podbw_shaping_operations_total",
            "Qdisc changes podbw attempted, by operation and result.",
            labels=("op", "result"),
        )
        discovery = f["podbw_discovery_up"] = GaugeMetricFamily(
            "podbw_discovery_up",
            "1 when the pod discovery source works, 0 when it fails.",
            labels=("source",),
        )
        pods_family = f["podbw_pods"] = GaugeMetricFamily(
            "podbw_pods", f"Number of pods podbw samples ({sampled})."
        )
        build = f["podbw_build"] = InfoMetricFamily("podbw_build", "podbw build, value 1.")
        if health is not None:
            for key, count in sorted(health.annotation_errors.items()):
                errors.add_metric((key,), count)
            for (op, result), count in sorted(health.shaping_operations.items()):
                operations.add_metric((op, result), count)
            for source, up in sorted(health.discovery_up.items()):
                discovery.add_metric((source,), 1.0 if up else 0.0)
            build.add_metric((), {"version": self._version})
        if pods is not None:
            pods_family.add_metric((), pods)
        return f


def _histogram(name: str, documentation: str, data: HistogramData | None) -> Metric:
    if data is None:
        return HistogramMetricFamily(name, documentation, labels=())
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for bound_s, count in zip((*data.bucket_bounds_s, float("inf")), data.bucket_counts):
        cumulative += count
        buckets.append((floatToGoString(bound_s), cumulative))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=data.sum_s)


def _add_pods(snapshot: Snapshot, f: dict[str, Any]) -> None:
    link_families = [(f[f"podbw_network_{p}_total"], attr) for p, attr, _ in _LINK_COUNTERS]
    qdisc_families = [(f[f"podbw_qdisc_{p}_total"], attr) for p, attr, _ in _QDISC_COUNTERS]
    qdisc_families += [(f[f"podbw_qdisc_{p}"], attr) for p, attr, _ in _QDISC_GAUGES]
    rate = f["podbw_limit_rate_bytes_per_second"]
    burst = f["podbw_limit_burst_bytes"]
    queue = f["podbw_limit_queue_bytes"]
    throughput = f["podbw_throughput_bytes_per_second"]
    peak = f["podbw_throughput_peak_bytes_per_second"]
    state = f["podbw_shaping_state"]
    pod_info = f["podbw_pod"]
    applied = ShapingState.APPLIED
    for sample in snapshot.pods:
        pod = sample.pod
        ns, name = pod.namespace, pod.name
        shaping = sample.shaping
        pod_info.add_metric(
            (ns, name),
            {"uid": pod.uid, "netns": pod.netns_path, "host_interface": shaping.host_interface},
        )
        for link in sample.links:
            labels = (ns, name, link.name)
            for family, attr in link_families:
                family.add_metric(labels, getattr(link, attr))
        for direction, ds in sample.directions.items():
            labels = (ns, name, direction.value)
            throughput.add_metric(labels, ds.throughput_bytes_per_s)
            peak.add_metric(labels, ds.peak_bytes_per_s)
            if ds.qdisc is not None:
                qdisc_labels = (*labels, ds.qdisc.kind)
                for family, attr in qdisc_families:
                    family.add_metric(qdisc_labels, getattr(ds.qdisc, attr))
        for direction, status in shaping.directions.items():
            labels = (ns, name, direction.value)
            current = status.state
            for s in _STATES:
                state.add_metric((*labels, s.value), 1.0 if s == current else 0.0)
            params = status.params
            if current == applied and params is not None:
                rate.add_metric(labels, params.rate_bytes_per_s)
                burst.add_metric(labels, params.burst_bytes)
                queue.add_metric(labels, params.limit_bytes)
