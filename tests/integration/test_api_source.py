"""The agent with its Kubernetes API source, on a lab node, against a scripted API on loopback
(tests/unit/kube_api_server.py: not the lab's stand-in, nor kubectl). A watch event changes the
limit in the kernel; removing the annotation through the API removes it although CRI still
reports it; a namespace default applies; with the API gone, limits, metrics and readiness stay."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from tests.integration import tc_probe
from tests.integration.agent_process import AgentProcess
from tests.integration.helpers import wait_for
from tests.unit.kube_api_server import Answer, FakeApi, kubeconfig

pytestmark = pytest.mark.root

IN = "kubernetes.io/ingress-bandwidth"
EG = "kubernetes.io/egress-bandwidth"
WAIT_S = 10.0


def pod_object(pod, annotations: dict[str, str], rv: str) -> dict:
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid, "resourceVersion": rv,
                     "annotations": annotations},
        "spec": {"nodeName": "lab-node", "containers": [{"name": "app", "image": "app:1"}]},
        "status": {"phase": "Running"},
    }


def listing(kind: str, items: list[dict], rv: str) -> Answer:
    return Answer(body=json.dumps({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": rv},
                                   "items": items}).encode())


def test_watch_events_reach_the_kernel_and_an_api_outage_changes_nothing(
    lab_factory, agent_factory, tmp_path: Path
) -> None:
    lab: LabNode = lab_factory()
    (web,) = lab.up([PodSpec("web", "shop", {IN: "10M"})], pod_events=False)
    api = FakeApi()
    api.on_list("pods", listing("PodList", [pod_object(web, {IN: "10M"}, "100")], "100"))
    api.on_list("namespaces", listing("NamespaceList", [
        {"metadata": {"name": "shop", "uid": "ns-shop", "resourceVersion": "50"}}], "100"))
    api.start()
    try:
        agent: AgentProcess = agent_factory(
            lab, extra_args=["--kubeconfig", str(kubeconfig(tmp_path / "kc", api.url)), "--node-name", "lab-node"]
        )
        wait_for(lambda: agent.sample("podbw_discovery_up", source="kubernetes") == 1, WAIT_S, what="API up")
        wait_for(lambda: tc_probe.tbf_rate(web.host_veth) == 10_000_000 // 8, WAIT_S, what="10M from the list")
        wait_for(lambda: agent.sample("podbw_limit_source", namespace="shop", pod="web", direction="ingress",
                                      source="pod") == 1, WAIT_S, what="its source exported")

        pushed = time.monotonic()
        api.push("pods", {"type": "MODIFIED", "object": pod_object(web, {IN: "50M"}, "101")})
        wait_for(lambda: tc_probe.tbf_rate(web.host_veth) == 50_000_000 // 8, WAIT_S, interval_s=0.005, what="50M")
        changed_after_s = time.monotonic() - pushed

        api.push("pods", {"type": "MODIFIED", "object": pod_object(web, {}, "102")})
        wait_for(lambda: tc_probe.tbf_rate(web.host_veth) is None, WAIT_S, what="the limit removed, CRI's 10M not back")

        api.push("namespaces", {"type": "MODIFIED", "object": {"kind": "Namespace", "apiVersion": "v1", "metadata": {
            "name": "shop", "uid": "ns-shop", "resourceVersion": "103",
            "annotations": {"podbw.io/default-egress-bandwidth": "7M"}}}})
        wait_for(lambda: tc_probe.tbf_rate("eth0", web.netns_path) == 7_000_000 // 8, WAIT_S, what="the namespace default")
        wait_for(lambda: agent.sample("podbw_limit_source", namespace="shop", pod="web", direction="egress",
                                      source="namespace") == 1, WAIT_S, what="its source exported")
    finally:
        api.stop()
    wait_for(lambda: agent.sample("podbw_discovery_up", source="kubernetes") == 0, WAIT_S, what="API down")
    assert agent.get("/readyz")[0] == 200  # CRI alone is enough
    time.sleep(1.5)  # a sample pass or two with the API gone
    assert tc_probe.tbf_rate("eth0", web.netns_path) == 7_000_000 // 8 and tc_probe.tbf_rate(web.host_veth) is None
    assert agent.sample("podbw_limit_rate_bytes_per_second", namespace="shop", pod="web", direction="egress") == 875_000
    log = agent.log_text()
    assert log.count("kubernetes: list") + log.count("kubernetes: watch") == 1, agent.log_tail()  # said once
    assert "Traceback" not in log, agent.log_tail()
    print(f"watch event -> limit in the kernel: {changed_after_s * 1000:.0f} ms (polled every 5 ms)")
