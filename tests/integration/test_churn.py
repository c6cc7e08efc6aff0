"""Churn (shortened; bench/soak.py runs 300 pods): nothing leaks and every pod gets shaped."""

from __future__ import annotations

import subprocess

import psutil
import pytest

from agent.lab.churn import ChurnedPod, run_churn
from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from tests.integration import tc_probe
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.root

SHAPED_AFTER_S = 2.0


def podbw_ifbs() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "type", "ifb"], capture_output=True, text=True, timeout=10).stdout
    return [line.split(":")[1].strip() for line in out.splitlines() if ": podbw" in line]


def pod_series(scrape) -> set:
    return {(name, labels) for (name, labels) in scrape if any(k == "pod" for k, _ in labels)}


def test_sixty_pods_of_churn_leave_nothing_behind(lab_factory, agent_factory) -> None:
    lab: LabNode = lab_factory()
    lab.up([PodSpec("steady", "ns", {"kubernetes.io/ingress-bandwidth": "10M"})])
    agent = agent_factory(lab, ["--egress-mode", "ifb", "--resync-interval", "5"])
    wait_for(lambda: agent.sample("podbw_shaping_state", namespace="ns", pod="steady", direction="ingress",
                                  state="applied") == 1, 5.0, what="baseline")
    baseline = pod_series(agent.scrape())
    unshaped: list[str] = []

    def check_shaped(churned: ChurnedPod) -> None:
        annotations = churned.pod.annotations
        if churned.lifetime_s < SHAPED_AFTER_S or not annotations or "10Mbps" in annotations.values():
            return
        if "kubernetes.io/ingress-bandwidth" in annotations:
            root = tc_probe.root(churned.pod.host_veth)
            if not root or root["handle"] != "5062:":
                unshaped.append(f"{churned.pod.key} ingress")
        if "kubernetes.io/egress-bandwidth" in annotations and not podbw_ifbs():
            unshaped.append(f"{churned.pod.key} egress")

    # Warm up first: the first pods pay one-off allocations (gRPC, netlink, metric families).
    run_churn(lab, total_pods=20, pods_per_s=5, lifetime_s=(0.5, 3.0), before_delete=check_shaped, namespace="warm")
    wait_for(lambda: agent.sample("podbw_pods") == 1, 10.0, what="warm-up pods to go")
    rss_before = psutil.Process(agent.pid).memory_info().rss
    report = run_churn(lab, total_pods=60, pods_per_s=5, lifetime_s=(0.5, 6.0), before_delete=check_shaped)
    assert report.created == 60
    log = agent.log_text()
    assert unshaped == [], [line for line in log.splitlines() if any(u.split()[0] in line for u in unshaped)]

    wait_for(lambda: agent.sample("podbw_pods") == 1, 10.0, what="churned pods to go")
    wait_for(lambda: podbw_ifbs() == [], 10.0, what="ifbs of churned pods to go")
    final = pod_series(agent.scrape())
    assert final == baseline, f"extra: {final - baseline}, missing: {baseline - final}"
    rss_growth = psutil.Process(agent.pid).memory_info().rss - rss_before
    print(f"RSS {rss_before / 1e6:.1f} MB -> +{rss_growth / 1e6:.1f} MB")
    assert rss_growth < 10 * 1024 * 1024, f"RSS grew by {rss_growth / 1e6:.1f} MB"
    latency_count = agent.sample("podbw_reconcile_latency_seconds_count")
    within_half_second = agent.sample("podbw_reconcile_latency_seconds_bucket", le="0.5")
    assert latency_count and latency_count >= 30
    assert within_half_second / latency_count >= 0.9, "reconcile latency: most limits land within 500 ms"
    assert "Traceback" not in agent.log_text(), agent.log_tail(60)
