"""Shaping against a real lab: devices, adoption, drift, foreign qdiscs, removal, bad input."""

from __future__ import annotations

from typing import Iterator

import pytest

from agent.lab import traffic
from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from agent.model.direction import Direction, ShapingState
from agent.model.health import HealthRecorder
from agent.model.ownership import ifb_name
from agent.shaping.reconciler import Reconciler
from agent.shaping.settings import ShapingSettings
from tests.integration import tc_probe

pytestmark = pytest.mark.root

LIMITED = {"kubernetes.io/ingress-bandwidth": "10M", "kubernetes.io/egress-bandwidth": "20M"}


@pytest.fixture
def reconcilers() -> Iterator[list[Reconciler]]:
    made: list[Reconciler] = []
    yield made
    for reconciler in made:
        reconciler.close()


def new_reconciler(
    made: list[Reconciler], mode: str = "pod", take_over: bool = False, ifb_owner: str = ""
) -> tuple[Reconciler, HealthRecorder]:
    health = HealthRecorder()
    settings = ShapingSettings(egress_mode=mode, take_over_foreign=take_over, ifb_owner=ifb_owner)
    reconciler = Reconciler(settings, health)
    made.append(reconciler)
    return reconciler, health


@pytest.mark.parametrize("runtime", ["crio", "containerd"])
def test_pod_mode_puts_ingress_on_the_host_veth_and_egress_on_eth0(lab_factory, reconcilers, runtime: str) -> None:
    lab: LabNode = lab_factory()
    (pod,) = lab.up([PodSpec("web", "shop", LIMITED)], pod_events=False, runtime=runtime)
    reconciler, health = new_reconciler(reconcilers)
    status = reconciler.reconcile(pod.as_pod())

    assert status.host_interface == pod.host_veth
    assert status.directions[Direction.INGRESS].state is ShapingState.APPLIED
    assert status.directions[Direction.EGRESS].state is ShapingState.APPLIED
    host_root = tc_probe.root(pod.host_veth)
    assert host_root["kind"] == "tbf" and host_root["handle"] == "5062:"
    assert host_root["options"]["rate"] == 10_000_000 // 8
    pod_root = tc_probe.root("eth0", pod.netns_path)
    assert pod_root["kind"] == "tbf" and pod_root["handle"] == "5062:"
    assert pod_root["options"]["rate"] == 20_000_000 // 8
    assert health.data().shaping_operations == {("apply", "ok"): 2}


def test_ifb_mode_redirects_host_veth_ingress_to_an_ifb_and_removal_cleans_up(lab_factory, reconcilers) -> None:
    lab: LabNode = lab_factory()
    (pod,) = lab.up([PodSpec("web", "shop", LIMITED)], pod_events=False)
    reconciler, _ = new_reconciler(reconcilers, mode="ifb")
    status = reconciler.reconcile(pod.as_pod())
    ifb = ifb_name(pod.sandbox_id)

    assert status.directions[Direction.EGRESS].device == ifb
    assert tc_probe.root(ifb)["options"]["rate"] == 20_000_000 // 8
    assert any(q["kind"] == "ingress" for q in tc_probe.qdiscs(pod.host_veth))
    assert tc_probe.root("eth0", pod.netns_path)["kind"] == "noqueue", "nothing inside the pod in ifb mode"

    # egress annotation removed: the redirect and the ifb go, ingress stays
    reconciler.reconcile(PodLike(pod, {"kubernetes.io/ingress-bandwidth": "10M"}))
    assert not tc_probe.link_exists(ifb)
    assert not any(q["kind"] == "ingress" for q in tc_probe.qdiscs(pod.host_veth))
    assert tc_probe.root(pod.host_veth)["handle"] == "5062:"

    reconciler.reconcile(pod.as_pod())
    assert tc_probe.link_exists(ifb)
    lab.delete(pod.key)
    reconciler.forget(pod.as_pod())
    assert not tc_probe.link_exists(ifb)


