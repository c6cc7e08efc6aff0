"""Collector: exposition of fixed Snapshots against golden files, promtool lint, stale series.

Regenerate the golden files after an intended change with
`PODBW_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/unit/test_collector.py` and review
the diff.
"""

from __future__ import annotations

import itertools
import logging
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families

from agent.metrics.collector import PodbwCollector
from agent.metrics.collectors import COLLECTORS, DEFAULT_COLLECTORS
from agent.metrics.scrape import ProcessSource
from agent.model.direction import Direction, ShapingState
from agent.model.health import HealthData, HealthRecorder
from agent.model.pod import SOURCE_NETNS, Pod
from agent.model.kernel import Link, Qdisc
from agent.model.precedence import LimitSource
from agent.model.snapshot import DirectionSample, PodSample, Snapshot
from agent.model.status import DirectionStatus, PodShapingStatus
from agent.model.tbf_params import TbfParams

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("PODBW_UPDATE_GOLDEN") == "1"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

WEB = Pod(
    sandbox_id="sb-web",
    uid="0f7c2d9e-web",
    namespace="shop",
    name="web-7d9f",
    netns_path="/var/run/netns/11111111-aaaa",
    annotation_sources={
        "kubernetes.io/ingress-bandwidth": LimitSource.POD,
        "kubernetes.io/egress-bandwidth": LimitSource.NAMESPACE,
        "podbw.io/egress-burst": LimitSource.FILE,
    },
)
BATCH = Pod(
    sandbox_id="sb-batch",
    uid="5e1a-batch",
    namespace="jobs",
    name="batch-0",
    netns_path="/var/run/netns/22222222-bbbb",
    annotation_sources={"kubernetes.io/ingress-bandwidth": LimitSource.CRI},  # invalid: no limit in force
)
BARE = Pod(
    sandbox_id="33333333-cccc",
    uid="",
    namespace="",
    name="33333333-cccc",
    netns_path="/var/run/netns/33333333-cccc",
    source=SOURCE_NETNS,
)
PARAMS_10M = TbfParams(rate_bytes_per_s=1_250_000, burst_bytes=125_000, limit_bytes=131_250)
PARAMS_1G = TbfParams(rate_bytes_per_s=125_000_000, burst_bytes=1_250_000, limit_bytes=1_875_000)


def web_sample(ingress_state: ShapingState = ShapingState.APPLIED) -> PodSample:
    status = PodShapingStatus(
        sandbox_id=WEB.sandbox_id,
        host_interface="veth1a2b3c4d",
        pod_ifindex=2,
        directions={
            Direction.INGRESS: DirectionStatus(ingress_state, PARAMS_10M, "veth1a2b3c4d", False),
            Direction.EGRESS: DirectionStatus(ShapingState.APPLIED, PARAMS_1G, "eth0", True),
        },
    )
    eth0 = Link(
        ifindex=2, name="eth0", peer_ifindex=14, peer_netnsid=0, kind="veth",
        rx_bytes=123_456_789, rx_packets=90_000, rx_errors=0, rx_dropped=3,
        tx_bytes=9_876_543, tx_packets=45_000, tx_errors=1, tx_dropped=0,
    )
    ingress_tbf = Qdisc(
        ifindex=14, handle=0x50620000, parent=0xFFFFFFFF, kind="tbf", bytes=123_000_000,
        packets=89_000, drops=12, overlimits=3_400, requeues=0, backlog_bytes=4_542,
        backlog_packets=3,
    )
    egress_tbf = Qdisc(
        ifindex=2, handle=0x50620000, parent=0xFFFFFFFF, kind="tbf", bytes=9_800_000,
        packets=44_900, drops=0, overlimits=0, requeues=1,
    )
    return PodSample(
        pod=WEB,
        shaping=status,
        links=(eth0,),
        directions={
            Direction.INGRESS: DirectionSample(ingress_tbf, 1_187_500.5, 1_250_000.0),
            Direction.EGRESS: DirectionSample(egress_tbf, 2_048.0, 65_536.25),
        },
    )


