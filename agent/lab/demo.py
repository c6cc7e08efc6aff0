"""`podbw demo`: a lab node, the agent, iperf3 traffic and a live view; all gone on exit.

The order is that of a real node: pods first, the agent discovers them over CRI and the lab's
Kubernetes API stand-in and shapes them, traffic runs, and midway one pod's limit changes with
`kubectl annotate`; the demo then shows the agent's Event about it with `kubectl get events`.
The view (the caller's) watches the agent's /metrics like any user would. Teardown runs on a
normal end, on Ctrl-C, SIGTERM or SIGHUP, and on errors; a second Ctrl-C cannot cut it short.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Iterator, Protocol

import agent
from agent.lab import demo_scenario as scenario
from agent.lab import process
from agent.lab.agent_process import DEFAULT_PORT, AgentProcess, free_port, start_agent
from agent.lab.config import LabConfig
from agent.lab.demo_change import INITIAL_ANNOTATIONS, VIA_KUBECTL, annotations_file, change_limit, write_atomically
from agent.lab.demo_events import EventLookups, EventQuery
from agent.lab.demo_traffic import RunningFlow, start_flows, stop_flows
from agent.lab.errors import LabError
from agent.lab.kubectl import Kubectl, find_kubectl, where_looked
from agent.lab.node import LabNode
from agent.model.annotations import desired_shaping
from agent.model.direction import Direction
from agent.model.pod_events import INVALID_ANNOTATION, LIMIT_CHANGED

TICK_S = 1.0
TRAFFIC_SLACK_S = 120.0
"""iperf3 runs this much longer than the demo: it is killed at the end, never runs out first."""


class DemoView(Protocol):
    """What the demo needs from a view: a redraw, event lines, and the limits it shows."""

    def refresh(self, status: str = "", force: bool = False) -> None: ...

    def event(self, text: str) -> None: ...

    def limit_bytes_per_s(self, pod_key: str, direction: str) -> float | None: ...


OpenView = Callable[[str], ContextManager[DemoView]]
"""Given the agent's /metrics URL, a context manager yielding the view."""


@dataclass(frozen=True)
class DemoSettings:
    lab_name: str = scenario.LAB_NAME
    duration_s: float = 30.0
    port: int | None = None
    """The agent's port on 127.0.0.1; None: 9637 if free, else any free port."""
    egress_mode: str = "pod"


@dataclass
class DemoResult:
    metrics_url: str = ""
    interrupted: bool = False
    change_via: str = ""
    """How the limit was changed midway: demo_change.VIA_KUBECTL or VIA_FILE."""
    change_seen_after_s: float | None = None
    """How long after the change was made the view showed the new limit."""
    event_lines: list[str] = field(default_factory=list)
    """kubectl's lines for the agent's Events the demo found."""


def dashboards_dir() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(agent.__file__))), "dashboards")


def run_demo(settings: DemoSettings, open_view: OpenView, say: Callable[[str], None] = print) -> DemoResult:
    if settings.duration_s <= 0:
        raise LabError("the demo duration must be positive")
    config = LabConfig.for_name(settings.lab_name)
    # A private netns dir inside the lab's state dir: `down` removes every pin in it.
    config = LabConfig.for_name(settings.lab_name, netns_dir=os.path.join(config.state_dir, "netns"))
    node = LabNode(config)
    say = _never_failing(say)
    _clear_earlier_demo(node, say)
    result = DemoResult()
    running_agent: AgentProcess | None = None
    flows: list[RunningFlow] = []
    failures: list[str] = []
    with _signals_interrupt():
        try:
            running_agent, flows = _set_up(node, settings, result, say)
            kubectl = _kubectl(node, say)
            with open_view(result.metrics_url) as view:
                _timeline(view, settings, node, kubectl, running_agent, result)
        except KeyboardInterrupt:
            result.interrupted = True
        finally:
            with _signals_ignored():
                failures = _tear_down(node, running_agent, flows, result, say)
    if failures:  # reached only when nothing else went wrong first
        raise LabError("teardown incomplete: " + "; ".join(failures))
    return result


