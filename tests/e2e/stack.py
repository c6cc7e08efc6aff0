"""The end-to-end stack: a lab node, `podbw run` as a process, and a real Prometheus scraping it.

Used by the e2e tests and by bench/pictures.py. Prometheus runs from the Debian package on
loopback with its data in a temporary directory; the lab's scrape target carries the `node` and
`cluster` labels a Kubernetes scrape config would add (kubernetes SD node name, external labels).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import yaml

from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from agent.lab.state import LabPod
from tests.integration.agent_process import AgentProcess, free_port
from tests.integration.conftest import new_lab_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES_FILE = os.path.join(REPO_ROOT, "dashboards", "alerts.rules.yaml")
PROMETHEUS_BIN = "/usr/bin/prometheus"
JOB = "podbw"
NODE_LABEL = "lab-node"
CLUSTER_LABEL = "lab"

T = TypeVar("T")


class StackError(Exception):
    """A part of the e2e stack did not start or answer."""


def wait_until(condition: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.1) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)


def http_get(url: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def _stop(proc: subprocess.Popen[Any], timeout_s: float = 10.0) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


@dataclass
class PrometheusProcess:
    """/usr/bin/prometheus scraping the agent every second, evaluating podbw's alert rules."""

    workdir: str
    targets: tuple[str, ...]
    rule_files: tuple[str, ...] = (RULES_FILE,)
    target_labels: Mapping[str, str] = field(default_factory=lambda: {"node": NODE_LABEL, "cluster": CLUSTER_LABEL})
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> str:
        return os.path.join(self.workdir, "prometheus.log")

    def config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": list(self.rule_files),
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "static_configs": [{"targets": list(self.targets), "labels": dict(self.target_labels)}],
                }
            ],
        }

    def start(self, ready_timeout_s: float = 30.0) -> None:
        if not os.access(PROMETHEUS_BIN, os.X_OK):
            raise StackError(f"{PROMETHEUS_BIN} is missing (Debian package prometheus)")
        config_path = os.path.join(self.workdir, "prometheus.yml")
        with open(config_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(self.config(), f)
        argv = [
            PROMETHEUS_BIN,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={os.path.join(self.workdir, 'data')}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d",
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._ready, ready_timeout_s, f"prometheus /-/ready (log {self.log_path})")

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise StackError(f"prometheus exited with {self.proc.returncode}; log: {_tail(self.log_path)}")
        return http_get(f"{self.url}/-/ready", 1.0)[0] == 200

    def stop(self) -> int | None:
        return _stop(self.proc) if self.proc is not None else None

    # ---- HTTP API ---------------------------------------------------------------------------

    def api(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None}, doseq=True)
        status, body = http_get(f"{self.url}/api/v1/{path}?{query}", 10.0)
        try:
            data = json.loads(body)
        except ValueError:
            raise StackError(f"prometheus {path} answered {status}: {body[:300]!r}") from None
        if data.get("status") != "success":
            raise StackError(f"prometheus {path} {params}: {data.get('errorType')}: {data.get('error')}")
        return data["data"]

    def query(self, expr: str, at_s: float | None = None) -> list[dict[str, Any]]:
        """Instant query; a scalar result is returned as one sample without labels."""
        data = self.api("query", query=expr, time=at_s)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_range(self, expr: str, start_s: float, end_s: float, step_s: float) -> list[dict[str, Any]]:
        return list(self.api("query_range", query=expr, start=start_s, end=end_s, step=step_s)["result"])

    def label_values(self, label: str, match: str) -> list[str]:
        return list(self.api(f"label/{label}/values", **{"match[]": match}))

    def targets_up(self) -> bool:
        active = self.api("targets")["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self.api("rules")["groups"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("alerts")["alerts"])


@dataclass
class Stack:
    lab: LabNode
    pods: dict[str, LabPod]
    """By pod name."""
    agent: AgentProcess
    prometheus: PrometheusProcess

    def wait_scraped(self, timeout_s: float = 30.0) -> None:
        """Until Prometheus holds a scrape of every lab pod."""
        want = {pod.name for pod in self.pods.values()}

        def scraped() -> bool:
            got = {s["metric"].get("pod") for s in self.prometheus.query("podbw_pod_info")}
            return self.prometheus.targets_up() and want <= got

        wait_until(scraped, timeout_s, f"Prometheus to scrape pods {sorted(want)}", interval_s=0.25)


def add_foreign_qdisc(pod: LabPod) -> None:
    """A root TBF podbw did not create on the pod's host veth (as the CNI bandwidth plugin's)."""
    subprocess.run(
        ["tc", "qdisc", "replace", "dev", pod.host_veth, "root", "handle", "1:", "tbf",
         "rate", "10mbit", "burst", "16k", "latency", "50ms"],
        check=True, capture_output=True, text=True,
    )


@contextlib.contextmanager
def running_stack(
    workdir: str, pods: Sequence[PodSpec], foreign: Sequence[str] = (), agent_args: Sequence[str] = ()
) -> Iterator[Stack]:
    """A lab with `pods` (those named in `foreign` get a foreign root qdisc first), the agent and
    Prometheus; everything is stopped and the lab brought down on exit, also on failure."""
    lab = LabNode(new_lab_config())
    agent: AgentProcess | None = None
    prometheus: PrometheusProcess | None = None
    try:
        by_name = {pod.name: pod for pod in lab.up(pods)}
        for name in foreign:
            add_foreign_qdisc(by_name[name])
        # With the lab's API stand-in, as the chart runs it: pod Events and the kubernetes source exported too.
        api = ["--kubeconfig", lab.kubeconfig, "--node-name", lab.node_name]
        agent = AgentProcess(lab, ["--sample-interval", "1", *api, *agent_args]).start()
        prometheus = PrometheusProcess(workdir, (f"127.0.0.1:{agent.port}",))
        prometheus.start()
        stack = Stack(lab, by_name, agent, prometheus)
        stack.wait_scraped()
        yield stack
    finally:
        failing = sys.exc_info()[0] is not None
        errors = []
        if agent is not None:
            with open(os.path.join(workdir, "agent.log"), "w", encoding="utf-8") as log:
                log.write(agent.log_text())  # kept next to Prometheus' log for post-mortems
        for proc in (prometheus, agent):
            if proc is not None:
                try:
                    proc.close() if proc is agent else proc.stop()
                except Exception as e:  # keep tearing the rest down
                    errors.append(repr(e))
        lab.down()
        if errors and not failing:
            raise StackError(f"teardown: {errors}")


def finite_values(result: list[dict[str, Any]]) -> list[float]:
    """The sample values of an instant query result, failing on NaN or infinities."""
    values = [float(sample["value"][1]) for sample in result]
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise StackError(f"non-finite values {bad} in {result}")
    return values


def _tail(path: str, chars: int = 1500) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - chars))
            return f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
