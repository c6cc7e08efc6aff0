"""The 1 s sampler: reads link and qdisc counters of every pod and publishes one Snapshot.

Scrapes never touch netlink; they render `Sampler.latest`. This pass is the hot path (hundreds
of namespaces every second), so it does plain dict/tuple work on the raw reader's records and
nothing more (bench/collect.py measures it):

- The host namespace is dumped once per pass. A veth's byte and packet counters are its peer's
  mirrored (the kernel reports one side's transmit as the other side's receive), so a pod whose
  interfaces are all veths with host-side peers needs no link dump of its own: its receive and
  transmit counters are read from the peers. Its namespace is entered only when the pod sent
  something (a peer received) and podbw's egress qdisc sits in the pod, for that qdisc's
  counters (one qdisc dump). Idle pods and pods that only receive, such as the broadcasts a
  bridge floods to every port (on a 250-pod bridge, some pod's ARP or IPv6 multicast reaches
  all of them nearly every second), are not entered at all.
- What only the pod's side counts (drops, errors, an interface added in the pod without a veth
  to the host) is picked up by a periodic read of its links that every pod gets at least every
  FULL_READ_MAX_AGE_S, spread over passes; its qdiscs then only when those links show it may
  have transmitted meanwhile.
- A pod whose interfaces are not (yet) confirmed as mirrored veths is read in full every pass:
  one round trip into its namespace for links and qdiscs together.
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
from agent.model.kernel import Link, Qdisc
from agent.model.snapshot import DirectionSample, PodSample, Snapshot
from agent.model.status import PodShapingStatus
from agent.netlink.errors import NetlinkError

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from agent.netlink.socket import NetlinkSocket, NetlinkSocketPool

log = logging.getLogger(__name__)

JOB_ID = "podbw-sampler"
LOOPBACK = "lo"
_INGRESS, _EGRESS = Direction.INGRESS, Direction.EGRESS
# A namespace that vanished between discovery and the dump is routine churn, not an agent fault.
_NAMESPACE_ERRORS = (NetlinkError, OSError)
FULL_READ_MAX_AGE_S = 30.0
"""Every pod's links are read at least this often (a common scrape interval): the drop and error
counters only its own side keeps are at most this stale. These reads are the costliest per-pod
part of a pass (a round trip into the namespace), hence not more often. Each pod's next read is
due after 0.5..1x this, at random, so pods first read together do not all come due together."""


def _is_podbw_root(q: Qdisc) -> bool:
    return q.handle == PODBW_ROOT_HANDLE and q.parent == TC_H_ROOT


class _Namespace:
    """One namespace's dump, indexed for the lookups a pass needs."""

    __slots__ = ("link_by_ifindex", "podbw_root_by_name")

    def __init__(self, links: Sequence[Link], qdiscs: Sequence[Qdisc]) -> None:
        self.link_by_ifindex = by_ifindex = {link.ifindex: link for link in links}
        self.podbw_root_by_name: dict[str, Qdisc] = {}
        for q in qdiscs:
            if _is_podbw_root(q):
                link = by_ifindex.get(q.ifindex)
                if link is not None:
                    self.podbw_root_by_name[link.name] = q

    def podbw_root(self, device: str) -> Qdisc | None:
        return self.podbw_root_by_name.get(device)


def _podbw_root_in(
    links: Sequence[Link], qdiscs: Sequence[Qdisc], device: str
) -> Qdisc | None:
    """podbw's root qdisc on device, in a pod's few links and qdiscs (no index worth building)."""
    for link in links:
        if link.name == device:
            ifindex = link.ifindex
            for q in qdiscs:
                if q.ifindex == ifindex and _is_podbw_root(q):
                    return q
            return None
    return None


def _same_items(a: Sequence[object], b: Sequence[object]) -> bool:
    """Element-wise identity (the netlink reader hands out the same object for unchanged data)."""
    return len(a) == len(b) and all(map(is_, a, b))


_EMPTY_NAMESPACE = _Namespace((), ())


def _any_on_host(statuses: Mapping[str, PodShapingStatus]) -> bool:
    """Whether some limit sits on a host device (a host veth, an ifb): the host's qdiscs are
    dumped only then (its links always are)."""
    return any(d.device and not d.device_in_pod for s in statuses.values() for d in s.directions.values())


