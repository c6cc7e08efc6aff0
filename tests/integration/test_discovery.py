"""Discovery against a real lab answering as CRI-O and as containerd: CRI mode with and without
events, restarts, netns-only mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Iterator

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from agent.discovery.discovery import Discovery, DiscoverySettings
from agent.discovery.registry import PodRegistry
from agent.lab.node import LabNode
from agent.lab.spec import PodSpec
from agent.model.health import HealthRecorder
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.root

# Long enough that only inotify or CRI events can explain a pod found within a second.
NO_RESYNC_S = 3600.0
RUNTIMES = ["crio", "containerd"]


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    """Every test runs against the lab answering as each runtime (`podbw lab up --runtime`)."""
    return request.param


def twenty_pods() -> list[PodSpec]:
    pods = [PodSpec(f"web-{i}", "shop", {"kubernetes.io/ingress-bandwidth": "10M"}) for i in range(10)]
    pods += [PodSpec(f"batch-{i}", "jobs") for i in range(9)]
    pods.append(PodSpec("node-agent", "kube-system", host_network=True))
    return pods


class Running:
    def __init__(self, lab: LabNode, cri: bool, resync_s: float = NO_RESYNC_S) -> None:
        self.registry = PodRegistry()
        self.health = HealthRecorder()
        settings = DiscoverySettings(
            cri_endpoint=f"unix://{lab.config.socket}" if cri else None,
            netns_dir=lab.config.netns_dir,
            resync_interval_s=resync_s,
        )
        self.discovery = Discovery(self.registry, settings, self.health)
        self.scheduler = BackgroundScheduler(daemon=True)
        self.scheduler.start()
        self.discovery.start(self.scheduler)

    def keys(self) -> set[str]:
        return {pod.key for pod in self.registry.pods()}

    def stop(self) -> None:
        self.discovery.stop()
        self.scheduler.shutdown(wait=False)


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for r in started:
        r.stop()


@pytest.fixture(scope="module", params=RUNTIMES)
def module_lab(request: pytest.FixtureRequest) -> Iterator[LabNode]:
    from tests.integration.conftest import new_lab_config

    lab = LabNode(new_lab_config())
    try:
        lab.up(twenty_pods(), pod_events=True, runtime=request.param)
        yield lab
    finally:
        lab.down()


def test_cri_discovery_finds_exactly_the_pods_with_their_own_namespace(module_lab: LabNode, running) -> None:
    r = Running(module_lab, cri=True)
    running.append(r)
    pods = {pod.key: pod for pod in r.registry.pods()}
    assert len(pods) == 19
    assert "kube-system/node-agent" not in pods
    lab_pods = {pod.key: pod for pod in module_lab.pods()}
    for key, pod in pods.items():
        assert pod.sandbox_id == lab_pods[key].sandbox_id
        assert pod.uid == lab_pods[key].uid
        assert pod.netns_path == lab_pods[key].netns_path
        assert pod.ip == lab_pods[key].ip
        assert pod.source == "cri"
    assert pods["shop/web-3"].annotations["kubernetes.io/ingress-bandwidth"] == "10M"
    assert r.discovery.mode == "cri" and r.discovery.ready()[0]
    assert r.health.data().discovery_up["cri"] is True


@pytest.mark.parametrize("pod_events", [True, False], ids=["events-on", "events-off"])
def test_new_pod_is_seen_within_a_second_and_a_deleted_one_dropped(lab_factory, running, pod_events: bool,
                                                                    runtime: str) -> None:
    lab = lab_factory()
    lab.up([PodSpec("a", "ns1")], pod_events=pod_events, runtime=runtime)
    r = Running(lab, cri=True)
    running.append(r)
    assert r.keys() == {"ns1/a"}

    started = time.monotonic()
    lab.add(PodSpec("b", "ns1", {"kubernetes.io/egress-bandwidth": "5M"}))
    wait_for(lambda: "ns1/b" in r.keys(), timeout_s=5.0, what="new pod")
    # lab.add returns after CNI completed; the pin existed before that, so this is an upper bound.
    assert time.monotonic() - started < 1.0 + 0.5
    assert r.registry.get(lab.pods()[-1].sandbox_id).annotations == {"kubernetes.io/egress-bandwidth": "5M"}

    lab.delete("ns1/a")
    wait_for(lambda: r.keys() == {"ns1/b"}, timeout_s=1.0, what="deleted pod to go")


def test_discovery_survives_a_cri_server_restart(lab_factory, running, runtime: str) -> None:
    lab = lab_factory()
    lab.up([PodSpec("a", "ns1"), PodSpec("b", "ns1")], pod_events=True, runtime=runtime)
    r = Running(lab, cri=True, resync_s=0.5)
    running.append(r)
    assert r.keys() == {"ns1/a", "ns1/b"}

    lab.stop_cri_server()
    wait_for(lambda: not r.discovery.ready()[0], timeout_s=5.0, what="readiness to report CRI down")
    assert r.keys() == {"ns1/a", "ns1/b"}, "known pods are kept while CRI is down"
    assert r.health.data().discovery_up["cri"] is False

    lab.start_cri_server()
    wait_for(lambda: r.discovery.ready()[0], timeout_s=5.0, what="CRI to be up again")
    lab.add(PodSpec("c", "ns1"))
    wait_for(lambda: "ns1/c" in r.keys(), timeout_s=2.0, what="pod added after the restart")
    assert r.keys() == {"ns1/a", "ns1/b", "ns1/c"}


def test_a_configured_runtime_that_is_missing_lists_no_pods_and_is_not_ready(lab_factory, running,
                                                                             runtime: str) -> None:
    lab = lab_factory()
    lab.up([PodSpec("a", "ns1")], start_cri=False, runtime=runtime)
    r = Running(lab, cri=True)  # the socket does not exist: pins alone would lift every limit
    running.append(r)
    assert r.registry.pods() == []
    assert r.discovery.mode == "cri" and not r.discovery.ready()[0]
    assert not r.discovery.listing_is_complete()

    lab.start_cri_server()
    wait_for(lambda: r.keys() == {"ns1/a"}, timeout_s=5.0, what="the runtime's pods once it answers")
    assert r.discovery.ready()[0] and r.discovery.listing_is_complete()


def test_netns_only_mode_without_a_cri_endpoint(lab_factory, running, runtime: str) -> None:
    lab = lab_factory()
    lab.up([PodSpec("a", "ns1"), PodSpec("h", "ns1", host_network=True)], start_cri=False, runtime=runtime)
    r = Running(lab, cri=False)
    running.append(r)
    pods = r.registry.pods()
    assert len(pods) == 1, "the host-network pod is skipped (CRI-O pins the host's namespace, containerd nothing)"
    assert pods[0].source == "netns" and pods[0].name == os.path.basename(lab.pods()[0].netns_path)
    assert r.discovery.mode == "netns" and r.discovery.ready()[0]

    new = lab.add(PodSpec("b", "ns1"))
    wait_for(lambda: os.path.basename(new.netns_path) in r.keys(), timeout_s=1.0, what="new pin")
    lab.delete("ns1/b")
    wait_for(lambda: len(r.registry) == 1, timeout_s=1.0, what="removed pin")


def test_podbw_pods_lists_the_lab(module_lab: LabNode) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent", "pods", "--output", "json",
         "--cri-endpoint", f"unix://{module_lab.config.socket}", "--netns-dir", module_lab.config.netns_dir],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rows = {f"{row['namespace']}/{row['name']}": row for row in json.loads(result.stdout)}
    lab_pods = {pod.key: pod for pod in module_lab.pods() if not pod.host_network}
    assert rows.keys() == lab_pods.keys()
    for key, row in rows.items():
        assert row["host_interface"] == lab_pods[key].host_veth
        assert row["ip"] == lab_pods[key].ip
    assert rows["shop/web-0"]["ingress_bandwidth"] == "10M"

    table = subprocess.run(
        [sys.executable, "-m", "agent", "pods", "--netns-dir", module_lab.config.netns_dir],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PODBW_CRI_ENDPOINT": f"unix://{module_lab.config.socket}"},
    )
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["POD", "UID", "NETNS"]
    assert "shop/web-0" in table.stdout and "kube-system/node-agent" not in table.stdout
