"""Sampler: throughput from counter deltas, peak window, qdisc lookup, vanished namespaces."""

from __future__ import annotations

import pytest

from agent.metrics.sampler import FULL_READ_MAX_AGE_S, JOB_ID, Sampler
from agent.model.direction import Direction, ShapingState
from agent.model.handles import PODBW_ROOT_HANDLE, TC_H_ROOT
from agent.model.health import HealthRecorder
from agent.model.pod import Pod
from agent.model.kernel import Link, Qdisc
from agent.model.snapshot import Snapshot
from agent.model.status import DirectionStatus, PodShapingStatus
from agent.model.tbf_params import TbfParams
from agent.netlink.errors import Gone, NetlinkError

PARAMS = TbfParams(rate_bytes_per_s=1_250_000, burst_bytes=125_000, limit_bytes=156_250)


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


class FakeSocket:
    def __init__(self, links: list[Link] | None = None, qdiscs: list[Qdisc] | None = None):
        self.links_result = links or []
        self.qdiscs_result = qdiscs or []
        self.error: Exception | None = None
        self.link_calls = 0
        self.qdisc_calls = 0

    def links(self) -> list[Link]:
        self.link_calls += 1
        if self.error is not None:
            raise self.error
        return list(self.links_result)

    def qdiscs(self) -> list[Qdisc]:
        self.qdisc_calls += 1
        if self.error is not None:
            raise self.error
        return list(self.qdiscs_result)

    def links_and_qdiscs(self) -> tuple[list[Link], list[Qdisc]]:
        return self.links(), self.qdiscs()


class FakePool:
    def __init__(self) -> None:
        self.sockets: dict[str | None, FakeSocket] = {None: FakeSocket()}
        self.gone: set[str] = set()
        self.get_calls: list[str | None] = []
        self.forgotten: list[str] = []
        self.retained: list[set[str]] = []

    def get(self, netns_path: str | None) -> FakeSocket:
        self.get_calls.append(netns_path)
        if netns_path in self.gone:
            raise Gone(f"network namespace {netns_path} does not exist")
        return self.sockets[netns_path]

    def forget(self, netns_path: str) -> None:
        self.forgotten.append(netns_path)

    def retain(self, paths) -> None:
        self.retained.append(set(paths))

    def close_all(self) -> None:
        pass


def make_pod(name: str) -> Pod:
    return Pod(
        sandbox_id=f"sb-{name}",
        uid=f"uid-{name}",
        namespace="default",
        name=name,
        netns_path=f"/var/run/netns/{name}",
    )


def lo(rx: int = 0) -> Link:
    return Link(ifindex=1, name="lo", rx_bytes=rx, tx_bytes=rx)


def eth0(rx: int, tx: int, ifindex: int = 2) -> Link:
    return Link(ifindex=ifindex, name="eth0", peer_ifindex=7, peer_netnsid=0, kind="veth",
                     rx_bytes=rx, tx_bytes=tx)


def tbf(ifindex: int, handle: int = PODBW_ROOT_HANDLE, parent: int = TC_H_ROOT, **kw) -> Qdisc:
    return Qdisc(ifindex=ifindex, handle=handle, parent=parent, kind="tbf", **kw)


class Harness:
    def __init__(self, *names: str, peak_window_s: float = 60.0) -> None:
        self.pods = [make_pod(n) for n in names]
        self.statuses: dict[str, PodShapingStatus] = {}
        self.pool = FakePool()
        for pod in self.pods:
            self.pool.sockets[pod.netns_path] = FakeSocket([lo(), eth0(0, 0)])
        self.clock = FakeClock()
        self.health = HealthRecorder()
        self.sampler = Sampler(
            pods=lambda: self.pods,
            shaping=lambda: self.statuses,
            pool=self.pool,
            health=self.health,
            interval_s=1.0,
            peak_window_s=peak_window_s,
            clock=self.clock,
        )

    def socket(self, name: str) -> FakeSocket:
        return self.pool.sockets[f"/var/run/netns/{name}"]

    def set_counters(self, name: str, rx: int, tx: int, ifindex: int = 2) -> None:
        self.socket(name).links_result = [lo(rx=10**12), eth0(rx, tx, ifindex)]

    def sample_at(self, t_s: float) -> Snapshot:
        self.clock.now_s = t_s
        return self.sampler.sample_once()


