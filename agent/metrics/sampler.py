"""The 1 s sampler: reads link and qdisc counters of every pod and publishes one Snapshot.

Scrapes never touch netlink; they render `Sampler.latest`. This pass is the hot path (hundreds
of namespaces every second), so it does plain dict/tuple work on the raw reader's records and
nothing more.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
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

    from agent.netlink.stats_socket import StatsSocketPool

log = logging.getLogger(__name__)

JOB_ID = "podbw-sampler"
LOOPBACK = "lo"
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
    """What the previous pass saw for one pod: byte counters and the peak windows."""

    __slots__ = ("at_s", "ifindexes", "rx_bytes", "tx_bytes", "ingress_peak", "egress_peak")

    def __init__(self) -> None:
        self.at_s = 0.0
        self.ifindexes: tuple[int, ...] | None = None
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.ingress_peak = _PeakWindow()
        self.egress_peak = _PeakWindow()


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
        """The newest Snapshot (None before the first pass); replaced whole, never mutated."""
        return self._latest

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
                links = sock.links()
                qdiscs = sock.qdiscs() if needs_pod_qdiscs else ()
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
        return snapshot

    def _dump_host(self) -> _Namespace:
        try:
            sock = self._pool.get(None)
            host = _Namespace(sock.links(), sock.qdiscs())
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
        own = tuple(link for link in links if link.name != LOOPBACK)
        rx_bytes = tx_bytes = 0
        for link in own:
            rx_bytes += link.rx_bytes
            tx_bytes += link.tx_bytes
        ifindexes = tuple(link.ifindex for link in own)

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

        pod_ns: _Namespace | None = None
        ingress_qdisc = egress_qdisc = None
        for direction, d in status.directions.items():
            if not d.device:
                continue
            if d.device_in_pod:
                if pod_ns is None:
                    pod_ns = _Namespace(links, qdiscs)
                qdisc = pod_ns.podbw_root(d.device)
            else:
                qdisc = (host or _EMPTY_NAMESPACE).podbw_root(d.device)
            if direction == Direction.INGRESS:
                ingress_qdisc = qdisc
            else:
                egress_qdisc = qdisc

        return PodSample(
            pod=pod,
            shaping=status,
            links=own,
            directions={
                Direction.INGRESS: DirectionSample(ingress_qdisc, ingress_rate, ingress_peak),
                Direction.EGRESS: DirectionSample(egress_qdisc, egress_rate, egress_peak),
            },
        )

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