def batch_sample() -> PodSample:
    status = PodShapingStatus(
        sandbox_id=BATCH.sandbox_id,
        host_interface="vethbatch01",
        pod_ifindex=2,
        directions={
            Direction.INGRESS: DirectionStatus(
                ShapingState.INVALID, None, "", False, "kubernetes.io/ingress-bandwidth: 10Mbps"
            ),
            Direction.EGRESS: DirectionStatus(ShapingState.UNLIMITED),
        },
    )
    return PodSample(
        pod=BATCH,
        shaping=status,
        links=(Link(2, "eth0", rx_bytes=1_000, rx_packets=10, tx_bytes=2_000, tx_packets=20),),
        directions={
            Direction.INGRESS: DirectionSample(None, 0.0, 0.0),
            Direction.EGRESS: DirectionSample(None, 0.0, 512.0),
        },
    )


def bare_sample() -> PodSample:
    status = PodShapingStatus(
        sandbox_id=BARE.sandbox_id,
        directions={
            Direction.INGRESS: DirectionStatus(
                ShapingState.FOREIGN, PARAMS_10M, "vethbare", False, "root qdisc 1: is htb"
            ),
            Direction.EGRESS: DirectionStatus(
                ShapingState.ERROR, PARAMS_10M, "eth0", True, "No such device"
            ),
        },
    )
    return PodSample(
        pod=BARE,
        shaping=status,
        links=(Link(2, "eth0"),),
        directions={
            Direction.INGRESS: DirectionSample(None, 0.0, 0.0),
            Direction.EGRESS: DirectionSample(None, 0.0, 0.0),
        },
        links_omitted=3,  # a pod with more interfaces than the cap
    )


# Snapshot 1: two CRI pods. Snapshot 2: batch-0 gone, web's ingress now foreign, a bare netns pod.
SNAPSHOT_TWO_PODS = Snapshot(
    taken_at_monotonic_s=1_000.0, interval_s=1.0, pods=(web_sample(), batch_sample()),
    sample_duration_s=0.004,
)
SNAPSHOT_CHURN = Snapshot(
    taken_at_monotonic_s=1_001.0, interval_s=2.0,
    pods=(web_sample(ShapingState.FOREIGN), bare_sample()), sample_duration_s=0.003,
)


def fixed_health() -> HealthData:
    health = HealthRecorder()
    for duration_s in (0.0008, 0.004, 0.004, 0.012, 3.0):
        health.sample_done(duration_s, 1_000.0)
    for latency_s in (0.02, 0.3, 45.0):
        health.reconcile_latency(latency_s)
    health.annotation_error("kubernetes.io/ingress-bandwidth")
    health.annotation_error("kubernetes.io/ingress-bandwidth")
    health.annotation_error("podbw.io/egress-latency")
    health.shaping_operation("replace", "ok")
    health.shaping_operation("replace", "ok")
    health.shaping_operation("delete", "error")
    health.set_discovery_up("cri", True)
    health.set_discovery_up("netns", False)
    health.set_discovery_up("kubernetes", False)
    health.set_unowned_ifbs(2)
    for result in ("ok", "ok", "rate_limited"):
        health.pod_event(result)
    return health.data()


def ticking_clock(step_s: float = 0.25):
    """A perf_counter stand-in: every read is `step_s` later, so each collector takes `step_s`."""
    ticks = itertools.count()
    return lambda: next(ticks) * step_s


GOLDEN_COLLECTORS = DEFAULT_COLLECTORS - {"process"}
"""process_* describes the test process itself; it has a test of its own below."""


def render(snapshot: Snapshot | None, **kwargs) -> str:
    registry = CollectorRegistry()
    kwargs.setdefault("collectors", GOLDEN_COLLECTORS)
    kwargs.setdefault("revision", "0123abc")
    kwargs.setdefault("python_version", "3.11.99")
    collector = PodbwCollector(lambda: snapshot, fixed_health, version="1.2.3", clock=ticking_clock(), **kwargs)
    registry.register(collector)
    return generate_latest(registry).decode()


def check_golden(name: str, text: str) -> None:
    path = GOLDEN_DIR / name
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with PODBW_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"exposition differs from {path}; review, then update it"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def labels(**kw: str) -> frozenset:
    return frozenset(kw.items())


BUILD = labels(version="1.2.3", revision="0123abc", python_version="3.11.99")


@pytest.mark.parametrize(
    ("golden", "snapshot"),
    [("metrics_two_pods.prom", SNAPSHOT_TWO_PODS), ("metrics_churn.prom", SNAPSHOT_CHURN)],
)
def test_exposition_matches_golden(golden: str, snapshot: Snapshot) -> None:
    check_golden(golden, render(snapshot))