def by_name(snapshot: Snapshot) -> dict:
    return {s.pod.name: s for s in snapshot.pods}


def rates(snapshot: Snapshot, name: str) -> tuple[float, float]:
    d = by_name(snapshot)[name].directions
    return d[Direction.INGRESS].throughput_bytes_per_s, d[Direction.EGRESS].throughput_bytes_per_s


def peaks(snapshot: Snapshot, name: str) -> tuple[float, float]:
    d = by_name(snapshot)[name].directions
    return d[Direction.INGRESS].peak_bytes_per_s, d[Direction.EGRESS].peak_bytes_per_s


def test_throughput_is_counter_delta_over_time_and_first_sample_is_zero() -> None:
    h = Harness("a")
    h.set_counters("a", rx=1_000, tx=500)
    first = h.sample_at(100.0)
    assert rates(first, "a") == (0.0, 0.0)

    h.set_counters("a", rx=5_000, tx=2_500)
    second = h.sample_at(102.0)
    # rx of the pod's own interface is traffic into the pod: ingress.
    assert rates(second, "a") == (2_000.0, 1_000.0)


def test_loopback_is_excluded_from_links_and_throughput() -> None:
    h = Harness("a")
    h.set_counters("a", rx=0, tx=0)
    h.sample_at(1.0)
    h.socket("a").links_result = [lo(rx=99_999_999), eth0(300, 600)]
    snap = h.sample_at(2.0)
    assert [link.name for link in by_name(snap)["a"].links] == ["eth0"]
    assert rates(snap, "a") == (300.0, 600.0)


def test_throughput_sums_all_non_loopback_interfaces() -> None:
    h = Harness("a")
    second = Link(ifindex=3, name="net1", rx_bytes=0, tx_bytes=0)
    h.socket("a").links_result = [lo(), eth0(0, 0), second]
    h.sample_at(1.0)
    h.socket("a").links_result = [lo(), eth0(100, 10), Link(3, "net1", rx_bytes=50, tx_bytes=5)]
    snap = h.sample_at(2.0)
    assert rates(snap, "a") == (150.0, 15.0)
    assert [link.name for link in by_name(snap)["a"].links] == ["eth0", "net1"]


def test_counter_going_backwards_gives_zero_then_recovers() -> None:
    h = Harness("a")
    h.set_counters("a", rx=10_000, tx=10_000)
    h.sample_at(1.0)
    h.set_counters("a", rx=100, tx=20_000)  # rx reset (interface replaced), tx moved on
    snap = h.sample_at(2.0)
    assert rates(snap, "a") == (0.0, 10_000.0)
    h.set_counters("a", rx=600, tx=20_000)
    snap = h.sample_at(3.0)
    assert rates(snap, "a") == (500.0, 0.0)


def test_replaced_interface_gives_zero_not_an_absurd_rate() -> None:
    h = Harness("a")
    h.set_counters("a", rx=0, tx=0, ifindex=2)
    h.sample_at(1.0)
    # A new eth0 whose counters are far higher: the sums are not comparable.
    h.set_counters("a", rx=10**12, tx=10**12, ifindex=5)
    snap = h.sample_at(2.0)
    assert rates(snap, "a") == (0.0, 0.0)
    h.set_counters("a", rx=10**12 + 1_000, tx=10**12, ifindex=5)
    assert rates(h.sample_at(3.0), "a") == (1_000.0, 0.0)


