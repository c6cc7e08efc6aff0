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
from agent.model.precedence import rate_source
from agent.model.snapshot import Snapshot

POD_LABELS = ("namespace", "pod")
LINK_LABELS = (*POD_LABELS, "interface")
DIRECTION_LABELS = (*POD_LABELS, "direction")
QDISC_LABELS = (*DIRECTION_LABELS, "kind")
STATE_LABELS = (*DIRECTION_LABELS, "state")
SOURCE_LABELS = (*DIRECTION_LABELS, "source")
POD_INFO_LABELS = (*POD_LABELS, "uid", "netns", "host_interface")

# (metric name part, Link field, what it counts)
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
# (metric name after podbw_qdisc_, Qdisc field, what it counts, family type)
_QDISC_FAMILIES = (
    *((f"{part}_total", attr, what, CounterMetricFamily) for part, attr, what in _QDISC_COUNTERS),
    *((part, attr, what, GaugeMetricFamily) for part, attr, what in _QDISC_GAUGES),
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
        max_interfaces: int = 8,
    ) -> None:
        self._snapshot = snapshot
        self._health = health
        self._pods_count = pods_count
        self._version = version
        self._interval_s = interval_s
        """The configured sample interval, for HELP texts until a Snapshot exists."""
        self._max_interfaces = max_interfaces

    def describe(self) -> Iterable:
        # Families without samples: the registry only needs the names, and registering must
        # not read a snapshot or the health recorder.
        return list(self._families(self._interval_s, None, None, None))

    def collect(self) -> Iterator:
        snapshot = self._snapshot()
        interval_s = snapshot.interval_s if snapshot is not None else self._interval_s
        if self._pods_count is not None:
            pods: int | None = self._pods_count()
        else:
            pods = len(snapshot.pods) if snapshot is not None else None
        yield from self._families(interval_s, snapshot, self._health(), pods)

    def _families(
        self,
        interval_s: float,
        snapshot: Snapshot | None,
        health: HealthData | None,
        pods: int | None,
    ) -> Iterator[Metric]:
        """Each family built and yielded in turn, one pass over the pods per family: a render
        holds one family's samples at a time, not every family's at once."""
        every = _interval_text(interval_s)
        sampled = f"sampled every {every}"
        samples = snapshot.pods if snapshot is not None else ()

        capped = f"at most {self._max_interfaces} interfaces per pod"
        for part, attr, what in _LINK_COUNTERS:
            family = CounterMetricFamily(
                f"podbw_network_{part}_total",
                f"{what} by the pod's interface, as seen inside the pod ({capped}; {sampled}).",
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
            f"{self._max_interfaces} (--max-interfaces-per-pod); only pods with some ({sampled}).",
            labels=POD_LABELS,
        )
        for sample in samples:
            if sample.links_omitted:
                omitted.add_metric((sample.pod.namespace, sample.pod.name), sample.links_omitted)
        yield omitted
        for part, attr, what, family_type in _QDISC_FAMILIES:
            family = family_type(
                f"podbw_qdisc_{part}",
                f"{what} podbw's qdisc enforcing the pod's limit ({sampled}).",
                labels=QDISC_LABELS,
            )
            for sample in samples:
                pod = sample.pod
                for direction, ds in sample.directions.items():
                    if ds.qdisc is not None:
                        family.add_metric(
                            (pod.namespace, pod.name, direction.value, ds.qdisc.kind), getattr(ds.qdisc, attr)
                        )
            yield family
        for name, attr, documentation in (
            ("podbw_limit_rate_bytes_per_second", "rate_bytes_per_s",
             f"Rate limit podbw applied, in bytes per second (bytes, not bits) ({sampled})."),
            ("podbw_limit_burst_bytes", "burst_bytes", f"Token bucket size podbw applied, in bytes ({sampled})."),
            ("podbw_limit_queue_bytes", "limit_bytes", f"Queue limit podbw applied, in bytes ({sampled})."),
        ):
            family = GaugeMetricFamily(name, documentation, labels=DIRECTION_LABELS)
            for sample in samples:
                pod = sample.pod
                for direction, status in sample.shaping.directions.items():
                    if status.state == ShapingState.APPLIED and status.params is not None:
                        family.add_metric(
                            (pod.namespace, pod.name, direction.value), getattr(status.params, attr)
                        )
            yield family
        sources = GaugeMetricFamily(
            "podbw_limit_source",
            "1 for where the rate limit in the kernel came from: the annotations file (file), the pod's "
            "annotation in the Kubernetes API (pod), its namespace's podbw.io/default-* (namespace), or the "
            f"pod's annotation as CRI reported it at creation (cri) ({sampled}).",
            labels=SOURCE_LABELS,
        )
        for sample in samples:
            pod = sample.pod
            for direction, status in sample.shaping.directions.items():
                source = rate_source(pod.annotation_sources, direction)
                if status.state == ShapingState.APPLIED and source is not None:
                    sources.add_metric((pod.namespace, pod.name, direction.value, source), 1.0)
        yield sources
        for name, attr, documentation in (
            ("podbw_throughput_bytes_per_second", "throughput_bytes_per_s",
             "Pod throughput in bytes per second (bytes, not bits), mean over the last sample "
             f"interval, from interface counters ({sampled})."),
            ("podbw_throughput_peak_bytes_per_second", "peak_bytes_per_s",
             f"Highest {every} mean throughput in bytes per second (bytes, not bits) over the "
             f"trailing peak window: bursts a slower scrape cannot see ({sampled})."),
        ):
            family = GaugeMetricFamily(name, documentation, labels=DIRECTION_LABELS)
            for sample in samples:
                pod = sample.pod
                for direction, ds in sample.directions.items():
                    family.add_metric((pod.namespace, pod.name, direction.value), getattr(ds, attr))
            yield family

        state = GaugeMetricFamily(
            "podbw_shaping_state",
            "1 for the current shaping state of the pod's direction, 0 for the other states "
            f"({sampled}).",
            labels=STATE_LABELS,
        )
        for sample in samples:
            pod = sample.pod
            for direction, status in sample.shaping.directions.items():
                current = status.state
                for s in _STATES:
                    state.add_metric(
                        (pod.namespace, pod.name, direction.value, s.value), 1.0 if s == current else 0.0
                    )
        yield state
        pod_info = InfoMetricFamily(
            "podbw_pod",
            f"One series per pod podbw samples, value 1 ({sampled}).",
            labels=POD_INFO_LABELS,
        )
        for sample in samples:
            pod = sample.pod
            pod_info.add_metric(
                (pod.namespace, pod.name),
                {"uid": pod.uid, "netns": pod.netns_path, "host_interface": sample.shaping.host_interface},
            )
        yield pod_info

        yield _histogram(
            "podbw_sample_duration_seconds",
            f"Duration of one sampling pass over all pods (a pass runs every {every}).",
            health.sample_duration if health is not None else None,
        )
        yield _histogram(
            "podbw_reconcile_latency_seconds",
            "Time from a pod namespace being seen to its limits being in the kernel.",
            health.reconcile_latency if health is not None else None,
        )
        errors = CounterMetricFamily(
            "podbw_annotation_errors_total",
            "Invalid bandwidth annotation values found, by annotation key.",
            labels=("key",),
        )
        operations = CounterMetricFamily(
            "podbw_shaping_operations_total",
            "Qdisc changes podbw attempted, by operation and result.",
            labels=("op", "result"),
        )
        discovery = GaugeMetricFamily(
            "podbw_discovery_up",
            "1 when the pod discovery source works, 0 when it fails (cri, netns, or kubernetes: the API's "
            "pods and namespaces, without which CRI alone carries discovery).",
            labels=("source",),
        )
        pods_family = GaugeMetricFamily("podbw_pods", f"Number of pods podbw samples ({sampled}).")
        unowned = GaugeMetricFamily(
            "podbw_unowned_ifbs",
            "ifb devices named as podbw names its own (podbw + 10 hex digits) that carry no owner "
            "alias and belong to no known pod: left in place, check and delete them.",
        )
        build = InfoMetricFamily("podbw_build", "podbw build, value 1.")
        lock = GaugeMetricFamily(
            "podbw_node_lock_held",
            "1 when this agent holds the node lock and shapes; 0 while another agent of the same "
            "runtime holds it (this one then only observes and is not ready).",
        )
        if health is not None:
            for key, count in sorted(health.annotation_errors.items()):
                errors.add_metric((key,), count)
            for (op, result), count in sorted(health.shaping_operations.items()):
                operations.add_metric((op, result), count)
            for source, up in sorted(health.discovery_up.items()):
                discovery.add_metric((source,), 1.0 if up else 0.0)
            build.add_metric((), {"version": self._version})
            unowned.add_metric((), health.unowned_ifbs)
            lock.add_metric((), 1.0 if health.node_lock_held else 0.0)
        if pods is not None:
            pods_family.add_metric((), pods)
        yield from (errors, operations, discovery, pods_family, unowned, lock, build)


def _histogram(name: str, documentation: str, data: HistogramData | None) -> Metric:
    if data is None:
        return HistogramMetricFamily(name, documentation, labels=())
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for bound_s, count in zip((*data.bucket_bounds_s, float("inf")), data.bucket_counts):
        cumulative += count
        buckets.append((floatToGoString(bound_s), cumulative))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=data.sum_s)
