#!/usr/bin/env python3
"""Collection cost of podbw on a lab node, next to node_exporter on the same node (issue 4).

A lab with N pods (default 250), each with both `kubernetes.io/*-bandwidth` annotations, iperf3
traffic between a few pod pairs, the agent as a process (`--sample-interval 1`), and Debian's
node_exporter on loopback. Measured, in this order:

  1. bring-up: lab pods, agent ready, every limit applied and sampled;
  2. CPU of one full sample pass: the Sampler in this process against the same lab (its own
     NetlinkSocketPool, the agent's applied statuses), time.process_time() per
     sample_once() over 30 passes, one per second (as the lab is, then with every pod's
     counters moving before each pass); and the agent process's CPU (psutil) over 30 s divided by
     the passes it ran in that time;
  3. /metrics latency p50/p99 with 1 and 20 concurrent scrapers (threads, urllib, gzip as
     Prometheus asks for it), and the sample interval meanwhile (see `pass_times`);
  4. agent RSS (psutil, max over the run);
  5. node_exporter scraped in full and with `collect[]=netdev`, 50 scrapes each, and its RSS.

With --kubernetes the agent also runs its Kubernetes API source (`--kubeconfig`, `--node-name`)
against the lab's API stand-in, which serves the same pods (issue 13's cost of the API source).

It takes /tmp/podbw-bench.lock (flock(2), the lock `flock /tmp/podbw-bench.lock cmd` takes)
for the whole run, so it never overlaps with the shaping benchmark; don't wrap it in flock(1)
as well (a second open of the lock file would wait for itself). Everything it starts is torn
down in a finally. Needs root.

    .venv/bin/python bench/collect.py [--pods 250] [--kubernetes] [--output bench/results/collect.md]
"""

from __future__ import annotations

import argparse
import cProfile
import contextlib
import fcntl
import gzip
import io
import os
import platform
import re
import pstats
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import psutil  # noqa: E402
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from agent.lab import links, traffic  # noqa: E402
from agent.lab.config import LabConfig  # noqa: E402
from agent.lab.kube_process import ApiServerSettings  # noqa: E402
from agent.lab.node import LabNode  # noqa: E402
from agent.lab.spec import PodSpec  # noqa: E402
from agent.lab.state import LabPod  # noqa: E402
from agent.metrics.sampler import Sampler  # noqa: E402
from agent.model.direction import Direction, ShapingState  # noqa: E402
from agent.metrics.collector import PodbwCollector  # noqa: E402
from agent.model.health import HealthRecorder  # noqa: E402
from agent.service.metrics_body import GZIP_LEVEL  # noqa: E402
from agent.model.ownership import ifb_name  # noqa: E402
from agent.model.snapshot import Snapshot  # noqa: E402
from agent.model.status import DirectionStatus, PodShapingStatus  # noqa: E402
from agent.netlink.socket import NetlinkSocket, NetlinkSocketPool  # noqa: E402
from tests.integration.agent_process import AgentProcess, free_port, select  # noqa: E402

LOCK_PATH = "/tmp/podbw-bench.lock"
AGENT_HOOKS = str(REPO_ROOT / "bench" / "agent_hooks")
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "collect.md"
SCRAPE_HEADERS = {"Accept-Encoding": "gzip", "User-Agent": "podbw-bench/collect"}

# Issue 14's budgets (they replaced issue 4's 15 ms and 60 MB).
TARGET_PASS_CPU_MS = 25.0
TARGET_AGENT_CPU_MS_PER_S = 30.0
TARGET_RSS_MB = 96.0
TARGET_METRICS_VS_NODE_EXPORTER = 0.1
TARGET_INTERVAL_P99_FACTOR = 1.5


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- small statistics -----------------------------------------------------------------------


def calibrate_us() -> float:
    """Best of 5 x 2000 runs of sum(range(1000)), in µs: how fast this CPU runs Python right
    now (about 8-10 µs on a current desktop core), to scale the numbers below by."""
    import timeit

    return min(timeit.repeat("sum(range(1000))", repeat=5, number=2000)) / 2000 * 1e6


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# ---- the lock -------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_lock() -> Iterator[None]:
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for {LOCK_PATH} (another benchmark is running)")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# ---- lab ------------------------------------------------------------------------------------


