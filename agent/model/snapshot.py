"""Immutable statistics snapshot: the sampler writes one per interval, scrapes only read it."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, NamedTuple

from agent.model.direction import Direction
from agent.model.kernel import Link, Qdisc
from agent.model.pod import Pod
from agent.model.status import PodShapingStatus


class DirectionSample(NamedTuple):
    """Statistics of the qdisc that enforces one direction's limit, plus throughput. This and
    PodSample are NamedTuples: the sampler makes one of each for every pod whose counters moved,
    every second."""

    qdisc: Qdisc | None
    throughput_bytes_per_s: float
    """Mean over the last sample interval, from counter deltas over monotonic time."""
    peak_bytes_per_s: float
    """Max of throughput_bytes_per_s over the trailing peak window."""


class PodSample(NamedTuple):
    pod: Pod
    shaping: PodShapingStatus
    links: tuple[Link, ...]
    """The pod's interfaces (loopback excluded) from inside its namespace, as many as are exported."""
    directions: Mapping[Direction, DirectionSample] = MappingProxyType({})
    links_omitted: int = 0
    """Interfaces beyond the per-pod cap, left out of `links` (throughput still counts them)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at_monotonic_s: float
    interval_s: float
    pods: tuple[PodSample, ...]
    sample_duration_s: float