class _PeakWindow:
    """Max over a trailing time window of values >= 0 in O(1) amortised: a deque of decreasing
    positive values (a zero changes no maximum, so an idle pod's zeros are not stored)."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: deque[tuple[float, float]] = deque()

    def add(self, at_s: float, value: float, window_s: float) -> float:
        entries = self._entries
        if value > 0.0:
            while entries and entries[-1][1] <= value:
                entries.pop()
            entries.append((at_s, value))
        oldest_s = at_s - window_s
        while entries and entries[0][0] < oldest_s:
            entries.popleft()
        return entries[0][1] if entries else 0.0


DEFAULT_MAX_INTERFACES = 8
"""Interfaces exported per pod: eth0 and a few secondary networks, never thousands."""

RECEIVED_MEANWHILE_MAX_PACKETS = 64
"""A pod's dump comes a few milliseconds after the host's: what its peer sent it meanwhile
(floods) may be in the pod's receive counters and not yet in the peer's transmit ones."""


def _host_peers(own: Sequence[Link], host: _Namespace, status: PodShapingStatus) -> tuple[Link, ...] | None:
    """The host-side peer of the pod's one interface, or None unless that interface is the veth
    the reconciler proved from the host side (status) and its peer mirrors it right now.

    What the pod's namespace says of its peers is the pod's to forge, so only the pair the host
    vouches for is mirrored; a pod with more interfaces is read in full. The counters confirm the
    pair too: the peer's receive is the pod's transmit, exactly, and its transmit the pod's
    receive, allowing for what arrived between the two dumps. A pod that sent something meanwhile
    fails the check and is read in full next pass. A pod with no interface yet (the runtime pins
    the namespace before CNI adds eth0) is read every pass, so eth0 shows up at once."""
    if len(own) != 1 or not status.host_ifindex:
        return None
    (link,) = own
    peer = host.link_by_ifindex.get(status.host_ifindex)
    if (
        peer is None
        or link.ifindex != status.pod_ifindex
        or link.kind != "veth"
        or peer.kind != "veth"
        or peer.name != status.host_interface
        or peer.peer_ifindex != link.ifindex
        or peer.rx_bytes != link.tx_bytes
        or peer.rx_packets != link.tx_packets
        or not 0 <= link.rx_packets - peer.tx_packets <= RECEIVED_MEANWHILE_MAX_PACKETS
        or link.rx_bytes < peer.tx_bytes
    ):
        return None
    return (peer,)


class _PodCounters:
    """What the previous pass saw for one pod: byte counters, the peak windows, the samples it
    produced (reused whole when nothing changed, as for most idle pods), and what it takes to
    publish the pod without reading it: its interfaces, the host-side peers they were
    confirmed against, and which of its limits sit on host devices."""

    __slots__ = (
        "at_s", "rx_bytes", "tx_bytes", "ingress_peak", "egress_peak",
        "sample", "ingress", "egress",
        "own", "status", "host_peers", "host_devices", "pod_devices", "full_read_due_s",
    )

    def __init__(self) -> None:
        self.at_s = 0.0
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.ingress_peak = _PeakWindow()
        self.egress_peak = _PeakWindow()
        self.sample: PodSample | None = None
        self.ingress: DirectionSample | None = None
        self.egress: DirectionSample | None = None
        self.own: tuple[Link, ...] = ()
        """The pod's interfaces but loopback, as last published."""
        self.status: PodShapingStatus | None = None
        """The shaping status of the last full read."""
        self.host_peers: tuple[Link, ...] | None = None
        """Set after a full read whose interfaces all mirror a host peer (in the order of own);
        None: read in full."""
        self.host_devices: tuple[str | None, str | None] = (None, None)
        """The host device of the ingress and the egress limit (None: in the pod, or none)."""
        self.pod_devices: tuple[str | None, str | None] = (None, None)
        """The pod's device of the ingress and the egress limit (None: on the host, or none)."""
        self.full_read_due_s = 0.0


def _first_interfaces(own: tuple[Link, ...], status: PodShapingStatus, count: int) -> tuple[Link, ...]:
    """The `count` interfaces of a pod that has more to export: its veth to the host first, then
    by ifindex (a pod can make thousands; each would add eight series)."""
    return tuple(sorted(own, key=lambda link: (link.ifindex != status.pod_ifindex, link.ifindex))[:count])


