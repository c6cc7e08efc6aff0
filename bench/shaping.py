#!/usr/bin/env python3
"""Shaping benchmark (issue 3): podbw's TBF next to the CNI bandwidth plugin and the book's TBF.

On one lab node (two pods on the lab bridge: `limited` and `peer`), for every shaper × rate ×
flows × direction: iperf3 TCP from sender to receiver while the sender pings the receiver
through the same queue. Reported: goodput/rate, bits beyond the limit in the first second,
ping RTT p50/p99 under load, ping loss, TCP retransmits. Then, for podbw only, a limit change
during a run: how long until the new limit holds, and whether any connection was reset.

Shapers:
  podbw-pod   podbw's Reconciler, egress TBF on the pod's eth0 (ingress: TBF on the host veth)
  podbw-ifb   podbw's Reconciler, egress via ingress redirect to an ifb (ingress as podbw-pod,
              so only egress is run)
  cni-crio    the CNI bandwidth plugin with CRI-O's burst (the largest the plugin accepts)
  cni-1s      the CNI bandwidth plugin with burst = one second of rate
  book        `tc qdisc replace dev D root tbf rate R burst 1540 latency 5ms`

Run it as root; it takes /tmp/podbw-bench.lock (flock(2), the lock `flock(1)` takes) for the
whole run so it never overlaps another benchmark, so don't wrap it in flock(1) too:

    .venv/bin/python bench/shaping.py [--quick] [--rates 10M,100M,1G] [--seconds 5]
        [--output bench/results/shaping.md]

Everything it makes (one lab with a private name, bridge, subnet and netns dir) is torn down in
a finally. A full run takes ~12 minutes, --quick ~2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Protocol

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from agent.lab import links, traffic  # noqa: E402
from agent.lab.bandwidth import DEFAULT_BURST_BITS, parse_bits  # noqa: E402
from agent.lab.config import LabConfig  # noqa: E402
from agent.lab.errors import LabError  # noqa: E402
from agent.lab.node import LabNode  # noqa: E402
from agent.lab.spec import PodSpec  # noqa: E402
from agent.lab.state import LabPod  # noqa: E402
from agent.model.direction import Direction, ShapingState  # noqa: E402
from agent.model.health import HealthRecorder  # noqa: E402
from agent.shaping.reconciler import Reconciler  # noqa: E402
from agent.shaping.settings import EGRESS_MODE_IFB, EGRESS_MODE_POD, ShapingSettings  # noqa: E402

DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "shaping.md"
LOCK_PATH = "/tmp/podbw-bench.lock"
FRAME_BYTES, PAYLOAD_BYTES = 1514, 1448
"""A full TCP segment at MTU 1500 with timestamps: what TBF counts vs what iperf3 counts."""
TCP_CEILING = PAYLOAD_BYTES / FRAME_BYTES
RATE_KEY = {"ingress": "kubernetes.io/ingress-bandwidth", "egress": "kubernetes.io/egress-bandwidth"}
BURST_KEY = {"ingress": "podbw.io/ingress-burst", "egress": "podbw.io/egress-burst"}
ALL_SHAPERS = ("podbw-pod", "podbw-ifb", "cni-crio", "cni-1s", "book")

# Targets (issue 3) for podbw's rows.
GOODPUT_TARGET = 0.93
RTT_P99_TARGET_MS = 5.0
RTT_TARGET_MIN_RATE = 10e6
CHANGE_TARGET_S = 1.0
OVERSHOOT_RESOLUTION_S = 0.002
"""How far the receiver's first second may be off the first data byte (see the method)."""


# ---- one measurement --------------------------------------------------------------------------
@dataclass
class Cell:
    shaper: str
    rate_bits_per_s: int
    flows: int
    direction: str
    burst_bits: int | None
    """The bucket the shaper was configured with (None: unknown)."""
    goodput_ratio: float = 0.0
    first_second_bits: float = 0.0
    """L2-equivalent bits the receiver got in its first second."""
    retransmits: int = 0
    rtt_p50_ms: float = float("nan")
    rtt_p99_ms: float = float("nan")
    ping_sent: int = 0
    ping_lost: int = 0
    repeats: int = 1
    goodput_runs: list[float] = field(default_factory=list)
    """Goodput/rate of every run of this cell (more than one with --repeat)."""
    error: str = ""

    @property
    def overshoot_bits(self) -> float:
        return self.first_second_bits - self.rate_bits_per_s

    def as_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["overshoot_bits"] = self.overshoot_bits
        return data


