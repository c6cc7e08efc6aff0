"""The 1 s sampler: reads link and qdisc counters of every pod and publishes one Snapshot.

Scrapes never touch netlink; they render `Sampler.latest`. This pass is the hot path (hundreds
of namespaces every second), so it does plain dict/tuple work on the raw reader's records and
nothing more (bench/collect.py measures it):

- The host namespace is dumped once per pass. A veth's byte and packet counters are its peer's
  mirrored (the kernel reports one side's transmit as the other side's receive), so when every
  interface of a pod is a veth whose host-side peer received nothing since the last pass, the
  pod sent nothing and its egress qdisc passed nothing: its previous dump is still true but for
  what it received, which is its peer's transmit counters, and its namespace is not entered.
  That covers idle pods and pods that only receive, such as the broadcasts a bridge floods to
  every port (on a 250-pod bridge, some pod's ARP or IPv6 multicast reaches all of them nearly
  every second). What only the pod's side counts (drops, errors, an interface added in the pod
  without a veth to the host) is picked up by a full read that every pod gets at least every
  FULL_READ_MAX_AGE_S, spread over passes.
- A pod read in full costs one round trip into its namespace (links and qdiscs together).
- An idle pod's sample from the previous pass is reused rather than rebuilt.
"""

from __future__ import annotations

import logging
import random
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
FULL_READ_MAX_AGE_S = 15.0
"""A pod whose host-side peers received nothing is still read in full at least this often (one
default Prometheus scrape interval): counters only its own side keeps are at most this stale.
Each pod's next full read is due after 0.5..1x this, at random, so pods first read together do
not all come due in the same pass."""


class _Namespace:
    """One namespace's dump, indexed for the lookups a pass needs."""

    __slots__ = ("link_by_ifindex", "ifindex_by_name", "podbw_root_by_ifindex")

    def __init__(self, links: Sequence[LinkStats], qdiscs: Sequence[QdiscStats]) -> None:
        self.link_by_ifindex = {link.ifindex: link for link in links}
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


def _any_on_host(statuses: Mapping[str, PodShapingStatus]) -> bool:
    """Whether some limit sits on a host device (a host veth, an ifb): the host's qdiscs are
    dumped only then (its links always are)."""
    return any(d.device and not d.device_in_pod for s in statuses.values() for d in s.directions.values())


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


RECEIVED_MEANWHILE_MAX_PACKETS = 64
"""A pod's dump comes a few milliseconds after the host's: what its peer sent it meanwhile
(floods) may be in the pod's receive counters and not yet in the peer's transmit ones."""


def _host_peers(own: Sequence[LinkStats], host: _Namespace) -> tuple[LinkStats, ...] | None:
    """The host-side peer of each of the pod's interfaces, or None unless every one of them is
    a veth whose peer is in the host and mirrors it right now.

    An ifindex is only unique within a namespace, so the pair is confirmed both ways (each names
    the other as its peer) and by the counters: the peer's receive is the pod's transmit,
    exactly, and its transmit the pod's receive, allowing for what arrived between the two
    dumps. A pod that sent something meanwhile fails the check and is read in full next pass. A pod with no interface yet (the runtime pins
    the namespace before CNI adds eth0) is read every pass, so eth0 shows up at once."""
    if not own:
        return None
    peers = []
    by_ifindex = host.link_by_ifindex
    for link in own:
        if link.kind != "veth" or link.link_netnsid < 0:
            return None
        peer = by_ifindex.get(link.link_ifindex)
        if (
            peer is None
            or peer.link_ifindex != link.ifindex
            or peer.kind != "veth"
            or peer.rx_bytes != link.tx_bytes
            or peer.rx_packets != link.tx_packets
            or not 0 <= link.rx_packets - peer.tx_packets <= RECEIVED_MEANWHILE_MAX_PACKETS
            or link.rx_bytes < peer.tx_bytes
        ):
            return None
        peers.append(peer)
    return tuple(peers)


def _links_if_only_received(
    links: Sequence[LinkStats], peers: tuple[LinkStats, ...], host: _Namespace
) -> tuple[list[LinkStats], tuple[LinkStats, ...]] | None:
    """The pod's links as they are now, from its previous dump and its peers' counters now,
    with the peers now; None when some peer received anything (the pod sent something) or
    changed. `peers` are in the order of the non-loopback `links`."""
    by_ifindex = host.link_by_ifindex
    out: list[LinkStats] = []
    now_peers: list[LinkStats] = []
    peer_iter = iter(peers)
    for link in links:
        if link.name == LOOPBACK:
            out.append(link)
            continue
        peer = next(peer_iter)
        now = by_ifindex.get(peer.ifindex)
        if now is None:
            return None
        if now is not peer:
            if (
                now.rx_bytes != peer.rx_bytes
                or now.rx_packets != peer.rx_packets
                or now.link_ifindex != peer.link_ifindex
                or now.kind != peer.kind
            ):
                return None
        if now.tx_packets != link.rx_packets or now.tx_bytes != link.rx_bytes:
            # What the peer sent, the pod received: the same counter, read from the host. (It
            # is at least what the pod's last dump showed: that dump came after the peer's.)
            # LinkStats' fields: 5 identifying ones, rx_bytes, rx_packets, then the rest.
            # (tuple.__new__: NamedTuple._replace costs several times as much, per pod per pass.)
            link = tuple.__new__(LinkStats, (*link[:5], now.tx_bytes, now.tx_packets, *link[7:]))
        out.append(link)
        now_peers.append(now)
    return out, tuple(now_peers)