def _without_loopback(links: Sequence[Link]) -> tuple[Link, ...]:
    return tuple([link for link in links if link.name != LOOPBACK])


def _same_veth(peer: Link, now: Link | None) -> bool:
    """Whether a host link read now is still the veth `peer` was, paired with the same pod
    interface (its counters may have moved)."""
    return now is not None and now.peer_ifindex == peer.peer_ifindex and now.kind == peer.kind


def _mirrored(link: Link, peer: Link) -> Link:
    """The pod's link with its byte and packet counters read from its host peer: what one
    side sends the other receives, and the kernel reports it from one counter on both. The
    drop and error counters are the pod side's own, from its last read."""
    return link._replace(
        rx_bytes=peer.tx_bytes, rx_packets=peer.tx_packets, tx_bytes=peer.rx_bytes, tx_packets=peer.rx_packets
    )


def _pod_qdiscs_unchanged(
    counters: _PodCounters, status: PodShapingStatus, now: tuple[Link, ...]
) -> bool:
    """Whether podbw's qdiscs in the pod still read as at its last full read, going by its
    interfaces read now (loopback left out): it transmitted nothing since (each interface's
    transmit and drop counters stand) and none of those qdiscs held a backlog then (queued
    packets can be sent or dropped later)."""
    own = counters.own
    if len(now) != len(own):
        return False
    for was, link in zip(own, now):
        if (
            link.ifindex != was.ifindex
            or link.tx_packets != was.tx_packets
            or link.tx_bytes != was.tx_bytes
            or link.tx_dropped != was.tx_dropped
            or link.tx_errors != was.tx_errors
        ):
            return False
    for direction, d in status.directions.items():
        sample = counters.ingress if direction is _INGRESS else counters.egress
        if d.device_in_pod and sample is not None and sample.qdisc is not None and sample.qdisc.backlog_packets:
            return False
    return True