@pytest.mark.parametrize("golden", ["metrics_two_pods.prom", "metrics_churn.prom"])
def test_golden_passes_promtool(golden: str) -> None:
    if not os.access(PROMTOOL, os.X_OK):
        pytest.skip(f"promtool not found at {PROMTOOL} (install prometheus to lint the exposition)")
    text = (GOLDEN_DIR / golden).read_text()
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_values_and_names_are_as_designed() -> None:
    got = samples(render(SNAPSHOT_TWO_PODS))
    web_in = dict(namespace="shop", pod="web-7d9f", direction="ingress")
    assert got[("podbw_limit_rate_bytes_per_second", labels(**web_in))] == 1_250_000
    assert got[("podbw_limit_burst_bytes", labels(**web_in))] == 125_000
    assert got[("podbw_limit_queue_bytes", labels(**web_in))] == 131_250
    assert got[("podbw_throughput_bytes_per_second", labels(**web_in))] == 1_187_500.5
    assert got[("podbw_throughput_peak_bytes_per_second", labels(**web_in))] == 1_250_000
    assert got[("podbw_qdisc_drops_total", labels(**web_in, kind="tbf"))] == 12
    assert got[("podbw_qdisc_backlog_bytes", labels(**web_in, kind="tbf"))] == 4_542
    eth0 = dict(namespace="shop", pod="web-7d9f", interface="eth0")
    assert got[("podbw_network_receive_bytes_total", labels(**eth0))] == 123_456_789
    assert got[("podbw_network_transmit_errors_total", labels(**eth0))] == 1
    info = labels(namespace="shop", pod="web-7d9f", uid="0f7c2d9e-web",
                  netns="/var/run/netns/11111111-aaaa", host_interface="veth1a2b3c4d")
    assert got[("podbw_pod_info", info)] == 1
    assert got[("podbw_pods", labels())] == 2
    assert got[("podbw_build_info", BUILD)] == 1
    assert got[("podbw_annotation_errors_total", labels(key="kubernetes.io/ingress-bandwidth"))] == 2
    assert got[("podbw_shaping_operations_total", labels(op="delete", result="error"))] == 1
    assert got[("podbw_discovery_up", labels(source="netns"))] == 0
    assert got[("podbw_sample_duration_seconds_count", labels())] == 5
    assert got[("podbw_sample_duration_seconds_bucket", labels(le="0.005"))] == 3
    assert got[("podbw_sample_duration_seconds_bucket", labels(le="+Inf"))] == 5
    assert got[("podbw_reconcile_latency_seconds_bucket", labels(le="30.0"))] == 2


def test_limit_source_is_one_for_the_rate_in_force_only() -> None:
    two = samples(render(SNAPSHOT_TWO_PODS))
    sources = {k[1]: v for k, v in two.items() if k[0] == "podbw_limit_source"}
    assert sources == {
        labels(namespace="shop", pod="web-7d9f", direction="ingress", source="pod"): 1,
        labels(namespace="shop", pod="web-7d9f", direction="egress", source="namespace"): 1,
    }  # batch-0's ingress is invalid: its rate is not in force; its egress asks for none
    churn = samples(render(SNAPSHOT_CHURN))
    sources = {k[1]: v for k, v in churn.items() if k[0] == "podbw_limit_source"}
    # web's ingress is foreign now; the bare netns pod has no sources.
    assert sources == {labels(namespace="shop", pod="web-7d9f", direction="egress", source="namespace"): 1}
    assert two[("podbw_discovery_up", labels(source="kubernetes"))] == 0


def test_shaping_state_is_one_hot_over_all_five_states() -> None:
    got = samples(render(SNAPSHOT_TWO_PODS))
    for pod, direction, current in [
        ("web-7d9f", "ingress", "applied"), ("batch-0", "ingress", "invalid"),
        ("batch-0", "egress", "unlimited"),
    ]:
        ns = "shop" if pod == "web-7d9f" else "jobs"
        states = {
            dict(k[1])["state"]: v for k, v in got.items()
            if k[0] == "podbw_shaping_state"
            and dict(k[1])["pod"] == pod and dict(k[1])["direction"] == direction
            and dict(k[1])["namespace"] == ns
        }
        assert states == {s.value: float(s.value == current) for s in ShapingState}


