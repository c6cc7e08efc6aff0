"""The 1 s sampler: reads link and qdisc counters of every pod and publishes one Snapshot.

Scrapes never touch netlink; they render `Sampler.latest`. This pass is the hot path (hundreds
of namespaces every second), so it does plain dict/tuple work on the raw reader's records and
nothing more: one round trip per pod namespace (links and qdiscs together), and an idle pod's
sample from the previous pass is reused rather than rebuilt (bench/collect.py measures it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import replace
from operator import is_
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from apscheduler.jobstores.base import JobLookupError

from agent.model.direction import Direction
from agent.model.handles import PODBW_ROOT_HANDLE, TC_H_ROOT
from agent.model.health import HealthRecorder
from agent.model.pod import Pod
from agent.model.snapshot import DirectionSample, LinkStats, PodSample, QdiscStats, Snapshot
from agent.model.status import PodShapingStatus
from agent.netlink.errors import NetlinkError
from agent.netlink.netns import NetnsGone

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from agent.netlink.stats_socket import StatsSocket, StatsSocketPool

log = logging.getLogger(__name__)

JOB_ID = "podbw-sampler"
LOOPBACK = "lo"
_INGRESS, _EGRESS = Direction.INGRESS, Direction.EGRESS
# A namespace that vanished between discovery and the dump is routine churn, not an agent fault.
_NAMESPACE_ERRORS = (NetnsGone, NetlinkError, OSError)


class _Namespace:
    """One namespace's dump, indexed for the lookups a pass needs."""

    __slots__ = ("ifindex_by_name", "podbw_root_by_ifindex")

    def __init__(self, links: Sequence[LinkStats], qdiscs: Sequence[QdiscStats]) -> None:
        self.ifindex_by_name = {link.name: link.ifindex for link in links}
        self.podbw_root_by_ifindex = {
            q.ifindex: q for q in qdiscs if q.parent == TC_H_ROOT and q.handle == PODBW_ROOT_HANDLE
        }

    def podbw_root(self, device: str) -> QdiscStats | None:
        ifindex = self.ifindex_by_name.get(device)
        return None if ifindex is None else self.podbw_root_by_ifindex.get(ifindex)


def _podbw_root_in(
    links: Sequence[LinkStats], qdiscs: Sequence[QdiscStats], device: str
) -> QdiscStats | None:
    """podbw's root qdisc on device, in a pod's few links and qdiscs (no index worth building)."""
    for link in links:
        if link.name == device:
            ifindex = link.ifindex
            for q in qdiscs:
                if q.ifindex == ifindex and q.parent == TC_H_ROOT and q.handle == PODBW_ROOT_HANDLE:
                    return q
            return None
    return None


def _links_and_qdiscs(sock: StatsSocket) -> tuple[Sequence[LinkStats], Sequence[QdiscStats]]:
    """Both dumps, in one round trip when the socket offers it (StatsSocket does; a reader
    with only links() and qdiscs() works too)."""
    both = getattr(sock, "links_and_qdiscs", None)
    if both is not None:
        return both()
    return sock.links(), sock.qdiscs()


def _same_items(a: Sequence[object], b: Sequence[object]) -> bool:
    """Element-wise identity (the netlink reader hands out the same object for unchanged data)."""
    return len(a) == len(b) and all(map(is_, a, b))


_EMPTY_NAMESPACE = _Namespace((), ())


