"""iperf3 and ping between lab pods: the traffic behind tests, benchmarks and the demo.

Traffic only ever flows between namespaces of the lab itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass, field

from agent.lab.errors import LabError
from agent.lab.node import LabNode
from agent.lab.state import LabPod

DEFAULT_PORT = 5201


@dataclass(frozen=True)
class Interval:
    start_s: float
    end_s: float
    bytes: int
    """Payload bytes of all streams in [start_s, end_s)."""


@dataclass(frozen=True)
class IperfResult:
    received_bits_per_s: float
    """Goodput the receiver measured over the whole run."""
    retransmits: int
    intervals_bits_per_s: list[float]
    """Receiver-side throughput per reporting interval (sender side when unavailable)."""
    first_second_bits: float
    """Bits the receiver got in the first second."""
    intervals: tuple[Interval, ...] = ()
    """The reporting intervals themselves (same side as intervals_bits_per_s)."""
    receiver_side: bool = False
    """True when the intervals were measured by the receiver (the client ran with -R)."""


@dataclass(frozen=True)
class PingResult:
    rtts_ms: list[float]
    """Round-trip times of the echoes that came back."""
    sent: int

    @property
    def lost(self) -> int:
        return max(self.sent - len(self.rtts_ms), 0)


@dataclass(frozen=True)
class LoadedRun:
    """iperf3 traffic plus pings along the same path, taken while the traffic ran."""

    iperf: IperfResult
    ping: PingResult = field(default_factory=lambda: PingResult([], 0))


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


def _client_argv(
    server: LabPod, seconds: float, parallel: int, reverse: bool, port: int, interval_s: float,
    congestion: str | None = None,
) -> list[str]:
    argv = [
        "iperf3", "-c", server.ip, "-p", str(port), "-t", f"{seconds:g}", "-P", str(parallel),
        "-i", f"{interval_s:g}", "-J",
    ]
    if reverse:
        argv.append("-R")
    if congestion:
        argv += ["-C", congestion]  # applies to the sender's sockets too (iperf3 passes it on)
    return argv


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
    done = lab.exec_in_pod(client, _client_argv(server, seconds, parallel, reverse, port, interval_s), timeout=seconds + 30)
    if done.returncode != 0:
        raise LabError(f"iperf3 {client.key} -> {server.key} failed: {(done.stdout + done.stderr)[-400:]}")
    return parse_iperf_json(done.stdout, receiver_side=reverse)


def iperf(
    lab: LabNode, client: LabPod, server: LabPod, seconds: float, parallel: int = 1, reverse: bool = False,
    port: int = DEFAULT_PORT,
) -> IperfResult:
    proc = start_server(lab, server, port)
    try:
        return run_client(lab, client, server, seconds, parallel, reverse, port)
    finally:
        _stop(proc)


class LoadedTraffic:
    """iperf3 data sender -> receiver with pings along the same path; `finish()` collects both.

    The iperf3 client runs on the receiver with -R, so every interval is the receiver's own
    count. The echo requests leave the sender's side like the data, so they wait in whatever
    queue the data waits in (the sender pod's eth0, its ifb, or the receiver's host veth).
    Pinging starts `ping_skip_s` into the run (TCP's start-up is over: the queue is the steady
    one) and stops with the traffic; the constructor returns once the pinger runs. `congestion`
    picks the TCP congestion control (iperf3 -C) instead of the namespaces' default.
    """

    def __init__(
        self,
        lab: LabNode,
        sender: LabPod,
        receiver: LabPod,
        seconds: float,
        parallel: int = 1,
        port: int = DEFAULT_PORT,
        interval_s: float = 0.1,
        ping_interval_s: float = 0.02,
        ping_skip_s: float = 1.0,
        congestion: str | None = None,
    ) -> None:
        self.sender, self.receiver, self.seconds = sender, receiver, seconds
        self._server = start_server(lab, sender, port)
        self._client: subprocess.Popen | None = None
        self._pinger: subprocess.Popen | None = None
        self._ping_count = max(int((seconds - ping_skip_s - 0.3) / ping_interval_s), 0)
        self._ping_interval_s = ping_interval_s
        try:
            self.started_monotonic_s = time.monotonic()
            """When the client was started (its intervals count from a few ms later)."""
            self._client = lab.run_in_pod(
                receiver, _client_argv(sender, seconds, parallel, True, port, interval_s, congestion),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            if self._ping_count:
                time.sleep(ping_skip_s)
                self._pinger = lab.run_in_pod(
                    sender,
                    ["ping", "-n", "-c", str(self._ping_count), "-i", f"{ping_interval_s:g}", "-W", "1", receiver.ip],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                )
        except BaseException:
            self.close()
            raise

    @property
    def receiver_pid(self) -> int:
        """The iperf3 client: a process in the receiver's namespace (its /proc/<pid>/net)."""
        assert self._client is not None
        return self._client.pid

    @property
    def sender_pid(self) -> int:
        """The iperf3 server: a process in the sender's namespace."""
        return self._server.pid

    def finish(self) -> LoadedRun:
        """Wait for the run to end; LabError when iperf3 failed (e.g. a connection was reset)."""
        assert self._client is not None
        timeout_s = self.seconds + 30
        try:
            out, err = self._client.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            self.close()
            raise LabError(f"iperf3 {self.sender.key} -> {self.receiver.key}: no exit in {timeout_s:g} s") from e
        try:
            if self._client.returncode != 0:
                raise LabError(f"iperf3 {self.sender.key} -> {self.receiver.key} failed: {(out + err)[-400:]}")
            result = parse_iperf_json(out, receiver_side=True)
            ping = PingResult([], 0)
            if self._pinger is not None:
                try:
                    ping_out, _ = self._pinger.communicate(timeout=5 + self._ping_count * self._ping_interval_s)
                except subprocess.TimeoutExpired:
                    self._pinger.kill()
                    ping_out, _ = self._pinger.communicate()
                ping = PingResult(parse_ping_rtts_ms(ping_out), self._ping_count)
            return LoadedRun(result, ping)
        finally:
            self.close()

    def close(self) -> None:
        for proc in (self._client, self._pinger, self._server):
            if proc is not None:
                _stop(proc)


