"""`podbw demo` end to end: it shows the pods with their limits, the live limit change made with
the real kubectl takes hold, and afterwards nothing of it is left (namespaces, links, processes,
files)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from agent.lab.cni import ifb_name as cni_ifb_name
from agent.lab.config import LabConfig
from agent.lab.node import LabNode
from agent.model.ownership import ifb_name as podbw_ifb_name
from tests.integration.conftest import new_lab_config
from tests.tools import kubectl

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
DURATION_S = 12
TIMEOUT_S = 90

POD_LINE = re.compile(r"^  pod (\S+) (?:ip=\S+ veth=(\S+)|host network.*?) sandbox=([0-9a-f]{64})")
AGENT_LINE = re.compile(r"^agent pid (\d+): metrics at (http://127\.0\.0\.1:\d+/metrics)")
TRAFFIC_LINE = re.compile(r"^  traffic .* \(iperf3 pids (\d+) -> (\d+)\)$")
CHANGE_LINE = re.compile(r"changing shop/web ingress limit 20M -> 40M")
TOOK_HOLD_LINE = re.compile(
    r"shop/web ingress limit is now 40M \(shown by the agent's /metrics [\d.]+ s after kubectl annotate returned\)"
)
EVENT_ROW = re.compile(r"\s(Normal|Warning)\s+(\w+)\s+pod/(\S+)\s+(.*)$")


@dataclass
class Cell:
    state: str
    limit: str
    now: str


@dataclass
class DemoRun:
    config: LabConfig
    returncode: int
    output: str

    def lines(self) -> list[str]:
        return self.output.splitlines()

    def tables(self) -> list[tuple[int, dict[tuple[str, str], Cell]]]:
        """(line number of the title, {(pod, direction): cells}) for every printed table."""
        tables = []
        lines = self.lines()
        for i, line in enumerate(lines):
            if not (line.startswith("POD ") and i > 0 and lines[i - 1].startswith("podbw demo")):
                continue
            rows = {}
            for row in lines[i + 1 :]:
                cells = re.split(r"\s{2,}", row.strip())
                if len(cells) < 6 or cells[1] not in ("ingress", "egress"):
                    break
                rows[(cells[0], cells[1])] = Cell(cells[2], cells[3], cells[4])
            tables.append((i - 1, rows))
        return tables


@pytest.fixture
def demo_lab() -> Iterator[LabConfig]:
    """A lab name of the test's own (a running `make demo` uses `demo`); removed after."""
    private = new_lab_config()
    config = LabConfig.for_name(private.name, netns_dir=os.path.join(private.state_dir, "netns"))
    yield config
    LabNode(config).down()  # normally a no-op: the demo removed it


@pytest.fixture
def demo_run(demo_lab: LabConfig) -> Iterator[DemoRun]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PODBW_KUBECTL": str(kubectl())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "demo", "--duration", str(DURATION_S), "--output", "plain",
         "--demo-lab", demo_lab.name],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the demo's own teardown, then the fixtures'
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    run = DemoRun(demo_lab, proc.returncode, output)
    yield run
    _kill_leftovers(run)


def _kill_leftovers(run: DemoRun) -> None:
    for proc in _processes_of(run):
        proc.kill()


def _pids(run: DemoRun) -> set[int]:
    pids = set()
    for line in run.lines():
        if m := AGENT_LINE.match(line):
            pids.add(int(m.group(1)))
        if m := TRAFFIC_LINE.match(line):
            pids.update((int(m.group(1)), int(m.group(2))))
    return pids


