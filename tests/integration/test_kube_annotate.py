"""The agent on a lab node with its Kubernetes API source, driven by the real kubectl against the
lab's API stand-in: `kubectl annotate` changes the kernel within a second, problems and changes
show up in `kubectl describe pod`, namespace defaults apply, an API outage changes nothing, and a
restart with unchanged annotations writes nothing."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from agent.lab.kube_process import ApiServerSettings
from agent.lab.node import LabNode
from agent.lab.state import LabPod
from agent.lab.spec import PodSpec
from tests.integration import tc_probe
from tests.integration.agent_process import AgentProcess, select
from tests.integration.helpers import wait_for
from tests.integration.kube_http import KubeHttp
from tests.integration.kubectl import Kubectl

pytestmark = pytest.mark.root

IN = "kubernetes.io/ingress-bandwidth"
EG = "kubernetes.io/egress-bandwidth"
NS_DEFAULT_EG = "podbw.io/default-egress-bandwidth"
WAIT_S = 10.0
CHANGE_BUDGET_S = 1.0
"""Issue 13: a change reaches the kernel within a second of its watch event."""
BOOKMARK_EVERY_S = 1.0
PODS = [
    PodSpec("web", "shop", {IN: "10M"}),
    PodSpec("api", "shop", {}),
    PodSpec("batch", "jobs", {EG: "5M"}),
]


def bytes_per_s(quantity_bits: int) -> int:
    return quantity_bits // 8


def ingress_rate(pod: LabPod) -> int | None:
    return tc_probe.tbf_rate(pod.host_veth)


def egress_rate(pod: LabPod) -> int | None:
    return tc_probe.tbf_rate("eth0", pod.netns_path)


def api_args(lab: LabNode) -> list[str]:
    return ["--kubeconfig", lab.kubeconfig, "--node-name", lab.node_name]


def kernel_writes(agent: AgentProcess) -> float:
    return sum(select(agent.scrape(), "podbw_shaping_operations_total").values())


def pod_events(lab: LabNode, namespace: str, pod: str, reason: str) -> list[dict]:
    listed = KubeHttp(lab.kubeconfig).get(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
    return [e for e in listed["items"] if e["regarding"]["name"] == pod and e["reason"] == reason]


def assert_described(k: Kubectl, namespace: str, pod: str, pattern: str) -> None:
    """`kubectl describe pod` lists an Event row matching the regex `pattern`."""
    described = k("-n", namespace, "describe", "pod", pod)
    rows = described.split("\nEvents:\n", 1)[1].splitlines()[2:]  # header and rule left out
    assert any(re.search(pattern, row) for row in rows), rows


def agent_with_api(lab: LabNode, agent_factory) -> AgentProcess:
    """The agent on the lab's CRI and API stand-ins, once its API source has listed."""
    agent: AgentProcess = agent_factory(lab, extra_args=api_args(lab))
    wait_for(lambda: agent.sample("podbw_discovery_up", source="kubernetes") == 1, WAIT_S, what="API up")
    return agent


def changed_within_budget(k: Kubectl, args: list[str], condition) -> float:
    """Run `kubectl annotate ...`; seconds from its return until condition() holds (polled every 5 ms)."""
    k(*args)
    done = time.monotonic()
    wait_for(condition, WAIT_S, interval_s=0.005, what=" ".join(args))
    return time.monotonic() - done


@pytest.fixture
def lab(lab_factory) -> LabNode:
    node = lab_factory()
    node.api_settings = ApiServerSettings(bookmark_interval_s=BOOKMARK_EVERY_S)
    node.up(PODS, pod_events=False)
    return node