def test_limits_only_for_applied_directions_and_qdisc_only_when_found() -> None:
    got = samples(render(SNAPSHOT_CHURN))
    names_by_pod_direction = {
        (dict(k[1]).get("pod"), dict(k[1]).get("direction"), k[0]) for k in got
    }
    # web's ingress is foreign now: its requested params are not "the limit in force".
    assert ("web-7d9f", "ingress", "podbw_limit_rate_bytes_per_second") not in names_by_pod_direction
    assert ("web-7d9f", "egress", "podbw_limit_rate_bytes_per_second") in names_by_pod_direction
    assert ("33333333-cccc", "egress", "podbw_limit_rate_bytes_per_second") not in names_by_pod_direction
    assert ("33333333-cccc", "egress", "podbw_qdisc_bytes_total") not in names_by_pod_direction


def test_vanished_pod_series_are_absent() -> None:
    text = render(SNAPSHOT_CHURN)
    assert "batch-0" not in text and 'namespace="jobs"' not in text
    assert samples(text)[("podbw_pods", labels())] == 2


def test_help_states_the_sample_interval_and_bytes() -> None:
    one_s = render(SNAPSHOT_TWO_PODS)
    assert "sampled every 1s" in one_s
    assert "sampled every 2s" in render(SNAPSHOT_CHURN)
    before_first_sample = render(None, interval_s=5.0)
    assert "sampled every 5s" in before_first_sample
    throughput_help = next(
        line for line in one_s.splitlines()
        if line.startswith("# HELP podbw_throughput_bytes_per_second ")
    )
    assert "bytes per second (bytes, not bits)" in throughput_help


def test_no_snapshot_yet_renders_agent_metrics_only() -> None:
    got = samples(render(None))
    assert not any("pod" in dict(k[1]) for k in got)
    assert ("podbw_pods", labels()) not in got  # unknown, not zero
    assert got[("podbw_build_info", BUILD)] == 1
    assert got[("podbw_discovery_up", labels(source="cri"))] == 1


def test_pods_count_provider_overrides_snapshot_length() -> None:
    got = samples(render(SNAPSHOT_TWO_PODS, pods_count=lambda: 7))
    assert got[("podbw_pods", labels())] == 7


def test_counter_names_keep_total_in_both_formats() -> None:
    registry = CollectorRegistry()
    registry.register(PodbwCollector(lambda: SNAPSHOT_TWO_PODS, fixed_health, version="x"))
    text = generate_latest(registry).decode()
    assert "# TYPE podbw_network_receive_bytes_total counter" in text
    assert "podbw_network_receive_bytes_total{" in text
    assert "_total_total" not in text
    om = generate_openmetrics(registry).decode()
    assert "# TYPE podbw_network_receive_bytes counter" in om
    assert "podbw_network_receive_bytes_total{" in om
    families = {f.name: f for f in parse_om(om)}  # the OpenMetrics parser validates structure
    assert families["podbw_pod"].type == "info"
    assert families["podbw_shaping_state"].type == "gauge"


def test_describe_reads_neither_snapshot_nor_health() -> None:
    def boom():
        raise AssertionError("describe() must not read providers")

    collector = PodbwCollector(boom, boom, boom, version="x")
    registry = CollectorRegistry()
    registry.register(collector)  # calls describe()
    described = list(collector.describe())
    assert all(not family.samples for family in described)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(PodbwCollector(boom, boom, version="y"))


def test_describe_names_match_collect() -> None:
    collector = PodbwCollector(lambda: SNAPSHOT_TWO_PODS, fixed_health, version="x")
    described = [(f.name, f.type) for f in collector.describe()]
    collected = [(f.name, f.type) for f in collector.collect()]
    assert described == collected


def test_collect_builds_fresh_families_each_call() -> None:
    current: list[Snapshot] = [SNAPSHOT_TWO_PODS]
    collector = PodbwCollector(lambda: current[0], fixed_health, version="x")
    registry = CollectorRegistry()
    registry.register(collector)
    assert "batch-0" in generate_latest(registry).decode()
    current[0] = SNAPSHOT_CHURN
    assert "batch-0" not in generate_latest(registry).decode()


