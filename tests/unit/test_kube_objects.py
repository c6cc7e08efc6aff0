"""The objects of the lab's API stand-in: pods and namespaces from lab records, times, ages,
metadata rules, and the tables kubectl prints."""

from __future__ import annotations

import pytest

from agent.lab.kube_objects import (
    build_namespace,
    build_pod,
    format_micro_time,
    format_time,
    host_ip,
    human_duration,
    metadata_errors,
    parse_micro_time,
    parse_time,
    since,
    string_map_error,
    without_api_owned,
)
from agent.lab.kube_tables import event_cells, namespace_cells, pod_cells, table
from agent.lab.state import LabPod

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def lab_pod(**overrides: object) -> LabPod:
    fields: dict = dict(
        sandbox_id="ab" * 32, uid="1b4e28ba-2fa1-11d2-883f-0016d3cca427", namespace="shop", name="web",
        netns_path="/run/netns/x", ip="10.85.0.7", host_veth="veth1",
        annotations={"kubernetes.io/egress-bandwidth": "10M"},
        labels={"app": "web", "io.kubernetes.pod.name": "web", "io.kubernetes.pod.uid": "u"},
        created_at_ns=T0 * 10**9,
    )
    fields.update(overrides)
    return LabPod(**fields)


def test_times_format_as_metav1() -> None:
    assert format_time(T0 + 0.9) == "2026-01-01T00:00:00Z"
    assert format_micro_time(T0 + 0.25) == "2026-01-01T00:00:00.250000Z"
    assert parse_time("2026-01-01T00:00:00Z") == T0
    assert parse_time("2026-01-01T01:00:00.5+01:00") == T0 + 0.5
    assert parse_micro_time("2026-01-01T00:00:00.000001Z") == pytest.approx(T0 + 1e-6)