def test_peak_is_max_over_trailing_window_and_expires() -> None:
    h = Harness("a", peak_window_s=10.0)
    rx = 0
    h.set_counters("a", rx=rx, tx=0)
    h.sample_at(0.0)
    # Second 1: a burst of 9000 B/s, then 100 B/s for a while.
    for t_s, delta in [(1.0, 9_000), (2.0, 100), (3.0, 100)]:
        rx += delta
        h.set_counters("a", rx=rx, tx=0)
        snap = h.sample_at(t_s)
    assert rates(snap, "a") == (100.0, 0.0)
    assert peaks(snap, "a") == (9_000.0, 0.0)

    rx += 100
    h.set_counters("a", rx=rx, tx=0)
    snap = h.sample_at(11.0)  # burst at t=1 is exactly 10 s old: still inside the window
    assert peaks(snap, "a")[0] == 9_000.0
    rx += 100
    h.set_counters("a", rx=rx, tx=0)
    snap = h.sample_at(12.0)  # now older than the window
    # The burst is now older than the window; the rest (100 B/s at t=2, 3 and 12, 12.5 B/s at
    # t=11 after 100 B over 8 s) remains.
    assert rates(snap, "a") == (100.0, 0.0)
    assert peaks(snap, "a")[0] == 100.0


def test_peak_never_below_current_throughput() -> None:
    h = Harness("a", peak_window_s=5.0)
    h.set_counters("a", rx=0, tx=0)
    h.sample_at(0.0)
    h.set_counters("a", rx=0, tx=4_000)
    snap = h.sample_at(1.0)
    assert peaks(snap, "a") == (0.0, 4_000.0)
    h.set_counters("a", rx=0, tx=12_000)
    snap = h.sample_at(2.0)
    assert peaks(snap, "a") == (0.0, 8_000.0)


def test_vanished_namespace_left_out_of_this_snapshot_only() -> None:
    h = Harness("a", "b", "c")
    for name in "abc":
        h.set_counters(name, rx=0, tx=0)
    h.sample_at(1.0)

    h.pool.gone.add("/var/run/netns/b")
    h.socket("c").error = NetlinkError("dump failed", errno=19)
    for name in "abc":
        h.set_counters(name, rx=1_000, tx=1_000)
    snap = h.sample_at(2.0)
    assert list(by_name(snap)) == ["a"]
    assert rates(snap, "a") == (1_000.0, 1_000.0)
    assert h.pool.forgotten == ["/var/run/netns/b", "/var/run/netns/c"]

    # Back again: the namespaces are sampled, and their rate spans both intervals.
    h.pool.gone.clear()
    h.socket("c").error = None
    for name in "abc":
        h.set_counters(name, rx=3_000, tx=3_000)
    snap = h.sample_at(3.0)
    assert list(by_name(snap)) == ["a", "b", "c"]
    assert rates(snap, "a") == (2_000.0, 2_000.0)
    assert rates(snap, "b") == (1_500.0, 1_500.0)


def test_pod_that_left_discovery_loses_its_state() -> None:
    h = Harness("a", "b")
    h.set_counters("b", rx=0, tx=0)
    h.sample_at(1.0)
    pod_b = h.pods.pop()
    snap = h.sample_at(2.0)
    assert list(by_name(snap)) == ["a"]
    h.pods.append(pod_b)
    h.set_counters("b", rx=50_000, tx=50_000)
    snap = h.sample_at(3.0)
    # A returning pod starts afresh: no rate across its absence.
    assert rates(snap, "b") == (0.0, 0.0)


def test_retain_is_called_with_current_namespaces_every_pass() -> None:
    h = Harness("a", "b")
    h.sample_at(1.0)
    h.pods.pop()
    h.sample_at(2.0)
    assert h.pool.retained == [
        {"/var/run/netns/a", "/var/run/netns/b"},
        {"/var/run/netns/a"},
    ]


def shaped_status(pod: Pod, host: str = "veth-a", host_ifindex: int = 0) -> PodShapingStatus:
    return PodShapingStatus(
        sandbox_id=pod.sandbox_id,
        host_interface=host,
        pod_ifindex=2,
        directions={
            Direction.INGRESS: DirectionStatus(ShapingState.APPLIED, PARAMS, host, False),
            Direction.EGRESS: DirectionStatus(ShapingState.APPLIED, PARAMS, "eth0", True),
        },
        host_ifindex=host_ifindex,
    )


