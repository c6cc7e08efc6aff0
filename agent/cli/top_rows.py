"""The rows of `podbw top`, from either source: an agent's /metrics text or a local Snapshot.

Both converters produce the same `PodRow`s, so the view cannot tell (and a unit test checks)
whether it looks at a running agent or at its own sample. A limit is shown only while it is in
the kernel (state `applied`), exactly as `podbw_limit_rate_bytes_per_second` is exported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from agent.model.direction import Direction, ShapingState
from agent.model.snapshot import Snapshot

DIRECTIONS = (Direction.INGRESS.value, Direction.EGRESS.value)


class MetricsFormatError(ValueError):
    """The text is not a Prometheus exposition (wrong URL, proxy error page, ...)."""


@dataclass(frozen=True)
class DirectionRow:
    state: str = ""
    """One of ShapingState's values, or "" when the source does not say (yet)."""
    limit_bytes_per_s: float | None = None
    """The rate in the kernel; None when this direction is not shaped."""
    throughput_bytes_per_s: float = 0.0
    peak_bytes_per_s: float = 0.0
    qdisc_drops: int | None = None
    """Drops of podbw's qdisc for this direction; None when there is no such qdisc."""

    @property
    def utilization(self) -> float | None:
        """Throughput as a fraction of the limit (may exceed 1 briefly: bursts, sampling)."""
        if not self.limit_bytes_per_s:
            return None
        return self.throughput_bytes_per_s / self.limit_bytes_per_s


@dataclass(frozen=True)
class PodRow:
    namespace: str
    name: str
    directions: dict[str, DirectionRow] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def direction(self, direction: str) -> DirectionRow:
        return self.directions.get(direction) or DirectionRow()

    @property
    def throughput_bytes_per_s(self) -> float:
        return sum(d.throughput_bytes_per_s for d in self.directions.values())


def sort_rows(rows: list[PodRow]) -> list[PodRow]:
    """Busiest pods first; ties (e.g. idle pods) by namespace/name so the order is stable."""
    return sorted(rows, key=lambda row: (-row.throughput_bytes_per_s, row.namespace, row.name))


class _RowBuilder:
    """Collects per-pod, per-direction fields in any order, then freezes them into rows."""

    def __init__(self) -> None:
        self._fields: dict[tuple[str, str], dict[str, dict[str, object]]] = {}

    def pod(self, namespace: str, name: str) -> dict[str, dict[str, object]]:
        return self._fields.setdefault((namespace, name), {d: {} for d in DIRECTIONS})

    def set(self, namespace: str, name: str, direction: str, key: str, value: object) -> None:
        if direction in DIRECTIONS:
            self.pod(namespace, name)[direction][key] = value

    def add_drops(self, namespace: str, name: str, direction: str, drops: int) -> None:
        if direction in DIRECTIONS:
            fields = self.pod(namespace, name)[direction]
            fields["qdisc_drops"] = int(fields.get("qdisc_drops") or 0) + drops

    def rows(self) -> list[PodRow]:
        rows = []
        for (namespace, name), directions in self._fields.items():
            rows.append(
                PodRow(namespace, name, {d: DirectionRow(**fields) for d, fields in directions.items()})  # type: ignore[arg-type]
            )
        return sort_rows(rows)


def rows_from_metrics_text(text: str) -> list[PodRow]:
    """Parse an agent's /metrics (Prometheus text format) into rows."""
    builder = _RowBuilder()
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, TypeError, IndexError) as err:
        raise MetricsFormatError(f"not a Prometheus exposition: {err}") from None
    if not any(f.name.startswith("podbw_") for f in families):
        raise MetricsFormatError("no podbw_ metrics in the answer: is this a podbw agent?")
    for family in families:
        for sample in family.samples:
            labels = sample.labels
            namespace, name = labels.get("namespace"), labels.get("pod")
            if namespace is None or name is None:
                continue
            direction = labels.get("direction", "")
            metric = sample.name
            if metric == "podbw_pod_info":
                builder.pod(namespace, name)
            elif metric == "podbw_limit_rate_bytes_per_second":
                builder.set(namespace, name, direction, "limit_bytes_per_s", sample.value)
            elif metric == "podbw_throughput_bytes_per_second":
                builder.set(namespace, name, direction, "throughput_bytes_per_s", sample.value)
            elif metric == "podbw_throughput_peak_bytes_per_second":
                builder.set(namespace, name, direction, "peak_bytes_per_s", sample.value)
            elif metric == "podbw_qdisc_drops_total":
                builder.add_drops(namespace, name, direction, int(sample.value))
            elif metric == "podbw_shaping_state" and sample.value == 1.0:
                builder.set(namespace, name, direction, "state", labels.get("state", ""))
    return builder.rows()


def rows_from_snapshot(snapshot: Snapshot) -> list[PodRow]:
    """The same rows from a Snapshot sampled in this process (the collector's rules)."""
    builder = _RowBuilder()
    for sample in snapshot.pods:
        pod = sample.pod
        builder.pod(pod.namespace, pod.name)
        for direction, ds in sample.directions.items():
            builder.set(pod.namespace, pod.name, direction.value, "throughput_bytes_per_s", ds.throughput_bytes_per_s)
            builder.set(pod.namespace, pod.name, direction.value, "peak_bytes_per_s", ds.peak_bytes_per_s)
            if ds.qdisc is not None:
                builder.add_drops(pod.namespace, pod.name, direction.value, ds.qdisc.drops)
        for direction, status in sample.shaping.directions.items():
            builder.set(pod.namespace, pod.name, direction.value, "state", status.state.value)
            if status.state is ShapingState.APPLIED and status.params is not None:
                builder.set(
                    pod.namespace, pod.name, direction.value, "limit_bytes_per_s", float(status.params.rate_bytes_per_s)
                )
    return builder.rows()
