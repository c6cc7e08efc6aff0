"""Attacks from issue 17 replayed on a lab node against the real agent: each must fail closed."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time
from typing import Iterator

import pytest

from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from agent.lab.state import LabPod
from tests.integration import tc_probe
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.root


def ip_in(netns_path: str, *args: str) -> str:
    argv = ["nsenter", f"--net={netns_path}", "--", "ip", *args]
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=10).stdout


def links_in(pod: LabPod) -> list[dict]:
    return json.loads(ip_in(pod.netns_path, "-j", "link", "show"))


def host_ifindex(name: str) -> int:
    out = subprocess.run(["ip", "-j", "link", "show", name], check=True, capture_output=True, text=True, timeout=10)
    return int(json.loads(out.stdout)[0]["ifindex"])


@contextlib.contextmanager
def scratch_netns() -> Iterator[str]:
    """A namespace of the test's own (pinned by `ip netns add`), deleted afterwards."""
    name = f"podbwt-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=10)


def forge_peer_of(lab: LabNode, attacker: LabPod, victim: LabPod, scratch: str) -> None:
    """What a pod with NET_ADMIN can do in its own namespace: a veth pair named eth0 whose
    ifindex and peer index are those of the victim's eth0 and host veth. The attacker's real
    eth0 is parked in a scratch namespace meanwhile and comes back as `real0`."""
    victim_eth0 = next(link for link in links_in(victim) if link["ifname"] == "eth0")["ifindex"]
    victim_host = host_ifindex(victim.host_veth)
    ns = attacker.netns_path
    # `ip link set netns` takes a name under /var/run/netns or a pid: a process in the pod.
    holder = lab.run_in_pod(attacker, ["sleep", "600"])
    ip_in(ns, "link", "set", "eth0", "netns", scratch)
    ip_in(
        ns, "link", "add", "name", "eth0", "index", str(victim_eth0),
        "type", "veth", "peer", "name", "evil1", "index", str(victim_host),
    )
    ip_in(ns, "link", "set", "eth0", "up")
    tc_probe.ip("-n", scratch, "link", "set", "eth0", "netns", str(holder.pid), "name", "real0")
    ip_in(ns, "link", "set", "real0", "up")


def test_a_pod_cannot_put_its_limit_on_another_pods_veth(lab_factory, agent_factory) -> None:
    lab: LabNode = lab_factory()
    victim, attacker = lab.up(
        [
            PodSpec("victim", "shop", {"kubernetes.io/ingress-bandwidth": "50M"}),
            PodSpec("attacker", "evil", {"kubernetes.io/ingress-bandwidth": "1M", "kubernetes.io/egress-bandwidth": "2M"}),
        ],
        pod_events=False,
    )
    with scratch_netns() as scratch:
        forge_peer_of(lab, attacker, victim, scratch)
        agent = agent_factory(lab, ["--resync-interval", "1"])
        wait_for(
            lambda: agent.sample("podbw_shaping_state", namespace="evil", pod="attacker", direction="ingress", state="applied") == 1,
            10.0,
            what="the attacker's limit applied somewhere",
        )
        # Several resyncs: the victim's veth must keep the victim's limit through all of them.
        for _ in range(4):
            assert tc_probe.tbf_rate(victim.host_veth) == 50_000_000 // 8
            time.sleep(0.5)
        # The attacker's limit lands on its own (real) host veth and its real interface.
        assert tc_probe.tbf_rate(attacker.host_veth) == 1_000_000 // 8
        assert tc_probe.tbf_rate("real0", attacker.netns_path) == 2_000_000 // 8
        assert tc_probe.tbf_rate("eth0", attacker.netns_path) is None, "the forged eth0 is not the pod's veth to the host"
        info = agent.scrape()
        hosts = {dict(labels).get("pod"): dict(labels).get("host_interface") for (name, labels) in info if name == "podbw_pod_info"}
        assert hosts == {"victim": victim.host_veth, "attacker": attacker.host_veth}


LIMITS = {"kubernetes.io/ingress-bandwidth": "10M", "kubernetes.io/egress-bandwidth": "20M"}