def _same_or_new(
    previous: DirectionSample | None, qdisc: Qdisc | None, rate: float, peak: float
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


class Sampler:
    """Samples all pods every interval_s and keeps the latest immutable Snapshot."""

    def __init__(
        self,
        pods: Callable[[], Sequence[Pod]],
        shaping: Callable[[], Mapping[str, PodShapingStatus]],
        pool: NetlinkSocketPool,
        health: HealthRecorder,
        interval_s: float = 1.0,
        peak_window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_interfaces: int = DEFAULT_MAX_INTERFACES,
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
        self.max_interfaces = max_interfaces
        """Interfaces exported per pod; the rest are counted in PodSample.links_omitted."""
        self._clock = clock
        self._counters: dict[str, _PodCounters] = {}
        self._latest: Snapshot | None = None
        # Held for a whole pass so stop() can wait for one in flight before the pool is closed.
        self._pass_lock = threading.Lock()
        self._scheduler: BaseScheduler | None = None
        self._host_failing = False
        self._namespace_reads = 0
        """Pod namespaces read in the pass in progress (for its debug line)."""

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
        self._namespace_reads = 0
        for pod in pods:
            status = statuses.get(pod.sandbox_id) or PodShapingStatus(pod.sandbox_id)
            counters = counters_by_pod.get(pod.sandbox_id)
            if counters is None:
                counters = counters_by_pod[pod.sandbox_id] = _PodCounters()
            elif (
                counters.host_peers is not None
                # A limit change may have replaced the pod's qdisc: read what is there now.
                and (counters.status is status or counters.status == status)
            ):
                if host_at_s >= counters.full_read_due_s:
                    sample = self._sample_read(pod, status, counters, host, periodic=True)
                else:
                    sample = self._sample_unread(pod, status, counters, host, host_at_s)
                    if sample is None:
                        sample = self._sample_read(pod, status, counters, host)
                if sample is not None:
                    samples.append(sample)
                continue
            sample = self._sample_read(pod, status, counters, host)
            if sample is not None:
                samples.append(sample)

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
            "sample pass done: %d pods (%d namespace reads) in %.1f ms",
            len(samples),
            self._namespace_reads,
            duration_s * 1000,
        )
        return snapshot

    def _dump_host(self, with_qdiscs: bool) -> _Namespace:
        try:
            sock = self._pool.get(None)
            host = _Namespace(*sock.links_and_qdiscs()) if with_qdiscs else _Namespace(sock.links(), ())
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

    def _sample_read(
        self,
        pod: Pod,
        status: PodShapingStatus,
        counters: _PodCounters,
        host: _Namespace,
        periodic: bool = False,
    ) -> PodSample | None:
        """The pod's sample from a read of its namespace; None when it is gone.

        periodic: the read a pod with confirmed host peers gets at least every
        FULL_READ_MAX_AGE_S, for the counters only its side keeps. Its qdiscs are read only
        when its links show it transmitted (or dropped) since the last pass, or one of those
        qdiscs held a backlog (_pod_qdiscs_unchanged)."""
        needs_pod_qdiscs = any(d.device and d.device_in_pod for d in status.directions.values())
        qdiscs: Sequence[Qdisc] | None
        own: tuple[Link, ...] | None = None
        try:
            sock = self._pool.get(pod.netns_path)
            if not needs_pod_qdiscs:
                links, qdiscs = sock.links(), ()
            elif periodic:
                links = sock.links()
                own = _without_loopback(links)
                qdiscs = None if _pod_qdiscs_unchanged(counters, status, own) else sock.qdiscs()
            else:
                links, qdiscs = sock.links_and_qdiscs()
        except _NAMESPACE_ERRORS as exc:
            log.debug("pod %s left out of this sample: %s", pod.display, exc)
            self._pool.forget(pod.netns_path)
            return None
        self._namespace_reads += 1
        at_s = self._clock()
        if own is None:
            own = _without_loopback(links)
        qdisc_of: dict[Direction, Qdisc | None] = {}
        host_devices: dict[Direction, str] = {}
        pod_devices: dict[Direction, str] = {}
        for direction, d in status.directions.items():
            if not d.device:
                continue
            if d.device_in_pod:
                pod_devices[direction] = d.device
                if qdiscs is None:
                    previous = counters.ingress if direction is _INGRESS else counters.egress
                    qdisc_of[direction] = previous.qdisc if previous is not None else None
                else:
                    qdisc_of[direction] = _podbw_root_in(links, qdiscs, d.device)
            else:
                host_devices[direction] = d.device
                qdisc_of[direction] = host.podbw_root(d.device)
        # (counters.own: the interfaces last published; none before the first read.)
        same_interfaces = [link.ifindex for link in counters.own] == [link.ifindex for link in own]
        counters.status = status
        counters.host_peers = _host_peers(own, host, status)
        counters.host_devices = (host_devices.get(_INGRESS), host_devices.get(_EGRESS))
        counters.pod_devices = (pod_devices.get(_INGRESS), pod_devices.get(_EGRESS))
        counters.full_read_due_s = at_s + FULL_READ_MAX_AGE_S * random.uniform(0.5, 1.0)
        return self._publish(
            pod, status, counters, own, same_interfaces, qdisc_of.get(_INGRESS), qdisc_of.get(_EGRESS), at_s
        )

    def _sample_unread(
        self, pod: Pod, status: PodShapingStatus, counters: _PodCounters, host: _Namespace, at_s: float
    ) -> PodSample | None:
        """The pod's sample from its previous read and the host's dump now, without reading its
        links (see the module doc); None when it must be read in full.

        A veth's counters mirror its peer's (_mirrored). What leaves the pod's own qdiscs
        reaches a peer or is counted as dropped on the pod's side, which the periodic read
        looks at (_pod_qdiscs_unchanged): while the peers received nothing those qdiscs are
        not read either; once they did, they are (one dump, no links)."""
        by_ifindex = host.link_by_ifindex
        own = counters.own
        peers = counters.host_peers
        assert peers is not None
        sent = False
        if len(peers) == 1:  # nearly every pod: one eth0
            peer = peers[0]
            now = by_ifindex.get(peer.ifindex)
            if now is not peer:
                if not _same_veth(peer, now):
                    return None
                counters.host_peers = (now,)
                link = own[0]
                if now.rx_packets != link.tx_packets or now.rx_bytes != link.tx_bytes:
                    sent = True
                    own = (_mirrored(link, now),)
                elif now.tx_packets != link.rx_packets or now.tx_bytes != link.rx_bytes:
                    own = (_mirrored(link, now),)
        else:
            new_own, new_peers = list(own), list(peers)
            for i, peer in enumerate(peers):
                now = by_ifindex.get(peer.ifindex)
                if now is not peer:
                    if not _same_veth(peer, now):
                        return None
                    new_peers[i] = now
                    link = own[i]
                    if now.rx_packets != link.tx_packets or now.rx_bytes != link.tx_bytes:
                        sent = True
                    new_own[i] = _mirrored(link, now)
            counters.host_peers = tuple(new_peers)
            if not _same_items(own, new_own):
                own = tuple(new_own)
        ingress, egress = counters.ingress, counters.egress
        assert ingress is not None and egress is not None
        ingress_qdisc, egress_qdisc = ingress.qdisc, egress.qdisc
        (ingress_host, egress_host), (ingress_pod, egress_pod) = counters.host_devices, counters.pod_devices
        if sent and (ingress_pod or egress_pod):
            try:
                qdiscs = self._pool.get(pod.netns_path).qdiscs()
            except _NAMESPACE_ERRORS:
                return None  # the full read finds the same and says so
            self._namespace_reads += 1
            if ingress_pod:
                ingress_qdisc = _podbw_root_in(own, qdiscs, ingress_pod)
            if egress_pod:
                egress_qdisc = _podbw_root_in(own, qdiscs, egress_pod)
        return self._publish(
            pod,
            status,
            counters,
            own,
            True,
            host.podbw_root(ingress_host) if ingress_host else ingress_qdisc,
            host.podbw_root(egress_host) if egress_host else egress_qdisc,
            at_s,
        )

    def _publish(
        self,
        pod: Pod,
        status: PodShapingStatus,
        counters: _PodCounters,
        own: tuple[Link, ...],
        same_interfaces: bool,
        ingress_qdisc: Qdisc | None,
        egress_qdisc: Qdisc | None,
        at_s: float,
    ) -> PodSample:
        """The pod's sample from its interfaces and qdiscs at at_s; rates against the previous
        pass's counters when the interfaces are the same ones."""
        if len(own) == 1:  # nearly every pod: one eth0
            rx_bytes, tx_bytes = own[0].rx_bytes, own[0].tx_bytes
        else:
            rx_bytes = tx_bytes = 0
            for link in own:
                rx_bytes += link.rx_bytes
                tx_bytes += link.tx_bytes
        if same_interfaces and at_s > counters.at_s:
            elapsed_s = at_s - counters.at_s
            # A smaller counter means an interface was replaced: no meaningful rate this time.
            previous_rx, previous_tx = counters.rx_bytes, counters.tx_bytes
            ingress_rate = (rx_bytes - previous_rx) / elapsed_s if rx_bytes > previous_rx else 0.0
            egress_rate = (tx_bytes - previous_tx) / elapsed_s if tx_bytes > previous_tx else 0.0
        else:
            # First sample, or interfaces came or went: the sums are not comparable.
            ingress_rate = egress_rate = 0.0
        counters.at_s = at_s
        counters.rx_bytes = rx_bytes
        counters.tx_bytes = tx_bytes
        window_s = self.peak_window_s
        ingress_peak = counters.ingress_peak.add(at_s, ingress_rate, window_s)
        egress_peak = counters.egress_peak.add(at_s, egress_rate, window_s)

        # Reuse last pass's objects where nothing changed: an idle pod costs no allocations.
        ingress = _same_or_new(counters.ingress, ingress_qdisc, ingress_rate, ingress_peak)
        egress = _same_or_new(counters.egress, egress_qdisc, egress_rate, egress_peak)
        previous = counters.sample
        if (
            previous is not None
            and ingress is counters.ingress
            and egress is counters.egress
            and previous.pod is pod
            # Unshaped pods get a fresh default status each pass: equal is as good as same.
            and (previous.shaping is status or previous.shaping == status)
            and (own is counters.own or _same_items(counters.own, own))
        ):
            return previous
        counters.ingress, counters.egress, counters.own = ingress, egress, own
        exported = own if len(own) <= self.max_interfaces else _first_interfaces(own, status, self.max_interfaces)
        sample = counters.sample = PodSample(
            pod, status, exported, {_INGRESS: ingress, _EGRESS: egress}, len(own) - len(exported)
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
