"""`podbw top --once` on a lab node: from an agent's /metrics, and sampling by itself
(observe-only: it reports what the kernel has and never writes)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from agent.model.annotations import INGRESS_BANDWIDTH
from tests.integration import tc_probe
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
PODS = [
    PodSpec("limited", "t", {INGRESS_BANDWIDTH: "10M"}),
    PodSpec("broken", "t", {INGRESS_BANDWIDTH: "10Mbps"}),
    PodSpec("free", "t"),
]


def closed_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        return f"http://127.0.0.1:{probe.getsockname()[1]}/metrics"


def run_top(lab: LabNode, url: str) -> tuple[dict[tuple[str, str], tuple[str, str]], str, str]:
    """{(pod, direction): (state, limit)}, the title line, and stderr of one `top --once`."""
    done = subprocess.run(
        [sys.executable, "-m", "agent", "top", "--once", "--url", url,
         "--cri-endpoint", f"unix://{lab.config.socket}", "--netns-dir", lab.config.netns_dir],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].split() == ["POD", "DIR", "STATE", "LIMIT", "NOW", "PEAK", "UTIL", "DROPS"], done.stdout
    rows = {}
    for line in lines[2:]:
        cells = re.split(r"\s{2,}", line.strip())
        rows[(cells[0], cells[1])] = (cells[2], cells[3])
    return rows, lines[0], done.stderr


def test_fallback_reports_requested_limits_as_not_applied_and_writes_nothing(lab_factory) -> None:
    lab = lab_factory()
    pods = {pod.key: pod for pod in lab.up(PODS)}

    rows, title, stderr = run_top(lab, closed_url())

    assert "sampling this node directly" in stderr
    assert "observe-only" in title
    assert rows == {
        ("t/limited", "ingress"): ("error", "-"),  # wanted, but no agent put it in the kernel
        ("t/limited", "egress"): ("unlimited", "-"),
        ("t/broken", "ingress"): ("invalid", "-"),
        ("t/broken", "egress"): ("unlimited", "-"),
        ("t/free", "ingress"): ("unlimited", "-"),
        ("t/free", "egress"): ("unlimited", "-"),
    }
    for pod in pods.values():
        root = tc_probe.root(pod.host_veth)
        assert root is None or root.get("handle") != "5062:", f"top wrote a qdisc on {pod.host_veth}"


def test_metrics_and_own_sample_show_the_same(lab_factory, agent_factory) -> None:
    lab = lab_factory()
    lab.up(PODS)
    agent = agent_factory(lab)
    wait_for(
        lambda: agent.sample(
            "podbw_limit_rate_bytes_per_second", namespace="t", pod="limited", direction="ingress"
        ),
        timeout_s=20,
        what="the agent's limit on t/limited",
    )

    remote, remote_title, _ = run_top(lab, f"{agent.base_url}/metrics")
    local, local_title, _ = run_top(lab, closed_url())

    assert agent.base_url in remote_title and "observe-only" in local_title
    assert remote[("t/limited", "ingress")] == ("applied", "10.0 Mbit/s")
    assert remote[("t/broken", "ingress")] == ("invalid", "-")
    assert local == remote