def bench_lab_config() -> LabConfig:
    for _ in range(50):
        config = LabConfig.for_name(f"bc{secrets.token_hex(3)}")
        if links.addresses_in(config.subnet) or os.path.exists(config.state_dir):
            continue
        return LabConfig.for_name(config.name, netns_dir=os.path.join(config.state_dir, "netns"))
    raise RuntimeError("no free lab name/subnet")


def pod_specs(count: int, rate: str) -> list[PodSpec]:
    annotations = {"kubernetes.io/ingress-bandwidth": rate, "kubernetes.io/egress-bandwidth": rate}
    return [PodSpec(f"pod-{i:03d}", "bench", annotations) for i in range(count)]


@dataclass
class Traffic:
    procs: list[subprocess.Popen] = field(default_factory=list)

    def start(self, lab: LabNode, pods: list[LabPod], pairs: int, seconds: int) -> None:
        """iperf3 from pod 2k to pod 2k+1 for k < pairs, running in the background."""
        for k in range(pairs):
            client, server = pods[2 * k], pods[2 * k + 1]
            self.procs.append(traffic.start_server(lab, server))
            self.procs.append(lab.run_in_pod(
                client, ["iperf3", "-c", server.ip, "-t", str(seconds), "-i", "0"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self.procs.clear()


# ---- node_exporter --------------------------------------------------------------------------


class NodeExporter:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node_exporter exited with {self.proc.returncode}")
            with contextlib.suppress(OSError):
                fetch(self.url.replace("/metrics", "/"))
                return
            time.sleep(0.05)
        raise RuntimeError("node_exporter did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# ---- scraping -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scrape:
    start_s: float
    end_s: float
    wire_bytes: int

    @property
    def latency_s(self) -> float:
        return self.end_s - self.start_s


def fetch(url: str, timeout_s: float = 30.0) -> tuple[bytes, bool]:
    """(body as sent, whether it is gzip-encoded)."""
    request = urllib.request.Request(url, headers=SCRAPE_HEADERS)
    with urllib.request.urlopen(request, timeout=timeout_s) as resp:
        return resp.read(), resp.headers.get("Content-Encoding", "") == "gzip"


def scrape_once(url: str) -> Scrape:
    start_s = time.perf_counter()
    body, _gzipped = fetch(url)
    return Scrape(start_s, time.perf_counter(), len(body))


def hammer(url: str, scrapers: int, seconds: float) -> list[Scrape]:
    """`scrapers` threads scraping back to back for `seconds`; every scrape's timing."""
    results: list[Scrape] = []
    errors: list[BaseException] = []
    deadline = time.perf_counter() + seconds

    def loop() -> None:
        try:
            while time.perf_counter() < deadline:
                results.append(scrape_once(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=loop, name=f"scraper-{i}") for i in range(scrapers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} scraper(s) failed: {errors[0]!r}")
    return sorted(results, key=lambda s: s.start_s)


PASS_LINE = re.compile(
    r'^time=(\S+) level=DEBUG source=agent/metrics/sampler\.py:\d+ msg="sample pass done', re.M
)


def pass_times(log_text: str, since_s: float, until_s: float) -> list[float]:
    """Completion times (epoch seconds) of the agent's sample passes within [since_s, until_s],
    from its per-pass debug log line (the logging timestamp has millisecond resolution)."""
    times = []
    for match in PASS_LINE.finditer(log_text):
        at = datetime.fromisoformat(match.group(1)).timestamp()
        if since_s <= at <= until_s:
            times.append(at)
    return times


def intervals_of(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


# ---- measurements ---------------------------------------------------------------------------


@dataclass
class Results:
    pods: int
    rate: str
    pairs: int
    egress_mode: str = "pod"
    kubernetes: bool = False
    bookmark_interval_s: float = 0.0
    api_requests: dict[str, int] = field(default_factory=dict)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    calibration_us: float = 0.0
    lab_up_s: float = 0.0
    agent_ready_s: float = 0.0
    shaped_s: float = 0.0
    limits_applied: int = 0
    inproc_cpu_ms: list[float] = field(default_factory=list)
    inproc_wall_ms: list[float] = field(default_factory=list)
    busy_cpu_ms: list[float] = field(default_factory=list)
    busy_wall_ms: list[float] = field(default_factory=list)
    render_ms: dict[str, float] = field(default_factory=dict)
    agent_cpu_window_s: float = 0.0
    agent_cpu_s: float = 0.0
    agent_passes: float = 0.0
    agent_pass_wall_mean_ms: float = 0.0
    scrape: dict[str, dict] = field(default_factory=dict)
    agent_rss_mb: float = 0.0
    agent_rss_by_phase_mb: dict[str, float] = field(default_factory=dict)
    agent_rss_max_mb: float = 0.0
    ne_full: list[float] = field(default_factory=list)
    ne_netdev: list[float] = field(default_factory=list)
    ne_full_bytes: int = 0
    ne_netdev_bytes: int = 0
    ne_rss_mb: float = 0.0
    profile_text: str = ""


class RssWatch:
    """Max RSS of a process, sampled every 0.5 s in a thread."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.max_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.max_bytes = max(self.max_bytes, self.proc.memory_info().rss)
            self._stop.wait(0.5)

    def start(self) -> RssWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def wait_shaped(agent: AgentProcess, pods: int, timeout_s: float) -> int:
    """Wait until every pod has both limits applied and both qdiscs sampled; count applied."""
    deadline = time.monotonic() + timeout_s
    while True:
        scrape = agent.scrape()
        applied = sum(1 for v in select(scrape, "podbw_shaping_state", state="applied").values() if v == 1)
        sampled = len(select(scrape, "podbw_qdisc_bytes_total"))
        if applied >= 2 * pods and sampled >= 2 * pods:
            return applied
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {applied} limits applied, {sampled} qdiscs sampled after {timeout_s:g} s")
        time.sleep(0.5)


class TouchAll:
    """A UDP datagram from the host to every pod (they answer port-unreachable): every pod's
    link and qdisc counters, and its host veth's, then change before the next pass, the worst
    case for the sampler (no pod can be skipped or have its records reused)."""

    def __init__(self, ips: list[str]) -> None:
        self.ips = ips
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def round(self) -> None:
        for ip in self.ips:
            with contextlib.suppress(OSError):
                self._sock.sendto(b"podbw-bench", (ip, 9))

    def __enter__(self) -> TouchAll:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._sock.close()


def timed_passes(
    sampler: Sampler, passes: int, before_pass: Callable[[], None] | None = None
) -> tuple[list[float], list[float], Snapshot]:
    """CPU and wall time of `passes` passes, one per sampler interval as in the agent (the
    sampler reads a pod in full when its host veth moved, and every pod at least every
    FULL_READ_MAX_AGE_S: back-to-back passes would see neither)."""
    cpu_ms, wall_ms = [], []
    snapshot = sampler.sample_once()
    next_s = time.monotonic()
    for _ in range(passes):
        next_s += sampler.interval_s
        if before_pass is not None:
            time.sleep(max(next_s - 0.05 - time.monotonic(), 0.0))
            before_pass()  # well before the pass: the replies have arrived by then
        time.sleep(max(next_s - time.monotonic(), 0.0))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        snapshot = sampler.sample_once()
        cpu_ms.append((time.process_time() - cpu0) * 1000)
        wall_ms.append((time.perf_counter() - wall0) * 1000)
    return cpu_ms, wall_ms, snapshot


def applied_status(pod: LabPod, egress_mode: str = "pod") -> PodShapingStatus:
    """What the agent's reconciler reports for a shaped pod: ingress on the host veth, egress
    on eth0 inside the pod (mode `pod`) or on the pod's ifb in the host (mode `ifb`), and the
    veth pair it proved. The agent applied these limits; this tells the in-process sampler where
    they are without running a second reconciler."""
    with NetlinkSocket(pod.netns_path) as pod_reader:
        eth0 = pod_reader.link(name="eth0")
    if egress_mode == "ifb":
        egress = DirectionStatus(ShapingState.APPLIED, None, ifb_name(pod.sandbox_id), False)
    else:
        egress = DirectionStatus(ShapingState.APPLIED, None, "eth0", True)
    return PodShapingStatus(
        sandbox_id=pod.sandbox_id,
        host_interface=pod.host_veth,
        pod_ifindex=eth0.ifindex if eth0 is not None else 0,
        directions={
            Direction.INGRESS: DirectionStatus(ShapingState.APPLIED, None, pod.host_veth, False),
            Direction.EGRESS: egress,
        },
        host_ifindex=socket.if_nametoindex(pod.host_veth),
    )


def measure_inprocess(lab: LabNode, passes: int, profile: bool, r: Results, egress_mode: str) -> None:
    """The Sampler in this process against the lab: CPU and wall per sample_once(), one pass
    per second as in the agent.

    Twice: as the lab is (traffic on a few pairs, the rest idle), then with every pod's
    counters moving (a TouchAll round before each pass). The bench's own threads are idle
    during a pass (the touch round ends 50 ms before it).
    """
    lab_pods = lab.pods()
    pods = [p.as_pod() for p in lab_pods]
    statuses = {p.sandbox_id: applied_status(p, egress_mode) for p in lab_pods}
    with NetlinkSocketPool() as pool:
        sampler = Sampler(lambda: pods, lambda: statuses, pool, HealthRecorder(), interval_s=1.0)
        for _ in range(3):  # warm-up: opens the sockets, first rates
            sampler.sample_once()
        r.inproc_cpu_ms, r.inproc_wall_ms, snapshot = timed_passes(sampler, passes)
        with TouchAll([p.ip for p in lab_pods]) as touch:
            r.busy_cpu_ms, r.busy_wall_ms, _ = timed_passes(sampler, passes, touch.round)
        r.render_ms = measure_render(snapshot)
        shaped = sum(1 for s in snapshot.pods for d in s.directions.values() if d.qdisc is not None)
        if len(snapshot.pods) != len(pods) or shaped != 2 * len(pods):
            raise RuntimeError(f"in-process pass saw {len(snapshot.pods)} pods, {shaped} qdiscs")
        if profile:
            prof = cProfile.Profile()
            prof.enable()
            timed_passes(sampler, passes)
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
            r.profile_text = out.getvalue()


def measure_render(snapshot: Snapshot, rounds: int = 10) -> dict[str, float]:
    """CPU of one /metrics response for this snapshot, in this process, split into building
    the metric families, formatting the text, and gzip at the agent's level."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(PodbwCollector(lambda: snapshot, HealthRecorder().data, version="bench"))
    collector_ms = text_ms = gzip_ms = 0.0
    for _ in range(rounds):
        t0 = time.process_time()
        families = list(registry.collect())
        t1 = time.process_time()
        text = generate_latest(registry)
        t2 = time.process_time()
        gzip.compress(text, compresslevel=GZIP_LEVEL)
        t3 = time.process_time()
        collector_ms += (t1 - t0) * 1000
        text_ms += (t2 - t1 - (t1 - t0)) * 1000  # generate_latest collects again
        gzip_ms += (t3 - t2) * 1000
    samples = sum(len(f.samples) for f in families)
    return {
        "collect_ms": collector_ms / rounds,
        "format_ms": text_ms / rounds,
        "gzip_ms": gzip_ms / rounds,
        "samples": samples,
        "text_kb": len(text) / 1024,
    }


def measure_agent_cpu(agent: AgentProcess, seconds: float, r: Results) -> None:
    proc = psutil.Process(agent.pid)
    s0 = agent.scrape()
    c0 = proc.cpu_times()
    t0 = time.monotonic()
    time.sleep(seconds)
    c1 = proc.cpu_times()
    t1 = time.monotonic()
    s1 = agent.scrape()
    count = ("podbw_sample_duration_seconds_count", frozenset())
    total = ("podbw_sample_duration_seconds_sum", frozenset())
    r.agent_cpu_window_s = t1 - t0
    r.agent_cpu_s = (c1.user + c1.system) - (c0.user + c0.system)
    r.agent_passes = s1[count] - s0[count]
    r.agent_pass_wall_mean_ms = (s1[total] - s0[total]) / max(r.agent_passes, 1) * 1000


def measure_scrapes(agent: AgentProcess, scrapers: int, seconds: float) -> dict:
    proc = psutil.Process(agent.pid)
    url = agent.base_url + "/metrics"
    before = agent.scrape()
    c0 = proc.cpu_times()
    since_s = time.time()
    scrapes = hammer(url, scrapers, seconds)
    until_s = time.time()
    c1 = proc.cpu_times()
    after = agent.scrape()
    latencies = [s.latency_s * 1000 for s in scrapes]
    intervals = intervals_of(pass_times(agent.log_text(), since_s, until_s))
    count = ("podbw_sample_duration_seconds_count", frozenset())
    total = ("podbw_sample_duration_seconds_sum", frozenset())
    passes = after[count] - before[count]
    return {
        "scrapers": scrapers,
        "scrapes": len(scrapes),
        "per_s": len(scrapes) / seconds,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "wire_kb": statistics.fmean(s.wire_bytes for s in scrapes) / 1024,
        "agent_cpu_core": ((c1.user + c1.system) - (c0.user + c0.system)) / seconds,
        "interval_p50_s": percentile(intervals, 50) if intervals else float("nan"),
        "interval_p99_s": percentile(intervals, 99) if intervals else float("nan"),
        "interval_max_s": max(intervals) if intervals else float("nan"),
        "passes": passes,
        "pass_wall_mean_ms": (after[total] - before[total]) / max(passes, 1) * 1000,
    }


def measure_node_exporter(scrapes: int, r: Results) -> None:
    ne = NodeExporter()
    try:
        ne.start()
        for _ in range(3):  # warm-up
            scrape_once(ne.url)
        full = [scrape_once(ne.url) for _ in range(scrapes)]
        netdev_url = ne.url + "?collect[]=netdev"
        scrape_once(netdev_url)
        netdev = [scrape_once(netdev_url) for _ in range(scrapes)]
        assert ne.proc is not None
        r.ne_rss_mb = psutil.Process(ne.proc.pid).memory_info().rss / 2**20
    finally:
        ne.stop()
    r.ne_full = [s.latency_s * 1000 for s in full]
    r.ne_netdev = [s.latency_s * 1000 for s in netdev]
    r.ne_full_bytes = int(statistics.fmean(s.wire_bytes for s in full))
    r.ne_netdev_bytes = int(statistics.fmean(s.wire_bytes for s in netdev))


# ---- report ---------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def render(r: Results, label: str) -> str:
    cpu_p50 = percentile(r.inproc_cpu_ms, 50)
    cpu_mean = statistics.fmean(r.inproc_cpu_ms)
    wall_p50 = percentile(r.inproc_wall_ms, 50)
    agent_cpu_pass_ms = r.agent_cpu_s / max(r.agent_passes, 1) * 1000
    one, many = r.scrape["1"], r.scrape["20"]
    ne_full_p50, ne_full_p99 = percentile(r.ne_full, 50), percentile(r.ne_full, 99)
    ne_net_p50, ne_net_p99 = percentile(r.ne_netdev, 50), percentile(r.ne_netdev, 99)
    interval_limit = TARGET_INTERVAL_P99_FACTOR * 1.0
    agent_cpu_ms_per_s = r.agent_cpu_s / max(r.agent_cpu_window_s, 1e-9) * 1000
    rm = r.render_ms
    lines = [
        f"### {label}",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, Linux {platform.release()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()} (`sum(range(1000))` "
        f"{r.calibration_us:.1f} µs); load average {r.load_before[0]:.2f} before, "
        f"{r.load_after[0]:.2f} after (the machine is shared). {r.pods} pods, each "
        f"`{r.rate}` in both directions ({r.limits_applied} TBFs applied by the agent, egress "
        f"mode `{r.egress_mode}`); iperf3 TCP on {r.pairs} pod pairs throughout; agent "
        "`--sample-interval 1`, default resync (30 s); scrapes ask for gzip, as Prometheus does. "
        + (f"Kubernetes API source **on** (the lab's API stand-in, a watch bookmark every "
           f"{r.bookmark_interval_s:g} s; requests served: "
           + ", ".join(f"{k} {v}" for k, v in sorted(r.api_requests.items())) + ")."
           if r.kubernetes else "Kubernetes API source off (CRI only)."),
        "",
        f"Bring-up: lab pods {r.lab_up_s:.0f} s, agent ready {r.agent_ready_s:.1f} s, every limit "
        f"applied and sampled {r.shaped_s:.1f} s after the agent started.",
        "",
        "| measure | podbw | node_exporter 1.5 | ratio podbw / node_exporter | target |",
        "| --- | --- | --- | --- | --- |",
        f"| CPU per full sample pass, in-process Sampler, p50 (mean) of {len(r.inproc_cpu_ms)} "
        f"| {cpu_p50:.1f} ms ({cpu_mean:.1f}) | | | <= {TARGET_PASS_CPU_MS:g} ms: "
        f"{verdict(cpu_p50 <= TARGET_PASS_CPU_MS)} |",
        f"| wall per full sample pass, in-process, p50 | {wall_p50:.1f} ms | | | |",
        f"| same, every pod's counters changing (worst case), CPU p50 (mean) / wall p50 | "
        f"{percentile(r.busy_cpu_ms, 50):.1f} ms ({statistics.fmean(r.busy_cpu_ms):.1f}) / "
        f"{percentile(r.busy_wall_ms, 50):.1f} ms | | | |",
        f"| agent process CPU over {r.agent_cpu_window_s:.0f} s / passes ({r.agent_passes:.0f}), "
        f"incl. discovery, resync, HTTP idle | {agent_cpu_pass_ms:.1f} ms | | | |",
        f"| agent process CPU per second, same window | {agent_cpu_ms_per_s:.1f} ms | | | "
        f"<= {TARGET_AGENT_CPU_MS_PER_S:g} ms: {verdict(agent_cpu_ms_per_s <= TARGET_AGENT_CPU_MS_PER_S)} |",
        f"| agent's own `podbw_sample_duration_seconds` mean (wall) | "
        f"{r.agent_pass_wall_mean_ms:.1f} ms | | | |",
        f"| `/metrics` p50, 1 scraper (podbw) vs full scrape (node_exporter) | "
        f"{one['p50_ms']:.1f} ms | {ne_full_p50:.1f} ms | {one['p50_ms'] / ne_full_p50:.2f} | "
        f"<= {TARGET_METRICS_VS_NODE_EXPORTER:g}: "
        f"{verdict(one['p50_ms'] <= TARGET_METRICS_VS_NODE_EXPORTER * ne_full_p50)} |",
        f"| `/metrics` p99, 1 scraper vs full | {one['p99_ms']:.1f} ms | {ne_full_p99:.1f} ms | "
        f"{one['p99_ms'] / ne_full_p99:.2f} | |",
        f"| `/metrics` p50 / p99 vs `collect[]=netdev` | {one['p50_ms']:.1f} / {one['p99_ms']:.1f} ms "
        f"| {ne_net_p50:.1f} / {ne_net_p99:.1f} ms | {one['p50_ms'] / ne_net_p50:.2f} / "
        f"{one['p99_ms'] / ne_net_p99:.2f} | |",
        f"| CPU to render one `/metrics` in-process ({rm.get('samples', 0):.0f} samples, "
        f"{rm.get('text_kb', 0):.0f} KiB text): families / text / gzip | "
        f"{rm.get('collect_ms', 0):.0f} / {rm.get('format_ms', 0):.0f} / {rm.get('gzip_ms', 0):.0f} ms"
        " | | | |",
        f"| `/metrics` p50 / p99, 20 concurrent scrapers | {many['p50_ms']:.1f} / "
        f"{many['p99_ms']:.1f} ms | | | |",
        f"| scrapes per second, 1 / 20 scrapers | {one['per_s']:.1f} / {many['per_s']:.1f} | | | |",
        f"| response size (gzip) | {one['wire_kb']:.0f} KiB | {r.ne_full_bytes / 1024:.0f} KiB full, "
        f"{r.ne_netdev_bytes / 1024:.0f} KiB netdev | | |",
        f"| agent CPU while scraped, 1 / 20 scrapers (cores) | {one['agent_cpu_core']:.2f} / "
        f"{many['agent_cpu_core']:.2f} | | | |",
        f"| sample interval p50 / p99 / max, 1 scraper | {one['interval_p50_s']:.2f} / "
        f"{one['interval_p99_s']:.2f} / {one['interval_max_s']:.2f} s | | | |",
        f"| sample interval p50 / p99 / max, 20 scrapers | {many['interval_p50_s']:.2f} / "
        f"{many['interval_p99_s']:.2f} / {many['interval_max_s']:.2f} s | | | p99 <= "
        f"{interval_limit:g} s: {verdict(many['interval_p99_s'] <= interval_limit)} |",
        f"| sample pass wall mean under 1 / 20 scrapers | {one['pass_wall_mean_ms']:.1f} / "
        f"{many['pass_wall_mean_ms']:.1f} ms | | | |",
        f"| RSS at the end (max during the run) | {r.agent_rss_mb:.1f} MB ({r.agent_rss_max_mb:.1f}) "
        f"| {r.ne_rss_mb:.1f} MB | {r.agent_rss_max_mb / r.ne_rss_mb:.2f} | <= {TARGET_RSS_MB:g} MiB: "
        f"{verdict(r.agent_rss_max_mb <= TARGET_RSS_MB)} |",
        "| agent RSS by phase | " + ", ".join(
            f"{k}: {v:.0f} MB" for k, v in r.agent_rss_by_phase_mb.items()) + " | | | |",
        "",
        "Sample interval: time between consecutive pass completions, from the agent's per-pass "
        "debug log line (millisecond timestamps), during each scrape phase. Scrapers are threads "
        "of this bench process (urllib, a new connection per scrape).",
        "",
    ]
    if r.profile_text:
        lines += ["<details><summary>in-process pass profile (cProfile, by tottime)</summary>", "",
                  "```", r.profile_text.strip(), "```", "", "</details>", ""]
    return "\n".join(lines)


def write_report(
    path: Path, label: str, section: str, script: str = "collect.py", title: str = "Collection cost"
) -> None:
    """Put section into path between markers named after script and label: a run replaces the
    section of an earlier run with the same label and leaves everything else in the file alone."""
    begin, end = f"<!-- {script} begin: {label} -->", f"<!-- {script} end: {label} -->"
    block = f"{begin}\n{section}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else f"# {title} (bench/{script})\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# ---- main -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Results:
    r = Results(pods=args.pods, rate=args.rate, pairs=args.pairs, egress_mode=args.egress_mode,
                kubernetes=args.kubernetes, bookmark_interval_s=args.bookmark_interval_s)
    r.load_before = os.getloadavg()
    r.calibration_us = calibrate_us()
    lab = LabNode(bench_lab_config())
    lab.api_settings = ApiServerSettings(bookmark_interval_s=args.bookmark_interval_s)
    agent: AgentProcess | None = None
    load = Traffic()
    watch: RssWatch | None = None
    try:
        log(f"lab {lab.config.name}: bringing up {args.pods} pods")
        t0 = time.monotonic()
        pods = lab.up(pod_specs(args.pods, args.rate))
        r.lab_up_s = time.monotonic() - t0
        log(f"lab up in {r.lab_up_s:.1f} s")

        t0 = time.monotonic()
        api_args = ["--kubeconfig", lab.kubeconfig, "--node-name", lab.node_name] if args.kubernetes else []
        agent = AgentProcess(
            lab,
            ["--sample-interval", "1", "--egress-mode", args.egress_mode, *api_args],
            env={"PYTHONPATH": AGENT_HOOKS},  # the sampler's per-pass debug line, nothing else
        )
        agent.start(ready_timeout_s=120)
        r.agent_ready_s = time.monotonic() - t0
        if args.kubernetes:
            agent.wait_for_sample("podbw_discovery_up", 60, predicate=lambda v: v == 1, source="kubernetes")
        watch = RssWatch(agent.pid).start()
        r.limits_applied = wait_shaped(agent, args.pods, timeout_s=args.shape_timeout)
        r.shaped_s = time.monotonic() - t0
        log(f"agent ready {r.agent_ready_s:.1f} s, {r.limits_applied} limits applied+sampled {r.shaped_s:.1f} s")

        load.start(lab, pods, args.pairs, seconds=3600)
        time.sleep(2)

        log(f"in-process sampler: {args.passes} passes")
        measure_inprocess(lab, args.passes, args.profile, r, args.egress_mode)
        log(f"in-process CPU p50 {percentile(r.inproc_cpu_ms, 50):.2f} ms, wall p50 "
            f"{percentile(r.inproc_wall_ms, 50):.2f} ms; all pods busy: CPU p50 "
            f"{percentile(r.busy_cpu_ms, 50):.2f} ms")

        log(f"agent CPU over {args.cpu_seconds:g} s")
        measure_agent_cpu(agent, args.cpu_seconds, r)
        log(f"agent: {r.agent_cpu_s * 1000:.0f} ms CPU for {r.agent_passes:.0f} passes")

        rss_of_agent = lambda: psutil.Process(agent.pid).memory_info().rss / 2**20  # noqa: E731
        r.agent_rss_by_phase_mb["before any scrape-load"] = rss_of_agent()
        for scrapers in (1, 20):
            log(f"/metrics with {scrapers} scraper(s) for {args.scrape_seconds:g} s")
            r.scrape[str(scrapers)] = m = measure_scrapes(agent, scrapers, args.scrape_seconds)
            log(f"  p50 {m['p50_ms']:.1f} ms p99 {m['p99_ms']:.1f} ms, interval p99 {m['interval_p99_s']:.2f} s")
            r.agent_rss_by_phase_mb[f"after {scrapers} scraper(s)"] = rss_of_agent()

        r.agent_rss_mb = psutil.Process(agent.pid).memory_info().rss / 2**20
        watch.stop()
        r.agent_rss_max_mb = max(watch.max_bytes / 2**20, r.agent_rss_mb)

        log(f"node_exporter: {args.ne_scrapes} scrapes full and netdev")
        measure_node_exporter(args.ne_scrapes, r)
        log(f"node_exporter full p50 {percentile(r.ne_full, 50):.1f} ms, netdev p50 "
            f"{percentile(r.ne_netdev, 50):.1f} ms")
        if agent.running is False:
            raise RuntimeError(f"agent died during the run:\n{agent.log_tail()}")
        if "Traceback" in agent.log_text():
            raise RuntimeError(f"agent logged a traceback:\n{agent.log_tail()}")
        if args.kubernetes:
            r.api_requests = lab.api_request_counts()
        r.load_after = os.getloadavg()
        return r
    finally:
        if watch is not None:
            watch.stop()
        load.stop()
        if agent is not None:
            agent.close()
        t0 = time.monotonic()
        lab.down()
        log(f"lab down in {time.monotonic() - t0:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=250)
    parser.add_argument("--rate", default="100M", help="both annotations of every pod")
    parser.add_argument("--pairs", type=int, default=3, help="iperf3 pod pairs")
    parser.add_argument("--egress-mode", default="pod", choices=["pod", "ifb"],
                        help="the agent's --egress-mode (where pod egress TBFs live)")
    parser.add_argument("--passes", type=int, default=30, help="in-process sample passes")
    parser.add_argument("--cpu-seconds", type=float, default=30.0)
    parser.add_argument("--scrape-seconds", type=float, default=20.0)
    parser.add_argument("--ne-scrapes", type=int, default=50)
    parser.add_argument("--shape-timeout", type=float, default=1800.0,
                        help="seconds the agent may take to apply and sample every limit")
    parser.add_argument("--kubernetes", action="store_true",
                        help="run the agent with its Kubernetes API source against the lab's API stand-in")
    parser.add_argument("--bookmark-interval-s", type=float, default=ApiServerSettings().bookmark_interval_s,
                        help="seconds between the API stand-in's watch bookmarks (a real apiserver: about 60)")
    parser.add_argument("--profile", action="store_true", help="add a cProfile of the pass")
    parser.add_argument("--label", default="Latest run")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    with bench_lock():
        results = run(args)
    section = render(results, args.label)
    print()
    print(section)
    write_report(args.output, args.label, section)
    log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
