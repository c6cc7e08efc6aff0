"""The agent against the lab answering as each runtime: in containerd mode the pods are
discovered, shaped and exported exactly as in CRI-O mode (issue 15.5)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from tests.integration import tc_probe
from tests.integration.agent_process import AgentProcess, Scrape
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.root

PODS = [
    PodSpec("web", "shop", {"kubernetes.io/ingress-bandwidth": "10M", "kubernetes.io/egress-bandwidth": "20M"}),
    PodSpec("batch", "jobs"),
    PodSpec("node-agent", "kube-system", {"kubernetes.io/egress-bandwidth": "1M"}, host_network=True),
]
# Families whose series and values depend only on the pods and their annotations, not on
# traffic or timing; per-pod labels that name runtime-made objects are compared by kind.
STABLE_FAMILIES = {
    "podbw_pods", "podbw_discovery_up", "podbw_pod_info", "podbw_shaping_state",
    "podbw_limit_rate_bytes_per_second", "podbw_limit_burst_bytes", "podbw_limit_queue_bytes",
}
RUNTIME_MADE_LABELS = ("uid", "netns", "host_interface")


@dataclass
class Flavour:
    lab: LabNode
    agent: AgentProcess
    scrape: Scrape

    def stable(self) -> set[tuple[str, frozenset[tuple[str, str]], float]]:
        out = set()
        for (name, labels), value in self.scrape.items():
            if name in STABLE_FAMILIES:
                normal = frozenset((k, f"<{k}>" if k in RUNTIME_MADE_LABELS else v) for k, v in labels)
                out.add((name, normal, value))
        return out

    def pod_info(self, key: str) -> dict[str, str]:
        namespace, name = key.split("/")
        (labels,) = [dict(lbl) for (n, lbl) in self.scrape
                     if n == "podbw_pod_info" and ("pod", name) in lbl and ("namespace", namespace) in lbl]
        return labels


def run(lab_factory, agent_factory, runtime: str) -> Flavour:
    lab: LabNode = lab_factory()
    lab.up(PODS, runtime=runtime)
    agent = agent_factory(lab, ["--sample-interval", "0.5"])
    for direction in ("ingress", "egress"):
        agent.wait_for_sample("podbw_shaping_state", namespace="shop", pod="web", direction=direction,
                              state="applied", predicate=lambda value: value == 1)
    # Both limits are read back by the next pass; then the scrape is complete.
    wait_for(lambda: agent.sample("podbw_limit_rate_bytes_per_second", namespace="shop", pod="web",
                                  direction="egress"), 10.0, interval_s=0.1, what="egress limit exported")
    return Flavour(lab, agent, agent.scrape())


def test_containerd_mode_is_discovered_shaped_and_exported_as_crio_mode_is(lab_factory, agent_factory) -> None:
    crio = run(lab_factory, agent_factory, "crio")
    containerd = run(lab_factory, agent_factory, "containerd")

    assert containerd.stable() == crio.stable()
    assert ("podbw_pods", frozenset(), 2.0) in crio.stable()  # the host-network pod is left alone

    for flavour, pin_prefix in ((crio, ""), (containerd, "cni-")):
        web = next(pod for pod in flavour.lab.pods() if pod.key == "shop/web")
        info = flavour.pod_info("shop/web")
        assert (info["netns"], info["host_interface"], info["uid"]) == (web.netns_path, web.host_veth, web.uid)
        assert os.path.basename(web.netns_path).startswith(pin_prefix)
        assert tc_probe.root(web.host_veth)["options"]["rate"] == 10_000_000 // 8
        assert tc_probe.root("eth0", web.netns_path)["options"]["rate"] == 20_000_000 // 8

