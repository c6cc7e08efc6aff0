"""Collector `agent`: the agent's own health and build (sampling, reconciling, discovery, errors)."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from agent.metrics.registry import CollectorEntry
from agent.metrics.scrape import Scrape
from agent.model.health import HistogramData


def collect(scrape: Scrape) -> Iterator[Metric]:
    health = scrape.health
    yield _histogram(
        "podbw_sample_duration_seconds",
        f"Duration of one sampling pass over all pods (a pass runs every {scrape.interval_text}).",
        health.sample_duration if health is not None else None,
    )
    yield _histogram(
        "podbw_reconcile_latency_seconds",
        "Time from a pod namespace being seen to its limits being in the kernel.",
        health.reconcile_latency if health is not None else None,
    )
    errors = CounterMetricFamily(
        "podbw_annotation_errors", "Invalid bandwidth annotation values found, by annotation key.", labels=("key",)
    )
    operations = CounterMetricFamily(
        "podbw_shaping_operations", "Qdisc changes podbw attempted, by operation and result.", labels=("op", "result")
    )
    discovery = GaugeMetricFamily(
        "podbw_discovery_up",
        "1 when the pod discovery source works, 0 when it fails (cri, netns, or kubernetes: the API's "
        "pods and namespaces, without which CRI alone carries discovery).",
        labels=("source",),
    )
    pods = GaugeMetricFamily("podbw_pods", f"Number of pods podbw samples ({scrape.sampled}).")
    unowned = GaugeMetricFamily(
        "podbw_unowned_ifbs",
        "ifb devices named as podbw names its own (podbw + 10 hex digits) that carry no owner "
        "alias and belong to no known pod: left in place, check and delete them.",
    )
    lock = GaugeMetricFamily(
        "podbw_node_lock_held",
        "1 when this agent holds the node lock and shapes; 0 while another agent of the same "
        "runtime holds it (this one then only observes and is not ready).",
    )
    pod_events = CounterMetricFamily(
        "podbw_pod_events",
        "Pod Events podbw raised, by what became of them: ok (posted), error (the API refused or "
        "failed), rate_limited (beyond the agent's bucket), dropped (queue full), no_api.",
        labels=("result",),
    )
    build = InfoMetricFamily(
        "podbw_build", "podbw's version, the git commit it was built from, and the Python running it; value 1."
    )
    if health is not None:
        for key, count in sorted(health.annotation_errors.items()):
            errors.add_metric((key,), count)
        for (op, result), count in sorted(health.shaping_operations.items()):
            operations.add_metric((op, result), count)
        for source, up in sorted(health.discovery_up.items()):
            discovery.add_metric((source,), 1.0 if up else 0.0)
        unowned.add_metric((), health.unowned_ifbs)
        lock.add_metric((), 1.0 if health.node_lock_held else 0.0)
        for result, count in sorted(health.pod_events.items()):
            pod_events.add_metric((result,), count)
    if not scrape.describing:
        info = scrape.build
        build.add_metric(
            (), {"version": info.version, "revision": info.revision, "python_version": info.python_version}
        )
    if scrape.pods_count is not None:
        pods.add_metric((), scrape.pods_count)
    yield from (errors, operations, discovery, pods, unowned, lock, pod_events, build)


def _histogram(name: str, documentation: str, data: HistogramData | None) -> Metric:
    if data is None:
        return HistogramMetricFamily(name, documentation, labels=())
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for bound_s, count in zip((*data.bucket_bounds_s, float("inf")), data.bucket_counts):
        cumulative += count
        buckets.append((floatToGoString(bound_s), cumulative))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=data.sum_s)


COLLECTOR = CollectorEntry(
    "agent", "the agent's own health: sampling, reconciling, discovery, errors, build (podbw_* without pod labels)",
    True, collect,
)
