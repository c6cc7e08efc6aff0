"""The lab API stand-in's store: resourceVersions, history and its floor, persistence, and the
sync of pods and namespaces with the lab's state."""

from __future__ import annotations

import json
import os

import pytest

from agent.lab.kube_status import ApiError
from agent.lab.kube_store import KubeStore
from agent.lab.kube_sync import LabStateFollower, read_synced, sync_pods
from agent.lab.state import LabPod, LabState

T0 = 1_767_225_600


def obj(name: str, namespace: str = "shop", **annotations: str) -> dict:
    meta: dict = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta}


def lab_pod(name: str, namespace: str = "shop", uid: str | None = None, **annotations: str) -> LabPod:
    return LabPod(sandbox_id=name * 8, uid=uid or f"uid-{name}", namespace=namespace, name=name, netns_path="/x", ip="10.85.0.9",
                  annotations=dict(annotations), created_at_ns=T0 * 10**9)


def test_every_write_bumps_the_resource_version_and_stamps_the_object() -> None:
    store = KubeStore()
    a = store.create("pods", obj("a"))
    b = store.create("pods", obj("b"))
    assert (a["metadata"]["resourceVersion"], b["metadata"]["resourceVersion"], store.rv) == ("1", "2", 2)
    a2 = store.update("pods", obj("a", k="v"))
    assert a2["metadata"]["resourceVersion"] == "3" and store.get("pods", "shop", "a") is a2
    assert store.update("pods", {**a2, "metadata": {**a2["metadata"], "resourceVersion": "1"}}) is a2, "no change, no write"
    assert store.rv == 3
    gone = store.delete("pods", "shop", "b")
    assert gone["metadata"]["resourceVersion"] == "4" and store.get("pods", "shop", "b") is None
    items, rv = store.list("pods")
    assert [i["metadata"]["name"] for i in items] == ["a"] and rv == 4
    with pytest.raises(KeyError):
        store.create("pods", obj("a"))


def test_changes_since_an_rv_and_what_each_records() -> None:
    store = KubeStore()
    store.create("pods", obj("a"))
    store.create("namespaces", {"metadata": {"name": "shop"}})
    store.update("pods", obj("a", k="v"))
    store.delete("pods", "shop", "a")
    changes, rv = store.changes_since(1)
    assert rv == 4
    assert [(c.rv, c.resource, c.type) for c in changes] == [(2, "namespaces", "ADDED"), (3, "pods", "MODIFIED"), (4, "pods", "DELETED")]
    assert changes[1].prev["metadata"]["resourceVersion"] == "1" and changes[1].obj["metadata"]["annotations"] == {"k": "v"}
    assert changes[2].obj["metadata"]["resourceVersion"] == "4" and changes[2].prev["metadata"]["resourceVersion"] == "3"
    assert store.changes_since(4) == ([], 4)


def test_trimmed_history_makes_older_rvs_too_old() -> None:
    store = KubeStore(history_limit=3)
    for i in range(5):
        store.create("pods", obj(f"p{i}"))
    assert (store.floor_rv, store.trimmed_rv) == (2, 2)
    assert [c.rv for c in store.changes_since(2)[0]] == [3, 4, 5]
    with pytest.raises(ApiError) as info:
        store.changes_since(1)
    assert (info.value.code, info.value.reason, info.value.message) == (410, "Expired", "too old resource version: 1 (2)")


def test_compaction_makes_every_rv_so_far_too_old_but_keeps_open_watches_going() -> None:
    store = KubeStore()
    store.create("pods", obj("a"))
    store.create("pods", obj("b"))
    new_rv = store.compact()
    assert new_rv == 3 == store.rv == store.floor_rv
    for old in (0, 1, 2):
        with pytest.raises(ApiError):
            store.changes_since(old)
    assert store.changes_since(3) == ([], 3), "a relist's RV can be watched from"
    assert [c.rv for c in store.changes_since(1, streaming=True)[0]] == [2], "a stream already open loses nothing"
    with pytest.raises(ApiError) as info:
        store.list_at("pods", None, 2)
    assert info.value.code == 410


def test_list_at_an_earlier_rv_undoes_later_changes() -> None:
    store = KubeStore()
    store.create("pods", obj("a"))  # 1
    store.create("pods", obj("b"))  # 2
    store.update("pods", obj("a", k="v"))  # 3
    store.delete("pods", "shop", "b")  # 4
    store.create("pods", obj("c", namespace="jobs"))  # 5
    at2 = store.list_at("pods", None, 2)
    assert [(o["metadata"]["name"], o["metadata"]["resourceVersion"]) for o in at2] == [("a", "1"), ("b", "2")]
    assert [o["metadata"]["name"] for o in store.list_at("pods", "jobs", 5)] == ["c"]
    assert store.list_at("pods", None, 0) == []


def test_store_survives_a_save_and_load_with_only_its_rv_valid(tmp_path) -> None:
    path = str(tmp_path / "store.json")
    store = KubeStore()
    store.create("pods", obj("a", k="v"))
    store.create("namespaces", {"metadata": {"name": "shop"}})
    assert store.dirty
    store.save(path)
    assert not store.dirty
    loaded = KubeStore.load(path)
    assert loaded.rv == 2 and loaded.get("pods", "shop", "a")["metadata"]["annotations"] == {"k": "v"}
    assert loaded.changes_since(2) == ([], 2)
    with pytest.raises(ApiError):
        loaded.changes_since(1)  # from before the restart
    assert loaded.create("pods", obj("b"))["metadata"]["resourceVersion"] == "3", "RVs go on, never back"
    assert KubeStore.load(str(tmp_path / "missing.json")).rv == 0
    (tmp_path / "bad.json").write_text(json.dumps({"objects": 3}))
    with pytest.raises(ValueError):
        KubeStore.load(str(tmp_path / "bad.json"))


