"""iperf3 and ping between lab pods: the traffic behind tests, benchmarks and the demo.

Traffic only ever flows between namespaces of the lab itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass

from agent.lab.errors import LabError
from agent.lab.node import LabNode
from agent.lab.state import LabPod

DEFAULT_PORT = 5201


@dataclass(frozen=True)
class IperfResult:
    received_bits_per_s: float
    """Goodput the receiver measured over the whole run."""
    retransmits: int
    intervals_bits_per_s: list[float]
    """Receiver-side throughput per reporting interval (sender side when unavailable)."""
    first_second_bits: float
    """Bits the receiver got in the first second."""


def start_server(lab: LabNode, pod: LabPod, port: int = DEFAULT_PORT) -> subprocess.Popen:
    proc = lab.run_in_pod(
        pod, ["iperf3", "-s", "-p", str(port), "-1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        listening = lab.exec_in_pod(pod, ["ss", "-Htln", f"sport = :{port}"], timeout=5.0)
        if listening.stdout.strip():
            return proc
        if proc.poll() is not None:
            raise LabError(f"iperf3 server in {pod.key} exited with {proc.returncode}")
        time.sleep(0.02)
    raise LabError(f"iperf3 server in {pod.key} did not listen on {port}")


def run_client(
    lab: LabNode,
    client: LabPod,
    server: LabPod,
    seconds: float,
    parallel: int = 1,
    reverse: bool = False,
    port: int = DEFAULT_PORT,
    interval_s: float = 0.5,
) -> IperfResult:
    """Data flows client -> server, or server -> client with `reverse`."""
    argv = [
        "iperf3", "-c", server.ip, "-p", str(port), "-t", f"{seconds:g}", "-P", str(parallel),
        "-i", f"{interval_s:g}", "-J",
    ]
    if reverse:
        argv.append("-R")
    done = lab.exec_in_pod(client, argv, timeout=seconds + 30)
    if done.returncode != 0:
        raise LabError(f"iperf3 {client.key} -> {server.key} failed: {(done.stdout + done.stderr)[-400:]}")
    return parse_iperf_json(done.stdout)


def iperf(
    lab: LabNode, client: LabPod, server: LabPod, seconds: float, parallel: int = 1, reverse: bool = False,
    port: int = DEFAULT_PORT,
) -> IperfResult:
    proc = start_server(lab, server, port)
    try:
        return run_client(lab, client, server, seconds, parallel, reverse, port)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


def parse_iperf_json(text: str) -> IperfResult:
    try:
        data = json.loads(text)
        end = data["end"]
        received = float(end["sum_received"]["bits_per_second"])
        retransmits = int(end.get("sum_sent", {}).get("retransmits", 0))
        intervals = []
        first_second_bits = 0.0
        for interval in data.get("intervals", []):
            total = interval["sum"]
            intervals.append(float(total["bits_per_second"]))
            if total["start"] < 1.0:
                overlap_s = min(total["end"], 1.0) - total["start"]
                first_second_bits += float(total["bits_per_second"]) * overlap_s
    except (ValueError, KeyError, TypeError) as err:
        raise LabError(f"unexpected iperf3 output: {err}: {text[:200]!r}") from err
    return IperfResult(received, retransmits, intervals, first_second_bits)


def ping_rtts_ms(lab: LabNode, client: LabPod, target_ip: str, count: int, interval_s: float = 0.05) -> list[float]:
    """Round-trip times of `count` pings (lost ones are left out)."""
    done = lab.exec_in_pod(
        client, ["ping", "-n", "-c", str(count), "-i", f"{interval_s:g}", "-W", "1", target_ip],
        timeout=count * interval_s + 15,
    )
    return [float(m) for m in re.findall(r"time=([0-9.]+) ms", done.stdout)]