def test_enforcing_qdisc_found_on_host_and_pod_devices() -> None:
    h = Harness("a")
    pod = h.pods[0]
    h.statuses[pod.sandbox_id] = shaped_status(pod)
    host = h.pool.sockets[None]
    host.links_result = [lo(), Link(7, "veth-a"), Link(8, "veth-other")]
    host_tbf = tbf(7, bytes=111, drops=3, backlog_bytes=1500, backlog_packets=1)
    host.qdiscs_result = [
        tbf(8, bytes=999),  # another pod's device
        Qdisc(ifindex=7, handle=0xFFFF0000, parent=0xFFFFFFF1, kind="ingress"),
        host_tbf,
    ]
    pod_tbf = tbf(2, bytes=222, overlimits=4)
    h.socket("a").qdiscs_result = [
        Qdisc(ifindex=1, handle=0, parent=TC_H_ROOT, kind="noqueue"),
        Qdisc(ifindex=2, handle=0x1, parent=PODBW_ROOT_HANDLE + 1, kind="bfifo"),  # child
        pod_tbf,
    ]
    snap = h.sample_at(1.0)
    directions = by_name(snap)["a"].directions
    assert directions[Direction.INGRESS].qdisc == host_tbf
    assert directions[Direction.EGRESS].qdisc == pod_tbf
    assert by_name(snap)["a"].shaping == h.statuses[pod.sandbox_id]


def test_foreign_or_missing_qdisc_is_not_reported() -> None:
    h = Harness("a")
    pod = h.pods[0]
    h.statuses[pod.sandbox_id] = shaped_status(pod)
    h.pool.sockets[None].links_result = [Link(7, "veth-a")]
    h.pool.sockets[None].qdiscs_result = [tbf(7, handle=0x10000)]  # someone else's 1:
    h.socket("a").qdiscs_result = [tbf(2, parent=0x10001)]  # ours, but not at the root
    snap = h.sample_at(1.0)
    directions = by_name(snap)["a"].directions
    assert directions[Direction.INGRESS].qdisc is None
    assert directions[Direction.EGRESS].qdisc is None


def test_host_links_dumped_once_per_pass_and_host_qdiscs_only_when_needed() -> None:
    h = Harness("a", "b")
    h.sample_at(1.0)
    host = h.pool.sockets[None]
    assert h.pool.get_calls.count(None) == 1 and host.link_calls == 1
    assert host.qdisc_calls == 0  # nothing shaped on host devices
    assert h.socket("a").qdisc_calls == 0  # nor in the pods

    for pod in h.pods:
        h.statuses[pod.sandbox_id] = shaped_status(pod)
    h.pool.get_calls.clear()
    h.sample_at(2.0)
    assert h.pool.get_calls.count(None) == 1
    assert host.link_calls == 2 and host.qdisc_calls == 1
    assert h.socket("a").qdisc_calls == 1


def test_host_namespace_failure_keeps_pods_sampled() -> None:
    h = Harness("a")
    h.statuses[h.pods[0].sandbox_id] = shaped_status(h.pods[0])
    h.pool.sockets[None].error = NetlinkError("host dump failed")
    h.socket("a").qdiscs_result = [tbf(2)]
    snap = h.sample_at(1.0)
    directions = by_name(snap)["a"].directions
    assert directions[Direction.INGRESS].qdisc is None
    assert directions[Direction.EGRESS].qdisc == tbf(2)


def test_unshaped_pod_gets_default_status_and_both_directions() -> None:
    h = Harness("a")
    snap = h.sample_at(1.0)
    sample = by_name(snap)["a"]
    assert sample.shaping == PodShapingStatus("sb-a")
    assert set(sample.directions) == {Direction.INGRESS, Direction.EGRESS}
    assert all(d.qdisc is None for d in sample.directions.values())