def _tear_down(
    node: LabNode,
    running_agent: AgentProcess | None,
    flows: list[RunningFlow],
    result: DemoResult,
    say: Callable[[str], None],
) -> list[str]:
    """Every step runs even if one before it failed; the lab goes last (it kills leftovers)."""
    say("stopping: traffic, agent, lab ...")
    failures: list[str] = []
    steps: list[tuple[str, Callable[[], None]]] = [("traffic", lambda: stop_flows(flows))]
    if running_agent is not None:
        steps.append(("agent", running_agent.stop))
    steps.append(("lab", node.down))
    for what, step in steps:
        try:
            step()
        except Exception as err:  # report it and keep tearing down
            failures.append(f"{what}: {err}")
    config = node.config
    if failures:
        say(f"teardown problems: {'; '.join(failures)}; `podbw lab down --name {config.name}` retries")
    else:
        say(f"lab {config.name} removed (namespaces, veths, bridge {config.bridge}, processes)")
    if result.metrics_url:
        say(f"metrics were served at {result.metrics_url} while the demo ran")
    say(f"dashboards: {os.path.join(dashboards_dir(), '*.json')} (import into Grafana)")
    return failures


def _clear_earlier_demo(node: LabNode, say: Callable[[str], None]) -> None:
    """Remove a lab an earlier demo left when it was killed; refuse while a demo runs."""
    if not node.is_up():
        return
    config = node.config
    owner = _read_pid(_pid_file(config))
    if owner is None:
        raise LabError(
            f"lab {config.name!r} is up but was not made by podbw demo; `podbw lab down --name {config.name}` "
            "removes it, or pass another --demo-lab"
        )
    if process.pid_alive(owner) and "demo" in process.pid_cmdline(owner):
        raise LabError(f"another podbw demo (pid {owner}) is running lab {config.name!r}")
    say(f"lab {config.name} was left by an earlier demo (pid {owner}, gone): removing it")
    node.down()


def _pid_file(config: LabConfig) -> str:
    return os.path.join(config.state_dir, "demo.pid")


def _read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _never_failing(say: Callable[[str], None]) -> Callable[[str], None]:
    """A closed stdout (`podbw demo | head`) must not stop the teardown."""

    def safe(text: str) -> None:
        try:
            say(text)
        except (OSError, ValueError):
            pass

    return safe


def _set_up(
    node: LabNode, settings: DemoSettings, result: DemoResult, say: Callable[[str], None]
) -> tuple[AgentProcess, list[RunningFlow]]:
    config = node.config
    say(f"lab {config.name}: bridge {config.bridge}, subnet {config.subnet}, creating {len(scenario.PODS)} pods ...")
    lab_pods = node.up(scenario.PODS)
    with open(_pid_file(config), "w", encoding="ascii") as f:
        f.write(f"{os.getpid()}\n")
    for pod in lab_pods:
        where = "host network (podbw leaves it alone)" if pod.host_network else f"ip={pod.ip} veth={pod.host_veth}"
        annotations = ", ".join(f"{k}={v}" for k, v in sorted(pod.annotations.items())) or "no annotations"
        say(f"  pod {pod.key} {where} sandbox={pod.sandbox_id} ({annotations})")
    say(
        f"Kubernetes API stand-in {node.api_server_url()} (the lab's; a real kube-apiserver cannot be installed "
        f"here), node {node.node_name}, kubeconfig {node.kubeconfig}"
    )

    overrides = annotations_file(config.state_dir)
    write_atomically(overrides, INITIAL_ANNOTATIONS)
    port = settings.port or free_port(DEFAULT_PORT)
    running_agent = start_agent(
        config,
        port,
        log_path=os.path.join(config.state_dir, "agent.log"),
        extra_args=[
            "--annotations-file", overrides,
            "--egress-mode", settings.egress_mode,
            # Leaves no qdisc or ifb behind even if the lab's own teardown were interrupted.
            "--cleanup-on-exit",
        ],
    )
    try:
        result.metrics_url = running_agent.metrics_url
        say(f"agent pid {running_agent.pid}: metrics at {result.metrics_url}, pods from CRI and the Kubernetes API")
        # Traffic before the limits would show line-rate peaks that linger in the peak column.
        running_agent.wait_until_shaped(scenario.shaped_pods(), scenario.expected_limits())
        say("agent applied the limits: " + ", ".join(f"{k} {d}" for k, d in sorted(scenario.expected_limits())))
        by_key = {pod.key: pod for pod in lab_pods}
        flows = start_flows(node, by_key, scenario.FLOWS, settings.duration_s + TRAFFIC_SLACK_S)
    except BaseException:
        running_agent.stop()  # the caller's teardown never got it: stop it before the lab goes
        raise
    for flow in flows:
        server_pid, client_pid = flow.pids
        say(f"  traffic {flow.flow.describe()} (iperf3 pids {client_pid} -> {server_pid})")
    return running_agent, flows


