"""The registry with the resolver: CRI sandboxes joined to API pods by UID, namespace defaults and the
annotations file, each change that alters a pod's annotations in force an UPDATED event at once,
and nothing else."""

from __future__ import annotations

from agent.discovery.api_source import ApiStore
from agent.discovery.registry import ADDED, UPDATED, PodEvent, PodRegistry
from agent.discovery.resolver import AnnotationResolver
from agent.kube.reflector import ADDED as API_ADDED
from agent.kube.reflector import DELETED as API_DELETED
from agent.kube.reflector import UPDATED as API_UPDATED
from agent.kube.reflector import Delta
from agent.model.api_objects import ApiNamespace, ApiPod
from agent.model.pod import Pod

IN = "kubernetes.io/ingress-bandwidth"
EG = "kubernetes.io/egress-bandwidth"
WEB = Pod("sb-web", "uid-web", "shop", "web", "/var/run/netns/web", {IN: "10M", "team": "a"})
CART = Pod("sb-cart", "uid-cart", "shop", "cart", "/var/run/netns/cart", {})
BATCH = Pod("sb-batch", "uid-batch", "jobs", "batch", "/var/run/netns/batch", {EG: "3M"})


class Node:
    """A registry resolving with an API store and an annotations file, recording its events."""

    def __init__(self) -> None:
        self.store = ApiStore()
        self.file: dict[str, dict[str, str]] = {}
        self.registry = PodRegistry(clock=lambda: 7.0, resolve=AnnotationResolver(self.store, lambda: self.file).resolve)
        self.events: list[PodEvent] = []
        self.registry.subscribe(self.events.append)
        self.registry.replace_all([WEB, CART, BATCH])
        self.events.clear()

    def api_pods(self, *deltas: Delta) -> None:
        uids = self.store.apply_pods(deltas)
        self.registry.reresolve(lambda pod: pod.uid in uids, 3.0)

    def api_namespaces(self, *deltas: Delta) -> None:
        names = self.store.apply_namespaces(deltas)
        self.registry.reresolve(lambda pod: pod.namespace in names, 3.0)

    def pod(self, sandbox_id: str) -> Pod:
        found = self.registry.get(sandbox_id)
        assert found is not None
        return found

    def took(self) -> list[tuple[str, str]]:
        taken = [(e.kind, e.pod.sandbox_id) for e in self.events]
        self.events.clear()
        return taken


def api_pod(pod: Pod, annotations: dict[str, str], rv: str = "1") -> ApiPod:
    return ApiPod(pod.uid, pod.namespace, pod.name, annotations, rv)


def test_without_the_api_cri_annotations_are_in_force() -> None:
    node = Node()
    web = node.pod("sb-web")
    assert web.annotations == {IN: "10M", "team": "a"} and web.annotation_sources == {IN: "cri"}


def test_the_api_knowing_a_pod_changes_the_source_of_an_unchanged_value() -> None:
    node = Node()
    node.api_pods(Delta(API_ADDED, None, api_pod(WEB, {IN: "10M"})))
    assert node.took() == [(UPDATED, "sb-web")]
    assert node.pod("sb-web").annotations[IN] == "10M" and node.pod("sb-web").annotation_sources == {IN: "pod"}


def test_an_api_change_is_an_updated_event_for_that_pod_only_seen_when_the_api_said_it() -> None:
    node = Node()
    node.api_pods(Delta(API_ADDED, None, api_pod(WEB, {IN: "10M"})))
    node.took()
    node.api_pods(Delta(API_UPDATED, api_pod(WEB, {IN: "10M"}), api_pod(WEB, {IN: "50M"}, "2")))
    (event,) = node.events
    assert (event.kind, event.pod.sandbox_id, event.pod.annotations[IN]) == (UPDATED, "sb-web", "50M")
    assert event.seen_at_monotonic_s == 3.0  # reconcile latency counts from the watch event


def test_removing_the_annotation_through_the_api_removes_the_limit_for_good() -> None:
    node = Node()
    node.api_pods(Delta(API_ADDED, None, api_pod(WEB, {IN: "50M"})))
    node.took()
    node.api_pods(Delta(API_UPDATED, api_pod(WEB, {IN: "50M"}), api_pod(WEB, {}, "2")))
    assert node.took() == [(UPDATED, "sb-web")]
    assert IN not in node.pod("sb-web").annotations
    node.registry.replace_all([WEB, CART, BATCH])  # a CRI resync still reports 10M from creation
    assert node.took() == [] and IN not in node.pod("sb-web").annotations


def test_a_resourceversion_only_change_is_no_event() -> None:
    node = Node()
    node.api_pods(Delta(API_ADDED, None, api_pod(WEB, {IN: "50M"})))
    node.took()
    node.api_pods(Delta(API_UPDATED, api_pod(WEB, {IN: "50M"}), api_pod(WEB, {IN: "50M"}, "9")))
    assert node.took() == []


def test_an_api_pod_without_a_sandbox_is_remembered_not_shaped() -> None:
    node = Node()
    later = Pod("sb-later", "uid-later", "shop", "later", "/var/run/netns/later", {IN: "1M"})
    node.api_pods(Delta(API_ADDED, None, api_pod(later, {IN: "7M"})))
    assert node.took() == [] and node.registry.get("sb-later") is None
    node.registry.upsert(later)  # its sandbox appears
    assert node.took() == [(ADDED, "sb-later")]
    assert node.pod("sb-later").annotations[IN] == "7M"


def test_a_namespace_default_reaches_every_pod_without_its_own_value() -> None:
    node = Node()
    node.api_pods(*(Delta(API_ADDED, None, api_pod(p, dict(p.annotations))) for p in (WEB, CART, BATCH)))
    node.took()
    shop = ApiNamespace("shop", {"podbw.io/default-ingress-bandwidth": "2M", "podbw.io/default-egress-bandwidth": "4M"})
    node.api_namespaces(Delta(API_ADDED, None, shop))
    assert sorted(node.took()) == [(UPDATED, "sb-cart"), (UPDATED, "sb-web")]
    web, cart = node.pod("sb-web"), node.pod("sb-cart")
    assert (web.annotations[IN], web.annotations[EG]) == ("10M", "4M")  # its own ingress wins
    assert web.annotation_sources == {IN: "pod", EG: "namespace"}
    assert (cart.annotations[IN], cart.annotations[EG]) == ("2M", "4M")
    node.api_namespaces(Delta(API_DELETED, shop, None))
    assert sorted(node.took()) == [(UPDATED, "sb-cart"), (UPDATED, "sb-web")]
    assert node.pod("sb-cart").annotations == {}


def test_the_file_wins_and_its_change_updates_only_the_pods_it_changes() -> None:
    node = Node()
    node.api_pods(Delta(API_ADDED, None, api_pod(WEB, {IN: "50M"})))
    node.took()
    node.file["shop/web"] = {IN: "70M"}
    node.registry.reresolve()
    assert node.took() == [(UPDATED, "sb-web")]
    assert node.pod("sb-web").annotations[IN] == "70M" and node.pod("sb-web").annotation_sources[IN] == "file"


def test_a_pod_the_api_deleted_keeps_its_last_api_values_while_its_sandbox_lingers() -> None:
    node = Node()
    node.api_pods(Delta(API_ADDED, None, api_pod(WEB, {})))
    node.took()
    node.api_pods(Delta(API_DELETED, api_pod(WEB, {}), None))
    assert node.took() == [] and IN not in node.pod("sb-web").annotations
