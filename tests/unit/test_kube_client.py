"""The API source end to end through the real client library (lightkube over httpx2) against a
scripted API on loopback: list, watch with bookmarks and resume, 410 both ways, 403, the server
going away and coming back, in-cluster TLS with a rotating token, and a prompt stop."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from agent.discovery.api_source import SOURCE_KUBERNETES, ApiChange, ApiSource, kube_client_factory
from agent.discovery.settings import DiscoverySettings
from agent.kube.config import load_config
from agent.kube.transport import make_client
from agent.model.health import HealthRecorder
from tests.unit.kube_api_server import Answer, FakeApi, kubeconfig, recorded, recorded_lines
from tests.unit.test_kube_config import rotate

WEB = "0f7c2d9e-1c6b-4b0e-9d55-6a1f0e6b7a01"
BATCH = "5e1a0b7c-2d3e-4f50-8a9b-0c1d2e3f4a02"
CART = "7c8d9e0f-1a2b-4c3d-8e4f-5a6b7c8d9e05"
WAIT_S = 15.0
"""Generous for a loaded 2-core machine: these tests wait for outcomes, they time nothing."""


def wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S} s: {what}")
        time.sleep(0.02)


class Health(HealthRecorder):
    """Records every discovery_up the source sets."""

    def __init__(self) -> None:
        super().__init__()
        self.ups: list[bool] = []

    def set_discovery_up(self, source: str, up: bool) -> None:
        assert source == SOURCE_KUBERNETES
        self.ups.append(up)
        super().set_discovery_up(source, up)

    @property
    def up(self) -> bool | None:
        return self.data().discovery_up.get(SOURCE_KUBERNETES)

    @property
    def stayed_up(self) -> bool:
        """Up, and never down again once it was up."""
        return True in self.ups and False not in self.ups[self.ups.index(True):]


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi().start()
    yield api
    api.stop()


@pytest.fixture
def sources() -> Iterator[list[ApiSource]]:
    made: list[ApiSource] = []
    yield made
    for source in made:
        source.stop()


def start_source(sources: list[ApiSource], kubeconfig_path: Path, health: Health) -> tuple[ApiSource, list[ApiChange]]:
    source = ApiSource("node-a", health, lambda: make_client(load_config(str(kubeconfig_path)), 5.0))
    changes: list[ApiChange] = []
    source.subscribe(changes.append)
    sources.append(source)
    source.start()
    return source, changes


def script_namespaces(api: FakeApi) -> None:
    api.on_list("namespaces", Answer(body=recorded("namespaces_list.json")))


def test_list_then_watch_with_bookmarks_resumes_where_the_server_ended_it(
    fake_api: FakeApi, sources: list[ApiSource], tmp_path: Path
) -> None:
    fake_api.on_list("pods", Answer(body=recorded("pods_list.json")))
    fake_api.on_watch("pods", Answer(lines=recorded_lines("pods_watch_annotate.jsonl")), Answer(end="hold"))
    script_namespaces(fake_api)
    health = Health()
    source, changes = start_source(sources, kubeconfig(tmp_path / "kc", fake_api.url), health)
    assert source.wait_synced(WAIT_S)
    wait_for(lambda: len(fake_api.requested("pods", watch=True)) == 2, "the watch resumed")
    wait_for(lambda: len(fake_api.requested("namespaces", watch=True)) == 1, "the namespaces watch")

    (listed,) = fake_api.requested("pods", watch=False)
    assert listed.query["fieldSelector"] == "spec.nodeName=node-a"
    first, resumed = fake_api.requested("pods", watch=True)
    assert first.query["resourceVersion"] == "1200"  # the list's
    assert first.query["allowWatchBookmarks"] == "true" and first.query["fieldSelector"] == "spec.nodeName=node-a"
    assert 300 <= int(first.query["timeoutSeconds"]) <= 600
    assert resumed.query["resourceVersion"] == "1400"  # the last bookmark's, not a relist
    assert listed.authorization == "Bearer test-token"
    (namespaces_watch,) = fake_api.requested("namespaces", watch=True)
    assert namespaces_watch.query["resourceVersion"] == "1200" and "fieldSelector" not in namespaces_watch.query

    store = source.store
    assert store.pod(WEB).annotations == {"kubernetes.io/ingress-bandwidth": "50M", "podbw.io/egress-burst": "1Mi"}
    assert store.pod(CART).annotations == {"kubernetes.io/egress-bandwidth": "5M"}
    assert store.pod(BATCH) is not None  # deleted by the API: kept for a while as it was
    assert store.namespace("shop").annotations == {
        "podbw.io/default-egress-bandwidth": "5M", "podbw.io/default-ingress-latency": "5ms",
    }
    pod_changes = [sorted(c.pod_uids) for c in changes if c.pod_uids]
    # The status-only MODIFIED (a new resourceVersion, the same annotations) told nobody.
    assert pod_changes == [sorted([WEB, BATCH]), [WEB], [WEB], [CART], [BATCH]]
    assert [sorted(c.namespaces) for c in changes if c.namespaces] == [["shop"]]  # jobs has no defaults
    assert health.stayed_up


@pytest.mark.parametrize(
    "gone",
    [Answer(lines=recorded_lines("watch_error_410.jsonl")), Answer(410, recorded("status_410.json"))],
    ids=["ERROR event", "HTTP status"],
)
def test_gone_relists_once_and_watches_from_the_new_list(
    fake_api: FakeApi, sources: list[ApiSource], tmp_path: Path, gone: Answer
) -> None:
    fake_api.on_list("pods", Answer(body=recorded("pods_list.json")), Answer(body=recorded("pods_list_after_gone.json")))
    fake_api.on_watch("pods", gone, Answer(end="hold"))
    script_namespaces(fake_api)
    health = Health()
    source, _ = start_source(sources, kubeconfig(tmp_path / "kc", fake_api.url), health)
    wait_for(lambda: len(fake_api.requested("pods", watch=True)) == 2, "the watch after the relist")
    assert len(fake_api.requested("pods", watch=False)) == 2
    assert [r.query["resourceVersion"] for r in fake_api.requested("pods", watch=True)] == ["1200", "1500"]
    assert source.store.pod(WEB).annotations == {"kubernetes.io/ingress-bandwidth": "80M"}
    assert source.store.pod(BATCH) is not None  # went while the watch was gone: its tombstone
    assert health.stayed_up, (health.ups, source.ready())  # a 410 is no outage


def test_forbidden_is_reported_down_once_with_the_reason(
    fake_api: FakeApi, sources: list[ApiSource], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_api.on_list("pods", Answer(403, recorded("status_403.json")))
    script_namespaces(fake_api)
    health = Health()
    caplog.set_level(logging.INFO, logger="agent.discovery.api_source")
    source, _ = start_source(sources, kubeconfig(tmp_path / "kc", fake_api.url), health)
    wait_for(lambda: len(fake_api.requested("pods", watch=False)) >= 3, "retries")
    assert health.up is False and not source.up
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert "list pods on node node-a: 403 Forbidden: pods is forbidden" in errors[0]
    assert "pods is forbidden" in source.ready()[1]


def test_api_down_then_back_keeps_what_it_knew_and_recovers_with_one_relist(
    sources: list[ApiSource], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = FakeApi().start()
    port = first.port
    first.on_list("pods", Answer(body=recorded("pods_list.json")))
    script_namespaces(first)
    health = Health()
    caplog.set_level(logging.INFO, logger="agent.discovery.api_source")
    try:
        source, _ = start_source(sources, kubeconfig(tmp_path / "kc", first.url), health)
        assert source.wait_synced(WAIT_S)
        wait_for(lambda: len(first.requested("pods", watch=True)) == 1, "the watch")
    finally:
        first.stop()  # the watches' connections drop, new ones are refused
    wait_for(lambda: health.up is False, "discovery_up 0")
    assert source.store.pod(WEB).annotations["kubernetes.io/ingress-bandwidth"] == "10M"  # kept meanwhile

    second = FakeApi(port=port)
    second.on_list("pods", Answer(body=recorded("pods_list_after_gone.json")))
    script_namespaces(second)
    second.start()
    try:
        wait_for(lambda: health.up is True, "discovery_up 1 again")
        wait_for(lambda: len(second.requested("pods", watch=True)) == 1, "watching again")
        assert len(second.requested("pods", watch=False)) == 1
        assert len(second.requested("namespaces", watch=False)) == 1
        assert source.store.pod(WEB).annotations == {"kubernetes.io/ingress-bandwidth": "80M"}
        source.stop()  # before the server goes: its going is no second outage
    finally:
        second.stop()
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert sum(level == logging.ERROR for level, _ in messages) == 1, "\n".join(m for _, m in messages)  # once per outage
    assert any("answers again" in message for _, message in messages)


def test_in_cluster_tls_and_a_rotated_token(
    pki: Path, sources: list[ApiSource], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    rotate(sa, "token-1", "..first")
    shutil.copy(pki / "ca.crt", sa / "..first" / "ca.crt")
    for name in ("token", "ca.crt"):
        (sa / name).symlink_to(f"..data/{name}")
    api = FakeApi(tls=(str(pki / "server.crt"), str(pki / "server.key"))).start()
    try:
        api.tokens = {"token-1"}
        api.on_list("pods", Answer(body=recorded("pods_list.json")))
        api.on_watch("pods", Answer(end="hold"))
        script_namespaces(api)
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.port))
        health = Health()
        client_factory = kube_client_factory(
            DiscoverySettings(kubernetes="on", node_name="node-a", service_account_dir=str(sa))
        )
        assert client_factory is not None
        source = ApiSource("node-a", health, client_factory)
        sources.append(source)
        source.start()
        assert source.wait_synced(WAIT_S)
        wait_for(lambda: len(api.requested("pods", watch=True)) == len(api.requested("namespaces", watch=True)) == 1,
                 "both watches")

        api.tokens = {"token-1", "token-2"}  # the kubelet rotates before the old one expires
        rotate(sa, "token-2", "..second")
        shutil.copy(pki / "ca.crt", sa / "..second" / "ca.crt")
        api.release()  # the watches end as at their timeout: the next requests carry the new token
        wait_for(lambda: any(r.authorization == "Bearer token-2" for r in api.requested("pods", watch=True)),
                 "a watch with the rotated token")
        assert {r.authorization for r in api.requests} == {"Bearer token-1", "Bearer token-2"}
        assert health.stayed_up  # never refused
    finally:
        api.stop()


def test_stop_ends_quiet_watches_at_once(fake_api: FakeApi, sources: list[ApiSource], tmp_path: Path) -> None:
    script_namespaces(fake_api)
    source, _ = start_source(sources, kubeconfig(tmp_path / "kc", fake_api.url), Health())
    assert source.wait_synced(WAIT_S)
    wait_for(lambda: len(fake_api.requested("namespaces", watch=True)) == 1, "a quiet watch")
    source.stop(timeout_s=WAIT_S)
    assert not [t for t in threading.enumerate() if t.name.startswith("podbw-kube-")]


def test_off_or_without_a_node_name_there_is_no_api_client() -> None:
    assert kube_client_factory(DiscoverySettings(kubernetes="off", node_name="node-a")) is None
    assert kube_client_factory(DiscoverySettings(kubernetes="on", node_name=None)) is None