@pytest.mark.parametrize("text", ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.123Z", "2026-01-01T00:00:00+00:00", "yesterday", ""])
def test_micro_time_needs_six_fractional_digits_as_go_parses_it(text: str) -> None:
    with pytest.raises(ValueError):
        parse_micro_time(text)


@pytest.mark.parametrize("seconds, text", [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"), (150, "2m30s"),
    (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"), (3 * 3600 + 60, "3h1m"), (8 * 3600, "8h"), (47 * 3600, "47h"),
    (48 * 3600, "2d"), (50 * 3600, "2d2h"), (10 * 86400, "10d"), (800 * 86400, "2y70d"), (3000 * 86400, "8y"),
])
def test_human_duration_prints_ages_like_kubectl(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_since_of_unset_or_bad_times_is_unknown() -> None:
    assert since(None, T0) == since("", T0) == since("garbage", T0) == "<unknown>"
    assert since("2026-01-01T00:00:00Z", T0 + 61) == "61s"


def test_host_ip_is_the_bridge_gateway() -> None:
    assert host_ip("10.85.0.0/16") == "10.85.0.1"
    assert host_ip("not a subnet") == "127.0.0.1"


def test_pod_object_for_a_lab_pod() -> None:
    pod = build_pod(lab_pod(), "podbw-lab-x", "10.85.0.1", "containerd")
    meta, spec, status = pod["metadata"], pod["spec"], pod["status"]
    assert (pod["kind"], pod["apiVersion"]) == ("Pod", "v1")
    assert meta == {
        "name": "web", "namespace": "shop", "uid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"app": "web"},
        "annotations": {"kubernetes.io/egress-bandwidth": "10M"},
    }
    assert spec["nodeName"] == "podbw-lab-x" and len(spec["containers"]) == 1 and "hostNetwork" not in spec
    assert status["phase"] == "Running" and status["podIP"] == "10.85.0.7" and status["hostIP"] == "10.85.0.1"
    assert status["containerStatuses"][0]["containerID"].startswith("containerd://")
    assert {c["type"] for c in status["conditions"] if c["status"] == "True"} >= {"Ready", "ContainersReady"}


def test_host_network_pod_has_the_node_ip() -> None:
    pod = build_pod(lab_pod(host_network=True, ip="", labels={}, annotations={}), "n", "10.85.0.1", "crio")
    assert pod["spec"]["hostNetwork"] is True and pod["status"]["podIP"] == "10.85.0.1"
    assert "labels" not in pod["metadata"] and "annotations" not in pod["metadata"]
    assert pod["status"]["containerStatuses"][0]["containerID"].startswith("cri-o://")


def test_without_api_owned_ignores_labels_annotations_and_rv() -> None:
    pod = build_pod(lab_pod(), "n", "10.85.0.1", "crio")
    changed = {**pod, "metadata": {**pod["metadata"], "annotations": {"x": "y"}, "labels": {}, "resourceVersion": "9"}}
    assert without_api_owned(changed) == without_api_owned(pod)
    moved = {**pod, "status": {**pod["status"], "podIP": "10.85.0.9"}}
    assert without_api_owned(moved) != without_api_owned(pod)


def test_namespace_object() -> None:
    ns = build_namespace("shop", T0)
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "shop"}
    assert ns["status"] == {"phase": "Active"} and ns["metadata"]["uid"] != build_namespace("shop", T0)["metadata"]["uid"]


@pytest.mark.parametrize("metadata, paths", [
    ({"annotations": {"kubernetes.io/egress-bandwidth": "10M", "Mixed.Case/Key": "x"}, "labels": {"app": "web"}}, []),
    ({"annotations": {"bad key": "x"}}, ["metadata.annotations"]),
    ({"annotations": {"a/b/c": "x"}}, ["metadata.annotations"]),
    ({"annotations": {"big": "x" * 300_000}}, ["metadata.annotations"]),
    ({"labels": {"app": "not valid!"}}, ["metadata.labels"]),
    ({"labels": {"-app": "web"}}, ["metadata.labels"]),
])
def test_metadata_rules(metadata: dict, paths: list) -> None:
    assert [e.path for e in metadata_errors({"metadata": metadata})] == paths


@pytest.mark.parametrize("obj, bad", [
    ({"metadata": {"annotations": {"a": "1"}}}, False),
    ({"metadata": {"annotations": {"a": 1}}}, True),
    ({"metadata": {"labels": ["a"]}}, True),
    ({"metadata": "x"}, True),
])
def test_string_map_error(obj: dict, bad: bool) -> None:
    error = string_map_error(obj, "Pod")
    assert (error is not None) is bad
    if bad:
        assert error.startswith('Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal')


def test_pod_row_as_kubectl_get_o_wide_prints_it() -> None:
    pod = build_pod(lab_pod(), "podbw-lab-x", "10.85.0.1", "crio")
    assert pod_cells(pod, T0 + 90) == ["web", "1/1", "Running", "0", "90s", "10.85.0.7", "podbw-lab-x", "<none>", "<none>"]
    assert namespace_cells(build_namespace("shop", T0), T0 + 3600) == ["shop", "Active", "60m"]


def test_event_rows() -> None:
    base = {"metadata": {"name": "web.1"}, "involvedObject": {"kind": "Pod", "name": "web"}, "type": "Warning", "reason": "R",
            "message": " bad value \n", "source": {}, "reportingComponent": "podbw.io/agent", "reportingInstance": "node-a",
            "eventTime": "2026-01-01T00:00:00.000000Z"}
    assert event_cells(base, T0 + 5) == ["5s", "Warning", "R", "pod/web", "", "podbw.io/agent, node-a", "bad value", "5s", 1, "web.1"]
    series = {**base, "series": {"count": 4, "lastObservedTime": "2026-01-01T00:00:03.000000Z"}}
    assert event_cells(series, T0 + 5)[0] == "2s" and event_cells(series, T0 + 5)[8] == 4
    legacy = {**base, "eventTime": None, "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:04Z",
              "count": 3, "source": {"component": "kubelet", "host": "n1"}}
    assert event_cells(legacy, T0 + 5)[0:1] + event_cells(legacy, T0 + 5)[5:9] == ["1s", "kubelet, n1", "bad value", "5s", 3]


def test_table_holds_partial_metadata_unless_asked() -> None:
    pod = build_pod(lab_pod(), "n", "10.85.0.1", "crio")
    doc = table("pods", [pod], {"resourceVersion": "3"}, "Metadata", T0)
    assert doc["kind"] == "Table" and doc["metadata"] == {"resourceVersion": "3"}
    assert [c["name"] for c in doc["columnDefinitions"] if c["priority"] == 1] == ["IP", "Node", "Nominated Node", "Readiness Gates"]
    assert doc["rows"][0]["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": pod["metadata"]}
    assert table("pods", [pod], {}, "Object", T0)["rows"][0]["object"] is pod
    assert "object" not in table("pods", [pod], {}, "None", T0)["rows"][0]