def test_latest_snapshot_and_health_are_published() -> None:
    h = Harness("a")
    assert h.sampler.latest is None
    first = h.sample_at(5.0)
    assert h.sampler.latest is first
    second = h.sample_at(6.0)
    assert h.sampler.latest is second and second is not first
    assert second.interval_s == 1.0
    assert second.taken_at_monotonic_s == 6.0
    health = h.health.data()
    assert health.sample_duration.count == 2
    assert health.last_sample_monotonic_s == 6.0


class FakeScheduler:
    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}

    def add_job(self, func, trigger, **kwargs) -> None:
        self.jobs[kwargs["id"]] = {"func": func, "trigger": trigger, **kwargs}

    def remove_job(self, job_id: str) -> None:
        del self.jobs[job_id]


def test_start_adds_a_single_instance_coalescing_interval_job_and_stop_removes_it() -> None:
    h = Harness("a")
    scheduler = FakeScheduler()
    h.sampler.start(scheduler)  # type: ignore[arg-type]
    job = scheduler.jobs[JOB_ID]
    assert job["trigger"] == "interval"
    assert job["seconds"] == 1.0
    assert job["max_instances"] == 1
    assert job["coalesce"] is True
    assert job["misfire_grace_time"] >= 1
    job["func"]()  # the job body runs one pass
    assert h.sampler.latest is not None
    h.sampler.stop()
    assert scheduler.jobs == {}
    h.sampler.stop()  # idempotent


def test_job_body_survives_an_unexpected_error(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness("a")
    h.socket("a").error = RuntimeError("bug")
    scheduler = FakeScheduler()
    h.sampler.start(scheduler)  # type: ignore[arg-type]
    scheduler.jobs[JOB_ID]["func"]()
    assert "sample pass failed" in caplog.text


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="interval"):
        Sampler(lambda: [], lambda: {}, FakePool(), HealthRecorder(), interval_s=0)  # type: ignore[arg-type]


# ---- pods whose host-side veth peers did not change are not read again --------------------


def host_peer(ifindex: int, peer_ifindex: int, rx: int, tx: int, packets: int = 0) -> Link:
    """A host veth mirroring a pod's eth0: its receive is the pod's transmit."""
    return Link(ifindex=ifindex, name=f"veth{ifindex}", peer_ifindex=peer_ifindex, peer_netnsid=3,
                     kind="veth", rx_bytes=tx, tx_bytes=rx, rx_packets=packets, tx_packets=packets)


def pod_eth0(rx: int, tx: int, peer_ifindex: int = 7, packets: int = 0) -> Link:
    return Link(ifindex=2, name="eth0", peer_ifindex=peer_ifindex, peer_netnsid=0, kind="veth",
                     rx_bytes=rx, tx_bytes=tx, rx_packets=packets, tx_packets=packets)


class MirroredHarness(Harness):
    """Pod `a`'s eth0 (ifindex 2) is the peer of host veth 7, as the reconciler found it."""

    def __init__(self) -> None:
        super().__init__("a")
        self.statuses["sb-a"] = PodShapingStatus("sb-a", host_interface="veth7", pod_ifindex=2, host_ifindex=7)
        self.move(0, 0)

    def move(self, rx: int, tx: int, packets: int = 0) -> None:
        self.socket("a").links_result = [lo(), pod_eth0(rx, tx, packets=packets)]
        self.pool.sockets[None].links_result = [lo(), host_peer(7, 2, rx, tx, packets)]

    @property
    def reads(self) -> int:
        return self.socket("a").link_calls


def test_idle_mirrored_pod_is_not_read_again_and_its_sample_is_reused() -> None:
    h = MirroredHarness()
    h.sample_at(1.0)
    first = h.sample_at(2.0)
    second = h.sample_at(3.0)
    assert h.reads == 1  # read at t=1, where eth0 mirrored its peer
    assert by_name(second)["a"] is by_name(first)["a"]
    assert rates(second, "a") == (0.0, 0.0)


