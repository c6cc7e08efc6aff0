"""The podbw agent as a child process pointed at a lab (`python -m agent run ...`)."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Collection, Sequence

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from agent.lab import kube_process
from agent.lab.config import LabConfig
from agent.lab.errors import LabError
from agent.lab.server_process import child_env

DEFAULT_PORT = 9637
READY_TIMEOUT_S = 20.0
_PR_SET_PDEATHSIG = 1


def free_port(preferred: int = DEFAULT_PORT, host: str = "127.0.0.1") -> int:
    """`preferred` when nothing listens on it, else a port the kernel picks."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise LabError(f"no free TCP port on {host}")


@dataclass
class AgentProcess:
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def metrics_url(self) -> str:
        return f"{self.base_url}/metrics"

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:]).rstrip()
        except OSError:
            return "(no log)"

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            raise LabError(f"the agent exited with {self.proc.returncode}:\n{self.log_tail()}")

    def metrics_text(self, timeout_s: float = 2.0) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=timeout_s) as answer:
            return answer.read().decode("utf-8", errors="replace")

    def wait_until_shaped(
        self, pod_keys: Collection[str], limits: Collection[tuple[str, str]], timeout_s: float = 15.0
    ) -> None:
        """Until /metrics shows a shaping state for both directions of every pod in `pod_keys`
        and a limit for every (namespace/pod, direction) in `limits`."""
        deadline = time.monotonic() + timeout_s
        wanted = {(key, d) for key in pod_keys for d in ("ingress", "egress")}
        missing = ["(no answer yet)"]
        while True:
            self.check_running()
            try:
                text = self.metrics_text()
                missing = sorted(f"state of {k} {d}" for k, d in wanted - set(shaping_states(text)))
                missing += sorted(f"limit of {k} {d}" for k, d in set(limits) - applied_limits(text))
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if not missing:
                return
            if time.monotonic() > deadline:
                raise LabError(
                    f"the agent did not report {', '.join(missing)} within {timeout_s:g} s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM (the agent's clean stop), SIGKILL if it does not end in time."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5.0)


def lab_agent_args(config: LabConfig, kubernetes: bool = True) -> list[str]:
    """`podbw run` flags for an agent on this lab: its CRI socket, netns dir and, with
    kubernetes, its API stand-in (the kubeconfig `podbw lab up` wrote, the lab's node name)."""
    args = ["--cri-endpoint", f"unix://{config.socket}", "--netns-dir", config.netns_dir]
    if kubernetes:
        return [*args, "--kubeconfig", config.kubeconfig, "--node-name", config.node_name]
    # Explicit: `auto` would turn the API on inside a cluster and then want a node name.
    return [*args, "--kubernetes", "off"]


def start_agent(
    config: LabConfig,
    port: int,
    log_path: str,
    extra_args: Sequence[str] = (),
    timeout_s: float = READY_TIMEOUT_S,
    kubernetes: bool = True,
) -> AgentProcess:
    """Start the agent on the lab's CRI socket, netns dir and (with kubernetes, as on a real
    node) its Kubernetes API stand-in, which must be up; return once /readyz says ready."""
    if kubernetes and kube_process.running_pid(config) is None:
        raise LabError(
            f"the Kubernetes API stand-in of lab {config.name!r} is not running (`podbw lab up` starts it); "
            "start the agent with kubernetes=False to use CRI alone"
        )
    address = f"127.0.0.1:{port}"
    argv = [
        sys.executable, "-m", "agent", "run",
        *lab_agent_args(config, kubernetes),
        "--web.listen-address", address,
        *extra_args,
    ]
    with open(log_path, "ab") as log_file:
        # Its own session: a Ctrl-C meant for the caller must not stop the agent before the
        # caller's teardown does, in its order. But if the caller is killed outright, the
        # agent gets SIGTERM instead of running on unseen.
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, env=child_env(), cwd="/", preexec_fn=_die_with_parent,
        )
    started = AgentProcess(proc, f"http://{address}", log_path)
    try:
        _wait_ready(started, timeout_s)
    except BaseException:
        started.stop()
        raise
    return started


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: nothing but the one system call.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def _wait_ready(started: AgentProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    url = f"{started.base_url}/readyz"
    while True:
        started.check_running()
        try:
            with urllib.request.urlopen(url, timeout=1.0) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass  # not listening yet, or not ready (503)
        if time.monotonic() > deadline:
            raise LabError(f"the agent was not ready at {url} within {timeout_s:g} s:\n{started.log_tail()}")
        time.sleep(0.1)


def applied_limits(metrics_text: str) -> set[tuple[str, str]]:
    """(namespace/pod, direction) of every limit an agent's /metrics reports in the kernel."""
    return {key for key, _ in _pod_samples(metrics_text, "podbw_limit_rate_bytes_per_second")}


def shaping_states(metrics_text: str) -> dict[tuple[str, str], str]:
    """(namespace/pod, direction) -> the current state in an agent's /metrics."""
    return {
        key: sample.labels.get("state", "")
        for key, sample in _pod_samples(metrics_text, "podbw_shaping_state")
        if sample.value == 1.0
    }


def _pod_samples(metrics_text: str, family_name: str) -> list[tuple[tuple[str, str], Sample]]:
    found = []
    for family in text_string_to_metric_families(metrics_text):
        if family.name == family_name:
            for sample in family.samples:
                labels = sample.labels
                found.append(((f"{labels.get('namespace')}/{labels.get('pod')}", labels.get("direction", "")), sample))
    return found
