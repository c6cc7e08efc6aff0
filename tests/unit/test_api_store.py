"""The store of API pods and namespaces: what it keeps, and which changes it passes on."""

from __future__ import annotations

import pytest

from agent.discovery.api_source import TOMBSTONE_TTL_S, ApiChange, ApiStore
from agent.kube.reflector import ADDED, DELETED, UPDATED, Delta
from agent.model.api_objects import ApiNamespace, ApiPod
from agent.model.pod import Pod

WEB = ApiPod("uid-web", "shop", "web", {"kubernetes.io/ingress-bandwidth": "10M"}, "10")
NS_SHOP = ApiNamespace("shop", {"podbw.io/default-egress-bandwidth": "5M"}, "3")
NS_JOBS = ApiNamespace("jobs", {}, "4")


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def added(obj) -> Delta:
    return Delta(ADDED, None, obj)


def updated(old, new) -> Delta:
    return Delta(UPDATED, old, new)


def deleted(obj) -> Delta:
    return Delta(DELETED, obj, None)


def with_(pod: ApiPod, annotations: dict[str, str] | None = None, rv: str = "11") -> ApiPod:
    return ApiPod(pod.uid, pod.namespace, pod.name, pod.annotations if annotations is None else annotations, rv)


@pytest.mark.parametrize(
    "deltas, changed",
    [
        ([added(WEB)], {"uid-web"}),
        ([added(with_(WEB, {}))], {"uid-web"}),  # known to the API, even without annotations: CRI's go
        ([updated(WEB, with_(WEB))], set()),  # a status change: only the resourceVersion moved
        ([updated(WEB, with_(WEB, {"kubernetes.io/ingress-bandwidth": "50M"}))], {"uid-web"}),
        ([updated(WEB, with_(WEB, {}))], {"uid-web"}),  # removed through the API
        ([deleted(WEB)], {"uid-web"}),
    ],
    ids=["added", "added bare", "resourceVersion only", "annotation changed", "annotation removed", "deleted"],
)
def test_which_pod_changes_are_passed_on(deltas, changed) -> None:
    store = ApiStore()
    assert store.apply_pods(deltas) == changed


def test_pods_are_kept_by_uid_and_a_deleted_one_lingers_until_its_tombstone_expires() -> None:
    clock = Clock()
    store = ApiStore(clock)
    store.apply_pods([added(WEB)])
    assert store.pod("uid-web") == WEB
    store.apply_pods([deleted(WEB)])
    assert store.pod("uid-web") == WEB  # the sandbox of a force-deleted pod may still run
    clock.now_s += TOMBSTONE_TTL_S
    assert store.pod("uid-web") is None


def test_a_pod_added_again_replaces_its_tombstone() -> None:
    store = ApiStore(Clock())
    store.apply_pods([added(WEB), deleted(WEB)])
    back = with_(WEB, {"kubernetes.io/egress-bandwidth": "1M"}, "20")
    store.apply_pods([added(back)])
    store.apply_pods([deleted(back)])
    assert store.pod("uid-web") == back


@pytest.mark.parametrize(
    "deltas, changed",
    [
        ([added(NS_SHOP)], {"shop"}),
        ([added(NS_JOBS)], set()),  # no defaults: nothing resolves differently
        ([updated(NS_SHOP, ApiNamespace("shop", dict(NS_SHOP.annotations), "9"))], set()),
        ([updated(NS_SHOP, ApiNamespace("shop", {}, "9"))], {"shop"}),
        ([updated(NS_JOBS, ApiNamespace("jobs", {"podbw.io/default-ingress-bandwidth": "1M"}, "9"))], {"jobs"}),
        ([deleted(NS_SHOP)], {"shop"}),
        ([deleted(NS_JOBS)], set()),
    ],
)
def test_which_namespace_changes_are_passed_on(deltas, changed) -> None:
    assert ApiStore().apply_namespaces(deltas) == changed


def test_namespaces_are_kept_by_name() -> None:
    store = ApiStore()
    store.apply_namespaces([added(NS_SHOP), added(NS_JOBS), deleted(NS_JOBS)])
    assert store.namespace("shop") == NS_SHOP and store.namespace("jobs") is None


def test_a_change_affects_its_pods_and_its_namespaces_pods() -> None:
    web = Pod("sb1", "uid-web", "shop", "web", "/var/run/netns/a")
    cart = Pod("sb2", "uid-cart", "shop", "cart", "/var/run/netns/b")
    batch = Pod("sb3", "uid-batch", "jobs", "batch", "/var/run/netns/c")
    by_uid = ApiChange(pod_uids=frozenset({"uid-web"}))
    by_namespace = ApiChange(namespaces=frozenset({"shop"}))
    assert [by_uid.affects(p) for p in (web, cart, batch)] == [True, False, False]
    assert [by_namespace.affects(p) for p in (web, cart, batch)] == [True, True, False]