def test_traffic_both_ways_is_read_from_the_host_peer_with_its_rate() -> None:
    h = MirroredHarness()
    h.sample_at(1.0)
    h.sample_at(2.0)
    h.move(rx=5_000, tx=1_000, packets=4)
    snap = h.sample_at(3.0)
    assert h.reads == 1 and h.socket("a").qdisc_calls == 0  # no limit in the pod: nothing to read
    assert rates(snap, "a") == (5_000.0, 1_000.0)
    (eth0,) = by_name(snap)["a"].links
    assert (eth0.rx_bytes, eth0.rx_packets, eth0.tx_bytes, eth0.tx_packets) == (5_000, 4, 1_000, 4)
    assert eth0 == pod_eth0(5_000, 1_000, packets=4)
    h.sample_at(4.0)
    assert h.reads == 1


def test_a_pod_that_sent_gets_its_own_qdiscs_read_but_not_its_links() -> None:
    h = MirroredHarness()
    h.statuses["sb-a"] = shaped_status(h.pods[0], "veth7", 7)  # egress on eth0 in the pod
    h.socket("a").qdiscs_result = [tbf(2, bytes=0)]
    h.sample_at(1.0)
    assert (h.reads, h.socket("a").qdisc_calls) == (1, 1)
    h.move(rx=0, tx=3_000, packets=2)
    h.socket("a").qdiscs_result = [tbf(2, bytes=3_000, packets=2)]
    snap = h.sample_at(2.0)
    assert (h.reads, h.socket("a").qdisc_calls) == (1, 2)
    assert by_name(snap)["a"].directions[Direction.EGRESS].qdisc == tbf(2, bytes=3_000, packets=2)
    assert rates(snap, "a") == (0.0, 3_000.0)
    # Receiving only: the pod's qdisc passed nothing, its last reading stands.
    h.move(rx=9_000, tx=3_000, packets=2)
    snap = h.sample_at(3.0)
    assert (h.reads, h.socket("a").qdisc_calls) == (1, 2)
    assert by_name(snap)["a"].directions[Direction.EGRESS].qdisc == tbf(2, bytes=3_000, packets=2)


def test_a_pod_gone_before_its_qdiscs_are_read_is_left_out_once() -> None:
    h = MirroredHarness()
    h.statuses["sb-a"] = shaped_status(h.pods[0], "veth7", 7)
    h.socket("a").qdiscs_result = [tbf(2)]
    h.sample_at(1.0)
    h.move(rx=0, tx=3_000, packets=2)
    h.socket("a").error = Gone("gone")
    snap = h.sample_at(2.0)
    assert "a" not in by_name(snap)
    assert h.pool.forgotten == ["/var/run/netns/a"]


def test_a_pod_that_only_received_is_not_read_and_its_receive_counters_follow_its_peer() -> None:
    h = MirroredHarness()
    h.socket("a").links_result = [lo(), pod_eth0(0, 0)._replace(rx_dropped=3)]
    h.sample_at(1.0)
    # A flood reaches the pod: its peer transmitted 4 packets, nothing came back.
    h.pool.sockets[None].links_result = [lo(), host_peer(7, 2, rx=6_000, tx=0)._replace(tx_packets=4)]
    snap = h.sample_at(2.0)
    assert h.reads == 1
    (eth0,) = by_name(snap)["a"].links
    assert (eth0.rx_bytes, eth0.rx_packets, eth0.tx_bytes, eth0.rx_dropped) == (6_000, 4, 0, 3)
    assert rates(snap, "a") == (6_000.0, 0.0)
    snap = h.sample_at(3.0)  # quiet again: the same sample, no read
    assert h.reads == 1 and rates(snap, "a") == (0.0, 0.0)