def test_kubectl_annotate_changes_the_kernel_live_and_describe_pod_tells_why(
    lab: LabNode, agent_factory, tmp_path: Path
) -> None:
    web, api, batch = lab.pods()
    k = Kubectl(lab, tmp_path / "kcache")
    agent = agent_with_api(lab, agent_factory)
    wait_for(lambda: ingress_rate(web) == bytes_per_s(10_000_000), WAIT_S, what="web's 10M")
    wait_for(lambda: egress_rate(batch) == bytes_per_s(5_000_000), WAIT_S, what="batch's 5M")
    wait_for(lambda: pod_events(lab, "shop", "web", "BandwidthLimitApplied"), WAIT_S, what="the Applied Event")
    assert_described(k, "shop", "web", r"Normal\s+BandwidthLimitApplied\s+.*podbw\.io/agent\s+ingress limited to 10 Mbit/s")

    took_s = [
        changed_within_budget(k, ["-n", "shop", "annotate", "pod", "web", f"{IN}=20M", "--overwrite"],
                              lambda: ingress_rate(web) == bytes_per_s(20_000_000)),
        changed_within_budget(k, ["-n", "shop", "annotate", "pod", "web", f"{IN}=30M", "--overwrite"],
                              lambda: ingress_rate(web) == bytes_per_s(30_000_000)),
    ]
    assert max(took_s) <= CHANGE_BUDGET_S, took_s
    wait_for(lambda: pod_events(lab, "shop", "web", "BandwidthLimitChanged"), WAIT_S, what="the Changed Event")
    assert_described(k, "shop", "web", r"Normal\s+BandwidthLimitChanged\s+.*ingress limited to 30 Mbit/s .*\(was 20 Mbit/s")

    # Removing it through the API lifts the limit, although CRI still reports 10M from creation.
    took_s.append(changed_within_budget(k, ["-n", "shop", "annotate", "pod", "web", f"{IN}-"],
                                        lambda: ingress_rate(web) is None))
    assert took_s[-1] <= CHANGE_BUDGET_S, took_s
    wait_for(lambda: agent.sample("podbw_shaping_state", namespace="shop", pod="web", direction="ingress",
                                  state="unlimited") == 1, WAIT_S, what="web unlimited")

    # An invalid value: an Event where the user looks, state invalid, every other pod untouched.
    writes_before = kernel_writes(agent)
    k("-n", "shop", "annotate", "pod", "api", f"{EG}=10Mbps")
    wait_for(lambda: agent.sample("podbw_shaping_state", namespace="shop", pod="api", direction="egress",
                                  state="invalid") == 1, WAIT_S, what="api invalid")
    wait_for(lambda: pod_events(lab, "shop", "api", "InvalidBandwidthAnnotation"), WAIT_S, what="the Warning")
    assert_described(k, "shop", "api", rf"Warning\s+InvalidBandwidthAnnotation\s+.*podbw\.io/agent\s+{re.escape(EG)}=\W?10Mbps")
    assert egress_rate(api) is None and egress_rate(batch) == bytes_per_s(5_000_000) and ingress_rate(web) is None
    assert kernel_writes(agent) == writes_before
    assert agent.sample("podbw_pod_events_total", result="ok") >= 4
    time.sleep(3 * BOOKMARK_EVERY_S)
    counts = lab.api_request_counts()
    # Bookmarks (an empty Pod, `spec.containers: null`) move the watch on; they never cost a relist.
    assert (counts.get("list pods"), counts.get("watch pods")) == (1, 1), counts
    log = agent.log_text()
    assert "kubernetes: " not in log, agent.log_tail()  # the API source never went down
    assert "Traceback" not in log and "HTTP Request:" not in log, agent.log_tail()  # no line per API request
    print(f"kubectl annotate returned -> limit in the kernel: {', '.join(f'{s * 1000:.0f} ms' for s in took_s)}")


def test_a_namespace_default_applies_and_a_pods_own_value_overrides_it(
    lab: LabNode, agent_factory, tmp_path: Path
) -> None:
    web, api, batch = lab.pods()
    k = Kubectl(lab, tmp_path / "kcache")
    agent = agent_with_api(lab, agent_factory)

    k("annotate", "namespace", "shop", f"{NS_DEFAULT_EG}=7M")
    wait_for(lambda: egress_rate(api) == egress_rate(web) == bytes_per_s(7_000_000), WAIT_S, what="the default")
    k("-n", "shop", "annotate", "pod", "web", f"{EG}=3M")
    wait_for(lambda: egress_rate(web) == bytes_per_s(3_000_000), WAIT_S, what="web's own value")
    assert egress_rate(api) == bytes_per_s(7_000_000) and egress_rate(batch) == bytes_per_s(5_000_000)

    def source(pod: str, namespace: str = "shop") -> dict[str, float]:
        found = select(agent.scrape(), "podbw_limit_source", namespace=namespace, pod=pod, direction="egress")
        return {dict(labels)["source"]: value for labels, value in found.items()}

    wait_for(lambda: source("api") == {"namespace": 1.0} and source("web") == {"pod": 1.0}, WAIT_S,
             what="podbw_limit_source")
    assert source("batch", "jobs") == {"pod": 1.0}  # the API's value, the same as CRI's

    k("annotate", "namespace", "shop", f"{NS_DEFAULT_EG}-")
    wait_for(lambda: egress_rate(api) is None, WAIT_S, what="the default gone")
    assert egress_rate(web) == bytes_per_s(3_000_000)


