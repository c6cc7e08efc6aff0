"""Field and label selectors of the lab's API stand-in, as apimachinery parses and matches them."""

from __future__ import annotations

import pytest

from agent.lab.kube_selectors import (
    CORE_EVENT_FIELDS,
    EVENTS_V1_FIELDS,
    POD_FIELDS,
    FieldRequirement,
    LabelRequirement,
    SelectorError,
    convert_field_selector,
    core_event_fields,
    field_selector_matches,
    label_selector_matches,
    parse_field_selector,
    parse_label_selector,
    pod_fields,
)

POD = {
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"nodeName": "node-a", "restartPolicy": "Always", "hostNetwork": True},
    "status": {"phase": "Running", "podIP": "10.0.0.2"},
}


@pytest.mark.parametrize("text, parsed", [
    ("", []),
    ("spec.nodeName=node-a", [FieldRequirement("spec.nodeName", "=", "node-a")]),
    ("spec.nodeName==node-a", [FieldRequirement("spec.nodeName", "=", "node-a")]),
    ("a=b,c!=d", [FieldRequirement("a", "=", "b"), FieldRequirement("c", "!=", "d")]),
    ("a=", [FieldRequirement("a", "=", "")]),
    (r"a=x\,y\=z\\w", [FieldRequirement("a", "=", r"x,y=z\w")]),
    ("a=b,", [FieldRequirement("a", "=", "b")]),
])
def test_field_selector_parses(text: str, parsed: list) -> None:
    assert parse_field_selector(text) == parsed


@pytest.mark.parametrize("text", ["nooperator", r"a=b\q", "a=b\\", "a=b=c"])
def test_bad_field_selectors_are_refused(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_field_selector(text)


@pytest.mark.parametrize("selector, matches", [
    ("spec.nodeName=node-a", True),
    ("spec.nodeName=node-b", False),
    ("spec.nodeName!=node-b", True),
    ("metadata.name=web,metadata.namespace=shop", True),
    ("metadata.name=web,metadata.namespace=jobs", False),
    ("spec.host=node-a", True),  # the old name still works
    ("spec.hostNetwork=true", True),
    ("status.phase=Running", True),
    ("status.nominatedNodeName=", True),  # an unset field is the empty string
])
def test_pod_field_selectors(selector: str, matches: bool) -> None:
    requirements = convert_field_selector(parse_field_selector(selector), POD_FIELDS)
    assert field_selector_matches(requirements, pod_fields(POD)) is matches


@pytest.mark.parametrize("field", ["spec.foo", "metadata.uid", "involvedObject.name"])
def test_unknown_pod_fields_are_refused_like_the_server(field: str) -> None:
    with pytest.raises(SelectorError, match=f"^field label not supported: {field}$"):
        convert_field_selector(parse_field_selector(f"{field}=x"), POD_FIELDS)


def test_event_fields_through_both_apis() -> None:
    event = {"metadata": {"name": "e", "namespace": "shop"}, "involvedObject": {"kind": "Pod", "name": "web", "uid": "u1"},
             "reason": "R", "type": "Warning", "reportingComponent": "podbw.io/agent", "source": {}}
    fields = core_event_fields(event)
    describe = convert_field_selector(parse_field_selector("involvedObject.name=web,involvedObject.namespace=,involvedObject.uid=u1"),
                                      CORE_EVENT_FIELDS)
    assert field_selector_matches(describe, fields)
    v1 = convert_field_selector(parse_field_selector("regarding.name=web,reportingController=podbw.io/agent,type=Warning"),
                                EVENTS_V1_FIELDS)
    assert v1[0].field == "involvedObject.name" and v1[1].field == "reportingComponent"
    assert field_selector_matches(v1, fields)
    with pytest.raises(SelectorError):
        convert_field_selector(parse_field_selector("regarding.name=web"), CORE_EVENT_FIELDS)


@pytest.mark.parametrize("text, parsed", [
    ("", []),
    ("app=web", [LabelRequirement("app", "=", ("web",))]),
    ("app==web", [LabelRequirement("app", "=", ("web",))]),
    ("app!=web", [LabelRequirement("app", "!=", ("web",))]),
    ("app=", [LabelRequirement("app", "=", ("",))]),
    ("app in (web, api)", [LabelRequirement("app", "in", ("web", "api"))]),
    ("tier notin (db)", [LabelRequirement("tier", "notin", ("db",))]),
    ("app in ()", [LabelRequirement("app", "in", ("",))]),
    ("app", [LabelRequirement("app", "exists")]),
    ("!app", [LabelRequirement("app", "!")]),
    ("n>3,n<9", [LabelRequirement("n", "gt", ("3",)), LabelRequirement("n", "lt", ("9",))]),
    ("example.com/app=web, x", [LabelRequirement("example.com/app", "=", ("web",)), LabelRequirement("x", "exists")]),
])
def test_label_selector_parses(text: str, parsed: list) -> None:
    assert parse_label_selector(text) == parsed


@pytest.mark.parametrize("text", ["app=web,", "app in web", "app in (a b)", "=web", "a/b/c=x", "app=-bad-", "n>x", "app ~ x", "a,,b"])
def test_bad_label_selectors_are_refused(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(text)


@pytest.mark.parametrize("selector, matches", [
    ("app=web", True), ("app=api", False), ("app!=api", True), ("missing!=x", True),
    ("app in (api,web)", True), ("app notin (web)", False), ("missing notin (x)", True),
    ("app", True), ("missing", False), ("!missing", True), ("!app", False),
    ("n>3", True), ("n<3", False), ("app>3", False), ("missing<3", False),
    ("app=web,n>4", True), ("app=web,n>5", False),
])
def test_label_selector_matches(selector: str, matches: bool) -> None:
    assert label_selector_matches(parse_label_selector(selector), {"app": "web", "n": "5"}) is matches