def test_a_pod_dump_that_saw_more_than_its_peer_is_still_confirmed() -> None:
    # Packets the peer sent between the host's dump and the pod's are in the pod's receive
    # counters only: the pair is still confirmed, and the pod's counters never go back.
    h = MirroredHarness()
    h.socket("a").links_result = [lo(), pod_eth0(rx=1_500, tx=0)._replace(rx_packets=1)]
    h.sample_at(1.0)
    h.pool.sockets[None].links_result = [lo(), host_peer(7, 2, rx=1_500, tx=0)._replace(tx_packets=1)]
    snap = h.sample_at(2.0)
    assert h.reads == 1
    (eth0,) = by_name(snap)["a"].links
    assert (eth0.rx_bytes, eth0.rx_packets) == (1_500, 1)


def test_pod_only_counters_are_read_within_the_full_read_age() -> None:
    h = MirroredHarness()
    h.sample_at(1.0)  # confirmed against the peer: the next full read is due in 7.5..15 s
    h.socket("a").links_result = [lo(), pod_eth0(0, 0)._replace(tx_dropped=9)]  # host sees nothing
    h.sample_at(1.0 + FULL_READ_MAX_AGE_S / 2 - 0.1)
    assert h.reads == 1
    snap = h.sample_at(1.0 + FULL_READ_MAX_AGE_S)
    assert h.reads == 2
    assert by_name(snap)["a"].links[0].tx_dropped == 9


@pytest.mark.parametrize(
    ("pod_link", "backlog_packets", "qdiscs_read"),
    [
        pytest.param(pod_eth0(0, 0), 0, False, id="nothing-sent-no-backlog"),
        pytest.param(pod_eth0(0, 0)._replace(tx_dropped=1), 0, True, id="pod-side-drop"),
        pytest.param(pod_eth0(0, 0)._replace(tx_errors=1), 0, True, id="pod-side-error"),
        pytest.param(pod_eth0(0, 0), 3, True, id="backlog-at-last-read"),
    ],
)
def test_the_periodic_read_rereads_the_pods_qdiscs_only_when_they_may_have_moved(
    pod_link: Link, backlog_packets: int, qdiscs_read: bool
) -> None:
    h = MirroredHarness()
    h.statuses["sb-a"] = shaped_status(h.pods[0], "veth7", 7)
    h.socket("a").qdiscs_result = [tbf(2, backlog_packets=backlog_packets)]
    h.sample_at(1.0)
    h.socket("a").links_result = [lo(), pod_link]
    h.socket("a").qdiscs_result = [tbf(2, drops=5)]
    snap = h.sample_at(1.0 + FULL_READ_MAX_AGE_S)
    assert h.reads == 2
    assert h.socket("a").qdisc_calls == (2 if qdiscs_read else 1)
    expected = tbf(2, drops=5) if qdiscs_read else tbf(2, backlog_packets=backlog_packets)
    assert by_name(snap)["a"].directions[Direction.EGRESS].qdisc == expected


def test_a_changed_shaping_status_makes_the_pod_read() -> None:
    h = MirroredHarness()
    h.sample_at(1.0)
    h.sample_at(2.0)
    h.statuses["sb-a"] = shaped_status(h.pods[0], "veth7", 7)  # egress now on eth0: the pod's qdiscs are needed
    h.socket("a").qdiscs_result = [tbf(2, bytes=77)]
    snap = h.sample_at(3.0)
    assert h.reads == 2 and h.socket("a").qdisc_calls == 1
    assert by_name(snap)["a"].directions[Direction.EGRESS].qdisc == tbf(2, bytes=77)
    h.statuses["sb-a"] = shaped_status(h.pods[0], "veth7", 7)  # equal, a new object (a resync): no read
    h.sample_at(4.0)
    assert h.reads == 2