def loaded_run(
    lab: LabNode,
    sender: LabPod,
    receiver: LabPod,
    seconds: float,
    parallel: int = 1,
    port: int = DEFAULT_PORT,
    interval_s: float = 0.1,
    ping_interval_s: float = 0.02,
    ping_skip_s: float = 1.0,
    congestion: str | None = None,
) -> LoadedRun:
    """Data sender -> receiver while the sender pings the receiver (see LoadedTraffic)."""
    return LoadedTraffic(
        lab, sender, receiver, seconds, parallel, port, interval_s, ping_interval_s, ping_skip_s, congestion
    ).finish()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def parse_iperf_json(text: str, receiver_side: bool = False) -> IperfResult:
    try:
        data = json.loads(text)
        end = data["end"]
        received = float(end["sum_received"]["bits_per_second"])
        retransmits = int(end.get("sum_sent", {}).get("retransmits", 0))
        intervals = []
        rates = []
        first_second_bits = 0.0
        for interval in data.get("intervals", []):
            total = interval["sum"]
            start, stop = float(total["start"]), float(total["end"])
            rates.append(float(total["bits_per_second"]))
            intervals.append(Interval(start, stop, int(total.get("bytes", 0))))
            if start < 1.0:
                overlap_s = min(stop, 1.0) - start
                first_second_bits += float(total["bits_per_second"]) * overlap_s
    except (ValueError, KeyError, TypeError) as err:
        raise LabError(f"unexpected iperf3 output: {err}: {text[:200]!r}") from err
    return IperfResult(received, retransmits, rates, first_second_bits, tuple(intervals), receiver_side)


def parse_ping_rtts_ms(text: str) -> list[float]:
    return [float(m) for m in re.findall(r"time=([0-9.]+) ms", text)]


def ping_rtts_ms(lab: LabNode, client: LabPod, target_ip: str, count: int, interval_s: float = 0.05) -> list[float]:
    """Round-trip times of `count` pings (lost ones are left out)."""
    done = lab.exec_in_pod(
        client, ["ping", "-n", "-c", str(count), "-i", f"{interval_s:g}", "-W", "1", target_ip],
        timeout=count * interval_s + 15,
    )
    return parse_ping_rtts_ms(done.stdout)
