"""Faults under a running agent process: every other pod stays shaped and exported."""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from agent.lab import traffic
from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from tests.integration import tc_probe
from tests.integration.agent_process import AgentProcess, select
from tests.integration.evil_cri import EvilCriServer, MuteSocket
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.root

IN_10M = {"kubernetes.io/ingress-bandwidth": "10M"}
BOTH = {"kubernetes.io/ingress-bandwidth": "20M", "kubernetes.io/egress-bandwidth": "10M"}


def rate_of(device: str, netns_path: str | None = None) -> int | None:
    root = tc_probe.root(device, netns_path)
    return root["options"]["rate"] if root and root["kind"] == "tbf" else None


def shaped(agent, namespace: str, pod: str, direction: str = "ingress") -> bool:
    return agent.sample("podbw_shaping_state", namespace=namespace, pod=pod, direction=direction, state="applied") == 1


def no_traceback(agent) -> None:
    assert "Traceback" not in agent.log_text(), agent.log_tail(60)


def test_live_limit_change_takes_hold_within_a_second_without_a_reset(lab_factory, agent_factory, tmp_path) -> None:
    lab: LabNode = lab_factory()
    target, peer = lab.up([PodSpec("target", "ns", {"kubernetes.io/ingress-bandwidth": "20M"}), PodSpec("peer", "ns")])
    overrides = tmp_path / "annotations.yaml"
    overrides.write_text("{}\n")
    agent = agent_factory(lab, ["--annotations-file", str(overrides)])
    wait_for(lambda: rate_of(target.host_veth) == 20_000_000 // 8, 5.0, what="initial limit")

    server = traffic.start_server(lab, target)
    results: list = []
    client = threading.Thread(target=lambda: results.append(traffic.run_client(lab, peer, target, seconds=6)))
    client.start()
    time.sleep(2.0)
    written = time.monotonic()
    overrides.write_text("ns/target: {kubernetes.io/ingress-bandwidth: 40M}\n")
    wait_for(lambda: rate_of(target.host_veth) == 40_000_000 // 8, 5.0, interval_s=0.01, what="new limit")
    took_s = time.monotonic() - written
    client.join(30)
    server.wait(10)
    assert took_s <= 1.0, f"the new limit took {took_s:.2f}s"
    (result,) = results  # run_client raises when iperf3 fails, e.g. on a connection reset
    late = result.intervals_bits_per_s[-3:]  # the last 1.5 s, well after the change
    assert sum(late) / len(late) > 30e6, f"throughput after the change: {result.intervals_bits_per_s}"
    assert agent.sample("podbw_limit_rate_bytes_per_second", namespace="ns", pod="target", direction="ingress") == 5e6
    no_traceback(agent)


def test_sigkill_and_restart_change_nothing_in_the_kernel(lab_factory, agent_factory) -> None:
    lab: LabNode = lab_factory()
    target, peer = lab.up([PodSpec("target", "ns", BOTH), PodSpec("peer", "ns")])
    agent = agent_factory(lab)
    wait_for(lambda: shaped(agent, "ns", "target", "egress") and shaped(agent, "ns", "target"), 5.0, what="shaped")
    before = tc_probe.root(target.host_veth)
    agent.kill()

    # While no agent runs the limit holds.
    result = traffic.iperf(lab, client=peer, server=target, seconds=2)
    assert result.received_bits_per_s < 20e6 * 1.05
    during = tc_probe.root(target.host_veth)
    assert during["handle"] == before["handle"] and during["bytes"] > before["bytes"]

    again = agent_factory(lab)
    wait_for(lambda: shaped(again, "ns", "target") and shaped(again, "ns", "target", "egress"), 5.0, what="adopted")
    after = tc_probe.root(target.host_veth)
    assert after["handle"] == "5062:" and after["bytes"] >= during["bytes"], "same qdisc, counters not reset"
    assert select(again.scrape(), "podbw_shaping_operations_total") == {}, "the restarted agent wrote nothing"


def test_sigterm_stops_within_two_seconds_and_leaves_limits(lab_factory, agent_factory) -> None:
    lab: LabNode = lab_factory()
    (pod,) = lab.up([PodSpec("a", "ns", IN_10M)])
    agent = agent_factory(lab)
    wait_for(lambda: shaped(agent, "ns", "a"), 5.0, what="shaped")
    started = time.monotonic()
    assert agent.stop() == 0
    assert time.monotonic() - started <= 2.0
    assert rate_of(pod.host_veth) == 10_000_000 // 8
    no_traceback(agent)


def test_cri_restart_keeps_known_pods_shaped_and_exported(lab_factory, agent_factory) -> None:
    lab: LabNode = lab_factory()
    lab.up([PodSpec("a", "ns", IN_10M), PodSpec("b", "ns")])
    agent = agent_factory(lab, ["--resync-interval", "1"])
    wait_for(lambda: shaped(agent, "ns", "a"), 5.0, what="shaped")

    lab.stop_cri_server()
    wait_for(lambda: agent.get("/readyz")[0] == 503, 5.0, what="readyz degraded")
    assert agent.get("/healthz")[0] == 200
    assert agent.sample("podbw_discovery_up", source="cri") == 0
    time.sleep(1.5)
    assert shaped(agent, "ns", "a") and agent.sample("podbw_pods") == 2

    lab.start_cri_server()
    wait_for(lambda: agent.get("/readyz")[0] == 200, 10.0, what="readyz recovered")
    new = lab.add(PodSpec("c", "ns", IN_10M))
    wait_for(lambda: rate_of(new.host_veth) == 10_000_000 // 8, 5.0, what="new pod shaped after recovery")
    no_traceback(agent)


def test_a_cri_server_that_never_answers_does_not_stall_the_agent(lab_factory, agent_factory) -> None:
    lab: LabNode = lab_factory()
    lab.up([PodSpec("a", "ns", IN_10M)], start_cri=False)
    mute = MuteSocket(lab.config.socket)
    try:
        agent = AgentProcess(lab, ["--cri-timeout", "0.5", "--resync-interval", "1", "--sample-interval", "0.5"])
        try:
            assert _start_without_ready(agent)
            status, body = agent.get("/readyz")
            assert status == 503 and "cri" in body
            count_before = agent.sample("podbw_sample_duration_seconds_count")
            threads_before = psutil.Process(agent.pid).num_threads()
            time.sleep(4.0)
            count_after = agent.sample("podbw_sample_duration_seconds_count")
            assert count_after - count_before >= 6, "the sampler keeps its 0.5 s interval"
            assert psutil.Process(agent.pid).num_threads() <= threads_before + 2, "no thread pile-up"
            assert agent.get("/healthz")[0] == 200
        finally:
            agent.close()
    finally:
        mute.stop()


def _start_without_ready(agent) -> bool:
    """Start an AgentProcess whose /readyz is expected to stay 503: wait for /healthz instead."""
    import subprocess

    from tests.integration.agent_process import REPO_ROOT, free_port

    agent.port = free_port()
    agent.proc = subprocess.Popen(
        agent.argv(agent.port), cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL, stdout=agent._log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if agent.get("/healthz", timeout_s=1.0)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def test_misbehaving_cri_answers_are_contained(lab_factory, agent_factory) -> None:
    lab: LabNode = lab_factory()
    lab.up([PodSpec("good", "ns", IN_10M), PodSpec("malformed", "ns", IN_10M)], start_cri=False)
    evil = EvilCriServer(lab.config.state_file, lab.config.socket)
    try:
        evil.service.malformed_info_for = {"malformed"}
        agent = agent_factory(lab, ["--resync-interval", "1"])
        wait_for(lambda: shaped(agent, "ns", "good"), 5.0, what="good pod shaped despite unknown fields")
        assert agent.sample("podbw_pods") == 1, "the pod with malformed info JSON is skipped"
        log = agent.log_text()
        assert "skipped" in log and "Traceback" not in log

        evil.service.huge_list_bytes = 20 * 1024 * 1024  # over the client's 16 MiB limit
        wait_for(lambda: agent.get("/readyz")[0] == 503, 5.0, what="huge answer reported")
        assert shaped(agent, "ns", "good"), "known pods stay shaped while answers are refused"
        evil.service.huge_list_bytes = 0
        wait_for(lambda: agent.get("/readyz")[0] == 200, 5.0, what="recovery")
        no_traceback(agent)
    finally:
        evil.stop()


def test_invalid_annotations_file_keeps_the_last_valid_configuration(lab_factory, agent_factory, tmp_path) -> None:
    lab: LabNode = lab_factory()
    (pod,) = lab.up([PodSpec("a", "ns")])
    overrides = tmp_path / "annotations.yaml"
    overrides.write_text("ns/a: {kubernetes.io/ingress-bandwidth: 30M}\n")
    agent = agent_factory(lab, ["--annotations-file", str(overrides)])
    wait_for(lambda: rate_of(pod.host_veth) == 30_000_000 // 8, 5.0, what="override applied")
    overrides.write_text("ns/a: {kubernetes.io/ingress-bandwidth: [unclosed\n")
    agent.wait_for_sample("podbw_annotation_errors_total", key="annotations-file")
    time.sleep(0.5)
    assert rate_of(pod.host_veth) == 30_000_000 // 8
    assert "keeping the last valid overrides" in agent.log_text()
    no_traceback(agent)


@pytest.mark.parametrize("damage", ["delete", "replace"])
def test_podbw_qdisc_damaged_by_someone_else_is_healed_within_a_resync(lab_factory, agent_factory, damage) -> None:
    lab: LabNode = lab_factory()
    (pod,) = lab.up([PodSpec("a", "ns", BOTH)])
    agent = agent_factory(lab, ["--resync-interval", "1"])
    wait_for(lambda: rate_of("eth0", pod.netns_path) == 10_000_000 // 8, 5.0, what="egress limit")
    if damage == "delete":
        tc_probe.tc("qdisc", "del", "dev", "eth0", "root", netns_path=pod.netns_path)
    else:
        tc_probe.tc("qdisc", "replace", "dev", "eth0", "root", "handle", "5062:", "tbf", "rate", "1mbit",
                    "burst", "10k", "latency", "50ms", netns_path=pod.netns_path)
    wait_for(lambda: rate_of("eth0", pod.netns_path) == 10_000_000 // 8, 2.5, what="healed")
    no_traceback(agent)


def test_a_deleted_veth_does_not_disturb_other_pods(lab_factory, agent_factory) -> None:
    lab: LabNode = lab_factory()
    victim, other = lab.up([PodSpec("victim", "ns", IN_10M), PodSpec("other", "ns", IN_10M)])
    agent = agent_factory(lab, ["--resync-interval", "1"])
    wait_for(lambda: shaped(agent, "ns", "victim") and shaped(agent, "ns", "other"), 5.0, what="shaped")
    tc_probe.ip("link", "del", victim.host_veth)
    wait_for(
        lambda: agent.sample("podbw_shaping_state", namespace="ns", pod="victim", direction="ingress", state="error") == 1,
        5.0, what="victim reported as error",
    )
    assert shaped(agent, "ns", "other")
    assert agent.get("/healthz")[0] == 200
    assert agent.sample("podbw_network_receive_bytes_total", namespace="ns", pod="other", interface="eth0") is not None
    no_traceback(agent)


def test_fifty_concurrent_scrapers_never_fail_and_the_sampler_keeps_its_interval(lab_factory, agent_factory) -> None:
    lab: LabNode = lab_factory()
    lab.up([PodSpec(f"p{i}", "ns", BOTH) for i in range(10)])
    agent = agent_factory(lab, ["--sample-interval", "0.5"])
    url = agent.base_url + "/metrics"
    stop_at = time.monotonic() + 6.0
    failures: list[str] = []
    scrapes = []

    def scraper() -> None:
        while time.monotonic() < stop_at:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    response.read()
                    scrapes.append(response.status)
            except Exception as err:  # any failure fails the test
                failures.append(repr(err))

    count_before = agent.sample("podbw_sample_duration_seconds_count")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        for _ in range(50):
            pool.submit(scraper)
    elapsed_s = time.monotonic() - started
    count_after = agent.sample("podbw_sample_duration_seconds_count")
    assert failures == []
    assert scrapes and set(scrapes) == {200}
    # No interval longer than 1.5x: at most one missed tick in the whole window.
    assert count_after - count_before >= elapsed_s / 0.5 - 2