@pytest.mark.parametrize(
    "host_links",
    [
        pytest.param([host_peer(7, 5, 0, 0)], id="peer-names-another-ifindex"),
        pytest.param([host_peer(7, 2, 0, 0)._replace(kind="dummy")], id="peer-not-a-veth"),
        pytest.param([host_peer(8, 2, 0, 0)], id="no-link-at-the-peer-ifindex"),
        pytest.param([host_peer(7, 2, 0, 1)], id="counters-not-mirrored"),
        pytest.param([], id="host-dump-failed"),
    ],
)
def test_pod_without_a_confirmed_host_peer_is_read_every_pass(host_links: list[Link]) -> None:
    h = MirroredHarness()
    h.pool.sockets[None].links_result = host_links
    if not host_links:
        h.pool.sockets[None].error = NetlinkError("host dump failed")
    for t in (1.0, 2.0, 3.0):
        h.sample_at(t)
    assert h.reads == 3


def test_pod_with_a_non_veth_interface_is_read_every_pass() -> None:
    h = MirroredHarness()
    macvlan = Link(ifindex=3, name="net1", kind="macvlan")
    h.socket("a").links_result = [lo(), pod_eth0(0, 0), macvlan]
    for t in (1.0, 2.0, 3.0):
        h.sample_at(t)
    assert h.reads == 3


def test_pod_without_interfaces_yet_is_read_every_pass() -> None:
    # The runtime pins the namespace before CNI adds eth0: the interface must show up at once.
    h = MirroredHarness()
    h.socket("a").links_result = [lo()]
    h.sample_at(1.0)
    h.sample_at(2.0)
    h.move(0, 0)  # CNI added eth0
    snap = h.sample_at(3.0)
    assert h.reads == 3
    assert [link.name for link in by_name(snap)["a"].links] == ["eth0"]


def test_replaced_host_peer_makes_the_pod_read() -> None:
    h = MirroredHarness()
    h.sample_at(1.0)
    h.sample_at(2.0)
    h.pool.sockets[None].links_result = [lo()]  # the veth pair is gone
    h.sample_at(3.0)
    assert h.reads == 2


@pytest.mark.parametrize(
    "status",
    [
        PodShapingStatus("sb-a"),  # the reconciler has not proven any pair yet
        PodShapingStatus("sb-a", host_interface="veth9", pod_ifindex=2, host_ifindex=9),  # another host veth
        PodShapingStatus("sb-a", host_interface="veth7", pod_ifindex=5, host_ifindex=7),  # another pod interface
    ],
)
def test_only_the_pair_proven_from_the_host_side_is_mirrored(status: PodShapingStatus) -> None:
    # eth0 names host veth 7 as its peer and the counters match, but that is the pod's claim.
    h = MirroredHarness()
    h.statuses["sb-a"] = status
    for t in (1.0, 2.0, 3.0):
        h.sample_at(t)
    assert h.reads == 3


@pytest.mark.parametrize(
    ("interfaces", "exported", "omitted"),
    [(1, 1, 0), (8, 8, 0), (9, 8, 1), (2000, 8, 1992)],
)
def test_interfaces_beyond_the_cap_are_counted_not_exported(interfaces: int, exported: int, omitted: int) -> None:
    h = Harness("a")
    h.statuses["sb-a"] = PodShapingStatus("sb-a", host_interface="veth7", pod_ifindex=5000, host_ifindex=7)
    # The proven veth has the highest ifindex: it is exported first all the same.
    links = [Link(ifindex=3 + i, name=f"x{i}", rx_bytes=1, tx_bytes=1) for i in range(interfaces - 1)]
    links.append(Link(ifindex=5000, name="eth0", kind="veth", rx_bytes=100, tx_bytes=100))
    h.socket("a").links_result = [lo(), *links]
    h.sample_at(1.0)
    h.socket("a").links_result = [lo(), *(link._replace(rx_bytes=link.rx_bytes + 10) for link in links)]
    snapshot = h.sample_at(2.0)
    sample = by_name(snapshot)["a"]
    assert len(sample.links) == exported and sample.links_omitted == omitted
    if omitted:
        assert sample.links[0].name == "eth0"
        assert [link.ifindex for link in sample.links[1:]] == list(range(3, 3 + exported - 1))
    assert rates(snapshot, "a")[0] == 10.0 * interfaces, "throughput counts every interface"
