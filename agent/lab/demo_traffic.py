"""Long-running iperf3 flows between lab pods, started in the background and stopped on exit."""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass
from typing import Mapping, Sequence

from agent.lab import traffic
from agent.lab.demo_scenario import Flow
from agent.lab.errors import LabError
from agent.lab.node import LabNode
from agent.lab.state import LabPod


@dataclass
class RunningFlow:
    flow: Flow
    server: subprocess.Popen
    client: subprocess.Popen

    @property
    def pids(self) -> tuple[int, int]:
        return self.server.pid, self.client.pid


def start_flows(
    node: LabNode, pods: Mapping[str, LabPod], flows: Sequence[Flow], seconds: float
) -> list[RunningFlow]:
    """Start every flow (server first, listening, then its client); on failure stop those begun."""
    running: list[RunningFlow] = []
    try:
        for flow in flows:
            server_pod, client_pod = _pod(pods, flow.server), _pod(pods, flow.client)
            server = traffic.start_server(node, server_pod, flow.port)
            argv = ["iperf3", "-c", server_pod.ip, "-p", str(flow.port), "-t", f"{seconds:.0f}"]
            if flow.bitrate:
                argv += ["-b", flow.bitrate]
            try:
                client = node.run_in_pod(client_pod, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            except BaseException:
                _end(server)
                raise
            running.append(RunningFlow(flow, server, client))
    except BaseException:
        stop_flows(running)
        raise
    return running


def stop_flows(running: Sequence[RunningFlow]) -> None:
    for flow in running:
        _end(flow.client)
        _end(flow.server)


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=2.0)


def _pod(pods: Mapping[str, LabPod], key: str) -> LabPod:
    pod = pods.get(key)
    if pod is None or not pod.ip:
        raise LabError(f"demo flow needs pod {key} with an IP")
    return pod
