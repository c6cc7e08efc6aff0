"""What one scrape hands every collector: the latest Snapshot, the agent's health and the
static facts the collectors need. A describe() builds one without data."""

from __future__ import annotations

from dataclasses import dataclass

from agent.metrics.build_info import BuildInfo
from agent.model.direction import ShapingState
from agent.model.health import HealthData
from agent.model.snapshot import PodSample, Snapshot

POD_LABELS = ("namespace", "pod")
LINK_LABELS = (*POD_LABELS, "interface")
DIRECTION_LABELS = (*POD_LABELS, "direction")


@dataclass(frozen=True)
class ProcessSource:
    """Where the process metrics are read: a /proc tree and a pid in it (injectable for tests)."""

    proc_root: str = "/proc"
    pid: str = "self"


@dataclass(frozen=True)
class Scrape:
    snapshot: Snapshot | None
    health: HealthData | None
    pods_count: int | None
    """Pods known to the agent; None before anything is known (left out, not 0)."""
    interval_s: float
    """The sample interval, from the snapshot once there is one."""
    max_interfaces: int
    unlimited_pods: bool
    """Whether pods without any limit get per-pod counters and throughput."""
    build: BuildInfo
    process: ProcessSource
    describing: bool = False
    """True in describe(): families without samples, and no file or provider is read."""

    @property
    def samples(self) -> tuple[PodSample, ...]:
        return self.snapshot.pods if self.snapshot is not None else ()

    @property
    def counted_samples(self) -> tuple[PodSample, ...]:
        """The pods whose traffic counters are exported: all, or only those with some limit."""
        if self.unlimited_pods:
            return self.samples
        return tuple(sample for sample in self.samples if not is_unlimited(sample))

    @property
    def sampled(self) -> str:
        """For HELP texts: how fresh the values are."""
        return f"sampled every {self.interval_text}"

    @property
    def interval_text(self) -> str:
        return f"{self.interval_s:g}s"


def is_unlimited(sample: PodSample) -> bool:
    """No limit asked for in any direction (an invalid or failed one still counts as asked)."""
    return all(status.state == ShapingState.UNLIMITED for status in sample.shaping.directions.values())
