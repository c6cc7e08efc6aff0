"""Thread-safe recorder of the agent's own health, written by every loop, rendered by metrics.

It lives in `model` so that discovery and shaping can record into it without depending on the
metrics layer, which only reads it.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

# Bucket bounds in seconds: reconcile latency spans inotify-fast (ms) to resync-slow (30 s).
SAMPLE_DURATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
RECONCILE_LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True)
class HistogramData:
    bucket_bounds_s: tuple[float, ...]
    bucket_counts: tuple[int, ...]
    """Non-cumulative count per bucket; one more than bounds (the +Inf bucket)."""
    sum_s: float
    count: int


class _Histogram:
    def __init__(self, bounds_s: tuple[float, ...]) -> None:
        self._bounds_s = bounds_s
        self._counts = [0] * (len(bounds_s) + 1)
        self._sum_s = 0.0

    def observe(self, value_s: float) -> None:
        for i, bound in enumerate(self._bounds_s):
            if value_s <= bound:
                self._counts[i] += 1
                break
        else:
            self._counts[-1] += 1
        self._sum_s += value_s

    def data(self) -> HistogramData:
        return HistogramData(self._bounds_s, tuple(self._counts), self._sum_s, sum(self._counts))


@dataclass(frozen=True, slots=True)
class HealthData:
    sample_duration: HistogramData
    reconcile_latency: HistogramData
    annotation_errors: dict[str, int]
    """Keyed by annotation key."""
    shaping_operations: dict[tuple[str, str], int]
    """Keyed by (op, result)."""
    discovery_up: dict[str, bool]
    """Keyed by source ("cri", "netns")."""
    last_sample_monotonic_s: float | None
    node_lock_held: bool = True
    """False while another agent of the same runtime holds the node lock (this one only observes)."""
    pod_events: dict[str, int] = field(default_factory=dict)
    """Pod Events by what became of them (ok, error, rate_limited, dropped, no_api)."""
    unowned_ifbs: int = 0
    """ifbs named as podbw names them but carrying no owner alias, found by the last orphan scan."""


class HealthRecorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sample_duration = _Histogram(SAMPLE_DURATION_BUCKETS_S)
        self._reconcile_latency = _Histogram(RECONCILE_LATENCY_BUCKETS_S)
        self._annotation_errors: Counter[str] = Counter()
        self._shaping_operations: Counter[tuple[str, str]] = Counter()
        self._discovery_up: dict[str, bool] = {}
        self._last_sample_monotonic_s: float | None = None
        self._unowned_ifbs = 0
        self._node_lock_held = True
        self._pod_events: Counter[str] = Counter()

    def sample_done(self, duration_s: float, at_monotonic_s: float) -> None:
        with self._lock:
            self._sample_duration.observe(duration_s)
            self._last_sample_monotonic_s = at_monotonic_s

    def reconcile_latency(self, latency_s: float) -> None:
        with self._lock:
            self._reconcile_latency.observe(latency_s)

    def annotation_error(self, key: str) -> None:
        with self._lock:
            self._annotation_errors[key] += 1

    def shaping_operation(self, op: str, result: str) -> None:
        with self._lock:
            self._shaping_operations[(op, result)] += 1

    def set_discovery_up(self, source: str, up: bool) -> None:
        with self._lock:
            self._discovery_up[source] = up

    def pod_event(self, result: str) -> None:
        with self._lock:
            self._pod_events[result] += 1

    def set_node_lock_held(self, held: bool) -> None:
        with self._lock:
            self._node_lock_held = held

    def set_unowned_ifbs(self, count: int) -> None:
        with self._lock:
            self._unowned_ifbs = count

    def data(self) -> HealthData:
        with self._lock:
            return HealthData(
                sample_duration=self._sample_duration.data(),
                reconcile_latency=self._reconcile_latency.data(),
                annotation_errors=dict(self._annotation_errors),
                shaping_operations=dict(self._shaping_operations),
                discovery_up=dict(self._discovery_up),
                last_sample_monotonic_s=self._last_sample_monotonic_s,
                node_lock_held=self._node_lock_held,
                pod_events=dict(self._pod_events),
                unowned_ifbs=self._unowned_ifbs,
            )
