"""The agent process's /metrics against independent observers: iproute2, tc and iperf3."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from typing import Callable

import pytest

from agent.lab import traffic
from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from agent.lab.state import LabPod
from tests.integration import tc_probe
from tests.integration.agent_process import AgentProcess, Scrape, parse_metrics, select
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.root

LIMIT_BITS_PER_S = 20_000_000
LIMITED = {
    "kubernetes.io/ingress-bandwidth": "20M",
    "kubernetes.io/egress-bandwidth": "20M",
}
SAMPLE_COUNT = "podbw_sample_duration_seconds_count"
THROUGHPUT = "podbw_throughput_bytes_per_second"

LINK_FIELDS = {  # metric part -> (iproute2 stats64 direction, field)
    "receive_bytes": ("rx", "bytes"),
    "receive_packets": ("rx", "packets"),
    "receive_errors": ("rx", "errors"),
    "receive_packets_dropped": ("rx", "dropped"),
    "transmit_bytes": ("tx", "bytes"),
    "transmit_packets": ("tx", "packets"),
    "transmit_errors": ("tx", "errors"),
    "transmit_packets_dropped": ("tx", "dropped"),
}
QDISC_FIELDS = ("bytes", "packets", "drops", "overlimits", "requeues")


def start_agent(agent_factory, lab: LabNode, interval_s: float) -> AgentProcess:
    return agent_factory(lab, ["--sample-interval", f"{interval_s:g}"])


def wait_applied(agent: AgentProcess, pod: LabPod, timeout_s: float = 15.0) -> Scrape:
    """Wait until both of the pod's qdiscs are sampled (limits applied and seen by a pass)."""

    def both() -> Scrape | None:
        scrape = agent.scrape()
        found = select(scrape, "podbw_qdisc_bytes_total", namespace=pod.namespace, pod=pod.name)
        return scrape if len(found) == 2 else None

    return wait_for(both, timeout_s, interval_s=0.1, what=f"qdisc series of {pod.key}")


def sample_count(agent: AgentProcess) -> float:
    return agent.sample(SAMPLE_COUNT) or 0.0


def wait_passes_after_now(agent: AgentProcess, timeout_s: float = 10.0) -> Scrape:
    """A scrape whose snapshot comes from a pass that *started* after this call.

    A pass may be running while we look; the one after it must begin later, so wait for the
    completed-pass count to move by two.
    """
    start = sample_count(agent)

    def moved() -> Scrape | None:
        scrape = agent.scrape()
        return scrape if (scrape.get((SAMPLE_COUNT, frozenset())) or 0) >= start + 2 else None

    return wait_for(moved, timeout_s, interval_s=0.05, what="two more sample passes")


def pod_keys(scrape: Scrape) -> set[tuple[str, str]]:
    return {(dict(lbl)["namespace"], dict(lbl)["pod"]) for lbl in select(scrape, "podbw_pod_info")}


def iproute2_links(lab: LabNode, pod: LabPod) -> dict[str, dict]:
    done = lab.exec_in_pod(pod, ["ip", "-s", "-j", "link", "show"])
    assert done.returncode == 0, done.stderr
    return {link["ifname"]: link for link in json.loads(done.stdout)}


def tc_root(device: str, netns_path: str | None) -> dict:
    root = tc_probe.root(device, netns_path)
    assert root is not None and root["handle"] == "5062:", root
    return root


# ---- counters -------------------------------------------------------------------------------