def test_an_api_outage_changes_nothing_and_one_relist_recovers(lab: LabNode, agent_factory, tmp_path: Path) -> None:
    web, api, batch = lab.pods()
    k = Kubectl(lab, tmp_path / "kcache")
    k("-n", "shop", "annotate", "pod", "web", f"{IN}=20M", "--overwrite")  # differs from CRI's 10M
    agent: AgentProcess = agent_factory(lab, extra_args=api_args(lab))
    wait_for(lambda: ingress_rate(web) == bytes_per_s(20_000_000), WAIT_S, what="the API's 20M")
    for namespace, pod, direction in (("shop", "web", "ingress"), ("jobs", "batch", "egress")):
        # Published once its reconcile, writes and their counts included, is done.
        wait_for(lambda: agent.sample("podbw_shaping_state", namespace=namespace, pod=pod, direction=direction,
                                      state="applied") == 1, WAIT_S, what=f"{pod} applied")
    writes_before = kernel_writes(agent)  # every limit in: nothing is left to write

    lab.stop_api_server()
    wait_for(lambda: agent.sample("podbw_discovery_up", source="kubernetes") == 0, WAIT_S, what="API down")
    assert agent.get("/readyz")[0] == 200  # CRI alone is enough
    time.sleep(2.5)  # resyncs and sample passes with the API gone
    assert ingress_rate(web) == bytes_per_s(20_000_000) and egress_rate(batch) == bytes_per_s(5_000_000)
    assert agent.sample("podbw_limit_rate_bytes_per_second", namespace="shop", pod="web", direction="ingress") == 2_500_000
    assert agent.sample("podbw_pods") == 3
    assert kernel_writes(agent) == writes_before

    lab.start_api_server()
    wait_for(lambda: agent.sample("podbw_discovery_up", source="kubernetes") == 1, 30.0, what="API back")
    k("-n", "shop", "annotate", "pod", "web", f"{IN}=40M", "--overwrite")
    wait_for(lambda: ingress_rate(web) == bytes_per_s(40_000_000), WAIT_S, what="a change after the outage")
    counts = lab.api_request_counts()
    assert (counts.get("list pods"), counts.get("list namespaces")) == (1, 1), counts
    log = agent.log_text()
    assert log.count("kubernetes: the API server answers again") == 1, agent.log_tail()
    assert "Traceback" not in log, agent.log_tail()


def test_a_restart_with_unchanged_annotations_writes_nothing(lab: LabNode, agent_factory, tmp_path: Path) -> None:
    web, api, batch = lab.pods()
    k = Kubectl(lab, tmp_path / "kcache")
    first: AgentProcess = agent_factory(lab, extra_args=api_args(lab))
    k("-n", "shop", "annotate", "pod", "web", f"{IN}=20M", "--overwrite")
    wait_for(lambda: ingress_rate(web) == bytes_per_s(20_000_000), WAIT_S, what="the API's 20M")
    wait_for(lambda: pod_events(lab, "shop", "web", "BandwidthLimitChanged"), WAIT_S, what="the Changed Event")
    assert first.stop() == 0
    applied_before = len(pod_events(lab, "shop", "web", "BandwidthLimitApplied"))

    second: AgentProcess = agent_factory(lab, extra_args=api_args(lab))
    wait_for(lambda: second.sample("podbw_shaping_state", namespace="shop", pod="web", direction="ingress",
                                   state="applied") == 1, WAIT_S, what="web adopted")
    wait_for(lambda: second.sample("podbw_shaping_state", namespace="jobs", pod="batch", direction="egress",
                                   state="applied") == 1, WAIT_S, what="batch adopted")
    time.sleep(1.5)  # the first resync and sample passes
    assert kernel_writes(second) == 0, second.log_tail()
    assert ingress_rate(web) == bytes_per_s(20_000_000)  # never CRI's 10M, not even for a moment
    assert len(pod_events(lab, "shop", "web", "BandwidthLimitApplied")) == applied_before
