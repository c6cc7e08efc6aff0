"""The patch formats of the lab's API stand-in: RFC 7386 merge patch (kubectl annotate), the map
part of strategic merge patch (Python clients' default), RFC 6902 JSON patch."""

from __future__ import annotations

import pytest

from agent.lab.kube_patch import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    PatchError,
    apply_patch,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)

POD = {"metadata": {"name": "web", "annotations": {"a": "1", "b": "2"}, "labels": {"app": "web"}}, "spec": {"x": [1, 2]}}


@pytest.mark.parametrize("patch, expected_meta", [
    ({"metadata": {"annotations": {"a": "9"}}}, {"name": "web", "annotations": {"a": "9", "b": "2"}, "labels": {"app": "web"}}),
    ({"metadata": {"annotations": {"a": None}}}, {"name": "web", "annotations": {"b": "2"}, "labels": {"app": "web"}}),
    ({"metadata": {"annotations": {"c": "3"}}}, {"name": "web", "annotations": {"a": "1", "b": "2", "c": "3"}, "labels": {"app": "web"}}),
    ({"metadata": {"annotations": None}}, {"name": "web", "labels": {"app": "web"}}),
    ({"metadata": {"annotations": {"missing": None}}}, POD["metadata"]),
    ({}, POD["metadata"]),
], ids=["overwrite", "null-deletes", "add", "null-deletes-map", "delete-missing-is-noop", "empty"])
def test_merge_patch_merges_maps_and_null_deletes(patch: dict, expected_meta: dict) -> None:
    for content_type in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        result = apply_patch(content_type, POD, patch)
        assert result["metadata"] == expected_meta
        assert result["spec"] == POD["spec"]
    assert POD["metadata"]["annotations"] == {"a": "1", "b": "2"}, "the document itself never changes"


def test_merge_patch_replaces_lists_and_non_objects() -> None:
    assert merge_patch(POD, {"spec": {"x": [3]}})["spec"] == {"x": [3]}
    assert merge_patch({"a": "b"}, ["c"]) == ["c"]
    assert merge_patch("scalar", {"a": {"b": None, "c": 1}}) == {"a": {"c": 1}}
    assert merge_patch({"a": 1}, {"a": {"b": "c"}}) == {"a": {"b": "c"}}


@pytest.mark.parametrize("patch, expected", [
    ({"metadata": {"annotations": {"$patch": "replace", "z": "1"}}}, {"z": "1"}),
    ({"metadata": {"annotations": {"$patch": "delete"}}}, None),
])
def test_strategic_merge_honours_map_directives(patch: dict, expected: dict | None) -> None:
    assert strategic_merge_patch(POD, patch)["metadata"].get("annotations") == expected


@pytest.mark.parametrize("patch", [
    {"metadata": {"$setElementOrder/finalizers": []}},
    {"metadata": {"annotations": {"$patch": "explode"}}},
    {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}},
    ["not", "an", "object"],
])
def test_strategic_merge_refuses_what_it_cannot_do(patch: object) -> None:
    with pytest.raises(PatchError):
        strategic_merge_patch(POD, patch)


@pytest.mark.parametrize("ops, expected", [
    ([{"op": "add", "path": "/metadata/annotations/c", "value": "3"}], {"a": "1", "b": "2", "c": "3"}),
    ([{"op": "replace", "path": "/metadata/annotations/a", "value": "x"}], {"a": "x", "b": "2"}),
    ([{"op": "remove", "path": "/metadata/annotations/a"}], {"b": "2"}),
    ([{"op": "add", "path": "/metadata/annotations/k8s.io~1x~0y", "value": "z"}], {"a": "1", "b": "2", "k8s.io/x~y": "z"}),
    ([{"op": "move", "from": "/metadata/annotations/a", "path": "/metadata/annotations/m"}], {"b": "2", "m": "1"}),
    ([{"op": "copy", "from": "/metadata/annotations/a", "path": "/metadata/annotations/m"}], {"a": "1", "b": "2", "m": "1"}),
    ([{"op": "test", "path": "/metadata/annotations/a", "value": "1"},
      {"op": "remove", "path": "/metadata/annotations/b"}], {"a": "1"}),
])
def test_json_patch_operations(ops: list, expected: dict) -> None:
    assert apply_patch(JSON_PATCH, POD, ops)["metadata"]["annotations"] == expected


def test_json_patch_lists() -> None:
    assert json_patch(POD, [{"op": "add", "path": "/spec/x/-", "value": 3}])["spec"]["x"] == [1, 2, 3]
    assert json_patch(POD, [{"op": "add", "path": "/spec/x/0", "value": 0}])["spec"]["x"] == [0, 1, 2]
    assert json_patch(POD, [{"op": "remove", "path": "/spec/x/1"}])["spec"]["x"] == [1]


@pytest.mark.parametrize("ops, unprocessable", [
    ([{"op": "remove", "path": "/metadata/annotations/zz"}], False),
    ([{"op": "replace", "path": "/nope/x", "value": 1}], False),
    ([{"op": "add", "path": "metadata", "value": 1}], False),
    ([{"op": "add", "path": "/spec/x/7", "value": 1}], False),
    ([{"op": "add", "path": "/spec/x/01", "value": 1}], False),
    ([{"op": "frobnicate", "path": "/a"}], False),
    ([{"op": "add", "path": "/a"}], False),
    ([{"path": "/a"}], False),
    ({"op": "add"}, False),
    ([{"op": "test", "path": "/metadata/name", "value": "api"}], True),
])
def test_json_patch_errors(ops: object, unprocessable: bool) -> None:
    with pytest.raises(PatchError) as info:
        json_patch(POD, ops)
    assert info.value.unprocessable is unprocessable


def test_unknown_patch_type_is_refused() -> None:
    with pytest.raises(PatchError):
        apply_patch("application/apply-patch+yaml", POD, {})