def test_sync_adds_namespaces_before_pods_and_deletes_pods_the_lab_removed() -> None:
    store = KubeStore()
    sync_pods(store, [lab_pod("web", k="1"), lab_pod("job", "jobs")], "node-a", "10.85.0.1", "crio", T0)
    changes, _ = store.changes_since(0)
    assert [(c.resource, c.obj["metadata"]["name"]) for c in changes] == [
        ("namespaces", "default"), ("namespaces", "jobs"), ("namespaces", "kube-system"), ("namespaces", "shop"),
        ("pods", "web"), ("pods", "job"),
    ]
    rv = store.rv
    sync_pods(store, [lab_pod("web", k="1"), lab_pod("job", "jobs")], "node-a", "10.85.0.1", "crio", T0 + 9)
    assert store.rv == rv, "an unchanged lab writes nothing"
    sync_pods(store, [lab_pod("web", k="1")], "node-a", "10.85.0.1", "crio", T0)
    assert [(c.type, c.obj["metadata"]["name"]) for c in store.changes_since(rv)[0]] == [("DELETED", "job")]
    assert store.get("namespaces", "", "jobs") is not None, "namespaces stay"


def test_sync_keeps_annotations_changed_through_the_api() -> None:
    store = KubeStore()
    sync_pods(store, [lab_pod("web", k="cri")], "node-a", "10.85.0.1", "crio", T0)
    pod = store.get("pods", "shop", "web")
    store.update("pods", {**pod, "metadata": {**pod["metadata"], "annotations": {"k": "api"}}})
    rv = store.rv
    sync_pods(store, [lab_pod("web", k="cri")], "node-a", "10.85.0.1", "crio", T0)
    assert store.rv == rv and store.get("pods", "shop", "web")["metadata"]["annotations"] == {"k": "api"}
    # the lab's own view changing (a new pod IP) updates the pod but keeps the API's annotations
    moved = lab_pod("web", k="cri")
    moved.ip = "10.85.0.10"
    sync_pods(store, [moved], "node-a", "10.85.0.1", "crio", T0)
    now = store.get("pods", "shop", "web")
    assert now["status"]["podIP"] == "10.85.0.10" and now["metadata"]["annotations"] == {"k": "api"}


def test_same_name_with_a_new_uid_is_a_new_pod() -> None:
    store = KubeStore()
    sync_pods(store, [lab_pod("web", uid="u1")], "node-a", "10.85.0.1", "crio", T0)
    rv = store.rv
    sync_pods(store, [lab_pod("web", uid="u2")], "node-a", "10.85.0.1", "crio", T0)
    changes, _ = store.changes_since(rv)
    assert [(c.type, c.obj["metadata"]["uid"]) for c in changes] == [("DELETED", "u1"), ("ADDED", "u2")]


def _write_state(path, pods: list[LabPod]) -> None:
    state = LabState(name="t", bridge="b", subnet="10.90.0.0/16", socket="/s", netns_dir="/n", runtime="containerd", pods=pods)
    tmp = f"{path}.new"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state.to_dict(), f)
    os.replace(tmp, path)  # as the lab writes it: a new inode each time


def test_follower_applies_each_new_state_file_once_and_records_it(tmp_path) -> None:
    state_path, synced_path = tmp_path / "state.json", tmp_path / "synced"
    store = KubeStore()
    follower = LabStateFollower(store, str(state_path), "node-a", str(synced_path))
    follower.sync_once()
    assert store.list("pods")[0] == [] and read_synced(str(synced_path)) is None, "no lab yet: no pods"
    _write_state(state_path, [lab_pod("web")])
    follower.sync_once()
    web = store.get("pods", "shop", "web")
    assert web["status"]["hostIP"] == "10.90.0.1" and web["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")
    assert read_synced(str(synced_path))[0] == state_path.stat().st_ino
    rv = store.rv
    follower.sync_once()
    assert store.rv == rv
    state_path.write_text("{ not json")
    follower.sync_once()
    assert store.get("pods", "shop", "web") is not None, "an unreadable state keeps what was served"
    _write_state(state_path, [])
    follower.sync_once()
    assert store.get("pods", "shop", "web") is None


def test_sync_with_memory_rebuilds_only_changed_records() -> None:
    store, applied = KubeStore(), {}
    sync_pods(store, [lab_pod("web"), lab_pod("api")], "node-a", "10.85.0.1", "crio", T0, applied)
    assert set(applied) == {"uid-web", "uid-api"}
    rv = store.rv
    sync_pods(store, [lab_pod("web"), lab_pod("api")], "node-a", "10.85.0.1", "crio", T0, applied)
    assert store.rv == rv
    moved = lab_pod("api")
    moved.ip = "10.85.0.33"
    sync_pods(store, [lab_pod("web"), moved], "node-a", "10.85.0.1", "crio", T0, applied)
    assert store.get("pods", "shop", "api")["status"]["podIP"] == "10.85.0.33"
    sync_pods(store, [lab_pod("web")], "node-a", "10.85.0.1", "crio", T0, applied)
    assert set(applied) == {"uid-web"} and store.get("pods", "shop", "api") is None
    store.delete("pods", "shop", "web")  # gone from the store by other means: the record is applied again
    sync_pods(store, [lab_pod("web")], "node-a", "10.85.0.1", "crio", T0, applied)
    assert store.get("pods", "shop", "web") is not None