def test_orphan_collection_removes_only_this_agents_ifbs_of_unknown_pods(lab_factory, reconcilers) -> None:
    # Two agents on one machine, each for its own lab (a demo next to the tests): each removes
    # the ifbs of pods it no longer knows, and never the other's.
    ours_lab, theirs_lab = lab_factory(), lab_factory()
    kept, orphaned = ours_lab.up([PodSpec("kept", "ns", LIMITED), PodSpec("orphaned", "ns", LIMITED)], pod_events=False)
    (theirs,) = theirs_lab.up([PodSpec("theirs", "ns", LIMITED)], pod_events=False)
    ours, health = new_reconciler(reconcilers, mode="ifb", ifb_owner="podbw cri=none netns=/ours")
    other, _ = new_reconciler(reconcilers, mode="ifb", ifb_owner="podbw cri=none netns=/theirs")
    try:
        for pod in (kept, orphaned):
            ours.reconcile(pod.as_pod())
        other.reconcile(theirs.as_pod())
        assert tc_probe.link_alias(ifb_name(kept.sandbox_id)) == "podbw cri=none netns=/ours"
        assert tc_probe.link_alias(ifb_name(theirs.sandbox_id)) == "podbw cri=none netns=/theirs"

        ours.collect_orphans({kept.sandbox_id})  # `orphaned` went while the agent was down

        assert not tc_probe.link_exists(ifb_name(orphaned.sandbox_id))
        assert tc_probe.link_exists(ifb_name(kept.sandbox_id))
        assert tc_probe.link_exists(ifb_name(theirs.sandbox_id)), "another agent's ifb was removed"
        assert health.data().shaping_operations[("remove", "ok")] == 1
    finally:  # ifbs outlive their labs: take them away here
        for reconciler, pod in ((ours, kept), (ours, orphaned), (other, theirs)):
            reconciler.forget(pod.as_pod())


def PodLike(pod, annotations):
    from dataclasses import replace

    return replace(pod.as_pod(), annotations=annotations)


@pytest.mark.parametrize("mode", ["pod", "ifb"])
def test_restart_adoption_changes_nothing(lab_factory, reconcilers, mode: str) -> None:
    lab: LabNode = lab_factory()
    a, b = lab.up([PodSpec("a", "ns", LIMITED), PodSpec("b", "ns")], pod_events=False)
    first, _ = new_reconciler(reconcilers, mode=mode)
    first.reconcile(a.as_pod())
    traffic.iperf(lab, b, a, seconds=1)  # counters move, so a reset would show
    before = tc_probe.root(a.host_veth)
    assert before["bytes"] > 0
    first.close()

    second, health = new_reconciler(reconcilers, mode=mode)  # "the agent restarted"
    status = second.reconcile(a.as_pod())
    after = tc_probe.root(a.host_veth)
    assert health.data().shaping_operations == {}, "no netlink write after a restart"
    assert after["handle"] == before["handle"] and after["bytes"] >= before["bytes"]
    assert {d.state for d in status.directions.values()} == {ShapingState.APPLIED}


def test_drift_is_healed(lab_factory, reconcilers) -> None:
    lab: LabNode = lab_factory()
    (pod,) = lab.up([PodSpec("a", "ns", LIMITED)], pod_events=False)
    reconciler, health = new_reconciler(reconcilers)
    reconciler.reconcile(pod.as_pod())

    tc_probe.tc("qdisc", "change", "dev", pod.host_veth, "root", "handle", "5062:", "tbf",
                "rate", "1mbit", "burst", "10k", "latency", "50ms")
    tc_probe.tc("qdisc", "del", "dev", "eth0", "root", netns_path=pod.netns_path)
    reconciler.reconcile(pod.as_pod())
    assert tc_probe.root(pod.host_veth)["options"]["rate"] == 10_000_000 // 8
    assert tc_probe.root("eth0", pod.netns_path)["options"]["rate"] == 20_000_000 // 8
    ops = health.data().shaping_operations
    assert ops[("update", "ok")] == 1 and ops[("apply", "ok")] == 3


def test_foreign_root_qdisc_is_left_alone_unless_taking_over(lab_factory, reconcilers) -> None:
    lab: LabNode = lab_factory()
    (pod,) = lab.up([PodSpec("a", "ns", LIMITED)], pod_events=False)
    tc_probe.tc("qdisc", "add", "dev", pod.host_veth, "root", "handle", "1:", "tbf",
                "rate", "50mbit", "burst", "32k", "latency", "20ms")
    reconciler, _ = new_reconciler(reconcilers)
    status = reconciler.reconcile(pod.as_pod())
    ingress = status.directions[Direction.INGRESS]
    assert ingress.state is ShapingState.FOREIGN and "1:" in ingress.reason
    assert tc_probe.root(pod.host_veth)["handle"] == "1:"
    assert status.directions[Direction.EGRESS].state is ShapingState.APPLIED, "the other direction is unaffected"

    taker, _ = new_reconciler(reconcilers, take_over=True)
    assert taker.reconcile(pod.as_pod()).directions[Direction.INGRESS].state is ShapingState.APPLIED
    assert tc_probe.root(pod.host_veth)["handle"] == "5062:"


