"""The sampler leaves idle pods' namespaces alone, on the real kernel, without losing accuracy.

What the skip rests on: a pod's eth0 and its host veth mirror each other's byte and packet
counters exactly, so an unchanged host veth means an unchanged pod. Checked here against
iproute2 and tc inside the pods, in a lab wired by the real CNI plugins.
"""

from __future__ import annotations

import json
import socket
from collections import Counter

import pytest

from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from agent.lab.state import LabPod
from agent.metrics.sampler import Sampler
from agent.model.direction import Direction
from agent.model.health import HealthRecorder
from agent.model.snapshot import PodSample, Snapshot
from agent.netlink.stats_socket import StatsSocket, StatsSocketPool
from agent.shaping.reconciler import Reconciler
from agent.shaping.settings import ShapingSettings
from tests.integration import tc_probe
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.root

LIMITED = {"kubernetes.io/ingress-bandwidth": "20M", "kubernetes.io/egress-bandwidth": "20M"}


class CountingPool(StatsSocketPool):
    """Counts the namespaces a pass enters (None: the host)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered: Counter[str | None] = Counter()

    def get(self, netns_path: str | None) -> StatsSocket:
        self.entered[netns_path] += 1
        return super().get(netns_path)


def by_name(snapshot: Snapshot) -> dict[str, PodSample]:
    return {s.pod.name: s for s in snapshot.pods}


def assert_matches_the_kernel(lab: LabNode, pod: LabPod, sample: PodSample) -> None:
    done = lab.exec_in_pod(pod, ["ip", "-s", "-j", "link", "show", "eth0"])
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)[0]["stats64"]
    (eth0,) = sample.links
    for way, prefix in (("rx", "rx_"), ("tx", "tx_")):
        for field in ("bytes", "packets", "errors", "dropped"):
            assert getattr(eth0, prefix + field) == stats[way][field], (pod.name, way, field)
    egress = sample.directions[Direction.EGRESS].qdisc
    tc = tc_probe.root("eth0", pod.netns_path)
    assert egress is not None and tc is not None
    assert (egress.bytes, egress.packets, egress.drops) == (tc["bytes"], tc["packets"], tc["drops"])


def test_idle_pods_are_not_entered_and_still_match_the_kernel(lab_factory) -> None:
    lab: LabNode = lab_factory()
    quiet, touched = lab.up([PodSpec("quiet", "skip", LIMITED), PodSpec("touched", "skip", LIMITED)], pod_events=False)
    reconciler = Reconciler(ShapingSettings(), HealthRecorder())
    pool = CountingPool()
    try:
        statuses = {p.sandbox_id: reconciler.reconcile(p.as_pod()) for p in (quiet, touched)}
        pods = [quiet.as_pod(), touched.as_pod()]
        sampler = Sampler(lambda: pods, lambda: statuses, pool, HealthRecorder(), interval_s=1.0)

        def pass_entering_no_pod() -> Snapshot | None:
            pool.entered.clear()
            snapshot = sampler.sample_once()
            return snapshot if set(pool.entered) == {None} else None

        # Fresh interfaces send a little on their own (neighbour discovery): wait for quiet.
        snapshot = wait_for(pass_entering_no_pod, 20.0, interval_s=0.2, what="a pass that enters no pod")
        for pod in (quiet, touched):
            assert_matches_the_kernel(lab, pod, by_name(snapshot)[pod.name])

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"podbw-test", (touched.ip, 9))  # answered with ICMP port unreachable
        pool.entered.clear()
        snapshot = sampler.sample_once()
        assert pool.entered[touched.netns_path] == 1
        sample = by_name(snapshot)["touched"]
        assert sample.directions[Direction.INGRESS].throughput_bytes_per_s > 0
        for pod in (quiet, touched):
            assert_matches_the_kernel(lab, pod, by_name(snapshot)[pod.name])
    finally:
        pool.close_all()
        reconciler.close()