class _PodCounters:
    """What the previous pass saw for one pod: byte counters, the peak windows, the samples it
    produced (reused whole when nothing changed, as for most idle pods), and the pod's own dump
    with the host-side peers it was confirmed against (to skip reading an unchanged pod)."""

    __slots__ = (
        "at_s", "ifindexes", "rx_bytes", "tx_bytes", "ingress_peak", "egress_peak",
        "sample", "ingress", "egress",
        "links", "qdiscs", "with_qdiscs", "status", "host_peers", "full_read_due_s",
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
        self.links: list[LinkStats] = []
        self.qdiscs: Sequence[QdiscStats] = ()
        self.with_qdiscs = False
        self.status: PodShapingStatus | None = None
        self.host_peers: tuple[LinkStats, ...] | None = None
        """Set after a full read whose interfaces all mirror a host peer; None: read in full."""
        self.full_read_due_s = 0.0

    def links_without_reading(
        self, status: PodShapingStatus, needs_pod_qdiscs: bool, host: _Namespace, at_s: float
    ) -> list[LinkStats] | None:
        """The pod's links now, when they follow from its previous dump and the host's (see
        _links_if_only_received); None when its namespace has to be read."""
        peers = self.host_peers
        if (
            peers is None
            or at_s >= self.full_read_due_s
            or (needs_pod_qdiscs and not self.with_qdiscs)
            # A limit change may have replaced the pod's qdisc: read what is there now.
            or not (self.status is status or self.status == status)
        ):
            return None
        found = _links_if_only_received(self.links, peers, host)
        if found is None:
            return None
        self.links, self.host_peers = found
        return self.links


def _same_or_new(
    previous: DirectionSample | None, qdisc: QdiscStats | None, rate: float, peak: float
) -> DirectionSample:
    """`previous` when it already says this, else a new DirectionSample."""
    if (
        previous is not None
        and previous.qdisc is qdisc
        and previous.throughput_bytes_per_s == rate
        and previous.peak_bytes_per_s == peak
    ):
        return previous
    return DirectionSample(qdisc, rate, peak)


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

        # The host first: its veths tell which pods' namespaces need reading at all.
        host = self._dump_host(_any_on_host(statuses)) if pods else _EMPTY_NAMESPACE
        host_at_s = clock()
        counters_by_pod = self._counters
        samples: list[PodSample] = []
        full_reads = 0
        for pod in pods:
            status = statuses.get(pod.sandbox_id) or PodShapingStatus(pod.sandbox_id)
            needs_pod_qdiscs = False
            for d in status.directions.values():
                if d.device and d.device_in_pod:
                    needs_pod_qdiscs = True
            counters = counters_by_pod.get(pod.sandbox_id)
            if counters is None:
                counters = counters_by_pod[pod.sandbox_id] = _PodCounters()
            else:
                links = counters.links_without_reading(status, needs_pod_qdiscs, host, host_at_s)
                if links is not None:
                    samples.append(self._pod_sample(pod, status, counters, links, counters.qdiscs, host, host_at_s))
                    continue
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
            full_reads += 1
            sample = self._pod_sample(pod, status, counters, links, qdiscs, host, at_s)
            samples.append(sample)
            counters.links, counters.qdiscs, counters.with_qdiscs = links, qdiscs, needs_pod_qdiscs
            counters.status = status
            counters.host_peers = _host_peers(sample.links, host)
            counters.full_read_due_s = at_s + FULL_READ_MAX_AGE_S * random.uniform(0.5, 1.0)

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
        log.debug(
            "sample pass done: %d pods (%d read in full) in %.1f ms", len(samples), full_reads, duration_s * 1000
        )
        return snapshot

    def _dump_host(self, with_qdiscs: bool) -> _Namespace:
        try:
            sock = self._pool.get(None)
            host = _Namespace(*_links_and_qdiscs(sock)) if with_qdiscs else _Namespace(sock.links(), ())
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
        counters: _PodCounters,
        links: Sequence[LinkStats],
        qdiscs: Sequence[QdiscStats],
        host: _Namespace,
        at_s: float,
    ) -> PodSample:
        own = [link for link in links if link.name != LOOPBACK]
        rx_bytes = tx_bytes = 0
        for link in own:
            rx_bytes += link.rx_bytes
            tx_bytes += link.tx_bytes
        ifindexes = tuple([link.ifindex for link in own])

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
                qdisc = host.podbw_root(d.device)
            if direction is _INGRESS:
                ingress_qdisc = qdisc
            else:
                egress_qdisc = qdisc

        # Reuse last pass's objects where nothing changed: an idle pod costs no allocations.
        ingress = _same_or_new(counters.ingress, ingress_qdisc, ingress_rate, ingress_peak)
        egress = _same_or_new(counters.egress, egress_qdisc, egress_rate, egress_peak)
        changed = ingress is not counters.ingress or egress is not counters.egress
        counters.ingress, counters.egress = ingress, egress
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