def test_invalid_annotation_is_isolated_to_its_direction_and_pod(lab_factory, reconcilers, caplog) -> None:
    lab: LabNode = lab_factory()
    bad, good = lab.up(
        [
            PodSpec("bad", "ns", {"kubernetes.io/ingress-bandwidth": "10Mbps", "kubernetes.io/egress-bandwidth": "5M"}),
            PodSpec("good", "ns", LIMITED),
        ],
        pod_events=False,
    )
    reconciler, health = new_reconciler(reconcilers)
    for _ in range(3):  # resyncs must not repeat the log line or the count
        status_bad = reconciler.reconcile(bad.as_pod())
        status_good = reconciler.reconcile(good.as_pod())
    assert status_bad.directions[Direction.INGRESS].state is ShapingState.INVALID
    assert status_bad.directions[Direction.EGRESS].state is ShapingState.APPLIED
    assert {d.state for d in status_good.directions.values()} == {ShapingState.APPLIED}
    assert tc_probe.root(bad.host_veth)["kind"] == "noqueue"
    assert health.data().annotation_errors == {"kubernetes.io/ingress-bandwidth": 1}
    lines = [vars(r) for r in caplog.records if "invalid" in r.getMessage()]
    assert len(lines) == 1
    fields = {k: lines[0].get(k) for k in ("namespace", "pod", "direction", "annotation")}
    assert fields == {"namespace": "ns", "pod": "bad", "direction": "ingress", "annotation": "kubernetes.io/ingress-bandwidth"}


def test_annotation_removed_removes_the_limit(lab_factory, reconcilers) -> None:
    lab: LabNode = lab_factory()
    (pod,) = lab.up([PodSpec("a", "ns", LIMITED)], pod_events=False)
    reconciler, _ = new_reconciler(reconcilers)
    reconciler.reconcile(pod.as_pod())
    reconciler.reconcile(PodLike(pod, {"kubernetes.io/ingress-bandwidth": "30M"}))
    assert tc_probe.root(pod.host_veth)["options"]["rate"] == 30_000_000 // 8
    assert tc_probe.root("eth0", pod.netns_path)["kind"] == "noqueue"


@pytest.mark.parametrize("direction", ["ingress", "egress"])
def test_short_iperf3_run_stays_within_ten_percent_of_the_limit(lab_factory, reconcilers, direction: str) -> None:
    lab: LabNode = lab_factory()
    limited, peer = lab.up(
        [PodSpec("limited", "ns", {f"kubernetes.io/{direction}-bandwidth": "50M"}), PodSpec("peer", "ns")],
        pod_events=False,
    )
    reconciler, _ = new_reconciler(reconcilers)
    reconciler.reconcile(limited.as_pod())
    if direction == "ingress":
        result = traffic.iperf(lab, client=peer, server=limited, seconds=3)
    else:
        result = traffic.iperf(lab, client=limited, server=peer, seconds=3)
    # After TCP's first 0.5 s ramp (slower still on a busy 2-core machine): the steady rate.
    steady = result.intervals_bits_per_s[1:]
    assert 0.90 * 50e6 <= sum(steady) / len(steady) <= 1.10 * 50e6, result
    assert result.received_bits_per_s <= 1.10 * 50e6, result


def test_observe_only_reports_the_kernel_without_writing(lab_factory, reconcilers) -> None:
    lab: LabNode = lab_factory()
    (pod,) = lab.up([PodSpec("a", "ns", LIMITED)], pod_events=False)
    health = HealthRecorder()
    viewer = Reconciler(ShapingSettings(enabled=False), health)
    reconcilers.append(viewer)
    before = viewer.reconcile(pod.as_pod())
    assert {d.state for d in before.directions.values()} == {ShapingState.ERROR}
    assert tc_probe.root(pod.host_veth)["kind"] == "noqueue"

    agent, _ = new_reconciler(reconcilers)
    agent.reconcile(pod.as_pod())
    after = viewer.reconcile(pod.as_pod())
    assert {d.state for d in after.directions.values()} == {ShapingState.APPLIED}
    assert health.data().shaping_operations == {}