def test_counters_agree_with_iproute2_and_tc_within_one_interval(lab_factory, agent_factory) -> None:
    lab = lab_factory()
    client, server = lab.up([PodSpec("client", "bw", LIMITED), PodSpec("server", "bw")])
    interval_s = 0.5
    agent = start_agent(agent_factory, lab, interval_s)
    wait_applied(agent, client)

    iperf_server = traffic.start_server(lab, server)
    iperf_client = lab.run_in_pod(
        client, ["iperf3", "-c", server.ip, "-t", "4"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)  # traffic flowing: every byte counter is moving
        labels = {"namespace": client.namespace, "pod": client.name}
        before = agent.scrape()
        scraped_at = time.monotonic()
        links = iproute2_links(lab, client)
        egress_tc = tc_root("eth0", client.netns_path)
        ingress_tc = tc_root(client.host_veth, None)
        observed_s = time.monotonic() - scraped_at
        after = wait_passes_after_now(agent)
    finally:
        iperf_client.kill()
        iperf_server.kill()
        iperf_client.wait(5)
        iperf_server.wait(5)

    # The agent's value from the last pass before iproute2 read, iproute2's, and the agent's
    # from the first pass after: counters only grow, so iproute2 lies in between...
    def check(name: str, theirs: int, **extra: str) -> int:
        key = (name, frozenset({**labels, **extra}.items()))
        ours_before, ours_after = before[key], after[key]
        assert ours_before <= theirs <= ours_after, (name, extra, ours_before, theirs, ours_after)
        return int(theirs - ours_before)

    # ...and ahead of the earlier sample by at most what the limit lets through in one
    # interval plus the time iproute2 took (the sample is at most one interval old).
    rate_bytes_per_s = before[("podbw_limit_rate_bytes_per_second",
                               frozenset({**labels, "direction": "egress"}.items()))]
    assert rate_bytes_per_s == LIMIT_BITS_PER_S / 8
    one_interval_bytes = rate_bytes_per_s * (interval_s + observed_s) * 1.1 + 64 * 1024

    assert set(links) == {"lo", "eth0"}
    for part, (way, field) in LINK_FIELDS.items():
        gap = check(f"podbw_network_{part}_total", links["eth0"]["stats64"][way][field], interface="eth0")
        if part.endswith("bytes"):
            assert gap <= one_interval_bytes, (part, gap)
    for direction, observed in (("egress", egress_tc), ("ingress", ingress_tc)):
        assert observed["kind"] == "tbf"
        for field in QDISC_FIELDS:
            check(f"podbw_qdisc_{field}_total", observed[field], direction=direction, kind="tbf")
        gap = check("podbw_qdisc_bytes_total", observed["bytes"], direction=direction, kind="tbf")
        assert gap <= one_interval_bytes, (direction, gap)
    # The test means something only if traffic moved the counters between the two samples.
    moved = ("podbw_qdisc_bytes_total", frozenset({**labels, "direction": "egress", "kind": "tbf"}.items()))
    assert after[moved] - before[moved] > rate_bytes_per_s * interval_s * 0.5


# ---- throughput -----------------------------------------------------------------------------


class GaugeRecorder:
    """Scrapes in a thread and keeps one gauge value per sample pass (keyed by pass count)."""

    def __init__(self, agent: AgentProcess, read: Callable[[Scrape], float | None]) -> None:
        self.agent = agent
        self.read = read
        self.values: dict[float, float] = {}
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gauge-recorder", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                scrape = self.agent.scrape()
                count = scrape.get((SAMPLE_COUNT, frozenset()))
                value = self.read(scrape)
                if count is not None and value is not None:
                    self.values.setdefault(count, value)
            except BaseException as exc:  # reported by the test
                self.errors.append(exc)
                return
            self._stop.wait(0.1)

    def __enter__(self) -> GaugeRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def by_pass(self) -> list[float]:
        return [self.values[k] for k in sorted(self.values)]


@pytest.mark.parametrize("direction", ["egress", "ingress"])
def test_throughput_gauge_within_5_percent_of_iperf3(lab_factory, agent_factory, direction: str) -> None:
    lab = lab_factory()
    limited, peer = lab.up([PodSpec("limited", "bw", LIMITED), PodSpec("peer", "bw")])
    agent = start_agent(agent_factory, lab, 1.0)
    wait_applied(agent, limited)
    key = (THROUGHPUT, frozenset({"namespace": "bw", "pod": "limited", "direction": direction}.items()))

    seconds = 6
    with GaugeRecorder(agent, lambda s: s.get(key)) as recorder:
        started = len(recorder.values)
        # The client always receives (-R: the server sends), so its reports are the receiver's
        # count. egress: the limited pod sends; ingress: it receives.
        sender, receiver = (limited, peer) if direction == "egress" else (peer, limited)
        result = traffic.iperf(lab, receiver, sender, seconds, reverse=True)
        per_pass = recorder.by_pass()[started:]
    assert not recorder.errors, recorder.errors

    # Passes fully inside the run: drop the idle ones, the first busy one (TCP ramp) and the
    # last (the run ends inside it).
    steady = [v for v in per_pass if v > LIMIT_BITS_PER_S / 8 * 0.1][1:-1]
    assert len(steady) >= seconds - 3, per_pass
    gauge_bytes_per_s = sum(steady) / len(steady)
    # iperf3's own steady state: its 0.5 s reports after the first two seconds (handshake and
    # ramp, which its whole-run average includes), without the last one (the run ends in it).
    assert result.receiver_side
    iperf_steady = result.intervals_bits_per_s[4:-1]
    assert len(iperf_steady) >= 4, result.intervals_bits_per_s
    iperf_goodput_bytes_per_s = sum(iperf_steady) / len(iperf_steady) / 8
    # The gauge counts what the interface counts: payload plus headers, which adds up to 4.6 %
    # (1514/1448) when every segment is a separate packet and ~0 when GSO keeps 64 KB skbs
    # whole. Either way it is within 5 % of iperf3's payload rate; retransmitted segments add
    # nothing, as TBF drops before the counted interface in both directions.
    ratio = gauge_bytes_per_s / iperf_goodput_bytes_per_s
    print(f"{direction}: gauge {gauge_bytes_per_s * 8:.0f} bit/s, iperf3 steady {iperf_goodput_bytes_per_s * 8:.0f} "
          f"bit/s (whole run {result.received_bits_per_s:.0f}), ratio {ratio:.4f}, "
          f"passes {[round(v) for v in per_pass]}")
    assert abs(ratio - 1) <= 0.05, (ratio, steady, iperf_steady)
    # And the limit holds: the gauge (L2 bytes) is not above the configured rate.
    assert gauge_bytes_per_s <= LIMIT_BITS_PER_S / 8 * 1.02, steady


# ---- pods that go away ----------------------------------------------------------------------


def test_series_of_a_deleted_pod_are_gone_on_the_next_scrape(lab_factory, agent_factory) -> None:
    lab = lab_factory()
    keep, doomed = lab.up([PodSpec("keep", "churn", LIMITED), PodSpec("doomed", "churn", LIMITED)])
    agent = start_agent(agent_factory, lab, 1.0)
    wait_applied(agent, keep)
    wait_applied(agent, doomed)

    lab.delete(doomed.key)
    # Scrape until the registry has dropped the pod (podbw_pods falls to 1): that very scrape,
    # and every later one, must carry no series of it.
    deadline = time.monotonic() + 10
    while True:
        text = agent.metrics_text()
        scrape = parse_metrics(text)
        if scrape[("podbw_pods", frozenset())] == 1:
            break
        assert time.monotonic() < deadline, "registry did not drop the deleted pod"
        time.sleep(0.02)
    assert 'pod="doomed"' not in text
    assert pod_keys(scrape) == {("churn", "keep")}
    assert select(scrape, "podbw_qdisc_bytes_total", pod="keep")
    assert pod_keys(wait_passes_after_now(agent)) == {("churn", "keep")}


def test_namespace_deleted_mid_sample_does_not_disturb_other_pods(lab_factory, agent_factory) -> None:
    lab = lab_factory()
    names = [f"p{i}" for i in range(6)]
    lab.up([PodSpec(n, "churn", LIMITED) for n in names])
    # A pass every 50 ms: a namespace disappears while a pass is under way.
    agent = start_agent(agent_factory, lab, 0.05)
    wait_for(lambda: len(pod_keys(agent.scrape())) == len(names), 15, what="all pods sampled")
    survivors = {("churn", n) for n in names[:3]}

    seen_during: list[set[tuple[str, str]]] = []
    stop = threading.Event()

    def scrape_loop() -> None:
        while not stop.is_set():
            seen_during.append(pod_keys(agent.scrape()))

    scraper = threading.Thread(target=scrape_loop, daemon=True)
    scraper.start()
    try:
        for n in names[3:]:
            lab.delete(f"churn/{n}")
        wait_for(lambda: pod_keys(agent.scrape()) == survivors, 10, what="deleted pods gone")
        wait_passes_after_now(agent)
    finally:
        stop.set()
        scraper.join(10)

    assert seen_during and all(survivors <= seen for seen in seen_during)
    status, body = agent.healthz()
    assert (status, body.strip()) == (200, "ok")
    log = agent.log_text()
    assert "Traceback" not in log
    # Nothing from sampling or serving metrics (a reconcile racing the deletion may log).
    assert not re.search(r"level=(WARN|ERROR) source=agent/(metrics|service)/", log), log
    # Survivors are still fully sampled (limits and qdiscs) after the churn.
    final = agent.scrape()
    for _, n in survivors:
        assert len(select(final, "podbw_qdisc_bytes_total", namespace="churn", pod=n)) == 2