# ---- the collector framework: switches, meta-metrics, one failure contained -----------------------

FAMILIES_OF = {
    "network": "podbw_network_receive_bytes_total",
    "qdisc": "podbw_qdisc_drops_total",
    "limit": "podbw_limit_rate_bytes_per_second",
    "throughput": "podbw_throughput_bytes_per_second",
    "shaping_state": "podbw_shaping_state",
    "pod_info": "podbw_pod_info",
    "agent": "podbw_build_info",
    "process": "process_cpu_seconds_total",
}


def names_in(text: str) -> set[str]:
    return {name for name, _ in samples(text)}


def test_every_collector_has_a_family_here() -> None:
    assert set(FAMILIES_OF) == {entry.name for entry in COLLECTORS}


@pytest.mark.parametrize("off", sorted(FAMILIES_OF))
def test_a_collector_switched_off_leaves_out_its_families_only(off: str) -> None:
    text = render(SNAPSHOT_TWO_PODS, collectors=DEFAULT_COLLECTORS - {off})
    names = names_in(text)
    assert FAMILIES_OF[off] not in names
    for name, family in FAMILIES_OF.items():
        if name != off:
            assert family in names, (name, family)
    got = samples(text)
    assert ("podbw_scrape_collector_success", labels(collector=off)) not in got
    assert {dict(k[1])["collector"] for k in got if k[0] == "podbw_scrape_collector_success"} == DEFAULT_COLLECTORS - {off}


def test_unknown_collector_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown collectors: nope"):
        PodbwCollector(lambda: None, fixed_health, version="x", collectors={"network", "nope"})


def test_each_collector_reports_its_duration_and_success() -> None:
    got = samples(render(SNAPSHOT_TWO_PODS))
    for name in GOLDEN_COLLECTORS:
        assert got[("podbw_scrape_collector_duration_seconds", labels(collector=name))] == 0.25
        assert got[("podbw_scrape_collector_success", labels(collector=name))] == 1


def broken_snapshot() -> Snapshot:
    # A link that is not a Link: the network collector fails on it, no other one reads links.
    sample = web_sample()._replace(links=(object(),))
    return Snapshot(taken_at_monotonic_s=1.0, interval_s=1.0, pods=(sample, batch_sample()), sample_duration_s=0.0)


def test_a_failing_collector_is_left_out_whole_and_the_others_still_export(caplog: pytest.LogCaptureFixture) -> None:
    snapshot = broken_snapshot()
    registry = CollectorRegistry()
    registry.register(PodbwCollector(lambda: snapshot, fixed_health, version="x", collectors=GOLDEN_COLLECTORS))
    for _ in range(3):
        got = samples(generate_latest(registry).decode())
        assert got[("podbw_scrape_collector_success", labels(collector="network"))] == 0
        assert not any(name.startswith("podbw_network_") for name, _ in got), "no half of a collector"
        for name in GOLDEN_COLLECTORS - {"network"}:
            assert got[("podbw_scrape_collector_success", labels(collector=name))] == 1
        assert got[("podbw_limit_rate_bytes_per_second", labels(namespace="shop", pod="web-7d9f", direction="ingress"))]
    failures = [r for r in caplog.records if "collector network failed" in r.getMessage()]
    assert len(failures) == 1, "logged once, not at every scrape"


