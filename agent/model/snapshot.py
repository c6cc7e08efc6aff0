"""Immutable statistics snapshot: the sampler writes one per interval, scrapes only read it."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, NamedTuple

from agent.model.direction import Direction
from agent.model.pod import Pod
from agent.model.status import PodShapingStatus


class LinkStats(NamedTuple):
    """One interface's 64-bit counters (IFLA_STATS64) as its own namespace sees them.

    A NamedTuple rather than a frozen dataclass, as is QdiscStats: the sampler builds one per
    changed interface every second for hundreds of pods, and a frozen dataclass's __init__
    (one object.__setattr__ per field) costs ~8x a tuple's construction."""

    ifindex: int
    name: str
    link_ifindex: int = 0
    """IFLA_LINK: for a veth, the peer's ifindex (in the peer's namespace)."""
    link_netnsid: int = -1
    """IFLA_LINK_NETNSID: the peer namespace's id as seen from here (-1 when absent)."""
    kind: str = ""
    rx_bytes: int = 0
    rx_packets: int = 0
    rx_errors: int = 0
    rx_dropped: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    tx_dropped: int = 0


class QdiscStats(NamedTuple):
    """One qdisc's TCA_STATS2 counters."""

    ifindex: int
    handle: int
    parent: int
    kind: str
    bytes: int = 0
    packets: int = 0
    drops: int = 0
    overlimits: int = 0
    requeues: int = 0
    backlog_bytes: int = 0
    backlog_packets: int = 0


class DirectionSample(NamedTuple):
    """Statistics of the qdisc that enforces one direction's limit, plus throughput.

    This and PodSample are NamedTuples for the reason LinkStats is: the sampler makes one of
    each for every pod whose counters moved, every second."""

    qdisc: QdiscStats | None
    throughput_bytes_per_s: float
    """Mean over the last sample interval, from counter deltas over monotonic time."""
    peak_bytes_per_s: float
    """Max of throughput_bytes_per_s over the trailing peak window."""


class PodSample(NamedTuple):
    pod: Pod
    shaping: PodShapingStatus
    links: tuple[LinkStats, ...]
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
