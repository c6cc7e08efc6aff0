"""Request handling of the lab's API stand-in (no sockets): auth, discovery, lists with
selectors and pages, tables, patches, events through both APIs, errors as Status objects."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import pytest

from agent.lab.kube_api import KubeApi
from agent.lab.kube_request import Request, Response, WatchResponse, negotiate
from agent.lab.kube_discovery import AGGREGATED_V2
from agent.lab.kube_status import ApiError
from agent.lab.kube_store import KubeStore
from agent.lab.kube_sync import sync_pods
from agent.lab.state import LabPod

TOKEN = "s3cret-token"
NODE = "podbw-lab-t1"
T0 = 1_767_225_600
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
DESCRIBE_SELECTOR = "involvedObject.name=web,involvedObject.namespace=shop,involvedObject.uid=uid-web"


def lab_pod(name: str, namespace: str = "shop", **annotations: str) -> LabPod:
    return LabPod(sandbox_id=name * 8, uid=f"uid-{name}", namespace=namespace, name=name, netns_path="/x", ip="10.85.0.9",
                  annotations=dict(annotations), labels={"app": name}, created_at_ns=T0 * 10**9)


@pytest.fixture
def api() -> KubeApi:
    store = KubeStore()
    sync_pods(store, [lab_pod("web", **{"kubernetes.io/egress-bandwidth": "10M"}), lab_pod("api"), lab_pod("batch", "jobs")],
              NODE, "10.85.0.1", "crio", T0)
    return KubeApi(store, TOKEN, bookmark_interval_s=5.0, min_request_timeout_s=60.0)


def call(api: KubeApi, method: str, path: str, body: Any = None, content_type: str = "application/json",
         token: str | None = TOKEN, accept: str = "application/json") -> Response:
    path, _, query = path.partition("?")
    headers = {"Accept": accept, "Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    raw = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
    result = api.handle(Request(method, path, parse_qs(query, keep_blank_values=True), headers, raw))
    assert isinstance(result, Response), result
    return result


def ok(response: Response, status: int = 200) -> Any:
    assert response.status == status, response.body
    return json.loads(response.body)


def status_of(response: Response) -> tuple[int, str]:
    body = json.loads(response.body)
    assert body["kind"] == "Status" and body["code"] == response.status
    return response.status, body["reason"]


def v1_event(name: str = "web.1", **overrides: Any) -> dict:
    event = {
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": name, "namespace": "shop"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "podbw.io/agent", "reportingInstance": NODE,
        "action": "Shape", "reason": "InvalidBandwidthAnnotation", "type": "Warning", "note": "bad value",
        "regarding": {"kind": "Pod", "namespace": "shop", "name": "web", "uid": "uid-web", "apiVersion": "v1"},
    }
    event.update(overrides)
    return event


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x"])
def test_every_path_needs_the_bearer_token(api: KubeApi, token: str | None) -> None:
    for path in ("/api/v1/pods", "/version", "/apis", "/podbw-lab/requests", "/nope"):
        assert status_of(call(api, "GET", path, token=token)) == (401, "Unauthorized")


def test_discovery_is_aggregated_when_asked_and_legacy_otherwise(api: KubeApi) -> None:
    aggregated = call(api, "GET", "/api", accept=AGGREGATED_V2 + ",application/json")
    assert aggregated.content_type == AGGREGATED_V2
    resources = {r["resource"]: r for r in ok(aggregated)["items"][0]["versions"][0]["resources"]}
    assert set(resources) == {"pods", "namespaces", "events"} and resources["namespaces"]["scope"] == "Cluster"
    assert ok(call(api, "GET", "/apis", accept=AGGREGATED_V2))["items"][0]["metadata"] == {"name": "events.k8s.io"}
    legacy = ok(call(api, "GET", "/api"))
    assert legacy["kind"] == "APIVersions" and legacy["versions"] == ["v1"]
    assert [g["name"] for g in ok(call(api, "GET", "/apis"))["groups"]] == ["events.k8s.io"]
    assert {r["name"] for r in ok(call(api, "GET", "/api/v1"))["resources"]} == {"pods", "namespaces", "events"}
    assert ok(call(api, "GET", "/apis/events.k8s.io/v1"))["groupVersion"] == "events.k8s.io/v1"
    assert ok(call(api, "GET", "/version"))["gitVersion"].startswith("v1.35.")


@pytest.mark.parametrize("accept, table", [
    ("", None),
    ("*/*", None),
    (TABLE_ACCEPT, "meta.k8s.io/v1"),
    ("application/json;as=Table;v=v1beta1;g=meta.k8s.io", "meta.k8s.io/v1beta1"),
    ("application/vnd.kubernetes.protobuf, application/json", None),
    (AGGREGATED_V2 + ",application/json", None),  # not offered for a list
])
def test_negotiation(accept: str, table: str | None) -> None:
    negotiated = negotiate(accept, table_ok=True)
    assert negotiated.table_version == table and not negotiated.aggregated


def test_protobuf_only_is_not_acceptable() -> None:
    with pytest.raises(ApiError) as info:
        negotiate("application/vnd.kubernetes.protobuf")
    assert info.value.code == 406


def test_list_pods_of_this_node_with_selectors(api: KubeApi) -> None:
    listed = ok(call(api, "GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE}"))
    assert listed["kind"] == "PodList" and listed["apiVersion"] == "v1"
    assert listed["metadata"]["resourceVersion"] == str(api.store.rv)
    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in listed["items"]] == [("jobs", "batch"), ("shop", "api"), ("shop", "web")]
    assert all("kind" not in p for p in listed["items"]), "list items carry no kind"
    assert ok(call(api, "GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dother"))["items"] == []
    assert [p["metadata"]["name"] for p in ok(call(api, "GET", "/api/v1/namespaces/shop/pods?labelSelector=app%3Dweb"))["items"]] == ["web"]
    assert ok(call(api, "GET", "/api/v1/namespaces/nowhere/pods"))["items"] == []
    assert status_of(call(api, "GET", "/api/v1/pods?fieldSelector=spec.foo%3D1")) == (400, "BadRequest")
    assert status_of(call(api, "GET", "/api/v1/pods?labelSelector=a%20in")) == (400, "BadRequest")


def test_pages_are_consistent_snapshots(api: KubeApi) -> None:
    first = ok(call(api, "GET", "/api/v1/pods?limit=2"))
    assert [p["metadata"]["name"] for p in first["items"]] == ["batch", "api"]
    assert first["metadata"]["remainingItemCount"] == 1
    token = first["metadata"]["continue"]
    pod = api.store.get("pods", "shop", "web")
    api.store.update("pods", {**pod, "metadata": {**pod["metadata"], "annotations": {"changed": "yes"}}})
    second = ok(call(api, "GET", f"/api/v1/pods?limit=2&continue={token}"))
    assert [p["metadata"]["name"] for p in second["items"]] == ["web"] and "continue" not in second["metadata"]
    assert second["items"][0]["metadata"]["annotations"] == {"kubernetes.io/egress-bandwidth": "10M"}, "as at the first page's RV"
    api.store.compact()
    assert status_of(call(api, "GET", f"/api/v1/pods?limit=2&continue={token}")) == (410, "Expired")
    assert status_of(call(api, "GET", "/api/v1/pods?continue=garbage")) == (400, "BadRequest")


@pytest.mark.parametrize("query", [
    "resourceVersionMatch=Exact", "resourceVersion=0&resourceVersionMatch=Exact", "resourceVersion=1&resourceVersionMatch=Later",
    "sendInitialEvents=true", "watch=1&sendInitialEvents=true", "watch=1&resourceVersionMatch=NotOlderThan",
    "limit=-1", "includeObject=All", "resourceVersion=1&continue=abc",
])
def test_invalid_list_options_are_422(api: KubeApi, query: str) -> None:
    assert status_of(call(api, "GET", f"/api/v1/pods?{query}")) == (422, "Invalid")


@pytest.mark.parametrize("query", ["watch=maybe", "resourceVersion=abc", "timeoutSeconds=soon", "limit=x"])
def test_unparsable_query_values_are_400(api: KubeApi, query: str) -> None:
    assert status_of(call(api, "GET", f"/api/v1/pods?{query}")) == (400, "BadRequest")


def test_list_at_an_exact_old_rv(api: KubeApi) -> None:
    rv = api.store.rv
    pod = api.store.get("pods", "shop", "api")
    api.store.update("pods", {**pod, "metadata": {**pod["metadata"], "annotations": {"x": "y"}}})
    old = ok(call(api, "GET", f"/api/v1/namespaces/shop/pods?resourceVersion={rv}&resourceVersionMatch=Exact"))
    assert old["metadata"]["resourceVersion"] == str(rv) and "annotations" not in old["items"][0]["metadata"]
    api.store.compact()
    assert status_of(call(api, "GET", f"/api/v1/pods?resourceVersion={rv}&resourceVersionMatch=Exact")) == (410, "Expired")
    assert ok(call(api, "GET", f"/api/v1/pods?resourceVersion={rv}"))["metadata"]["resourceVersion"] == str(api.store.rv)


def test_tables_for_kubectl_get(api: KubeApi) -> None:
    response = call(api, "GET", "/api/v1/pods", accept=TABLE_ACCEPT)
    doc = ok(response)
    assert response.content_type == "application/json;as=Table;v=v1;g=meta.k8s.io"
    assert doc["kind"] == "Table" and [r["cells"][0] for r in doc["rows"]] == ["batch", "api", "web"]
    assert doc["rows"][0]["cells"][6] == NODE and doc["rows"][0]["object"]["metadata"]["namespace"] == "jobs"
    single = ok(call(api, "GET", "/api/v1/namespaces/shop/pods/web", accept=TABLE_ACCEPT))
    assert [r["cells"][:3] for r in single["rows"]] == [["web", "1/1", "Running"]]
    namespaces = ok(call(api, "GET", "/api/v1/namespaces", accept=TABLE_ACCEPT))
    assert [r["cells"][0] for r in namespaces["rows"]] == ["default", "jobs", "kube-system", "shop"]


def test_get_one_pod_and_missing_ones(api: KubeApi) -> None:
    web = ok(call(api, "GET", "/api/v1/namespaces/shop/pods/web"))
    assert web["kind"] == "Pod" and web["metadata"]["uid"] == "uid-web"
    missing = call(api, "GET", "/api/v1/namespaces/shop/pods/nope")
    assert status_of(missing) == (404, "NotFound")
    assert json.loads(missing.body)["message"] == 'pods "nope" not found'
    assert status_of(call(api, "GET", "/api/v1/namespaces/nope")) == (404, "NotFound")


def annotate(api: KubeApi, patch: Any, content_type: str = "application/merge-patch+json", path: str = "/api/v1/namespaces/shop/pods/web") -> Response:
    return call(api, "PATCH", path, patch, content_type=content_type)


def test_annotate_as_kubectl_does_bumps_the_rv(api: KubeApi) -> None:
    rv = api.store.rv
    patched = ok(annotate(api, {"metadata": {"annotations": {"kubernetes.io/egress-bandwidth": "20M"}}}))
    assert patched["metadata"]["annotations"] == {"kubernetes.io/egress-bandwidth": "20M"}
    assert patched["metadata"]["resourceVersion"] == str(rv + 1) == str(api.store.rv)
    removed = ok(annotate(api, {"metadata": {"annotations": {"kubernetes.io/egress-bandwidth": None}}}))
    assert "annotations" not in removed["metadata"], "an empty map is omitted"
    rv = api.store.rv
    assert ok(annotate(api, {"metadata": {"annotations": {"gone": None}}}))["metadata"]["resourceVersion"] == str(rv), "no-op: no write"
    assert api.store.rv == rv


@pytest.mark.parametrize("content_type, patch", [
    ("application/strategic-merge-patch+json", {"metadata": {"annotations": {"k": "v"}}}),
    ("application/json-patch+json", [{"op": "add", "path": "/metadata/annotations/k", "value": "v"}]),
    ("application/merge-patch+json; charset=utf-8", {"metadata": {"annotations": {"k": "v"}}}),
])
def test_other_patch_types(api: KubeApi, content_type: str, patch: Any) -> None:
    assert ok(annotate(api, patch, content_type))["metadata"]["annotations"]["k"] == "v"


def test_resource_version_in_a_patch_is_a_precondition(api: KubeApi) -> None:
    rv = api.store.get("pods", "shop", "web")["metadata"]["resourceVersion"]
    stale = annotate(api, {"metadata": {"resourceVersion": str(int(rv) - 1), "annotations": {"k": "v"}}})
    assert status_of(stale) == (409, "Conflict")
    assert "the object has been modified" in json.loads(stale.body)["message"]
    assert ok(annotate(api, {"metadata": {"resourceVersion": rv, "annotations": {"k": "v"}}}))["metadata"]["annotations"]["k"] == "v"


@pytest.mark.parametrize("patch, content_type, expected", [
    ({"spec": {"nodeName": "elsewhere"}}, "application/merge-patch+json", (422, "Invalid")),
    ({"metadata": {"name": "renamed"}}, "application/merge-patch+json", (422, "Invalid")),
    ({"metadata": {"uid": "x"}}, "application/merge-patch+json", (422, "Invalid")),
    ({"metadata": {"annotations": {"bad key!": "v"}}}, "application/merge-patch+json", (422, "Invalid")),
    ({"metadata": {"labels": {"app": "not valid!"}}}, "application/merge-patch+json", (422, "Invalid")),
    ({"metadata": {"annotations": {"k": 5}}}, "application/merge-patch+json", (400, "BadRequest")),
    ([{"op": "test", "path": "/metadata/name", "value": "api"}], "application/json-patch+json", (422, "Invalid")),
    ([{"op": "remove", "path": "/nope"}], "application/json-patch+json", (400, "BadRequest")),
    (b"{not json", "application/merge-patch+json", (400, "BadRequest")),
    ({"metadata": {}}, "application/apply-patch+yaml", (415, "UnsupportedMediaType")),
    ({"metadata": {}}, "application/json", (415, "UnsupportedMediaType")),
    ([1], "application/merge-patch+json", (400, "BadRequest")),
])
def test_bad_patches_change_nothing(api: KubeApi, patch: Any, content_type: str, expected: tuple[int, str]) -> None:
    rv = api.store.rv
    assert status_of(annotate(api, patch, content_type)) == expected
    assert api.store.rv == rv


def test_dry_run_patch_writes_nothing(api: KubeApi) -> None:
    rv = api.store.rv
    assert ok(annotate(api, {"metadata": {"labels": {"tier": "x"}}}, path="/api/v1/namespaces/shop/pods/web?dryRun=All"))
    assert api.store.rv == rv


def test_annotate_namespace(api: KubeApi) -> None:
    patched = ok(annotate(api, {"metadata": {"annotations": {"podbw.io/default-egress-bandwidth": "20M"}}}, path="/api/v1/namespaces/shop"))
    assert patched["kind"] == "Namespace" and patched["metadata"]["annotations"] == {"podbw.io/default-egress-bandwidth": "20M"}
    assert status_of(annotate(api, {"status": {"phase": "Terminating"}}, path="/api/v1/namespaces/shop")) == (422, "Invalid")


def test_event_through_events_k8s_io_is_seen_by_describe_through_core(api: KubeApi) -> None:
    created = ok(call(api, "POST", "/apis/events.k8s.io/v1/namespaces/shop/events", v1_event()), 201)
    assert created["apiVersion"] == "events.k8s.io/v1" and created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
    listed = ok(call(api, "GET", f"/api/v1/namespaces/shop/events?fieldSelector={DESCRIBE_SELECTOR}&limit=500"))
    (event,) = listed["items"]
    assert (event["message"], event["reportingComponent"], event["involvedObject"]["name"]) == ("bad value", "podbw.io/agent", "web")
    assert ok(call(api, "GET", "/api/v1/namespaces/shop/events?fieldSelector=involvedObject.name%3Dapi"))["items"] == []
    v1 = ok(call(api, "GET", "/apis/events.k8s.io/v1/namespaces/shop/events/web.1"))
    assert v1["note"] == "bad value" and v1["regarding"]["uid"] == "uid-web"
    assert ok(call(api, "GET", "/apis/events.k8s.io/v1/events?fieldSelector=regarding.name%3Dweb"))["items"][0]["note"] == "bad value"
    table = ok(call(api, "GET", "/api/v1/events", accept=TABLE_ACCEPT))
    assert table["rows"][0]["cells"][1:4] == ["Warning", "InvalidBandwidthAnnotation", "pod/web"]


def test_event_series_update_through_events_k8s_io(api: KubeApi) -> None:
    ok(call(api, "POST", "/apis/events.k8s.io/v1/namespaces/shop/events", v1_event()), 201)
    series = {"series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:09.000000Z"}}
    bumped = ok(annotate(api, series, path="/apis/events.k8s.io/v1/namespaces/shop/events/web.1"))
    assert bumped["series"]["count"] == 2
    assert ok(call(api, "GET", "/api/v1/namespaces/shop/events/web.1"))["series"]["count"] == 2
    assert status_of(annotate(api, {"note": "changed"}, path="/apis/events.k8s.io/v1/namespaces/shop/events/web.1")) == (422, "Invalid")
    assert status_of(annotate(api, {"series": {"count": 1}}, path="/apis/events.k8s.io/v1/namespaces/shop/events/web.1")) == (422, "Invalid")
    # through core/v1 the legacy rules apply: the message may change
    assert ok(annotate(api, {"message": "changed"}, path="/api/v1/namespaces/shop/events/web.1"))["message"] == "changed"


@pytest.mark.parametrize("path, body, expected", [
    ("/apis/events.k8s.io/v1/namespaces/shop/events", v1_event(eventTime=None), (422, "Invalid")),
    ("/apis/events.k8s.io/v1/namespaces/shop/events", v1_event(type="Error"), (422, "Invalid")),
    ("/apis/events.k8s.io/v1/namespaces/shop/events", v1_event(eventTime="2026-01-01T00:00:00Z"), (400, "BadRequest")),
    ("/apis/events.k8s.io/v1/namespaces/shop/events", v1_event(apiVersion="v1"), (400, "BadRequest")),
    ("/apis/events.k8s.io/v1/namespaces/shop/events", v1_event(metadata={"name": "e", "namespace": "jobs"}), (400, "BadRequest")),
    ("/apis/events.k8s.io/v1/namespaces/shop/events", v1_event(metadata={"name": "e", "resourceVersion": "3"}), (500, "InternalError")),
    ("/apis/events.k8s.io/v1/namespaces/shop/events", v1_event(metadata={}), (422, "Invalid")),
    ("/apis/events.k8s.io/v1/namespaces/nowhere/events", v1_event(metadata={"name": "e"}), (404, "NotFound")),
    ("/apis/events.k8s.io/v1/namespaces/shop/events", ["not", "an", "event"], (400, "BadRequest")),
])
def test_bad_event_creates(api: KubeApi, path: str, body: Any, expected: tuple[int, str]) -> None:
    rv = api.store.rv
    assert status_of(call(api, "POST", path, body)) == expected
    assert api.store.rv == rv


def test_event_names_duplicates_generate_name_unknown_fields_and_delete(api: KubeApi) -> None:
    ok(call(api, "POST", "/apis/events.k8s.io/v1/namespaces/shop/events", v1_event()), 201)
    assert status_of(call(api, "POST", "/apis/events.k8s.io/v1/namespaces/shop/events", v1_event())) == (409, "AlreadyExists")
    generated = ok(call(api, "POST", "/apis/events.k8s.io/v1/namespaces/shop/events", v1_event(metadata={"generateName": "web."})), 201)
    assert generated["metadata"]["name"].startswith("web.") and len(generated["metadata"]["name"]) == 9
    extra = call(api, "POST", "/apis/events.k8s.io/v1/namespaces/shop/events", v1_event("web.2", message="core name"))
    assert extra.status == 201 and extra.headers["Warning"] == '299 - "unknown field \\"message\\""'
    assert "message" not in json.loads(extra.body)
    strict = call(api, "POST", "/apis/events.k8s.io/v1/namespaces/shop/events?fieldValidation=Strict", v1_event("web.3", zzz=1))
    assert status_of(strict) == (400, "BadRequest")
    core = {"metadata": {"name": "legacy"}, "involvedObject": {"kind": "Pod", "name": "web", "namespace": "shop"},
            "reason": "Pulled", "message": "m", "source": {"component": "kubelet"}, "count": 2, "type": "Normal"}
    assert ok(call(api, "POST", "/api/v1/namespaces/shop/events", core), 201)["source"] == {"component": "kubelet"}
    deleted = ok(call(api, "DELETE", "/api/v1/namespaces/shop/events/legacy"))
    assert deleted["status"] == "Success" and deleted["details"]["name"] == "legacy"
    assert status_of(call(api, "DELETE", "/api/v1/namespaces/shop/events/legacy")) == (404, "NotFound")


@pytest.mark.parametrize("method, path", [
    ("POST", "/api/v1/namespaces/shop/pods"), ("DELETE", "/api/v1/namespaces/shop/pods/web"),
    ("PUT", "/api/v1/namespaces/shop/pods/web"), ("POST", "/api/v1/pods"), ("POST", "/api/v1/namespaces"),
    ("DELETE", "/api/v1/namespaces/shop"), ("POST", "/version"),
])
def test_verbs_the_stand_in_does_not_serve_are_405(api: KubeApi, method: str, path: str) -> None:
    assert status_of(call(api, method, path, {})) == (405, "MethodNotAllowed")


@pytest.mark.parametrize("path", [
    "/api/v1/nodes", "/api/v1/namespaces/shop/pods/web/status", "/api/v1/namespaces/shop/namespaces", "/apis/apps/v1",
    "/openapi/v3", "/apis/events.k8s.io/v1/pods", "/api/v2/pods", "/podbw-lab/unknown",
])
def test_unknown_paths_are_404_statuses(api: KubeApi, path: str) -> None:
    assert status_of(call(api, "GET", path)) == (404, "NotFound")


def test_watch_requests_become_streams(api: KubeApi) -> None:
    result = api.handle(Request("GET", "/api/v1/pods", parse_qs(f"watch=1&resourceVersion=1&fieldSelector=spec.nodeName%3D{NODE}"),
                                {"Authorization": f"Bearer {TOKEN}"}))
    assert isinstance(result, WatchResponse)
    api.store.compact()
    sent: list[bytes] = []
    assert result.stream.run(sent.append) == "error 410"
    assert json.loads(sent[0])["object"]["code"] == 410


def test_admin_paths_and_request_counters(api: KubeApi) -> None:
    rv = api.store.rv
    assert ok(call(api, "POST", "/podbw-lab/compact")) == {"resourceVersion": str(rv + 1)}
    generation = api.store.close_generation
    ok(call(api, "POST", "/podbw-lab/close-watches"))
    assert api.store.close_generation == generation + 1
    call(api, "GET", "/api/v1/pods")
    call(api, "GET", "/api/v1/namespaces/shop/pods/web")
    call(api, "GET", "/api/v1/namespaces/shop/pods/nope")
    counts = ok(call(api, "GET", "/podbw-lab/requests"))
    assert counts["list pods"] == 1 and counts["get pods"] == 2 and counts["error 404"] == 1


def test_a_bug_answers_500_and_the_api_goes_on(api: KubeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(api.store, "list", broken)
    assert status_of(call(api, "GET", "/api/v1/pods")) == (500, "InternalError")
    assert ok(call(api, "GET", "/api/v1/namespaces/shop/pods/web"))["metadata"]["name"] == "web"