def test_a_collector_that_works_again_is_logged_and_exported(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.metrics.collector")
    current = [broken_snapshot()]
    registry = CollectorRegistry()
    registry.register(PodbwCollector(lambda: current[0], fixed_health, version="x", collectors={"network"}))
    generate_latest(registry)
    current[0] = SNAPSHOT_TWO_PODS
    got = samples(generate_latest(registry).decode())
    assert got[("podbw_scrape_collector_success", labels(collector="network"))] == 1
    assert ("podbw_network_receive_bytes_total", labels(namespace="shop", pod="web-7d9f", interface="eth0")) in got
    assert any("collector network works again" in r.getMessage() for r in caplog.records)


def unlimited_sample() -> PodSample:
    pod = Pod(sandbox_id="sb-free", uid="u-free", namespace="jobs", name="free-0", netns_path="/var/run/netns/free")
    status = PodShapingStatus(
        sandbox_id=pod.sandbox_id, host_interface="vethfree",
        directions={d: DirectionStatus(ShapingState.UNLIMITED) for d in Direction},
    )
    return PodSample(
        pod=pod, shaping=status, links=(Link(2, "eth0", rx_bytes=5, tx_bytes=6),),
        directions={d: DirectionSample(None, 1.0, 2.0) for d in Direction},
    )


@pytest.mark.parametrize("unlimited_pods", [True, False])
def test_unlimited_pods_switch(unlimited_pods: bool) -> None:
    snapshot = Snapshot(1.0, 1.0, (web_sample(), batch_sample(), unlimited_sample()), 0.0)
    got = samples(render(snapshot, unlimited_pods=unlimited_pods))
    per_family = {
        name: {dict(key)["pod"] for n, key in got if n == name}
        for name in ("podbw_network_receive_bytes_total", "podbw_throughput_bytes_per_second",
                     "podbw_shaping_state", "podbw_pod_info")
    }
    # batch-0 asked for a limit (an invalid one): it is not unlimited, and keeps its counters.
    counted = {"web-7d9f", "batch-0", "free-0"} if unlimited_pods else {"web-7d9f", "batch-0"}
    assert per_family["podbw_network_receive_bytes_total"] == counted
    assert per_family["podbw_throughput_bytes_per_second"] == counted
    assert per_family["podbw_shaping_state"] == {"web-7d9f", "batch-0", "free-0"}
    assert per_family["podbw_pod_info"] == {"web-7d9f", "batch-0", "free-0"}


# ---- process_* and build info ------------------------------------------------------------------------


def fake_proc(root: Path, pid: str = "4242") -> ProcessSource:
    """A /proc with what ProcessCollector reads: btime, the pid's stat and limits, three fds."""
    (root / pid / "fd").mkdir(parents=True)
    (root / "stat").write_text("cpu  1 2 3 4\nbtime 1700000000\n")
    # Fields after "(comm)": state ppid ... utime(14) stime(15) ... starttime(22) vsize(23) rss(24).
    fields = ["S"] + ["0"] * 10 + ["250", "150"] + ["0"] * 6 + ["12345", "104857600", "2560"]
    (root / pid / "stat").write_text(f"{pid} (podbw) " + " ".join(fields) + " 0 0\n")
    (root / pid / "limits").write_text(
        "Limit                     Soft Limit           Hard Limit           Units\n"
        "Max open files            65536                1048576              files\n"
    )
    for fd in range(3):
        (root / pid / "fd" / str(fd)).write_text("")
    return ProcessSource(proc_root=str(root), pid=pid)


def test_process_metrics_come_from_the_proc_tree(tmp_path: Path) -> None:
    collector = PodbwCollector(
        lambda: None, fixed_health, version="x", collectors={"process"}, process=fake_proc(tmp_path)
    )
    registry = CollectorRegistry()
    registry.register(collector)
    got = samples(generate_latest(registry).decode())
    ticks = os.sysconf("SC_CLK_TCK")
    assert got[("process_cpu_seconds_total", labels())] == pytest.approx(400 / ticks)
    assert got[("process_virtual_memory_bytes", labels())] == 104857600
    assert got[("process_resident_memory_bytes", labels())] == 2560 * os.sysconf("SC_PAGE_SIZE")
    assert got[("process_start_time_seconds", labels())] == pytest.approx(1700000000 + 12345 / ticks)
    assert got[("process_open_fds", labels())] == 3
    assert got[("process_max_fds", labels())] == 65536


def test_process_metrics_that_cannot_be_read_are_left_out(tmp_path: Path) -> None:
    collector = PodbwCollector(
        lambda: None, fixed_health, version="x", collectors={"process"},
        process=ProcessSource(proc_root=str(tmp_path / "none"), pid="1"),
    )
    registry = CollectorRegistry()
    registry.register(collector)
    got = samples(generate_latest(registry).decode())
    assert not any(name.startswith("process_") for name, _ in got)
    assert got[("podbw_scrape_collector_success", labels(collector="process"))] == 1


def test_build_info_carries_version_revision_and_python() -> None:
    registry = CollectorRegistry()
    registry.register(PodbwCollector(lambda: None, fixed_health, version="0.1.0", collectors={"agent"}))
    got = samples(generate_latest(registry).decode())
    assert got[("podbw_build_info", labels(version="0.1.0", revision="unknown", python_version=platform.python_version()))] == 1