@dataclass
class Setup:
    sender: LabPod
    receiver: LabPod
    burst_bits: int | None


class Shaper(Protocol):
    name: str

    def prepare(self, rate: str, direction: str) -> Setup: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def first_second_l2_bits(result: traffic.IperfResult) -> float:
    """Receiver payload in [0, 1 s), scaled from TCP payload to the frames TBF counts."""
    payload_bits = 0.0
    for interval in result.intervals:
        if interval.start_s >= 1.0 or interval.end_s <= interval.start_s:
            continue
        overlap = (min(interval.end_s, 1.0) - interval.start_s) / (interval.end_s - interval.start_s)
        payload_bits += interval.bytes * 8 * overlap
    return payload_bits / TCP_CEILING


# ---- shapers ------------------------------------------------------------------------------------
def with_annotations(pod: LabPod, annotations: dict[str, str]):
    return dataclasses.replace(pod.as_pod(), annotations=annotations)


class PodbwShaper:
    """podbw's own Reconciler, exactly as the agent uses it (one pod, annotations as given)."""

    def __init__(self, name: str, mode: str, limited: LabPod, peer: LabPod) -> None:
        self.name, self.limited, self.peer = name, limited, peer
        self.reconciler = Reconciler(ShapingSettings(egress_mode=mode), HealthRecorder())

    def prepare(self, rate: str, direction: str) -> Setup:
        status = self.reconciler.reconcile(with_annotations(self.limited, {RATE_KEY[direction]: rate}))
        want = status.directions[Direction(direction)]
        if want.state is not ShapingState.APPLIED or want.params is None:
            raise LabError(f"{self.name}: {direction} {rate} not applied: {want.state} {want.reason}")
        sender, receiver = (self.peer, self.limited) if direction == "ingress" else (self.limited, self.peer)
        return Setup(sender, receiver, want.params.burst_bytes * 8)

    def set_rate(self, rate: str, direction: str) -> None:
        self.reconciler.reconcile(with_annotations(self.limited, {RATE_KEY[direction]: rate}))

    def release(self) -> None:
        pass  # the next prepare() replaces the limit in place, as the agent does

    def close(self) -> None:
        try:
            self.reconciler.reconcile(with_annotations(self.limited, {}))
        finally:
            self.reconciler.close()


