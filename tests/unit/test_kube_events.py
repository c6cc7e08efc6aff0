"""Events in the lab's API stand-in: the events.k8s.io/v1 <-> core/v1 conversion of
pkg/apis/events/v1/conversion.go, and the create/update validation of
pkg/apis/core/validation/events.go."""

from __future__ import annotations

import copy

import pytest

from agent.lab.kube_events import (
    EventDecodeError,
    check_types,
    core_to_v1,
    unknown_fields,
    v1_to_core,
    validate_create,
    validate_update,
)

V1_EVENT = {
    "apiVersion": "events.k8s.io/v1",
    "kind": "Event",
    "metadata": {"name": "web.17f", "namespace": "shop"},
    "eventTime": "2026-01-01T00:00:00.000000Z",
    "series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:05.000000Z"},
    "reportingController": "podbw.io/agent",
    "reportingInstance": "node-a",
    "action": "Shape",
    "reason": "InvalidBandwidthAnnotation",
    "regarding": {"kind": "Pod", "namespace": "shop", "name": "web", "uid": "u1", "apiVersion": "v1"},
    "related": {"kind": "Node", "name": "node-a"},
    "note": "kubernetes.io/egress-bandwidth=10Mbps: invalid",
    "type": "Warning",
}


def test_v1_event_converts_to_core_field_by_field() -> None:
    core = v1_to_core(V1_EVENT)
    assert core == {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {"name": "web.17f", "namespace": "shop"},
        "involvedObject": V1_EVENT["regarding"],
        "reason": "InvalidBandwidthAnnotation",
        "message": V1_EVENT["note"],
        "source": {},
        "firstTimestamp": None,
        "lastTimestamp": None,
        "type": "Warning",
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:05.000000Z"},
        "action": "Shape",
        "related": {"kind": "Node", "name": "node-a"},
        "reportingComponent": "podbw.io/agent",
        "reportingInstance": "node-a",
    }
    assert "count" not in core, "series.count is not the deprecated count"


def test_round_trip_through_core_keeps_every_field() -> None:
    v1 = core_to_v1(v1_to_core(V1_EVENT))
    assert v1 == {**V1_EVENT, "deprecatedSource": {}, "deprecatedFirstTimestamp": None, "deprecatedLastTimestamp": None}


def test_legacy_core_event_shows_its_deprecated_fields_through_v1() -> None:
    core = {"kind": "Event", "apiVersion": "v1", "metadata": {"name": "e", "namespace": "shop"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "shop"}, "reason": "Pulled", "message": "m",
            "source": {"component": "kubelet", "host": "n1"}, "firstTimestamp": "2026-01-01T00:00:00Z",
            "lastTimestamp": "2026-01-01T00:01:00Z", "count": 3, "type": "Normal", "eventTime": None,
            "reportingComponent": "", "reportingInstance": ""}
    v1 = core_to_v1(core)
    assert (v1["deprecatedSource"], v1["deprecatedCount"], v1["deprecatedFirstTimestamp"]) == (
        {"component": "kubelet", "host": "n1"}, 3, "2026-01-01T00:00:00Z")
    assert v1["eventTime"] is None and "reportingController" not in v1 and v1["note"] == "m"
    assert v1_to_core(v1) == core


def _core(**changes: object) -> dict:
    event = v1_to_core(V1_EVENT)
    for path, value in changes.items():
        target = event
        *parents, last = path.split("__")
        for parent in parents:
            target = target[parent]
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    return event


@pytest.mark.parametrize("changes, paths", [
    ({}, []),
    ({"eventTime": None}, ["eventTime"]),
    ({"type": "Error"}, ["type"]),
    ({"reportingComponent": ""}, ["reportingController"]),
    ({"reportingComponent": "not a/qualified/name"}, ["reportingController"]),
    ({"reportingInstance": "x" * 129}, ["reportingInstance"]),
    ({"action": None}, ["action"]),
    ({"reason": ""}, ["reason"]),
    ({"message": "x" * 1025}, ["message"]),
    ({"series__count": 1}, ["series.count"]),
    ({"series__lastObservedTime": None}, ["series.lastObservedTime"]),
    ({"count": 4}, ["count"]),
    ({"firstTimestamp": "2026-01-01T00:00:00Z"}, ["firstTimestamp"]),
    ({"source": {"component": "kubelet"}}, ["source"]),
    ({"involvedObject__namespace": "jobs"}, []),  # with eventTime set, only an empty one is checked
    ({"involvedObject__namespace": ""}, ["involvedObject.namespace"]),
    ({"metadata__name": "Not_A_Name"}, ["metadata.name"]),
    ({"metadata__name": None}, ["metadata.name"]),
])
def test_strict_create_validation(changes: dict, paths: list) -> None:
    assert sorted(e.path for e in validate_create(_core(**changes), strict=True)) == sorted(paths)


def test_core_create_is_validated_the_legacy_way() -> None:
    legacy = {"metadata": {"name": "e", "namespace": "shop"}, "involvedObject": {"namespace": "jobs"}, "reason": "x"}
    assert [e.path for e in validate_create(legacy, strict=False)] == ["involvedObject.namespace"]
    legacy["involvedObject"]["namespace"] = "shop"
    assert validate_create(legacy, strict=False) == []
    # a core/v1 write may carry the deprecated fields events.k8s.io refuses
    assert validate_create(_core(count=4, source={"component": "kubelet"}), strict=False) == []


def test_update_through_v1_may_change_the_series_only() -> None:
    old = _core()
    bumped = _core(series={"count": 3, "lastObservedTime": "2026-01-01T00:00:09.000000Z"})
    assert validate_update(bumped, old, strict=True) == []
    assert [e.path for e in validate_update(_core(series={"count": 1, "lastObservedTime": "x"}), old, strict=True)] == ["series.count"]
    for key, path in (("message", "message"), ("reason", "reason"), ("type", "type"), ("reportingComponent", "reportingController"),
                      ("eventTime", "eventTime")):
        changed = copy.deepcopy(old)
        changed[key] = "Normal" if key == "type" else ("2026-01-02T00:00:00.000000Z" if key == "eventTime" else "other")
        errors = validate_update(changed, old, strict=True)
        assert [(e.path, e.detail) for e in errors] == [(path, "field is immutable")], key
    assert validate_update(_core(message="other"), old, strict=False) == []


@pytest.mark.parametrize("event, v1", [
    ({**V1_EVENT, "note": 5}, True),
    ({**V1_EVENT, "regarding": "pod/web"}, True),
    ({**V1_EVENT, "regarding": {"name": 5}}, True),
    ({**V1_EVENT, "eventTime": "2026-01-01T00:00:00Z"}, True),
    ({**V1_EVENT, "eventTime": 17}, True),
    ({**V1_EVENT, "series": {"count": "2"}}, True),
    ({**V1_EVENT, "deprecatedCount": 1.5}, True),
    ({**V1_EVENT, "metadata": []}, True),
    ({"message": 1}, False),
    ({"firstTimestamp": "soon"}, False),
])
def test_bodies_go_could_not_decode_are_refused(event: dict, v1: bool) -> None:
    with pytest.raises(EventDecodeError):
        check_types(event, v1=v1)


def test_well_typed_bodies_pass_and_unknown_fields_are_named() -> None:
    check_types(V1_EVENT, v1=True)
    check_types(v1_to_core(V1_EVENT), v1=False)
    assert unknown_fields({**V1_EVENT, "message": "core name", "zzz": 1}, v1=True) == ["message", "zzz"]
    assert unknown_fields(v1_to_core(V1_EVENT), v1=False) == []