def test_an_agent_started_without_the_runtime_lifts_no_limit(lab_factory, agent_factory) -> None:
    lab: LabNode = lab_factory()
    pod, other = lab.up([PodSpec("web", "shop", LIMITS), PodSpec("db", "shop", LIMITS)], pod_events=False)
    first = agent_factory(lab)
    wait_for(lambda: tc_probe.tbf_rate(pod.host_veth) == 10_000_000 // 8 and tc_probe.tbf_rate("eth0", other.netns_path), 10.0, what="limits")
    assert first.stop() == 0
    lab.stop_cri_server()

    # The runtime's socket is gone while the agent starts (and resyncs every second).
    agent = agent_factory(lab, ["--resync-interval", "1"], wait_path="/healthz")
    time.sleep(3.0)
    for lab_pod in (pod, other):
        assert tc_probe.tbf_rate(lab_pod.host_veth) == 10_000_000 // 8
        assert tc_probe.tbf_rate("eth0", lab_pod.netns_path) == 20_000_000 // 8
    status, body = agent.get("/readyz")
    assert status == 503 and "cri" in body, body
    assert agent.sample("podbw_discovery_up", source="cri") == 0

    lab.start_cri_server()
    wait_for(lambda: agent.get("/readyz")[0] == 200, 10.0, what="ready once the runtime answers")
    # /metrics renders once per sample pass: the gauge follows within a second.
    wait_for(lambda: agent.sample("podbw_discovery_up", source="cri") == 1, 3.0, what="discovery_up 1")


def test_the_runtime_going_away_is_noticed_and_its_return_repairs_drift_at_once(lab_factory, agent_factory) -> None:
    lab: LabNode = lab_factory()
    (pod,) = lab.up([PodSpec("web", "shop", LIMITS)], pod_events=False)
    agent = agent_factory(lab, ["--resync-interval", "3600"])
    wait_for(lambda: tc_probe.tbf_rate(pod.host_veth) == 10_000_000 // 8, 10.0, what="limit")
    lab.stop_cri_server()
    wait_for(lambda: agent.get("/readyz")[0] == 503, 10.0, what="not ready without the runtime")
    wait_for(lambda: agent.sample("podbw_discovery_up", source="cri") == 0, 3.0, what="discovery_up 0")
    tc_probe.tc("qdisc", "del", "dev", pod.host_veth, "root")  # drift while the runtime is away
    time.sleep(1.0)
    assert tc_probe.tbf_rate(pod.host_veth) is None
    lab.start_cri_server()
    wait_for(lambda: agent.get("/readyz")[0] == 200, 10.0, what="ready once the runtime answers")
    wait_for(lambda: tc_probe.tbf_rate(pod.host_veth) == 10_000_000 // 8, 3.0, what="the limit back without a resync")


@contextlib.contextmanager
def runtime_says(lab: LabNode, edit) -> Iterator[None]:
    """Make the lab's CRI server answer from an edited state file, and put the real one back
    before the lab tears its pods down (teardown trusts the state file's paths)."""
    from agent.lab.state import read_state, state_lock, write_state

    with state_lock(lab.config):
        original = read_state(lab.config)
        assert original is not None
        edited = read_state(lab.config)
        edit(edited)
        write_state(lab.config, edited)
    try:
        yield
    finally:
        with state_lock(lab.config):
            write_state(lab.config, original)


def test_the_hosts_namespace_is_never_a_pod_whatever_the_runtime_says(lab_factory, agent_factory) -> None:
    lab: LabNode = lab_factory()
    web, node_agent = lab.up(
        [PodSpec("web", "shop", LIMITS), PodSpec("node-agent", "kube-system", LIMITS, host_network=True)],
        pod_events=False,
    )
    with scratch_netns() as scratch:

        def lie(state) -> None:
            for pod in state.pods:
                if pod.name == "node-agent":
                    pod.host_network = False  # network mode POD, but the pin is the host's namespace
            stray = LabPod(**{**web.to_dict(), "sandbox_id": "f" * 64, "uid": "stray-uid", "name": "stray"})
            stray.netns_path = f"/var/run/netns/{scratch}"  # outside the runtime's netns directory
            state.pods.append(stray)

        with runtime_says(lab, lie):
            agent = agent_factory(lab)
            wait_for(lambda: tc_probe.tbf_rate(web.host_veth) == 10_000_000 // 8, 10.0, what="the real pod shaped")
            wait_for(lambda: agent.sample("podbw_pods") is not None, 5.0, what="a scrape")
            scrape = agent.scrape()
            pods = {dict(labels)["pod"] for (name, labels) in scrape if name == "podbw_pod_info"}
            assert pods == {"web"}, pods
            assert agent.sample("podbw_pods") == 1
            log = agent.log_text()
            assert "node-agent" in log and "host's own" in log
            assert "stray" in log and "outside the runtime's netns directory" in log
            assert podbw_roots_on_host(lab) == {web.host_veth}


def podbw_roots_on_host(lab: LabNode) -> set[str]:
    """Host devices with a podbw root qdisc, leaving out other labs' veths and every ifb (tests
    running beside this one have their own)."""
    run = lambda *argv: json.loads(subprocess.run(argv, check=True, capture_output=True, text=True, timeout=10).stdout)  # noqa: E731
    others = {
        link["ifname"]
        for link in run("ip", "-d", "-j", "link", "show")
        if link.get("master", lab.config.bridge) != lab.config.bridge or link.get("linkinfo", {}).get("info_kind") == "ifb"
    }
    roots = run("tc", "-j", "qdisc", "show")
    return {q["dev"] for q in roots if q.get("root") and q.get("handle") == "5062:" and q["dev"] not in others}


def pings(lab: LabNode, source: LabPod, target: LabPod) -> bool:
    from agent.lab.ping import ping_argv

    return lab.exec_in_pod(source, ping_argv(target.ip, timeout_s=1)).returncode == 0


def link_state(name: str) -> tuple[bool, str]:
    """(admin up, alias) of a host link."""
    out = subprocess.run(["ip", "-j", "link", "show", name], check=True, capture_output=True, text=True, timeout=10)
    link = json.loads(out.stdout)[0]
    return "UP" in link["flags"], link.get("ifalias", "")


def test_an_ifb_set_down_comes_back_up_within_one_resync(lab_factory, agent_factory) -> None:
    from agent.model.ownership import ifb_name

    lab: LabNode = lab_factory()
    web, peer = lab.up([PodSpec("web", "shop", LIMITS), PodSpec("peer", "shop")], pod_events=False)
    ifb = ifb_name(web.sandbox_id)
    agent = agent_factory(lab, ["--egress-mode", "ifb", "--resync-interval", "2"])
    wait_for(lambda: tc_probe.tbf_rate(ifb) == 20_000_000 // 8, 10.0, what="egress limit on the ifb")
    assert pings(lab, web, peer)

    tc_probe.ip("link", "set", ifb, "down")
    assert not pings(lab, web, peer), "a down ifb swallows the pod's egress"
    wait_for(lambda: link_state(ifb)[0], 4.0, what="the ifb set up again by the next resync")
    wait_for(lambda: pings(lab, web, peer), 3.0, what="the pod's egress flowing again")
    assert agent.sample("podbw_shaping_state", namespace="shop", pod="web", direction="egress", state="applied") == 1


def test_a_half_made_ifb_is_adopted_and_an_unowned_one_reported(lab_factory, agent_factory) -> None:
    from agent.model.ownership import ifb_name

    lab: LabNode = lab_factory()
    web, peer = lab.up([PodSpec("web", "shop", LIMITS), PodSpec("peer", "shop")], pod_events=False)
    ifb = ifb_name(web.sandbox_id)
    # What an agent killed between creating the pod's ifb and setting it up leaves: down, no alias.
    tc_probe.ip("link", "add", ifb, "type", "ifb")
    stray = "podbw" + secrets.token_hex(5)  # named like podbw's, no owner, no pod
    tc_probe.ip("link", "add", stray, "type", "ifb")
    try:
        agent = agent_factory(lab, ["--egress-mode", "ifb"])
        wait_for(lambda: tc_probe.tbf_rate(ifb) == 20_000_000 // 8, 10.0, what="egress limit on the adopted ifb")
        up, alias = link_state(ifb)
        assert up and alias.startswith("podbw cri=")
        wait_for(lambda: pings(lab, web, peer), 3.0, what="the pod's egress flowing")
        wait_for(lambda: agent.sample("podbw_unowned_ifbs") == 1, 5.0, what="the unowned ifb reported")
        assert tc_probe.link_exists(stray), "an ifb podbw cannot prove its own is never deleted"
        assert stray in agent.log_text()
    finally:
        subprocess.run(["ip", "link", "del", stray], check=False, timeout=10)


def test_a_pod_with_thousands_of_interfaces_exports_only_the_capped_few(lab_factory, agent_factory, tmp_path) -> None:
    lab: LabNode = lab_factory()
    flood, quiet = lab.up([PodSpec("flood", "evil", LIMITS), PodSpec("quiet", "shop", LIMITS)], pod_events=False)
    batch = tmp_path / "links.batch"
    batch.write_text("".join(f"link add f{i}a type veth peer name f{i}b\n" for i in range(1000)))
    ip_in(flood.netns_path, "-batch", str(batch))
    agent = agent_factory(lab, ["--max-interfaces-per-pod", "4"])
    omitted = agent.wait_for_sample("podbw_network_interfaces_omitted", 15.0, namespace="evil", pod="flood")
    assert omitted == 2001 - 4  # 2000 made by the pod, plus its eth0
    scrape = agent.scrape()
    per_pod = {}
    for name, labels in scrape:
        if name.startswith("podbw_network_") and name.endswith("_total"):
            per_pod.setdefault(dict(labels)["pod"], set()).add(dict(labels)["interface"])
    assert len(per_pod["flood"]) == 4 and "eth0" in per_pod["flood"]
    assert per_pod["quiet"] == {"eth0"}
    assert agent.healthz()[0] == 200
    assert tc_probe.tbf_rate(quiet.host_veth) == 10_000_000 // 8 and tc_probe.tbf_rate(flood.host_veth) == 10_000_000 // 8


def test_a_second_agent_for_the_same_runtime_waits_and_writes_nothing(lab_factory, agent_factory) -> None:
    from agent.model.ownership import ifb_name

    lab: LabNode = lab_factory()
    (web,) = lab.up([PodSpec("web", "shop", LIMITS)], pod_events=False)
    first = agent_factory(lab)  # egress mode pod
    wait_for(lambda: tc_probe.tbf_rate("eth0", web.netns_path) == 20_000_000 // 8, 10.0, what="egress in the pod")
    second = agent_factory(lab, ["--egress-mode", "ifb", "--resync-interval", "1"], wait_path="/healthz")
    wait_for(lambda: second.sample("podbw_node_lock_held") == 0, 5.0, what="the second agent on standby")
    time.sleep(2.5)  # a few of its resyncs
    assert not tc_probe.link_exists(ifb_name(web.sandbox_id)), "the waiting agent made an ifb"
    assert tc_probe.tbf_rate("eth0", web.netns_path) == 20_000_000 // 8
    status, body = second.get("/readyz")
    assert status == 503 and "standby" in body
    assert f"(pid {first.pid})" in second.log_text()
    # It still shows what the kernel holds, observed.
    assert second.sample("podbw_limit_rate_bytes_per_second", namespace="shop", pod="web", direction="ingress") == 1_250_000

    assert first.stop() == 0
    wait_for(lambda: tc_probe.tbf_rate(ifb_name(web.sandbox_id)) == 20_000_000 // 8, 5.0, what="the second agent taking over")
    wait_for(lambda: second.get("/readyz")[0] == 200, 5.0, what="ready once it holds the lock")
    assert tc_probe.tbf_rate("eth0", web.netns_path) is None, "mode ifb leaves nothing in the pod"


def test_two_invalid_values_alike_in_their_first_40_characters_are_both_reported(lab_factory, agent_factory, tmp_path) -> None:
    lab: LabNode = lab_factory()
    lab.up([PodSpec("web", "shop")], pod_events=False)
    overrides = tmp_path / "annotations.yaml"
    first, second = "a" * 45 + "1", "a" * 45 + "2"  # the same error text, cut at 40 characters
    overrides.write_text(f"shop/web: {{kubernetes.io/ingress-bandwidth: '{first}'}}\n")
    agent = agent_factory(lab, ["--annotations-file", str(overrides)])
    key = {"key": "kubernetes.io/ingress-bandwidth"}
    agent.wait_for_sample("podbw_annotation_errors_total", 5.0, predicate=lambda v: v == 1, **key)
    overrides.write_text(f"shop/web: {{kubernetes.io/ingress-bandwidth: '{second}'}}\n")
    agent.wait_for_sample("podbw_annotation_errors_total", 5.0, predicate=lambda v: v == 2, **key)
    lines = [line for line in agent.log_text().splitlines() if "annotation invalid" in line]
    assert len(lines) == 2 and all("annotation=kubernetes.io/ingress-bandwidth" in line for line in lines), lines


def test_two_sandboxes_on_one_namespace_do_not_flip_its_limit(lab_factory, agent_factory) -> None:
    lab: LabNode = lab_factory()
    (web,) = lab.up([PodSpec("web", "shop", LIMITS)], pod_events=False)

    def twin(state) -> None:
        record = {**web.to_dict(), "sandbox_id": "e" * 64, "uid": "twin-uid", "name": "twin\nERROR forged"}
        record["annotations"] = {"kubernetes.io/ingress-bandwidth": "30M"}
        record["created_at_ns"] = web.created_at_ns + 1  # younger: web keeps the namespace
        state.pods.append(LabPod(**record))

    with runtime_says(lab, twin):
        agent = agent_factory(lab, ["--resync-interval", "1"])
        wait_for(lambda: tc_probe.tbf_rate(web.host_veth) == 10_000_000 // 8, 10.0, what="web's limit")
        for _ in range(6):  # across several resyncs: never the twin's 30M
            assert tc_probe.tbf_rate(web.host_veth) == 10_000_000 // 8
            time.sleep(0.5)
        pods = {dict(labels)["pod"] for (name, labels) in agent.scrape() if name == "podbw_pod_info"}
        assert pods == {"web"}
        log = agent.log_text()
        (line,) = [line for line in log.splitlines() if "shares its network namespace" in line]
        assert "twin" in line and "ERROR forged" in line, line
        assert not any(line.startswith("ERROR forged") for line in log.splitlines()), "a pod name forged a log line"
