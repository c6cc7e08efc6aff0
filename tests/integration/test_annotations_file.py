"""The annotations file against the real agent on a lab node: the alias bomb is refused while
the agent keeps serving in little memory, netns-only pods are keyed by their netns name, and
the resync re-reads what the watch cannot see."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from tests.integration import tc_probe
from tests.integration.agent_process import AgentProcess
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.root

RSS_LIMIT_BYTES = 100 * 1024 * 1024
ADDRESS_SPACE_LIMIT_BYTES = 4 * 1024 * 1024 * 1024
"""A cap on the agent's virtual memory (it maps ~1 GiB, most of it reserved thread stacks and
glibc's 64 MiB per-thread malloc arenas): should the bomb ever expand again, the agent fails with
MemoryError instead of taking the machine's memory."""
RSS_WATCH_S = 3.0
REFUSED = "refused at line 1, column 3: anchor &a: anchors and aliases are not allowed; keeping the last valid overrides"


def bomb_text() -> str:
    """The classic billion laughs: 9**9 "lol"s from 333 bytes, as PyYAML would build it."""
    lines = ['- &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"- &{chr(97 + n)} [" + ",".join([f"*{chr(96 + n)}"] * 9) + "]" for n in range(1, 9)]
    return "\n".join(lines) + "\n"


class CappedAgentProcess(AgentProcess):
    """The agent under `prlimit --as`, which execs it: the pid is the agent's own."""

    def argv(self, port: int) -> list[str]:
        return ["prlimit", f"--as={ADDRESS_SPACE_LIMIT_BYTES}", "--", *super().argv(port)]


@pytest.fixture
def capped_agent(lab_factory):
    agents: list[AgentProcess] = []

    def make(lab: LabNode, extra_args: list[str]) -> AgentProcess:
        agent = CappedAgentProcess(lab, extra_args)
        agents.append(agent)
        return agent.start()

    yield make
    for agent in agents:
        agent.close()


def ingress_rate(pod) -> int | None:
    return tc_probe.tbf_rate(pod.host_veth)


def max_rss_bytes(pid: int, seconds: float) -> int:
    process = psutil.Process(pid)
    peak = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, process.memory_info().rss)
        time.sleep(0.05)
    return peak


def assert_serving_and_counted(agent: AgentProcess) -> None:
    assert agent.healthz()[0] == 200
    assert agent.sample("podbw_annotation_errors_total", key="annotations-file") == 1
    log = agent.log_text()
    assert log.count(REFUSED) == 1, agent.log_tail()
    assert "Traceback" not in log and "MemoryError" not in log, agent.log_tail()


def test_the_bomb_at_start_is_refused_and_the_agent_serves_in_little_memory(lab_factory, capped_agent, tmp_path) -> None:
    lab: LabNode = lab_factory()
    (pod,) = lab.up([PodSpec("a", "ns", {"kubernetes.io/ingress-bandwidth": "20M"})])
    path = tmp_path / "annotations.yaml"
    path.write_text(bomb_text())
    assert len(path.read_bytes()) < 370
    agent = capped_agent(lab, ["--annotations-file", str(path)])
    peak_rss = max_rss_bytes(agent.pid, RSS_WATCH_S)
    assert peak_rss < RSS_LIMIT_BYTES, f"RSS {peak_rss / 2**20:.0f} MiB"
    assert_serving_and_counted(agent)
    # The pod keeps what CRI says: nothing in the file was taken.
    assert ingress_rate(pod) == 20_000_000 // 8


def test_the_bomb_replacing_a_valid_file_keeps_the_last_valid_limits(lab_factory, capped_agent, tmp_path) -> None:
    lab: LabNode = lab_factory()
    (pod,) = lab.up([PodSpec("a", "ns", {"kubernetes.io/ingress-bandwidth": "20M"})])
    path = tmp_path / "annotations.yaml"
    path.write_text("ns/a: {kubernetes.io/ingress-bandwidth: 30M}\n")
    agent = capped_agent(lab, ["--annotations-file", str(path)])
    wait_for(lambda: ingress_rate(pod) == 30_000_000 // 8, 5.0, what="override applied")
    path.write_text(bomb_text())
    agent.wait_for_sample("podbw_annotation_errors_total", 5.0, key="annotations-file")
    peak_rss = max_rss_bytes(agent.pid, RSS_WATCH_S)
    assert peak_rss < RSS_LIMIT_BYTES, f"RSS {peak_rss / 2**20:.0f} MiB"
    assert_serving_and_counted(agent)
    assert ingress_rate(pod) == 30_000_000 // 8
    assert agent.wait_for_sample("podbw_limit_rate_bytes_per_second", 5.0, namespace="ns", pod="a", direction="ingress") == 30e6 / 8


def test_netns_only_pods_take_limits_keyed_by_their_netns_name(lab_factory, agent_factory, tmp_path) -> None:
    lab: LabNode = lab_factory()
    keyed, other = lab.up([PodSpec("keyed", "ns"), PodSpec("other", "ns")], start_cri=False)
    name = os.path.basename(keyed.netns_path)
    path = tmp_path / "annotations.yaml"
    path.write_text(f"{name}: {{kubernetes.io/ingress-bandwidth: 40M}}\nns/other: {{kubernetes.io/ingress-bandwidth: 10M}}\n")
    agent = agent_factory(lab, ["--cri-endpoint", "none", "--annotations-file", str(path)])
    wait_for(lambda: ingress_rate(keyed) == 40_000_000 // 8, 5.0, what="limit keyed by the netns name")
    rate = agent.wait_for_sample("podbw_limit_rate_bytes_per_second", 5.0, namespace="", pod=name, direction="ingress")
    assert rate == 40e6 / 8
    # A netns-only pod has no Kubernetes name: `namespace/name` keys cannot reach it.
    assert ingress_rate(other) is None
    assert agent.sample("podbw_annotation_errors_total", key="annotations-file") is None
    path.write_text(f"{name}: {{kubernetes.io/ingress-bandwidth: 50M}}\n")
    wait_for(lambda: ingress_rate(keyed) == 50_000_000 // 8, 2.0, what="netns-keyed limit changed live")


def test_the_resync_rereads_a_file_the_watch_cannot_see(lab_factory, agent_factory, tmp_path) -> None:
    lab: LabNode = lab_factory()
    (pod,) = lab.up([PodSpec("a", "ns")])
    path: Path = tmp_path / "parent" / "conf" / "annotations.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("ns/a: {kubernetes.io/ingress-bandwidth: 30M}\n")
    agent = agent_factory(lab, ["--annotations-file", str(path), "--resync-interval", "1"])
    wait_for(lambda: ingress_rate(pod) == 30_000_000 // 8, 5.0, what="override applied")
    # A directory above the watched one swapped: inotify reports nothing.
    (tmp_path / "parent").rename(tmp_path / "parent.old")
    path.parent.mkdir(parents=True)
    path.write_text("ns/a: {kubernetes.io/ingress-bandwidth: 40M}\n")
    wait_for(lambda: ingress_rate(pod) == 40_000_000 // 8, 3.0, what="re-read by the resync")
    assert "Traceback" not in agent.log_text()