def _processes_of(run: DemoRun) -> list[psutil.Process]:
    """Live processes the demo started: its agent and iperf3s, or anything naming its lab."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        ours = run.config.state_dir in cmdline
        if proc.info["pid"] in _pids(run) and ("iperf3" in cmdline or "agent run" in cmdline):
            ours = True
        if ours and proc.info["pid"] != os.getpid():
            found.append(proc)
    return found


def test_demo_shows_limits_changes_one_live_and_leaves_nothing(demo_run: DemoRun) -> None:
    output = demo_run.output
    assert demo_run.returncode == 0, output

    pods = {m.group(1): (m.group(2), m.group(3)) for line in demo_run.lines() if (m := POD_LINE.match(line))}
    assert set(pods) == {"shop/web", "shop/api", "shop/cart", "jobs/batch", "jobs/broken", "kube-system/node-agent"}, output
    assert re.search(r"^agent pid \d+: metrics at http://127\.0\.0\.1:\d+/metrics", output, re.M), output
    assert len(_pids(demo_run)) == 1 + 2 * 5, output

    tables = demo_run.tables()
    assert len(tables) >= 3, output
    change_at = next(i for i, line in enumerate(demo_run.lines()) if CHANGE_LINE.search(line))
    took_hold_at = next(i for i, line in enumerate(demo_run.lines()) if TOOK_HOLD_LINE.search(line))
    assert change_at < took_hold_at
    lines = demo_run.lines()
    # The change went through the lab's API stand-in with the real kubectl, as on a cluster.
    kubeconfig = demo_run.config.kubeconfig
    assert lines[change_at + 1].endswith(
        f"$ kubectl --kubeconfig {kubeconfig} annotate pod -n shop web kubernetes.io/ingress-bandwidth=40M --overwrite"
    ), output
    assert lines[change_at + 2].endswith("pod/web annotated"), output
    before = [rows for at, rows in tables if at < change_at]
    after = [rows for at, rows in tables if at > took_hold_at]
    assert before and after, output

    # The five pods with their own namespaces, their limits and states; never the host one.
    first = before[0]
    assert {pod for pod, _ in first} == {"shop/web", "shop/api", "shop/cart", "jobs/batch", "jobs/broken"}
    expected = {
        ("shop/web", "ingress"): ("applied", "20.0 Mbit/s"),
        ("shop/web", "egress"): ("applied", "10.0 Mbit/s"),
        ("shop/api", "ingress"): ("applied", "50.0 Mbit/s"),
        ("shop/api", "egress"): ("unlimited", "-"),
        ("shop/cart", "ingress"): ("unlimited", "-"),
        ("shop/cart", "egress"): ("applied", "5.0 Mbit/s"),
        ("jobs/batch", "ingress"): ("unlimited", "-"),
        ("jobs/batch", "egress"): ("unlimited", "-"),
        ("jobs/broken", "ingress"): ("invalid", "-"),
        ("jobs/broken", "egress"): ("unlimited", "-"),
    }
    for rows in before:
        assert {key: (cell.state, cell.limit) for key, cell in rows.items()} == expected, output
    for rows in after:
        assert (rows[("shop/web", "ingress")].state, rows[("shop/web", "ingress")].limit) == ("applied", "40.0 Mbit/s")
        assert rows[("shop/api", "ingress")].limit == "50.0 Mbit/s"
    # Traffic flowed through the limited pods.
    last = tables[-1][1]
    assert last[("shop/api", "ingress")].now.endswith("Mbit/s"), output
    assert last[("shop/web", "ingress")].now.endswith("Mbit/s"), output

    # The agent's Events, read back with kubectl get events and shown as kubectl prints them.
    events = {(m.group(2), m.group(3)): (m.group(1), m.group(4)) for line in lines if (m := EVENT_ROW.search(line))}
    assert set(events) == {("InvalidBandwidthAnnotation", "broken"), ("BandwidthLimitChanged", "web")}, output
    kind, note = events[("InvalidBandwidthAnnotation", "broken")]
    assert kind == "Warning" and "kubernetes.io/ingress-bandwidth='10Mbps' is invalid" in note, output
    kind, note = events[("BandwidthLimitChanged", "web")]
    assert kind == "Normal" and note.startswith("ingress limited to 40 Mbit/s") and "was 20 Mbit/s" in note, output
    changed_at = next(i for i, line in enumerate(lines) if EVENT_ROW.search(line) and "BandwidthLimitChanged" in line)
    assert lines[changed_at - 2].endswith(
        f"$ kubectl --kubeconfig {kubeconfig} get events -n shop "
        "--field-selector involvedObject.name=web,reason=BandwidthLimitChanged"
    ), output
    assert took_hold_at < changed_at, output
    assert "Event for" not in output, output  # no "no ... Event ... yet"

    # The exit report.
    assert "metrics were served at http://127.0.0.1:" in output
    assert f"dashboards: {ROOT / 'dashboards'}/*.json" in output

    # Nothing left behind.
    config = demo_run.config
    assert not os.path.exists(config.state_dir), "lab state dir (and its netns pins) left behind"
    assert not os.path.exists(f"/sys/class/net/{config.bridge}"), "bridge left behind"
    for pod, (veth, sandbox_id) in pods.items():
        if veth:
            assert not os.path.exists(f"/sys/class/net/{veth}"), f"veth of {pod} left behind"
        for ifb in (podbw_ifb_name(sandbox_id), cni_ifb_name(config.network_name, sandbox_id)):
            assert not os.path.exists(f"/sys/class/net/{ifb}"), f"ifb {ifb} of {pod} left behind"
    assert _processes_of(demo_run) == [], "processes left behind"