class _PeakWindow:
    """Max over a trailing time window in O(1) amortised: a deque of decreasing values."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: deque[tuple[float, float]] = deque()

    def add(self, at_s: float, value: float, window_s: float) -> float:
        entries = self._entries
        while entries and entries[-1][1] <= value:
            entries.pop()
        entries.append((at_s, value))
        oldest_s = at_s - window_s
        while entries[0][0] < oldest_s:
            entries.popleft()
        return entries[0][1]


class _PodCounters:
    """What the previous pass saw for one pod: byte counters, the peak windows, and the
    samples it produced (reused whole when nothing changed, as for most idle pods)."""

    __slots__ = (
        "at_s", "ifindexes", "rx_bytes", "tx_bytes", "ingress_peak", "egress_peak",
        "sample", "ingress", "egress",
    )

    def __init__(self) -> None:
        self.at_s = 0.0
        self.ifindexes: tuple[int, ...] | None = None
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.ingress_peak = _PeakWindow()
        self.egress_peak = _PeakWindow()
        self.sample: PodSample | None = None
        self.ingress: DirectionSample | None = None
        self.egress: DirectionSample | None = None


def _rate(previous: int, current: int, elapsed_s: float) -> float:
    # A smaller counter means the interface was replaced: no meaningful rate for this interval.
    if elapsed_s <= 0.0 or current < previous:
        return 0.0
    return (current - previous) / elapsed_s


class Sampler:
    """Samples all pods every interval_s and keeps the latest immutable Snapshot."""

    def __init__(
        self,
        pods: Callable[[], Sequence[Pod]],
        shaping: Callable[[], Mapping[str, PodShapingStatus]],
        pool: StatsSocketPool,
        health: HealthRecorder,
        interval_s: float = 1.0,
        peak_window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"sample interval must be positive, got {interval_s} s")
        if peak_window_s < 0:
            raise ValueError(f"peak window must not be negative, got {peak_window_s} s")
        self._pods = pods
        self._shaping = shaping
        self._pool = pool
        self._health = health
        self.interval_s = interval_s
        self.peak_window_s = peak_window_s
        self._clock = clock
        self._counters: dict[str, _PodCounters] = {}
        self._latest: Snapshot | None = None
        # Held for a whole pass so stop() can wait for one in flight before the pool is closed.
        self._pass_lock = threading.Lock()
        self._scheduler: BaseScheduler | None = None
        self._host_failing = False

    @property
    def latest(self) -> Snapshot | None:
        """The newest Snapshot (None before the first pass), without pods discovery has
        dropped since it was taken: a deleted pod's series vanish from the very next scrape,
        not one pass later. Snapshots are replaced whole, never mutated."""
        snapshot = self._latest
        if snapshot is None or not snapshot.pods:
            return snapshot
        live = {pod.sandbox_id for pod in self._pods()}
        if all(s.pod.sandbox_id in live for s in snapshot.pods):
            return snapshot
        return replace(snapshot, pods=tuple(s for s in snapshot.pods if s.pod.sandbox_id in live))

    def sample_once(self) -> Snapshot:
        with self._pass_lock:
            return self._sample_locked()

    def _sample_locked(self) -> Snapshot:
        clock = self._clock
        started_s = clock()
        pods = self._pods()
        statuses = self._shaping()
        self._pool.retain({pod.netns_path for pod in pods})

        host: _Namespace | None = None  # dumped on first need: unshaped nodes never pay for it
        samples: list[PodSample] = []
        for pod in pods:
            status = statuses.get(pod.sandbox_id) or PodShapingStatus(pod.sandbox_id)
            needs_pod_qdiscs = needs_host = False
            for d in status.directions.values():
                if d.device:
                    if d.device_in_pod:
                        needs_pod_qdiscs = True
                    else:
                        needs_host = True
            try:
                sock = self._pool.get(pod.netns_path)
                if not needs_pod_qdiscs:
                    links, qdiscs = sock.links(), ()
                else:
                    links, qdiscs = _links_and_qdiscs(sock)
            except _NAMESPACE_ERRORS as exc:
                log.debug("pod %s left out of this sample: %s", pod.key, exc)
                self._pool.forget(pod.netns_path)
                continue
            at_s = clock()
            if needs_host and host is None:
                host = self._dump_host()
            samples.append(self._pod_sample(pod, status, links, qdiscs, host, at_s))

        live = {pod.sandbox_id for pod in pods}
        if any(k not in live for k in self._counters):
            self._counters = {k: v for k, v in self._counters.items() if k in live}

        finished_s = clock()
        duration_s = finished_s - started_s
        snapshot = Snapshot(
            taken_at_monotonic_s=finished_s,
            interval_s=self.interval_s,
            pods=tuple(samples),
            sample_duration_s=duration_s,
        )
        self._latest = snapshot
        self._health.sample_done(duration_s, finished_s)
        # One line per pass at debug level: its timestamps give the real pass cadence
        # (bench/collect.py measures the interval under scrape load from them).
        log.debug("sample pass done: %d pods in %.1f ms", len(samples), duration_s * 1000)
        return snapshot

    def _dump_host(self) -> _Namespace:
        try:
            sock = self._pool.get(None)
            host = _Namespace(*_links_and_qdiscs(sock))
        except _NAMESPACE_ERRORS as exc:
            # Logged once per outage: at 1 s intervals a log line per pass would flood.
            if not self._host_failing:
                log.warning("cannot read host namespace statistics: %s", exc)
                self._host_failing = True
            return _EMPTY_NAMESPACE
        if self._host_failing:
            log.info("host namespace statistics readable again")
            self._host_failing = False
        return host

    def _pod_sample(
        self,
        pod: Pod,
        status: PodShapingStatus,
        links: Sequence[LinkStats],
        qdiscs: Sequence[QdiscStats],
        host: _Namespace | None,
        at_s: float,
    ) -> PodSample:
        own = [link for link in links if link.name != LOOPBACK]
        rx_bytes = tx_bytes = 0
        for link in own:
            rx_bytes += link.rx_bytes
            tx_bytes += link.tx_bytes
        ifindexes = tuple([link.ifindex for link in own])

        counters = self._counters.get(pod.sandbox_id)
        if counters is None:
            counters = self._counters[pod.sandbox_id] = _PodCounters()
        if counters.ifindexes == ifindexes:
            elapsed_s = at_s - counters.at_s
            ingress_rate = _rate(counters.rx_bytes, rx_bytes, elapsed_s)
            egress_rate = _rate(counters.tx_bytes, tx_bytes, elapsed_s)
        else:
            # First sample, or interfaces came or went: the sums are not comparable.
            ingress_rate = egress_rate = 0.0
        counters.at_s = at_s
        counters.ifindexes = ifindexes
        counters.rx_bytes = rx_bytes
        counters.tx_bytes = tx_bytes
        window_s = self.peak_window_s
        ingress_peak = counters.ingress_peak.add(at_s, ingress_rate, window_s)
        egress_peak = counters.egress_peak.add(at_s, egress_rate, window_s)

        ingress_qdisc = egress_qdisc = None
        for direction, d in status.directions.items():
            if not d.device:
                continue
            if d.device_in_pod:
                qdisc = _podbw_root_in(links, qdiscs, d.device)
            else:
                qdisc = (host or _EMPTY_NAMESPACE).podbw_root(d.device)
            if direction is _INGRESS:
                ingress_qdisc = qdisc
            else:
                egress_qdisc = qdisc

        # Reuse last pass's objects where nothing changed: an idle pod costs no allocations.
        changed = False
        ingress = counters.ingress
        if ingress is None or not (
            ingress.qdisc is ingress_qdisc
            and ingress.throughput_bytes_per_s == ingress_rate
            and ingress.peak_bytes_per_s == ingress_peak
        ):
            ingress = counters.ingress = DirectionSample(ingress_qdisc, ingress_rate, ingress_peak)
            changed = True
        egress = counters.egress
        if egress is None or not (
            egress.qdisc is egress_qdisc
            and egress.throughput_bytes_per_s == egress_rate
            and egress.peak_bytes_per_s == egress_peak
        ):
            egress = counters.egress = DirectionSample(egress_qdisc, egress_rate, egress_peak)
            changed = True
        previous = counters.sample
        if (
            not changed
            and previous is not None
            and previous.pod is pod
            # Unshaped pods get a fresh default status each pass: equal is as good as same.
            and (previous.shaping is status or previous.shaping == status)
            and _same_items(previous.links, own)
        ):
            return previous
        sample = counters.sample = PodSample(
            pod=pod,
            shaping=status,
            links=tuple(own),
            directions={_INGRESS: ingress, _EGRESS: egress},
        )
        return sample

    def _run(self) -> None:
        try:
            self.sample_once()
        except Exception:  # a bug must not kill the job; the next pass tries again
            log.exception("sample pass failed")

    def start(self, scheduler: BaseScheduler) -> None:
        """Run a pass now and then every interval_s on scheduler (apscheduler 3.x)."""
        self._scheduler = scheduler
        scheduler.add_job(
            self._run,
            "interval",
            seconds=self.interval_s,
            id=JOB_ID,
            name="podbw sampler",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            # A pass later than one interval is stale: skip it, the next one is due anyway.
            misfire_grace_time=max(1, int(self.interval_s)),
            next_run_time=datetime.now(timezone.utc),
        )

    def stop(self) -> None:
        """Remove the job and wait for a pass in flight, so the pool can be closed after."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            try:
                scheduler.remove_job(JOB_ID)
            except JobLookupError:
                pass
        with self._pass_lock:
            pass