class BookShaper:
    """`tbf rate R burst 1540 latency 5ms`: host veth for ingress, inside the pod for egress."""

    name = "book"

    def __init__(self, lab: LabNode, limited: LabPod, peer: LabPod) -> None:
        self.lab, self.limited, self.peer = lab, limited, peer
        self._applied: tuple[str, LabPod | None] | None = None

    def _tc(self, in_pod: bool, *args: str, check: bool = True) -> None:
        argv = ["tc", *args]
        if in_pod:
            done = self.lab.exec_in_pod(self.limited, argv)
        else:
            done = subprocess.run(argv, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise LabError(f"{' '.join(argv)}: {done.stderr.strip()}")

    def prepare(self, rate: str, direction: str) -> Setup:
        bits = parse_bits(rate)
        in_pod = direction == "egress"
        device = "eth0" if in_pod else self.limited.host_veth
        self._tc(in_pod, "qdisc", "replace", "dev", device, "root", "tbf",
                 "rate", f"{bits}bit", "burst", "1540", "latency", "5ms")
        self._applied = (device, self.limited if in_pod else None)
        sender, receiver = (self.peer, self.limited) if direction == "ingress" else (self.limited, self.peer)
        return Setup(sender, receiver, 1540 * 8)

    def release(self) -> None:
        if self._applied is not None:
            device, pod = self._applied
            self._tc(pod is not None, "qdisc", "del", "dev", device, "root", check=False)
            self._applied = None

    def close(self) -> None:
        self.release()


class CniShaper:
    """The CNI bandwidth plugin, as CRI-O runs it: a fresh pod per run (no live update), its
    limit from the pod's annotations at creation, the burst from podbw.io/*-burst (the lab's
    default being CRI-O's, capped to what the plugin accepts)."""

    def __init__(self, name: str, lab: LabNode, peer: LabPod, one_second_burst: bool) -> None:
        self.name, self.lab, self.peer, self.one_second_burst = name, lab, peer, one_second_burst
        self._pod: LabPod | None = None
        self._count = 0

    def prepare(self, rate: str, direction: str) -> Setup:
        bits = parse_bits(rate)
        assert bits is not None
        annotations = {RATE_KEY[direction]: rate}
        burst_bits = DEFAULT_BURST_BITS
        if self.one_second_burst:
            annotations[BURST_KEY[direction]] = str(bits)
            burst_bits = bits
        self._count += 1
        self._pod = self.lab.add(PodSpec(f"{self.name}-{self._count}", "bench", annotations))
        sender, receiver = (self.peer, self._pod) if direction == "ingress" else (self._pod, self.peer)
        return Setup(sender, receiver, burst_bits)

    def release(self) -> None:
        if self._pod is not None:
            self.lab.delete(self._pod.key)
            self._pod = None

    def close(self) -> None:
        self.release()


# ---- the runs ---------------------------------------------------------------------------------
@dataclass
class Plan:
    shapers: tuple[str, ...]
    rates: tuple[str, ...]
    flows: tuple[int, ...]
    directions: tuple[str, ...]
    seconds: float
    repeat: int
    congestion: str | None
    change_test: bool


def run_cell(lab: LabNode, shaper: Shaper, rate: str, flows: int, direction: str, plan: Plan) -> Cell:
    rate_bits = parse_bits(rate)
    assert rate_bits is not None
    runs: list[Cell] = []
    # Only podbw's rows are close calls against its targets; the others miss or meet theirs by far.
    repeat = plan.repeat if shaper.name.startswith("podbw") else 1
    for _ in range(repeat):
        setup = shaper.prepare(rate, direction)
        cell = Cell(shaper.name, rate_bits, flows, direction, setup.burst_bits)
        try:
            time.sleep(0.3)  # an idle moment: the bucket is full, the queue empty
            run = traffic.loaded_run(lab, setup.sender, setup.receiver, plan.seconds, flows, congestion=plan.congestion)
            cell.goodput_ratio = run.iperf.received_bits_per_s / rate_bits
            cell.first_second_bits = first_second_l2_bits(run.iperf)
            cell.retransmits = run.iperf.retransmits
            cell.rtt_p50_ms = percentile(run.ping.rtts_ms, 50)
            cell.rtt_p99_ms = percentile(run.ping.rtts_ms, 99)
            cell.ping_sent, cell.ping_lost = run.ping.sent, run.ping.lost
        except LabError as err:
            cell.error = str(err)[:200]
        finally:
            shaper.release()
        runs.append(cell)
    good = [c for c in runs if not c.error]
    if not good:
        return runs[0]
    # The median run by goodput represents the cell; the others show the spread.
    good.sort(key=lambda c: c.goodput_ratio)
    chosen = good[len(good) // 2]
    chosen.repeats = len(runs)
    chosen.goodput_runs = [c.goodput_ratio for c in runs if not c.error]
    return chosen


def make_shaper(name: str, lab: LabNode, limited: LabPod, peer: LabPod) -> Shaper:
    if name == "podbw-pod":
        return PodbwShaper(name, EGRESS_MODE_POD, limited, peer)
    if name == "podbw-ifb":
        return PodbwShaper(name, EGRESS_MODE_IFB, limited, peer)
    if name == "book":
        return BookShaper(lab, limited, peer)
    if name == "cni-crio":
        return CniShaper(name, lab, peer, one_second_burst=False)
    if name == "cni-1s":
        return CniShaper(name, lab, peer, one_second_burst=True)
    raise ValueError(f"unknown shaper {name!r}")


def directions_for(shaper: str, plan: Plan) -> Iterable[str]:
    for direction in plan.directions:
        if shaper == "podbw-ifb" and direction == "ingress":
            continue  # the same TBF on the host veth as podbw-pod's ingress
        yield direction


def probe_unshaped_bits_per_s(lab: LabNode, limited: LabPod, peer: LabPod, congestion: str | None) -> float:
    run = traffic.loaded_run(lab, peer, limited, 2.0, 1, ping_skip_s=5.0, congestion=congestion)
    return run.iperf.received_bits_per_s


# ---- limit change -------------------------------------------------------------------------------
@dataclass
class ChangeResult:
    shaper: str
    direction: str
    steps: list[tuple[str, float, float, float]] = field(default_factory=list)
    """(rate, change time on the client's clock, seconds until the new limit held, mean received
    rate from then until the next change ÷ the new rate, in L2-ish bits of eth0's counter)."""
    completed: bool = False
    resets: int = 0
    retransmits: int = 0
    error: str = ""


def estab_resets(pid: int) -> int:
    """TCP connections reset from ESTABLISHED in the namespace of process `pid` (/proc/net/snmp)."""
    with open(f"/proc/{pid}/net/snmp", encoding="ascii") as f:
        lines = [line.split() for line in f if line.startswith("Tcp:")]
    return int(dict(zip(lines[0][1:], lines[1][1:])).get("EstabResets", 0))


def wait_in_netns(pid: int, netns_path: str, timeout_s: float = 5.0) -> None:
    """Until `pid` (started through nsenter) has entered the pod's namespace: before that its
    /proc/<pid>/net shows the host's counters."""
    want = os.stat(netns_path).st_ino
    deadline = time.monotonic() + timeout_s
    while os.stat(f"/proc/{pid}/ns/net").st_ino != want:
        if time.monotonic() > deadline:
            raise LabError(f"process {pid} did not enter {netns_path}")
        time.sleep(0.005)


class RxPoller(threading.Thread):
    """Samples eth0's received bytes in the namespace of process `pid` every ~10 ms, on this
    process's monotonic clock (the one the limit changes are timed with)."""

    def __init__(self, pid: int, period_s: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.path = f"/proc/{pid}/net/dev"
        self.period_s = period_s
        self.samples: list[tuple[float, int]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                with open(self.path, encoding="ascii") as f:
                    for line in f:
                        name, _, counters = line.partition(":")
                        if name.strip() == "eth0":
                            self.samples.append((time.monotonic(), int(counters.split()[0])))
            except OSError:
                return  # the process ended
            self._stop_event.wait(self.period_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(2.0)

    def bytes_at(self, t: float) -> float:
        """Received bytes at time t, interpolated between the samples around it."""
        samples = self.samples
        for (t0, b0), (t1, b1) in zip(samples, samples[1:]):
            if t0 <= t <= t1:
                return b0 + (b1 - b0) * ((t - t0) / (t1 - t0) if t1 > t0 else 1.0)
        return float(samples[-1][1] if samples and t > samples[-1][0] else (samples[0][1] if samples else 0))


def window_rates(poller: RxPoller, start: float, until: float, window_s: float = 0.1) -> list[tuple[float, float]]:
    """(window start, received bits/s) for consecutive windows from `start` up to `until`."""
    windows = []
    while start + window_s <= until:
        windows.append((start, (poller.bytes_at(start + window_s) - poller.bytes_at(start)) * 8 / window_s))
        start += window_s
    return windows


def hold_time_s(
    windows: list[tuple[float, float]], change_at: float, old_bits: int, new_bits: int, window_s: float = 0.1
) -> float:
    """Seconds from the change until the new limit governs, from `window_rates` windows.
    Decrease: from then on every window is within 0.5..1.25 × the new rate (a stall counts as
    not holding). Increase: the end of the first window above 1.25 × the old rate (how fast TCP
    then grows to the new rate is TCP's matter). inf: never."""
    held_from = None
    for start, bits_per_s in windows:
        if new_bits > old_bits:
            if bits_per_s > 1.25 * old_bits:
                return start + window_s - change_at
        elif not 0.5 * new_bits <= bits_per_s <= 1.25 * new_bits:
            held_from = None
        elif held_from is None:
            held_from = start
    return float("inf") if held_from is None else held_from - change_at


def run_change(lab: LabNode, shaper: PodbwShaper, direction: str, plan: Plan) -> ChangeResult:
    """One flow: 100M, at ~2 s 20M, at ~4 s 100M again, 6 s in all."""
    result = ChangeResult(shaper.name, direction)
    schedule = [("20M", 2.0), ("100M", 4.0)]
    seconds = 6.0
    setup = shaper.prepare("100M", direction)
    time.sleep(0.3)
    poller: RxPoller | None = None
    try:
        load = traffic.LoadedTraffic(
            lab, setup.sender, setup.receiver, seconds, 1, ping_skip_s=seconds, congestion=plan.congestion
        )
        wait_in_netns(load.receiver_pid, setup.receiver.netns_path)
        wait_in_netns(load.sender_pid, setup.sender.netns_path)
        poller = RxPoller(load.receiver_pid)
        poller.start()
        before = estab_resets(load.sender_pid) + estab_resets(load.receiver_pid)
        changed_at = []
        for rate, at_s in schedule:
            time.sleep(max(load.started_monotonic_s + at_s - time.monotonic(), 0))
            shaper.set_rate(rate, direction)
            changed_at.append(time.monotonic())
        # Counted before the end: iperf3 closing its sockets with unread data is not a reset.
        time.sleep(max(load.started_monotonic_s + seconds - 0.5 - time.monotonic(), 0))
        result.resets = estab_resets(load.sender_pid) + estab_resets(load.receiver_pid) - before
        until = time.monotonic()
        # The steps first: a wedged queue also keeps iperf3 from finishing (finish() raises).
        ends = changed_at[1:] + [until]
        previous = "100M"
        for (rate, _), at, end in zip(schedule, changed_at, ends):
            bits, before_bits = parse_bits(rate), parse_bits(previous)
            assert bits is not None and before_bits is not None
            windows = window_rates(poller, at, end)
            hold = hold_time_s(windows, at, before_bits, bits)
            # Never held: the mean since the change still tells a stall (0) from an overshoot.
            after = [r for start, r in windows if hold == float("inf") or start >= at + hold]
            mean_ratio = sum(after) / len(after) / bits if after else 0.0
            result.steps.append((rate, at - load.started_monotonic_s, hold, mean_ratio))
            previous = rate
        run = load.finish()
        result.completed = True
        result.retransmits = run.iperf.retransmits
    except LabError as err:
        result.error = str(err)[:200]
    finally:
        if poller is not None:
            poller.stop()
    return result


# ---- lab ----------------------------------------------------------------------------------------
def bench_lab_config() -> LabConfig:
    for _ in range(50):
        config = LabConfig.for_name("bshape" + secrets.token_hex(4))
        if os.path.exists(config.state_dir) or links.addresses_in(config.subnet):
            continue
        return LabConfig.for_name(config.name, netns_dir=os.path.join(config.state_dir, "netns"))
    raise LabError("no free lab name/subnet")


def run(plan: Plan, log) -> tuple[list[Cell], list[ChangeResult], dict]:
    lab = LabNode(bench_lab_config())
    cells: list[Cell] = []
    changes: list[ChangeResult] = []
    info: dict = {}
    try:
        limited, peer = lab.up(
            [PodSpec("limited", "bench"), PodSpec("peer", "bench")], pod_events=False, cni_bandwidth=True, start_cri=False
        )
        unshaped = probe_unshaped_bits_per_s(lab, limited, peer, plan.congestion)
        info["unshaped_bits_per_s"] = unshaped
        default_cc = lab.exec_in_pod(limited, ["sysctl", "-n", "net.ipv4.tcp_congestion_control"]).stdout.strip()
        info["congestion"] = plan.congestion or default_cc
        log(f"unshaped veth: {unshaped / 1e9:.2f} Gbit/s, TCP congestion control {info['congestion']}")
        rates = [r for r in plan.rates if (parse_bits(r) or 0) * 1.1 <= unshaped]
        info["skipped_rates"] = [r for r in plan.rates if r not in rates]
        for name in plan.shapers:
            shaper = make_shaper(name, lab, limited, peer)
            try:
                for rate in rates:
                    for direction in directions_for(name, plan):
                        for flows in plan.flows:
                            cell = run_cell(lab, shaper, rate, flows, direction, plan)
                            cells.append(cell)
                            log(format_log(cell))
                if plan.change_test and isinstance(shaper, PodbwShaper):
                    for direction in directions_for(name, plan):
                        change = run_change(lab, shaper, direction, plan)
                        changes.append(change)
                        log(f"{name} {direction} change: {change}")
            finally:
                shaper.close()
    finally:
        lab.down()
    return cells, changes, info


# ---- report -------------------------------------------------------------------------------------
def human_bits(bits: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(bits) >= scale:
            return f"{bits / scale:.3g} {unit}"
    return f"{bits:.0f} "


def duration_text(seconds: float) -> str:
    if abs(seconds) >= 10:
        return f"{seconds:.0f} s"
    if abs(seconds) >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.2g} ms" if abs(seconds) < 0.01 else f"{seconds * 1000:.0f} ms"


def format_log(cell: Cell) -> str:
    if cell.error:
        return f"{cell.shaper} {human_bits(cell.rate_bits_per_s)} P{cell.flows} {cell.direction}: ERROR {cell.error}"
    return (
        f"{cell.shaper:9} {human_bits(cell.rate_bits_per_s):>7} P{cell.flows} {cell.direction:7} goodput "
        f"{cell.goodput_ratio:.3f} over1s {human_bits(cell.overshoot_bits)} retr {cell.retransmits} "
        f"rtt {cell.rtt_p50_ms:.2f}/{cell.rtt_p99_ms:.2f} ms loss {cell.ping_lost}/{cell.ping_sent}"
    )


def goodput_text(cell: Cell) -> str:
    if len(cell.goodput_runs) < 2:
        return f"{cell.goodput_ratio:.3f}"
    runs = ", ".join(f"{g:.3f}" for g in cell.goodput_runs)
    return f"{cell.goodput_ratio:.3f} ({runs})"


def overshoot_text(cell: Cell) -> str:
    over = cell.overshoot_bits
    at_rate = duration_text(over / cell.rate_bits_per_s)
    if over <= 0:
        return f"≤ 0 ({at_rate})"
    return f"{human_bits(over)}bit ({at_rate})"


def burst_text(cell: Cell) -> str:
    if cell.burst_bits is None:
        return "?"
    return f"{human_bits(cell.burst_bits)}bit ({duration_text(cell.burst_bits / cell.rate_bits_per_s)})"


def targets(cell: Cell) -> list[str]:
    """The podbw targets this cell misses (empty: all hold)."""
    missed = []
    if cell.error:
        return [f"error: {cell.error}"]
    if cell.goodput_ratio < GOODPUT_TARGET:
        missed.append(f"goodput {cell.goodput_ratio:.3f} < {GOODPUT_TARGET}")
    elif any(g < GOODPUT_TARGET for g in cell.goodput_runs):
        low = ", ".join(f"{g:.3f}" for g in cell.goodput_runs if g < GOODPUT_TARGET)
        missed.append(f"goodput median {cell.goodput_ratio:.3f} holds, but {low} in {len(cell.goodput_runs)} runs")
    if cell.burst_bits is not None and cell.overshoot_bits > cell.burst_bits:
        resolution_bits = cell.rate_bits_per_s * OVERSHOOT_RESOLUTION_S
        within = " (within the measurement's resolution)" if cell.overshoot_bits <= cell.burst_bits + resolution_bits else ""
        missed.append(f"overshoot {human_bits(cell.overshoot_bits)} > burst {human_bits(cell.burst_bits)}{within}")
    if cell.rate_bits_per_s >= RTT_TARGET_MIN_RATE:
        if not cell.rtt_p99_ms <= RTT_P99_TARGET_MS:
            missed.append(f"RTT p99 {cell.rtt_p99_ms:.2f} ms > {RTT_P99_TARGET_MS:g} ms")
        if cell.ping_sent and cell.ping_lost > cell.ping_sent // 100:
            missed.append(f"{cell.ping_lost}/{cell.ping_sent} pings lost (the p99 of the replies hides them)")
    return missed


def table(cells: list[Cell]) -> list[str]:
    lines = [
        "| shaper | rate | flows | goodput/rate | 1st-second overshoot | burst | RTT p50 | RTT p99 | ping lost | retransmits |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cells:
        if c.error:
            lines.append(f"| {c.shaper} | {human_bits(c.rate_bits_per_s)} | {c.flows} | error: {c.error} | | | | | | |")
            continue
        lines.append(
            f"| {c.shaper} | {human_bits(c.rate_bits_per_s)}bit/s | {c.flows} | {goodput_text(c)} | {overshoot_text(c)} | "
            f"{burst_text(c)} | {c.rtt_p50_ms:.2f} ms | {c.rtt_p99_ms:.2f} ms | {c.ping_lost}/{c.ping_sent} | {c.retransmits} |"
        )
    return lines


METHOD = """\
## Method

- One lab node (`bench/shaping.py`, lab `bshape<hex>` with a private netns dir, the CNI
  `bridge` + `host-local` plugins, the CNI `bandwidth` plugin chained): pod `limited` carries
  the limit, pod `peer` is the other end. Pod ingress = `peer` → `limited`, pod egress =
  `limited` → `peer`.
- podbw's limits come from its own `Reconciler` (`ShapingSettings(egress_mode=pod|ifb)`) fed
  the pod with one `kubernetes.io/{ingress,egress}-bandwidth` annotation, exactly as the agent
  applies them (default burst and queue limit from `agent/model/tbf.py`; in egress mode `pod`
  also the pod eth0's `gso_max_size` cap); between runs the Reconciler changes the limit as the
  agent would (in place, or a new qdisc where the bucket shrinks). The CNI plugin gets a fresh pod
  per run (it has no live update) with the annotations CRI-O would pass: burst = the lab's
  default, the largest the plugin accepts (2^35−9 bits, i.e. CRI-O's 4 GB bucket), or
  `podbw.io/*-burst` = one second of rate. The book's TBF is `tc qdisc replace dev D root tbf
  rate R burst 1540 latency 5ms` on the host veth (ingress) or the pod's eth0 (egress).
- Traffic: iperf3 TCP, `-P 1` and `-P 8`, {seconds} s per run, client on the *receiver* with
  `-R` so every reporting interval (0.1 s) is counted by the receiver; TCP congestion control
  {congestion}. Goodput/rate = the receiver's payload bit rate over
  the whole run ÷ the limit; TCP's ceiling at MTU 1500 is 1448/1514 = 0.956.
- **First-second overshoot** = L2 bits the receiver got in its first second − rate × 1 s. The
  receiver's payload in [0, 1 s) (0.1 s intervals, the one crossing 1 s pro rata) is scaled by
  1514/1448 to the frames TBF counts (full segments; this over- rather than under-states), and
  the result is shown with its length in ms at the rate. "≤ 0" means the first second stayed
  within the limit. Resolution: the receiver's clock starts when iperf3's control message
  arrives, a few hundred µs to ~2 ms away from the first data byte, so about ±2 ms of rate;
  the book's TBF (bucket of one frame) shows that noise floor.
- **RTT under load**: `ping -i 0.02` from the sender to the receiver, from 1 s into the run
  until its end, so each echo request waits in the same queue as the data (the sender pod's
  eth0 or its ifb for egress, the receiver's host veth for ingress); percentiles are
  nearest-rank over the replies, lost echoes are counted separately.
- **Retransmits**: iperf3's sender-side count (`sum_sent.retransmits`).
- **Limit change** (podbw only): one flow, limit 100M → 20M at ~2 s → 100M at ~4 s through the
  Reconciler during a 6 s run. The receiver's eth0 byte counter is sampled every ~10 ms on the
  same clock as the change (taken when `reconcile()` returned); "holds after" = time from the
  change until every later 0.1 s window is within 0.5..1.25 × the new rate (decrease: a stall
  does not count as holding), or until the end of the first window above 1.25 × the old rate
  (increase: the old limit no longer applies); "then" = the mean rate of the windows after that
  (after the change when it never held), ÷ the new limit (eth0's counter: frames, GSO packets
  with one header).
  Resets = the growth of `EstabResets` (/proc/net/snmp) in both namespaces from the start until
  0.5 s before the end (iperf3's own teardown excluded); "completed" = iperf3 finished without
  error (a reset data connection fails the run).
- podbw's cells ran {repeat} times each (2 cores, other work on the machine: close calls need
  repeating); the row shows the median run by goodput, with every run's goodput in brackets.
  The other shapers ran once.
- Same machine, same run, one lab; rows ran one after another under /tmp/podbw-bench.lock.
"""


def report(cells: list[Cell], changes: list[ChangeResult], info: dict, plan: Plan, started: str, took_s: float) -> str:
    out = [
        "# Shaping benchmark",
        "",
        f"Run {started}, {took_s / 60:.1f} min: `bench/shaping.py {' '.join(sys.argv[1:])}`. "
        f"Linux {platform.release()}, {os.cpu_count()} CPUs, {iperf3_version()}, TCP congestion control "
        f"{info.get('congestion', '?')}; unshaped veth (1 flow): {info.get('unshaped_bits_per_s', 0) / 1e9:.2f} Gbit/s.",
    ]
    if info.get("skipped_rates"):
        out.append(f"Skipped (above 1/1.1 of the unshaped rate): {', '.join(info['skipped_rates'])}.")
    method = METHOD.replace("{seconds}", f"{plan.seconds:g}").replace("{repeat}", str(plan.repeat))
    congestion = info.get("congestion", "?") + ("" if plan.congestion else " (the namespaces' default)")
    out += ["", method.replace("{congestion}", congestion), ""]
    for direction in plan.directions:
        rows = [c for c in cells if c.direction == direction]
        if not rows:
            continue
        rows.sort(key=lambda c: (c.rate_bits_per_s, plan.shapers.index(c.shaper), c.flows))
        out += [f"## Pod {direction}", ""]
        if direction == "ingress" and "podbw-ifb" in plan.shapers:
            out += ["(podbw-ifb puts pod ingress on the host veth exactly as podbw-pod does: not run twice.)", ""]
        out += table(rows) + [""]
    if changes:
        out += [
            "## Limit change during a run (podbw)",
            "",
            "| shaper | direction | change | at | holds after | then rate/limit | completed | resets | retransmits |",
            "| --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: |",
        ]
        for change in changes:
            if change.error and not change.steps:
                out.append(f"| {change.shaper} | {change.direction} | error: {change.error} | | | | no | {change.resets} | |")
            for rate, at_s, hold_s, ratio in change.steps:
                hold = "never" if hold_s == float("inf") else f"{hold_s * 1000:.0f} ms"
                out.append(
                    f"| {change.shaper} | {change.direction} | → {rate} | {at_s:.2f} s | {hold} | {ratio:.2f} | "
                    f"{'yes' if change.completed else 'no'} | {change.resets} | {change.retransmits} |"
                )
        out.append("")
    out += ["## podbw against the targets", ""]
    misses = []
    for cell in cells:
        if cell.shaper.startswith("podbw"):
            for miss in targets(cell):
                misses.append(f"- {cell.shaper} {human_bits(cell.rate_bits_per_s)}bit/s {cell.direction} P{cell.flows}: {miss}")
    for change in changes:
        slow = [s for s in change.steps if not s[2] <= CHANGE_TARGET_S]
        if slow or not change.completed or change.resets:
            misses.append(f"- {change.shaper} {change.direction} limit change: {change}")
    podbw_cells = [c for c in cells if c.shaper.startswith("podbw")]
    out.append(
        f"Goodput ≥ {GOODPUT_TARGET}, first-second overshoot ≤ the configured burst, RTT p99 ≤ "
        f"{RTT_P99_TARGET_MS:g} ms (at ≥ 10 Mbit/s), a limit change holding within {CHANGE_TARGET_S:g} s "
        f"with no reset: {len(podbw_cells)} podbw rows, {len(changes)} change runs, "
        f"{len(misses)} misses{':' if misses else '.'}"
    )
    out += [""] + misses
    return "\n".join(out).rstrip() + "\n"


def iperf3_version() -> str:
    try:
        return subprocess.run(["iperf3", "--version"], capture_output=True, text=True).stdout.split("(")[0].strip()
    except OSError:
        return "iperf3 ?"


def parse_args(argv: list[str] | None = None) -> tuple[Plan, Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~2 minute subset")
    parser.add_argument("--rates", help="comma-separated quantities (default 10M,100M,1G,5G; 5G only if the veth reaches it)")
    parser.add_argument("--seconds", type=float, help="per run (default 5, quick 3)")
    parser.add_argument("--flows", help="comma-separated iperf3 -P values (default 1,8)")
    parser.add_argument("--shapers", help=f"comma-separated, from {','.join(ALL_SHAPERS)}")
    parser.add_argument("--directions", default="ingress,egress")
    parser.add_argument("--repeat", type=int, help="runs per podbw cell, the median by goodput reported (default 3, quick 1)")
    parser.add_argument("--congestion", help="TCP congestion control for iperf3 (-C); default: the namespace's")
    parser.add_argument("--no-change-test", action="store_true")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    quick = args.quick
    rates = args.rates or ("10M,1G" if quick else "10M,100M,1G,5G")
    flows = args.flows or "1,8"
    shapers = args.shapers or ("podbw-pod,podbw-ifb,cni-1s" if quick else ",".join(ALL_SHAPERS))
    for rate in rates.split(","):
        if parse_bits(rate) is None:
            parser.error(f"bad rate {rate!r}")
    for shaper in shapers.split(","):
        if shaper not in ALL_SHAPERS:
            parser.error(f"unknown shaper {shaper!r}")
    plan = Plan(
        shapers=tuple(shapers.split(",")),
        rates=tuple(rates.split(",")),
        flows=tuple(int(f) for f in flows.split(",")),
        directions=tuple(d for d in args.directions.split(",") if d),
        seconds=args.seconds or (3.0 if quick else 5.0),
        repeat=max(args.repeat or (1 if quick else 3), 1),
        congestion=args.congestion,
        change_test=not args.no_change_test,
    )
    return plan, args.output


@contextlib.contextmanager
def bench_lock(log) -> Iterator[None]:
    """The shared benchmark lock: another benchmark's traffic on the same 2 cores would be
    measured as podbw's shaping."""
    with open(LOCK_PATH, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for {LOCK_PATH}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> int:
    plan, output = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/shaping.py needs root (namespaces, tc)", file=sys.stderr)
        return 2
    # SIGTERM (timeout(1), a killed session) unwinds like Ctrl-C, so the lab still comes down.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    t0 = time.monotonic()

    def log(line: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {line}", flush=True)

    with bench_lock(log):
        # The report times the run, not the wait for the lock.
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        t0 = time.monotonic()
        cells, changes, info = run(plan, log)
    text = report(cells, changes, info, plan, started, time.monotonic() - t0)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    output.with_suffix(".json").write_text(
        json.dumps({"info": info, "cells": [c.as_json() for c in cells], "changes": [dataclasses.asdict(c) for c in changes]}, indent=1),
        encoding="utf-8",
    )
    print(text)
    print(f"written to {output} (+ .json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
