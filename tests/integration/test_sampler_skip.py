"""The sampler leaves idle pods' namespaces alone, on the real kernel, without losing accuracy.

What the skip rests on: a pod's eth0 and its host veth mirror each other's byte and packet
counters exactly, so an unchanged host veth means an unchanged pod. Checked here against
iproute2 and tc inside the pods, in a lab wired by the real CNI plugins.
"""

from __future__ import annotations

import json
import socket
import time
from collections import Counter

import pytest

from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from agent.lab.state import LabPod
from agent.metrics.sampler import Sampler
from agent.model.direction import Direction
from agent.model.health import HealthRecorder
from agent.model.snapshot import PodSample, Snapshot
from agent.netlink.socket import NetlinkSocket, NetlinkSocketPool
from agent.shaping.reconciler import Reconciler
from agent.shaping.settings import ShapingSettings
from tests.integration import tc_probe
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.root

LIMITED = {"kubernetes.io/ingress-bandwidth": "20M", "kubernetes.io/egress-bandwidth": "20M"}


class CountingPool(NetlinkSocketPool):
    """Counts the namespaces a pass enters (None: the host)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered: Counter[str | None] = Counter()

    def get(self, netns_path: str | None) -> NetlinkSocket:
        self.entered[netns_path] += 1
        return super().get(netns_path)


def by_name(snapshot: Snapshot) -> dict[str, PodSample]:
    return {s.pod.name: s for s in snapshot.pods}


def kernel_view(lab: LabNode, pod: LabPod) -> tuple[int, ...]:
    """eth0's counters (iproute2) and its egress TBF's (tc), as the kernel has them now."""
    done = lab.exec_in_pod(pod, ["ip", "-s", "-j", "link", "show", "eth0"])
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)[0]["stats64"]
    tc = tc_probe.root("eth0", pod.netns_path)
    assert tc is not None
    link = tuple(stats[way][field] for way in ("rx", "tx") for field in ("bytes", "packets", "errors", "dropped"))
    return (*link, tc["bytes"], tc["packets"], tc["drops"])


def sample_view(sample: PodSample) -> tuple[int, ...]:
    (eth0,) = sample.links
    egress = sample.directions[Direction.EGRESS].qdisc
    assert egress is not None
    link = tuple(getattr(eth0, f"{way}_{field}") for way in ("rx", "tx") for field in ("bytes", "packets", "errors", "dropped"))
    return (*link, egress.bytes, egress.packets, egress.drops)


def test_idle_pods_are_not_entered_and_still_match_the_kernel(lab_factory) -> None:
    lab: LabNode = lab_factory()
    quiet, touched = lab.up([PodSpec("quiet", "skip", LIMITED), PodSpec("touched", "skip", LIMITED)], pod_events=False)
    # No IPv6: its router solicitations and MLD reports go out on timers of their own, and one
    # sent between a pass and the checks below would look like a stale sample.
    for pod in (quiet, touched):
        done = lab.exec_in_pod(pod, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
        assert done.returncode == 0, done.stderr
    reconciler = Reconciler(ShapingSettings(), HealthRecorder())
    pool = CountingPool()
    try:
        statuses = {p.sandbox_id: reconciler.reconcile(p.as_pod()) for p in (quiet, touched)}
        pods = [quiet.as_pod(), touched.as_pod()]
        sampler = Sampler(lambda: pods, lambda: statuses, pool, HealthRecorder(), interval_s=1.0)

        def settled_pass() -> tuple[Snapshot, set[str | None], dict[str, tuple[int, ...]]] | None:
            """A pass during which nothing moved in the kernel (iproute2 and tc read the same
            before and after it), with the namespaces it entered; None when something moved
            (the bridge floods the host's own IPv6 chatter to every pod now and then)."""
            before = {p.name: kernel_view(lab, p) for p in (quiet, touched)}
            pool.entered.clear()
            snapshot = sampler.sample_once()
            entered = set(pool.entered)
            after = {p.name: kernel_view(lab, p) for p in (quiet, touched)}
            return (snapshot, entered, after) if before == after else None

        def quiet_pass_entering_no_pod():
            found = settled_pass()
            return found if found is not None and found[1] == {None} else None

        # Fresh interfaces send a little on their own at first: wait for a quiet pass.
        snapshot, _, kernel = wait_for(quiet_pass_entering_no_pod, 20.0, interval_s=0.2, what="a quiet pass entering no pod")
        for name in ("quiet", "touched"):
            assert sample_view(by_name(snapshot)[name]) == kernel[name], name

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"podbw-test", (touched.ip, 9))  # answered with ICMP port unreachable
        time.sleep(0.2)  # the ARP exchange, the datagram and the pod's answer are done by then
        pool.entered.clear()
        snapshot = sampler.sample_once()
        assert pool.entered[touched.netns_path] == 1, "the pod transmitted: its namespace is read"
        assert by_name(snapshot)["touched"].directions[Direction.INGRESS].throughput_bytes_per_s > 0

        # And what the following passes carry over for both pods is still exactly the kernel's.
        snapshot, _, kernel = wait_for(settled_pass, 20.0, interval_s=0.2, what="a settled pass")
        for name in ("quiet", "touched"):
            assert sample_view(by_name(snapshot)[name]) == kernel[name], name
    finally:
        pool.close_all()
        reconciler.close()