def _kubectl(node: LabNode, say: Callable[[str], None]) -> Kubectl | None:
    path = find_kubectl()
    if path is None:
        say(f"no kubectl ({where_looked()}): the change midway goes through the annotations file")
        return None
    say(f"kubectl {path}: makes the change midway and reads the agent's Events")
    return Kubectl(path, node.kubeconfig)


def _timeline(
    view: DemoView,
    settings: DemoSettings,
    node: LabNode,
    kubectl: Kubectl | None,
    running_agent: AgentProcess,
    result: DemoResult,
) -> None:
    target = _rate_bytes_per_s(scenario.LIMIT_AFTER)
    lookups = EventLookups(kubectl, view.event) if kubectl else None
    if lookups:
        result.event_lines = lookups.found
        lookups.look_for(EventQuery(scenario.INVALID_NAMESPACE, scenario.INVALID_NAME, INVALID_ANNOTATION))
    started_s = time.monotonic()
    change_at_s = started_s + settings.duration_s / 2
    end_s = started_s + settings.duration_s
    changed_s: float | None = None
    next_s = started_s
    while True:
        now = time.monotonic()
        if now >= end_s:
            break
        running_agent.check_running()
        if changed_s is None and now >= change_at_s:
            result.change_via = change_limit(kubectl, node.config.state_dir, view.event)
            changed_s = time.monotonic()
        view.refresh(f"{end_s - now:.0f} s left, Ctrl-C ends")
        if (
            changed_s is not None
            and result.change_seen_after_s is None
            and view.limit_bytes_per_s(scenario.CHANGED_POD, scenario.CHANGED_DIRECTION) == target
        ):
            result.change_seen_after_s = time.monotonic() - changed_s
            done = "kubectl annotate returned" if result.change_via == VIA_KUBECTL else "the file was written"
            view.event(
                f"{scenario.CHANGED_POD} {scenario.CHANGED_DIRECTION} limit is now {scenario.LIMIT_AFTER} "
                f"(shown by the agent's /metrics {result.change_seen_after_s:.1f} s after {done})"
            )
            if lookups:
                lookups.look_for(EventQuery(scenario.CHANGED_NAMESPACE, scenario.CHANGED_NAME, LIMIT_CHANGED))
            view.refresh(f"{end_s - time.monotonic():.0f} s left", force=True)
        if lookups:
            lookups.poll()
        next_s += TICK_S
        if next_s < time.monotonic():  # a slow refresh: skip the missed ticks, no burst
            next_s = time.monotonic() + TICK_S
        time.sleep(max(0.0, min(next_s, end_s) - time.monotonic()))
    if changed_s is not None and result.change_seen_after_s is None:
        view.event(f"the new {scenario.CHANGED_POD} limit did not show within the demo")
    if lookups:
        lookups.finish()
    view.refresh("done", force=True)


def _rate_bytes_per_s(quantity: str) -> float:
    params = desired_shaping({scenario.CHANGED_KEY: quantity})[Direction(scenario.CHANGED_DIRECTION)].params
    assert params is not None
    return float(params.rate_bytes_per_s)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP end the demo the way Ctrl-C does, so teardown always runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
